import type { Dataset, LabelledImage } from '../data/labels.js';
import type { BootstrapOptions } from '../eval/bootstrap.js';
import { evaluatePredictions } from '../eval/evaluate.js';
import type { EvaluationMetrics } from '../eval/schema.js';
import type { FundusModel } from '../models/io.js';
import { predictFiles, type RunOptions } from '../models/predictor.js';
import { InputError } from '../util/errors.js';

/**
 * Labelled images of a split part with their labels re-ordered to `classes` (a model's class order, which need not be
 * the CSV's column order). InputError for a class the CSV lacks or an image it does not list.
 */
export function labelledPart(dataset: Dataset, names: string[], classes: string[], part: string): LabelledImage[] {
  const byName = new Map(dataset.images.map((im) => [im.filename, im]));
  const index = classes.map((c) => {
    const k = dataset.classes.indexOf(c);
    if (k < 0) throw new InputError(`the model's class "${c}" is not a column of the CSV`, { file: dataset.csvPath });
    return k;
  });
  return names.map((n) => {
    const im = byName.get(n);
    if (!im) throw new InputError(`image "${n}" of the split's ${part} part is not in the CSV`, { file: dataset.csvPath });
    if (!im.labels) throw new InputError(`image "${n}" has no labels`, { file: dataset.csvPath });
    return { filename: im.filename, path: im.path, labels: Uint8Array.from(index.map((k) => im.labels![k])) };
  });
}

/**
 * The model's output probabilities on paths (n×C), as `fundus predict` and `fundus evaluate` compute them; `cache`:
 * through the preprocessing cache (the same pixels as training saw, decoded once over the many evaluations of a
 * self-learning run); `stop`: progress after each batch and a signal that stops the pass (a deadline: `stopAtDeadline`).
 */
export function predictProbabilities(model: FundusModel, paths: string[], cache = true, stop: Pick<RunOptions, 'onProgress' | 'signal'> = {}): Promise<Float32Array> {
  return predictFiles(model, paths, { cache, ...stop });
}

/** A model evaluated on labelled images: the metrics, and what they were computed from (for paired comparisons). */
export interface PartEvaluation {
  metrics: EvaluationMetrics;
  /** n×C probabilities in the model's class order. */
  probs: Float32Array;
  /** n×C multi-hot labels in the model's class order. */
  labels: Uint8Array;
  thresholds: number[];
  classes: string[];
}

/**
 * Evaluates a model on the named images of a split part, labels mapped to the model's class order, predictions made
 * the way `fundus evaluate` makes them (so the numbers are comparable), with the model's own thresholds and the given
 * bootstrap (the same resamples for every model evaluated with the same seed).
 */
export async function evaluateOnPart(
  model: FundusModel,
  dataset: Dataset,
  names: string[],
  opts: { part?: string; bootstrap?: BootstrapOptions } = {},
): Promise<PartEvaluation> {
  const classes = model.metadata.classes;
  const C = classes.length;
  const images = labelledPart(dataset, names, classes, opts.part ?? 'test');
  if (images.length === 0) throw new InputError(`the split's ${opts.part ?? 'test'} part has no images to evaluate on`);
  const probs = await predictProbabilities(model, images.map((t) => t.path), false);
  const labels = new Uint8Array(images.length * C);
  images.forEach((t, i) => labels.set(t.labels!, i * C));
  const metrics = evaluatePredictions({
    classes,
    activation: model.metadata.activation,
    probs,
    labels,
    thresholds: model.metadata.thresholds,
    bootstrap: { resamples: opts.bootstrap?.resamples ?? 1000, seed: opts.bootstrap?.seed ?? 0 },
  });
  return { metrics, probs, labels, thresholds: [...model.metadata.thresholds], classes: [...classes] };
}
