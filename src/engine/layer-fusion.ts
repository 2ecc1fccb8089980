// tfjs-layers' convolution layers with their bias and activation in the convolution kernel. tfjs-layers fuses only
// a Conv2D's bias and a ReLU, linear or ELU activation: a ReLU6 (MobileNetV2's activation) or sigmoid runs as a
// pass of its own after the convolution, and a DepthwiseConv2D adds its bias and applies its activation as two more
// passes (three full passes over each depthwise output where one does). On the native backend:
// - outside gradient recording (inference: predict, evaluation, feature extraction), Conv2D with ReLU6 or sigmoid
//   and DepthwiseConv2D with any of linear, ReLU, ReLU6, ELU, sigmoid run as one fused kernel;
// - while a gradient is recorded, DepthwiseConv2D's bias is fused (tfjs's fused op, with its own gradient: the
//   bias's is the same sum of dy that Add's gradient takes) and the activation stays a kernel of its own, as tfjs's
//   fused ops cannot differentiate ReLU6; Conv2D is left to tfjs-layers.
// Everything else (channels-first data, 1-D and 3-D convolutions, other activations, other backends) runs
// tfjs-layers' own call.
import * as tf from '@tensorflow/tfjs-core';
import { NATIVE_BACKEND_NAME } from './names.js';
import { engineInternals, layerClass, type ConvLayerInternals, type LayerClass } from './internals.js';

export type FusedActivation = 'linear' | 'relu' | 'relu6' | 'elu' | 'sigmoid';
/** tfjs-layers' activation class names that tf.fused takes under the same name. */
export const FUSABLE = new Set<string>(['linear', 'relu', 'relu6', 'elu', 'sigmoid']);
/** What tfjs-layers' Conv2D already fuses itself. */
const FUSED_BY_LAYERS = new Set<string>(['linear', 'relu', 'elu']);

type Call = LayerClass['prototype']['call'];

/** The single 4-D float32 input of a channels-last 2-D convolution layer on the native backend, else null. */
function nativeInput(layer: ConvLayerInternals, inputs: tf.Tensor | tf.Tensor[]): tf.Tensor4D | null {
  const x = Array.isArray(inputs) ? (inputs.length === 1 ? inputs[0] : null) : inputs;
  if (!x || x.rank !== 4 || x.dtype !== 'float32') return null;
  if (tf.getBackend() !== NATIVE_BACKEND_NAME || layer.rank !== 2 || layer.dataFormat !== 'channelsLast') return null;
  return x as tf.Tensor4D;
}

const recording = () => engineInternals().state.gradientDepth > 0;
const activationOf = (layer: ConvLayerInternals) => layer.activation?.getClassName() ?? 'linear';

/** What a convolution runs with in a fused kernel: its activation, and a folded batch norm's filter and bias if any. */
export interface ConvWeights {
  activation: FusedActivation;
  filter?: tf.Tensor4D;
  bias?: tf.Tensor;
}

/** A Conv2D or DepthwiseConv2D layer's own filter (its kernel variable's current value). */
export function layerFilter(layer: ConvLayerInternals): tf.Tensor4D {
  return (layer.depthwiseKernel ?? layer.kernel!).read() as tf.Tensor4D;
}

/** The filter and bias a convolution runs with: the given (folded) ones, else the layer's own. */
function weightsOf(layer: ConvLayerInternals, w: ConvWeights): { filter: tf.Tensor4D; bias?: tf.Tensor } {
  return { filter: w.filter ?? layerFilter(layer), bias: w.bias ?? layer.bias?.read() };
}

/**
 * The layer's convolution of x as one fused op: its geometry, with its own filter and bias unless given (a folded
 * batch norm's), and the given activation; with `residual` (a Conv2D's, in inference plans), that tensor is added
 * before the activation by the native FundusConv2DResidual kernel (src/engine/kernels/conv.ts), which with
 * `inPlace` (the caller's promise that nothing reads the residual afterwards: it is disposed next) may write the
 * result into the residual's memory. With `padding`, a Conv2D runs with those zeros around x instead of its own
 * padding (a "valid" convolution after a ZeroPadding2D layer).
 */
