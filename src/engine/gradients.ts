// Training-step gradients that tfjs builds from many full-size element-wise ops, done in one native pass each
// when the native backend runs: batch normalisation's backward pass (batchnorm-gradient.ts; tfjs: a Tile and about
// ten full-size ops), Mean/Sum (a full-size ones() tensor, a Multiply and a RealDiv), Square (two Multiplies), ReLU
// (Step then Multiply) and ReLU6 (LessEqual, Step, Multiply). Each override keeps tfjs's own gradient for every
// other backend and case, so the JS CPU backend computes exactly what it did before.
import * as tf from '@tensorflow/tfjs-core';
import { backend_util, util } from '@tensorflow/tfjs-core';
import type { GradConfig, KernelConfig, NamedAttrMap, Tensor, TensorInfo } from '@tensorflow/tfjs-core';
import { NATIVE_BACKEND_NAME } from './names.js';
import { addon, allocFloat32, f32, output, type KernelArgs } from './kernels/util.js';
import { BINARY } from './kernels/elementwise.js';
import { recordingBackward, relu6ActivationClass } from './internals.js';
import { batchNormGradFunc } from './batchnorm-gradient.js';

const run = (name: string, inputs: Record<string, Tensor>, attrs: NamedAttrMap = {}) =>
  tf.engine().runKernel(name, inputs as never, attrs) as Tensor;

/** The native backend, no tape recording the backward pass (the fused kernels have no gradients of their own:
 * for higher-order gradients tfjs's differentiable formulation runs), float32 tensors. */
const onNative = (...ts: (Tensor | undefined)[]) =>
  tf.getBackend() === NATIVE_BACKEND_NAME && !recordingBackward() && ts.every((t) => t === undefined || t.dtype === 'float32');

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

export const GRADIENT_KERNELS: Omit<KernelConfig, 'backendName'>[] = [
  { kernelName: 'FundusBroadcastScale', kernelFunc: broadcastScale as never },
  { kernelName: 'FundusMulScaled', kernelFunc: mulScaled as never },
  { kernelName: 'FundusReluGrad', kernelFunc: reluGrad as never },
  { kernelName: 'FundusRelu6Grad', kernelFunc: relu6Grad as never },
];

// --- gradient overrides ---

type Undo = () => void;

function override(kernelName: string, make: (original: GradConfig['gradFunc']) => GradConfig['gradFunc']): Undo {
  const original = tf.getGradient(kernelName);
  // The self-check has made sure it is registered (tfjs-layers registers tfjs's gradients).
  if (!original) throw new Error(`fundus engine: tfjs has no gradient for ${kernelName}`);
  tf.registerGradient({ ...original, gradFunc: make(original.gradFunc) });
  return () => tf.registerGradient(original);
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

/** Replaces tfjs's gradients of Mean, Sum, Square, ReLU, ReLU6 and batch normalisation; returns how to restore them. */
export function installNativeGradients(): Undo {
  const undo = [
    override('Mean', reduceGrad((n) => 1 / n)),
    override('Sum', reduceGrad(() => 1)),
    override('Square', (original) => (dy, saved, attrs) => {
      const [x] = saved;
      if (Array.isArray(dy) || !onNative(x, dy)) return original(dy, saved, attrs);
      return { x: () => run('FundusMulScaled', { a: dy, b: x }, { scale: 2 }) };
    }),
    override('Relu', (original) => (dy, saved, attrs) => {
      const [x] = saved;
      if (Array.isArray(dy) || !onNative(x, dy)) return original(dy, saved, attrs);
      return { x: () => run('FundusReluGrad', { dy, x }) };
    }),
    override('Relu6', (original) => (dy, saved, attrs) => {
      const [x] = saved;
      if (Array.isArray(dy) || !onNative(x, dy)) return original(dy, saved, attrs);
      return { x: () => run('FundusRelu6Grad', { dy, x }) };
    }),
    override('FusedBatchNorm', batchNormGradFunc),
  ];
  return () => undo.reverse().forEach((u) => u());
}

/**
 * tfjs-layers computes its `relu6` activation as minimum(6, relu(x)): two full passes forward and two backward
 * (a fifth of a MobileNetV2 training step here). tf.relu6 is the same function in one kernel, with tfjs's own
 * gradient; they differ only in the gradient at exactly x = 6 (tf.relu6 passes it, the minimum blocks it). On the
 * native backend only, so that the JS CPU backend stays plain tfjs. Returns how to restore it.
 */
export function installRelu6Activation(): Undo {
  const proto = relu6ActivationClass()!.prototype;
  const original = proto.apply;
  proto.apply = function apply(this: unknown, x: Tensor) {
    return tf.getBackend() === NATIVE_BACKEND_NAME ? tf.relu6(x) : original.call(this, x);
  };
  return () => {
    proto.apply = original;
  };
}
