// Conv2D, FusedConv2D, their depthwise counterparts and every convolution gradient on oneDNN (native/src/conv.cc).
// A depthwise convolution is a grouped one with one group per input channel. The forward kernels pass a filter's
// pack when it has one (packed-weights.ts: constant weights, reordered into oneDNN's layout once).
import { backend_util, util } from '@tensorflow/tfjs-core';
import type { KernelConfig, TensorInfo } from '@tensorflow/tfjs-core';
import { allocFloat32, addon, f32, fallback, output, cpuKernel, type Backend, type KernelArgs } from './util.js';
import { blockFusionOn } from '../block-fusion.js';
import { packOf } from '../packed-weights.js';
import { bufferPool } from '../pool.js';

type Pad = 'valid' | 'same' | number | backend_util.ExplicitPadding;
type Rounding = 'floor' | 'round' | 'ceil' | undefined;

interface ConvAttrs {
  strides: [number, number] | number;
  pad: Pad;
  dataFormat?: 'NHWC' | 'NCHW';
  dilations: [number, number] | number;
  dimRoundingMode?: Rounding;
  activation?: backend_util.Activation;
  leakyreluAlpha?: number;
  inputShape?: [number, number, number, number];
  filterShape?: [number, number, number, number];
}

/** oneDNN derives the output size from the paddings; find the far-side padding that reproduces tfjs's size. */
export function fitPadding(size: number, k: number, dilation: number, stride: number, out: number, lo: number, hi: number): [number, number] | null {
  if (lo < 0 || hi < 0 || out <= 0) return null;
  const eff = (k - 1) * dilation + 1;
  const outFor = (h: number) => Math.floor((size + lo + h - eff) / stride) + 1;
  if (outFor(hi) === out) return [lo, hi];
  const h2 = (out - 1) * stride + eff - size - lo;
  if (h2 >= 0 && outFor(h2) === out) return [lo, h2];
  return null;
}

const ACTIVATION_CODES: Partial<Record<string, number>> = { linear: 0, relu: 1, relu6: 2, elu: 3, leakyrelu: 4, sigmoid: 5 };

/** The parameter vector of native/src/conv.cc (ConvParams), or null when the case is not expressible. */
export function convParams(info: backend_util.Conv2DInfo, hasBias: boolean, activation: number, depthwise = false): number[] | null {
  const ph = fitPadding(info.inHeight, info.filterHeight, info.dilationHeight, info.strideHeight, info.outHeight, info.padInfo.top, info.padInfo.bottom);
  const pw = fitPadding(info.inWidth, info.filterWidth, info.dilationWidth, info.strideWidth, info.outWidth, info.padInfo.left, info.padInfo.right);
  if (!ph || !pw || info.batchSize <= 0 || info.inChannels <= 0 || info.outChannels <= 0) return null;
  return [
    info.batchSize, info.inChannels, info.inHeight, info.inWidth, info.outChannels, info.filterHeight, info.filterWidth,
    info.outHeight, info.outWidth, info.strideHeight, info.strideWidth, info.dilationHeight, info.dilationWidth,
    ph[0], pw[0], ph[1], pw[1], info.dataFormat === 'channelsFirst' ? 1 : 0, hasBias ? 1 : 0, activation,
    depthwise ? info.inChannels : 1,
  ];
}

type Kind = { name: string; depthwise: boolean };
const CONV: Kind = { name: 'Conv2D', depthwise: false };
const DEPTHWISE: Kind = { name: 'DepthwiseConv2dNative', depthwise: true };
const FUSED: Kind = { name: 'FusedConv2D', depthwise: false };
const FUSED_DEPTHWISE: Kind = { name: 'FusedDepthwiseConv2D', depthwise: true };
const CONV_GRAD_INPUT: Kind = { name: 'Conv2DBackpropInput', depthwise: false };
const CONV_GRAD_FILTER: Kind = { name: 'Conv2DBackpropFilter', depthwise: false };
const DEPTHWISE_GRAD_INPUT: Kind = { name: 'DepthwiseConv2dNativeBackpropInput', depthwise: true };
const DEPTHWISE_GRAD_FILTER: Kind = { name: 'DepthwiseConv2dNativeBackpropFilter', depthwise: true };

/** tfjs's geometry of a convolution; depthwise kernels carry no data format (always NHWC). */
function convInfo(xShape: number[], filterShape: number[], a: ConvAttrs, depthwise: boolean, dilations = a.dilations): backend_util.Conv2DInfo {
  return backend_util.computeConv2DInfo(
    xShape as [number, number, number, number], filterShape as [number, number, number, number], a.strides, dilations ?? 1, a.pad,
    a.dimRoundingMode, depthwise, backend_util.convertConv2DDataFormat(a.dataFormat ?? 'NHWC'));
}

