// Native pooling, matmul, batch-norm, element-wise and reduction kernels against the JS CPU kernels.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { countNativeCalls, nativeOrSkip, randomValues, relativeError, runOn, TOLERANCE } from './native.js';

const skip = await nativeOrSkip();

const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
const input = (shape: number[], seed: number, lo = -1, hi = 1) => ({ shape, values: randomValues(size(shape), seed, lo, hi) });

function check(label: string, inputs: { shape: number[]; values: Float32Array }[], fn: (...xs: tf.Tensor[]) => tf.Tensor | tf.Tensor[], nativeCall: string, times = 1) {
  const { result: native, calls } = countNativeCalls(() => runOn('native', inputs, fn));
  assert.ok((calls[nativeCall] ?? 0) >= times, `${label}: expected ${times} native ${nativeCall} call(s), got ${JSON.stringify(calls)}`);
  const cpu = runOn('cpu', inputs, fn);
  for (let i = 0; i < cpu.length; i++) {
    const err = relativeError(native[i], cpu[i]);
    assert.ok(err <= TOLERANCE, `${label} output ${i}: relative error ${err}`);
  }
}

interface PoolCase { name: string; x: [number, number, number, number]; k: number | [number, number]; s: number | [number, number]; pad: 'valid' | 'same' }
const POOLS: PoolCase[] = [
  { name: '3x3 stride 2 valid', x: [2, 7, 7, 3], k: 3, s: 2, pad: 'valid' },
  { name: '2x2 stride 2 same, odd size', x: [1, 7, 9, 4], k: 2, s: 2, pad: 'same' },
  { name: '3x3 stride 1 same', x: [2, 6, 6, 2], k: 3, s: 1, pad: 'same' },
  { name: 'stride > kernel', x: [1, 9, 10, 3], k: 1, s: 3, pad: 'valid' },
  { name: 'AlexNet pool shape', x: [2, 27, 27, 16], k: 3, s: 2, pad: 'valid' },
  { name: 'non-square window, large channels', x: [1, 8, 8, 160], k: [2, 3], s: [2, 1], pad: 'same' },
];

describe('native pooling matches the JS CPU kernels', { skip }, () => {
  for (const c of POOLS) {
    it(`MaxPool + MaxPoolGrad: ${c.name}`, () => {
      const out = tf.tidy(() => tf.maxPool(tf.zeros(c.x) as tf.Tensor4D, c.k, c.s, c.pad).shape);
      const fn = (x: tf.Tensor, dy: tf.Tensor) => [
        tf.maxPool(x as tf.Tensor4D, c.k, c.s, c.pad),
        tf.grad((a: tf.Tensor) => tf.sum(tf.mul(tf.maxPool(a as tf.Tensor4D, c.k, c.s, c.pad), dy)))(x),
      ];
      check(c.name, [input(c.x, 1), input(out, 2)], fn, 'poolForward', 2);
      check(c.name, [input(c.x, 3), input(out, 4)], fn, 'poolBackward');
    });
    it(`AvgPool + AvgPoolGrad: ${c.name}`, () => {
      const out = tf.tidy(() => tf.avgPool(tf.zeros(c.x) as tf.Tensor4D, c.k, c.s, c.pad).shape);
      const fn = (x: tf.Tensor, dy: tf.Tensor) => [
        tf.avgPool(x as tf.Tensor4D, c.k, c.s, c.pad),
        tf.grad((a: tf.Tensor) => tf.sum(tf.mul(tf.avgPool(a as tf.Tensor4D, c.k, c.s, c.pad), dy)))(x),
      ];
      check(c.name, [input(c.x, 5), input(out, 6)], fn, 'poolBackward');
    });
  }
});

