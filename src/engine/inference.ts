// Inference of a tfjs-layers model with batch normalisation folded into the convolution before it and the
// activation after it fused into the same kernel. model.predict runs every layer as tfjs-layers builds it: in a
// ResNet-50, each of the 53 convolutions is followed by a batch-norm pass and most by a ReLU pass (a fifth of the
// inference time here). In inference mode a batch norm is an affine map per channel, so a convolution followed
// only by it is the same convolution with scaled weights and a new bias:
//   W'[..., o] = W[..., o] s[o],  b'[o] = (b[o] - mean[o]) s[o] + beta[o],  s = gamma / sqrt(var + eps);
// and an Activation layer (ReLU, ReLU6, ...) that only that result feeds runs inside the convolution kernel. A
// convolution whose result only an Add reads (a residual block's last one) runs at the Add's place with the other
// operand summed into its output (oneDNN's sum post-op) and the block's activation fused too; when this step is the
// other operand's last reader, the result is written into that operand's memory (no copy of the shortcut). A
// ZeroPadding2D layer in front of a "valid" convolution, or of a "valid" max pooling of a ReLU's output (Keras's
// ResNet-50 stem), becomes that convolution's or pooling's own padding (no padded copy of the map). A MobileNetV2
// inverted-residual block (1x1 expansion, depthwise 3x3, 1x1 projection, each alone reading the one before) runs as one
// kernel whose expansion and depthwise convolution are one oneDNN primitive (layer-fusion.ts, invertedResidualOfLayers).
// Only for inference: training needs the batch norm's batch statistics and gradients. The folded weights are
// recomputed whenever a weight variable of the model has been assigned since (training, then validation). Every
// filter the plan convolves with, folded or the layer's own, is a constant until then: each is packed once
// (packed-weights.ts: kept in oneDNN's layout with its primitive instead of reordered on every call).
// Every other layer runs as model.predict would run it (its own call, in inference mode); models this does not
// understand (shared layers, several inputs or outputs) run model.predict itself.
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { blockFusionOn } from './block-fusion.js';
import { NATIVE_BACKEND_NAME } from './names.js';
import type { ConvLayerInternals } from './internals.js';
import { FUSABLE, fusedConvOfLayer, invertedResidualOfLayers, layerFilter, type ConvWeights, type FusedActivation as Activation } from './layer-fusion.js';
import { packWeights } from './packed-weights.js';

interface LayerNode {
  inboundNodes: { inputTensors: { id: number }[]; outputTensors: { id: number }[]; callArgs?: Record<string, unknown> }[];
}
type Layer = tfl.layers.Layer & LayerNode;

/** The fields of tfjs-layers' BatchNormalization that the fold reads. */
interface BatchNormInternals {
  axis: number;
  epsilon: number;
  gamma: { read(): tf.Tensor } | null;
  beta: { read(): tf.Tensor } | null;
  movingMean: { read(): tf.Tensor };
  movingVariance: { read(): tf.Tensor };
}

/** Zeros added above and below, left and right of a map (a ZeroPadding2D layer's `padding`). */
type Padding = [[number, number], [number, number]];
/**
 * A fused convolution: the layer, the batch norm folded into it, the activation in its kernel, a residual summed in,
 * and the ZeroPadding2D layer before it (`padded`) as the convolution's own padding.
 */
type ConvStep = { kind: 'conv'; conv: Layer; depthwise: boolean; bn?: Layer; activation: Activation; input: number; output: number; residual?: number; padded?: Padding };
/** One step of the plan: a fused convolution, an inverted-residual block of three, a max pooling with the zero
 * padding before it as its own padding, or a layer run by its own call. */
type Step =
  | ConvStep
  | { kind: 'block'; expand: ConvStep; depthwise: ConvStep; project: ConvStep }
  | { kind: 'pool'; layer: Layer; padded: Padding; input: number; output: number }
  | { kind: 'layer'; layer: Layer; inputs: number[]; outputs: number[]; kwargs: Record<string, unknown> };

