// Native convolution kernels against the JS CPU kernels over a grid of shapes and edge cases.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { countNativeCalls, nativeOrSkip, randomValues, relativeError, runOn, TOLERANCE } from './native.js';

const skip = await nativeOrSkip();

type Pad = 'valid' | 'same' | [[number, number], [number, number], [number, number], [number, number]];
interface ConvCase {
  name: string;
  x: [number, number, number, number];
  filter: [number, number, number, number];
  strides: number | [number, number];
  pad: Pad;
  dilations?: number | [number, number];
  nchw?: boolean;
}

const CASES: ConvCase[] = [
  { name: '3x3 same', x: [2, 7, 7, 3], filter: [3, 3, 3, 4], strides: 1, pad: 'same' },
  { name: '1x1 kernel', x: [1, 8, 8, 2], filter: [1, 1, 2, 5], strides: 1, pad: 'valid' },
  { name: 'stride > kernel', x: [2, 9, 10, 3], filter: [1, 1, 3, 4], strides: 3, pad: 'valid' },
  { name: 'stride > kernel, same', x: [1, 10, 9, 2], filter: [2, 2, 2, 3], strides: 3, pad: 'same' },
  { name: 'odd sizes, non-square kernel, stride 2', x: [1, 11, 13, 3], filter: [3, 5, 3, 6], strides: [2, 1], pad: 'same' },
  { name: 'batch 1, large channels', x: [1, 6, 6, 64], filter: [3, 3, 64, 128], strides: 1, pad: 'same' },
  { name: 'AlexNet conv1 shape (small image)', x: [2, 35, 35, 1], filter: [11, 11, 1, 8], strides: 4, pad: 'valid' },
  { name: 'explicit padding', x: [2, 8, 9, 3], filter: [3, 3, 3, 4], strides: 2, pad: [[0, 0], [1, 2], [2, 0], [0, 0]] },
  { name: 'kernel as large as input', x: [3, 5, 5, 2], filter: [5, 5, 2, 3], strides: 1, pad: 'valid' },
];

const DILATED: ConvCase[] = [
  { name: 'dilation 2 valid', x: [2, 10, 10, 3], filter: [3, 3, 3, 4], strides: 1, pad: 'valid', dilations: 2 },
  { name: 'dilation 2x3 same', x: [1, 9, 11, 2], filter: [3, 2, 2, 3], strides: 1, pad: 'same', dilations: [2, 3] },
];

const NCHW: ConvCase[] = [{ name: 'NCHW layout', x: [2, 3, 7, 8], filter: [3, 3, 3, 4], strides: [1, 2], pad: 'same', nchw: true }];

function inputsOf(c: ConvCase, seed: number) {
  return [
    { shape: c.x, values: randomValues(c.x.reduce((a, b) => a * b), seed) },
    { shape: c.filter, values: randomValues(c.filter.reduce((a, b) => a * b), seed + 1) },
  ];
}

function compare(label: string, native: Float32Array[], cpu: Float32Array[]) {
  for (let i = 0; i < cpu.length; i++) {
    const err = relativeError(native[i], cpu[i]);
    assert.ok(err <= TOLERANCE, `${label} output ${i}: relative error ${err}`);
  }
}

describe('native convolution kernels match the JS CPU kernels', { skip }, () => {
  for (const c of [...CASES, ...DILATED, ...NCHW]) {
    it(`Conv2D: ${c.name}`, () => {
      const inputs = inputsOf(c, 11);
      const fmt = c.nchw ? 'NCHW' : 'NHWC';
      const fn = (x: tf.Tensor, w: tf.Tensor) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, c.strides, c.pad, fmt, c.dilations ?? 1);
      const { result: native, calls } = countNativeCalls(() => runOn('native', inputs, fn));
      assert.equal(calls.conv2dForward, 1, 'ran natively');
      compare(c.name, native, runOn('cpu', inputs, fn));
    });
  }

  for (const c of [...CASES, ...DILATED.slice(0, 1)]) {
    it(`FusedConv2D (bias + relu / leakyrelu): ${c.name}`, () => {
      const o = c.filter[3];
      const inputs = [...inputsOf(c, 21), { shape: [o], values: randomValues(o, 23) }];
      for (const activation of ['relu', 'leakyrelu', 'linear'] as const) {
        const fn = (x: tf.Tensor, w: tf.Tensor, b: tf.Tensor) =>
          tf.fused.conv2d({ x: x as tf.Tensor4D, filter: w as tf.Tensor4D, strides: c.strides, pad: c.pad, dilations: c.dilations ?? 1, bias: b, activation, leakyreluAlpha: 0.1 });
        const { result: native, calls } = countNativeCalls(() => runOn('native', inputs, fn));
        assert.equal(calls.conv2dForward, 1, 'ran natively');
        compare(`${c.name} ${activation}`, native, runOn('cpu', inputs, fn));
      }
    });
  }

  for (const c of [...CASES, ...NCHW]) {
    it(`Conv2DBackpropInput and Conv2DBackpropFilter: ${c.name}`, () => {
      const fmt = c.nchw ? 'NCHW' : 'NHWC';
      const outShape = tf.tidy(() => tf.conv2d(tf.zeros(c.x) as tf.Tensor4D, tf.zeros(c.filter) as tf.Tensor4D, c.strides, c.pad, fmt).shape);
      const inputs = [...inputsOf(c, 31), { shape: outShape, values: randomValues(outShape.reduce((a, b) => a * b), 33) }];
      const fn = (x: tf.Tensor, w: tf.Tensor, dy: tf.Tensor) =>
        tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, c.strides, c.pad, fmt), dy)))([x, w]);
      const { result: native, calls } = countNativeCalls(() => runOn('native', inputs, fn));
      assert.equal(calls.conv2dBackwardData, 1, 'backward data ran natively');
      assert.equal(calls.conv2dBackwardWeights, 1, 'backward weights ran natively');
      compare(c.name, native, runOn('cpu', inputs, fn));
    });
  }
});