describe('native matmul matches the JS CPU kernels', { skip }, () => {
  const cases: { name: string; a: number[]; b: number[]; ta: boolean; tb: boolean }[] = [
    { name: 'plain', a: [5, 7], b: [7, 3], ta: false, tb: false },
    { name: 'transpose a', a: [7, 5], b: [7, 3], ta: true, tb: false },
    { name: 'transpose b', a: [5, 7], b: [3, 7], ta: false, tb: true },
    { name: 'both transposed', a: [7, 5], b: [3, 7], ta: true, tb: true },
    { name: 'batched', a: [2, 3, 4, 6], b: [2, 3, 6, 5], ta: false, tb: false },
    { name: 'broadcast batch', a: [1, 4, 6], b: [3, 6, 5], ta: false, tb: false },
    { name: 'dense-layer sized', a: [32, 1000], b: [1000, 64], ta: false, tb: false },
    { name: 'vector', a: [1, 9], b: [9, 1], ta: false, tb: false },
  ];
  for (const c of cases) {
    it(`BatchMatMul: ${c.name}`, () => {
      check(c.name, [input(c.a, 7), input(c.b, 8)], (a, b) => tf.matMul(a, b, c.ta, c.tb), 'batchMatMul');
    });
  }
  for (const activation of ['linear', 'relu', 'relu6', 'elu', 'sigmoid', 'leakyrelu'] as const) {
    it(`_FusedMatMul with bias and ${activation}, and its gradient`, () => {
      const fn = (a: tf.Tensor, b: tf.Tensor, bias: tf.Tensor) => [
        tf.fused.matMul({ a: a as tf.Tensor2D, b: b as tf.Tensor2D, bias, activation, leakyreluAlpha: 0.3 }),
        ...tf.grads((p: tf.Tensor, q: tf.Tensor, r: tf.Tensor) => tf.sum(tf.square(tf.fused.matMul({ a: p as tf.Tensor2D, b: q as tf.Tensor2D, bias: r, activation: activation === 'relu' ? 'relu' : 'linear' }))))([a, b, bias]),
      ];
      check(activation, [input([6, 40], 9, -3, 3), input([40, 11], 10), input([11], 11)], fn, 'batchMatMul', 3);
    });
  }
});

describe('native batch normalisation matches the JS CPU kernel', { skip }, () => {
  it('FusedBatchNorm per channel, with and without scale/offset, and its gradient', () => {
    const x = input([2, 5, 5, 8], 12, -4, 6);
    const m = input([8], 13);
    const v = input([8], 14, 0.1, 2);
    const o = input([8], 15);
    const s = input([8], 16);
    check('full', [x, m, v, o, s], (a, b, c, d, e) => tf.batchNorm(a, b, c, d, e, 1e-3), 'batchNorm');
    check('no scale/offset', [x, m, v], (a, b, c) => tf.batchNorm(a, b, c, undefined, undefined, 1e-5), 'batchNorm');
    check('scalar stats', [x, input([1], 17), input([1], 18, 0.5, 1)], (a, b, c) => tf.batchNorm(a, b, c), 'batchNorm');
    check('gradient', [x, m, v, o, s], (a, b, c, d, e) => tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.sum(tf.square(tf.batchNorm(p, b, c, d, q, 1e-3))))([a, e]), 'batchNorm');
  });
  it('training-mode batch norm (moments feeding batchNorm): gradients for x, scale and offset', () => {
    const fn = (x: tf.Tensor, o: tf.Tensor, s: tf.Tensor, r: tf.Tensor) =>
      tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => {
        const { mean, variance } = tf.moments(a, [0, 1, 2]);
        return tf.sum(tf.mul(tf.batchNorm(a, mean, variance, b, c, 1e-3), r));
      })([x, o, s]);
    check('bn training', [input([4, 6, 6, 8], 30, -2, 3), input([8], 31), input([8], 32), input([4, 6, 6, 8], 33)], fn, 'batchNormGradStats');
  });
  it('tfjs-layers moments (mean/variance over N,H,W) run natively', () => {
    check('moments', [input([4, 9, 9, 16], 19, 2, 5)], (a) => { const r = tf.moments(a, [0, 1, 2]); return [r.mean, r.variance]; }, 'reduce', 2);
  });
});