/** The fields of tfjs-layers' ZeroPadding2D and MaxPooling2D that the plan reads. */
interface PaddingInternals {
  padding: Padding;
  dataFormat: string;
}
interface PoolInternals {
  poolSize: [number, number];
  strides: [number, number];
  padding: string;
  dataFormat: string;
}

/** Activations whose output is never negative: zero padding before a max pooling of it is the pooling's own padding. */
const NON_NEGATIVE = new Set<string>(['relu', 'relu6', 'sigmoid']);

interface Plan {
  steps: Step[];
  input: number;
  output: number;
  /** How many steps read each symbolic tensor (the last reader disposes it). */
  readers: Map<number, number>;
}

const className = (l: tfl.layers.Layer) => l.getClassName();
const single = <T>(xs: readonly T[]): T | undefined => (xs.length === 1 ? xs[0] : undefined);

/** Layers of the model, with their one inbound node each; null when a layer is shared or the model nested. */
function nodesOf(model: tfl.LayersModel): Layer[] | null {
  const layers = model.layers as Layer[];
  for (const l of layers) if (className(l) !== 'InputLayer' && l.inboundNodes.length !== 1) return null;
  return layers;
}

/** The inference plan, or null when the model is not a plain single-input single-output graph of layers. */
function planOf(model: tfl.LayersModel): Plan | null {
  const layers = nodesOf(model);
  const input = single(model.inputs);
  const output = single(model.outputs);
  if (!layers || !input || !output) return null;
  const consumers = new Map<number, Layer[]>();
  for (const l of layers) {
    if (className(l) === 'InputLayer') continue;
    for (const t of l.inboundNodes[0].inputTensors) consumers.set(t.id, [...(consumers.get(t.id) ?? []), l]);
  }
  const onlyConsumer = (id: number): Layer | undefined => (id === output.id ? undefined : single(consumers.get(id) ?? []));
  const outOf = (l: Layer) => single(l.inboundNodes[0].outputTensors)?.id;
  const absorbed = new Set<Layer>();
  /** Convolutions whose output only an Add reads: they run at the Add's place, with the other operand summed in. */
  const atAdd = new Map<Layer, ConvStep>();
  /** The Activation layer (fusable) that alone reads a tensor, if any. */
  const fusedActivation = (id: number): { layer: Layer; name: string } | undefined => {
    const after = onlyConsumer(id);
    if (!after || className(after) !== 'Activation') return undefined;
    const name = (after as unknown as { activation: { getClassName(): string } }).activation.getClassName();
    return FUSABLE.has(name) ? { layer: after, name } : undefined;
  };
  /**
   * A ZeroPadding2D layer whose result only a "valid" Conv2D reads, or only a "valid" MaxPooling2D reads and whose
   * input is never negative (a ReLU's output): the convolution or pooling pads instead (no padded copy of the map).
   */
  const paddedBy = new Map<Layer, { pad: Layer; padding: Padding; input: number }>();
  /** Outputs of convolution steps that are never negative. */
  const nonNegative = new Set<number>();
  const steps: Step[] = [];
  const pushConv = (step: ConvStep) => {
    steps.push(step);
    if (NON_NEGATIVE.has(step.activation)) nonNegative.add(step.output);
  };
  for (const l of layers) {
    if (className(l) === 'InputLayer' || absorbed.has(l)) continue;
    const node = l.inboundNodes[0];
    if (className(l) === 'ZeroPadding2D') {
      const z = l as unknown as PaddingInternals;
      const padIn = single(node.inputTensors)?.id;
      const padOut = outOf(l);
      const next = padOut === undefined ? undefined : onlyConsumer(padOut);
      const nextName = next ? className(next) : '';
      const validConv = nextName === 'Conv2D' && (next as unknown as ConvLayerInternals).padding === 'valid' && (next as unknown as ConvLayerInternals).dataFormat === 'channelsLast';
      const pool = next as unknown as PoolInternals | undefined;
      const validPool = nextName === 'MaxPooling2D' && pool!.padding === 'valid' && pool!.dataFormat === 'channelsLast' && padIn !== undefined && nonNegative.has(padIn);
      if (z.dataFormat === 'channelsLast' && padIn !== undefined && next && (validConv || validPool)) {
        paddedBy.set(next, { pad: l, padding: z.padding, input: padIn });
        continue;
      }
    }
    const padded = paddedBy.get(l);
    if (padded && className(l) === 'MaxPooling2D') {
      steps.push({ kind: 'pool', layer: l, padded: padded.padding, input: padded.input, output: outOf(l)! });
      continue;
    }
    const deferred = atAdd.get(l);
    if (deferred) {
      // y = activation(conv(x) + bias + the Add's other operand); the activation, if an Activation layer alone
      // reads the sum, runs in the same kernel.
      const operands = node.inputTensors.map((t) => t.id);
      deferred.residual = operands.find((id) => id !== deferred.output);
      deferred.output = outOf(l)!;
      const act = fusedActivation(deferred.output);
      if (act) {
        absorbed.add(act.layer);
        deferred.activation = act.name as Activation;
        deferred.output = outOf(act.layer)!;
      }
      pushConv(deferred);
      continue;
    }
    const name = className(l);
    const conv = l as unknown as ConvLayerInternals;
    const inputId = padded ? padded.input : single(node.inputTensors)?.id;
    let out = outOf(l);
    if ((name === 'Conv2D' || name === 'DepthwiseConv2D') && conv.dataFormat === 'channelsLast' && inputId !== undefined && out !== undefined) {
      let activation = conv.activation?.getClassName() ?? 'linear';
      let bn: Layer | undefined;
      const next = onlyConsumer(out);
      if (activation === 'linear' && next && className(next) === 'BatchNormalization' && foldable(next)) {
        bn = next;
        out = outOf(next)!;
      }
      const act = activation === 'linear' ? fusedActivation(out) : undefined;
      if (act) {
        activation = act.name;
        absorbed.add(act.layer);
        out = outOf(act.layer)!;
      }
      if (FUSABLE.has(activation)) {
        if (bn) absorbed.add(bn);
        const step: ConvStep = { kind: 'conv', conv: l, depthwise: name === 'DepthwiseConv2D', bn, activation: activation as Activation, input: inputId, output: out };
        if (padded) step.padded = padded.padding;
        const add = activation === 'linear' && name === 'Conv2D' ? onlyConsumer(out) : undefined;
        const operands = add?.inboundNodes[0].inputTensors ?? [];
        if (add && className(add) === 'Add' && !atAdd.has(add) && operands.length === 2 && operands[0].id !== operands[1].id) atAdd.set(add, step);
        else pushConv(step);
        continue;
      }
    }
    // A layer that runs by its own call after all: its ZeroPadding2D runs before it, as in the model.
    if (padded) {
      const p = padded.pad.inboundNodes[0];
      steps.push({ kind: 'layer', layer: padded.pad, inputs: [padded.input], outputs: p.outputTensors.map((t) => t.id), kwargs: p.callArgs ?? {} });
    }
    steps.push({ kind: 'layer', layer: l, inputs: node.inputTensors.map((t) => t.id), outputs: node.outputTensors.map((t) => t.id), kwargs: node.callArgs ?? {} });
  }
  const grouped = groupInvertedResiduals(steps, readersOf(steps), output.id);
  return { steps: grouped, input: input.id, output: output.id, readers: readersOf(grouped) };
}

