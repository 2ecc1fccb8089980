/**
 * Classification metrics with scikit-learn's definitions (tested against sklearn 1.2.1 on committed fixtures, see
 * test/eval/sklearn.test.ts and benchmarks/fixtures/make_metric_fixtures.py).
 *
 * Undefined values. Where sklearn raises (ROC AUC with one class only) or warns and substitutes 0 (precision with no
 * predicted positives, recall with no positives, average precision with no positives), these functions return
 * `null`; `undefinedReason()` says why in words. They never return NaN. The one deliberate difference from sklearn is
 * therefore that an undefined value is `null` instead of sklearn's substitute 0.
 *
 * Labels are 0/1 numbers, scores any finite numbers (probabilities in practice); a sample is predicted positive when
 * its score is >= the threshold. Most functions take optional per-sample weights: the bootstrap passes resample
 * multiplicities there instead of copying arrays, which is what makes 1000 resamples cheap.
 */

export type Labels = ArrayLike<number>;
export type Scores = ArrayLike<number>;
export type Weights = ArrayLike<number>;

function checkLengths(y: Labels, s: ArrayLike<number>, w?: Weights): void {
  if (y.length !== s.length) throw new RangeError(`labels (${y.length}) and scores (${s.length}) differ in length`);
  if (w && w.length !== y.length) throw new RangeError(`weights (${w.length}) and labels (${y.length}) differ in length`);
}

function checkFinite(s: Scores): void {
  for (let i = 0; i < s.length; i++) {
    if (!Number.isFinite(s[i])) throw new RangeError(`score ${i} is ${s[i]}; scores must be finite`);
  }
}

/** Below this many positive (or negative) photographs a class's AUC and F1 swing by more than ±0.1 between samples. */
export const MIN_RELIABLE_CLASS_COUNT = 10;

/** Indices ordered by decreasing score; equal scores keep index order (so results do not depend on the sort). */
export function argsortDesc(scores: Scores): Uint32Array {
  const order = new Uint32Array(scores.length);
  for (let i = 0; i < order.length; i++) order[i] = i;
  order.sort((a, b) => scores[b] - scores[a] || a - b);
  return order;
}

/** Weighted numbers of positives and negatives. */
export function classCounts(y: Labels, w?: Weights): { positives: number; negatives: number } {
  let p = 0;
  let n = 0;
  for (let i = 0; i < y.length; i++) {
    const wi = w ? w[i] : 1;
    if (y[i]) p += wi;
    else n += wi;
  }
  return { positives: p, negatives: n };
}

/**
 * Area under the ROC curve, equal to sklearn's `roc_auc_score` (trapezoidal over distinct thresholds, so tied scores
 * count one half). `order` (from `argsortDesc(scores)`) may be passed to skip the sort when called repeatedly.
 * Null when the labels hold only one class: the ROC curve is not defined then.
 */
export function rocAuc(y: Labels, scores: Scores, w?: Weights, order?: Uint32Array): number | null {
  checkLengths(y, scores, w);
  if (!order) {
    checkFinite(scores);
    order = argsortDesc(scores);
  }
  let tp = 0;
  let fp = 0;
  let tpPrev = 0;
  let fpPrev = 0;
  let area = 0;
  const n = order.length;
  for (let k = 0; k < n; k++) {
    const i = order[k];
    const wi = w ? w[i] : 1;
    if (y[i]) tp += wi;
    else fp += wi;
    if (k === n - 1 || scores[order[k + 1]] !== scores[i]) {
      area += ((fp - fpPrev) * (tp + tpPrev)) / 2;
      tpPrev = tp;
      fpPrev = fp;
    }
  }
  if (tp === 0 || fp === 0) return null;
  return area / (tp * fp);
}

// averagePrecision repeats rocAuc's walk over the distinct thresholds on purpose: both run once per class per
// bootstrap resample, and one shared walk calling back per threshold measured 1.4-2x slower in `npm run bench:eval`
// (0.28-0.53 against 0.20-0.30 ms per resample).
/**
 * Average precision, equal to sklearn's `average_precision_score`: the step-wise sum over distinct thresholds of
 * (R_k - R_{k-1}) P_k, with no interpolation. Null when there are no positives (sklearn warns and returns 0).
 */
