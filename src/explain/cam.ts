import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { InputError } from '../util/errors.js';
import { findTargetLayer, splitNetwork, type SplitNetwork } from '../models/graph.js';
import type { TestTimeAugmentation } from '../models/metadata.js';
import { mirrorHeatmap, normalizeHeatmap, type Heatmap } from './heatmap.js';

export type { Heatmap } from './heatmap.js';

/**
 * The class-activation-map methods, named as in pytorch-grad-cam. All but `scorecam` weight the target layer's
 * activations with the gradient of the class score; `scorecam` weights them by the score of the input masked with
 * each activation map (no gradients, one forward pass per channel).
 */
export const CAM_METHODS = [
  'gradcam',
  'gradcam++',
  'xgradcam',
  'hirescam',
  'layercam',
  'gradcam-elementwise',
  'scorecam',
] as const;
export type CamMethod = (typeof CAM_METHODS)[number];

/**
 * The method of every map made without one named (CLI, API, viewer, predict and queue heatmaps) for a model whose
 * fundus.json records no method of its own (`defaultExplanation` in explainer.ts). LayerCAM, because on the 224 px
 * model it was chosen on, its element-wise weights keep the map's detail at the finer default target layer
 * (findTargetLayer), where it localised expert lesion boxes at least as well as Grad-CAM and was the only method
 * that beat a random order at both deletion and insertion: the table is in docs/explain-localisation.md.
 */
export const DEFAULT_CAM_METHOD: CamMethod = 'layercam';

export function isCamMethod(s: string): s is CamMethod {
  return (CAM_METHODS as readonly string[]).includes(s);
}

/** A preprocessed image as the network sees it (structurally `PreprocessedImage` from src/data/preprocess.ts). */
export interface CamInput {
  /** HWC, normalised, size*size*channels. */
  data: Float32Array;
  size: number;
  channels: number;
}

/** One image–class pair to explain; `image` indexes the batch handed to `explain`. */
export interface CamTarget {
  image: number;
  classIndex: number;
  /**
   * Explain the negated class score: where the evidence *against* the class lies (Selvaraju et al.'s counterfactual
   * explanation). fundus uses it for `normal` predicted absent: it shows what argues against a normal fundus.
   */
  negate?: boolean;
}

export interface CamResult extends CamTarget {
  method: CamMethod;
  /** Normalised to [0, 1], at the target layer's resolution. */
  heatmap: Heatmap;
  /** The unnormalised (rectified) map, for analysis and comparison across images. */
  raw: Heatmap;
  /** The pre-activation class score (logit) and the model's probability for the class (not negated). */
  score: number;
  probability: number;
}

export interface CamOptions {
  /**
   * Target layer name; by default the last convolutional block at stride 8 or finer (findTargetLayer). Several
   * names (an array, or one string with names joined by ',' or '+') explain at each layer and fuse the maps
   * (`FusedExplainer` in fusion.ts).
   */
  layer?: string | string[];
  /** How many masked images ScoreCAM pushes through the network at once. */
  scoreCamBatch?: number;
  /**
   * The test-time augmentation to explain through. `hflip`: a model that averages each photo's prediction with its
   * mirror image's (`inference.tta`) is explained the same way, by the mean of the photo's map and the mirror image's
   * map mirrored back. `CamExplainer` defaults to `none`; `explainerFor` to the model's own.
   */
  tta?: TestTimeAugmentation;
}

const EPS = 1e-7;

/**
 * Explains the class scores of one network. Holds the network cut at its target layer, so that many images and
 * classes can be explained without rebuilding anything.
 */
export class CamExplainer {
  readonly split: SplitNetwork;
  readonly numClasses: number;
  readonly inputShape: [number, number, number];
  private readonly scoreCamBatch: number;
  readonly tta: TestTimeAugmentation;

  constructor(
    readonly network: tfl.LayersModel,
    readonly activation: 'sigmoid' | 'softmax',
    opts: CamOptions = {},
  ) {
    if (Array.isArray(opts.layer)) throw new InputError('CamExplainer explains one layer: use explainerFor to fuse several');
    this.split = splitNetwork(network, findTargetLayer(network, opts.layer));
    const out = network.outputs[0].shape;
    this.numClasses = out[out.length - 1] as number;
    this.inputShape = network.inputs[0].shape.slice(1) as [number, number, number];
    this.scoreCamBatch = opts.scoreCamBatch ?? 32;
    this.tta = opts.tta ?? 'none';
  }

