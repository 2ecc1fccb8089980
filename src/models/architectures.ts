import * as tfl from '@tensorflow/tfjs-layers';
import { InputError } from '../util/errors.js';
import { buildBackboneNetwork, type BackboneProvenance } from './backbones.js';
import type { BackboneName } from './pretrained.js';

type SymbolicTensor = tfl.SymbolicTensor;

/**
 * The networks fundus can train. Every network is a tfjs-layers functional model made of stock layers only, so it
 * saves, loads and runs in the browser too. Its output layer is a Dense named `logits` followed by an Activation
 * named `probs` (sigmoid or softmax): the saved network predicts probabilities, training uses the logits for a
 * numerically stable loss, and Grad-CAM can undo the squashing. The last convolution is named `last_conv`.
 */
export interface NetworkOptions {
  /** Output squashing; `sigmoid` for multi-label and binary tasks, `softmax` for single-label ones. */
  activation?: 'sigmoid' | 'softmax';
  /** Seed for the weight initialisers, so that a run is reproducible. */
  seed?: number;
  /** Prefix for every layer name, used to put several networks side by side in one model (one-vs-normal). */
  prefix?: string;
}

/** A builder maps an input tensor to the logits tensor, adding layers named with the given namer. */
type Builder = (input: SymbolicTensor, numClasses: number, ctx: BuildContext) => SymbolicTensor;

interface BuildContext {
  name: (n: string) => string;
  heNormal: () => ReturnType<typeof tfl.initializers.heNormal>;
}

export interface ArchitectureInfo {
  name: string;
  description: string;
  /** The input the architecture is meant for; buildNetwork accepts other sizes that the layers can handle. */
  defaultInput: [number, number, number];
  /** ImageNet-pretrained networks: built from their published weights by createNetwork (see backbones.ts). */
  backbone?: BackboneName;
}

/** The reference AlexNet of the fundus work, layer for layer (green channel, 227 px). */
const alexnet: Builder = (input, numClasses, { name, heNormal }) => {
  const conv = (x: SymbolicTensor, filters: number, kernel: number, strides: number, padding: 'valid' | 'same', id: string) =>
    tfl.layers
      .conv2d({ filters, kernelSize: kernel, strides, padding, activation: 'relu', kernelInitializer: heNormal(), name: name(id) })
      .apply(x) as SymbolicTensor;
  const bn = (x: SymbolicTensor, id: string) => tfl.layers.batchNormalization({ name: name(id) }).apply(x) as SymbolicTensor;
  const pool = (x: SymbolicTensor, id: string) =>
    tfl.layers.maxPooling2d({ poolSize: 3, strides: 2, padding: 'valid', name: name(id) }).apply(x) as SymbolicTensor;
  let x = pool(bn(conv(input, 96, 11, 4, 'valid', 'conv1'), 'bn1'), 'pool1');
  x = pool(bn(conv(x, 256, 5, 1, 'same', 'conv2'), 'bn2'), 'pool2');
  x = bn(conv(x, 384, 3, 1, 'same', 'conv3'), 'bn3');
  x = bn(conv(x, 384, 3, 1, 'same', 'conv4'), 'bn4');
  x = bn(conv(x, 256, 3, 1, 'same', 'last_conv'), 'bn5');
  x = pool(x, 'pool5');
  x = tfl.layers.flatten({ name: name('flatten') }).apply(x) as SymbolicTensor;
  return tfl.layers.dense({ units: numClasses, kernelInitializer: heNormal(), name: name('logits') }).apply(x) as SymbolicTensor;
};

/**
 * A narrow ResNet-18 (basic blocks, 2-2-2-2, widths w-2w-4w-8w, global average pooling): about 1/16 of the
 * compute of the full ResNet-18 at w=16, which is what a 2-core machine can train from scratch in an hour. The last
 * block's second convolution is `last_conv`; its ReLU comes after the residual add, as in the original.
 */
