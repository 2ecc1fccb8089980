import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';

/**
 * Training-mode batch normalisation with a closed-form gradient. tfjs-layers differentiates its batch norm through
 * `moments` and a broadcasting `batchNorm` op, whose generic gradients tile per-channel tensors to full activation
 * size; on a CPU that costs more than the convolutions themselves. The classic closed form
 *   dx = γ·rstd·(dy − mean(dy) − x̂·mean(dy·x̂)),  dγ = Σ dy·x̂,  dβ = Σ dy
 * needs a handful of element-wise passes. The layers stay stock tfjs BatchNormalization layers (same weights,
 * config, inference path and moving-average update), so saved models are unchanged.
 */

interface BnInternals {
  axis: number;
  epsilon: number;
  momentum: number;
  gamma: tfl.LayerVariable | null;
  beta: tfl.LayerVariable | null;
  movingMean: tfl.LayerVariable;
  movingVariance: tfl.LayerVariable;
}

/** Normalises `x` over all axes but the last with batch statistics; returns y, the batch mean and (biased) variance. */
export function batchNormTraining(
  x: tf.Tensor,
  gamma: tf.Tensor1D,
  beta: tf.Tensor1D,
  epsilon: number,
): { y: tf.Tensor; mean: tf.Tensor1D; variance: tf.Tensor1D } {
  const axes = x.shape.slice(0, -1).map((_, i) => i);
  const count = x.size / x.shape[x.rank - 1];
  const { mean, variance } = tf.tidy(() => tf.moments(x, axes));
  const op = tf.customGrad(((xs: tf.Tensor, g: tf.Tensor, b: tf.Tensor, save: tf.GradSaveFunc) => {
    const rstd = tf.rsqrt(tf.add(variance, epsilon));
    const xhat = tf.mul(tf.sub(xs, mean), rstd);
    const value = tf.add(tf.mul(xhat, g), b);
    save([xhat, rstd, g]);
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sxhat, srstd, sg] = saved;
        const dbeta = tf.sum(dy, axes);
        const dgamma = tf.sum(tf.mul(dy, sxhat), axes);
        const centred = tf.sub(tf.sub(dy, tf.div(dbeta, count)), tf.mul(sxhat, tf.div(dgamma, count)));
        const dx = tf.mul(centred, tf.mul(sg, srstd));
        return [dx, dgamma, dbeta];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  const y = op(x, gamma, beta);
  return { y, mean: mean as tf.Tensor1D, variance: variance as tf.Tensor1D };
}

/**
 * Makes every BatchNormalization layer of `network` (axis −1, with scale and centre) use batchNormTraining when
 * called with `training: true`. Inference calls keep the stock code. Returns the number of layers patched.
 */
export function useFastBatchNorm(network: tfl.LayersModel): number {
  let patched = 0;
  for (const layer of network.layers) {
    if (layer.getClassName() !== 'BatchNormalization') continue;
    const bn = layer as unknown as BnInternals & tfl.layers.Layer;
    const rank = layer.inputSpec?.[0]?.ndim;
    if ((bn.axis !== -1 && (rank === undefined || bn.axis !== rank - 1)) || !bn.gamma || !bn.beta) continue;
    const original = layer.call.bind(layer);
    layer.call = (inputs: tf.Tensor | tf.Tensor[], kwargs: Record<string, unknown>) => {
      if (!kwargs?.training) return original(inputs, kwargs);
      const x = Array.isArray(inputs) ? inputs[0] : inputs;
      const { y, mean, variance } = batchNormTraining(x, bn.gamma!.read() as tf.Tensor1D, bn.beta!.read() as tf.Tensor1D, bn.epsilon);
      tf.tidy(() => {
        // Same update as tfjs-layers: moving ← moving − (moving − batch)·(1 − momentum).
        for (const [v, batch] of [
          [bn.movingMean, mean],
          [bn.movingVariance, variance],
        ] as const) {
          const orig = v.read();
          v.write(tf.sub(orig, tf.mul(tf.sub(orig, batch), 1 - bn.momentum)));
        }
      });
      tf.dispose([mean, variance]);
      return y;
    };
    patched++;
  }
  return patched;
}