/** The tensors a step reads. */
function inputsOf(s: Step): number[] {
  if (s.kind === 'layer') return s.inputs;
  if (s.kind === 'pool') return [s.input];
  const first = s.kind === 'block' ? s.expand : s;
  const last = s.kind === 'block' ? s.project : s;
  return last.residual === undefined ? [first.input] : [first.input, last.residual];
}

/** How many steps read each tensor. */
function readersOf(steps: Step[]): Map<number, number> {
  const readers = new Map<number, number>();
  for (const s of steps) for (const id of inputsOf(s)) readers.set(id, (readers.get(id) ?? 0) + 1);
  return readers;
}

/** A Conv2D's filter is [kh, kw, in, out]; a DepthwiseConv2D's [kh, kw, in, multiplier]. */
const filterShape = (s: ConvStep) => layerFilter(s.conv as unknown as ConvLayerInternals).shape;
const isPointwise = (s: ConvStep) => {
  const [kh, kw] = filterShape(s);
  return !s.depthwise && !s.padded && kh === 1 && kw === 1 && (s.conv as unknown as ConvLayerInternals).strides.every((v) => v === 1);
};
/** What oneDNN's depthwise post-op computes: 3x3, multiplier 1, "same" padding, one stride for both axes. */
const isFusableDepthwise = (s: ConvStep) => {
  const [kh, kw, , multiplier] = filterShape(s);
  const c = s.conv as unknown as ConvLayerInternals;
  return s.depthwise && s.residual === undefined && kh === 3 && kw === 3 && multiplier === 1 && c.padding === 'same' && c.strides[0] === c.strides[1];
};