function resnet18(width: number): Builder {
  return (input, numClasses, { name, heNormal }) => {
    const conv = (x: SymbolicTensor, filters: number, kernel: number, strides: number, id: string) =>
      tfl.layers
        .conv2d({ filters, kernelSize: kernel, strides, padding: 'same', useBias: false, kernelInitializer: heNormal(), name: name(id) })
        .apply(x) as SymbolicTensor;
    const bn = (x: SymbolicTensor, id: string) => tfl.layers.batchNormalization({ name: name(id) }).apply(x) as SymbolicTensor;
    const relu = (x: SymbolicTensor, id: string) => tfl.layers.activation({ activation: 'relu', name: name(id) }).apply(x) as SymbolicTensor;
    let x = relu(bn(conv(input, width, 7, 2, 'stem_conv'), 'stem_bn'), 'stem_relu');
    x = tfl.layers.maxPooling2d({ poolSize: 3, strides: 2, padding: 'same', name: name('stem_pool') }).apply(x) as SymbolicTensor;
    let channels = width;
    for (let stage = 0; stage < 4; stage++) {
      const filters = width * 2 ** stage;
      for (let block = 0; block < 2; block++) {
        const id = `s${stage + 1}b${block + 1}`;
        const strides = stage > 0 && block === 0 ? 2 : 1;
        const last = stage === 3 && block === 1;
        let y = relu(bn(conv(x, filters, 3, strides, `${id}_conv1`), `${id}_bn1`), `${id}_relu1`);
        y = bn(conv(y, filters, 3, 1, last ? 'last_conv' : `${id}_conv2`), `${id}_bn2`);
        const shortcut = strides !== 1 || channels !== filters ? bn(conv(x, filters, 1, strides, `${id}_proj`), `${id}_proj_bn`) : x;
        x = relu(tfl.layers.add({ name: name(`${id}_add`) }).apply([y, shortcut]) as SymbolicTensor, `${id}_out`);
        channels = filters;
      }
    }
    x = tfl.layers.globalAveragePooling2d({ name: name('gap') }).apply(x) as SymbolicTensor;
    return tfl.layers.dense({ units: numClasses, kernelInitializer: heNormal(), name: name('logits') }).apply(x) as SymbolicTensor;
  };
}

/**
 * A plain three-block CNN (conv-BN-ReLU-pool, widths 8-16-32). Not a contender: it exists so that tests and smoke
 * runs can train a real network on the pure-JS backend in seconds.
 */
const smallCnn: Builder = (input, numClasses, { name, heNormal }) => {
  let x = input;
  const widths = [8, 16, 32];
  widths.forEach((filters, i) => {
    const id = i === widths.length - 1 ? 'last_conv' : `conv${i + 1}`;
    x = tfl.layers.conv2d({ filters, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: heNormal(), name: name(id) }).apply(x) as SymbolicTensor;
    x = tfl.layers.batchNormalization({ name: name(`bn${i + 1}`) }).apply(x) as SymbolicTensor;
    x = tfl.layers.maxPooling2d({ poolSize: 2, strides: 2, name: name(`pool${i + 1}`) }).apply(x) as SymbolicTensor;
  });
  x = tfl.layers.globalAveragePooling2d({ name: name('gap') }).apply(x) as SymbolicTensor;
  return tfl.layers.dense({ units: numClasses, kernelInitializer: heNormal(), name: name('logits') }).apply(x) as SymbolicTensor;
};

const notBuiltHere: Builder = () => {
  throw new InputError('a pretrained backbone is built from its weights by createNetwork, and cannot sit beside other networks in one model');
};

const ARCHITECTURES: Record<string, { build: Builder; info: ArchitectureInfo }> = {
  'small-cnn': {
    build: smallCnn,
    info: { name: 'small-cnn', description: 'three conv blocks 8-16-32 (tests and smoke runs only)', defaultInput: [32, 32, 3] },
  },
  alexnet: {
    build: alexnet,
    info: { name: 'alexnet', description: 'the reference AlexNet (green channel, BatchNorm, no dropout)', defaultInput: [227, 227, 1] },
  },
  'resnet18-narrow': {
    build: resnet18(16),
    info: { name: 'resnet18-narrow', description: 'ResNet-18 layout with widths 16-32-64-128', defaultInput: [224, 224, 3] },
  },
  'resnet18-w24': {
    build: resnet18(24),
    info: { name: 'resnet18-w24', description: 'ResNet-18 layout with widths 24-48-96-192', defaultInput: [224, 224, 3] },
  },
  'resnet18-w8': {
    build: resnet18(8),
    info: { name: 'resnet18-w8', description: 'ResNet-18 layout with widths 8-16-32-64 (tests, quick runs)', defaultInput: [128, 128, 3] },
  },
  mobilenetv2: {
    build: notBuiltHere,
    info: { name: 'mobilenetv2', description: 'MobileNetV2 1.0, ImageNet weights (TF-slim, ships with fundus)', defaultInput: [224, 224, 3], backbone: 'mobilenetv2' },
  },
  resnet50: {
    build: notBuiltHere,
    info: { name: 'resnet50', description: 'ResNet-50, ImageNet weights (Keras; `fundus weights fetch resnet50`)', defaultInput: [224, 224, 3], backbone: 'resnet50' },
  },
};

export function architectureNames(): string[] {
  return Object.keys(ARCHITECTURES);
}

export function architectureInfo(name: string): ArchitectureInfo {
  const a = ARCHITECTURES[name];
  if (!a) throw new InputError(`unknown model "${name}" (known: ${architectureNames().join(', ')})`);
  return a.info;
}

/** A deterministic sequence of initialiser seeds derived from one run seed. */
function seedSequence(seed: number | undefined): () => number | undefined {
  if (seed === undefined) return () => undefined;
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s;
  };
}

