// MaxPool, AvgPool and their gradients on oneDNN (native/src/pool.cc).
import { backend_util, util } from '@tensorflow/tfjs-core';
import type { KernelConfig, TensorInfo } from '@tensorflow/tfjs-core';
import { allocFloat32, addon, f32, fallback, output, type KernelArgs } from './util.js';
import { fitPadding } from './conv.js';

interface PoolAttrs {
  filterSize: [number, number] | number;
  strides: [number, number] | number;
  pad: 'valid' | 'same' | number | backend_util.ExplicitPadding;
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
}

const MAX = 0;
const AVG = 1; // forward: mean over the in-bounds part of the window
const AVG_FULL_WINDOW = 2; // tfjs's AvgPoolGrad spreads dy / (window size) even over padded windows

function poolParams(info: backend_util.Conv2DInfo): number[] | null {
  if (info.dataFormat !== 'channelsLast' || info.dilationHeight !== 1 || info.dilationWidth !== 1) return null;
  const ph = fitPadding(info.inHeight, info.filterHeight, 1, info.strideHeight, info.outHeight, info.padInfo.top, info.padInfo.bottom);
  const pw = fitPadding(info.inWidth, info.filterWidth, 1, info.strideWidth, info.outWidth, info.padInfo.left, info.padInfo.right);
  if (!ph || !pw || info.batchSize <= 0 || info.inChannels <= 0) return null;
  return [
    info.batchSize, info.inChannels, info.inHeight, info.inWidth, info.outHeight, info.outWidth, info.filterHeight,
    info.filterWidth, info.strideHeight, info.strideWidth, ph[0], pw[0], ph[1], pw[1],
  ];
}

function poolInfo(shape: number[], a: PoolAttrs): backend_util.Conv2DInfo {
  return backend_util.computePool2DInfo(shape as [number, number, number, number], a.filterSize, a.strides, 1, a.pad, a.dimRoundingMode);
}

function makePool(name: string, kind: number) {
  return (args: KernelArgs<{ x: TensorInfo }, PoolAttrs>): TensorInfo => {
    const { inputs: { x }, backend, attrs } = args;
    const info = poolInfo(x.shape, attrs!);
    const xv = f32(backend, x);
    const p = poolParams(info);
    if (xv && p) {
      const y = allocFloat32(util.sizeFromShape(info.outShape));
      if (addon().poolForward(kind, xv, y, p)) return output(backend, info.outShape, y);
    }
    return fallback(name, args);
  };
}

function maxPoolGrad(args: KernelArgs<{ dy: TensorInfo; input: TensorInfo; output: TensorInfo }, PoolAttrs>): TensorInfo {
  const { inputs: { dy, input }, backend, attrs } = args;
  const info = poolInfo(input.shape, attrs!);
  const dyv = f32(backend, dy);
  const xv = f32(backend, input);
  const p = poolParams(info);
  if (dyv && xv && p) {
    const dx = allocFloat32(util.sizeFromShape(input.shape));
    if (addon().poolBackward(MAX, dyv, xv, dx, p)) return output(backend, input.shape, dx);
  }
  return fallback('MaxPoolGrad', args);
}

function avgPoolGrad(args: KernelArgs<{ dy: TensorInfo; input: TensorInfo }, PoolAttrs>): TensorInfo {
  const { inputs: { dy, input }, backend, attrs } = args;
  const info = poolInfo(input.shape, attrs!);
  const dyv = f32(backend, dy);
  const p = poolParams(info);
  if (dyv && p) {
    const dx = allocFloat32(util.sizeFromShape(input.shape));
    if (addon().poolBackward(AVG_FULL_WINDOW, dyv, null, dx, p)) return output(backend, input.shape, dx);
  }
  return fallback('AvgPoolGrad', args);
}

export const poolKernels: Omit<KernelConfig, 'backendName'>[] = [
  { kernelName: 'MaxPool', kernelFunc: makePool('MaxPool', MAX) as never },
  { kernelName: 'AvgPool', kernelFunc: makePool('AvgPool', AVG) as never },
  { kernelName: 'MaxPoolGrad', kernelFunc: maxPoolGrad as never },
  { kernelName: 'AvgPoolGrad', kernelFunc: avgPoolGrad as never },
];
