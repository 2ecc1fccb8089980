// Training-step gradients that tfjs builds from many full-size element-wise ops, done in one native pass each
// when the native backend runs: batch normalisation's backward pass (tfjs: a Tile and about ten full-size
// ops), Mean/Sum (a full-size ones() tensor, a Multiply and a RealDiv), Square (two Multiplies), ReLU (Step then
// Multiply) and ReLU6 (LessEqual, Step, Multiply). Each override keeps tfjs's own gradient for every other backend
// and case, so the JS CPU backend computes exactly what it did before.
import * as tf from '@tensorflow/tfjs-core';
import { backend_util, util } from '@tensorflow/tfjs-core';
import type { GradConfig, KernelConfig, NamedAttrMap, Tensor, TensorInfo } from '@tensorflow/tfjs-core';
import { NATIVE_BACKEND_NAME } from './names.js';
import { addon, allocFloat32, f32, output, type KernelArgs } from './kernels/util.js';
import { BINARY } from './kernels/elementwise.js';

const run = (name: string, inputs: Record<string, Tensor>, attrs: NamedAttrMap = {}) =>
  tf.engine().runKernel(name, inputs as never, attrs) as Tensor;

/** The fused kernels have no gradients of their own: while a tape records the backward pass (higher-order
 * gradients), tfjs's differentiable formulation runs instead. */
const recording = () => (tf.engine() as unknown as { state: { gradientDepth: number } }).state.gradientDepth > 0;

const onNative = (...ts: (Tensor | undefined)[]) =>
  tf.getBackend() === NATIVE_BACKEND_NAME && !recording() && ts.every((t) => t === undefined || t.dtype === 'float32');

// --- kernels used only by these gradients (registered for the native backend only) ---

/** out = broadcast(x to attrs.shape) * attrs.scale */
function broadcastScale(args: KernelArgs<{ x: TensorInfo }, { shape: number[]; scale: number }>): TensorInfo {
  const { inputs: { x }, backend, attrs } = args;
  const out = allocFloat32(util.sizeFromShape(attrs!.shape));
  addon().binary(BINARY.mul, f32(backend, x)!, x.shape, new Float32Array([attrs!.scale]), [], out, attrs!.shape);
  return output(backend, attrs!.shape, out);
}

/** out = a * b * attrs.scale */
function mulScaled(args: KernelArgs<{ a: TensorInfo; b: TensorInfo }, { scale: number }>): TensorInfo {
  const { inputs: { a, b }, backend, attrs } = args;
  const out = allocFloat32(util.sizeFromShape(a.shape));
  addon().binary(BINARY.mulScaled, f32(backend, a)!, a.shape, f32(backend, b)!, b.shape, out, a.shape, attrs!.scale);
  return output(backend, a.shape, out);
}

/** dy where x > 0, else 0 */
function reluGrad(args: KernelArgs<{ dy: TensorInfo; x: TensorInfo }>): TensorInfo {
  const { inputs: { dy, x }, backend } = args;
  const out = allocFloat32(util.sizeFromShape(x.shape));
  addon().activationGrad(0, f32(backend, dy)!, f32(backend, x)!, out, out.length);
  return output(backend, x.shape, out);
}

/** dy where 0 < x <= 6, else 0 (tfjs's Relu6 gradient) */
function relu6Grad(args: KernelArgs<{ dy: TensorInfo; x: TensorInfo }>): TensorInfo {
  const { inputs: { dy, x }, backend } = args;
  const out = allocFloat32(util.sizeFromShape(x.shape));
  addon().activationGrad(1, f32(backend, dy)!, f32(backend, x)!, out, out.length);
  return output(backend, x.shape, out);
}

/** [sum(dy), sum(dy * (x - mean))] per channel (last axis). */
function batchNormGradStats(args: KernelArgs<{ x: TensorInfo; dy: TensorInfo; mean: TensorInfo }>): TensorInfo[] {
  const { inputs: { x, dy, mean }, backend } = args;
  const c = mean.shape[0];
  const sumDy = new Float32Array(c);
  const sumDyXmu = new Float32Array(c);
  const xv = f32(backend, x)!;
  addon().batchNormGradStats(xv, f32(backend, dy)!, f32(backend, mean)!, xv.length, c, sumDy, sumDyXmu);
  return [output(backend, [c], sumDy), output(backend, [c], sumDyXmu)];
}

export const GRADIENT_KERNELS: Omit<KernelConfig, 'backendName'>[] = [
  { kernelName: 'FundusBroadcastScale', kernelFunc: broadcastScale as never },
  { kernelName: 'FundusMulScaled', kernelFunc: mulScaled as never },
  { kernelName: 'FundusReluGrad', kernelFunc: reluGrad as never },
  { kernelName: 'FundusRelu6Grad', kernelFunc: relu6Grad as never },
  { kernelName: 'FundusBatchNormGradStats', kernelFunc: batchNormGradStats as never },
];

