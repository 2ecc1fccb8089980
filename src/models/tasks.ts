import { CLASSES, FOCUS_CLASSES, PATHOLOGIES, isGraded } from '../data/labels.js';
import type { Dataset, LabelledImage } from '../data/labels.js';
import { InputError } from '../util/errors.js';
import type { Task } from './metadata.js';

export const TASKS: readonly Task[] = ['multilabel', 'focus', 'focus-sigmoid', 'one-vs-normal'];

export function parseTask(s: string): Task {
  if ((TASKS as readonly string[]).includes(s)) return s as Task;
  throw new InputError(`unknown task "${s}" (use one of: ${TASKS.join(', ')})`);
}

/** One training example of a task: an image, its target vector in the task's class order, and a sample weight. */
export interface Example {
  path: string;
  filename: string;
  /** Targets in the task's class order; NaN where the image's source did not grade the class (masked out of the loss). */
  target: Float32Array;
  /** 1 for labelled images; pseudo-labelled ones may count less. */
  weight: number;
  /** The source the image comes from, for multi-source data. */
  source?: string;
}

/** What a (binary or multi-class) network is trained to output. */
export interface TaskHead {
  classes: string[];
  activation: 'sigmoid' | 'softmax';
}

/** The output head of a task's network (for one-vs-normal: of one member, see memberTasks). */
export function taskHead(task: Task): TaskHead {
  switch (task) {
    case 'multilabel':
      return { classes: [...CLASSES], activation: 'sigmoid' };
    case 'focus':
      return { classes: [...FOCUS_CLASSES], activation: 'softmax' };
    case 'focus-sigmoid':
      return { classes: [...FOCUS_CLASSES], activation: 'sigmoid' };
    case 'one-vs-normal':
      // The combined predictor: one probability per pathology, plus `normal` = no member fires.
      return { classes: [...CLASSES], activation: 'sigmoid' };
  }
}

/** The pathologies of one-vs-normal, one binary member model each (positives: the pathology; negatives: normal). */
export function oneVsNormalMembers(): string[] {
  return [...PATHOLOGIES];
}

/** Column index of every class name in the dataset; InputError when the dataset lacks one the task needs. */
function columns(dataset: Dataset, names: readonly string[]): number[] {
  return names.map((n) => {
    const i = dataset.classes.indexOf(n);
    if (i < 0) throw new InputError(`the dataset has no "${n}" column (it has: ${dataset.classes.join(', ')})`, { file: dataset.csvPath });
    return i;
  });
}

function labelled(images: LabelledImage[]): (LabelledImage & { labels: Uint8Array })[] {
  return images.filter((im): im is LabelledImage & { labels: Uint8Array } => im.labels !== undefined);
}

/**
 * The examples of `task` among `images` (labels in `dataset`'s class order):
 * - multilabel: every labelled image, multi-hot over the 7 classes;
 * - focus: images with exactly one of diabetic retinopathy, glaucoma, normal (other labels may be present), one-hot;
 * - focus-sigmoid: images with at least one of the three, multi-hot over the three (keeps DR + glaucoma);
 * - one-vs-normal: use memberExamples for each member.
 * Classes an image's source did not grade are NaN targets (sigmoid tasks mask them out of the loss). The softmax
 * `focus` task presumes its three classes exclusive: an image with exactly one graded positive among them is that
 * class's example, its ungraded ones taken as 0; an image with no graded positive cannot be placed and is left out.
 */
export function taskExamples(task: Task, dataset: Dataset, images: LabelledImage[]): Example[] {
  const head = taskHead(task);
  if (task === 'one-vs-normal') throw new Error('one-vs-normal trains one binary member per pathology: use memberExamples');
  const cols = columns(dataset, head.classes);
  const out: Example[] = [];
  for (const im of labelled(images)) {
    const t = Float32Array.from(cols, (c) => (isGraded(im, c) ? im.labels[c] : task === 'focus' ? 0 : NaN));
    const positives = t.reduce((a, b) => a + (b === 1 ? 1 : 0), 0);
    if (task === 'focus' && positives !== 1) continue;
    if (task === 'focus-sigmoid' && positives === 0) continue;
    out.push({ path: im.path, filename: im.filename, target: t, weight: 1, ...(im.source !== undefined ? { source: im.source } : {}) });
  }
  return out;
}

/**
 * Reweights examples so that every source carries the same total weight (the loss then sees the sources as
 * equally large, whatever their sizes), keeping the mean weight. Images without a source count as one source.
 */
export function balanceSources(examples: Example[], sourceOf: (e: Example) => string = (e) => e.source ?? ''): Example[] {
  const totals = new Map<string, number>();
  for (const e of examples) totals.set(sourceOf(e), (totals.get(sourceOf(e)) ?? 0) + e.weight);
  const all = examples.reduce((a, e) => a + e.weight, 0);
  return examples.map((e) => ({ ...e, weight: (e.weight * all) / (totals.size * totals.get(sourceOf(e))!) }));
}

/** The binary examples of one one-vs-normal member: `pathology` = 1 against `normal` = 0, nothing else. */
export function memberExamples(pathology: string, dataset: Dataset, images: LabelledImage[]): Example[] {
  const [p, n] = columns(dataset, [pathology, 'normal']);
  const out: Example[] = [];
  for (const im of labelled(images)) {
    if (im.labels[p] === 1) out.push({ path: im.path, filename: im.filename, target: Float32Array.of(1), weight: 1 });
    else if (im.labels[n] === 1) out.push({ path: im.path, filename: im.filename, target: Float32Array.of(0), weight: 1 });
  }
  return out;
}

/**
 * Per-class weights that balance the loss: for sigmoid heads, positive and negative terms of class k weigh
 * n/(2·pos_k) and n/(2·neg_k) (Keras's "balanced" class weights per output); for softmax, class k weighs
 * n/(K·count_k). Counts are clamped to 1 so that an absent class does not blow up the loss. Weights are capped at
 * `cap` because a rare class at 50× would dominate every batch.
 */
export function balancedClassWeights(
  examples: Example[],
  numClasses: number,
  activation: 'sigmoid' | 'softmax',
  cap = 10,
): { positive: Float32Array; negative: Float32Array } {
  const pos = new Float64Array(numClasses);
  let n = 0;
  // per class over the examples graded for it
  const graded = new Float64Array(numClasses);
  for (const e of examples) {
    n += e.weight;
    for (let k = 0; k < numClasses; k++) {
      if (Number.isNaN(e.target[k])) continue;
      pos[k] += e.target[k] * e.weight;
      graded[k] += e.weight;
    }
  }
  const positive = new Float32Array(numClasses);
  const negative = new Float32Array(numClasses);
  for (let k = 0; k < numClasses; k++) {
    const p = Math.max(1, pos[k]);
    const q = Math.max(1, graded[k] - pos[k]);
    if (activation === 'softmax') {
      positive[k] = Math.min(cap, n / (numClasses * p));
      negative[k] = 0;
    } else {
      positive[k] = Math.min(cap, graded[k] / (2 * p));
      negative[k] = Math.min(cap, graded[k] / (2 * q));
    }
  }
  return { positive, negative };
}
