// FusedBatchNorm (tfjs's batchNorm op: normalise with given mean/variance, then scale and offset).
import type { KernelConfig, TensorInfo } from '@tensorflow/tfjs-core';
import { allocFloat32, addon, f32, fallback, output, type KernelArgs } from './util.js';
import { batchNormEpsilon } from './notes.js';

interface Inputs { x: TensorInfo; mean: TensorInfo; variance: TensorInfo; offset?: TensorInfo; scale?: TensorInfo }

function fusedBatchNorm(args: KernelArgs<Inputs, { varianceEpsilon?: number }>): TensorInfo {
  const { inputs: { x, mean, variance, offset, scale }, backend, attrs } = args;
  const xv = f32(backend, x);
  const mv = f32(backend, mean);
  const vv = f32(backend, variance);
  const ov = offset ? f32(backend, offset) : null;
  const sv = scale ? f32(backend, scale) : null;
  if (xv && mv && vv && (!offset || ov) && (!scale || sv) && mv.length > 0 && vv.length > 0) {
    const out = allocFloat32(xv.length);
    const eps = attrs?.varianceEpsilon ?? 0.001;
    if (addon().batchNorm(xv, xv.length, mv, vv, ov, sv, eps, out)) {
      const result = output(backend, x.shape, out);
      batchNormEpsilon.set(result.dataId, eps);
      return result;
    }
  }
  return fallback('FusedBatchNorm', args);
}

export const batchNormKernels: Omit<KernelConfig, 'backendName'>[] = [{ kernelName: 'FusedBatchNorm', kernelFunc: fusedBatchNorm as never }];
