// Batch moments in one native pass (src/engine/moments.ts) against tfjs's moments on the JS CPU backend: values,
// the kernel's own gradient, and tfjs-layers' batch normalisation in training (which it serves).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { countNativeCalls, nativeOrSkip, randomValues, relativeError, runOn, TOLERANCE } from './native.js';
import { tfjsCoreExports } from '../../src/engine/internals.js';
import { momentsCounts } from '../../src/engine/moments.js';
import { fusionCounts } from '../../src/engine/fusion.js';

const skip = await nativeOrSkip();

/** tfjs-core's moments as tfjs-layers calls it (the module export the engine replaces on the native backend). */
const moments = (x: tf.Tensor, axis: number[], keepDims = false) =>
  (tfjsCoreExports().moments as (x: tf.Tensor, axis: number[], keepDims?: boolean) => { mean: tf.Tensor; variance: tf.Tensor })(x, axis, keepDims);

const CASES = [
  { name: 'NHWC, batch-norm axes', shape: [3, 7, 5, 6], axis: [0, 1, 2], lo: -1, hi: 1 },
  { name: 'large mean against the spread', shape: [4, 6, 6, 5], axis: [0, 1, 2], lo: 1000, hi: 1001 },
  { name: 'rank 2 (dense batch norm), large parallel size', shape: [4096, 24], axis: [0], lo: -3, hi: 5 },
  { name: 'negative axes', shape: [2, 3, 4, 3], axis: [-4, -3, -2], lo: 0, hi: 2 },
];

describe('native batch moments', { skip }, () => {
  for (const c of CASES) {
    it(`equal tfjs's moments: ${c.name}`, () => {
      const input = [{ shape: c.shape, values: randomValues(c.shape.reduce((a, b) => a * b), 7, c.lo, c.hi) }];
      const fn = (x: tf.Tensor) => {
        const m = moments(x, c.axis);
        return [m.mean, m.variance];
      };
      const { result: native, calls } = countNativeCalls(() => runOn('native', input, fn));
      assert.equal(calls.batchMoments, 1, 'ran natively');
      const cpu = runOn('cpu', input, fn);
      for (let i = 0; i < 2; i++) {
        const err = relativeError(native[i], cpu[i]);
        assert.ok(err <= TOLERANCE, `${i === 0 ? 'mean' : 'variance'}: relative error ${err}`);
      }
    });
  }

  it("leaves other reductions to tfjs's moments (keepDims, not per channel)", () => {
    const input = [{ shape: [2, 3, 4], values: randomValues(24, 3) }];
    for (const fn of [(x: tf.Tensor) => moments(x, [0, 1], true).variance, (x: tf.Tensor) => moments(x, [1, 2]).variance]) {
      const { result: native, calls } = countNativeCalls(() => runOn('native', input, fn));
      assert.equal(calls.batchMoments ?? 0, 0);
      assert.ok(relativeError(native[0], runOn('cpu', input, fn)[0]) <= TOLERANCE);
    }
  });

  it("the kernel's own gradient (moments used outside a batch normalisation) equals tfjs's", () => {
    const input = [{ shape: [3, 4, 4, 5], values: randomValues(240, 9, -2, 3) }];
    const w = randomValues(10, 4);
    const fn = (x: tf.Tensor) =>
      tf.grad((t: tf.Tensor) => {
        const m = moments(t, [0, 1, 2]);
        return tf.add(tf.sum(tf.mul(m.mean, w.slice(0, 5))), tf.sum(tf.mul(m.variance, w.slice(5))));
      })(x);
    const native = runOn('native', input, fn);
    const cpu = runOn('cpu', input, fn);
    assert.ok(relativeError(native[0], cpu[0]) <= TOLERANCE, `relative error ${relativeError(native[0], cpu[0])}`);
  });

  it("serves tfjs-layers' batch normalisation in training: same output and gradients, fused on the tape", () => {
    const shape = [4, 5, 5, 6];
    const input = [{ shape, values: randomValues(600, 5, -1, 4) }];
    const bn = tfl.layers.batchNormalization({ name: 'moments_test_bn' });
    bn.build(shape);
    const w = randomValues(600, 6);
    // A weighted loss: sum(bn(x)^2) alone is nearly constant (the output is normalised), its gradient all rounding.
    const loss = (t: tf.Tensor) => tf.sum(tf.mul(tf.square(bn.apply(t, { training: true }) as tf.Tensor), tf.tensor(w, shape))) as tf.Scalar;
    const fn = (x: tf.Tensor) => {
      const { value, grads } = tf.variableGrads(() => loss(x), bn.trainableWeights.map((v) => v.read() as tf.Variable));
      const dx = tf.grad(loss)(x);
      return [value, dx, ...Object.values(grads)];
    };
    const counted = momentsCounts.native;
    const fused = fusionCounts.batchNorms;
    const native = runOn('native', input, fn);
    assert.equal(momentsCounts.native - counted, 2, 'native moments in both passes');
    assert.equal(fusionCounts.batchNorms - fused, 2, 'fused on the tape');
    const cpu = runOn('cpu', input, fn);
    native.forEach((v, i) => assert.ok(relativeError(v, cpu[i]) <= TOLERANCE, `output ${i}: relative error ${relativeError(v, cpu[i])}`));
    tf.setBackend('native');
  });
});
