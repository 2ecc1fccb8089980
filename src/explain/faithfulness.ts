import * as tf from '@tensorflow/tfjs-core';
import type { CamInput, CamMethod, CamTarget } from './cam.js';
import type { Explainer } from './explainer.js';
import { resizeHeatmap, type Heatmap } from './heatmap.js';
import { seededRandom } from '../data/random.js';

/**
 * Deletion and insertion curves (Petsiuk et al., RISE 2018): pixels are removed from the image (deletion) or restored
 * into a blurred copy (insertion), most relevant first according to the heatmap, in `steps` equal steps, and the
 * model's probability for the class is recorded after each step. The area under the curve (AUC, x from 0 to 1) is low
 * for deletion and high for insertion when the heatmap points at what the model really uses. The same curves with a
 * random order (random heatmaps of the same coarseness by default) are the yardstick: a heatmap is faithful to the
 * degree it beats random.
 *
 * Deleted pixels take the value 0 of the normalised input, i.e. the training-set mean colour (no new edges as black
 * would create on a dark fundus border); insertion starts from a box-blurred copy, which keeps the image's overall
 * brightness but destroys lesions and vessels.
 */
export interface FaithfulnessOptions {
  /** Number of removal steps (curve has steps + 1 points). Default 20. */
  steps?: number;
  /** How many random orders to average for the baseline. Default 2. */
  randomRepeats?: number;
  /** Seed of the random orders and of tie-breaking between equally hot pixels. */
  seed?: number;
  /** Images per forward pass. Default 16. */
  batchSize?: number;
  /**
   * The random yardstick. `cells` (default): a random heatmap at the target layer's resolution, upsampled like a CAM,
   * so that random and CAM orders remove equally coherent regions. `pixels`: independent random pixels, which destroy
   * the image as salt noise and so lower the score faster than any contiguous removal (a bias in favour of random
   * that is well known from the deletion metric's critics, e.g. ROAD).
   */
  random?: 'cells' | 'pixels';
}

/** A random pixel order for the yardstick (see `FaithfulnessOptions.random`). */
export function yardstickOrder(size: number, cells: [number, number], rand: () => number, kind: 'cells' | 'pixels' = 'cells'): Uint32Array {
  if (kind === 'pixels') return randomOrder(size, rand);
  const [h, w] = cells;
  return relevanceOrder({ width: w, height: h, data: Float32Array.from({ length: w * h }, () => rand()) }, size, rand);
}

export interface Curves {
  deletion: number[];
  insertion: number[];
}

export interface FaithfulnessScore {
  /** Area under the deletion curve (lower is better). */
  deletion: number;
  /** Area under the insertion curve (higher is better). */
  insertion: number;
}

export interface FaithfulnessRow {
  method: CamMethod | 'random';
  /** Number of heatmaps (image–class pairs) averaged. */
  n: number;
  deletion: number;
  insertion: number;
  /** The random-order baselines over the same image–class pairs. */
  randomDeletion: number;
  randomInsertion: number;
  /** Fraction of heatmaps whose deletion AUC is below their random deletion AUC. */
  deletionWinRate: number;
  /** Mean seconds per heatmap to compute the CAM itself (not the curves). */
  camSeconds: number;
}


/** Trapezoidal area under a curve sampled at equal steps over [0, 1]. */
export function auc(curve: number[]): number {
  if (curve.length < 2) return curve[0] ?? 0;
  let s = 0;
  for (let i = 1; i < curve.length; i++) s += (curve[i - 1] + curve[i]) / 2;
  return s / (curve.length - 1);
}


/** Pixel indices (of a size×size image), most relevant first; ties (e.g. the many zeros) in random order. */
export function relevanceOrder(heatmap: Heatmap, size: number, rand: () => number): Uint32Array {
  const h = heatmap.width === size && heatmap.height === size ? heatmap : resizeHeatmap(heatmap, size, size);
  const keys = Float64Array.from(h.data, (v) => v + rand() * 1e-9);
  const order = Uint32Array.from({ length: size * size }, (_, i) => i);
  return order.sort((a, b) => keys[b] - keys[a]);
}