describe('native element-wise kernels match the JS CPU kernels', { skip }, () => {
  const shapes: [string, number[], number[]][] = [
    ['same shape', [2, 3, 4, 5], [2, 3, 4, 5]],
    ['channel vector', [2, 3, 4, 5], [5]],
    ['scalar', [4, 6, 7], []],
    ['scalar first', [], [4, 6, 7]],
    ['middle broadcast', [2, 3, 4, 5], [3, 1, 1]],
    ['both broadcast', [2, 1, 4, 1], [1, 3, 1, 5]],
    ['leading size-1', [1, 1, 9, 8], [9, 8]],
  ];
  const ops: [string, (a: tf.Tensor, b: tf.Tensor) => tf.Tensor][] = [
    ['add', tf.add], ['sub', tf.sub], ['mul', tf.mul], ['div', tf.div], ['maximum', tf.maximum], ['minimum', tf.minimum],
    ['squaredDifference', tf.squaredDifference],
  ];
  for (const [opName, op] of ops) {
    it(`binary ${opName} with broadcasting`, () => {
      for (const [name, a, b] of shapes) {
        check(`${opName} ${name}`, [input(a, 20), input(b, 21, 0.5, 2)], op, 'binary');
      }
    });
  }
  const unary: [string, (x: tf.Tensor) => tf.Tensor, number, number][] = [
    ['relu', tf.relu, -1, 1], ['relu6', tf.relu6, -3, 9], ['step', (x) => tf.step(x, 0.25), -1, 1], ['neg', tf.neg, -1, 1],
    ['exp', tf.exp, -3, 3], ['log', tf.log, 0.01, 5], ['sqrt', tf.sqrt, 0, 5], ['rsqrt', tf.rsqrt, 0.1, 5],
    ['square', tf.square, -2, 2], ['abs', tf.abs, -1, 1], ['sigmoid', tf.sigmoid, -6, 6], ['tanh', tf.tanh, -3, 3],
    ['reciprocal', tf.reciprocal, 0.2, 3], ['elu', tf.elu, -3, 3], ['leakyRelu', (x) => tf.leakyRelu(x, 0.3), -1, 1],
  ];
  for (const [name, fn, lo, hi] of unary) {
    it(`unary ${name} and its gradient`, () => {
      check(name, [input([3, 7, 11], 22, lo, hi)], (x) => [fn(x), tf.grad((a: tf.Tensor) => tf.sum(fn(a)))(x)], 'unary');
    });
  }
  it("tfjs-layers' relu6 activation runs as one Relu6 kernel forward and one native pass backward", () => {
    const layer = tfl.layers.activation({ activation: 'relu6' });
    const x = input([3, 7, 11], 36, -3, 9);
    const viaLayer = (a: tf.Tensor) => [layer.apply(a) as tf.Tensor, tf.grad((t: tf.Tensor) => tf.sum(tf.mul(layer.apply(t) as tf.Tensor, t)))(a)];
    check('layers relu6', [x], viaLayer, 'activationGrad');
    const { calls } = countNativeCalls(() => runOn('native', [x], viaLayer));
    assert.equal(calls.unary, 2, `one Relu6 kernel per forward pass, two passes here: ${JSON.stringify(calls)}`);
    assert.equal(calls.activationGrad, 1, `one native pass for the gradient: ${JSON.stringify(calls)}`);
    const [a, b] = runOn('cpu', [x], (t) => [layer.apply(t) as tf.Tensor, tf.minimum(6, tf.relu(t))]);
    assert.deepEqual(Array.from(a), Array.from(b));
  });
  it('Tile', () => {
    check('tile channels', [input([1, 1, 1, 6], 28)], (x) => tf.tile(x, [2, 3, 4, 1]), 'tile');
    check('tile every axis', [input([2, 3, 5], 29)], (x) => tf.tile(x, [3, 2, 2]), 'tile');
  });
  it('PadV2 with a constant (ZeroPadding2D), and its gradient', () => {
    check('pad NHWC spatial', [input([2, 5, 6, 3], 30)], (x) => tf.pad(x, [[0, 0], [3, 3], [3, 3], [0, 0]]), 'pad');
    check('pad every axis, uneven, value', [input([2, 3, 4], 31)], (x) => tf.pad(x, [[1, 0], [0, 2], [2, 1]], 0.5), 'pad');
    check('pad gradient', [input([1, 4, 4, 2], 32)], (x) => tf.grad((a: tf.Tensor) => tf.sum(tf.mul(tf.pad(a, [[0, 0], [1, 1], [1, 1], [0, 0]]), 3)))(x), 'pad');
  });
  it('Slice (a pad gradient), inner and outer axes', () => {
    check('slice spatial', [input([2, 9, 8, 5], 33)], (x) => tf.slice(x, [0, 1, 2, 0], [2, 6, 5, 5]), 'slice');
    check('slice every axis', [input([3, 6, 12], 34)], (x) => tf.slice(x, [1, 1, 3], [2, 4, 9]), 'slice');
    check('slice to the end (-1)', [input([3, 8, 9], 35)], (x) => tf.slice(x, [1, 2, 1], [-1, -1, 6]), 'slice');
  });
  it('AddN', () => {
    check('addN', [input([5, 40], 23), input([5, 40], 24), input([5, 40], 25)], (a, b, c) => tf.addN([a, b, c]), 'binary', 2);
  });
});

