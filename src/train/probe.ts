import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { defaultCacheDir } from '../data/cache.js';
import { normalizeBytes } from '../data/preprocess.js';
import type { ModelMetadata } from '../models/metadata.js';
import { stackImages } from '../models/predict.js';
import { balancedClassWeights } from '../models/tasks.js';
import { InputError } from '../util/errors.js';
import type { HistoryRow } from './checkpoint.js';
import { targetMatrix } from './finalize.js';
import { writeHistory } from './history.js';
import type { LoopData, LoopResult } from './loop.js';
import { splitGraded, weightedSigmoidCrossEntropy, weightedSoftmaxCrossEntropy } from './losses.js';
import { scoreProbabilities } from './scores.js';

/**
 * The linear probe: the pretrained backbone stays frozen, its pooled features are computed once (and cached on disk,
 * keyed by the backbone, the preprocessing and the exact input bytes), and only the Dense head is fitted on them, as a
 * logistic regression per class (or a softmax regression) with Adam on standardised features. The standardisation is
 * folded into the head's weights afterwards, so the saved network is the plain backbone + head.
 */
export interface ProbeSettings {
  /** Full-batch Adam steps at most. */
  steps: number;
  lr: number;
  /**
   * L2 penalties on the head's weights (on standardised features) to choose from by validation macro AUC, as
   * scikit-learn's LogisticRegressionCV chooses C; the features are computed once, so the grid costs seconds.
   */
  l2Grid: number[];
  /** Stop when validation macro AUC has not improved for this many evaluations (one every `evalEvery` steps). */
  patience: number;
  evalEvery: number;
  /** The layer whose output is the feature vector (the global average pooling before the head). */
  featureLayer: string;
  cacheDir?: string;
  log: (line: string) => void;
}

function digestOf(metadata: ModelMetadata, pixels: Uint8Array[], featureLayer: string): string {
  const h = createHash('sha256');
  h.update(JSON.stringify({ backbone: metadata.backbone?.sha256, preprocess: metadata.preprocess, inputShape: metadata.inputShape, featureLayer }));
  for (const p of pixels) h.update(p);
  return h.digest('hex').slice(0, 32);
}

/** Features of cached preprocessed bytes, n×d, in inference mode; read from or written to the feature cache. */
export async function backboneFeatures(
  network: tfl.LayersModel,
  metadata: ModelMetadata,
  pixels: Uint8Array[],
  featureLayer: string,
  cacheDir = defaultCacheDir(),
): Promise<{ features: Float32Array; dim: number; cached: boolean }> {
  const layer = network.getLayer(featureLayer);
  const dim = (layer.outputShape as number[])[1];
  const file = join(cacheDir, 'features', `${digestOf(metadata, pixels, featureLayer)}.f32`);
  try {
    const b = await readFile(file);
    if (b.byteLength === pixels.length * dim * 4) return { features: new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4).slice(), dim, cached: true };
  } catch {
    // not cached yet
  }
  const extractor = tfl.model({ inputs: network.inputs, outputs: layer.output as tfl.SymbolicTensor });
  const features = new Float32Array(pixels.length * dim);
  const batch = 16;
  for (let s = 0; s < pixels.length; s += batch) {
    const x = stackImages(pixels.slice(s, s + batch).map((p) => normalizeBytes(p, metadata.inputShape[2], metadata.preprocess)), metadata.inputShape);
    const f = tf.tidy(() => (extractor.predict(x) as tf.Tensor).dataSync() as Float32Array);
    features.set(f, s * dim);
    x.dispose();
  }
  await mkdir(join(cacheDir, 'features'), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, new Uint8Array(features.buffer));
  await rename(tmp, file);
  return { features, dim, cached: false };
}

function standardise(train: Float32Array, n: number, d: number): { mean: Float32Array; std: Float32Array } {
  const mean = new Float32Array(d);
  const std = new Float32Array(d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) mean[j] += train[i * d + j] / n;
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) std[j] += (train[i * d + j] - mean[j]) ** 2 / n;
  for (let j = 0; j < d; j++) std[j] = Math.sqrt(std[j]) + 1e-6;
  return { mean, std };
}

