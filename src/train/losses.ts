import * as tf from '@tensorflow/tfjs-core';
import type { ModelMetadata } from '../models/metadata.js';
import { balancedClassWeights } from '../models/tasks.js';
import type { Example } from '../models/tasks.js';

/**
 * Targets with "not graded" entries (NaN: the source left the class empty) split into 0-filled targets and a 0/1
 * mask, which the losses multiply in so that an ungraded class neither rewards nor punishes the prediction.
 * `mask` is undefined when every entry is graded.
 */
export function splitGraded(targets: Float32Array): { targets: Float32Array; mask?: Float32Array } {
  let mask: Float32Array | undefined;
  let filled = targets;
  for (let i = 0; i < targets.length; i++) {
    if (!Number.isNaN(targets[i])) continue;
    if (!mask) {
      mask = new Float32Array(targets.length).fill(1);
      filled = Float32Array.from(targets);
    }
    mask[i] = 0;
    filled[i] = 0;
  }
  return mask ? { targets: filled, mask } : { targets };
}

/**
 * Class-weighted binary cross-entropy on logits, averaged over examples (each weighted by `sampleWeight`) and summed
 * over classes / divided by their number. Stable form: log σ(z) = -softplus(-z), log(1 - σ(z)) = -softplus(z).
 * `mask` (n×C, 0 where a class is not graded) drops those terms; the divisor stays the number of classes, so that a
 * photograph graded for two classes counts as two graded labels, not as seven.
 */
export function weightedSigmoidCrossEntropy(
  targets: tf.Tensor2D,
  logits: tf.Tensor2D,
  positiveWeight: tf.Tensor1D,
  negativeWeight: tf.Tensor1D,
  sampleWeight: tf.Tensor1D,
  mask?: tf.Tensor2D,
): tf.Scalar {
  return tf.tidy(() => {
    const pos = tf.mul(tf.mul(targets, tf.softplus(tf.neg(logits))), positiveWeight);
    const neg = tf.mul(tf.mul(tf.sub(1, targets), tf.softplus(logits)), negativeWeight);
    const terms = tf.add(pos, neg);
    const perExample = tf.mean(mask ? tf.mul(terms, mask) : terms, 1);
    return tf.div(tf.sum(tf.mul(perExample, sampleWeight)), tf.maximum(tf.sum(sampleWeight), 1e-8)) as tf.Scalar;
  });
}

/** Class-weighted softmax cross-entropy on logits with one-hot (or soft) targets; the class weight of the target. */
export function weightedSoftmaxCrossEntropy(
  targets: tf.Tensor2D,
  logits: tf.Tensor2D,
  classWeight: tf.Tensor1D,
  sampleWeight: tf.Tensor1D,
): tf.Scalar {
  return tf.tidy(() => {
    const logp = tf.logSoftmax(logits);
    const perExample = tf.neg(tf.sum(tf.mul(tf.mul(targets, logp), classWeight), 1));
    return tf.div(tf.sum(tf.mul(perExample, sampleWeight)), tf.maximum(tf.sum(sampleWeight), 1e-8)) as tf.Scalar;
  });
}

/** A task's training loss: its cross-entropy with class weights balanced on the training part. */
export interface TaskLoss {
  (targets: tf.Tensor2D, logits: tf.Tensor2D, sampleWeight: tf.Tensor1D, mask?: tf.Tensor2D): tf.Scalar;
  dispose(): void;
}

/** The loss of a network with `activation` outputs trained on `train`: every class weighs the same (see balancedClassWeights). */
export function taskLoss(train: Example[], numClasses: number, activation: ModelMetadata['activation']): TaskLoss {
  const weights = balancedClassWeights(train, numClasses, activation);
  const posW = tf.tensor1d(weights.positive);
  const negW = tf.tensor1d(weights.negative);
  const loss = (y: tf.Tensor2D, logits: tf.Tensor2D, w: tf.Tensor1D, mask?: tf.Tensor2D): tf.Scalar =>
    activation === 'softmax' ? weightedSoftmaxCrossEntropy(y, logits, posW, w) : weightedSigmoidCrossEntropy(y, logits, posW, negW, w, mask);
  return Object.assign(loss, { dispose: () => tf.dispose([posW, negW]) });
}