export function averagePrecision(y: Labels, scores: Scores, w?: Weights, order?: Uint32Array): number | null {
  checkLengths(y, scores, w);
  if (!order) {
    checkFinite(scores);
    order = argsortDesc(scores);
  }
  let tp = 0;
  let fp = 0;
  let tpPrev = 0;
  let sum = 0;
  const n = order.length;
  for (let k = 0; k < n; k++) {
    const i = order[k];
    const wi = w ? w[i] : 1;
    if (y[i]) tp += wi;
    else fp += wi;
    if (k === n - 1 || scores[order[k + 1]] !== scores[i]) {
      if (tp > tpPrev) sum += ((tp - tpPrev) * tp) / (tp + fp);
      tpPrev = tp;
    }
  }
  if (tp === 0) return null;
  return sum / tp;
}

/** A ROC curve as sklearn's `roc_curve(drop_intermediate=True)` returns it, without its artificial first threshold. */
export interface RocCurve {
  fpr: number[];
  tpr: number[];
  /** thresholds[k] is the score at which point k+1 is reached (point 0 is the origin, above every score). */
  thresholds: number[];
}

/** Cumulative (fps, tps) at each distinct threshold, in decreasing score order. */
function cumulativeCounts(y: Labels, scores: Scores): { fps: number[]; tps: number[]; thresholds: number[] } {
  checkLengths(y, scores);
  checkFinite(scores);
  const order = argsortDesc(scores);
  const fps: number[] = [];
  const tps: number[] = [];
  const thresholds: number[] = [];
  let tp = 0;
  let fp = 0;
  for (let k = 0; k < order.length; k++) {
    const i = order[k];
    if (y[i]) tp++;
    else fp++;
    if (k === order.length - 1 || scores[order[k + 1]] !== scores[i]) {
      fps.push(fp);
      tps.push(tp);
      thresholds.push(scores[i]);
    }
  }
  return { fps, tps, thresholds };
}

/** The ROC curve; null when the labels hold one class only. Collinear points are dropped as sklearn does. */
export function rocCurve(y: Labels, scores: Scores): RocCurve | null {
  const { fps, tps, thresholds } = cumulativeCounts(y, scores);
  const P = tps[tps.length - 1] ?? 0;
  const N = fps[fps.length - 1] ?? 0;
  if (P === 0 || N === 0) return null;
  // sklearn keeps a point when the second difference of fps or tps is non-zero, plus both ends.
  const keep: number[] = [];
  for (let k = 0; k < fps.length; k++) {
    if (k === 0 || k === fps.length - 1) keep.push(k);
    else if (fps[k + 1] - 2 * fps[k] + fps[k - 1] !== 0 || tps[k + 1] - 2 * tps[k] + tps[k - 1] !== 0) keep.push(k);
  }
  return {
    fpr: [0, ...keep.map((k) => fps[k] / N)],
    tpr: [0, ...keep.map((k) => tps[k] / P)],
    thresholds: keep.map((k) => thresholds[k]),
  };
}

/** A precision-recall curve in increasing-threshold order, as sklearn's `precision_recall_curve` returns it. */
export interface PrCurve {
  precision: number[];
  recall: number[];
  /** One fewer than points: the final point (precision 1, recall 0) has no threshold. */
  thresholds: number[];
}

/** The precision-recall curve over every distinct threshold (as sklearn 1.2); null when there are no positives. */
export function precisionRecallCurve(y: Labels, scores: Scores): PrCurve | null {
  const { fps, tps, thresholds } = cumulativeCounts(y, scores);
  const P = tps[tps.length - 1] ?? 0;
  if (P === 0) return null;
  const precision: number[] = [];
  const recall: number[] = [];
  const thr: number[] = [];
  for (let k = tps.length - 1; k >= 0; k--) {
    precision.push(tps[k] / (tps[k] + fps[k]));
    recall.push(tps[k] / P);
    thr.push(thresholds[k]);
  }
  precision.push(1);
  recall.push(0);
  return { precision, recall, thresholds: thr };
}

/** The four cells of a binary confusion matrix (weighted counts when weights are given). */
export interface BinaryCounts {
  tp: number;
  fp: number;
  tn: number;
  fn: number;
}

/** Counts at a threshold: predicted positive when score >= threshold. */
export function countsAtThreshold(y: Labels, scores: Scores, threshold: number, w?: Weights): BinaryCounts {
  checkLengths(y, scores, w);
  let tp = 0;
  let fp = 0;
  let tn = 0;
  let fn = 0;
  for (let i = 0; i < y.length; i++) {
    const wi = w ? w[i] : 1;
    const pred = scores[i] >= threshold;
    if (y[i]) {
      if (pred) tp += wi;
      else fn += wi;
    } else if (pred) fp += wi;
    else tn += wi;
  }
  return { tp, fp, tn, fn };
}