export function randomOrder(size: number, rand: () => number): Uint32Array {
  const order = Uint32Array.from({ length: size * size }, (_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

/** Separable box blur (three passes ≈ Gaussian) of an HWC image, radius about an eighth of the side. */
export function blurImage(img: CamInput): Float32Array {
  const { size, channels } = img;
  const r = Math.max(1, Math.round(size / 16));
  let src = Float32Array.from(img.data);
  let dst = new Float32Array(src.length);
  for (let pass = 0; pass < 3; pass++) {
    for (const horizontal of [true, false]) {
      for (let a = 0; a < size; a++) {
        for (let c = 0; c < channels; c++) {
          for (let b = 0; b < size; b++) {
            let sum = 0;
            let n = 0;
            for (let k = Math.max(0, b - r); k <= Math.min(size - 1, b + r); k++) {
              const idx = horizontal ? (a * size + k) * channels + c : (k * size + a) * channels + c;
              sum += src[idx];
              n++;
            }
            dst[(horizontal ? a * size + b : b * size + a) * channels + c] = sum / n;
          }
        }
      }
      [src, dst] = [dst, src];
    }
  }
  return src;
}

/**
 * The deletion and insertion curves of one image and class for a pixel order. With `negate` (a heatmap of the
 * evidence against the class) the curves follow 1 − probability.
 */
export function curves(
  explainer: Explainer,
  image: CamInput,
  classIndex: number,
  order: Uint32Array,
  opts: FaithfulnessOptions = {},
  blurred: Float32Array = blurImage(image),
  negate = false,
): Curves {
  const steps = opts.steps ?? 20;
  const batchSize = opts.batchSize ?? 16;
  const { size, channels, data } = image;
  const pixels = size * size;
  const variants: CamInput[] = [];
  for (const mode of ['deletion', 'insertion'] as const) {
    const cur = mode === 'deletion' ? Float32Array.from(data) : Float32Array.from(blurred);
    let done = 0;
    for (let k = 0; k <= steps; k++) {
      const upto = Math.round((k / steps) * pixels);
      for (; done < upto; done++) {
        const p = order[done] * channels;
        for (let c = 0; c < channels; c++) cur[p + c] = mode === 'deletion' ? 0 : data[p + c];
      }
      variants.push({ data: Float32Array.from(cur), size, channels });
    }
  }
  const probs: number[] = [];
  for (let i = 0; i < variants.length; i += batchSize) {
    const p = explainer.predict(variants.slice(i, i + batchSize));
    for (let j = 0; j < Math.min(batchSize, variants.length - i); j++) {
      const v = p[j * explainer.numClasses + classIndex];
      probs.push(negate ? 1 - v : v);
    }
  }
  return { deletion: probs.slice(0, steps + 1), insertion: probs.slice(steps + 1) };
}

export function score(c: Curves): FaithfulnessScore {
  return { deletion: auc(c.deletion), insertion: auc(c.insertion) };
}

/** Deletion/insertion AUC of one heatmap's pixel order. */
export function heatmapScore(
  explainer: Explainer,
  image: CamInput,
  target: { classIndex: number; negate?: boolean },
  heatmap: Heatmap,
  rand: () => number,
  opts: FaithfulnessOptions = {},
  blurred: Float32Array = blurImage(image),
): FaithfulnessScore {
  return score(curves(explainer, image, target.classIndex, relevanceOrder(heatmap, image.size, rand), opts, blurred, target.negate));
}

/**
 * The random-order yardstick of one image and class, averaged over `randomRepeats` orders. It does not depend on the
 * method, so callers compute it once per image and class.
 */
export function randomScore(
  explainer: Explainer,
  image: CamInput,
  target: { classIndex: number; negate?: boolean },
  rand: () => number,
  opts: FaithfulnessOptions = {},
  blurred: Float32Array = blurImage(image),
): FaithfulnessScore {
  const repeats = opts.randomRepeats ?? 2;
  const r = Array.from({ length: repeats }, () =>
    score(curves(explainer, image, target.classIndex, yardstickOrder(image.size, explainer.cells, rand, opts.random), opts, blurred, target.negate)),
  );
  return { deletion: r.reduce((a, x) => a + x.deletion, 0) / repeats, insertion: r.reduce((a, x) => a + x.insertion, 0) / repeats };
}


/** Summarises per-heatmap scores into one table row per method. */
export function summarize(
  entries: { method: CamMethod; score: FaithfulnessScore; random: FaithfulnessScore; camSeconds: number }[],
): FaithfulnessRow[] {
  const methods = [...new Set(entries.map((e) => e.method))];
  const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / Math.max(1, xs.length);
  return methods.map((method) => {
    const es = entries.filter((e) => e.method === method);
    return {
      method,
      n: es.length,
      deletion: mean(es.map((e) => e.score.deletion)),
      insertion: mean(es.map((e) => e.score.insertion)),
      randomDeletion: mean(es.map((e) => e.random.deletion)),
      randomInsertion: mean(es.map((e) => e.random.insertion)),
      deletionWinRate: mean(es.map((e) => (e.score.deletion < e.random.deletion ? 1 : 0))),
      camSeconds: mean(es.map((e) => e.camSeconds)),
    };
  });
}

/**
 * The faithfulness table: for each method, the mean deletion and insertion AUC of its heatmaps over all image–class
 * pairs, beside the random-order baseline of the same pairs.
 */
export function faithfulnessTable(
  explainer: Explainer,
  images: CamInput[],
  targets: CamTarget[],
  methods: readonly CamMethod[],
  opts: FaithfulnessOptions & { onProgress?: (done: number, total: number) => void } = {},
): FaithfulnessRow[] {
  const rand = seededRandom(opts.seed ?? 1);
  const repeats = opts.randomRepeats ?? 2;
  const total = targets.length * (methods.length + 1);
  let done = 0;
  const blurred = images.map((im) => blurImage(im));
  const random: FaithfulnessScore[] = targets.map((t) => {
    const scores = Array.from({ length: repeats }, () =>
      score(
        curves(explainer, images[t.image], t.classIndex, yardstickOrder(images[t.image].size, explainer.cells, rand, opts.random), opts, blurred[t.image]),
      ),
    );
    opts.onProgress?.(++done, total);
    return {
      deletion: scores.reduce((s, x) => s + x.deletion, 0) / repeats,
      insertion: scores.reduce((s, x) => s + x.insertion, 0) / repeats,
    };
  });
  const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / Math.max(1, xs.length);
  const rows: FaithfulnessRow[] = [];
  for (const method of methods) {
    const start = performance.now();
    const cams = targets.map((t) => explainer.explain([images[t.image]], [{ image: 0, classIndex: t.classIndex }], method)[0]);
    const camSeconds = (performance.now() - start) / 1000 / Math.max(1, targets.length);
    const scores = targets.map((t, i) => {
      const im = images[t.image];
      const s = score(curves(explainer, im, t.classIndex, relevanceOrder(cams[i].heatmap, im.size, rand), opts, blurred[t.image]));
      opts.onProgress?.(++done, total);
      return s;
    });
    rows.push({
      method,
      n: targets.length,
      deletion: mean(scores.map((s) => s.deletion)),
      insertion: mean(scores.map((s) => s.insertion)),
      randomDeletion: mean(random.map((s) => s.deletion)),
      randomInsertion: mean(random.map((s) => s.insertion)),
      deletionWinRate: mean(scores.map((s, i) => (s.deletion < random[i].deletion ? 1 : 0))),
      camSeconds,
    });
  }
  return rows;
}

/** The table as aligned text (for the terminal and the closing notes). */
export function formatFaithfulnessTable(rows: FaithfulnessRow[]): string {
  const head = ['method', 'n', 'deletion↓', 'random del', 'insertion↑', 'random ins', 'del<random', 's/cam'];
  const body = rows.map((r) => [
    r.method,
    String(r.n),
    r.deletion.toFixed(4),
    r.randomDeletion.toFixed(4),
    r.insertion.toFixed(4),
    r.randomInsertion.toFixed(4),
    `${(100 * r.deletionWinRate).toFixed(0)}%`,
    r.camSeconds.toFixed(3),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [line(head), ...body.map(line)].join('\n');
}

/** Keeps tf memory flat across long faithfulness runs (every helper above cleans up, this checks it in tests). */
export function tensorsInUse(): number {
  return tf.memory().numTensors;
}
