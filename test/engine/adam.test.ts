// The native Adam update (src/engine/adam.ts) against tfjs's own AdamOptimizer on the JS CPU backend.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { countNativeCalls, nativeOrSkip, randomValues } from './native.js';

const skip = await nativeOrSkip();

const SHAPES = [[3, 3, 4, 5], [7], [1], [200, 300]];

/** Runs `steps` Adam updates of a few variables with fixed gradients; returns values, m and v of each variable. */
function adamRun(backend: string, steps: number, opts: { lr: number; beta1?: number; beta2?: number; eps?: number }): Float32Array[] {
  tf.setBackend(backend);
  const vars = SHAPES.map((s, i) => tf.variable(tf.tensor(randomValues(tf.util.sizeFromShape(s), 10 + i), s), true, `adam_test_${backend}_${i}`));
  const opt = tf.train.adam(opts.lr, opts.beta1, opts.beta2, opts.eps);
  for (let step = 0; step < steps; step++) {
    tf.tidy(() => {
      // Gradients with mixed signs and scales, one exactly zero, different on every step.
      const grads = vars.map((v, i) => {
        const g = randomValues(v.size, 1000 * step + i, -3, 3);
        if (i === 0) g[0] = 0;
        return { name: v.name, tensor: tf.tensor(g, v.shape) };
      });
      opt.applyGradients(grads);
    });
  }
  const out = [...vars.map((v) => v.dataSync() as Float32Array)];
  const state = opt as unknown as { accumulatedFirstMoment: { variable: tf.Variable }[]; accumulatedSecondMoment: { variable: tf.Variable }[] };
  for (let i = 0; i < vars.length; i++) {
    out.push(state.accumulatedFirstMoment[i].variable.dataSync() as Float32Array);
    out.push(state.accumulatedSecondMoment[i].variable.dataSync() as Float32Array);
  }
  opt.dispose();
  tf.dispose(vars);
  return out;
}

describe('native Adam', { skip }, () => {
  for (const opts of [{ lr: 1e-3 }, { lr: 0.1, beta1: 0.5, beta2: 0.9, eps: 1e-4 }]) {
    it(`is bit-identical to tfjs's Adam over 5 steps (${JSON.stringify(opts)})`, () => {
      const { result: native, calls } = countNativeCalls(() => adamRun('native', 5, opts));
      const cpu = adamRun('cpu', 5, opts);
      assert.equal(calls.adamUpdate, 5, 'one native update per step for all variables');
      assert.equal(native.length, cpu.length);
      for (let i = 0; i < cpu.length; i++) assert.deepEqual(native[i], cpu[i], `array ${i}`);
    });
  }

  it('keeps tfjs semantics for variables without a gradient and leaks no tensors', () => {
    tf.setBackend('native');
    const a = tf.variable(tf.ones([4]), true, 'adam_test_a');
    const b = tf.variable(tf.ones([4]), true, 'adam_test_b');
    const opt = tf.train.adam(0.1);
    opt.minimize(() => tf.sum(tf.mul(a, a)) as tf.Scalar, false, [a, b]); // warm-up: creates the moments
    const before = tf.memory().numTensors;
    opt.minimize(() => tf.sum(tf.mul(a, a)) as tf.Scalar, false, [a, b]);
    assert.equal(tf.memory().numTensors, before);
    assert.deepEqual(Array.from(b.dataSync()), [1, 1, 1, 1]);
    assert.ok(a.dataSync()[0] < 1);
    opt.dispose();
    tf.dispose([a, b]);
  });
});
