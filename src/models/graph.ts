import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { InputError } from '../util/errors.js';

type Layer = tfl.layers.Layer;
type SymbolicTensor = tfl.SymbolicTensor;
type GraphNode = Layer['inboundNodes'][number];

/** Layer classes that are convolutions, i.e. whose output is a spatial feature map worth explaining. */
const CONV_CLASSES = new Set(['Conv2D', 'DepthwiseConv2D', 'SeparableConv2D', 'Conv2DTranspose']);

/** Layers whose output on the logits is a fixed squashing we undo to reach the class score (pre-activation). */
const SQUASHING = new Set(['sigmoid', 'softmax']);

/**
 * A network cut in two at a target layer, as Grad-CAM needs it: `trunk` maps the input to the target layer's
 * activations, `head` maps those activations to the class scores *before* the output sigmoid/softmax. Every CAM
 * method differentiates `head` with respect to its input.
 *
 * The cut is done by running the network's own graph node by node (as tfjs-layers' `Container` does internally) with
 * the activations fed in from outside, so any functional topology works, not only sequential stacks: tensors the head
 * needs from outside the target's path (a skip connection around the target) are carried in `context`.
 */
export interface SplitNetwork {
  targetLayer: Layer;
  /** [height, width, channels] of the target activations. */
  targetShape: [number, number, number];
  /** Input image → target activations plus the tensors the head needs besides them. Caller disposes. */
  trunk(x: tf.Tensor4D): { activations: tf.Tensor4D; context: tf.Tensor[] };
  /** Target activations (+ context, batch-aligned) → pre-activation class scores [batch, classes]. */
  head(activations: tf.Tensor4D, context: tf.Tensor[]): tf.Tensor2D;
  /** Input image → probabilities (the network's own output), for faithfulness curves and ScoreCAM. */
  predict(x: tf.Tensor4D): tf.Tensor2D;
  /** Input image → pre-activation class scores. */
  logits(x: tf.Tensor4D): tf.Tensor2D;
}

function layerClass(layer: Layer): string {
  return layer.getClassName();
}

function rank4(t: SymbolicTensor): boolean {
  return t.shape.length === 4;
}

/** The nodes of the network in execution order (deepest first, like `Container.runInternalGraph`). */
function nodesInOrder(network: tfl.LayersModel): GraphNode[] {
  // A Sequential keeps its graph in an inner functional model built from the same layers, created lazily.
  const seq = network as unknown as { model?: tfl.LayersModel; build(): void };
  if (network.getClassName() === 'Sequential' && !seq.model) seq.build();
  const byDepth = network.getClassName() === 'Sequential' && seq.model ? seq.model.nodesByDepth : network.nodesByDepth;
  if (!byDepth || Object.keys(byDepth).length === 0) {
    throw new InputError(`cannot explain model "${network.name}": its layer graph is not available`);
  }
  return Object.keys(byDepth)
    .map(Number)
    .sort((a, b) => b - a)
    .flatMap((d) => byDepth[d]);
}

/**
 * The coarsest grid the automatic target layer may have, as a stride: the input's side over the map's, rounded (224 px
 * and a 28×28 map: 8; AlexNet's 227 px and 27×27: 8). The last convolutional block, which Selvaraju et al. explain,
 * works at stride 32 in the pretrained backbones (a 7×7 map of a 224 px input, each cell a seventh of the disc's
 * diameter): too coarse for lesions of a few dozen pixels, and on expert lesion boxes it localises and deletes worse
 * than the last block at stride 8 (docs/explain-localisation.md).
 */
export const DEFAULT_TARGET_STRIDE = 8;

/**
 * The layer a CAM method looks at when none is named: the rectified output of the last block whose stride is at most
 * DEFAULT_TARGET_STRIDE, or of the last convolutional block when none is that fine (a network whose input side is not
 * fixed, or whose first convolution already has a larger stride). A residual network's block ends at its residual add
 * and the activation after it (ResNet-50's `activation_21`, ResNet-18's `s2b2_out`, MobileNetV2's `block_5_add`): the
 * stream the next stage reads, not the next block's expansion convolution on the same grid. A plain network's block is
 * its last convolution and what follows it at the same resolution up to the next convolution or pooling (batch norm,
 * an activation); its output is the convolution itself when the ReLU is fused (AlexNet's `conv2`).
 */