export function fusedConvOfLayer(
  layer: ConvLayerInternals,
  x: tf.Tensor4D,
  o: ConvWeights & { residual?: tf.Tensor; inPlace?: boolean; padding?: [[number, number], [number, number]] },
): tf.Tensor4D {
  // `padding` (a Conv2D's, in inference plans): the zeros of a ZeroPadding2D layer before a "valid" convolution.
  const pad: 'same' | 'valid' | [[number, number], [number, number], [number, number], [number, number]] = o.padding
    ? [[0, 0], o.padding[0], o.padding[1], [0, 0]]
    : layer.padding === 'same' ? 'same' : 'valid';
  const strides = layer.strides as [number, number];
  const { filter, bias } = weightsOf(layer, o);
  if (layer.depthwiseKernel) {
    if (o.residual || typeof pad !== 'string') throw new Error('fusedConvOfLayer: a residual or padding is only given to a Conv2D');
    // tfjs-layers' DepthwiseConv2D passes no dilation to the convolution (its dilationRate is ignored).
    return tf.fused.depthwiseConv2d({ x, filter, strides, pad, dataFormat: 'NHWC', bias, activation: o.activation });
  }
  const dilations = layer.dilationRate as [number, number];
  if (o.residual) {
    const inputs = bias ? { x, filter, bias, residual: o.residual } : { x, filter, residual: o.residual };
    const attrs = { strides, pad, dilations, dataFormat: 'NHWC', activation: o.activation, inPlace: o.inPlace === true };
    return tf.engine().runKernel('FundusConv2DResidual', inputs as never, attrs as never) as tf.Tensor4D;
  }
  return tf.fused.conv2d({ x, filter, strides, pad, dilations, dataFormat: 'NHWC', bias, activation: o.activation });
}

/**
 * MobileNetV2's inverted-residual block: a 1x1 Conv2D layer (the expansion), the 3x3 DepthwiseConv2D layer ("same"
 * padding) that alone reads it and the 1x1 Conv2D layer (the projection) that alone reads that, as one kernel
 * (FundusInvertedResidual, src/engine/kernels/conv.ts), each with its own filter and bias unless given and the given
 * activation; with `residual`, that tensor is added before the projection's activation. A layer without a bias
 * adds zeros (the native kernel wants the first two).
 */
export function invertedResidualOfLayers(
  layers: { expand: ConvLayerInternals; depthwise: ConvLayerInternals; project: ConvLayerInternals },
  x: tf.Tensor4D,
  w: { expand: ConvWeights; depthwise: ConvWeights; project: ConvWeights },
  residual?: tf.Tensor,
): tf.Tensor4D {
  return tf.tidy(() => {
    const [expand, depthwise, project] = (['expand', 'depthwise', 'project'] as const).map((k) => weightsOf(layers[k], w[k]));
    const channels = expand.filter.shape[3];
    const inputs = {
      x,
      filter: expand.filter,
      bias: expand.bias ?? tf.zeros([channels]),
      dwFilter: depthwise.filter,
      dwBias: depthwise.bias ?? tf.zeros([channels]),
      projectFilter: project.filter,
      ...optional('projectBias', project.bias),
      ...optional('residual', residual),
    };
    const attrs = { activation: w.expand.activation, dwActivation: w.depthwise.activation, projectActivation: w.project.activation, dwStride: layers.depthwise.strides[0] };
    return tf.engine().runKernel('FundusInvertedResidual', inputs as never, attrs as never) as tf.Tensor4D;
  });
}

/** { [name]: t } when t is given, else nothing (runKernel's inputs must not hold undefined). */
const optional = <K extends string>(name: K, t: tf.Tensor | undefined) => (t ? ({ [name]: t } as Record<K, tf.Tensor>) : {});

function conv2dCall(original: Call): Call {
  return function call(this: ConvLayerInternals, inputs, kwargs) {
    const x = nativeInput(this, inputs);
    const activation = activationOf(this);
    if (!x || !this.kernel || recording() || !FUSABLE.has(activation) || FUSED_BY_LAYERS.has(activation)) return original.call(this, inputs, kwargs);
    return tf.tidy(() => fusedConvOfLayer(this, x, { activation: activation as FusedActivation }));
  };
}

function depthwiseCall(original: Call): Call {
  return function call(this: ConvLayerInternals, inputs, kwargs) {
    const x = nativeInput(this, inputs);
    const activation = activationOf(this);
    if (!x || !this.depthwiseKernel || !FUSABLE.has(activation)) return original.call(this, inputs, kwargs);
    const inGradient = recording();
    if (inGradient && !this.bias) return original.call(this, inputs, kwargs);
    return tf.tidy(() => {
      const y = fusedConvOfLayer(this, x, { activation: inGradient ? 'linear' : (activation as FusedActivation) });
      return inGradient && this.activation ? this.activation.apply(y) : y;
    });
  };
}

/** Replaces the call of Conv2D and DepthwiseConv2D (native backend only); returns how to restore them. */
export function installConvLayerFusion(): () => void {
  const undo: (() => void)[] = [];
  for (const [name, make] of [['Conv2D', conv2dCall], ['DepthwiseConv2D', depthwiseCall]] as const) {
    const proto = layerClass(name)!.prototype;
    const own = Object.prototype.hasOwnProperty.call(proto, 'call');
    const original = proto.call;
    proto.call = make(original);
    undo.push(() => {
      if (own) proto.call = original;
      else delete (proto as Partial<typeof proto>).call;
    });
  }
  return () => undo.reverse().forEach((u) => u());
}
