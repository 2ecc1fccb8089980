import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { batchNormMomentum, setBatchNormMomentum } from '../engine/internals.js';

/**
 * Re-estimates every BatchNormalization layer's moving mean and variance as the plain average of the batch
 * statistics over `batches` (the "precise BN" recipe). Training keeps exponential moving averages with momentum
 * 0.99, which after a short run (a few hundred steps, weights still moving fast) lag far behind the network: the
 * inference-mode outputs then differ from what training optimised. This pass leaves every trainable weight alone.
 * Works by setting each layer's momentum to k/(k+1) for the k-th batch, which turns the moving average into a
 * cumulative mean.
 */
export function recalibrateBatchNorm(network: tfl.LayersModel, batches: Iterable<tf.Tensor4D>): number {
  const layers = network.layers.filter((l) => l.getClassName() === 'BatchNormalization');
  if (layers.length === 0) return 0;
  const saved = layers.map((l) => batchNormMomentum(l));
  let k = 0;
  try {
    for (const x of batches) {
      for (const l of layers) setBatchNormMomentum(l, k / (k + 1));
      tf.tidy(() => {
        network.apply(x, { training: true });
      });
      k++;
    }
  } finally {
    layers.forEach((l, i) => setBatchNormMomentum(l, saved[i]));
  }
  return k;
}