export function findTargetLayer(network: tfl.LayersModel, name?: string): Layer {
  if (name !== undefined) {
    const layer = network.layers.find((l) => l.name === name);
    if (!layer) {
      const names = network.layers.map((l) => l.name).join(', ');
      throw new InputError(`the model has no layer named "${name}" (layers: ${names})`);
    }
    const out = layer.output as SymbolicTensor;
    if (!rank4(out)) throw new InputError(`layer "${name}" outputs shape [${out.shape}], not a spatial feature map`);
    return layer;
  }
  const nested = network.layers.find((l) => 'layers' in l && layerClass(l) !== 'InputLayer');
  const nodes = nodesInOrder(network);
  const inputSide = (network.inputs[0] as SymbolicTensor).shape[1];
  const fine = (t: SymbolicTensor) => typeof inputSide === 'number' && typeof t.shape[1] === 'number' && Math.round(inputSide / t.shape[1]) <= DEFAULT_TARGET_STRIDE;
  let lastConvIndex = -1;
  let lastFineConv = -1;
  let lastFineAdd = -1;
  nodes.forEach((n, i) => {
    const cls = layerClass(n.outboundLayer as Layer);
    const isFine = fine(n.outputTensors[0] as SymbolicTensor);
    if (CONV_CLASSES.has(cls)) {
      lastConvIndex = i;
      if (isFine) lastFineConv = i;
    } else if (cls === 'Add' && isFine) lastFineAdd = i;
  });
  if (lastConvIndex < 0) {
    const hint = nested ? ` (layer "${nested.name}" is a nested model: pass its last feature layer with --layer)` : '';
    throw new InputError(`cannot find a convolutional layer in model "${network.name}"${hint}`);
  }
  if (lastFineConv >= 0) lastConvIndex = lastFineAdd >= 0 ? lastFineAdd : lastFineConv;
  const conv = nodes[lastConvIndex];
  const [, h, w] = (conv.outputTensors[0] as SymbolicTensor).shape;
  const block: Layer[] = [conv.outboundLayer as Layer];
  for (const n of nodes.slice(lastConvIndex + 1)) {
    const out = n.outputTensors[0] as SymbolicTensor;
    if (!rank4(out) || out.shape[1] !== h || out.shape[2] !== w) break;
    const cls = layerClass(n.outboundLayer as Layer);
    if (CONV_CLASSES.has(cls) || /Pool/.test(cls)) break;
    block.push(n.outboundLayer as Layer);
  }
  const rectified = block.filter((l) => RECTIFIERS.has(activationOf(l)) || layerClass(l) === 'ReLU' || layerClass(l) === 'LeakyReLU');
  return rectified.length > 0 ? rectified[rectified.length - 1] : block[block.length - 1];
}

const RECTIFIERS = new Set(['relu', 'relu6', 'elu', 'selu', 'swish', 'mish', 'gelu']);

/** Reads a layer's activation name from its config (`linear` when it has none). */
function activationOf(layer: Layer): string {
  const cls = layerClass(layer);
  if (cls === 'Softmax') return 'softmax';
  const cfg = layer.getConfig() as { activation?: string };
  return typeof cfg.activation === 'string' ? cfg.activation : 'linear';
}

/**
 * Calls one layer on concrete tensors. The output layer's sigmoid/softmax is left out when `preActivation` is set:
 * a fused Dense activation is split off by computing the affine part from the layer's own kernel and bias, and a
 * separate Activation/Softmax layer is skipped.
 */
function callLayer(layer: Layer, inputs: tf.Tensor[], preActivation: boolean): tf.Tensor[] {
  const x = inputs.length === 1 ? inputs[0] : inputs;
  if (preActivation && SQUASHING.has(activationOf(layer))) {
    const cls = layerClass(layer);
    if (cls === 'Activation' || cls === 'Softmax') return [inputs[0]];
    if (cls === 'Dense') {
      const [kernel, bias] = layer.getWeights(false);
      const input = inputs[0];
      const flat = input.rank === 2 ? (input as tf.Tensor2D) : tf.reshape(input, [-1, input.shape[input.rank - 1] as number]);
      let z: tf.Tensor = tf.matMul(flat, kernel as tf.Tensor2D);
      if (bias) z = tf.add(z, bias);
      return [input.rank === 2 ? z : tf.reshape(z, [...input.shape.slice(0, -1), kernel.shape[1] as number])];
    }
    throw new InputError(
      `cannot take the pre-activation class score of output layer "${layer.name}" (${cls} with ${activationOf(layer)})`,
    );
  }
  const y = layer.call(x, {});
  return Array.isArray(y) ? y : [y];
}