const makeConv = (kind: Kind) => (args: KernelArgs<{ x: TensorInfo; filter: TensorInfo }, ConvAttrs>): TensorInfo => {
  const { inputs: { x, filter }, backend, attrs } = args;
  const info = convInfo(x.shape, filter.shape, attrs!, kind.depthwise);
  const xv = f32(backend, x);
  const wv = f32(backend, filter);
  const p = convParams(info, false, 0, kind.depthwise);
  if (xv && wv && p) {
    const y = allocFloat32(util.sizeFromShape(info.outShape));
    if (addon().conv2dForward(xv, wv, null, y, p, 0, null, packOf(filter.dataId))) return output(backend, info.outShape, y);
  }
  return fallback(kind.name, args);
};

interface FusedInputs { x: TensorInfo; filter: TensorInfo; bias?: TensorInfo; preluActivationWeights?: TensorInfo }

/** Bias of length O (or a scalar, broadcast here) for oneDNN's per-channel bias; null when it has another shape. */
function channelBias(backend: Backend, bias: TensorInfo | undefined, channels: number, nchw: boolean): Float32Array | null | undefined {
  if (!bias) return undefined;
  const v = f32(backend, bias);
  if (!v) return null;
  const perChannel = nchw ? bias.shape.length === 1 : bias.shape[bias.shape.length - 1] === channels;
  if (v.length === channels && !perChannel) return null;
  if (v.length === channels) return v;
  if (v.length === 1) return new Float32Array(channels).fill(v[0]);
  return null;
}

const makeFusedConv = (kind: Kind) => (args: KernelArgs<FusedInputs, ConvAttrs>): TensorInfo => {
  const { inputs: { x, filter, bias, preluActivationWeights }, backend, attrs } = args;
  const a = attrs!;
  const activation = a.activation ?? 'linear';
  const code = ACTIVATION_CODES[activation];
  const isPrelu = activation === 'prelu';
  const info = convInfo(x.shape, filter.shape, a, kind.depthwise);
  const xv = f32(backend, x);
  const wv = f32(backend, filter);
  const bv = channelBias(backend, bias, info.outChannels, a.dataFormat === 'NCHW');
  const nativeOk = xv && wv && bv !== null && (code !== undefined || (isPrelu && a.dataFormat !== 'NCHW'));
  const p = nativeOk ? convParams(info, bv !== undefined, isPrelu ? 0 : code!, kind.depthwise) : null;
  if (xv && wv && p) {
    const y = allocFloat32(util.sizeFromShape(info.outShape));
    if (addon().conv2dForward(xv, wv, bv ?? null, y, p, a.leakyreluAlpha ?? 0.2, null, packOf(filter.dataId))) {
      const result = output(backend, info.outShape, y);
      if (!isPrelu) return result;
      const activated = cpuKernel('Prelu')({ inputs: { x: result, alpha: preluActivationWeights! }, backend }) as TensorInfo;
      backend.disposeIntermediateTensorInfo(result);
      return activated;
    }
  }
  return fallback(kind.name, args);
};

const ACTIVATION_KERNELS: Partial<Record<string, string>> = { relu: 'Relu', relu6: 'Relu6', elu: 'Elu', sigmoid: 'Sigmoid' };

/**
 * Whether the residual's memory may take the result: the caller (an inference plan) says that nothing reads the
 * residual after this kernel, and the memory is a recycled buffer (pool.ts) that no other tensor refers to (no
 * other data entry, no view) and that x does not share. FUNDUS_BLOCK_FUSION=off turns it off (for comparisons).
 */
function residualTakesResult(backend: Backend, residual: TensorInfo, rv: Float32Array, xv: Float32Array): boolean {
  return blockFusionOn() && backend.refCount(residual.dataId) === 1 && bufferPool.isSoleOwner(rv) && rv.buffer !== xv.buffer;
}

/**
 * FundusConv2DResidual (inference plans, src/engine/inference.ts): y = activation(conv(x) + bias + residual), a
 * residual block's last convolution, its shortcut addition and the block's activation in one native kernel (oneDNN's
 * sum post-op). With `inPlace` (the plan's promise that nothing reads the residual afterwards), the result is
 * written into the residual's memory where that is safe (residualTakesResult): the sum post-op then reads the
 * shortcut where it already is instead of a copy of it (a 51 MB copy per block at 56x56x256 and batch 16). When the
 * native kernel declines, the same as FusedConv2D, Add and the activation (the residual untouched).
 */