  get layerName(): string {
    return this.split.targetLayer.name;
  }

  /** [height, width] of the maps: the target layer's grid. */
  get cells(): [number, number] {
    const [h, w] = this.split.targetShape;
    return [h, w];
  }

  /** Stacks preprocessed images into the network's input tensor, checking their shape. */
  toBatch(images: CamInput[]): tf.Tensor4D {
    const [h, w, c] = this.inputShape;
    const buf = new Float32Array(images.length * h * w * c);
    images.forEach((im, i) => {
      if (im.size !== h || im.size !== w || im.channels !== c || im.data.length !== h * w * c) {
        throw new InputError(
          `image ${i} is ${im.size}x${im.size}x${im.channels} but the model expects ${h}x${w}x${c} (preprocess it with the model's settings)`,
        );
      }
      buf.set(im.data, i * h * w * c);
    });
    return tf.tensor4d(buf, [images.length, h, w, c]);
  }

  /**
   * Probabilities [N, classes] for a batch of images: the network's output, averaged with the mirror images' under
   * flip TTA, as the model predicts (so that deletion/insertion curves follow the prediction the maps explain).
   */
  predict(images: CamInput[]): Float32Array {
    return tf.tidy(() => {
      const x = this.toBatch(images);
      const y = this.split.predict(x);
      return (this.tta === 'hflip' ? tf.mul(0.5, tf.add(y, this.split.predict(tf.reverse(x, 2) as tf.Tensor4D))) : y).dataSync() as Float32Array;
    });
  }

  /** Heatmaps for every target (several classes of one image share one forward pass and one backward pass). */
  explain(images: CamInput[], targets: CamTarget[], method: CamMethod): CamResult[] {
    for (const t of targets) {
      if (t.image < 0 || t.image >= images.length) throw new RangeError(`target image ${t.image} out of range`);
      if (t.classIndex < 0 || t.classIndex >= this.numClasses) {
        throw new InputError(`class index ${t.classIndex} out of range (the model has ${this.numClasses} classes)`);
      }
    }
    if (targets.length === 0) return [];
    if (this.tta === 'none') return this.explainOnce(images, targets, method);
    // The photos and their mirror images in one batch: one forward and one backward pass for both.
    const n = images.length;
    const both = this.explainOnce(
      [...images, ...images.map(mirrorInput)],
      [...targets, ...targets.map((t) => ({ ...t, image: t.image + n }))],
      method,
    );
    return targets.map((t, i) => {
      const [own, mirrored] = [both[i], both[i + targets.length]];
      const back = mirrorHeatmap(mirrored.raw);
      const raw: Heatmap = { width: back.width, height: back.height, data: back.data.map((v, k) => (v + own.raw.data[k]) / 2) };
      // The probability is the model's own (the mean of the two, as predictions with flip TTA are); the logit, the
      // mean of the two logits.
      return { ...t, method, raw, heatmap: normalizeHeatmap(raw), score: (own.score + mirrored.score) / 2, probability: (own.probability + mirrored.probability) / 2 };
    });
  }

  private explainOnce(images: CamInput[], targets: CamTarget[], method: CamMethod): CamResult[] {
    return method === 'scorecam' ? this.scoreCam(images, targets) : this.gradientCam(images, targets, method);
  }

