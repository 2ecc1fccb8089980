// Early release of saved tensors and gradients during the backward pass (src/engine/release.ts): the same
// gradients as the JS CPU backend, no leaks, nothing the caller holds is disposed, and a lower peak.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { nativeOrSkip, randomValues, relativeError } from './native.js';

const skip = await nativeOrSkip();

/** A graph with fan-out, broadcasting, batch-norm-like moments, ReLU, and a custom gradient that returns dy
 * itself for two inputs (the same tensor object becomes two partial gradients). */
function graph(x: tf.Tensor, b: tf.Tensor, w: tf.Tensor): tf.Scalar {
  const passDy = tf.customGrad(((p: tf.Tensor, q: tf.Tensor, save: (ts: tf.Tensor[]) => void) => {
    save([]);
    return { value: tf.add(p, q), gradFunc: (dy: tf.Tensor) => [dy, dy] };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  const a = tf.relu(tf.add(tf.mul(x, w), b)); // bias add with broadcasting, ReLU
  const mean = tf.mean(a, [0, 1, 2], true);
  const centred = tf.sub(a, mean);
  const variance = tf.mean(tf.square(centred), [0, 1, 2], true);
  const normed = tf.div(centred, tf.sqrt(tf.add(variance, 1e-3)));
  const mixed = passDy(normed, tf.mul(a, a)) as tf.Tensor; // a used four times
  return tf.sum(tf.mul(mixed, tf.sigmoid(normed))) as tf.Scalar;
}

const X = { shape: [4, 6, 6, 8], values: randomValues(4 * 6 * 6 * 8, 5) };
const B = { shape: [8], values: randomValues(8, 6) };
const W = { shape: [4, 6, 6, 8], values: randomValues(4 * 6 * 6 * 8, 7) };

function gradsOn(backend: string, withDy: boolean): Float32Array[] {
  tf.setBackend(backend);
  return tf.tidy(() => {
    const [x, b, w] = [X, B, W].map((i) => tf.tensor(i.values, i.shape));
    const dy = withDy ? tf.scalar(0.5) : undefined;
    const grads = tf.grads((p: tf.Tensor, q: tf.Tensor, r: tf.Tensor) => graph(p, q, r))([x, b, w], dy);
    if (dy) assert.equal(dy.isDisposed, false, 'the caller\'s dy is left alone');
    for (const t of [x, b, w]) assert.equal(t.isDisposed, false);
    return [...grads.map((g) => g.dataSync() as Float32Array), ...(dy ? [dy.dataSync() as Float32Array] : [])];
  });
}

describe('early release in the backward pass', { skip }, () => {
  for (const withDy of [false, true]) {
    it(`gives the JS CPU backend's gradients${withDy ? ' (with a caller dy)' : ''} and leaks nothing`, () => {
      tf.setBackend('native');
      gradsOn('native', withDy); // warm-up (first-use allocations)
      const before = tf.memory();
      const native = gradsOn('native', withDy);
      tf.setBackend('native');
      const after = tf.memory();
      assert.equal(after.numTensors, before.numTensors, 'no tensors leak');
      assert.equal(after.numBytes, before.numBytes, 'no bytes leak');
      const cpu = gradsOn('cpu', withDy);
      for (let i = 0; i < cpu.length; i++) {
        const e = relativeError(native[i], cpu[i]);
        assert.ok(e <= 1e-4, `gradient ${i}: relative error ${e}`);
      }
    });
  }

  it('leaves higher-order gradients to tfjs (same second derivative as the JS CPU backend)', () => {
    const second = (backend: string) => {
      tf.setBackend(backend);
      return tf.tidy(() => {
        const x = tf.tensor(randomValues(64, 9), [8, 8]);
        const f = (t: tf.Tensor) => tf.sum(tf.mul(tf.relu(t), tf.square(tf.sub(t, tf.mean(t))))) as tf.Scalar;
        return tf.grad((t: tf.Tensor) => tf.sum(tf.grad(f)(t)) as tf.Scalar)(x).dataSync() as Float32Array;
      });
    };
    const e = relativeError(second('native'), second('cpu'));
    assert.ok(e <= 1e-4, `relative error ${e}`);
  });

  it('lowers the peak of tensor memory in a deep chain, against plain tfjs (the JS CPU backend)', () => {
    // Records tf.memory() when the backward pass reaches the bottom of the chain, where tfjs's peak is.
    let atBottom = 0;
    const probe = tf.customGrad(((t: tf.Tensor, save: (ts: tf.Tensor[]) => void) => {
      save([]);
      return { value: tf.mul(t, 1), gradFunc: (dy: tf.Tensor) => { atBottom = tf.memory().numBytes; return [tf.mul(dy, 1)]; } };
    }) as unknown as Parameters<typeof tf.customGrad>[0]);
    const step = (backend: string) => {
      tf.setBackend(backend);
      tf.tidy(() => {
        const x = tf.variable(tf.tensor(randomValues(64 * 64 * 16, 11), [64, 64, 16]), true, `release_x_${Math.random()}`);
        const g = tf.variableGrads(() => {
          let h = probe(x) as tf.Tensor;
          for (let i = 0; i < 6; i++) {
            const m = tf.mean(h, [0, 1], true);
            const c = tf.sub(h, m);
            h = tf.relu(tf.add(tf.div(c, tf.sqrt(tf.add(tf.mean(tf.square(c), [0, 1], true), 1e-3))), 0.1));
          }
          return tf.sum(h) as tf.Scalar;
        }, [x]);
        tf.dispose(g.grads);
        x.dispose();
      });
    };
    step('cpu');
    const without = atBottom;
    step('native');
    const withRelease = atBottom;
    assert.ok(withRelease < 0.5 * without, `peak with early release ${withRelease} B vs ${without} B in plain tfjs`);
  });
});
