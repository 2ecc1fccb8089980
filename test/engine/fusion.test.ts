// The engine's batch-norm gradient (src/engine/batchnorm-gradient.ts) against tfjs's node-by-node gradient on the
// JS CPU backend: with the batch's moments fused (src/engine/fusion.ts; tfjs's moments + batchNorm ops, and
// tfjs-layers' BatchNormalization in training mode), and with given statistics (inference mode, frozen batch norm).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { countNativeCalls, nativeOrSkip, randomValues, relativeError } from './native.js';

const skip = await nativeOrSkip();

/** Gradients of a loss through batch normalisation by the batch's moments, with respect to x, gamma and beta;
 * `leak` also feeds the batch mean into the loss by another path (then the moments keep their own gradients). */
function opGrads(backend: string, shape: number[], leak = false, relu: 'none' | 'only-bn' | 'also-loss' = 'none'): Float32Array[] {
  tf.setBackend(backend);
  return tf.tidy(() => {
    const c = shape[shape.length - 1];
    const x = tf.tensor(randomValues(tf.util.sizeFromShape(shape), 3, -2, 3), shape);
    const gamma = tf.tensor1d(randomValues(c, 4, 0.5, 1.5));
    const beta = tf.tensor1d(randomValues(c, 5));
    const w = tf.tensor(randomValues(tf.util.sizeFromShape(shape), 6), shape);
    const axes = shape.slice(0, -1).map((_, i) => i);
    const f = (x0: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => {
      const xs = relu === 'none' ? x0 : tf.relu(x0);
      const { mean, variance } = tf.moments(xs, axes);
      const y = tf.batchNorm(xs, mean, variance, b, g, 1e-3);
      let loss = tf.sum(tf.mul(tf.square(y), w));
      if (relu === 'also-loss') loss = tf.add(loss, tf.sum(tf.mul(xs, w)));
      return (leak ? tf.add(loss, tf.sum(tf.square(mean))) : loss) as tf.Scalar;
    };
    return tf.grads(f)([x, gamma, beta]).map((g) => g.dataSync() as Float32Array);
  });
}

/** The same through a tfjs-layers BatchNormalization layer (training mode: it also updates its moving averages). */
function layerGrads(backend: string, shape: number[]): Float32Array[] {
  tf.setBackend(backend);
  const layer = tfl.layers.batchNormalization({ epsilon: 1e-3 });
  const out = tf.tidy(() => {
    const x = tf.tensor(randomValues(tf.util.sizeFromShape(shape), 7, -2, 3), shape);
    const w = tf.tensor(randomValues(tf.util.sizeFromShape(shape), 8), shape);
    layer.build(shape);
    const vars = layer.trainableWeights.map((v) => (v as unknown as { val: tf.Variable }).val);
    const { grads } = tf.variableGrads(() => tf.sum(tf.mul(tf.square(layer.apply(x, { training: true }) as tf.Tensor), w)) as tf.Scalar, vars);
    const dx = tf.grad((xs: tf.Tensor) => tf.sum(tf.mul(tf.square(layer.apply(xs, { training: true }) as tf.Tensor), w)) as tf.Scalar)(x);
    return [dx, ...vars.map((v) => grads[v.name])].map((t) => t.dataSync() as Float32Array);
  });
  layer.weights.forEach((v) => (v as unknown as { val: tf.Variable }).val.dispose());
  return out;
}

/** Gradients through batch normalisation with given statistics, with respect to x, mean, variance, gamma and beta. */
function givenStatsGrads(backend: string, shape: number[]): Float32Array[] {
  tf.setBackend(backend);
  return tf.tidy(() => {
    const c = shape[shape.length - 1];
    const x = tf.tensor(randomValues(tf.util.sizeFromShape(shape), 21, -2, 3), shape);
    const w = tf.tensor(randomValues(tf.util.sizeFromShape(shape), 22), shape);
    const stats = [tf.tensor1d(randomValues(c, 23)), tf.tensor1d(randomValues(c, 24, 0.2, 2)), tf.tensor1d(randomValues(c, 25, 0.5, 1.5)), tf.tensor1d(randomValues(c, 26))];
    const f = (a: tf.Tensor, m: tf.Tensor, v: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(tf.square(tf.batchNorm(a, m, v, b, g, 1e-3)), w)) as tf.Scalar;
    return tf.grads(f)([x, ...stats]).map((t) => t.dataSync() as Float32Array);
  });
}

/** The input's gradient through a frozen tfjs-layers BatchNormalization (inference mode inside a training step). */
function frozenLayerGrad(backend: string, shape: number[]): Float32Array[] {
  tf.setBackend(backend);
  const layer = tfl.layers.batchNormalization({ epsilon: 1e-3 });
  const out = tf.tidy(() => {
    const c = shape[shape.length - 1];
    layer.build(shape);
    layer.setWeights([tf.tensor1d(randomValues(c, 27, 0.5, 1.5)), tf.tensor1d(randomValues(c, 28)), tf.tensor1d(randomValues(c, 29)), tf.tensor1d(randomValues(c, 30, 0.2, 2))]);
    const x = tf.tensor(randomValues(tf.util.sizeFromShape(shape), 31, -2, 3), shape);
    const w = tf.tensor(randomValues(tf.util.sizeFromShape(shape), 32), shape);
    return [tf.grad((xs: tf.Tensor) => tf.sum(tf.mul(tf.square(layer.apply(xs, { training: false }) as tf.Tensor), w)) as tf.Scalar)(x).dataSync() as Float32Array];
  });
  layer.weights.forEach((v) => v.dispose());
  return out;
}

function assertClose(native: Float32Array[], cpu: Float32Array[]): void {
  assert.equal(native.length, cpu.length);
  for (let i = 0; i < cpu.length; i++) {
    const e = relativeError(native[i], cpu[i]);
    assert.ok(e <= 1e-4, `gradient ${i}: relative error ${e}`);
  }
}

describe('batch-norm gradient', { skip }, () => {
  for (const shape of [[4, 5, 5, 6], [1, 7, 3, 5], [2, 3, 3, 64]]) {
    it(`matches tfjs's gradients for moments + batchNorm, shape ${shape.join('x')}`, () => {
      const { result: native, calls } = countNativeCalls(() => opGrads('native', shape));
      assert.equal(calls.batchNormGradX, 1, 'the fused gradient ran');
      assertClose(native, opGrads('cpu', shape));
    });
  }

  it("matches tfjs's gradients through tfjs-layers' BatchNormalization in training mode", () => {
    const { result: native, calls } = countNativeCalls(() => layerGrads('native', [4, 6, 6, 8]));
    // The input's gradient is asked for once (the variables' gradients come from the per-channel sums).
    assert.equal(calls.batchNormGradX, 1, 'the fused input gradient ran');
    assertClose(native, layerGrads('cpu', [4, 6, 6, 8]));
  });

  it('is not applied to a rank-2 batch (tfjs reshapes it first), which keeps tfjs gradients', () => {
    const { result: native, calls } = countNativeCalls(() => opGrads('native', [16, 10]));
    assert.equal(calls.batchNormGradX ?? 0, 0);
    assertClose(native, opGrads('cpu', [16, 10]));
  });

  it('leaves the moments alone when the batch mean also reaches the loss by another path', () => {
    const { result: native, calls } = countNativeCalls(() => opGrads('native', [4, 5, 5, 6], true));
    assert.equal(calls.batchNormGradX ?? 0, 0, 'not fused');
    assertClose(native, opGrads('cpu', [4, 5, 5, 6], true));
  });

  it('folds a ReLU before the batch norm into the same pass', () => {
    const { result: native, calls } = countNativeCalls(() => opGrads('native', [4, 5, 5, 6], false, 'only-bn'));
    assert.equal(calls.batchNormGradX, 1);
    assert.equal(calls.activationGrad ?? 0, 0, 'no separate ReLU gradient');
    assertClose(native, opGrads('cpu', [4, 5, 5, 6], false, 'only-bn'));
  });

  it('keeps the ReLU gradient when its output also reaches the loss by another path', () => {
    const { result: native, calls } = countNativeCalls(() => opGrads('native', [4, 5, 5, 6], false, 'also-loss'));
    assert.equal(calls.batchNormGradX, 1);
    assert.equal(calls.activationGrad, 1, 'the ReLU gradient ran on the summed gradient');
    assertClose(native, opGrads('cpu', [4, 5, 5, 6], false, 'also-loss'));
  });

  it("given statistics (inference mode): tfjs's gradients for x, mean, variance, gamma and beta from one reduction pass", () => {
    const { result: native, calls } = countNativeCalls(() => givenStatsGrads('native', [4, 5, 5, 6]));
    assert.equal(calls.batchNormGradStats, 1, 'one pass for every reduction');
    assert.equal(calls.batchNormGradX ?? 0, 0, "the input's gradient reads dy alone");
    assertClose(native, givenStatsGrads('cpu', [4, 5, 5, 6]));
  });

  it("a frozen BatchNormalization layer: tfjs's input gradient", () => {
    const { result: native, calls } = countNativeCalls(() => frozenLayerGrad('native', [2, 4, 4, 8]));
    assert.equal(calls.batchNormGradStats, 1);
    assertClose(native, frozenLayerGrad('cpu', [2, 4, 4, 8]));
  });

  it('leaks no tensors', () => {
    opGrads('native', [4, 5, 5, 6]);
    givenStatsGrads('native', [4, 5, 5, 6]);
    const before = tf.memory().numTensors;
    opGrads('native', [4, 5, 5, 6]);
    givenStatsGrads('native', [4, 5, 5, 6]);
    assert.equal(tf.memory().numTensors, before);
  });
});
