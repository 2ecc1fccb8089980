// Batch moments in one native pass. tfjs's moments (what tfjs-layers' batch normalisation calls in training) is
// Mean, Cast, Sub, Square, Mean: four full-size passes and two full-size copies per layer, 14 % of a ResNet-50
// training step here. On the native backend, moments over every axis but the last (per-channel statistics, as
// batch normalisation asks for) runs as one kernel, FundusBatchMoments, with outputs [mean, variance]; fusion.ts
// takes it off the tape like the five nodes it replaces. Its own gradient (used when the fusion does not apply):
// dx = dmean / N + 2 (x - mean) dvariance / N.
import * as tf from '@tensorflow/tfjs-core';
import type { GradConfig, KernelConfig, Tensor, TensorInfo } from '@tensorflow/tfjs-core';
import { addon, allocFloat32, f32, output, type KernelArgs } from './kernels/util.js';
import { tfjsCoreExports } from './internals.js';
import { NATIVE_BACKEND_NAME } from './names.js';

export const BATCH_MOMENTS = 'FundusBatchMoments';

/** How many batch moments ran natively in this process (the self-check reads it). */
export const momentsCounts = { native: 0 };

function batchMoments(args: KernelArgs<{ x: TensorInfo }>): TensorInfo[] {
  const { inputs: { x }, backend } = args;
  const c = x.shape[x.shape.length - 1];
  const xv = f32(backend, x)!;
  const mean = allocFloat32(c);
  const variance = allocFloat32(c);
  addon().batchMoments(xv, xv.length, c, mean, variance);
  momentsCounts.native++;
  return [output(backend, [c], mean), output(backend, [c], variance)];
}

export const MOMENTS_KERNELS: Omit<KernelConfig, 'backendName'>[] = [{ kernelName: BATCH_MOMENTS, kernelFunc: batchMoments as never }];

const momentsGradient: GradConfig = {
  kernelName: BATCH_MOMENTS,
  inputsToSave: ['x'],
  outputsToSave: [true, false],
  gradFunc: (dys, saved) => {
    const [dMean, dVariance] = dys as Tensor[];
    const [x, mean] = saved;
    const n = x.size / mean.size;
    return { x: () => tf.add(tf.div(dMean, n), tf.mul(tf.sub(x, mean), tf.mul(dVariance, 2 / n))) };
  },
};

type Moments = (x: Tensor, axis?: number | number[], keepDims?: boolean) => { mean: Tensor; variance: Tensor };

/** True when moments(x, axis, keepDims) asks for per-channel statistics of a float32 tensor on the native backend. */
function perChannel(x: unknown, axis: number | number[] | undefined, keepDims: boolean | undefined): x is Tensor {
  if (!(x instanceof tf.Tensor) || x.dtype !== 'float32' || x.rank < 2 || keepDims || x.size === 0) return false;
  if (tf.getBackend() !== NATIVE_BACKEND_NAME) return false;
  const axes = [axis ?? []].flat().map((a) => (a < 0 ? a + x.rank : a)).sort((p, q) => p - q);
  return axes.length === x.rank - 1 && axes.every((a, i) => a === i);
}

/**
 * Replaces tfjs-core's moments in its module exports, which tfjs-layers reads at every call (native backend,
 * per-channel statistics only; tfjs's own everywhere else); returns how to restore it. The kernel's gradient stays
 * registered after the undo: nothing runs the kernel then.
 */
export function installBatchMoments(): () => void {
  const core = tfjsCoreExports();
  const original = core.moments as Moments;
  tf.registerGradient(momentsGradient);
  core.moments = ((x, axis, keepDims) => {
    if (!perChannel(x, axis, keepDims)) return original(x, axis, keepDims);
    const [mean, variance] = tf.engine().runKernel(BATCH_MOMENTS, { x } as never) as Tensor[];
    return { mean, variance };
  }) as Moments;
  return () => {
    core.moments = original;
  };
}

