import {
  argmaxRows,
  argsortDesc,
  averagePrecision,
  column,
  countsAtThreshold,
  expectedCalibrationError,
  f1Of,
  meanDefined,
  precisionOf,
  reliabilityCurve,
  rocAuc,
  sensitivityOf,
  specificityOf,
  undefinedReason,
} from '../metrics/metrics.js';
import type { BinaryCounts } from '../metrics/metrics.js';
import { MIN_RELIABLE_CLASS_COUNT } from '../metrics/metrics.js';
import { DEFAULT_BOOTSTRAP, bootstrapIntervals, labelCombinationStrata } from './bootstrap.js';
import type { BootstrapOptions, Interval } from './bootstrap.js';
import type { CalibrationReport, ClassReport, ConfusionReport, EvaluationMetrics, Metric } from './schema.js';

/** Labels and predictions of an evaluated set, in the model's class order. */
export interface EvaluationInput {
  /** The model's output classes. */
  classes: string[];
  activation: 'sigmoid' | 'softmax';
  /** n×classes.length probabilities, row-major (as `predictFiles` returns them). */
  probs: Float32Array | Float64Array;
  /** n×classes.length multi-hot ground truth in the same layout; entries of unscored classes are ignored. */
  labels: Uint8Array;
  /** Indices into `classes` of the classes the data can score (all of them for a contest CSV). */
  scored?: number[];
  /** n×classes.length, 1 where the entry was graded (absent: all were): each class is scored on its graded images. */
  graded?: Uint8Array;
  /** Per-class thresholds in `classes` order. */
  thresholds: number[];
  bootstrap?: BootstrapOptions;
  calibrationBins?: number;
}

// Statistics drawn per class in each bootstrap resample, in this order.
const CLASS_STATS = ['auc', 'ap', 'f1', 'sensitivity', 'specificity', 'precision', 'f1At05'] as const;
type ClassStat = (typeof CLASS_STATS)[number];
const OVERALL_STATS = ['meanF1', 'meanF1At05', 'macroAuc', 'macroAp', 'accuracy'] as const;

const nanIfNull = (v: number | null): number => (v === null ? NaN : v);

function meanOfDefined(values: ArrayLike<number>): number {
  let s = 0;
  let n = 0;
  for (let i = 0; i < values.length; i++) {
    if (!Number.isNaN(values[i])) {
      s += values[i];
      n++;
    }
  }
  return n > 0 ? s / n : NaN;
}

function classValues(
  y: Float64Array,
  p: Float64Array,
  order: Uint32Array,
  threshold: number,
  w?: Float64Array,
): Record<ClassStat, number | null> & { counts: BinaryCounts } {
  const counts = countsAtThreshold(y, p, threshold, w);
  return {
    auc: rocAuc(y, p, w, order),
    ap: averagePrecision(y, p, w, order),
    f1: f1Of(counts),
    sensitivity: sensitivityOf(counts),
    specificity: specificityOf(counts),
    precision: precisionOf(counts),
    f1At05: f1Of(countsAtThreshold(y, p, 0.5, w)),
    counts,
  };
}

function metric(value: number | null, ci: Interval, note?: string): Metric {
  return { value, ci: value === null ? null : ci, ...(note ? { note } : {}) };
}

/** The single true class of each image among `classes`, or -1 when it has none or several. */
function singleLabel(labels: Uint8Array, C: number): Int32Array {
  const n = labels.length / C;
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let found = -1;
    for (let k = 0; k < C; k++) {
      if (labels[i * C + k]) found = found === -1 ? k : -2;
    }
    out[i] = found < 0 ? -1 : found;
  }
  return out;
}

/**
 * Computes every metric of the `--json` report from labels and probabilities: per scored class AUC, AP, F1,
 * sensitivity, specificity, precision (at the model's thresholds) and F1 at 0.5, the averages, confusion matrices and
 * calibration, each metric with a stratified percentile bootstrap interval.
 */