/**
 * Cuts `network` at `target`. Batch norm after a convolution is folded into it once, here (`fold`, the default), which
 * is right for explaining a fixed network; a network still training needs `fold: false`, so that every call reads the
 * layers' current weights.
 */
export function splitNetwork(network: tfl.LayersModel, target: Layer, { fold = true }: { fold?: boolean } = {}): SplitNetwork {
  if (network.inputs.length !== 1 || network.outputs.length !== 1) {
    throw new InputError(`cannot explain model "${network.name}": it must have exactly one input and one output`);
  }
  const nodes = nodesInOrder(network);
  const targetNodeIdx = nodes.findIndex((n) => n.outboundLayer === target);
  if (targetNodeIdx < 0) throw new InputError(`layer "${target.name}" is not part of model "${network.name}"`);
  const targetNode = nodes[targetNodeIdx];
  const targetOut = targetNode.outputTensors[0] as SymbolicTensor;
  const inputId = (network.inputs[0] as SymbolicTensor).id;
  const outputSym = network.outputs[0] as SymbolicTensor;
  const outputNode = nodes.find((n) => (n.outputTensors as SymbolicTensor[]).some((t) => t.id === outputSym.id));
  if (!outputNode) throw new InputError(`cannot find the output layer of model "${network.name}"`);

  // Which nodes depend on the target (the head), and which tensors outside that path the head reads.
  const downstream = new Set<number>([targetOut.id]);
  const headNodes: GraphNode[] = [];
  for (const n of nodes.slice(targetNodeIdx + 1)) {
    if ((n.inputTensors as SymbolicTensor[]).some((t) => downstream.has(t.id))) {
      headNodes.push(n);
      for (const t of n.outputTensors as SymbolicTensor[]) downstream.add(t.id);
    }
  }
  if (!downstream.has(outputSym.id)) {
    throw new InputError(`the model's output does not depend on layer "${target.name}"`);
  }
  const contextIds: number[] = [];
  for (const n of headNodes) {
    for (const t of n.inputTensors as SymbolicTensor[]) {
      if (!downstream.has(t.id) && !contextIds.includes(t.id)) contextIds.push(t.id);
    }
  }

  // Everything not downstream of the target is computed from the input alone: the target itself and any branch that
  // bypasses it (whose results the head reads as context).
  const headSet = new Set(headNodes);
  const trunkNodes = nodes.filter((n) => !headSet.has(n));

  const fused = fold ? planFusion(nodes, trunkNodes, new Set([targetOut.id, outputSym.id, ...contextIds])) : new Map<GraphNode, FusedConv | 'absorbed'>();

  /** Runs `which` nodes over a tensor map seeded with `seed`; returns the map. */
  const run = (which: GraphNode[], seed: Map<number, tf.Tensor>, preActivation: boolean) => {
    const map = new Map(seed);
    for (const n of which) {
      const layer = n.outboundLayer as Layer;
      if (layerClass(layer) === 'InputLayer') continue;
      const ins = (n.inputTensors as SymbolicTensor[]).map((t) => map.get(t.id));
      if (ins.some((t) => t === undefined)) continue;
      const plan = fused.get(n);
      if (plan === 'absorbed') {
        // Already applied by the fused convolution that feeds this node: pass its result on.
        map.set((n.outputTensors[0] as SymbolicTensor).id, ins[0] as tf.Tensor);
        continue;
      }
      const outs = plan ? [plan(ins[0] as tf.Tensor4D)] : callLayer(layer, ins as tf.Tensor[], preActivation && n === outputNode);
      (n.outputTensors as SymbolicTensor[]).forEach((t, i) => map.set(t.id, outs[i]));
    }
    return map;
  };
  const targetShape = targetOut.shape.slice(1) as [number, number, number];

  return {
    targetLayer: target,
    targetShape,
    trunk(x) {
      const map = run(trunkNodes, new Map([[inputId, x]]), false);
      const activations = map.get(targetOut.id) as tf.Tensor4D;
      const context = contextIds.map((id) => {
        const t = map.get(id);
        if (!t) throw new Error(`internal: context tensor ${id} was not computed by the trunk`);
        return t;
      });
      return { activations, context };
    },
    head(activations, context) {
      const seed = new Map<number, tf.Tensor>([[targetOut.id, activations]]);
      contextIds.forEach((id, i) => seed.set(id, context[i]));
      return run(headNodes, seed, true).get(outputSym.id) as tf.Tensor2D;
    },
    predict(x) {
      return run(nodes, new Map([[inputId, x]]), false).get(outputSym.id) as tf.Tensor2D;
    },
    logits(x) {
      return run(nodes, new Map([[inputId, x]]), true).get(outputSym.id) as tf.Tensor2D;
    },
  };
}

