import { isGraded } from '../data/labels.js';
import type { LabelledImage } from '../data/labels.js';
import { confoundingBySource, confoundingWarnings } from '../eval/confounding.js';
import type { ClassBySource } from '../eval/confounding.js';
import { rocAuc } from '../metrics/metrics.js';
import { PHOTO_GEOMETRY_STATISTICS } from './features.js';
import { crossValidatedAuc } from './logistic.js';
import type { FeatureMatrix, LogisticOptions } from './logistic.js';

/**
 * The audit's report: plain data (JSON as is), assembled by pure functions from the images, their feature matrices
 * and, when a model is audited, its predictions. See docs/audit.md for how to read it.
 */

/** One source as audited. */
export interface AuditSource {
  name: string;
  role: 'train' | 'external';
  /** The datasets file it comes from (absolute). */
  datasets: string;
  /** Images audited (after --limit-per-source). */
  images: number;
  /** Images in the chosen part (an external source: all of its images). */
  available: number;
  /** Distinct groups (patients) among the audited images; an image without a group counts as its own. */
  groups: number;
  /** Whether the source names a group (patient) for its images. */
  grouped: boolean;
}

/** How well a cross-validated linear read-out of some features predicts the source. */
export interface SourcePredictability {
  /** What was read out, e.g. "25 image statistics" or "1280-d embedding". */
  features: string;
  dim: number;
  folds: number;
  /** Folds kept each group (patient) whole. */
  groupedFolds: boolean;
  /** The classifier, in words (incl. the L2 strength). */
  classifier: string;
  /** Each source against the others: ROC AUC of the held-out scores. */
  perSource: { source: string; auc: number | null }[];
  /** Mean of the per-source AUCs. */
  macroAuc: number | null;
  /** Whether every fold's fit converged (within its iteration limit). */
  converged: boolean;
}

/** One image statistic: its mean per source and how well it alone singles out one source. */
export interface StatisticBySource {
  statistic: string;
  /** Mean per source, in the report's source order. */
  means: number[];
  /**
   * The best one-vs-rest ROC AUC of the statistic alone over the sources, as max(AUC, 1 − AUC) (0.5: no source
   * differs; 1: one source is perfectly set apart by a threshold on this statistic), and that source.
   */
  separation: number;
  separates: string;
}

/** One class's ROC AUC on one set of images (graded for it). */
export interface ClassAuc {
  class: string;
  graded: number;
  positives: number;
  auc: number | null;
  /** Why there is no AUC: 'not graded', 'no positives' or 'no negatives'. */
  skipped?: 'not graded' | 'no positives' | 'no negatives';
}

export interface ModelAudit {
  dir: string;
  architecture: string;
  /** The embedding layer (the penultimate one) and its dimension. */
  layer: string;
  dim: number;
  embedding: SourcePredictability;
  /** Each class's AUC within each source (report source order), then on all sources pooled. */
  perSource: { source: string; classes: ClassAuc[] }[];
  pooled: ClassAuc[];
}

export interface AuditReport {
  format: 'fundus-audit';
  formatVersion: 1;
  datasets: string[];
  /** The part of the training sources (external sources: all of their images). */
  part: string;
  limitPerSource: number | null;
  seed: number;
  sources: AuditSource[];
  statistics: {
    /** The preprocessing the statistics were computed on, in words. */
    preprocess: string;
    names: string[];
    /** From every statistic. */
    predictability: SourcePredictability;
    /** From the crop's pixels alone: without the photo's size and framing (PHOTO_GEOMETRY_STATISTICS). */
    pixelPredictability: SourcePredictability;
    bySource: StatisticBySource[];
  };
  /** Each class's share per source and the AUC of the source alone as its predictor (src/eval/confounding.ts). */
  confounding: ClassBySource[];
  warnings: string[];
  /** Present when a model was audited. */
  model: ModelAudit | null;
  /** Notes on what was skipped or reduced. */
  notes: string[];
  verdict: string;
}

