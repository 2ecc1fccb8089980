import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import type { SymbolicTensor } from '@tensorflow/tfjs-layers';
import { InputError } from '../util/errors.js';
import { findTargetLayer } from './graph.js';

/**
 * A lesion map head (issue 17): a 1×1 convolution on a feature layer gives one logit per cell, "is this cell a
 * lesion?", trained as weak segmentation from expert lesion boxes (src/train/lesion-attention.ts, `head` mode). Its
 * maximum over the photograph then feeds one class's score through a Dense layer added to the classifier's logits:
 *
 *   logits'[k] = logits[k] + a[k] · max(map) + b[k]
 *
 * so the class's evidence partly *is* the map, and the map's Grad-CAM at `lesion_map` (one channel: the map itself,
 * scaled by the class's gradient, which is a[k]) is a faithful heatmap of that class at the feature layer's stride:
 * deleting the map's peak lowers the score. Max pooling, not the mean: one lesion is enough for diabetic retinopathy.
 *
 * Every layer is a stock tfjs-layers layer, so the model saves, loads and predicts (CLI, API, browser) like any other.
 */
export const LESION_MAP_LAYER = 'lesion_map';
export const LESION_POOL_LAYER = 'lesion_max';
export const LESION_LOGITS_LAYER = 'lesion_logits';
export const LESION_SUM_LAYER = 'logits_with_lesions';
/** The layers the head adds (they start from the values below, not from a pretrained or `--init-from` model). */
export const LESION_HEAD_LAYERS: ReadonlySet<string> = new Set([LESION_MAP_LAYER, LESION_POOL_LAYER, LESION_LOGITS_LAYER, LESION_SUM_LAYER]);

/**
 * The map's starting bias: every cell at logit −4 (a lesion prior of 2 %), so that the segmentation loss starts near
 * its floor on the many lesion-free cells. The class's Dense weight starts at 1 and its bias at +4: the head adds
 * exactly 0 to every score before training, and a fine-tuned model starts from the model it was initialised from.
 */
const MAP_PRIOR = -4;

/** Whether `network` carries a lesion map head. */
export function hasLesionHead(network: tfl.LayersModel): boolean {
  return network.layers.some((l) => l.name === LESION_MAP_LAYER);
}

/**
 * `network` with a lesion map head on `layer` feeding class `classIndex`'s score. The network must end in an
 * Activation layer on its logits (every architecture fundus builds does). The returned model shares the network's
 * layers (and so its weights).
 */
export function addLesionHead(network: tfl.LayersModel, layer: string, classIndex: number): tfl.LayersModel {
  if (hasLesionHead(network)) throw new InputError(`the network already has a lesion map head ('${LESION_MAP_LAYER}')`);
  // The logits are the input of the network's closing Activation layer (as logitsModel in architectures.ts reads them,
  // not imported: architectures imports backbones, which imports this module).
  const out = network.layers[network.layers.length - 1];
  if (out.getClassName() !== 'Activation') throw new InputError(`a lesion map head needs the network to end in an Activation layer (it ends in '${out.name}')`);
  const logitsIn = out.input as SymbolicTensor;
  const classes = logitsIn.shape[1] as number;
  if (!Number.isInteger(classIndex) || classIndex < 0 || classIndex >= classes) throw new InputError(`lesion map head: class index ${classIndex} is not one of the network's ${classes} classes`);
  const features = findTargetLayer(network, layer).output as SymbolicTensor;
  const map = tfl.layers
    .conv2d({ filters: 1, kernelSize: 1, name: LESION_MAP_LAYER, kernelInitializer: 'zeros', biasInitializer: tfl.initializers.constant({ value: MAP_PRIOR }) })
    .apply(features) as SymbolicTensor;
  const peak = tfl.layers.globalMaxPooling2d({ name: LESION_POOL_LAYER }).apply(map) as SymbolicTensor;
  const kernel = Array.from({ length: classes }, (_, k) => (k === classIndex ? 1 : 0));
  const bias = kernel.map((v) => -v * MAP_PRIOR);
  const toLogits = tfl.layers.dense({ units: classes, name: LESION_LOGITS_LAYER, kernelInitializer: 'zeros', biasInitializer: 'zeros' });
  const added = toLogits.apply(peak) as SymbolicTensor;
  // setWeights, not initialisers: a constant initialiser cannot differ per class.
  const start = [tf.tensor2d([kernel]), tf.tensor1d(bias)];
  toLogits.setWeights(start);
  tf.dispose(start);
  const logits = tfl.layers.add({ name: LESION_SUM_LAYER }).apply([logitsIn, added]) as SymbolicTensor;
  const cfg = out.getConfig() as { activation: string };
  const probs = tfl.layers.activation({ activation: cfg.activation as 'sigmoid', name: out.name }).apply(logits) as SymbolicTensor;
  return tfl.model({ inputs: network.inputs, outputs: probs, name: network.name });
}
