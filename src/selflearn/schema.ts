import type { EvaluationMetrics } from '../eval/schema.js';
import type { PairedDelta } from './compare.js';

// The self-learning report (`report.json`, `format: "fundus-selflearn-report"`) and the records it is made of: what
// runSelfLearning returns and renderMarkdown renders, and what the comparisons and the verdict are computed from.

export type RetrainMode = 'scratch' | 'finetune';

/** The training budget an arm was given and what it actually used. */
export interface ArmBudget {
  epochsPlanned: number;
  /** Epochs run; a last epoch cut by the time budget counts by its fraction. */
  epochsRun: number;
  bestEpoch: number | null;
  maxMinutes: number | null;
  /** Seconds in training steps. */
  trainSeconds: number;
  /** Wall seconds of the whole arm: data loading, training, validation, threshold tuning and the test evaluation. */
  wallSeconds: number;
  /** Peak learning rate. */
  lr: number;
  stoppedBy: 'epochs' | 'time' | 'early-stopping';
}

/** One evaluated model of the experiment (an arm). */
export interface VariantResult {
  name: string;
  method: string | null;
  round: number;
  mode: RetrainMode | 'original' | 'control';
  /** For a control: the mode it is the control of. */
  controlFor?: RetrainMode;
  /** The model whose predictions or embeddings made the pseudo-labels (null: none). */
  teacher: string | null;
  modelDir: string;
  pseudoLabelled: number;
  /** Accepted pseudo-labels per class (positives). */
  positivesPerClass: Record<string, number> | null;
  budget: ArmBudget | null;
  /** Macro AUC on the validation part, as recorded by training (what round choices are made on). */
  validationMacroAuc: number | null;
  metrics: EvaluationMetrics;
}

export interface RoundInfo {
  method: string;
  round: number;
  teacher: string;
  unlabelledScored: number;
  accepted: number;
  /** Accepted pseudo-labels per class (positives). */
  positivesPerClass: Record<string, number>;
  /** Mean over accepted images of the per-class decision confidence. */
  meanConfidence: number | null;
  info: Record<string, unknown>;
}

/** A paired comparison of two arms on the test part: arm − reference. */
export interface Comparison {
  arm: string;
  reference: string;
  /** What the comparison isolates. */
  question: string;
  macroAuc: PairedDelta;
  meanF1: PairedDelta;
  /** By the macro AUC interval: above zero, below zero, or containing it. */
  outcome: 'higher' | 'lower' | 'no clear difference';
}

export interface SkippedArm {
  name: string;
  reason: string;
}

export interface SelfLearnReport {
  format: 'fundus-selflearn-report';
  formatVersion: 2;
  createdAt: string;
  model: string;
  classes: string[];
  threshold: number;
  rounds: number;
  roundsChoice: { method: string; by: string; candidates: Record<string, number | null> } | null;
  /** The original's training as its fundus.json records it (null when it does not). */
  originalTraining: { epochs: number; trainSeconds: number } | null;
  data: { train: number; validation: number; test: number; unlabelled: number };
  leakageGuard: { unlabelledTotal: number; excluded: number; kept: number; excludedImages: { path: string; duplicateOf: string[] }[] };
  pseudoLabelling: RoundInfo[];
  variants: VariantResult[];
  skipped: SkippedArm[];
  comparisons: Comparison[];
  verdict: string[];
  /** Wall seconds of the whole run so far. */
  wallSeconds: number;
  notes: string[];
  /**
   * Set when the run's deadline stopped a pass over photographs for pseudo-labels: which, how far it got, and that
   * nothing was pseudo-labelled or trained after it (the arms left are under `skipped`).
   */
  stoppedEarly?: string;
}
