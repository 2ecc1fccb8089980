// Forward convolutions with packed weights (src/engine/packed-weights.ts, native conv2dPack) against the JS CPU
// kernels: the first call packs, later calls and other batch sizes reuse the pack, and releasing frees it.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { countNativeCalls, nativeOrSkip, randomValues, relativeError, TOLERANCE } from './native.js';
import { loadAddon } from '../../src/engine/addon.js';
import { packWeights } from '../../src/engine/packed-weights.js';

const skip = await nativeOrSkip();

interface Case {
  name: string;
  filter: [number, number, number, number];
  /** The input's height, width and channels. */
  input: [number, number, number];
  run(x: tf.Tensor4D, filter: tf.Tensor4D, bias: tf.Tensor1D, residual: tf.Tensor4D | null): tf.Tensor;
  /** The output's shape for batch n (for the residual operand). */
  residual?: (n: number) => number[];
  /** The same computation from tfjs's own ops, where run uses a kernel only the native backend has. */
  reference?: Case['run'];
}

const CASES: Case[] = [
  {
    name: 'Conv2D 3x3 stride 2 same, bias, ReLU6',
    filter: [3, 3, 5, 16],
    input: [9, 9, 5],
    run: (x, filter, bias) => tf.fused.conv2d({ x, filter, bias, strides: 2, pad: 'same', activation: 'relu6' }),
  },
  {
    name: 'Conv2D 1x1 without bias',
    filter: [1, 1, 16, 24],
    input: [6, 6, 16],
    run: (x, filter) => tf.conv2d(x, filter, 1, 'valid'),
  },
  {
    name: 'depthwise 3x3, bias, ReLU6',
    filter: [3, 3, 16, 1],
    input: [8, 8, 16],
    run: (x, filter, bias) => tf.fused.depthwiseConv2d({ x, filter, bias, strides: 1, pad: 'same', activation: 'relu6' }),
  },
  {
    name: 'Conv2D with a residual and ReLU (FundusConv2DResidual)',
    filter: [1, 1, 8, 16],
    input: [7, 7, 8],
    residual: (n) => [n, 7, 7, 16],
    run: (x, filter, bias, residual) =>
      tf.engine().runKernel('FundusConv2DResidual', { x, filter, bias, residual: residual! } as never, { strides: 1, pad: 'same', dilations: 1, dataFormat: 'NHWC', activation: 'relu' } as never) as tf.Tensor,
    reference: (x, filter, bias, residual) => tf.relu(tf.add(tf.add(tf.conv2d(x, filter, 1, 'same'), bias), residual!)),
  },
];

function packState() {
  const i = loadAddon()!.info();
  return { packs: i.weightPacks ?? 0, bytes: i.packedWeightBytes ?? 0 };
}

describe('forward convolutions with packed weights match the JS CPU kernels', { skip }, () => {
  for (const c of CASES) {
    it(c.name, async () => {
      const biasLength = c.name.startsWith('depthwise') ? c.filter[2] * c.filter[3] : c.filter[3];
      const filterValues = randomValues(c.filter.reduce((a, b) => a * b), 5);
      const biasValues = randomValues(biasLength, 6, -0.3, 0.3);
      const compute = (n: number) => {
        const x = tf.tensor4d(randomValues(n * c.input.reduce((a, b) => a * b), 7 + n), [n, ...c.input]);
        const residual = c.residual ? tf.tensor4d(randomValues(c.residual(n).reduce((a, b) => a * b), 9 + n), c.residual(n) as [number, number, number, number]) : null;
        return { x, residual };
      };
      // Expected: the JS CPU kernels.
      await tf.setBackend('cpu');
      const expected = new Map<number, Float32Array>();
      for (const n of [2, 3]) {
        expected.set(n, tf.tidy(() => {
          const { x, residual } = compute(n);
          return (c.reference ?? c.run)(x, tf.tensor4d(filterValues, c.filter), tf.tensor1d(biasValues), residual).dataSync() as Float32Array;
        }));
      }
      await tf.setBackend('native');
      const start = packState();
      const filter = tf.tensor4d(filterValues, c.filter);
      const bias = tf.tensor1d(biasValues);
      const owner = {};
      const release = packWeights([filter], owner);
      try {
        assert.equal(packState().packs, start.packs + 1, 'one pack for the filter');
        for (const [round, n] of [2, 3, 2, 3].entries()) {
          const { result, calls } = countNativeCalls(() => tf.tidy(() => {
            const { x, residual } = compute(n);
            return c.run(x, filter, bias, residual).dataSync() as Float32Array;
          }));
          assert.equal(calls.conv2dForward, 1, 'ran natively');
          const err = relativeError(result, expected.get(n)!);
          assert.ok(err <= TOLERANCE, `round ${round}, batch ${n}: relative error ${err}`);
          if (round === 0) assert.ok(packState().bytes > start.bytes, 'the first call packed the filter');
          if (round === 1) {
            // Proof that later calls use the packed copies (one per batch size, made in rounds 0 and 1): the filter's
            // own array is overwritten (never done outside this test: tfjs data is immutable), and the results do
            // not change.
            const backend = tf.backend() as unknown as { data: { get(id: object): { values: Float32Array } } };
            backend.data.get(filter.dataId).values.fill(0);
          }
        }
      } finally {
        release();
        tf.dispose([filter, bias]);
      }
      assert.deepEqual(packState(), start, 'releasing frees the pack and its packed weights');
      release(); // a second release is a no-op
      assert.deepEqual(packState(), start);
    });
  }

  it('two owners of one filter share a pack, freed when the last releases it', async () => {
    await tf.setBackend('native');
    const start = packState();
    const filter = tf.tensor4d(randomValues(3 * 3 * 4 * 8, 1), [3, 3, 4, 8]);
    const a = packWeights([filter], {});
    const b = packWeights([filter, filter], {});
    assert.equal(packState().packs, start.packs + 1);
    a();
    assert.equal(packState().packs, start.packs + 1, 'still held by the second owner');
    b();
    assert.deepEqual(packState(), start);
    filter.dispose();
  });
});
