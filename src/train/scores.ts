import { column, countsAtThreshold, f1Of, meanDefined, rocAuc } from '../metrics/metrics.js';

/** Per-class and macro scores of n×C probabilities against n×C 0/1 targets at given thresholds. */
export interface Scores {
  auc: (number | null)[];
  f1: (number | null)[];
  macroAuc: number | null;
  meanF1: number | null;
}

/** Class k's targets and probabilities over the rows that grade it (a NaN target is "not graded"). */
function gradedColumn(targets: ArrayLike<number>, probs: ArrayLike<number>, numClasses: number, k: number): { y: Float64Array; p: Float64Array } {
  const y = column(targets, numClasses, k);
  const p = column(probs, numClasses, k);
  if (!y.some(Number.isNaN)) return { y, p };
  const keep = [...y.keys()].filter((i) => !Number.isNaN(y[i]));
  return { y: Float64Array.from(keep, (i) => y[i]), p: Float64Array.from(keep, (i) => p[i]) };
}

/** Scores per class over the rows graded for it: a NaN target ("not graded") counts neither way. */
export function scoreProbabilities(targets: Float32Array, probs: Float32Array, numClasses: number, thresholds: number[] | number): Scores {
  const auc: (number | null)[] = [];
  const f1: (number | null)[] = [];
  for (let k = 0; k < numClasses; k++) {
    const { y, p } = gradedColumn(targets, probs, numClasses, k);
    auc.push(rocAuc(y, p));
    f1.push(f1Of(countsAtThreshold(y, p, typeof thresholds === 'number' ? thresholds : thresholds[k])));
  }
  return { auc, f1, macroAuc: meanDefined(auc), meanF1: meanDefined(f1) };
}

/** The scores as a JSON-friendly object keyed by class name (what fundus.json's `metrics` holds). */
export function scoresReport(scores: Scores, classes: string[], n: number, thresholds: number[]): Record<string, unknown> {
  return {
    images: n,
    macroAuc: scores.macroAuc,
    meanF1: scores.meanF1,
    perClass: Object.fromEntries(classes.map((c, k) => [c, { auc: scores.auc[k], f1: scores.f1[k], threshold: thresholds[k] }])),
  };
}
