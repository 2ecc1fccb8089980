import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import type { SymbolicTensor } from '@tensorflow/tfjs-layers';
import type { CropGeometry } from '../data/geometry.js';
import { DEFAULT_LESION_CLASS, readLesions } from '../data/lesions.js';
import type { Box, LesionTable } from '../data/lesions.js';
import { POOLING_LAYER, poolingLayer } from '../models/architectures.js';
import { findTargetLayer, splitNetwork, type SplitNetwork } from '../models/graph.js';
import { LESION_MAP_LAYER } from '../models/lesion-head.js';
import type { Example } from '../models/tasks.js';
import { InputError } from '../util/errors.js';

/**
 * Lesion-guided attention (issue 17): where expert lesion boxes exist for a training photograph, the class's
 * activation map on the last feature map (CAM: the features times the class's row of the dense head behind global
 * average pooling, which is exactly what the class score averages) is pushed to put its mass inside the boxes.
 * The map is read as a distribution over cells (a spatial softmax), and the loss is minus the log of its share inside
 * the boxes (Li et al.'s "Tell me where to look" and the attention-mining losses that followed). The class score
 * itself is untouched: only where the evidence sits is taught, not how much of it there is.
 *
 * With a named layer (`layer`), the map guided is the class's Grad-CAM there instead: the layer's features times the
 * spatial mean of the class score's gradient. The pooled map is stride 32 in the pretrained backbones; the heatmaps a
 * specialist sees come from a finer layer (block_12_add, stride 16, in models/default), and that map is the one to teach.
 */
export interface LesionAttentionSettings {
  /** The loss's weight beside the task loss. */
  weight: number;
  /** The class whose map is guided (its index in the model's classes) and its name. */
  classIndex: number;
  className: string;
  /** Where the boxes came from, and how many photographs and boxes of the training part they cover (for the record). */
  lesions: string;
  photographs: number;
  boxes: number;
  /** The layer whose Grad-CAM map is guided; without it, the class activation map behind the global pooling. */
  layer?: string;
  /** A lesion map head on `layer`, trained as weak segmentation, instead of guiding a CAM map. */
  head?: boolean;
  /** `head`: how many training photographs graded free of the class count as lesion-free everywhere. */
  negatives?: number;
}

/**
 * Where the guided map is read: the feature map the loss sees (an output of the training network) and what weighs its
 * channels into the class's map (the dense head behind the pooling, or the network cut at the layer for Grad-CAM).
 */
export type AttentionTaps =
  | { features: SymbolicTensor; head: tfl.layers.Layer; split?: undefined; lesionMap?: undefined }
  | { features: SymbolicTensor; split: SplitNetwork; head?: undefined; lesionMap?: undefined }
  | { features: SymbolicTensor; lesionMap: true; head?: undefined; split?: undefined };

/**
 * The taps of `network`'s guided map: its lesion map head's logits (`head` mode), at `layer` (Grad-CAM) when named,
 * else behind the global pooling (CAM).
 */
export function attentionTaps(network: tfl.LayersModel, layer?: string, head = false): AttentionTaps {
  if (head) return { features: network.getLayer(LESION_MAP_LAYER).output as SymbolicTensor, lesionMap: true };
  if (layer !== undefined) {
    const target = findTargetLayer(network, layer);
    // Unfolded: the cut runs the layers on their current weights at every step.
    return { features: target.output as SymbolicTensor, split: splitNetwork(network, target, { fold: false }) };
  }
  const pool = poolingLayer(network, 'lesion attention');
  // The dense layer fed by the pooling, through layers that act per feature (dropout) and change no shape.
  let after = pool;
  for (;;) {
    const next = network.layers.filter((l) => l.inboundNodes.some((n) => n.inboundLayers.includes(after)));
    if (next.length !== 1) break;
    after = next[0];
    if (after.getClassName() === 'Dense') return { features: pool.input as SymbolicTensor, head: after };
    if (after.getClassName() !== 'Dropout') break;
  }
  throw new InputError(`lesion attention needs a dense layer right after '${POOLING_LAYER}' (the class maps are read through it)`);
}

/** A box of the photograph in pixels of the `size`×`size` network input cropped from it (inverse of toPhotoCoordinates). */
export function boxOnInput(b: Box, g: CropGeometry, size: number): Box {
  const s = size / g.side;
  return { x0: (b.x0 - g.x) * s, y0: (b.y0 - g.y) * s, x1: (b.x1 - g.x) * s, y1: (b.y1 - g.y) * s };
}

/**
 * The boxes of each training example on its network input, or undefined where the table has none for it. With
 * `source`, only that source's examples are matched (multi-source data: names repeat across sources); the table is
 * keyed by the photograph's base name.
 */
