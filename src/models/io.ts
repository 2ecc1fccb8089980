import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { readFile, writeFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { releaseFolded } from '../engine/inference.js';
import { InputError } from '../util/errors.js';
import { writeDirAtomic, writeFileAtomic } from '../util/atomic.js';
import { channelCount, validatePreprocessSettings } from '../data/preprocess.js';
import { OS_LITTER, folderEntries, pathKind, someNames } from '../util/owned.js';
import type { ModelMetadata } from './metadata.js';

/** A trained fundus model: the tfjs network plus what it needs to be used correctly. */
export interface FundusModel {
  dir: string;
  network: tfl.LayersModel;
  metadata: ModelMetadata;
}

export const MODEL_JSON = 'model.json';
export const WEIGHTS_BIN = 'weights.bin';
export const METADATA_JSON = 'fundus.json';

/** The model shipped with fundus (`models/default` in the package, beside `src/` or `dist/`), used when none is named. */
export const DEFAULT_MODEL_DIR = fileURLToPath(new URL('../../models/default', import.meta.url));

/**
 * The files fundus writes into a model directory: the model itself, what training ships with it (split, history,
 * TensorBoard events), a checkpoint's optimiser and run state, and what scripts/train-bundled.sh adds (model card,
 * external validation, reference predictions). Anything else in a model folder is someone else's.
 */
const MODEL_DIR_FILES = new Set([
  MODEL_JSON,
  WEIGHTS_BIN,
  METADATA_JSON,
  'split.json',
  'history.csv',
  'MODEL_CARD.md',
  'external-validation.json',
  'reference-predictions.json',
  'optimizer.json',
  'optimizer.bin',
  'state.json',
  'adversary.bin',
]);

export function isModelDirFile(name: string): boolean {
  return MODEL_DIR_FILES.has(name) || name.startsWith('events.out.tfevents.') || OS_LITTER.has(name);
}

/** True when `dir` is a folder with a `fundus.json` whose format is `fundus-model` (a model fundus wrote). */
export async function isFundusModelDir(dir: string): Promise<boolean> {
  try {
    const m = JSON.parse(await readFile(join(dir, METADATA_JSON), 'utf8')) as { format?: unknown } | null;
    return m !== null && typeof m === 'object' && m.format === 'fundus-model';
  } catch {
    return false;
  }
}

/** The model folder that `path` is, or lies inside (any level up), if any. */
export async function enclosingModelDir(path: string): Promise<string | undefined> {
  let dir = resolve(path);
  for (;;) {
    if (await isFundusModelDir(dir)) return dir;
    const up = dirname(dir);
    if (up === dir) return undefined;
    dir = up;
  }
}

/**
 * Refuses (InputError) to save a model over anything but nothing, an empty folder or another fundus model: saving
 * replaces the whole folder, and a folder of photos or a file in its place would be deleted. Whether an existing
 * model may be replaced is the caller's decision (`train --force`, a checkpoint replacing the previous one).
 */
export async function checkModelDirReplaceable(dir: string): Promise<void> {
  if ((await pathKind(dir)) === 'file') throw new InputError('refusing to replace this file with a model folder: fundus did not write it', { file: dir });
  const entries = await folderEntries(dir, 'the model folder');
  if (!entries || entries.length === 0 || (await isFundusModelDir(dir))) return;
  throw new InputError(`refusing to replace this folder with a model: it is not a fundus model folder (it holds ${someNames(entries)})`, { file: dir });
}

/**
 * Saves a model directory atomically: `model.json` (tfjs layers format, loadable in the browser with
 * `tf.loadLayersModel`), `weights.bin` and `fundus.json`. `extraFiles` are written into the same directory (e.g. the
 * split file the model was trained with, training history, a model card). Replaces an earlier model at `dir`, but
 * never a folder or file that is not one (see checkModelDirReplaceable).
 */
export async function saveModel(
  dir: string,
  network: tfl.LayersModel,
  metadata: ModelMetadata,
  extraFiles: Record<string, string | Uint8Array> = {},
): Promise<void> {
  await checkModelDirReplaceable(dir);
  await writeDirAtomic(dir, async (tmp) => {
    await network.save(
      tf.io.withSaveHandler(async (artifacts) => {
        const weightData = artifacts.weightData
          ? new Uint8Array(tf.io.CompositeArrayBuffer.join(artifacts.weightData))
          : new Uint8Array(0);
        const modelJson = {
          format: artifacts.format,
          generatedBy: artifacts.generatedBy,
          convertedBy: artifacts.convertedBy,
          modelTopology: artifacts.modelTopology,
          weightsManifest: [{ paths: [`./${WEIGHTS_BIN}`], weights: artifacts.weightSpecs ?? [] }],
        };
        await writeFile(join(tmp, MODEL_JSON), JSON.stringify(modelJson));
        await writeFile(join(tmp, WEIGHTS_BIN), weightData);
        return { modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(artifacts) };
      }),
    );
    await writeFile(join(tmp, METADATA_JSON), JSON.stringify(metadata, null, 2) + '\n');
    for (const [name, content] of Object.entries(extraFiles)) await writeFile(join(tmp, name), content);
  });
}

async function readJson(path: string, what: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    throw new InputError(`not a fundus model directory: ${what} is missing`, { file: path });
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new InputError(`${what} is not valid JSON (${(err as Error).message})`, { file: path });
  }
}