/**
 * Three consecutive convolution steps that form MobileNetV2's inverted-residual block become one step: a 1x1
 * expansion, the depthwise convolution that alone reads it, the 1x1 projection (a residual summed in or not) that
 * alone reads that; neither intermediate tensor is the model's output.
 */
function groupInvertedResiduals(steps: Step[], readers: Map<number, number>, output: number): Step[] {
  const out: Step[] = [];
  for (let i = 0; i < steps.length; i++) {
    const [e, d, p] = steps.slice(i, i + 3);
    const only = (id: number) => readers.get(id) === 1 && id !== output;
    if (
      e?.kind === 'conv' && d?.kind === 'conv' && p?.kind === 'conv' && isPointwise(e) && e.residual === undefined && isFusableDepthwise(d) &&
      isPointwise(p) && d.input === e.output && p.input === d.output && only(e.output) && only(d.output)
    ) {
      out.push({ kind: 'block', expand: e, depthwise: d, project: p });
      i += 2;
    } else {
      out.push(steps[i]);
    }
  }
  return out;
}

/** Every convolution step of the plan, those inside blocks included. */
function convSteps(steps: Step[]): ConvStep[] {
  return steps.flatMap((s) => (s.kind === 'conv' ? [s] : s.kind === 'block' ? [s.expand, s.depthwise, s.project] : []));
}

/** A batch norm over the last axis in inference mode (what the fold computes). */
function foldable(l: Layer): boolean {
  const bn = l as unknown as BatchNormInternals;
  return (bn.axis === -1 || bn.axis === 3) && typeof bn.epsilon === 'number' && !!bn.movingMean && !!bn.movingVariance;
}

/** The convolution's filter and bias with the batch norm folded in (new tensors, kept by the caller). */
function foldWeights(step: ConvStep): { filter: tf.Tensor4D; bias: tf.Tensor1D } {
  return tf.tidy(() => {
    const conv = step.conv as unknown as ConvLayerInternals;
    const bn = step.bn as unknown as BatchNormInternals;
    const w = layerFilter(conv);
    const mean = bn.movingMean.read();
    let s = tf.rsqrt(tf.add(bn.movingVariance.read(), bn.epsilon));
    if (bn.gamma) s = tf.mul(s, bn.gamma.read());
    // Output channel o of a depthwise filter [kh, kw, c, m] is c * m + m'.
    const filter = tf.mul(w, step.depthwise ? tf.reshape(s, [1, 1, w.shape[2], w.shape[3]]) : s) as tf.Tensor4D;
    let bias = tf.mul(tf.sub(conv.bias ? conv.bias.read() : tf.zerosLike(mean), mean), s);
    if (bn.beta) bias = tf.add(bias, bn.beta.read());
    return { filter: tf.keep(filter), bias: tf.keep(bias as tf.Tensor1D) };
  });
}