export function lesionBoxesOnInputs(examples: Example[], geometries: CropGeometry[], size: number, table: LesionTable, source?: string): (Box[] | undefined)[] {
  return examples.map((e, i) => {
    if (source !== undefined && e.source !== source) return undefined;
    const name = e.filename.slice(e.filename.lastIndexOf('/') + 1);
    const boxes = table.byImage.get(name);
    return boxes && boxes.length > 0 ? boxes.map((b) => boxOnInput(b, geometries[i], size)) : undefined;
  });
}

/** A `size`×`size` mask: 1 at pixels whose centre lies in a box (as localisation scores them), else 0. */
export function rasterBoxes(boxes: Box[], size: number): Float32Array {
  const m = new Float32Array(size * size);
  for (const b of boxes) {
    const u0 = Math.max(0, Math.ceil(b.x0 - 0.5));
    const u1 = Math.min(size - 1, Math.floor(b.x1 - 0.5));
    const v0 = Math.max(0, Math.ceil(b.y0 - 0.5));
    const v1 = Math.min(size - 1, Math.floor(b.y1 - 0.5));
    for (let v = v0; v <= v1; v++) m.fill(1, v * size + u0, u1 >= u0 ? v * size + u1 + 1 : v * size + u0);
  }
  return m;
}

/**
 * The mask on the feature map's `rows`×`cols` grid: 1 for a cell that holds at least half a pixel of box (after
 * augmentation the mask is bilinear), else 0. A lesion smaller than a cell still marks its cell: the loss asks for
 * the evidence in the cell, not in the lesion's exact pixels.
 */
export function maskOnGrid(mask: Float32Array, size: number, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  const sums = new Float32Array(rows * cols);
  for (let v = 0; v < size; v++) {
    const r = Math.min(rows - 1, Math.floor((v * rows) / size));
    for (let u = 0; u < size; u++) sums[r * cols + Math.min(cols - 1, Math.floor((u * cols) / size))] += mask[v * size + u];
  }
  for (let i = 0; i < out.length; i++) out[i] = sums[i] >= 0.5 ? 1 : 0;
  return out;
}

/**
 * The weights that turn each photograph's feature map into its guided class map, [N, C], taken outside the loss so
 * that they are constants of the step: the attention moves the features' evidence into the boxes and leaves which
 * channels the class reads to the task loss. CAM: the dense head's class row, for every photograph. Grad-CAM: the
 * spatial mean of the class score's gradient at the layer times the number of cells (so that, as with CAM, the map's
 * mean over the cells is the score's linear part), computed only for the photographs with boxes (`present` 1; the
 * other rows are 0 and the loss ignores them).
 */
export function attentionWeights(taps: AttentionTaps, x: tf.Tensor4D, classIndex: number, present: tf.Tensor1D): tf.Tensor2D {
  const n = x.shape[0];
  if (taps.lesionMap) throw new Error('a lesion map head has no channel weights: its loss is lesionMapLoss');
  if (taps.head) {
    const kernel = taps.head.getWeights()[0] as tf.Tensor2D;
    return tf.tidy(() => tf.tile(tf.transpose(tf.slice(kernel, [0, classIndex], [kernel.shape[0], 1])), [n, 1]) as tf.Tensor2D);
  }
  const { split } = taps;
  const [h, w, c] = split.targetShape;
  const rows = Array.from(present.dataSync()).flatMap((p, i) => (p > 0 ? [i] : []));
  if (rows.length === 0) return tf.zeros([n, c]);
  return tf.tidy(() => {
    const { activations, context } = split.trunk(tf.gather(x, rows) as tf.Tensor4D);
    const score = (a: tf.Tensor) => tf.sum(tf.slice(split.head(a as tf.Tensor4D, context), [0, classIndex], [rows.length, 1])) as tf.Scalar;
    const alpha = tf.mul(tf.mean(tf.grad(score)(activations), [1, 2]), h * w);
    return tf.scatterND(tf.tensor2d(rows, [rows.length, 1], 'int32'), alpha, [n, c]) as tf.Tensor2D;
  });
}

/**
 * The attention loss of a batch: for each photograph with boxes (`present` 1), minus the log of the share of the
 * class map's spatial softmax that falls in its box cells; averaged over those photographs. 0 when the batch has none.
 * `features` [N, h, w, C] is the guided feature map, `weights` [N, C] its channels' weights into the class map
 * (attentionWeights).
 */
export function attentionLoss(features: tf.Tensor4D, weights: tf.Tensor2D, cells: tf.Tensor3D, present: tf.Tensor1D): tf.Scalar {
  return tf.tidy(() => {
    const [n, h, w, c] = features.shape;
    const cam = tf.reshape(tf.matMul(tf.reshape(features, [n, h * w, c]), tf.reshape(weights, [n, c, 1])), [n, h * w]);
    const inBoxes = tf.reshape(cells, [n, h * w]);
    // logsumexp over the box cells only: the other cells pushed far below (an empty mask only on absent rows).
    const masked = tf.add(cam, tf.mul(tf.sub(1, inBoxes), -1e4));
    const perPhoto = tf.sub(tf.logSumExp(cam, 1), tf.logSumExp(masked, 1));
    const count = tf.sum(present);
    return tf.div(tf.sum(tf.mul(perPhoto, present)), tf.maximum(count, 1)) as tf.Scalar;
  });
}