/** Index of each image's source in `sources`. */
export function sourceIndex(images: LabelledImage[], sources: string[]): Int32Array {
  return Int32Array.from(images, (im) => {
    const s = sources.indexOf(im.source ?? '');
    if (s < 0) throw new RangeError(`image ${im.filename} has no known source`);
    return s;
  });
}

/**
 * The cross-validated source predictability of a feature matrix (rows in `images` order): one-vs-rest logistic
 * regression on the given folds (see logistic.ts).
 */
export function sourcePredictability(
  X: FeatureMatrix,
  y: Int32Array,
  sources: string[],
  fold: { fold: Int32Array; folds: number },
  what: { features: string; groupedFolds: boolean },
  opts: LogisticOptions = {},
): SourcePredictability {
  const cv = crossValidatedAuc(X, y, sources.length, fold.fold, opts);
  const l2 = opts.l2 !== undefined ? `λ = ${opts.l2}` : `λ = 1/n (n training rows: ${cv.l2.map((v) => Math.round(1 / v)).join(', ')}), i.e. sklearn C = 1`;
  return {
    features: what.features,
    dim: X.cols,
    folds: fold.folds,
    groupedFolds: what.groupedFolds,
    classifier: `one-vs-rest logistic regression on standardised features, L2 ${l2}`,
    perSource: sources.map((source, s) => ({ source, auc: cv.auc[s] })),
    macroAuc: cv.macroAuc,
    converged: cv.converged,
  };
}

/** Each statistic's mean per source and its best single-source separation (see StatisticBySource). */
export function statisticsBySource(X: FeatureMatrix, names: readonly string[], y: Int32Array, sources: string[]): StatisticBySource[] {
  const n = X.rows;
  const d = X.cols;
  return names.map((statistic, j) => {
    const col = Float64Array.from({ length: n }, (_, i) => X.data[i * d + j]);
    const sums = new Float64Array(sources.length);
    const counts = new Float64Array(sources.length);
    for (let i = 0; i < n; i++) {
      sums[y[i]] += col[i];
      counts[y[i]]++;
    }
    let separation = 0.5;
    let separates = '';
    sources.forEach((source, s) => {
      const auc = rocAuc(Float64Array.from(y, (v) => (v === s ? 1 : 0)), col);
      if (auc !== null && Math.max(auc, 1 - auc) > separation) {
        separation = Math.max(auc, 1 - auc);
        separates = source;
      }
    });
    return { statistic, means: Array.from(sums, (v, s) => (counts[s] > 0 ? v / counts[s] : 0)), separation, separates };
  });
}

/** Each class's AUC on the images graded for it; `probs` is n × modelClasses, row-major, in `images` order. */
export function classAucs(
  images: LabelledImage[],
  rows: number[],
  probs: ArrayLike<number>,
  modelClasses: readonly string[],
  datasetClasses: readonly string[],
): ClassAuc[] {
  const C = modelClasses.length;
  return modelClasses.map((c, m) => {
    const k = datasetClasses.indexOf(c);
    const graded = k < 0 ? [] : rows.filter((i) => images[i].labels && isGraded(images[i], k));
    const positives = graded.filter((i) => images[i].labels![k] === 1).length;
    const base = { class: c, graded: graded.length, positives };
    if (graded.length === 0) return { ...base, auc: null, skipped: 'not graded' as const };
    if (positives === 0) return { ...base, auc: null, skipped: 'no positives' as const };
    if (positives === graded.length) return { ...base, auc: null, skipped: 'no negatives' as const };
    const auc = rocAuc(
      Float64Array.from(graded, (i) => images[i].labels![k]),
      Float64Array.from(graded, (i) => probs[i * C + m]),
    );
    return { ...base, auc };
  });
}

/** Each class's share per source, dropping classes no audited source grades. */
export function classShares(images: LabelledImage[], datasetClasses: readonly string[]): { confounding: ClassBySource[]; warnings: string[] } {
  const confounding = confoundingBySource(images, datasetClasses, datasetClasses).filter((r) => r.perSource.length > 0);
  return { confounding, warnings: confoundingWarnings(confounding) };
}

const f2 = (v: number | null) => (v === null ? 'undefined' : v.toFixed(2));

