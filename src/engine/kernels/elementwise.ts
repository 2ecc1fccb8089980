// Element-wise arithmetic (with broadcasting) and unary activations on the native side (native/src/eltwise.cc).
import { broadcast_util, slice_util, util } from '@tensorflow/tfjs-core';
import type { KernelConfig, TensorInfo } from '@tensorflow/tfjs-core';
import { allocFloat32, addon, f32, fallback, output, type KernelArgs } from './util.js';

/** Op codes of native/src/eltwise.cc. */
export const BINARY = { add: 0, sub: 1, mul: 2, div: 3, max: 4, min: 5, squaredDifference: 6, mulScaled: 7 } as const;
export const UNARY = {
  relu: 0, relu6: 1, step: 2, neg: 3, exp: 4, log: 5, sqrt: 6, rsqrt: 7, square: 8, abs: 9, sigmoid: 10, tanh: 11,
  reciprocal: 12, elu: 13, leakyRelu: 14, copy: 15,
} as const;

// Below this many elements the JS kernel is as fast as crossing into C++.
const MIN_NATIVE_SIZE = 64;

function makeBinary(name: string, op: number) {
  return (args: KernelArgs<{ a: TensorInfo; b: TensorInfo }>): TensorInfo => {
    const { inputs: { a, b }, backend } = args;
    const av = f32(backend, a);
    const bv = f32(backend, b);
    if (av && bv) {
      const outShape = broadcast_util.assertAndGetBroadcastShape(a.shape, b.shape);
      const size = util.sizeFromShape(outShape);
      if (size >= MIN_NATIVE_SIZE) {
        const out = allocFloat32(size);
        if (addon().binary(op, av, a.shape, bv, b.shape, out, outShape)) return output(backend, outShape, out);
      }
    }
    return fallback(name, args);
  };
}

function makeUnary(name: string, op: number, alphaOf: (attrs: Record<string, unknown> | undefined) => number = () => 0) {
  return (args: KernelArgs<{ x: TensorInfo }, Record<string, unknown>>): TensorInfo => {
    const { inputs: { x }, backend, attrs } = args;
    const xv = f32(backend, x);
    if (xv && xv.length >= MIN_NATIVE_SIZE) {
      const out = allocFloat32(xv.length);
      if (addon().unary(op, xv, out, xv.length, alphaOf(attrs))) return output(backend, x.shape, out);
    }
    return fallback(name, args);
  };
}

/** AddN (gradient accumulation): one native add per extra operand. */
function addN(args: KernelArgs<TensorInfo[]>): TensorInfo {
  const { inputs, backend } = args;
  const tensors = Object.values(inputs) as TensorInfo[];
  const values = tensors.map((t) => f32(backend, t));
  const shape = tensors[0]?.shape;
  if (tensors.length >= 2 && values.every((v) => v) && tensors.every((t) => util.arraysEqual(t.shape, shape))) {
    const out = allocFloat32(values[0]!.length);
    addon().binary(BINARY.add, values[0]!, shape, values[1]!, shape, out, shape);
    for (let i = 2; i < values.length; i++) addon().binary(BINARY.add, out, shape, values[i]!, shape, out, shape);
    return output(backend, shape, out);
  }
  return fallback('AddN', args);
}

function tile(args: KernelArgs<{ x: TensorInfo }, { reps: number[] }>): TensorInfo {
  const { inputs: { x }, backend, attrs } = args;
  const xv = f32(backend, x);
  const reps = attrs!.reps;
  if (xv && x.shape.length > 0 && reps.length === x.shape.length) {
    const outShape = x.shape.map((d, i) => d * reps[i]);
    const out = allocFloat32(util.sizeFromShape(outShape));
    if (addon().tile(xv, x.shape, reps, out)) return output(backend, outShape, out);
  }
  return fallback('Tile', args);
}

/** PadV2 with a constant: Keras's ZeroPadding2D (ResNet-50 pads its input and its first pooling's input). */
function padV2(args: KernelArgs<{ x: TensorInfo }, { paddings: [number, number][]; constantValue: number }>): TensorInfo {
  const { inputs: { x }, backend, attrs } = args;
  const xv = f32(backend, x);
  const { paddings, constantValue } = attrs!;
  if (xv && x.shape.length > 0 && paddings.length === x.shape.length) {
    const outShape = x.shape.map((d, i) => d + paddings[i][0] + paddings[i][1]);
    const out = allocFloat32(util.sizeFromShape(outShape));
    if (addon().pad(xv, x.shape, paddings.map((p) => p[0]), paddings.map((p) => p[1]), constantValue, out)) return output(backend, outShape, out);
  }
  return fallback('PadV2', args);
}