/** Reads and checks `fundus.json`, with a clear error for a corrupt or foreign directory. */
export async function readMetadata(dir: string): Promise<ModelMetadata> {
  const path = join(dir, METADATA_JSON);
  const m = (await readJson(path, METADATA_JSON)) as Partial<ModelMetadata>;
  if (m === null || typeof m !== 'object' || m.format !== 'fundus-model') {
    throw new InputError('not a fundus model: "format" must be "fundus-model"', { file: path });
  }
  if (m.formatVersion !== 1) throw new InputError(`unsupported model format version ${m.formatVersion}`, { file: path });
  const classes = m.classes;
  if (!Array.isArray(classes) || classes.length === 0 || !classes.every((c) => typeof c === 'string')) {
    throw new InputError('"classes" must be a non-empty list of class names', { file: path });
  }
  // class names become object keys in reports and API answers
  const reserved = classes.find((c) => c.trim() === '' || ['__proto__', 'constructor', 'prototype'].includes(c));
  if (reserved !== undefined) throw new InputError(`"classes" may not contain ${JSON.stringify(reserved)}`, { file: path });
  if (new Set(classes).size !== classes.length) throw new InputError('"classes" lists a class twice', { file: path });
  if (!Array.isArray(m.thresholds) || m.thresholds.length !== classes.length) {
    throw new InputError(`"thresholds" must have one entry per class (${classes.length})`, { file: path });
  }
  // a null threshold would call every photograph positive, a string none: nothing but a probability is a threshold
  const badThreshold = m.thresholds.findIndex((t) => typeof t !== 'number' || !(t >= 0 && t <= 1));
  if (badThreshold >= 0) {
    throw new InputError(`"thresholds" must be numbers in [0, 1] (${classes[badThreshold]}: ${JSON.stringify(m.thresholds[badThreshold])})`, { file: path });
  }
  if (m.activation !== 'sigmoid' && m.activation !== 'softmax') {
    throw new InputError('"activation" must be "sigmoid" or "softmax"', { file: path });
  }
  if (!Array.isArray(m.inputShape) || m.inputShape.length !== 3 || !m.preprocess) {
    throw new InputError('"inputShape" and "preprocess" are required', { file: path });
  }
  const pre = validatePreprocessSettings(m.preprocess, `${METADATA_JSON} preprocess`);
  const [h, w, c] = m.inputShape;
  if (h !== pre.size || w !== pre.size || c !== channelCount(pre)) {
    throw new InputError(`"inputShape" [${m.inputShape.join(', ')}] does not match the preprocessing (${pre.size}×${pre.size}, ${pre.channels})`, { file: path });
  }
  if (m.explanation !== undefined) checkExplanationSetting(m.explanation, path);
  return m as ModelMetadata;
}

/**
 * The shape of fundus.json's `explanation`; whether its method is a CAM method and its layer one of the network's is
 * checked where heatmaps are made (`defaultExplanation` in src/explain), which knows both.
 */
function checkExplanationSetting(e: unknown, path: string): void {
  const text = (v: unknown) => typeof v === 'string' && v.trim() !== '';
  if (e === null || typeof e !== 'object' || Array.isArray(e)) {
    throw new InputError('"explanation" must be an object { method, layer?, chosenBy }', { file: path });
  }
  const { method, layer, chosenBy } = e as Record<string, unknown>;
  if (!text(method)) throw new InputError(`"explanation.method" must be a CAM method name (got ${JSON.stringify(method)})`, { file: path });
  if (layer !== undefined && !text(layer)) throw new InputError(`"explanation.layer" must be a layer name when given (got ${JSON.stringify(layer)})`, { file: path });
  if (!text(chosenBy)) throw new InputError('"explanation.chosenBy" must say which measurement chose the method (a non-empty text)', { file: path });
  const { classes } = e as Record<string, unknown>;
  if (classes === undefined) return;
  if (classes === null || typeof classes !== 'object' || Array.isArray(classes)) {
    throw new InputError('"explanation.classes" must be an object { <class name>: { layer, chosenBy } }', { file: path });
  }
  for (const [name, c] of Object.entries(classes)) {
    const { layer: l, chosenBy: by } = (c ?? {}) as Record<string, unknown>;
    if (!text(l)) throw new InputError(`"explanation.classes.${name}.layer" must be a layer name (got ${JSON.stringify(l)})`, { file: path });
    if (!text(by)) throw new InputError(`"explanation.classes.${name}.chosenBy" must say which measurement chose the layer (a non-empty text)`, { file: path });
  }
}

