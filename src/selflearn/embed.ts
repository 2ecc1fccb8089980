import { readFile, rm } from 'node:fs/promises';
import { basename } from 'node:path';
import type { FundusModel } from '../models/io.js';
import { Predictor } from '../models/predictor.js';
import { writeFileAtomic } from '../util/atomic.js';
import { InputError } from '../util/errors.js';
import { progress } from '../util/progress.js';
import type { SkippedPhoto } from '../util/skipped.js';
import type { DenseMatrix } from './matrix.js';

/**
 * Embeddings: the activations of one layer of a trained network (by default the penultimate one, i.e. the input of
 * the `logits` classification head), flattened to one row per image.
 *
 * File format (`fundus embed --out runs/emb.f32`), two files side by side:
 * - `emb.f32`: raw little-endian float32, rows × dim, row-major, no header (numpy: `np.fromfile(p, '<f4').reshape(rows, dim)`);
 * - `emb.json`: `{ format: "fundus-embeddings", formatVersion: 1, rows, dim, dtype: "float32", layer, model, names,
 *   paths, skipped }`, where `names[i]` (the file name) and `paths[i]` belong to row i, and `skipped` lists the
 *   photographs that could not be read (`{ path, reason }`, with `skipUnreadable`; no row of theirs).
 */
export interface Embeddings {
  matrix: DenseMatrix & { data: Float32Array };
  names: string[];
  paths: string[];
  layer: string;
  /** Photographs left out because they could not be read (only with `skipUnreadable`). */
  skipped: SkippedPhoto[];
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
  skipped?: SkippedPhoto[];
}

export interface EmbedOptions {
  /** Layer whose output is the embedding; default: the input of the `logits` layer (the penultimate layer). */
  layer?: string;
  batchSize?: number;
  /** Use the preprocessing cache under cache/ (default true). */
  cache?: boolean;
  /** Label of a progress bar on stderr. */
  progressLabel?: string;
  /** Called after each batch with the images done; what it throws stops the pass and comes out of embedFiles. */
  onProgress?: (done: number) => void;
  /** Stops the pass (a deadline: `stopAtDeadline`); embedFiles then rejects with its reason (see `RunOptions.signal`). */
  signal?: AbortSignal;
  /**
   * Leave out photographs that cannot be read (listed in `skipped`) instead of failing the whole run; default false,
   * for callers whose rows must line up with their inputs.
   */
  skipUnreadable?: boolean;
}

/**
 * Runs images through the network up to `layer` (default: penultimate) with the Predictor, preprocessing exactly as
 * the model was trained (its fundus.json settings). Returns one float32 row per image, in input order (the images
 * that could be read, with `skipUnreadable`).
 */
export async function embedFiles(model: FundusModel, paths: string[], opts: EmbedOptions = {}): Promise<Embeddings> {
  if (paths.length === 0) throw new InputError('no images to embed');
  const predictor = new Predictor(model, { batchSize: opts.batchSize, cache: opts.cache ?? true });
  const bar = opts.progressLabel ? progress(opts.progressLabel, paths.length) : undefined;
  let last = 0;
  const failed = new Map<number, string>();
  try {
    const rows = await predictor.embed(paths, {
      layer: opts.layer,
      signal: opts.signal,
      onProgress: (done) => {
        bar?.tick(done - last);
        last = done;
        opts.onProgress?.(done);
      },
      ...(opts.skipUnreadable ? { onFailure: (i: number, f: { message: string }) => void failed.set(i, f.message) } : {}),
    });
    const skipped = [...failed].map(([i, reason]) => ({ path: paths[i], reason }));
    const kept = paths.flatMap((p, i) => (failed.has(i) ? [] : [i]));
    const data = failed.size === 0 ? rows.data : new Float32Array(kept.length * rows.dim);
    if (failed.size > 0) kept.forEach((i, r) => data.set(rows.data.subarray(i * rows.dim, (i + 1) * rows.dim), r * rows.dim));
    const keptPaths = kept.map((i) => paths[i]);
    return { matrix: { data, rows: kept.length, cols: rows.dim }, names: keptPaths.map((p) => basename(p)), paths: keptPaths, layer: rows.layer, skipped };
  } catch (err) {
    const [first] = failed.values();
    if (failed.size === paths.length) throw new InputError(`none of the ${paths.length} images could be read (${paths[failed.keys().next().value!]}: ${first}${paths.length > 1 ? ', ...' : ''})`);
    throw err;
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
    ...(emb.skipped.length ? { skipped: emb.skipped } : {}),
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
  return { matrix: { data, rows: meta.rows, cols: meta.dim }, names: meta.names, paths: meta.paths ?? meta.names, layer: meta.layer, skipped: meta.skipped ?? [], sidecar: meta };
}