function conv2dResidual(args: KernelArgs<FusedInputs & { residual: TensorInfo }, ConvAttrs & { inPlace?: boolean }>): TensorInfo {
  const { inputs: { x, filter, bias, residual }, backend, attrs } = args;
  const a = attrs!;
  const activation = a.activation ?? 'linear';
  const code = ACTIVATION_CODES[activation];
  const info = convInfo(x.shape, filter.shape, a, false);
  const xv = f32(backend, x);
  const wv = f32(backend, filter);
  const rv = f32(backend, residual);
  const bv = channelBias(backend, bias, info.outChannels, a.dataFormat === 'NCHW');
  const p = xv && wv && rv && bv !== null && code !== undefined && util.arraysEqual(residual.shape, info.outShape) ? convParams(info, bv !== undefined, code, false) : null;
  if (p) {
    const y = a.inPlace && residualTakesResult(backend, residual, rv!, xv!) ? rv! : allocFloat32(util.sizeFromShape(info.outShape));
    if (addon().conv2dForward(xv!, wv!, bv ?? null, y, p, a.leakyreluAlpha ?? 0.2, rv!, packOf(filter.dataId))) return output(backend, info.outShape, y);
  }
  const linear = makeFusedConv(FUSED)({ inputs: { x, filter, bias }, backend, attrs: { ...a, activation: 'linear' } });
  const sum = cpuKernel('Add')({ inputs: { a: linear, b: residual }, backend }) as TensorInfo;
  backend.disposeIntermediateTensorInfo(linear);
  const kernel = ACTIVATION_KERNELS[activation];
  if (!kernel) return sum;
  const activated = cpuKernel(kernel)({ inputs: { x: sum }, backend }) as TensorInfo;
  backend.disposeIntermediateTensorInfo(sum);
  return activated;
}

interface InvertedResidualInputs {
  x: TensorInfo;
  filter: TensorInfo;
  bias: TensorInfo;
  dwFilter: TensorInfo;
  dwBias: TensorInfo;
  projectFilter: TensorInfo;
  projectBias?: TensorInfo;
  residual?: TensorInfo;
}

interface InvertedResidualAttrs {
  /** The expansion's, the depthwise convolution's and the projection's activation (the last after the residual). */
  activation: backend_util.Activation;
  dwActivation: backend_util.Activation;
  projectActivation: backend_util.Activation;
  /** The depthwise convolution's stride (both axes); its padding is "same". */
  dwStride: number;
}

/**
 * FundusInvertedResidual (inference plans, src/engine/inference.ts): MobileNetV2's inverted-residual block, a 1x1
 * expansion, the depthwise 3x3 convolution ("same" padding) that alone reads it and the 1x1 projection that alone
 * reads that, each with its bias and activation, the block's shortcut added by the projection when given. Natively
 * one call (expansion and depthwise convolution as one oneDNN primitive, native/src/conv.cc); otherwise, or when the
 * native kernel declines, the three fused convolutions.
 */
function invertedResidual(args: KernelArgs<InvertedResidualInputs, InvertedResidualAttrs>): TensorInfo {
  const { inputs: { x, filter, bias, dwFilter, dwBias, projectFilter, projectBias, residual }, backend, attrs } = args;
  const a = attrs!;
  const pointwise = { strides: 1, pad: 'valid', dilations: 1, dataFormat: 'NHWC' } as const;
  const dwAttrs = { strides: a.dwStride, pad: 'same', dilations: 1, dataFormat: 'NHWC' } as const;
  const expand = convInfo(x.shape, filter.shape, pointwise, false);
  const dw = convInfo(expand.outShape, dwFilter.shape, dwAttrs, true);
  const project = convInfo(dw.outShape, projectFilter.shape, pointwise, false);
  if (blockFusionOn() && (!residual || util.arraysEqual(residual.shape, project.outShape))) {
    const [ce, cd, cp] = [a.activation, a.dwActivation, a.projectActivation].map((name) => ACTIVATION_CODES[name]);
    const pb = channelBias(backend, projectBias, project.outChannels, false);
    const pe = ce === undefined ? null : convParams(expand, true, ce);
    const pd = cd === undefined ? null : convParams(dw, true, cd, true);
    const pp = cp === undefined || pb === null ? null : convParams(project, pb !== undefined, cp);
    const arrays = [x, filter, dwFilter, projectFilter].map((t) => f32(backend, t));
    const biases = [channelBias(backend, bias, expand.outChannels, false), channelBias(backend, dwBias, dw.outChannels, false)];
    const rv = residual ? f32(backend, residual) : null;
    const native = addon().invertedResidualForward;
    if (native && pe && pd && pp && arrays.every((v) => v) && biases.every((v) => v) && (!residual || rv)) {
      const [xv, wv, dwv, pwv] = arrays as Float32Array[];
      const [bv, dbv] = biases as Float32Array[];
      const y = allocFloat32(util.sizeFromShape(project.outShape));
      const packs = [filter, dwFilter, projectFilter].map((t) => packOf(t.dataId) ?? null);
      if (native(xv, wv, bv, dwv, dbv, pwv, pb ?? null, rv, y, pe, pd, pp, packs)) return output(backend, project.outShape, y);
    }
  }
  const expanded = makeFusedConv(FUSED)({ inputs: { x, filter, bias }, backend, attrs: { ...pointwise, activation: a.activation } });
  const depthwise = makeFusedConv(FUSED_DEPTHWISE)({ inputs: { x: expanded, filter: dwFilter, bias: dwBias }, backend, attrs: { ...dwAttrs, activation: a.dwActivation } });
  backend.disposeIntermediateTensorInfo(expanded);
  const projectInputs = { x: depthwise, filter: projectFilter, bias: projectBias };
  const projectAttrs = { ...pointwise, activation: a.projectActivation };
  const y = residual
    ? conv2dResidual({ inputs: { ...projectInputs, residual }, backend, attrs: projectAttrs })
    : makeFusedConv(FUSED)({ inputs: projectInputs, backend, attrs: projectAttrs });
  backend.disposeIntermediateTensorInfo(depthwise);
  return y;
}

