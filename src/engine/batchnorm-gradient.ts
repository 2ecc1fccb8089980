// Batch normalisation's gradient on the native engine: one formula, one reduction pass over x and dy and one
// element-wise pass, for both ways a network uses batch normalisation. With r = 1/sqrt(var + eps), gamma the scale
// and N values per channel:
//   moments given (inference mode, frozen batch norm): dx = dy gamma r, and the mean and variance get
//     -gamma r sum(dy) and -gamma r^3 / 2 sum(dy (x - mean)), which the tape passes on to whatever made them;
//   batch moments (tfjs-layers' batch norm in training, once fusion.ts has taken the moments nodes off the tape):
//     dx = dy gamma r - (gamma r / N) sum(dy) - (x - mean) (gamma r^3 / N) sum(dy (x - mean));
// in both, dgamma = r sum(dy (x - mean)) and dbeta = sum(dy). tfjs instead builds the input's gradient from a Tile
// and about ten full-size ops, and with batch moments differentiates the moments node by node.
import * as tf from '@tensorflow/tfjs-core';
import type { GradConfig, KernelConfig, Tensor, TensorInfo } from '@tensorflow/tfjs-core';
import { addon, allocFloat32, f32, output, type KernelArgs } from './kernels/util.js';
import { recordingBackward } from './internals.js';
import { NATIVE_BACKEND_NAME } from './names.js';

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

/** out = dy * a + b + (x - mean) * k, per channel (last axis); with reluMask, 0 where x <= 0. */
function batchNormGradX(args: KernelArgs<{ x: TensorInfo; dy: TensorInfo; mean: TensorInfo }, { a: Float32Array; b: Float32Array; k: Float32Array; reluMask: boolean }>): TensorInfo {
  const { inputs: { x, dy, mean }, backend, attrs } = args;
  const xv = f32(backend, x)!;
  const out = allocFloat32(xv.length);
  addon().batchNormGradX(xv, f32(backend, dy)!, f32(backend, mean)!, attrs!.a, attrs!.b, attrs!.k, xv.length, mean.shape[0], out, attrs!.reluMask);
  return output(backend, x.shape, out);
}

export const BATCH_NORM_GRADIENT_KERNELS: Omit<KernelConfig, 'backendName'>[] = [
  { kernelName: 'FundusBatchNormGradStats', kernelFunc: batchNormGradStats as never },
  { kernelName: 'FundusBatchNormGradX', kernelFunc: batchNormGradX as never },
];

/** What tfjs's FusedBatchNorm saves for its gradient, in its order (x, mean, variance, scale). */
export interface BatchNormSaved {
  x: Tensor;
  mean: Tensor;
  variance: Tensor;
  scale?: Tensor;
}

export interface BatchNormGradientOptions {
  /** mean and variance are x's own moments, whose nodes are off the tape (fusion.ts). */
  batchMoments: boolean;
  /** x is a ReLU's output whose gradient is folded in: dx is 0 where x <= 0 (fusion.ts). */
  reluMask?: boolean;
}

/** The gradient closures of one batch normalisation node (float32, per-channel statistics on the last axis). */
export function batchNormGradient(s: BatchNormSaved, dy: Tensor, eps: number, opts: BatchNormGradientOptions): Record<string, () => Tensor> {
  const { x, mean, variance, scale } = s;
  const c = mean.shape[0];
  const n = x.size / c;
  // One pass gives every reduction. Computed here, not in a closure: the tape runs each closure in its own tidy,
  // which would dispose a shared result.
  const [sumDy, sumDyXmu] = tf.engine().runKernel('FundusBatchNormGradStats', { x, dy, mean } as never) as Tensor[];
  const sd = sumDy.dataSync() as Float32Array;
  const sdx = sumDyXmu.dataSync() as Float32Array;
  const v = variance.dataSync() as Float32Array;
  const g = scale ? (scale.dataSync() as Float32Array) : undefined;
  const vectors = Array.from({ length: 6 }, () => new Float32Array(c));
  const [a, b, k, dScale, dMean, dVariance] = vectors;
  for (let j = 0; j < c; j++) {
    const r = 1 / Math.sqrt(v[j] + eps);
    const gr = (g ? g[j] : 1) * r;
    a[j] = gr;
    dScale[j] = r * sdx[j];
    if (opts.batchMoments) {
      b[j] = (-gr * sd[j]) / n;
      k[j] = (-gr * r * r * sdx[j]) / n;
    } else {
      dMean[j] = -gr * sd[j];
      dVariance[j] = -0.5 * gr * r * r * sdx[j];
    }
  }
  const reluMask = opts.reluMask ?? false;
  return {
    x: () =>
      opts.batchMoments || reluMask
        ? (tf.engine().runKernel('FundusBatchNormGradX', { x, dy, mean } as never, { a, b, k, reluMask } as never) as Tensor)
        : tf.mul(dy, tf.tensor1d(a)), // reads dy alone
    mean: () => (opts.batchMoments ? tf.zerosLike(mean) : tf.tensor1d(dMean)),
    variance: () => (opts.batchMoments ? tf.zerosLike(variance) : tf.tensor1d(dVariance)),
    scale: () => tf.tensor1d(dScale),
    offset: () => tf.clone(sumDy),
  };
}

/** True when batchNormGradient handles a node with these inputs: float32, statistics per channel (last axis). */
export function perChannelBatchNorm(x: Tensor, s: { mean?: Tensor; variance?: Tensor; scale?: Tensor; offset?: Tensor }): boolean {
  if (x.dtype !== 'float32' || x.rank < 2 || !s.mean || !s.variance) return false;
  const c = x.shape[x.rank - 1];
  const perChannel = (t: Tensor | undefined) => t === undefined || (t.rank === 1 && t.shape[0] === c && t.dtype === 'float32');
  return perChannel(s.mean) && perChannel(s.variance) && perChannel(s.scale) && perChannel(s.offset);
}

/** FusedBatchNorm's gradient with the moments as given inputs, on the native backend; tfjs's own elsewhere. */
export function batchNormGradFunc(original: GradConfig['gradFunc']): GradConfig['gradFunc'] {
  return (dy, saved, attrs) => {
    const [x, mean, variance, scale] = saved;
    const native = tf.getBackend() === NATIVE_BACKEND_NAME && !recordingBackward();
    if (!native || Array.isArray(dy) || dy.dtype !== 'float32' || !perChannelBatchNorm(x, { mean, variance, scale })) return original(dy, saved, attrs);
    return batchNormGradient({ x, mean, variance, scale }, dy, (attrs as { varianceEpsilon: number }).varianceEpsilon, { batchMoments: false });
  };
}
