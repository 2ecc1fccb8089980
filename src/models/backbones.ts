import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { LESION_HEAD_LAYERS } from './lesion-head.js';
import { InputError } from '../util/errors.js';
import { locateBackboneWeights, loadBackboneModel, type BackboneName, type BackboneWeights } from './pretrained.js';

type SymbolicTensor = tfl.SymbolicTensor;

/**
 * ImageNet-pretrained networks as fundus architectures: the backbone's own layers (names and weights as published,
 * so that anyone can match them to the original) up to its last feature map, then fundus's head: global average
 * pooling `gap`, a Dense `logits` and an Activation `probs`, as every fundus network ends (see architectures.ts).
 */

/** What a model built on a pretrained backbone records about it (fundus.json `backbone`, the model card). */
export interface BackboneProvenance {
  name: BackboneName;
  weights: 'imagenet';
  source: string;
  licence: string;
  /** sha256 of the backbone files the weights were taken from. */
  sha256: string;
  /** Last backbone layer: everything up to it came pretrained, everything after it is the new head. */
  featureLayer: string;
}

export interface BackboneNetwork {
  network: tfl.LayersModel;
  provenance: BackboneProvenance;
  /** The input normalisation the pretrained weights expect, on [0, 1] RGB pixels. */
  normalize: { mean: number[]; std: number[] };
}

export interface BackboneOptions {
  activation?: 'sigmoid' | 'softmax';
  seed?: number;
  /** Folder override for the weights (tests, copies elsewhere). */
  weightsDir?: string;
}

/** The last layer whose output is a spatial feature map (rank 4): where the backbone's own pooling and head begin. */
function lastFeatureLayer(model: tfl.LayersModel): tfl.layers.Layer {
  for (let i = model.layers.length - 1; i >= 0; i--) {
    const shape = model.layers[i].outputShape as (number | null)[];
    if (Array.isArray(shape) && shape.length === 4 && model.layers[i].getClassName() !== 'InputLayer') return model.layers[i];
  }
  throw new InputError(`backbone "${model.name}" has no spatial feature map`);
}

/**
 * Caffe-style weights (ResNet-50 from Keras) expect BGR: reversing the first convolution's input channels lets the
 * network take RGB like every fundus model, with no per-pixel cost.
 */
export function acceptRgb(model: tfl.LayersModel): void {
  const first = model.layers.find((l) => l.getClassName() === 'Conv2D');
  if (!first) throw new InputError(`backbone "${model.name}" has no convolution to take RGB input`);
  const [kernel, ...rest] = first.getWeights();
  if (kernel.shape[2] !== 3) throw new InputError(`backbone "${model.name}": first convolution takes ${kernel.shape[2]} channels, not 3`);
  const flipped = tf.reverse(kernel, 2);
  first.setWeights([flipped, ...rest]);
  flipped.dispose();
}

/** The provenance recorded for weights `w`, cut at `featureLayer`. */
function provenanceOf(w: BackboneWeights, featureLayer: string): BackboneProvenance {
  return { name: w.backbone, weights: w.weights, source: w.source, licence: w.licence, sha256: w.sha256, featureLayer };
}

/**
 * Builds `name` with its ImageNet weights for square RGB inputs of `size` pixels and a new head of `numClasses`
 * outputs. The Dense head starts from Glorot-uniform weights (seeded) and zero bias.
 */
export async function buildBackboneNetwork(name: BackboneName, size: number, numClasses: number, opts: BackboneOptions = {}): Promise<BackboneNetwork> {
  if (!Number.isInteger(numClasses) || numClasses < 1) throw new InputError(`number of classes must be a positive integer (got ${numClasses})`);
  const weights = await locateBackboneWeights(name, opts.weightsDir !== undefined ? { dir: opts.weightsDir } : {});
  const base = await loadBackboneModel(weights, size);
  if (weights.channelOrder === 'bgr') acceptRgb(base);
  const feature = lastFeatureLayer(base);
  const featureShape = feature.outputShape as number[];
  if (featureShape.slice(1, 3).some((d) => d < 1)) throw new InputError(`${name} cannot take ${size} px inputs`);
  let x = feature.output as SymbolicTensor;
  x = tfl.layers.globalAveragePooling2d({ name: 'gap' }).apply(x) as SymbolicTensor;
  const init = tfl.initializers.glorotUniform({ seed: opts.seed });
  const logits = tfl.layers.dense({ units: numClasses, kernelInitializer: init, name: 'logits' }).apply(x) as SymbolicTensor;
  const probs = tfl.layers.activation({ activation: opts.activation ?? 'sigmoid', name: 'probs' }).apply(logits) as SymbolicTensor;
  const network = tfl.model({ inputs: base.inputs, outputs: probs, name });
  return { network, provenance: provenanceOf(weights, feature.name), normalize: weights.normalize };
}

/**
 * The layers that came with the backbone (everything up to and including the feature layer), as opposed to the head
 * that fundus added. Recipes freeze, or slow down, these.
 */
export function backboneLayers(network: tfl.LayersModel, featureLayer: string): tfl.layers.Layer[] {
  const idx = network.layers.findIndex((l) => l.name === featureLayer);
  if (idx < 0) throw new InputError(`the model has no layer "${featureLayer}" (its backbone's last layer)`);
  // A lesion map head branches off inside the backbone, so it may sort before the feature layer; it is head, not backbone.
  return network.layers.slice(0, idx + 1).filter((l) => !LESION_HEAD_LAYERS.has(l.name));
}
