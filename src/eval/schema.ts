/**
 * The stable JSON schema of `fundus evaluate --json` (schemaVersion 1). Fields may be added in later versions;
 * none is renamed or removed without bumping `schemaVersion`. docs/evaluation.md describes it with an example.
 *
 * Conventions: every metric is a `Metric` (value plus 95% bootstrap interval). A value is `null`, never NaN, when the
 * metric is undefined on the data (e.g. AUC of a class without positives); `note` then says why. Probabilities are
 * predicted positive when >= the threshold.
 */

/** A metric with its bootstrap confidence interval. */
export interface Metric {
  /** The value on the whole evaluated set; null when undefined there (see `note`). */
  value: number | null;
  /** [lower, upper] percentile bootstrap interval at `bootstrap.level`; null when `value` is null or no resampling. */
  ci: [number, number] | null;
  /** Why the value is null (or anything else worth knowing about it). */
  note?: string;
}

/** The four cells of one class's 2×2 confusion matrix at its threshold. */
export interface ConfusionCounts {
  tp: number;
  fp: number;
  tn: number;
  fn: number;
}

/** Metrics of one scored class (one-vs-rest on the model's probability of that class). */
export interface ClassReport {
  /** Images labelled with this class / without it. */
  positives: number;
  negatives: number;
  /** The decision threshold used for f1, sensitivity, specificity, precision and `confusion` (from fundus.json). */
  threshold: number;
  /** ROC AUC (sklearn's roc_auc_score: ties count one half). */
  auc: Metric;
  /** Average precision, i.e. area under the PR curve (sklearn's average_precision_score, step-wise). */
  ap: Metric;
  /** At `threshold`. */
  f1: Metric;
  sensitivity: Metric;
  specificity: Metric;
  precision: Metric;
  /** F1 at threshold 0.5 (the contest's rule). */
  f1At05: Metric;
  confusion: ConfusionCounts;
  /** Expected calibration error of this class's probabilities (10 equal-width bins). */
  ece: number | null;
}

/** One bin of a reliability diagram: (lower, upper], the first bin includes 0. Empty bins are omitted. */
export interface CalibrationBin {
  lower: number;
  upper: number;
  count: number;
  meanPredicted: number;
  fractionPositive: number;
}

/** Averages over the scored classes. */
export interface OverallReport {
  /** Mean per-class F1 at the model's thresholds (tuned ones after `fundus thresholds`). */
  meanF1: Metric;
  /** Mean per-class F1 at threshold 0.5: the VietAI contest metric. */
  meanF1At05: Metric;
  /** Mean of the per-class ROC AUCs that are defined. */
  macroAuc: Metric;
  /** Mean of the per-class average precisions that are defined. */
  macroAp: Metric;
  /** Softmax models only: fraction of images whose top class is their label. */
  accuracy?: Metric;
  /** Expected calibration error (see `calibration`). */
  ece: number | null;
}

export interface CalibrationReport {
  /**
   * `per-class-pooled` (sigmoid models): every (image, scored class) probability against that class's label;
   * `top-label` (softmax models): the top probability against whether the top class is right.
   */
  kind: 'per-class-pooled' | 'top-label';
  bins: CalibrationBin[];
  ece: number | null;
}

/** Multi-label models: one 2×2 matrix per class; softmax models: the full matrix of top-class predictions. */
export type ConfusionReport =
  | { kind: 'per-class'; classes: string[]; matrices: Record<string, ConfusionCounts> }
  | {
      kind: 'full';
      /** Row = true class, column = predicted (top) class, in this order (the model's classes). */
      classes: string[];
      matrix: number[][];
      /** Images left out because they do not have exactly one of the model's classes. */
      excludedImages: number;
    };

/** What `evaluatePredictions` computes from labels and probabilities. */
export interface EvaluationMetrics {
  /** Scored classes, in model output order. */
  scoredClasses: string[];
  imageCount: number;
  overall: OverallReport;
  /** Keyed by class name, in `scoredClasses` order. */
  perClass: Record<string, ClassReport>;
  confusion: ConfusionReport;
  calibration: CalibrationReport;
  bootstrap: {
    resamples: number;
    seed: number;
    level: number;
    /**
     * Per-class intervals resample the class's positives and negatives separately (`class-label`); the averages
     * resample images within groups with the same labels over the scored classes (`label-combination`; groups of
     * fewer than 5 images are pooled, so that single images still vary).
     */
    stratifiedBy: { perClass: 'class-label'; overall: 'label-combination' };
  };
}

/** The whole `fundus evaluate --json` document. */
export interface EvaluationReport extends EvaluationMetrics {
  schemaVersion: 1;
  model: {
    dir: string;
    architecture: string;
    task: string;
    activation: 'sigmoid' | 'softmax';
    classes: string[];
    thresholds: number[];
    thresholdPolicy: string;
  };
  data: {
    csv: string;
    images: string;
    /** `contest`: multi-hot CSV; `pairs`: `filename,label` (only its labels are scored). */
    format: 'contest' | 'pairs';
    split?: string;
    part?: string;
    /** A source of a datasets file: its name, the file, and whether it is external (never trained on). */
    source?: string;
    datasets?: string;
    role?: 'train' | 'external';
  };
  /** Notes on what was left out or assumed. */
  notes: string[];
  /** Photographs that could not be read and were left out of every metric (absent when none). */
  skipped?: { path: string; reason: string }[];
  createdAt: string;
  fundusVersion: string;
}