export function evaluatePredictions(input: EvaluationInput): EvaluationMetrics {
  const C = input.classes.length;
  const { probs, labels, thresholds } = input;
  if (probs.length !== labels.length || probs.length % C !== 0) {
    throw new RangeError(`probabilities (${probs.length}) and labels (${labels.length}) must both be n×${C}`);
  }
  if (thresholds.length !== C) throw new RangeError(`expected ${C} thresholds, got ${thresholds.length}`);
  const n = probs.length / C;
  const scored = input.scored ?? input.classes.map((_, k) => k);
  const boot = { ...DEFAULT_BOOTSTRAP, ...input.bootstrap };
  const nBins = input.calibrationBins ?? 10;
  const softmax = input.activation === 'softmax';

  // Each class on the images graded for it; `rows[j]` lists them where some are not.
  const graded = input.graded;
  const rows = scored.map((k) => {
    if (!graded) return undefined;
    const keep: number[] = [];
    for (let i = 0; i < n; i++) if (graded[i * C + k]) keep.push(i);
    return keep.length === n ? undefined : Uint32Array.from(keep);
  });
  const pick = (m: ArrayLike<number>, k: number, j: number): Float64Array => {
    const r = rows[j];
    return r ? Float64Array.from(r, (i) => m[i * C + k]) : column(m, C, k);
  };
  const weightsOf = (w: Float64Array | undefined, j: number): Float64Array | undefined => {
    const r = rows[j];
    return w && r ? Float64Array.from(r, (i) => w[i]) : w;
  };
  const ys = scored.map((k, j) => pick(labels, k, j));
  const ps = scored.map((k, j) => pick(probs, k, j));
  const orders = ps.map((p) => argsortDesc(p));
  const full = scored.map((k, j) => classValues(ys[j], ps[j], orders[j], thresholds[k]));

  // Softmax: top-class predictions against the single label; images without exactly one label are left out.
  const truth = softmax ? singleLabel(labels, C) : undefined;
  const top = softmax ? argmaxRows(probs, C) : undefined;
  const accuracyOf = (w?: Float64Array): number => {
    if (!truth || !top) return NaN;
    let right = 0;
    let total = 0;
    for (let i = 0; i < n; i++) {
      if (truth[i] < 0) continue;
      const wi = w ? w[i] : 1;
      total += wi;
      if (top[i] === truth[i]) right += wi;
    }
    return total > 0 ? right / total : NaN;
  };

  // Bootstrap. Per-class intervals resample that class's positives and negatives separately (so the class keeps its
  // prevalence and its metrics stay defined); the averages resample whole images within label combinations.
  const S = CLASS_STATS.length;
  const classIntervals = scored.map((k, j) =>
    bootstrapIntervals(
      ys[j],
      S,
      (w, out) => {
        const v = classValues(ys[j], ps[j], orders[j], thresholds[k], w);
        CLASS_STATS.forEach((name, s) => (out[s] = nanIfNull(v[name])));
      },
      { ...boot, seed: boot.seed + 1 + j },
    ),
  );
  const scoredLabels = new Uint8Array(n * scored.length);
  for (let i = 0; i < n; i++) scored.forEach((k, j) => (scoredLabels[i * scored.length + j] = labels[i * C + k]));
  const perClassStat = new Float64Array(scored.length);
  // A resample's average covers the same classes as the average on the data; a resample where one of them is
  // undefined (possible only where rare label combinations were pooled) is left out rather than averaged differently.
  const meanOf = (name: ClassStat, values: Record<ClassStat, number | null>[]): number => {
    let count = 0;
    for (let j = 0; j < scored.length; j++) {
      const onData = full[j][name];
      const v = values[j][name];
      if (onData === null) perClassStat[j] = NaN;
      else if (v === null) return NaN;
      else {
        perClassStat[j] = v;
        count++;
      }
    }
    return count > 0 ? meanOfDefined(perClassStat) : NaN;
  };
  const overallIntervals = bootstrapIntervals(
    labelCombinationStrata(scoredLabels, scored.length),
    OVERALL_STATS.length,
    (w, out) => {
      const values = scored.map((k, j) => classValues(ys[j], ps[j], orders[j], thresholds[k], weightsOf(w, j)));
      out[0] = meanOf('f1', values);
      out[1] = meanOf('f1At05', values);
      out[2] = meanOf('auc', values);
      out[3] = meanOf('ap', values);
      out[4] = accuracyOf(w);
    },
    boot,
  );

  const perClass: Record<string, ClassReport> = {};
  scored.forEach((k, j) => {
    const v = full[j];
    const ci = (name: ClassStat): Interval => classIntervals[j][CLASS_STATS.indexOf(name)];
    const m = (name: ClassStat): Metric => {
      const reasonKey = name === 'f1At05' ? 'f1' : name;
      const reason = v[name] === null ? undefinedReason(reasonKey, name === 'f1At05' ? countsAtThreshold(ys[j], ps[j], 0.5) : v.counts) : undefined;
      return metric(v[name], ci(name), reason);
    };
    perClass[input.classes[k]] = {
      positives: v.counts.tp + v.counts.fn,
      negatives: v.counts.tn + v.counts.fp,
      threshold: thresholds[k],
      auc: m('auc'),
      ap: m('ap'),
      f1: m('f1'),
      sensitivity: m('sensitivity'),
      specificity: m('specificity'),
      precision: m('precision'),
      f1At05: m('f1At05'),
      confusion: v.counts,
      ece: expectedCalibrationError(ys[j], ps[j], nBins),
    };
  });

  const undefinedClasses = (name: ClassStat): string | undefined => {
    const missing = scored.filter((_, j) => full[j][name] === null).map((k) => input.classes[k]);
    return missing.length > 0 ? `leaves out ${missing.join(', ')} (undefined there)` : undefined;
  };
  const overallValue = (name: ClassStat): number | null => meanDefined(full.map((v) => v[name]));

  let calibration: CalibrationReport;
  let confusion: ConfusionReport;
  let accuracy: Metric | undefined;
  if (softmax && truth && top) {
    const keep = [...truth.keys()].filter((i) => truth[i] >= 0);
    const conf = Float64Array.from(keep, (i) => probs[i * C + top[i]]);
    const right = Float64Array.from(keep, (i) => (top[i] === truth[i] ? 1 : 0));
    calibration = { kind: 'top-label', bins: reliabilityCurve(right, conf, nBins), ece: expectedCalibrationError(right, conf, nBins) };
    const matrix = Array.from({ length: C }, () => new Array<number>(C).fill(0));
    for (const i of keep) matrix[truth[i]][top[i]]++;
    confusion = { kind: 'full', classes: [...input.classes], matrix, excludedImages: n - keep.length };
    const acc = accuracyOf();
    accuracy = metric(Number.isNaN(acc) ? null : acc, overallIntervals[4], keep.length === 0 ? 'undefined: no image has exactly one of the classes' : undefined);
  } else {
    const y = Float64Array.from(ys.flatMap((v) => [...v]));
    const p = Float64Array.from(ps.flatMap((v) => [...v]));
    calibration = { kind: 'per-class-pooled', bins: reliabilityCurve(y, p, nBins), ece: expectedCalibrationError(y, p, nBins) };
    const matrices: Record<string, BinaryCounts> = {};
    scored.forEach((k, j) => (matrices[input.classes[k]] = full[j].counts));
    confusion = { kind: 'per-class', classes: scored.map((k) => input.classes[k]), matrices };
  }

  return {
    scoredClasses: scored.map((k) => input.classes[k]),
    imageCount: n,
    overall: {
      meanF1: metric(overallValue('f1'), overallIntervals[0], undefinedClasses('f1')),
      meanF1At05: metric(overallValue('f1At05'), overallIntervals[1], undefinedClasses('f1At05')),
      macroAuc: metric(overallValue('auc'), overallIntervals[2], undefinedClasses('auc')),
      macroAp: metric(overallValue('ap'), overallIntervals[3], undefinedClasses('ap')),
      ...(accuracy ? { accuracy } : {}),
      ece: calibration.ece,
    },
    perClass,
    confusion,
    calibration,
    bootstrap: { resamples: boot.resamples, seed: boot.seed, level: boot.level, stratifiedBy: { perClass: 'class-label', overall: 'label-combination' } },
  };
}

/**
 * One warning per scored class with fewer than MIN_RELIABLE_CLASS_COUNT positives or negatives in `metrics`: its
 * numbers are reported, but a reader should look at their intervals, not their values. `where` prefixes each line.
 */
export function smallClassWarnings(metrics: Pick<EvaluationMetrics, 'perClass'>, where = ''): string[] {
  const warnings: string[] = [];
  for (const [name, c] of Object.entries(metrics.perClass)) {
    const few = Math.min(c.positives, c.negatives);
    if (few >= MIN_RELIABLE_CLASS_COUNT) continue;
    const side = c.positives <= c.negatives ? 'positive' : 'negative';
    warnings.push(
      `${where}${name} has only ${few} ${side} photograph${few === 1 ? '' : 's'} (fewer than ${MIN_RELIABLE_CLASS_COUNT}): its AUC, F1 and the rest are unreliable; read their intervals`,
    );
  }
  return warnings;
}
