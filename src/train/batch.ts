import * as tf from '@tensorflow/tfjs-core';
import { augmentDrawn, warpMask } from '../data/augment.js';
import type { AugmentParams, AugmentSettings } from '../data/augment.js';
import type { Box } from '../data/lesions.js';
import { normalizeBytes } from '../data/preprocess.js';
import type { PreprocessSettings } from '../data/preprocess.js';
import type { Example } from '../models/tasks.js';
import { maskOnGrid, rasterBoxes } from './lesion-attention.js';
import { splitGraded } from './losses.js';
import type { Rng } from './rng.js';

/** One batch as tensors: inputs, targets (0 where not graded), sample weights and, when some target is not graded, its mask. */
export interface Batch {
  x: tf.Tensor4D;
  y: tf.Tensor2D;
  w: tf.Tensor1D;
  mask?: tf.Tensor2D;
  /**
   * Lesion attention: each photograph's box cells on the feature map's grid [N, rows, cols] (moved with its
   * augmentation), and 1 for the photographs that have boxes still in view or are known to have none.
   */
  lesions?: { cells: tf.Tensor3D; present: tf.Tensor1D };
}

/** A part of the data as the loop holds it: examples and their cached preprocessed bytes, index for index. */
export interface CachedPart {
  examples: Example[];
  pixels: Uint8Array[];
  /**
   * Lesion attention: each example's expert lesion boxes in pixels of its network input, where it has any; an empty
   * list where it is known to have none (the lesion map head's negatives).
   */
  lesionBoxes?: (Box[] | undefined)[];
}

/** How the cached bytes become network inputs: the model's preprocessing and input shape. */
export interface InputSpec {
  preprocess: PreprocessSettings;
  inputShape: [number, number, number];
}

/**
 * Assembles one batch of `part` at indices `idx`: normalise the cached bytes, augment (when `aug` and `rng` are
 * given: training), stack; targets and sample weights.
 */
export function makeBatch(
  idx: number[],
  part: CachedPart,
  input: InputSpec,
  aug: Partial<AugmentSettings> | false = false,
  rng: Rng | null = null,
  lesionGrid?: [number, number],
): Batch {
  const { examples, pixels } = part;
  const { preprocess } = input;
  const [size, , channels] = input.inputShape;
  const per = size * size * channels;
  const numClasses = examples[0].target.length;
  const xs = new Float32Array(idx.length * per);
  const ys = new Float32Array(idx.length * numClasses);
  const ws = new Float32Array(idx.length);
  const boxesOf = lesionGrid && part.lesionBoxes ? part.lesionBoxes : undefined;
  const cells = boxesOf ? new Float32Array(idx.length * lesionGrid![0] * lesionGrid![1]) : undefined;
  const present = boxesOf ? new Float32Array(idx.length) : undefined;
  idx.forEach((j, i) => {
    let im = normalizeBytes(pixels[j], channels, preprocess);
    let moved: AugmentParams | undefined;
    if (aug && rng) ({ image: im, params: moved } = augmentDrawn(im, size, channels, rng.fn(), { ...aug, normalize: preprocess.normalize }));
    xs.set(im, i * per);
    const boxes = boxesOf?.[j];
    if (boxes) {
      const [rows, cols] = lesionGrid!;
      let mask = rasterBoxes(boxes, size);
      if (moved) mask = warpMask(mask, size, moved);
      const onGrid = maskOnGrid(mask, size, rows, cols);
      cells!.set(onGrid, i * rows * cols);
      // Boxes moved out of view by the augmentation leave nothing to point at; an empty list is a photograph known to
      // be free of lesions (the lesion map head's negatives), every cell a negative.
      present![i] = boxes.length === 0 || onGrid.some((v) => v > 0) ? 1 : 0;
    }
    ys.set(examples[j].target, i * numClasses);
    ws[i] = examples[j].weight;
  });
  const graded = splitGraded(ys);
  return {
    x: tf.tensor4d(xs, [idx.length, size, size, channels]),
    y: tf.tensor2d(graded.targets, [idx.length, numClasses]),
    w: tf.tensor1d(ws),
    ...(graded.mask ? { mask: tf.tensor2d(graded.mask, [idx.length, numClasses]) } : {}),
    ...(cells ? { lesions: { cells: tf.tensor3d(cells, [idx.length, lesionGrid![0], lesionGrid![1]]), present: tf.tensor1d(present!) } } : {}),
  };
}

export function disposeBatch(b: Batch): void {
  tf.dispose([b.x, b.y, b.w, b.mask ?? [], b.lesions?.cells ?? [], b.lesions?.present ?? []]);
}

/** The indices of the first `n` examples in consecutive batches of `batchSize` (the last one shorter). */
export function* inOrder(n: number, batchSize: number): Generator<number[]> {
  for (let start = 0; start < n; start += batchSize) yield Array.from({ length: Math.min(batchSize, n - start) }, (_, i) => start + i);
}

/** The sum of the sample weights of the examples at `idx`. */
export function weightOf(idx: number[], examples: Example[]): number {
  return idx.reduce((a, j) => a + examples[j].weight, 0);
}