describe('native reductions match the JS CPU kernels', { skip }, () => {
  const axesCases: [string, number | number[] | undefined, boolean][] = [
    ['N,H,W', [0, 1, 2], false], ['last axis', 3, false], ['last axis keepDims', -1, true], ['axis 1', 1, false],
    ['H,W', [1, 2], true], ['leading', 0, false], ['all', undefined, false],
  ];
  for (const [opName, op] of [['sum', tf.sum], ['mean', tf.mean], ['max', tf.max], ['min', tf.min]] as const) {
    it(`${opName} over several axis sets`, () => {
      for (const [name, axis, keep] of axesCases) {
        check(`${opName} ${name}`, [input([3, 6, 7, 10], 26, -2, 5)], (x) => op(x, axis, keep), 'reduce');
      }
      if (opName === 'sum' || opName === 'mean') {
        check(`${opName} gradient`, [input([3, 6, 7, 10], 34), input([10], 35)], (x, r) => tf.grad((a: tf.Tensor) => tf.sum(tf.mul(op(a, [0, 1, 2]), r)))(x), 'binary');
      }
      // [0, 2] does not collapse to kept/reduced/kept: the JS kernel runs, and the answer is still right.
      const inputs = [input([3, 6, 7, 10], 27)];
      const cpu = runOn('cpu', inputs, (x) => op(x, [0, 2]));
      assert.ok(relativeError(runOn('native', inputs, (x) => op(x, [0, 2]))[0], cpu[0]) <= TOLERANCE);
    });
  }
});

describe('Reverse (a block copy in place of the CPU backend kernel) matches the JS CPU kernel exactly', { skip }, () => {
  const cases: [string, number[], number | number[]][] = [
    ['NHWC horizontal flip (test-time augmentation)', [2, 5, 7, 3], 2],
    ['vertical flip', [2, 5, 7, 3], 1],
    ['both spatial axes', [1, 6, 4, 40], [1, 2]],
    ['last axis only', [3, 9], -1],
    ['every axis', [2, 3, 4], [0, 1, 2]],
    ['leading axis, large block (TypedArray.set)', [3, 2, 50], 0],
    ['an axis of size 1 with another', [1, 4, 1, 2], [0, 2, 3]],
  ];
  for (const [label, shape, dims] of cases) {
    it(label, () => {
      const x = [input(shape, 40 + shape.length)];
      const [native] = runOn('native', x, (t) => tf.reverse(t, dims));
      const [cpu] = runOn('cpu', x, (t) => tf.reverse(t, dims));
      assert.deepEqual(Array.from(native), Array.from(cpu));
    });
  }
  it('is the kernel the native backend runs, and its gradient (another Reverse) matches too', () => {
    assert.ok(tf.getKernel('Reverse', 'native')?.kernelFunc !== tf.getKernel('Reverse', 'cpu')?.kernelFunc);
    const x = [input([2, 3, 4, 2], 47), input([2, 3, 4, 2], 48)];
    const fn = (t: tf.Tensor, dy: tf.Tensor) => tf.grad((a: tf.Tensor) => tf.sum(tf.mul(tf.reverse(a, [1, 2]), dy)))(t);
    assert.deepEqual(Array.from(runOn('native', x, fn)[0]), Array.from(runOn('cpu', x, fn)[0]));
  });
});