/**
 * The lesion map head's loss (weak segmentation from boxes), for the photographs in the loss (`present` 1): the binary
 * cross-entropy of each map's logits `map` [N, h, w, 1] against its box cells, the box cells and the other cells each
 * averaged on their own (a few lesion cells against hundreds of others would otherwise teach "never a lesion"). The
 * photographs with box cells and those without (graded free of the class, or their boxes out of view) are averaged
 * apart and the two means added: a batch holds about one photograph with boxes for a dozen without, and the boxes
 * are what the map must learn. 0 when the batch has none.
 */
export function lesionMapLoss(map: tf.Tensor4D, cells: tf.Tensor3D, present: tf.Tensor1D): tf.Scalar {
  return tf.tidy(() => {
    const [n, h, w] = map.shape;
    const z = tf.reshape(map, [n, h * w]);
    const t = tf.reshape(cells, [n, h * w]);
    const boxCells = tf.sum(t, 1);
    // softplus(-z) = -log sigmoid(z): the cost of a lesion cell; softplus(z) that of a lesion-free one.
    const inBoxes = tf.div(tf.sum(tf.mul(t, tf.softplus(tf.neg(z))), 1), tf.maximum(boxCells, 1));
    const rest = tf.sub(1, t);
    const outside = tf.div(tf.sum(tf.mul(rest, tf.softplus(z)), 1), tf.maximum(tf.sum(rest, 1), 1));
    const withBoxes = tf.mul(present, tf.cast(tf.greater(boxCells, 0), 'float32'));
    const without = tf.sub(present, withBoxes);
    const mean = (v: tf.Tensor, weights: tf.Tensor) => tf.div(tf.sum(tf.mul(v, weights)), tf.maximum(tf.sum(weights), 1));
    return tf.add(mean(tf.add(inBoxes, outside), withBoxes), mean(outside, without)) as tf.Scalar;
  });
}

/** What `train` asks of lesion attention (TrainOptions' fields of the same names). */
export interface LesionAttentionRequest {
  lesionAttention: number;
  lesions: string;
  lesionSource?: string;
  lesionClass?: string;
  lesionLayer?: string;
  lesionHead?: boolean;
}

/**
 * Reads the lesion boxes and puts them on the training examples' inputs: the settings for the loop and the boxes per
 * example. Throws an InputError naming the boxes' file when the class is not the model's, the source is missing or
 * unknown, or no training photograph has boxes.
 */
export async function prepareLesionAttention(
  req: LesionAttentionRequest,
  train: Example[],
  geometries: CropGeometry[],
  size: number,
  classes: string[],
  trainingSources: string[],
): Promise<{ settings: LesionAttentionSettings; boxes: (Box[] | undefined)[] }> {
  const table = await readLesions(req.lesions);
  const className = req.lesionClass ?? DEFAULT_LESION_CLASS[table.format];
  const classIndex = classes.indexOf(className);
  if (classIndex < 0) throw new InputError(`--lesion-class: the model has no class '${className}' (classes: ${classes.join(', ')})`, { file: req.lesions });
  if (req.lesionSource !== undefined && !trainingSources.includes(req.lesionSource)) {
    throw new InputError(`--lesion-source: '${req.lesionSource}' is not a training source (${trainingSources.join(', ') || 'one source, no --datasets'})`);
  }
  if (req.lesionSource === undefined && trainingSources.length > 1) {
    throw new InputError(`--lesions with several training sources (${trainingSources.join(', ')}): name the boxes' source with --lesion-source`, { file: req.lesions });
  }
  const boxes = lesionBoxesOnInputs(train, geometries, size, table, req.lesionSource);
  const photographs = boxes.filter((b) => b !== undefined).length;
  if (photographs === 0) {
    throw new InputError(`no training photograph${req.lesionSource ? ` of ${req.lesionSource}` : ''} has a box in this file (photographs are matched by file name)`, { file: req.lesions });
  }
  const count = boxes.reduce((a, b) => a + (b?.length ?? 0), 0);
  const layer = req.lesionLayer !== undefined ? { layer: req.lesionLayer } : {};
  if (!req.lesionHead) return { settings: { weight: req.lesionAttention, classIndex, className, lesions: req.lesions, photographs, boxes: count, ...layer }, boxes };
  // A photograph graded free of the class has no lesion of it anywhere: an empty box list, every cell a negative.
  let negatives = 0;
  const withNegatives = boxes.map((b, i) => {
    if (b !== undefined || train[i].target[classIndex] !== 0) return b;
    negatives++;
    return [];
  });
  return { settings: { weight: req.lesionAttention, classIndex, className, lesions: req.lesions, photographs, boxes: count, ...layer, head: true, negatives }, boxes: withNegatives };
}
