import { argsortDesc, column, countsAtThreshold, f1Of, precisionOf, sensitivityOf, specificityOf } from './metrics.js';
import type { Labels, Scores } from './metrics.js';
import { InputError } from '../util/errors.js';

/**
 * How per-class decision thresholds are chosen on validation data:
 * - `max-f1`: the threshold with the best F1 (the contest metric is a mean of per-class F1);
 * - `sensitivity`: the highest threshold that still finds `target` of the positives (e.g. 0.9 for screening, where a
 *   missed disease costs more than a referral), i.e. the best specificity at that sensitivity.
 */
export type ThresholdPolicy = { kind: 'max-f1' } | { kind: 'sensitivity'; target: number };

/** Parses `max-f1` or `sensitivity=0.9` (as given to `fundus thresholds --policy`). */
export function parsePolicy(text: string): ThresholdPolicy {
  const t = text.trim().toLowerCase();
  if (t === 'max-f1') return { kind: 'max-f1' };
  const m = /^sensitivity\s*=\s*([0-9.]+)$/.exec(t);
  if (m) {
    const target = Number(m[1]);
    if (Number.isFinite(target) && target > 0 && target <= 1) return { kind: 'sensitivity', target };
  }
  throw new InputError(`unknown threshold policy '${text}' (use 'max-f1' or 'sensitivity=<0..1>', e.g. sensitivity=0.9)`);
}

export function describePolicy(p: ThresholdPolicy): string {
  return p.kind === 'max-f1' ? 'max-f1' : `sensitivity=${p.target}`;
}

/** The threshold chosen for one class and what it gives on the data it was tuned on. */
export interface ClassThreshold {
  threshold: number;
  /** Whether the policy could be applied; false when the class has no positives (the fallback is kept). */
  tuned: boolean;
  f1: number | null;
  sensitivity: number | null;
  specificity: number | null;
  precision: number | null;
  positives: number;
  note?: string;
}

/**
 * Chooses one class's threshold. Candidates are the cuts between consecutive distinct scores; the threshold is put
 * half-way between the two scores of the chosen cut rather than on a validation score itself, so that a test image
 * scoring like the lowest validation positive is not decided by rounding. Ties between candidates go to the higher
 * threshold (fewer false alarms).
 */
export function tuneThreshold(y: Labels, scores: Scores, policy: ThresholdPolicy, fallback = 0.5): ClassThreshold {
  const order = argsortDesc(scores);
  let P = 0;
  for (let i = 0; i < y.length; i++) if (y[i]) P++;
  const report = (threshold: number, tuned: boolean, note?: string): ClassThreshold => {
    const c = countsAtThreshold(y, scores, threshold);
    return {
      threshold,
      tuned,
      f1: f1Of(c),
      sensitivity: sensitivityOf(c),
      specificity: specificityOf(c),
      precision: precisionOf(c),
      positives: P,
      ...(note ? { note } : {}),
    };
  };
  if (P === 0) return report(fallback, false, `no positive examples: kept the threshold ${fallback}`);

  const n = order.length;
  let tp = 0;
  let fp = 0;
  let bestCut = -1;
  let bestF1 = -1;
  for (let k = 0; k < n; k++) {
    const i = order[k];
    if (y[i]) tp++;
    else fp++;
    if (k < n - 1 && scores[order[k + 1]] === scores[i]) continue;
    if (policy.kind === 'max-f1') {
      const f1 = (2 * tp) / (2 * tp + fp + (P - tp));
      if (f1 > bestF1) {
        bestF1 = f1;
        bestCut = k;
      }
    } else if (tp / P >= policy.target - 1e-12) {
      bestCut = k;
      break;
    }
  }
  const s = scores[order[bestCut]];
  const threshold = bestCut < n - 1 ? (s + scores[order[bestCut + 1]]) / 2 : s;
  return report(threshold, true);
}

/** Rows of multi-hot labels (as `LabelledImage.labels`) or one n×numClasses row-major matrix. */
export type LabelMatrix = Uint8Array[] | ArrayLike<number>;

export function flattenLabels(labels: LabelMatrix, numClasses: number): Uint8Array {
  if (Array.isArray(labels) && labels.length > 0 && typeof labels[0] !== 'number') {
    const rows = labels as Uint8Array[];
    const out = new Uint8Array(rows.length * numClasses);
    rows.forEach((r, i) => {
      if (r.length !== numClasses) throw new RangeError(`label row ${i} has ${r.length} entries, expected ${numClasses}`);
      out.set(r, i * numClasses);
    });
    return out;
  }
  return Uint8Array.from(labels as ArrayLike<number>);
}

/**
 * Tunes every class's threshold on n×numClasses probabilities. `fallback` gives each class's threshold to keep when
 * it cannot be tuned (default 0.5). `graded` (n×numClasses, 1 = graded) tunes each class on the images graded for it
 * only: an ungraded label is unknown, not negative.
 */
export function tuneThresholds(
  yTrue: LabelMatrix,
  probs: Scores,
  numClasses: number,
  policy: ThresholdPolicy,
  fallback: number[] = [],
  graded?: ArrayLike<number>,
): { thresholds: number[]; perClass: ClassThreshold[]; policy: string } {
  const labels = flattenLabels(yTrue, numClasses);
  if (labels.length !== probs.length) {
    throw new RangeError(`labels (${labels.length}) and probabilities (${probs.length}) differ in size`);
  }
  const n = labels.length / numClasses;
  const perClass: ClassThreshold[] = [];
  for (let k = 0; k < numClasses; k++) {
    let y = column(labels, numClasses, k);
    let p = column(probs, numClasses, k);
    if (graded) {
      const rows = Array.from({ length: n }, (_, i) => i).filter((i) => graded[i * numClasses + k]);
      y = Float64Array.from(rows, (i) => y[i]);
      p = Float64Array.from(rows, (i) => p[i]);
    }
    perClass.push(tuneThreshold(y, p, policy, fallback[k] ?? 0.5));
  }
  return { thresholds: perClass.map((c) => c.threshold), perClass, policy: describePolicy(policy) };
}
