import * as tf from '@tensorflow/tfjs-core';

/**
 * Class-weighted binary cross-entropy on logits, averaged over examples (each weighted by `sampleWeight`) and summed
 * over classes / divided by their number. Stable form: log σ(z) = -softplus(-z), log(1 - σ(z)) = -softplus(z).
 */
export function weightedSigmoidCrossEntropy(
  targets: tf.Tensor2D,
  logits: tf.Tensor2D,
  positiveWeight: tf.Tensor1D,
  negativeWeight: tf.Tensor1D,
  sampleWeight: tf.Tensor1D,
): tf.Scalar {
  return tf.tidy(() => {
    const pos = tf.mul(tf.mul(targets, tf.softplus(tf.neg(logits))), positiveWeight);
    const neg = tf.mul(tf.mul(tf.sub(1, targets), tf.softplus(logits)), negativeWeight);
    const perExample = tf.mean(tf.add(pos, neg), 1);
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