  private gradientCam(images: CamInput[], targets: CamTarget[], method: CamMethod): CamResult[] {
    const [h, w] = this.split.targetShape;
    const { maps, logits } = tf.tidy(() => {
      const x = this.toBatch(images);
      const { activations, context } = this.split.trunk(x);
      // One row per target: tiling the activations lets a single backward pass give each target its own gradient,
      // because the head treats batch rows independently (inference mode).
      const rows = tf.tensor1d(
        targets.map((t) => t.image),
        'int32',
      );
      // A single image (the common case) is tiled, which is a plain copy; several images need a gather.
      const one = images.length === 1;
      const pick = (t: tf.Tensor) => (one ? tf.tile(t, [targets.length, ...t.shape.slice(1).map(() => 1)]) : tf.gather(t, rows));
      const a = pick(activations) as tf.Tensor4D;
      const ctx = context.map(pick);
      const sign = tf.tensor2d(
        targets.map((t) => [t.negate ? -1 : 1]),
        [targets.length, 1],
      );
      const select = tf.mul(
        tf.cast(
          tf.oneHot(
            tf.tensor1d(
              targets.map((t) => t.classIndex),
              'int32',
            ),
            this.numClasses,
          ),
          'float32',
        ),
        sign,
      );
      let kept: tf.Tensor2D | undefined;
      const score = (act: tf.Tensor): tf.Scalar => {
        const z = this.split.head(act as tf.Tensor4D, ctx);
        kept = tf.keep(z);
        return tf.sum(tf.mul(z, select));
      };
      const g = tf.grad(score)(a) as tf.Tensor4D;
      const cams = camFromGradients(method, a, g);
      const logitsOut = tf.mul(tf.sum(tf.mul(kept as tf.Tensor2D, select), 1), tf.reshape(sign, [-1]));
      (kept as tf.Tensor2D).dispose();
      return { maps: cams, logits: logitsOut };
    });
    const mapData = maps.dataSync() as Float32Array;
    const scores = logits.dataSync() as Float32Array;
    maps.dispose();
    logits.dispose();
    const probs = this.probabilities(images, targets, scores);
    return targets.map((t, i) => {
      const raw: Heatmap = { width: w, height: h, data: mapData.slice(i * h * w, (i + 1) * h * w) };
      return { ...t, method, raw, heatmap: normalizeHeatmap(raw), score: scores[i], probability: probs[i] };
    });
  }

  /** Probability of each target's class: sigmoid of its logit, or a full softmax row for softmax models. */
  private probabilities(images: CamInput[], targets: CamTarget[], scores: Float32Array): Float32Array {
    if (this.activation === 'sigmoid') return scores.map((s) => 1 / (1 + Math.exp(-s)));
    const p = this.predict(images);
    return Float32Array.from(targets, (t) => p[t.image * this.numClasses + t.classIndex]);
  }

  /**
   * Score-CAM (Wang et al. 2020): each activation map, upsampled to the input and scaled to [0, 1], masks the image;
   * the class scores of the masked images, softmaxed over channels, weight the maps. All classes of an image share
   * the masked forward passes.
   */
  private scoreCam(images: CamInput[], targets: CamTarget[]): CamResult[] {
    const [h, w, channels] = this.split.targetShape;
    const [ih, iw] = this.inputShape;
    const results: CamResult[] = [];
    const byImage = new Map<number, CamTarget[]>();
    for (const t of targets) byImage.set(t.image, [...(byImage.get(t.image) ?? []), t]);
    for (const [image, imageTargets] of byImage) {
      const x = this.toBatch([images[image]]);
      const act = tf.tidy(() => this.split.trunk(x).activations);
      const channelScores: tf.Tensor2D[] = [];
      for (let start = 0; start < channels; start += this.scoreCamBatch) {
        const end = Math.min(channels, start + this.scoreCamBatch);
        channelScores.push(
          tf.tidy(() => {
            const slice = tf.slice(act, [0, 0, 0, start], [1, h, w, end - start]);
            const up = tf.image.resizeBilinear(slice, [ih, iw]); // [1, ih, iw, k]
            const lo = tf.min(up, [1, 2], true);
            const hi = tf.max(up, [1, 2], true);
            const masks = tf.div(tf.sub(up, lo), tf.maximum(tf.sub(hi, lo), EPS));
            const perChannel = tf.transpose(masks, [3, 1, 2, 0]); // [k, ih, iw, 1]
            return this.split.logits(tf.mul(x, perChannel) as tf.Tensor4D);
          }),
        );
      }
      const { maps, logits } = tf.tidy(() => {
        const scores = tf.concat(channelScores, 0); // [channels, classes]
        const cls = tf.tensor1d(
          imageTargets.map((t) => t.classIndex),
          'int32',
        );
        const signs = tf.tensor2d(
          imageTargets.map((t) => [t.negate ? -1 : 1]),
          [imageTargets.length, 1],
        );
        const weights = tf.softmax(tf.mul(tf.transpose(tf.gather(scores, cls, 1)), signs)); // [targets, channels]
        const flat = tf.reshape(act, [h * w, channels]);
        const cams = tf.relu(tf.matMul(weights, flat, false, true)); // [targets, h*w]
        const z = tf.gather(tf.squeeze(this.split.logits(x), [0]), cls);
        return { maps: cams, logits: z };
      });
      channelScores.forEach((t) => t.dispose());
      const mapData = maps.dataSync() as Float32Array;
      const scores = logits.dataSync() as Float32Array;
      tf.dispose([maps, logits, act, x]);
      const probs = this.probabilities(images, imageTargets, scores);
      imageTargets.forEach((t, i) => {
        const raw: Heatmap = { width: w, height: h, data: mapData.slice(i * h * w, (i + 1) * h * w) };
        results.push({ ...t, method: 'scorecam', raw, heatmap: normalizeHeatmap(raw), score: scores[i], probability: probs[i] });
      });
    }
    // Keep the caller's target order.
    return targets.map(
      (t) => results.find((r) => r.image === t.image && r.classIndex === t.classIndex && !r.negate === !t.negate) as CamResult,
    );
  }
}