/** Slice: a pad's gradient. Small slices (tfjs's own views of a few elements) stay in JS. */
function slice(args: KernelArgs<{ x: TensorInfo }, { begin: number | number[]; size: number | number[] }>): TensorInfo {
  const { inputs: { x }, backend, attrs } = args;
  const xv = f32(backend, x);
  if (xv && x.shape.length > 0) {
    const [begin, size] = slice_util.parseSliceParams(x as never, attrs!.begin, attrs!.size);
    const n = util.sizeFromShape(size);
    if (n >= MIN_NATIVE_SIZE) {
      const out = allocFloat32(n);
      if (addon().slice(xv, x.shape, begin, size, out)) return output(backend, size, out);
    }
  }
  return fallback('Slice', args);
}

const alphaAttr = (fallbackAlpha: number) => (attrs: Record<string, unknown> | undefined) =>
  typeof attrs?.alpha === 'number' ? attrs.alpha : fallbackAlpha;

export const elementwiseKernels: Omit<KernelConfig, 'backendName'>[] = [
  { kernelName: 'Add', kernelFunc: makeBinary('Add', BINARY.add) as never },
  { kernelName: 'Sub', kernelFunc: makeBinary('Sub', BINARY.sub) as never },
  { kernelName: 'Multiply', kernelFunc: makeBinary('Multiply', BINARY.mul) as never },
  { kernelName: 'RealDiv', kernelFunc: makeBinary('RealDiv', BINARY.div) as never },
  { kernelName: 'Maximum', kernelFunc: makeBinary('Maximum', BINARY.max) as never },
  { kernelName: 'Minimum', kernelFunc: makeBinary('Minimum', BINARY.min) as never },
  { kernelName: 'SquaredDifference', kernelFunc: makeBinary('SquaredDifference', BINARY.squaredDifference) as never },
  { kernelName: 'AddN', kernelFunc: addN as never },
  { kernelName: 'Tile', kernelFunc: tile as never },
  { kernelName: 'PadV2', kernelFunc: padV2 as never },
  { kernelName: 'Slice', kernelFunc: slice as never },
  { kernelName: 'Relu', kernelFunc: makeUnary('Relu', UNARY.relu) as never },
  { kernelName: 'Relu6', kernelFunc: makeUnary('Relu6', UNARY.relu6) as never },
  { kernelName: 'Step', kernelFunc: makeUnary('Step', UNARY.step, alphaAttr(0)) as never },
  { kernelName: 'Neg', kernelFunc: makeUnary('Neg', UNARY.neg) as never },
  { kernelName: 'Exp', kernelFunc: makeUnary('Exp', UNARY.exp) as never },
  { kernelName: 'Log', kernelFunc: makeUnary('Log', UNARY.log) as never },
  { kernelName: 'Sqrt', kernelFunc: makeUnary('Sqrt', UNARY.sqrt) as never },
  { kernelName: 'Rsqrt', kernelFunc: makeUnary('Rsqrt', UNARY.rsqrt) as never },
  { kernelName: 'Square', kernelFunc: makeUnary('Square', UNARY.square) as never },
  { kernelName: 'Abs', kernelFunc: makeUnary('Abs', UNARY.abs) as never },
  { kernelName: 'Sigmoid', kernelFunc: makeUnary('Sigmoid', UNARY.sigmoid) as never },
  { kernelName: 'Tanh', kernelFunc: makeUnary('Tanh', UNARY.tanh) as never },
  { kernelName: 'Reciprocal', kernelFunc: makeUnary('Reciprocal', UNARY.reciprocal) as never },
  { kernelName: 'Elu', kernelFunc: makeUnary('Elu', UNARY.elu) as never },
  { kernelName: 'LeakyRelu', kernelFunc: makeUnary('LeakyRelu', UNARY.leakyRelu, alphaAttr(0.2)) as never },
];