type FusedConv = (x: tf.Tensor4D) => tf.Tensor4D;

/**
 * Inference-time fusion of convolution → batch norm (→ ReLU) chains in the trunk, the usual deployment rewrite:
 * the batch norm is folded into the convolution's weights and bias and the ReLU into the same fused kernel, which
 * saves two full passes over every feature map. Only chains whose intermediate results nobody else reads (not the
 * target, not context, single consumer) are fused; the head, which is differentiated, runs the layers as they are.
 * Folded weights are computed once, so an explainer must be rebuilt after the model's weights change.
 */
function planFusion(nodes: GraphNode[], trunkNodes: GraphNode[], keep: Set<number>): Map<GraphNode, FusedConv | 'absorbed'> {
  const plan = new Map<GraphNode, FusedConv | 'absorbed'>();
  const consumers = new Map<number, GraphNode[]>();
  for (const n of nodes) for (const t of n.inputTensors as SymbolicTensor[]) consumers.set(t.id, [...(consumers.get(t.id) ?? []), n]);
  const inTrunk = new Set(trunkNodes);
  const soleConsumer = (n: GraphNode): GraphNode | undefined => {
    const out = n.outputTensors[0] as SymbolicTensor;
    const c = consumers.get(out.id) ?? [];
    return c.length === 1 && !keep.has(out.id) && inTrunk.has(c[0]) ? c[0] : undefined;
  };
  for (const n of trunkNodes) {
    const conv = n.outboundLayer as Layer;
    if (layerClass(conv) !== 'Conv2D' || activationOf(conv) !== 'linear') continue;
    const ccfg = conv.getConfig() as { strides: number[]; padding: string; dilationRate: number | number[]; useBias: boolean; dataFormat?: string };
    if (ccfg.dataFormat && ccfg.dataFormat !== 'channelsLast') continue;
    const bnNode = soleConsumer(n);
    if (!bnNode || layerClass(bnNode.outboundLayer as Layer) !== 'BatchNormalization') continue;
    const bn = bnNode.outboundLayer as Layer;
    const bcfg = bn.getConfig() as { axis: number; epsilon: number; center: boolean; scale: boolean };
    if (bcfg.axis !== -1 && bcfg.axis !== 3) continue;
    const actNode = soleConsumer(bnNode);
    const act = actNode ? (actNode.outboundLayer as Layer) : undefined;
    const relu = act !== undefined && ((layerClass(act) === 'Activation' && activationOf(act) === 'relu') || layerClass(act) === 'ReLU' && !(act.getConfig() as { maxValue?: number }).maxValue);
    const [filter, bias] = tf.tidy(() => {
      const cw = conv.getWeights(false);
      const bw = bn.getWeights(false);
      let i = 0;
      const gamma = bcfg.scale ? bw[i++] : tf.onesLike(bw[bw.length - 1]);
      const beta = bcfg.center ? bw[i++] : tf.zerosLike(bw[bw.length - 1]);
      const [mean, variance] = [bw[i], bw[i + 1]];
      const k = tf.div(gamma, tf.sqrt(tf.add(variance, bcfg.epsilon)));
      const b0 = ccfg.useBias ? cw[1] : tf.zerosLike(mean);
      return [tf.keep(tf.mul(cw[0], k)) as tf.Tensor4D, tf.keep(tf.add(tf.mul(tf.sub(b0, mean), k), beta)) as tf.Tensor1D];
    });
    const dil = Array.isArray(ccfg.dilationRate) ? ccfg.dilationRate : [ccfg.dilationRate, ccfg.dilationRate];
    plan.set(n, (x) =>
      tf.fused.conv2d({
        x,
        filter,
        bias,
        strides: ccfg.strides as [number, number],
        pad: ccfg.padding as 'same' | 'valid',
        dilations: dil as [number, number],
        dataFormat: 'NHWC',
        activation: relu ? 'relu' : 'linear',
      }),
    );
    plan.set(bnNode, 'absorbed');
    if (relu && actNode) plan.set(actNode, 'absorbed');
  }
  return plan;
}