/**
 * Adds the layers of architecture `name` on `input` and returns its logits (no squashing). Used directly to place
 * several networks side by side in one model.
 */
export function buildLogits(name: string, input: SymbolicTensor, numClasses: number, opts: NetworkOptions = {}): SymbolicTensor {
  const arch = ARCHITECTURES[name];
  if (!arch) throw new InputError(`unknown model "${name}" (known: ${architectureNames().join(', ')})`);
  const nextSeed = seedSequence(opts.seed);
  const prefix = opts.prefix ?? '';
  return arch.build(input, numClasses, {
    name: (n) => prefix + n,
    heNormal: () => tfl.initializers.heNormal({ seed: nextSeed() }),
  });
}

/**
 * Builds architecture `name` for inputs of `inputShape` ([height, width, channels]) with `numClasses` outputs.
 * The model outputs probabilities (see the module comment); `logitsModel` gives the logits view for training.
 */
export function buildNetwork(
  name: string,
  inputShape: [number, number, number],
  numClasses: number,
  opts: NetworkOptions = {},
): tfl.LayersModel {
  if (!Number.isInteger(numClasses) || numClasses < 1) throw new InputError(`number of classes must be a positive integer (got ${numClasses})`);
  const prefix = opts.prefix ?? '';
  const input = tfl.input({ shape: inputShape, name: `${prefix}input` });
  let logits: SymbolicTensor;
  try {
    logits = buildLogits(name, input, numClasses, opts);
  } catch (err) {
    if (err instanceof InputError) throw err;
    throw new InputError(`model "${name}" cannot take ${inputShape.join('x')} inputs: ${(err as Error).message}`);
  }
  const collapsed = collectShapes(input, logits).find((sh) => sh.some((d) => d !== null && d < 1));
  if (collapsed) throw new InputError(`model "${name}" cannot take ${inputShape.join('x')} inputs: a layer output shrinks to [${collapsed.slice(1).join(', ')}]`);
  const probs = tfl.layers.activation({ activation: opts.activation ?? 'sigmoid', name: `${prefix}probs` }).apply(logits) as SymbolicTensor;
  return tfl.model({ inputs: input, outputs: probs, name: `${prefix}${name}` });
}

/** A network as training starts it: built from scratch, or from a pretrained backbone (with what that implies). */
export interface CreatedNetwork {
  network: tfl.LayersModel;
  backbone?: BackboneProvenance;
  /** The input normalisation the pretrained weights expect (backbones only). */
  normalize?: { mean: number[]; std: number[] };
}

/**
 * Builds architecture `name` like buildNetwork, or, for a pretrained backbone, from its ImageNet weights with a new
 * head. Backbones take RGB only.
 */
export async function createNetwork(
  name: string,
  inputShape: [number, number, number],
  numClasses: number,
  opts: NetworkOptions & { weightsDir?: string } = {},
): Promise<CreatedNetwork> {
  const info = architectureInfo(name);
  if (!info.backbone) return { network: buildNetwork(name, inputShape, numClasses, opts) };
  if (opts.prefix) throw new InputError(`model "${name}" (a pretrained backbone) cannot be one of several networks in one model (one-vs-normal)`);
  const [h, w, c] = inputShape;
  if (c !== 3 || h !== w) throw new InputError(`model "${name}" takes square RGB inputs (got ${inputShape.join('x')})`);
  const built = await buildBackboneNetwork(info.backbone, h, numClasses, { activation: opts.activation, seed: opts.seed, weightsDir: opts.weightsDir });
  return { network: built.network, backbone: built.provenance, normalize: built.normalize };
}

/** Output shapes of every layer between input and output (a too-small input makes some of them empty). */
function collectShapes(input: SymbolicTensor, output: SymbolicTensor): (number | null)[][] {
  const probe = tfl.model({ inputs: input, outputs: output });
  return probe.layers.map((l) => l.outputShape as (number | null)[]);
}

/** The global average pooling layer that ends the features of every network but the AlexNet (its output: the embedding). */
export const POOLING_LAYER = 'gap';

/** `network`'s pooling layer; an InputError naming what needs it (`purpose`) when the network has none. */
export function poolingLayer(network: tfl.LayersModel, purpose: string): tfl.layers.Layer {
  try {
    return network.getLayer(POOLING_LAYER);
  } catch {
    throw new InputError(`${purpose} needs a '${POOLING_LAYER}' layer (global average pooling) in the network`);
  }
}

/**
 * The same network without its output squashing (shares the layers and weights): training computes its loss on
 * logits. Works for any model built by buildNetwork.
 */
export function logitsModel(network: tfl.LayersModel): tfl.LayersModel {
  const out = network.layers[network.layers.length - 1];
  if (out.getClassName() !== 'Activation') return network;
  const logits = out.input as SymbolicTensor;
  return tfl.model({ inputs: network.inputs, outputs: logits, name: `${network.name}_logits` });
}
