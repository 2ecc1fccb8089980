import type * as tfl from '@tensorflow/tfjs-layers';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadPreprocessedBytes } from '../data/cache.js';
import { readDataset } from '../data/csv.js';
import { isGraded } from '../data/labels.js';
import type { Dataset, LabelledImage } from '../data/labels.js';
import { tuneThresholds } from '../metrics/thresholds.js';
import { MODEL_JSON, METADATA_JSON, WEIGHTS_BIN, loadModel, saveModel } from '../models/io.js';
import type { ModelMetadata } from '../models/metadata.js';
import { Predictor } from '../models/predictor.js';
import { taskExamples } from '../models/tasks.js';
import type { Example } from '../models/tasks.js';
import { InputError } from '../util/errors.js';
import { splitGraded } from './losses.js';
import { scoreProbabilities, scoresReport } from './scores.js';
import { calibrateBatchNorm } from './validation.js';
import { readSplitParts } from '../data/split.js';

/** Probabilities of `network` on cached bytes (inference mode), n×C, through the Predictor. */
export function predictBytes(network: tfl.LayersModel, metadata: ModelMetadata, pixels: Uint8Array[], batchSize = 16): Float32Array {
  return new Predictor({ dir: '(training)', network, metadata }, { batchSize }).run(pixels);
}

export function targetMatrix(examples: Example[], numClasses: number): Float32Array {
  const t = new Float32Array(examples.length * numClasses);
  examples.forEach((e, i) => t.set(e.target, i * numClasses));
  return t;
}

/**
 * Tunes the thresholds (max F1 per class on validation) into `metadata` and returns the held-out metrics of both
 * parts with those thresholds.
 */
export function tuneAndScore(
  network: tfl.LayersModel,
  metadata: ModelMetadata,
  validation: { examples: Example[]; pixels: Uint8Array[] },
  test: { examples: Example[]; pixels: Uint8Array[] },
): { validation: Record<string, unknown>; test: Record<string, unknown> } {
  const C = metadata.classes.length;
  const valProbs = predictBytes(network, metadata, validation.pixels);
  const valTargets = targetMatrix(validation.examples, C);
  // each class on the validation images graded for it
  const { targets, mask } = splitGraded(valTargets);
  const tuned = tuneThresholds(targets, valProbs, C, { kind: 'max-f1' }, [], mask);
  metadata.thresholds = tuned.thresholds;
  metadata.thresholdPolicy = `${tuned.policy} on validation`;
  const testProbs = predictBytes(network, metadata, test.pixels);
  const score = (t: Float32Array, p: Float32Array, n: number) =>
    scoresReport(scoreProbabilities(t, p, C, metadata.thresholds), metadata.classes, n, metadata.thresholds);
  return {
    validation: score(valTargets, valProbs, validation.examples.length),
    test: score(targetMatrix(test.examples, C), testProbs, test.examples.length),
  };
}

/** The examples of a finished model's task for scoring: the combined one-vs-normal predictor is scored on every image. */
export function scoringExamples(metadata: ModelMetadata, dataset: Dataset, images: LabelledImage[]): Example[] {
  if (metadata.task !== 'one-vs-normal') return taskExamples(metadata.task, dataset, images);
  const cols = metadata.classes.map((c) => dataset.classes.indexOf(c));
  return images
    .filter((im) => im.labels)
    .map((im) => ({ path: im.path, filename: im.filename, target: Float32Array.from(cols, (c) => (isGraded(im, c) ? im.labels![c] : NaN)), weight: 1 }));
}

/**
 * Re-estimates a saved model's batch-norm statistics on (up to `calibrationImages` of) its training part, re-tunes
 * its thresholds on validation and rescores it on test, rewriting the model directory in place (atomically; the
 * other files, history and split included, are kept). For models trained before the training loop did this itself.
 */
export async function recalibrateModelDir(
  dir: string,
  data: { csv: string; images: string; split: string },
  opts: { calibrationImages?: number; batchSize?: number; log?: (line: string) => void } = {},
): Promise<ModelMetadata> {
  const model = await loadModel(dir);
  const { metadata, network } = model;
  const dataset = await readDataset(data.csv, data.images);
  const split = await readSplitParts(data.split);
  if (metadata.trainingData?.splitSha256 && metadata.trainingData.splitSha256 !== split.sha256) {
    throw new InputError(`the model was trained with another split (sha256 ${metadata.trainingData.splitSha256})`, { file: data.split });
  }
  const byName = new Map(dataset.images.map((im) => [im.filename, im]));
  const part = (names: string[]) => names.map((n) => byName.get(n)).filter((im): im is LabelledImage => im !== undefined);
  const bytes = async (ex: Example[]) => (await loadPreprocessedBytes(ex.map((e) => e.path), metadata.preprocess)).map((b) => b.pixels);
  const train = scoringExamples(metadata, dataset, part(split.train)).slice(0, opts.calibrationImages ?? 512);
  const bs = opts.batchSize ?? 16;
  const n = calibrateBatchNorm(network, { examples: train, pixels: await bytes(train) }, metadata, train.length, bs);
  opts.log?.(`recalibrated batch norm on ${n} batches of training images`);
  const val = scoringExamples(metadata, dataset, part(split.validation));
  const test = scoringExamples(metadata, dataset, part(split.test));
  const scores = tuneAndScore(network, metadata, { examples: val, pixels: await bytes(val) }, { examples: test, pixels: await bytes(test) });
  metadata.metrics = { ...(metadata.metrics ?? {}), ...scores, bnRecalibration: `batch statistics of ${n * bs} training images` };
  const keep: Record<string, Uint8Array> = {};
  for (const f of await readdir(dir)) {
    if (f === MODEL_JSON || f === WEIGHTS_BIN || f === METADATA_JSON || f.startsWith('.')) continue;
    keep[f] = await readFile(join(dir, f));
  }
  await saveModel(dir, network, metadata, keep);
  return metadata;
}
