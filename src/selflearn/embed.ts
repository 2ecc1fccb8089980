import { readFile, rm } from 'node:fs/promises';
import { basename } from 'node:path';
import type { FundusModel } from '../models/io.js';
import { Predictor } from '../models/predictor.js';
import { writeFileAtomic } from '../util/atomic.js';
import { InputError } from '../util/errors.js';
import { progress } from '../util/progress.js';
import type { DenseMatrix } from './matrix.js';

/**
 * Embeddings: the activations of one layer of a trained network (by default the penultimate one, i.e. the input of
 * the `logits` classification head), flattened to one row per image.
 *
 * File format (`fundus embed --out runs/emb.f32`), two files side by side:
 * - `emb.f32`: raw little-endian float32, rows × dim, row-major, no header (numpy: `np.fromfile(p, '<f4').reshape(rows, dim)`);
 * - `emb.json`: `{ format: "fundus-embeddings", formatVersion: 1, rows, dim, dtype: "float32", layer, model, names,
 *   paths }`, where `names[i]` (the file name) and `paths[i]` belong to row i.
 */
export interface Embeddings {
  matrix: DenseMatrix & { data: Float32Array };
  names: string[];
  paths: string[];
  layer: string;
}

export interface EmbeddingsSidecar {
  format: 'fundus-embeddings';
  formatVersion: 1;
  rows: number;
  dim: number;
  dtype: 'float32';
  layer: string;
  model: string;
  names: string[];
  paths: string[];
}

export interface EmbedOptions {
  /** Layer whose output is the embedding; default: the input of the `logits` layer (the penultimate layer). */
  layer?: string;
  batchSize?: number;
  /** Use the preprocessing cache under cache/ (default true). */
  cache?: boolean;
  /** Label of a progress bar on stderr. */
  progressLabel?: string;
  onProgress?: (done: number) => void;
}

/**
 * Runs images through the network up to `layer` (default: penultimate) with the Predictor, preprocessing exactly as
 * the model was trained (its fundus.json settings). Returns one float32 row per image, in input order.
 */
export async function embedFiles(model: FundusModel, paths: string[], opts: EmbedOptions = {}): Promise<Embeddings> {
  if (paths.length === 0) throw new InputError('no images to embed');
  const predictor = new Predictor(model, { batchSize: opts.batchSize, cache: opts.cache ?? true });
  const bar = opts.progressLabel ? progress(opts.progressLabel, paths.length) : undefined;
  let last = 0;
  try {
    const rows = await predictor.embed(paths, {
      layer: opts.layer,
      onProgress: (done) => {
        bar?.tick(done - last);
        last = done;
        opts.onProgress?.(done);
      },
    });
    return { matrix: { data: rows.data, rows: rows.rows, cols: rows.dim }, names: paths.map((p) => basename(p)), paths, layer: rows.layer };
  } finally {
    bar?.stop();
    await predictor.close();
  }
}

function sidecarPath(f32Path: string): string {
  return f32Path.replace(/\.f32$/, '') + '.json';
}

/** Writes `<base>.f32` and `<base>.json` (see the format above); `path` may end in `.f32` or not. */
export async function saveEmbeddings(path: string, emb: Embeddings, modelDir: string): Promise<{ data: string; sidecar: string }> {
  const dataPath = path.endsWith('.f32') ? path : `${path}.f32`;
  const jsonPath = sidecarPath(dataPath);
  const sidecar: EmbeddingsSidecar = {
    format: 'fundus-embeddings',
    formatVersion: 1,
    rows: emb.matrix.rows,
    dim: emb.matrix.cols,
    dtype: 'float32',
    layer: emb.layer,
    model: modelDir,
    names: emb.names,
    paths: emb.paths,
  };
  const d = emb.matrix.data;
  const bytes = new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
  // Little-endian on every platform Node runs on; the sidecar is written last so that it only exists for complete data.
  await writeFileAtomic(dataPath, bytes);
  try {
    await writeFileAtomic(jsonPath, JSON.stringify(sidecar) + '\n');
  } catch (err) {
    await rm(dataPath, { force: true });
    throw err;
  }
  return { data: dataPath, sidecar: jsonPath };
}

/** Reads what `saveEmbeddings` wrote, checking that the two files agree. */
export async function loadEmbeddings(path: string): Promise<Embeddings & { sidecar: EmbeddingsSidecar }> {
  const dataPath = path.endsWith('.f32') ? path : `${path}.f32`;
  const jsonPath = sidecarPath(dataPath);
  let meta: EmbeddingsSidecar;
  try {
    meta = JSON.parse(await readFile(jsonPath, 'utf8')) as EmbeddingsSidecar;
  } catch (err) {
    throw new InputError(`cannot read the embeddings sidecar (${(err as Error).message})`, { file: jsonPath });
  }
  if (meta.format !== 'fundus-embeddings' || meta.formatVersion !== 1 || !Array.isArray(meta.names) || meta.names.length !== meta.rows) {
    throw new InputError('not a fundus embeddings sidecar (format, formatVersion 1, rows and names required)', { file: jsonPath });
  }
  const buf = await readFile(dataPath).catch(() => {
    throw new InputError('embeddings data file is missing', { file: dataPath });
  });
  if (buf.byteLength !== meta.rows * meta.dim * 4) {
    throw new InputError(`holds ${buf.byteLength} bytes, the sidecar says ${meta.rows}x${meta.dim} float32`, { file: dataPath });
  }
  const data = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
  return { matrix: { data, rows: meta.rows, cols: meta.dim }, names: meta.names, paths: meta.paths ?? meta.names, layer: meta.layer, sidecar: meta };
}