/** Counts of hard 0/1 predictions. */
export function binaryCounts(yTrue: Labels, yPred: Labels): BinaryCounts {
  return countsAtThreshold(yTrue, yPred, 0.5);
}

/** tp / (tp + fp); null without predicted positives. */
export function precisionOf(c: BinaryCounts): number | null {
  return c.tp + c.fp > 0 ? c.tp / (c.tp + c.fp) : null;
}

/** Sensitivity (recall) tp / (tp + fn); null without positives. */
export function sensitivityOf(c: BinaryCounts): number | null {
  return c.tp + c.fn > 0 ? c.tp / (c.tp + c.fn) : null;
}

/** Specificity tn / (tn + fp); null without negatives. */
export function specificityOf(c: BinaryCounts): number | null {
  return c.tn + c.fp > 0 ? c.tn / (c.tn + c.fp) : null;
}

/**
 * F1 = 2tp / (2tp + fp + fn), the same number as sklearn's 2PR/(P+R), including sklearn's 0 when only one of
 * precision and recall is undefined. Null only when there are neither positives nor predicted positives.
 */
export function f1Of(c: BinaryCounts): number | null {
  const d = 2 * c.tp + c.fp + c.fn;
  return d > 0 ? (2 * c.tp) / d : null;
}

export function f1Score(yTrue: Labels, yPred: Labels): number | null {
  return f1Of(binaryCounts(yTrue, yPred));
}

export function precisionScore(yTrue: Labels, yPred: Labels): number | null {
  return precisionOf(binaryCounts(yTrue, yPred));
}

export function recallScore(yTrue: Labels, yPred: Labels): number | null {
  return sensitivityOf(binaryCounts(yTrue, yPred));
}

export function specificityScore(yTrue: Labels, yPred: Labels): number | null {
  return specificityOf(binaryCounts(yTrue, yPred));
}

/** Why a metric came out null, in words for reports; undefined when it is defined. */
export function undefinedReason(
  metric: 'auc' | 'ap' | 'f1' | 'precision' | 'sensitivity' | 'specificity',
  c: BinaryCounts,
): string | undefined {
  const P = c.tp + c.fn;
  const N = c.tn + c.fp;
  switch (metric) {
    case 'auc':
      if (P === 0) return 'undefined: no positive examples of this class';
      if (N === 0) return 'undefined: no negative examples of this class';
      return undefined;
    case 'ap':
    case 'sensitivity':
      return P === 0 ? 'undefined: no positive examples of this class' : undefined;
    case 'specificity':
      return N === 0 ? 'undefined: no negative examples of this class' : undefined;
    case 'precision':
      return c.tp + c.fp === 0 ? 'undefined: nothing was predicted positive' : undefined;
    case 'f1':
      return P + c.fp === 0 ? 'undefined: no positive examples and nothing predicted positive' : undefined;
  }
}

/**
 * Full confusion matrix of single-label predictions, as sklearn's `confusion_matrix(y_true, y_pred,
 * labels=range(numClasses))`: rows are true classes, columns predicted classes.
 */
export function confusionMatrix(yTrue: ArrayLike<number>, yPred: ArrayLike<number>, numClasses: number): number[][] {
  checkLengths(yTrue, yPred);
  const m = Array.from({ length: numClasses }, () => new Array<number>(numClasses).fill(0));
  for (let i = 0; i < yTrue.length; i++) {
    const t = yTrue[i];
    const p = yPred[i];
    if (!(t >= 0 && t < numClasses && p >= 0 && p < numClasses) || t % 1 !== 0 || p % 1 !== 0) {
      throw new RangeError(`class index out of range at ${i}: true ${t}, predicted ${p}`);
    }
    m[t][p]++;
  }
  return m;
}

/**
 * Per-class 2×2 matrices of multi-label predictions, as sklearn's `multilabel_confusion_matrix`: for class k,
 * [[tn, fp], [fn, tp]]. `yTrue` and `yPred` are n×numClasses row-major 0/1 matrices.
 */