/** The image mirrored left to right (HWC). */
export function mirrorInput(image: CamInput): CamInput {
  const { size, channels } = image;
  const data = new Float32Array(image.data.length);
  const rowLen = size * channels;
  for (let r = 0; r < size; r++) {
    for (let c = 0; c < size; c++) {
      const from = r * rowLen + (size - 1 - c) * channels;
      data.set(image.data.subarray(from, from + channels), r * rowLen + c * channels);
    }
  }
  return { data, size, channels };
}

/**
 * The gradient-based CAMs from activations `a` and gradients `g` ([targets, h, w, c]) → rectified maps [targets, h, w].
 * Formulas follow pytorch-grad-cam so that results are comparable with the reference implementation.
 */
export function camFromGradients(method: CamMethod, a: tf.Tensor4D, g: tf.Tensor4D): tf.Tensor3D {
  return tf.tidy(() => {
    const weighted = (weights: tf.Tensor) => tf.relu(tf.sum(tf.mul(a, weights), 3)) as tf.Tensor3D;
    switch (method) {
      case 'gradcam':
        // Selvaraju et al.: channel weight = global-average-pooled gradient.
        return weighted(tf.mean(g, [1, 2], true));
      case 'gradcam++': {
        // Chattopadhay et al., closed form for an exponential score: alpha = g² / (2g² + Σa·g³).
        const g2 = tf.square(g);
        const g3 = tf.mul(g2, g);
        const sumA = tf.sum(a, [1, 2], true);
        const alpha = tf.div(g2, tf.add(tf.add(tf.mul(g2, 2), tf.mul(sumA, g3)), EPS));
        const safeAlpha = tf.where(tf.notEqual(g, 0), alpha, tf.zerosLike(alpha));
        return weighted(tf.sum(tf.mul(tf.relu(g), safeAlpha), [1, 2], true));
      }
      case 'xgradcam': {
        // Fu et al.: weights normalised by the activation mass of each channel.
        const sumA = tf.sum(a, [1, 2], true);
        return weighted(tf.div(tf.sum(tf.mul(g, a), [1, 2], true), tf.add(sumA, EPS)));
      }
      case 'hirescam':
        // Draelos & Carin: element-wise gradient × activation, summed over channels (no spatial averaging).
        return tf.relu(tf.sum(tf.mul(g, a), 3)) as tf.Tensor3D;
      case 'gradcam-elementwise':
        return tf.sum(tf.relu(tf.mul(g, a)), 3) as tf.Tensor3D;
      case 'layercam':
        // Jiang et al.: positive gradients weight each location separately.
        return tf.relu(tf.sum(tf.mul(tf.relu(g), a), 3)) as tf.Tensor3D;
      default:
        throw new Error(`${method} is not a gradient-based CAM`);
    }
  });
}
