import { bootstrapIntervals, labelCombinationStrata, type BootstrapOptions, type Interval } from '../eval/bootstrap.js';
import { argsortDesc, column, countsAtThreshold, f1Of, rocAuc } from '../metrics/metrics.js';

/** One model's test probabilities (n×C, row-major, the same images and class order as the labels) and thresholds. */
export interface ScoredPredictions {
  probs: ArrayLike<number>;
  thresholds: number[];
}

export interface PairedDelta {
  /** a − b on the test part (null where a class average is undefined). */
  value: number | null;
  /** Percentile interval of a − b over the same bootstrap resamples for both models. */
  ci: Interval;
}

export interface PairedDifference {
  macroAuc: PairedDelta;
  meanF1: PairedDelta;
}

function classStats(y: Float64Array, p: Float64Array, order: Uint32Array, threshold: number, w?: Float64Array): [number, number] {
  const auc = rocAuc(y, p, w, order);
  const f1 = f1Of(countsAtThreshold(y, p, threshold, w));
  return [auc ?? NaN, f1 ?? NaN];
}

/**
 * Paired bootstrap of the difference a − b in macro ROC AUC and mean per-class F1 (each model at its own thresholds)
 * on the same labelled images: each resample draws images once and scores both models on it, so the interval is that
 * of the difference, much narrower than comparing two marginal intervals (the models' errors are correlated).
 * Averages cover the classes defined on the full data, as in `evaluatePredictions`; resamples are stratified by label
 * combination, as its overall intervals are.
 */
export function pairedDifference(labels: Uint8Array, numClasses: number, a: ScoredPredictions, b: ScoredPredictions, opts: BootstrapOptions = {}): PairedDifference {
  const C = numClasses;
  if (a.probs.length !== labels.length || b.probs.length !== labels.length || labels.length % C !== 0) {
    throw new RangeError(`probabilities (${a.probs.length}, ${b.probs.length}) and labels (${labels.length}) must all be n×${C}`);
  }
  if (a.thresholds.length !== C || b.thresholds.length !== C) throw new RangeError(`expected ${C} thresholds per model`);
  const ys = Array.from({ length: C }, (_, k) => column(labels, C, k));
  const side = (s: ScoredPredictions) => {
    const ps = Array.from({ length: C }, (_, k) => column(s.probs, C, k));
    return { ps, orders: ps.map((p) => argsortDesc(p)) };
  };
  const sa = side(a);
  const sb = side(b);
  // [macro AUC difference, mean F1 difference] under weights w (undefined → NaN); classes undefined on the data are left out.
  const full = ys.map((y, k) => [classStats(y, sa.ps[k], sa.orders[k], a.thresholds[k]), classStats(y, sb.ps[k], sb.orders[k], b.thresholds[k])]);
  const diffs = (w?: Float64Array): [number, number] => {
    const sum = [0, 0];
    const count = [0, 0];
    for (let k = 0; k < C; k++) {
      const va = w ? classStats(ys[k], sa.ps[k], sa.orders[k], a.thresholds[k], w) : full[k][0];
      const vb = w ? classStats(ys[k], sb.ps[k], sb.orders[k], b.thresholds[k], w) : full[k][1];
      for (let s = 0; s < 2; s++) {
        if (Number.isNaN(full[k][0][s]) || Number.isNaN(full[k][1][s])) continue;
        // A class defined on the data but not on this resample: the resample is left out of that average.
        sum[s] += Number.isNaN(va[s]) || Number.isNaN(vb[s]) ? NaN : va[s] - vb[s];
        count[s]++;
      }
    }
    return [count[0] > 0 ? sum[0] / count[0] : NaN, count[1] > 0 ? sum[1] / count[1] : NaN];
  };
  const point = diffs();
  const intervals = bootstrapIntervals(
    labelCombinationStrata(labels, C),
    2,
    (w, out) => {
      const d = diffs(w);
      out[0] = d[0];
      out[1] = d[1];
    },
    opts,
  );
  const delta = (v: number, ci: Interval): PairedDelta => (Number.isNaN(v) ? { value: null, ci: null } : { value: v, ci });
  return { macroAuc: delta(point[0], intervals[0]), meanF1: delta(point[1], intervals[1]) };
}