export function multilabelConfusionMatrix(yTrue: Labels, yPred: Labels, numClasses: number): number[][][] {
  checkLengths(yTrue, yPred);
  if (yTrue.length % numClasses !== 0) throw new RangeError(`${yTrue.length} labels is not a multiple of ${numClasses}`);
  const out: number[][][] = [];
  for (let k = 0; k < numClasses; k++) {
    const c = binaryCounts(column(yTrue, numClasses, k), column(yPred, numClasses, k));
    out.push([
      [c.tn, c.fp],
      [c.fn, c.tp],
    ]);
  }
  return out;
}

/** Column k of an n×numClasses row-major matrix. */
export function column(matrix: ArrayLike<number>, numClasses: number, k: number): Float64Array {
  const n = matrix.length / numClasses;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = matrix[i * numClasses + k];
  return out;
}

/** Row-wise argmax of an n×numClasses matrix (first maximum on ties, as numpy). */
export function argmaxRows(matrix: ArrayLike<number>, numClasses: number): Int32Array {
  const n = matrix.length / numClasses;
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let k = 1; k < numClasses; k++) if (matrix[i * numClasses + k] > matrix[i * numClasses + best]) best = k;
    out[i] = best;
  }
  return out;
}

/** One bin of a reliability diagram. */
export interface ReliabilityBin {
  /** Bin edges: (lower, upper], the first bin also includes 0. */
  lower: number;
  upper: number;
  count: number;
  /** Mean predicted probability in the bin (sklearn's `prob_pred`). */
  meanPredicted: number;
  /** Fraction of positives in the bin (sklearn's `prob_true`). */
  fractionPositive: number;
}

/**
 * Reliability curve with `nBins` equal-width bins over [0, 1], as sklearn's `calibration_curve(strategy='uniform')`:
 * empty bins are left out.
 */
export function reliabilityCurve(y: Labels, probs: Scores, nBins = 10): ReliabilityBin[] {
  checkLengths(y, probs);
  const step = 1 / nBins; // the same edges as numpy's linspace(0, 1, nBins + 1)
  const edges = Array.from({ length: nBins + 1 }, (_, i) => i * step);
  const sums = new Float64Array(nBins);
  const trues = new Float64Array(nBins);
  const counts = new Float64Array(nBins);
  for (let i = 0; i < y.length; i++) {
    const p = probs[i];
    if (!(p >= 0 && p <= 1)) throw new RangeError(`probability ${i} is ${p}; expected a value in [0, 1]`);
    // numpy searchsorted(edges[1:-1], p, side='left'): the number of inner edges strictly below p.
    let b = 0;
    while (b < nBins - 1 && edges[b + 1] < p) b++;
    sums[b] += p;
    trues[b] += y[i] ? 1 : 0;
    counts[b]++;
  }
  const bins: ReliabilityBin[] = [];
  for (let b = 0; b < nBins; b++) {
    if (counts[b] === 0) continue;
    bins.push({
      lower: edges[b],
      upper: edges[b + 1],
      count: counts[b],
      meanPredicted: sums[b] / counts[b],
      fractionPositive: trues[b] / counts[b],
    });
  }
  return bins;
}

/**
 * Expected calibration error: sum over bins of (bin count / n) × |fraction positive − mean predicted|, with the
 * bins of `reliabilityCurve`. Null for no samples.
 */
export function expectedCalibrationError(y: Labels, probs: Scores, nBins = 10): number | null {
  if (y.length === 0) return null;
  const bins = reliabilityCurve(y, probs, nBins);
  let ece = 0;
  for (const b of bins) ece += (b.count / y.length) * Math.abs(b.fractionPositive - b.meanPredicted);
  return ece;
}

/** Mean of the non-null values; null when all are null. */
export function meanDefined(values: (number | null)[]): number | null {
  let s = 0;
  let n = 0;
  for (const v of values) {
    if (v !== null) {
      s += v;
      n++;
    }
  }
  return n > 0 ? s / n : null;
}

/**
 * Mean per-class F1 of n×numClasses probabilities thresholded per class (the VietAI contest metric with thresholds
 * of 0.5). Classes whose F1 is undefined (no positives and nothing predicted) are left out of the mean; sklearn's
 * `f1_score(average='macro')` would count them as 0.
 */
export function meanF1(yTrue: Labels, probs: Scores, numClasses: number, thresholds: number[] | number): number | null {
  const f1s: (number | null)[] = [];
  for (let k = 0; k < numClasses; k++) {
    const t = typeof thresholds === 'number' ? thresholds : thresholds[k];
    f1s.push(f1Of(countsAtThreshold(column(yTrue, numClasses, k), column(probs, numClasses, k), t)));
  }
  return meanDefined(f1s);
}