/** Fits the head of `network` (its `logits` Dense layer) on frozen backbone features. */
export async function trainProbe(
  network: tfl.LayersModel,
  metadata: ModelMetadata,
  data: LoopData,
  s: ProbeSettings,
  runDir: string,
): Promise<LoopResult & { probe: { l2: number; step: number } }> {
  const started = Date.now();
  const eventsCreatedAt = started / 1000;
  const C = metadata.classes.length;
  const { train, validation } = data;
  if (train.length === 0 || validation.length === 0) throw new InputError(`no training or validation examples for ${metadata.task}`);
  const tr = await backboneFeatures(network, metadata, data.trainPixels, s.featureLayer, s.cacheDir);
  const va = await backboneFeatures(network, metadata, data.validationPixels, s.featureLayer, s.cacheDir);
  const featureSeconds = (Date.now() - started) / 1000;
  s.log(`linear probe: ${tr.dim}-d features of ${train.length} + ${validation.length} images ${tr.cached && va.cached ? 'from the cache' : `in ${featureSeconds.toFixed(0)} s`}`);
  const d = tr.dim;
  const { mean, std } = standardise(tr.features, train.length, d);
  const z = (f: Float32Array, n: number) => {
    const out = new Float32Array(f.length);
    for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) out[i * d + j] = (f[i * d + j] - mean[j]) / std[j];
    return out;
  };
  const weights = balancedClassWeights(train, C, metadata.activation);
  const softmax = metadata.activation === 'softmax';
  const history: HistoryRow[] = [];
  let best: { value: number; epoch: number; l2: number; w: Float32Array; b: Float32Array } | null = null;
  const valTargets = targetMatrix(validation, C);
  tf.tidy(() => {
    const xTrain = tf.tensor2d(z(tr.features, train.length), [train.length, d]);
    const xVal = tf.tensor2d(z(va.features, validation.length), [validation.length, d]);
    const graded = splitGraded(targetMatrix(train, C));
    const y = tf.tensor2d(graded.targets, [train.length, C]);
    const mask = graded.mask ? tf.tensor2d(graded.mask, [train.length, C]) : undefined;
    const sw = tf.tensor1d(train.map((e) => e.weight));
    const posW = tf.tensor1d(weights.positive);
    const negW = tf.tensor1d(weights.negative);
    const lossOf = (logits: tf.Tensor2D) => (softmax ? weightedSoftmaxCrossEntropy(y, logits, posW, sw) : weightedSigmoidCrossEntropy(y, logits, posW, negW, sw, mask));
    for (const l2 of s.l2Grid) {
      const w = tf.variable(tf.zeros([d, C]));
      const b = tf.variable(tf.zeros([C]));
      const opt = tf.train.adam(s.lr);
      let bad = 0;
      let bestHere = -Infinity;
      for (let step = 1; step <= s.steps && bad < s.patience; step++) {
        const loss = opt.minimize(() => tf.add(lossOf(tf.add(tf.matMul(xTrain, w), b)), tf.mul(l2 / 2, tf.sum(tf.square(w)))) as tf.Scalar, true, [w, b]) as tf.Scalar;
        if (step % s.evalEvery !== 0 && step !== s.steps) {
          loss.dispose();
          continue;
        }
        const probs = tf.tidy(() => {
          const logits = tf.add(tf.matMul(xVal, w), b);
          return (softmax ? tf.softmax(logits) : tf.sigmoid(logits)).dataSync() as Float32Array;
        });
        const sc = scoreProbabilities(valTargets, probs, C, 0.5);
        const row: HistoryRow = {
          epoch: step, l2, loss: loss.dataSync()[0], val_auc: sc.macroAuc ?? NaN, val_f1: sc.meanF1 ?? NaN, lr: s.lr,
          seconds: (Date.now() - started) / 1000, wall_time: Date.now() / 1000,
        };
        loss.dispose();
        history.push(row);
        if (row.val_auc > bestHere) {
          bestHere = row.val_auc;
          bad = 0;
        } else {
          bad++;
        }
        if (!best || row.val_auc > best.value) best = { value: row.val_auc, epoch: step, l2, w: w.dataSync().slice() as Float32Array, b: b.dataSync().slice() as Float32Array };
      }
      s.log(`linear probe: l2 ${l2}: best validation macro AUC ${bestHere.toFixed(4)}`);
      opt.dispose();
      tf.dispose([w, b]);
    }
  });
  if (!best) throw new Error('linear probe: no evaluation ran');
  const chosen: { value: number; epoch: number; l2: number; w: Float32Array; b: Float32Array } = best;
  // Fold the standardisation into the Dense layer: w'[j] = w[j] / std[j], b' = b - Σ_j mean[j] w[j] / std[j].
  const wFolded = new Float32Array(d * C);
  const bFolded = Float32Array.from(chosen.b);
  for (let j = 0; j < d; j++) {
    for (let k = 0; k < C; k++) {
      wFolded[j * C + k] = chosen.w[j * C + k] / std[j];
      bFolded[k] -= (mean[j] * chosen.w[j * C + k]) / std[j];
    }
  }
  const head = network.getLayer('logits');
  const wt = tf.tensor2d(wFolded, [d, C]);
  const bt = tf.tensor1d(bFolded);
  head.setWeights([wt, bt]);
  tf.dispose([wt, bt]);
  s.log(`linear probe: chose l2 ${chosen.l2}, step ${chosen.epoch} (validation macro AUC ${chosen.value.toFixed(4)})`);
  const validationProbs = tf.tidy(() => {
    const x = tf.tensor2d(va.features, [validation.length, d]);
    const logits = tf.add(tf.matMul(x, tf.tensor2d(wFolded, [d, C])), tf.tensor1d(bFolded));
    return (softmax ? tf.softmax(logits) : tf.sigmoid(logits)).dataSync() as Float32Array;
  });
  await writeHistory(runDir, history, eventsCreatedAt);
  const trainSeconds = (Date.now() - started) / 1000;
  return {
    network,
    history,
    best: { value: chosen.value, epoch: chosen.epoch },
    probe: { l2: chosen.l2, step: chosen.epoch },
    validationProbs,
    trainSeconds,
    // feature extraction speed; none when the features came from the cache
    imagesPerSecond: tr.cached && va.cached ? NaN : (train.length + validation.length) / Math.max(featureSeconds, 1e-3),
    eventsCreatedAt,
  };
}