// --- gradient overrides ---

function override(kernelName: string, make: (original: GradConfig['gradFunc']) => GradConfig['gradFunc']): void {
  const original = tf.getGradient(kernelName);
  if (!original) return; // tfjs-layers (which registers tfjs's gradients) not loaded: nothing to override
  tf.registerGradient({ ...original, gradFunc: make(original.gradFunc) });
}

function reduceGrad(scaleOf: (n: number) => number) {
  return (original: GradConfig['gradFunc']): GradConfig['gradFunc'] =>
    (dy, saved, attrs) => {
      const [x] = saved;
      const dyT = Array.isArray(dy) ? undefined : dy;
      if (!dyT || !onNative(x, dyT)) return original(dy, saved, attrs);
      const axes = util.parseAxisParam((attrs as { axis: number | number[] }).axis, x.shape);
      const [, reduceShape] = backend_util.computeOutAndReduceShapes(x.shape, axes);
      const expanded = x.shape.slice();
      for (const a of axes) expanded[a] = 1;
      return { x: () => run('FundusBroadcastScale', { x: tf.reshape(dyT, expanded) }, { shape: x.shape, scale: scaleOf(util.sizeFromShape(reduceShape)) }) };
    };
}

/**
 * tfjs-layers computes its `relu6` activation as minimum(6, relu(x)): two full passes forward and two backward
 * (a fifth of a MobileNetV2 training step here). tf.relu6 is the same function in one kernel, with tfjs's own
 * gradient; they differ only in the gradient at exactly x = 6 (tf.relu6 passes it, the minimum blocks it).
 */
function useRelu6Kernel(): void {
  const entry = tf.serialization.SerializationMap.getMap().classNameMap.relu6 as unknown as [{ prototype: { apply(x: Tensor): Tensor } }] | undefined;
  if (entry) entry[0].prototype.apply = (x: Tensor) => tf.relu6(x);
}

let registered = false;

/** Installs the overrides (once). Called when the native backend is registered. */
export function registerNativeGradients(): void {
  if (registered) return;
  registered = true;
  override('Mean', reduceGrad((n) => 1 / n));
  override('Sum', reduceGrad(() => 1));
  override('Square', (original) => (dy, saved, attrs) => {
    const [x] = saved;
    if (Array.isArray(dy) || !onNative(x, dy)) return original(dy, saved, attrs);
    return { x: () => run('FundusMulScaled', { a: dy, b: x }, { scale: 2 }) };
  });
  override('Relu', (original) => (dy, saved, attrs) => {
    const [x] = saved;
    if (Array.isArray(dy) || !onNative(x, dy)) return original(dy, saved, attrs);
    return { x: () => run('FundusReluGrad', { dy, x }) };
  });
  override('Relu6', (original) => (dy, saved, attrs) => {
    const [x] = saved;
    if (Array.isArray(dy) || !onNative(x, dy)) return original(dy, saved, attrs);
    return { x: () => run('FundusRelu6Grad', { dy, x }) };
  });
  useRelu6Kernel();
  override('FusedBatchNorm', (original) => (dy, saved, attrs) => {
    const [x, mean, variance, scale] = saved;
    const c = x.shape[x.shape.length - 1];
    const perChannel = (t: Tensor | undefined) => t === undefined || (t.rank === 1 && t.shape[0] === c);
    if (Array.isArray(dy) || !onNative(x, dy, mean, variance, scale) || mean.rank !== 1 || !perChannel(mean) || !perChannel(variance) || !perChannel(scale)) {
      return original(dy, saved, attrs);
    }
    const eps = (attrs as { varianceEpsilon: number }).varianceEpsilon;
    // One pass over x and dy gives every reduction; the rest is arithmetic on [C] vectors. Computed here, not in
    // a closure: the tape runs each closure in its own tidy, which would dispose a shared result.
    const stats = tf.engine().runKernel('FundusBatchNormGradStats', { x, dy, mean } as never) as Tensor[];
    const sums = () => stats;
    const r = () => tf.rsqrt(tf.add(variance, tf.scalar(eps)));
    const s = () => scale ?? tf.scalar(1);
    return {
      x: () => tf.mul(dy, tf.mul(r(), s())),
      mean: () => tf.mul(tf.neg(tf.mul(r(), s())), sums()[0]),
      variance: () => tf.mul(tf.mul(tf.scalar(-0.5), tf.mul(tf.pow(r(), 3), s())), sums()[1]),
      scale: () => tf.mul(r(), sums()[1]),
      offset: () => tf.clone(sums()[0]),
    };
  });
}
