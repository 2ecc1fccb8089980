import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { disposeBatch, inOrder, makeBatch } from './batch.js';
import type { CachedPart, InputSpec } from './batch.js';
import type { ModelMetadata } from '../models/metadata.js';
import { recalibrateBatchNorm } from './bnstats.js';
import type { TaskLoss } from './losses.js';

/**
 * Precise BN: moving statistics from the first `images` training images (fixed, un-augmented), see bnstats.ts.
 * Returns the number of batches they made.
 */
export function calibrateBatchNorm(network: tfl.LayersModel, train: CachedPart, input: InputSpec, images: number, batchSize: number): number {
  const n = Math.min(train.examples.length, images);
  if (n === 0) return 0;
  function* batches(): Generator<tf.Tensor4D> {
    for (const idx of inOrder(n, batchSize)) {
      if (idx.length < 2) break; // a single image has no batch variance
      const b = makeBatch(idx, train, input);
      tf.dispose([b.y, b.w, b.mask ?? []]);
      yield b.x;
      b.x.dispose();
    }
  }
  return recalibrateBatchNorm(network, batches());
}

/** A validation pass: the mean loss, the probabilities (n×C) and the targets as given (NaN where not graded). */
export interface Validation {
  loss: number;
  probs: Float32Array;
  targets: Float32Array;
}

/** Validation logits → loss and probabilities, batched, inference mode. */
export function validate(logits: tfl.LayersModel, activation: ModelMetadata['activation'], loss: TaskLoss, validation: CachedPart, input: InputSpec, batchSize: number): Validation {
  const { examples } = validation;
  const numClasses = examples[0].target.length;
  const probs = new Float32Array(examples.length * numClasses);
  const targets = new Float32Array(examples.length * numClasses);
  let lossSum = 0;
  for (const idx of inOrder(examples.length, batchSize)) {
    const start = idx[0];
    const b = makeBatch(idx, validation, input);
    const [l, p] = tf.tidy(() => {
      const z = logits.predict(b.x) as tf.Tensor2D;
      const l = loss(b.y, z, b.w, b.mask);
      const pr = activation === 'softmax' ? tf.softmax(z) : tf.sigmoid(z);
      return [l.dataSync()[0], pr.dataSync() as Float32Array];
    });
    lossSum += l * idx.length;
    probs.set(p, start * numClasses);
    // the targets as given, NaN where not graded, so that scoring skips those
    idx.forEach((j, i) => targets.set(examples[j].target, (start + i) * numClasses));
    disposeBatch(b);
  }
  return { loss: lossSum / examples.length, probs, targets };
}