/** A compiled model: the plan, the folded weights, and the weight values they were folded from. */
class Compiled {
  private folded = new Map<ConvStep, { filter: tf.Tensor4D; bias: tf.Tensor1D }>();
  private foldedFrom: object[] = [];
  private releasePacks = () => {};

  constructor(
    private readonly model: tfl.LayersModel,
    readonly plan: Plan,
  ) {}

  /** The current data of every weight (a variable's data changes identity when it is assigned). */
  private weightData(): object[] {
    return this.model.weights.map((w) => (w.read() as unknown as { dataId: object }).dataId);
  }

  private refresh(): void {
    const now = this.weightData();
    if (now.length === this.foldedFrom.length && now.every((d, i) => d === this.foldedFrom[i])) return;
    this.disposeFolded();
    const convs = convSteps(this.plan.steps);
    for (const s of convs) if (s.bn) this.folded.set(s, foldWeights(s));
    this.foldedFrom = now;
    this.releasePacks = packWeights(convs.map((s) => this.filterOf(s)), this);
  }

  private disposeFolded(): void {
    this.releasePacks();
    this.releasePacks = () => {};
    for (const f of this.folded.values()) tf.dispose([f.filter, f.bias]);
    this.folded.clear();
  }

  /** The filter a convolution step runs with: its folded one, else the layer's own. */
  private filterOf(s: ConvStep): tf.Tensor4D {
    return this.folded.get(s)?.filter ?? layerFilter(s.conv as unknown as ConvLayerInternals);
  }

  predict(x: tf.Tensor): tf.Tensor {
    this.refresh();
    const values = new Map<number, tf.Tensor>([[this.plan.input, x]]);
    const left = new Map(this.plan.readers);
    const read = (id: number): tf.Tensor => {
      const t = values.get(id);
      if (!t) throw new Error(`inference plan: tensor ${id} is not computed yet`);
      const n = (left.get(id) ?? 1) - 1;
      left.set(id, n);
      return t;
    };
    const release = (ids: number[]) => {
      for (const id of ids) {
        if ((left.get(id) ?? 0) > 0 || id === this.plan.output || id === this.plan.input) continue;
        values.get(id)?.dispose();
        values.delete(id);
      }
    };
    try {
      for (const s of this.plan.steps) {
        if (s.kind === 'conv' || s.kind === 'block') {
          const ids = inputsOf(s);
          const [input, residual] = ids.map(read) as [tf.Tensor4D, tf.Tensor?];
          // This step is the residual's last reader (release disposes it next): its memory may take the result.
          const last = ids.length === 2 && left.get(ids[1]) === 0 && ids[1] !== ids[0] && ids[1] !== this.plan.input && ids[1] !== this.plan.output;
          const y = s.kind === 'conv' ? this.conv(s, input, residual, last) : this.block(s, input, residual);
          values.set(s.kind === 'conv' ? s.output : s.project.output, y);
          release(ids);
        } else if (s.kind === 'pool') {
          values.set(s.output, maxPoolPadded(s.layer as unknown as PoolInternals, read(s.input) as tf.Tensor4D, s.padded));
          release([s.input]);
        } else {
          const inputs = s.inputs.map(read);
          const out = s.layer.apply(inputs.length === 1 ? inputs[0] : inputs, s.kwargs) as tf.Tensor | tf.Tensor[];
          (Array.isArray(out) ? out : [out]).forEach((t, i) => values.set(s.outputs[i], t));
          release(s.inputs);
        }
      }
      const y = values.get(this.plan.output)!;
      values.delete(this.plan.output);
      return y;
    } finally {
      values.delete(this.plan.input);
      for (const t of values.values()) t.dispose();
    }
  }