// tfjs's Conv2D gradients always pass dilation 1 (it refuses dilated gradients); the depthwise ones pass theirs.
const makeBackpropInput = ({ name, depthwise }: Kind) => (args: KernelArgs<{ dy: TensorInfo; filter: TensorInfo }, ConvAttrs>): TensorInfo => {
  const { inputs: { dy, filter }, backend, attrs } = args;
  const a = attrs!;
  const inputShape = a.inputShape!;
  const info = convInfo(inputShape, filter.shape, a, depthwise, depthwise ? a.dilations : 1);
  const dyv = f32(backend, dy);
  const wv = f32(backend, filter);
  const p = convParams(info, false, 0, depthwise);
  if (dyv && wv && p) {
    const dx = allocFloat32(util.sizeFromShape(inputShape));
    if (addon().conv2dBackwardData(dyv, wv, dx, p)) return output(backend, [...inputShape], dx);
  }
  return fallback(name, args);
};

const makeBackpropFilter = ({ name, depthwise }: Kind) => (args: KernelArgs<{ x: TensorInfo; dy: TensorInfo }, ConvAttrs>): TensorInfo => {
  const { inputs: { x, dy }, backend, attrs } = args;
  const a = attrs!;
  const filterShape = a.filterShape!;
  const info = convInfo(x.shape, filterShape, a, depthwise, depthwise ? a.dilations : 1);
  const xv = f32(backend, x);
  const dyv = f32(backend, dy);
  const p = convParams(info, false, 0, depthwise);
  if (xv && dyv && p) {
    const dw = allocFloat32(util.sizeFromShape(filterShape));
    if (addon().conv2dBackwardWeights(xv, dyv, dw, p)) return output(backend, [...filterShape], dw);
  }
  return fallback(name, args);
};

export const convKernels: Omit<KernelConfig, 'backendName'>[] = [
  { kernelName: 'Conv2D', kernelFunc: makeConv(CONV) as never },
  { kernelName: 'FusedConv2D', kernelFunc: makeFusedConv(FUSED) as never },
  { kernelName: 'Conv2DBackpropInput', kernelFunc: makeBackpropInput(CONV_GRAD_INPUT) as never },
  { kernelName: 'Conv2DBackpropFilter', kernelFunc: makeBackpropFilter(CONV_GRAD_FILTER) as never },
  { kernelName: 'DepthwiseConv2dNative', kernelFunc: makeConv(DEPTHWISE) as never },
  { kernelName: 'FusedDepthwiseConv2D', kernelFunc: makeFusedConv(FUSED_DEPTHWISE) as never },
  { kernelName: 'DepthwiseConv2dNativeBackpropInput', kernelFunc: makeBackpropInput(DEPTHWISE_GRAD_INPUT) as never },
  { kernelName: 'DepthwiseConv2dNativeBackpropFilter', kernelFunc: makeBackpropFilter(DEPTHWISE_GRAD_FILTER) as never },
  { kernelName: 'FundusConv2DResidual', kernelFunc: conv2dResidual as never },
  { kernelName: 'FundusInvertedResidual', kernelFunc: invertedResidual as never },
];