// Depthwise filters are [kh, kw, channels, multiplier]; MobileNetV2 uses 3×3, stride 1 and 2, multiplier 1, TF "same".
const DEPTHWISE: ConvCase[] = [
  { name: '3x3 same, stride 1', x: [2, 7, 7, 5], filter: [3, 3, 5, 1], strides: 1, pad: 'same' },
  { name: '3x3 same, stride 2, even input (asymmetric padding)', x: [2, 8, 8, 4], filter: [3, 3, 4, 1], strides: 2, pad: 'same' },
  { name: '3x3 same, stride 2, odd input', x: [1, 9, 7, 3], filter: [3, 3, 3, 1], strides: 2, pad: 'same' },
  { name: 'multiplier 2, valid', x: [2, 6, 6, 3], filter: [3, 3, 3, 2], strides: 1, pad: 'valid' },
  { name: 'many channels (MobileNetV2 block)', x: [2, 14, 14, 96], filter: [3, 3, 96, 1], strides: 2, pad: 'same' },
  { name: 'non-square kernel, dilation 2', x: [1, 10, 11, 4], filter: [3, 2, 4, 1], strides: 1, pad: 'same', dilations: 2 },
];

describe('native depthwise convolution kernels match the JS CPU kernels', { skip }, () => {
  for (const c of DEPTHWISE) {
    it(`DepthwiseConv2dNative: ${c.name}`, () => {
      const inputs = inputsOf(c, 41);
      const fn = (x: tf.Tensor, w: tf.Tensor) => tf.depthwiseConv2d(x as tf.Tensor4D, w as tf.Tensor4D, c.strides, c.pad as 'same' | 'valid', 'NHWC', c.dilations ?? 1);
      const { result: native, calls } = countNativeCalls(() => runOn('native', inputs, fn));
      assert.equal(calls.conv2dForward, 1, 'ran natively');
      compare(c.name, native, runOn('cpu', inputs, fn));
    });

    it(`FusedDepthwiseConv2D (bias + relu / relu6): ${c.name}`, () => {
      const o = c.filter[2] * c.filter[3];
      const inputs = [...inputsOf(c, 51), { shape: [o], values: randomValues(o, 53) }];
      for (const activation of ['relu', 'relu6', 'linear'] as const) {
        const fn = (x: tf.Tensor, w: tf.Tensor, b: tf.Tensor) =>
          tf.fused.depthwiseConv2d({ x: x as tf.Tensor4D, filter: w as tf.Tensor4D, strides: c.strides, pad: c.pad as 'same' | 'valid', dilations: c.dilations ?? 1, bias: b, activation });
        const { result: native, calls } = countNativeCalls(() => runOn('native', inputs, fn));
        assert.equal(calls.conv2dForward, 1, 'ran natively');
        compare(`${c.name} ${activation}`, native, runOn('cpu', inputs, fn));
      }
    });

    // tfjs has no dilated depthwise gradient to compare with
    if (c.dilations === undefined) it(`DepthwiseConv2dNativeBackpropInput and BackpropFilter: ${c.name}`, () => {
      const dil = 1;
      const outShape = tf.tidy(() => tf.depthwiseConv2d(tf.zeros(c.x) as tf.Tensor4D, tf.zeros(c.filter) as tf.Tensor4D, c.strides, c.pad as 'same' | 'valid', 'NHWC', dil).shape);
      const inputs = [...inputsOf(c, 61), { shape: outShape, values: randomValues(outShape.reduce((a, b) => a * b), 63) }];
      const fn = (x: tf.Tensor, w: tf.Tensor, dy: tf.Tensor) =>
        tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(tf.depthwiseConv2d(a as tf.Tensor4D, b as tf.Tensor4D, c.strides, c.pad as 'same' | 'valid', 'NHWC', dil), dy)))([x, w]);
      const { result: native, calls } = countNativeCalls(() => runOn('native', inputs, fn));
      assert.equal(calls.conv2dBackwardData, 1, 'backward data ran natively');
      assert.equal(calls.conv2dBackwardWeights, 1, 'backward weights ran natively');
      compare(c.name, native, runOn('cpu', inputs, fn));
    });
  }
});