function strength(auc: number): string {
  return auc >= 0.9 ? 'predictable' : auc >= 0.75 ? 'largely predictable' : auc >= 0.6 ? 'partly predictable' : 'hardly predictable';
}

/** The one-paragraph verdict of a report (everything but `verdict` filled in). */
export function auditVerdict(r: Omit<AuditReport, 'verdict'>): string {
  const out: string[] = [];
  const stats = r.statistics.predictability.macroAuc;
  const pixels = r.statistics.pixelPredictability.macroAuc;
  const geometry = new Set<string>(PHOTO_GEOMETRY_STATISTICS);
  const topCues = (photo: boolean, count: number) =>
    [...r.statistics.bySource]
      .filter((c) => geometry.has(c.statistic) === photo && c.separation >= 0.75)
      .sort((a, b) => b.separation - a.separation)
      .slice(0, count)
      .map((c) => `${c.statistic} (${c.separates}, ${c.separation.toFixed(2)})`);
  const photoCues = topCues(true, 2);
  const pixelCues = topCues(false, 3);
  const cues = [...(photoCues.length ? [photoCues.join(', ')] : []), ...(pixelCues.length ? [`in the crop: ${pixelCues.join(', ')}`] : [])];
  const confounded = r.confounding.filter((c) => c.confounded);
  if (stats !== null) {
    out.push(
      `The source is ${strength(stats)} from image statistics alone (macro AUC ${f2(stats)}` +
        `${pixels !== null ? `; ${f2(pixels)} from the crop's pixels without the photo's size` : ''}` +
        `${cues.length ? `; strongest cues: ${cues.join('; ')}` : ''})` +
        (stats >= 0.75 ? ': pooled metrics can reward recognising the camera.' : ': the sources look alike at this level.'),
    );
  }
  if (confounded.length > 0) {
    out.push(
      `${confounded.map((c) => `'${c.class}'`).join(', ')} ${confounded.length === 1 ? 'is' : 'are'} confounded with the source ` +
        `(the source alone predicts ${confounded.length === 1 ? 'it' : 'them'} with AUC ${confounded.map((c) => f2(c.sourceAuc)).join(', ')})` +
        (stats !== null && stats >= 0.75
          ? ', so a model can score on pooled data by recognising the camera: judge it within sources and on external data.'
          : '.'),
    );
  } else if (r.confounding.length > 0) {
    out.push('No class is confounded with the source (no source alone predicts a class with AUC ≥ 0.70).');
  }
  if (r.model) {
    const e = r.model.embedding.macroAuc;
    if (e !== null) {
      // The network sees the crop only, so its yardstick is the statistics of the crop's pixels.
      const ref = pixels;
      const cmp =
        ref === null
          ? ''
          : `, ${e > ref + 0.02 ? 'better than' : e < ref - 0.02 ? 'worse than' : 'about as well as'} the crop's pixel statistics (${f2(ref)})`;
      out.push(`The model's embedding (${r.model.layer}, ${r.model.dim}-d) predicts the source with macro AUC ${f2(e)}${cmp}: ` +
        (e >= 0.9 ? 'it keeps the camera.' : e >= 0.75 ? 'it keeps much of the camera.' : e >= 0.6 ? 'it keeps some of the camera.' : 'it has largely discarded the camera.'));
    }
    const inflated: string[] = [];
    for (const p of r.model.pooled) {
      if (p.auc === null) continue;
      const within = r.model.perSource.map((s) => s.classes.find((c) => c.class === p.class)?.auc).filter((a): a is number => a !== null && a !== undefined);
      if (within.length === 0) continue;
      const best = Math.max(...within);
      if (p.auc > best + 0.03) inflated.push(`'${p.class}' pooled ${f2(p.auc)} vs ${within.length === 1 ? '' : 'at most '}${f2(best)} within a source`);
    }
    if (inflated.length > 0) out.push(`Pooled AUCs exceed every within-source AUC for ${inflated.join('; ')}: part of the pooled score is the source.`);
  }
  if (r.notes.length > 0 && out.length === 0) out.push(r.notes[0]);
  return out.join(' ');
}