/**
 * Replaces the `fundus.json` of an existing model (its weights untouched), atomically: for what is learnt about a model
 * after training (tuned thresholds, its default heatmap). Note that its sha256 is the model's identity in prediction
 * files and queues.
 */
export async function writeMetadata(dir: string, metadata: ModelMetadata): Promise<void> {
  await writeFileAtomic(join(dir, METADATA_JSON), JSON.stringify(metadata, null, 2) + '\n');
}

/**
 * Frees a model's tensors: its network's weights and the batch-norm-folded weights that predictions keep for it
 * (src/engine/inference.ts), which `network.dispose()` alone leaves behind. The model cannot predict afterwards.
 */
export function disposeModel(model: Pick<FundusModel, 'network'>): void {
  releaseFolded(model.network);
  model.network.dispose();
}

/** Loads a model directory written by `saveModel` (free it with `disposeModel`). */
export async function loadModel(dir: string): Promise<FundusModel> {
  const metadata = await readMetadata(dir);
  const jsonPath = join(dir, MODEL_JSON);
  const modelJson = (await readJson(jsonPath, MODEL_JSON)) as tf.io.ModelJSON;
  if (!modelJson || typeof modelJson !== 'object' || !modelJson.modelTopology || !Array.isArray(modelJson.weightsManifest)) {
    throw new InputError('model.json is not a tfjs layers model', { file: jsonPath });
  }
  const handler: tf.io.IOHandler = {
    load: () =>
      tf.io.getModelArtifactsForJSON(modelJson, async (manifest) => {
        const specs = tf.io.getWeightSpecs(manifest);
        const buffers = await Promise.all(
          manifest.flatMap((group) =>
            group.paths.map(async (p) => {
              const file = join(dir, p);
              if (isAbsolute(p) || relative(resolve(dir), resolve(file)).startsWith('..')) {
                throw new InputError(`weights path ${JSON.stringify(p)} points outside the model folder`, { file: jsonPath });
              }
              try {
                const b = await readFile(file);
                return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
              } catch {
                throw new InputError('weights file is missing', { file });
              }
            }),
          ),
        );
        return [specs, tf.io.concatenateArrayBuffers(buffers)];
      }),
  };
  let network: tfl.LayersModel;
  try {
    network = await tfl.loadLayersModel(handler);
  } catch (err) {
    if (err instanceof InputError) throw err;
    throw new InputError(`cannot load the network: ${(err as Error).message}`, { file: jsonPath });
  }
  const outUnits = network.outputs[0].shape[network.outputs[0].shape.length - 1];
  if (outUnits !== metadata.classes.length) {
    throw new InputError(`the network has ${outUnits} outputs but fundus.json lists ${metadata.classes.length} classes`, {
      file: join(dir, METADATA_JSON),
    });
  }
  // fundus.json edited (channels, size) without retraining: refuse here rather than crash on the first photograph
  const netInput = network.inputs[0].shape.slice(1);
  if (netInput.length !== 3 || netInput.some((d, i) => d !== null && d !== metadata.inputShape[i])) {
    network.dispose();
    throw new InputError(
      `the network takes ${netInput.map((d) => d ?? 'any').join('×')} inputs but fundus.json says ${metadata.inputShape.join('×')} ` +
        `(preprocess size ${metadata.preprocess.size}, channels ${metadata.preprocess.channels}): the preprocessing settings must be the ones the network was trained with`,
      { file: join(dir, METADATA_JSON) },
    );
  }
  // one NaN weight makes every prediction NaN or one class at 1.000: refuse the model instead
  for (const w of network.weights) {
    const values = w.read().dataSync();
    for (let i = 0; i < values.length; i++) {
      if (!Number.isFinite(values[i])) {
        network.dispose();
        throw new InputError(`weight ${w.originalName} holds ${values[i]} at index ${i}: the weights are corrupt`, { file: jsonPath });
      }
    }
  }
  return { dir, network, metadata };
}