  private conv(s: ConvStep, x: tf.Tensor4D, residual?: tf.Tensor, inPlace = false): tf.Tensor {
    const c = s.conv as unknown as ConvLayerInternals;
    // Only Conv2D layers are given a residual or a padding (planOf).
    if (s.padded && !blockFusionOn()) return tf.tidy(() => fusedConvOfLayer(c, zeroPad(x, s.padded!), { ...this.weightsOf(s), residual, inPlace }));
    return fusedConvOfLayer(c, x, { ...this.weightsOf(s), residual, inPlace, padding: s.padded });
  }

  private block(s: Extract<Step, { kind: 'block' }>, x: tf.Tensor4D, residual?: tf.Tensor): tf.Tensor {
    const layer = (c: ConvStep) => c.conv as unknown as ConvLayerInternals;
    return invertedResidualOfLayers(
      { expand: layer(s.expand), depthwise: layer(s.depthwise), project: layer(s.project) },
      x,
      { expand: this.weightsOf(s.expand), depthwise: this.weightsOf(s.depthwise), project: this.weightsOf(s.project) },
      residual,
    );
  }

  /** A convolution step's activation and its folded filter and bias, if it has them. */
  private weightsOf(s: ConvStep): ConvWeights {
    const f = this.folded.get(s);
    return { activation: s.activation, filter: f?.filter, bias: f?.bias };
  }

  dispose(): void {
    this.disposeFolded();
    this.foldedFrom = [];
  }
}

/** What ZeroPadding2D computes. */
const zeroPad = (x: tf.Tensor4D, p: Padding) => tf.pad(x, [[0, 0], p[0], p[1], [0, 0]]);

/** A "valid" MaxPooling2D of a zero-padded non-negative map: the pooling with the padding as its own (the padded
 * positions, which oneDNN and tfjs leave out of the maximum, are zeros that cannot exceed the map's values). */
function maxPoolPadded(pool: PoolInternals, x: tf.Tensor4D, p: Padding): tf.Tensor4D {
  if (!blockFusionOn()) return tf.tidy(() => tf.maxPool(zeroPad(x, p), pool.poolSize, pool.strides, 'valid'));
  return tf.maxPool(x, pool.poolSize, pool.strides, [[0, 0], p[0], p[1], [0, 0]]);
}

const compiled = new WeakMap<tfl.LayersModel, Compiled | null>();

/**
 * The model's output for x in inference mode, as model.predict gives it (to float tolerance), with batch norms
 * folded and activations fused on the native backend; model.predict itself elsewhere and for models whose graph
 * the plan does not cover. x stays the caller's.
 */
export function predictFolded(model: tfl.LayersModel, x: tf.Tensor): tf.Tensor {
  if (tf.getBackend() !== NATIVE_BACKEND_NAME) return model.predict(x) as tf.Tensor;
  let c = compiled.get(model);
  if (c === undefined) {
    const plan = planOf(model);
    c = plan ? new Compiled(model, plan) : null;
    compiled.set(model, c);
  }
  return c ? c.predict(x) : (model.predict(x) as tf.Tensor);
}

/** Frees the folded weights and weight packs kept for the model (they are remade if it predicts again). */
export function releaseFolded(model: tfl.LayersModel): void {
  compiled.get(model)?.dispose();
  compiled.delete(model);
}

/**
 * How many convolutions the plan runs with a batch norm folded in, with an activation fused and with a residual
 * summed in, and how many inverted-residual blocks it runs as one kernel (for tests).
 */
export function foldedSummary(model: tfl.LayersModel): { convs: number; batchNorms: number; activations: number; residuals: number; blocks: number } | null {
  const plan = planOf(model);
  if (!plan) return null;
  const convs = convSteps(plan.steps);
  const count = (f: (s: ConvStep) => boolean) => convs.filter(f).length;
  return {
    convs: convs.length,
    batchNorms: count((s) => !!s.bn),
    activations: count((s) => s.activation !== 'linear'),
    residuals: count((s) => s.residual !== undefined),
    blocks: plan.steps.filter((s) => s.kind === 'block').length,
  };
}
