import { basename, join } from 'node:path';
import type { Dataset, LabelledImage } from '../data/labels.js';
import type { SplitParts } from '../data/split.js';
import type { BootstrapOptions } from '../eval/bootstrap.js';
import type { EvaluationMetrics } from '../eval/schema.js';
import { saveModel, type FundusModel } from '../models/io.js';
import { InputError } from '../util/errors.js';
import { pairedDifference, type PairedDelta } from './compare.js';
import { embedFiles, type Embeddings } from './embed.js';
import { evaluateOnPart, labelledPart, predictProbabilities, type PartEvaluation } from './evaluate.js';
import { excludeTestDuplicates, type DuplicateFinder } from './leakage.js';
import { methodName, selectConfident, spreadingScores, type PseudoLabelMethod, type PseudoScores } from './pseudolabel.js';

export type RetrainMode = 'scratch' | 'finetune';

/** What the training engine is asked to do for one retrained model. */
export interface RetrainRequest {
  mode: RetrainMode;
  /** `finetune`: the model to start from; `scratch`: the model whose architecture, task and preprocessing to reuse. */
  base: FundusModel;
  /** Class order of every `labels` vector below (the base model's classes). */
  classes: string[];
  /** The labelled training part of the split. */
  train: LabelledImage[];
  /** The validation part (early stopping, threshold tuning), never the test part. */
  validation: LabelledImage[];
  /** Pseudo-labelled unlabelled images, to train on alongside `train`. */
  pseudo: LabelledImage[];
  /** Where to save the model directory. */
  outDir: string;
  seed: number;
}

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

/** A retrained model, loaded, and the budget it used. */
export interface Retrained {
  model: FundusModel;
  budget: Omit<ArmBudget, 'wallSeconds'>;
}

/** Trains one model as asked (see retrain.ts for the one built on src/train). */
export type Retrainer = (req: RetrainRequest) => Promise<Retrained>;

export interface SelfLearnOptions {
  model: FundusModel;
  /** The labelled data (contest CSV); labels in `dataset.classes` order. */
  dataset: Dataset;
  split: SplitParts;
  /** Paths of the unlabelled images. */
  unlabelled: string[];
  /** Pseudo-labelling methods; each gets a round-1 arm per retraining mode (scratch only for `scratchMethods`). */
  methods: PseudoLabelMethod[];
  /** Confidence a pseudo-label must reach (see selectConfident). */
  threshold: number;
  modes: RetrainMode[];
  /** Names (methodName) of the methods that also get a from-scratch arm (default: all of them). */
  scratchMethods?: string[];
  /**
   * Self-training rounds: round r ≥ 2 pseudo-labels with the model of round r − 1 (the teacher) and trains a new
   * student from the original with the same budget as every other arm, so that rounds differ only in their labels.
   */
  rounds: number;
  /**
   * Which methods go past round 1: `best-spreading` (default) the label-spreading kernel whose round-1 model has the
   * higher *validation* macro AUC (never chosen on test), `all` every method.
   */
  roundsFor?: 'best-spreading' | 'all';
  /** Embedding layer (default: penultimate). */
  layer?: string;
  bootstrap?: { resamples?: number; seed?: number };
  outDir: string;
  seed?: number;
  retrain: Retrainer;
  findDuplicates: DuplicateFinder;
  log?: (message: string) => void;
  /** Use the preprocessing cache (default true). */
  cache?: boolean;
  /**
   * Controls (default true): the same training with no pseudo-labels, per mode that has a pseudo-labelled arm
   * (`control-finetune`, `control-scratch`). A fine-tuned arm has had more training than the original, and a scratch arm
   * a different (usually far smaller) budget: only its control separates the pseudo-labels from the training budget.
   */
  control?: boolean;
  /**
   * Wall-clock deadline of the whole run (Date.now() milliseconds): an arm is skipped, and the report says so, when its
   * estimated duration (`armMinutes` of its mode plus the slowest overhead seen so far) would end past it.
   */
  deadline?: number;
  /** Time budget per arm by mode, for the deadline estimate. */
  armMinutes?: Partial<Record<RetrainMode, number>>;
  /** Lines for the head of the report (e.g. that training was limited to a few images: a smoke run). */
  notes?: string[];
  /** Called with the report so far after each evaluated model (long runs write partial reports). */
  onProgress?: (partial: SelfLearnReport) => Promise<void> | void;
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
}

function mean(values: number[]): number | null {
  return values.length ? values.reduce((a, b) => a + b, 0) / values.length : null;
}

function originalTraining(model: FundusModel): SelfLearnReport['originalTraining'] {
  const m = model.metadata.metrics as { epochs?: unknown; trainSeconds?: unknown } | undefined;
  return typeof m?.epochs === 'number' && typeof m.trainSeconds === 'number' ? { epochs: m.epochs, trainSeconds: m.trainSeconds } : null;
}

function validationAuc(model: FundusModel): number | null {
  const v = (model.metadata.metrics?.validation as { macroAuc?: number | null } | undefined)?.macroAuc;
  return typeof v === 'number' ? v : null;
}

/** The arms and their references that make up the comparisons, given the arms that exist (see compareArms). */
export function comparisonPlan(variants: Pick<VariantResult, 'name' | 'method' | 'round' | 'mode' | 'controlFor'>[]): { arm: string; reference: string; question: string }[] {
  const plan: { arm: string; reference: string; question: string }[] = [];
  const has = (name: string) => variants.some((v) => v.name === name);
  for (const v of variants) {
    if (v.mode === 'control') {
      plan.push({
        arm: v.name,
        reference: 'original',
        question: v.controlFor === 'finetune' ? 'extra fine-tuning epochs alone, no pseudo-labels' : 'a from-scratch model with this budget against the original',
      });
    } else if (v.mode === 'finetune' || v.mode === 'scratch') {
      const control = `control-${v.mode}`;
      if (has(control)) plan.push({ arm: v.name, reference: control, question: `the pseudo-labels: ${v.mode}, same budget, control without them` });
      if (v.round > 1) {
        const previous = `${v.method}-r${v.round - 1}-${v.mode}`;
        if (has(previous)) plan.push({ arm: v.name, reference: previous, question: `round ${v.round} against round ${v.round - 1}` });
      }
    }
  }
  // Spreading kernels against each other and against the classifier's own confidence, round 1, fine-tuned.
  const r1 = (method: string) => `${method}-r1-finetune`;
  if (has(r1('spreading-knn')) && has(r1('spreading-rbf'))) plan.push({ arm: r1('spreading-knn'), reference: r1('spreading-rbf'), question: 'knn against rbf kernel' });
  for (const kernel of ['spreading-knn', 'spreading-rbf']) {
    if (has(r1(kernel)) && has(r1('confidence'))) plan.push({ arm: r1(kernel), reference: r1('confidence'), question: 'label spreading against classifier-confidence pseudo-labels' });
  }
  return plan;
}

/**
 * Paired bootstrap comparisons of the planned arm pairs (arm − reference on the same test images and resamples).
 * `memo` keeps comparisons already made (a run re-plans after every arm; each pair costs a bootstrap).
 */
export function compareArms(
  variants: VariantResult[],
  evaluations: Map<string, PartEvaluation>,
  bootstrap: BootstrapOptions = {},
  memo = new Map<string, Comparison>(),
): Comparison[] {
  return comparisonPlan(variants).flatMap(({ arm, reference, question }) => {
    const key = `${arm}\u0000${reference}`;
    const known = memo.get(key);
    if (known) return [known];
    const a = evaluations.get(arm);
    const b = evaluations.get(reference);
    if (!a || !b) return [];
    if (a.classes.join('|') !== b.classes.join('|')) throw new InputError(`${arm} and ${reference} have different classes: they cannot be compared`);
    const d = pairedDifference(a.labels, a.classes.length, a, b, bootstrap);
    const ci = d.macroAuc.ci;
    const outcome: Comparison['outcome'] = ci && ci[0] > 0 ? 'higher' : ci && ci[1] < 0 ? 'lower' : 'no clear difference';
    const c: Comparison = { arm, reference, question, macroAuc: d.macroAuc, meanF1: d.meanF1, outcome };
    memo.set(key, c);
    return [c];
  });
}

/**
 * The self-learning experiment. Leakage guard → evaluate the original → pseudo-label the unlabelled images with each
 * method (label spreading over the original's embeddings, or its own probabilities) → arms, each a model trained on
 * labelled + pseudo-labelled data and evaluated on the same held-out test part with the same bootstrap resamples:
 * the controls (no pseudo-labels) first, then fine-tuned arms, from-scratch arms, and further self-training rounds.
 * Every arm of a mode gets the same budget (the retrainer's), and every fine-tuned arm starts from the original.
 */
export async function runSelfLearning(opts: SelfLearnOptions): Promise<SelfLearnReport> {
  const started = Date.now();
  const log = opts.log ?? (() => {});
  const { model } = opts;
  const classes = model.metadata.classes;
  if (model.metadata.task !== 'multilabel') {
    throw new InputError(`self-learning supports multilabel models; this one is a ${model.metadata.task} model`, { file: model.dir });
  }
  if (opts.rounds < 1 || !Number.isInteger(opts.rounds)) throw new InputError(`rounds must be a positive integer (got ${opts.rounds})`);
  if (opts.methods.length === 0) throw new InputError('no pseudo-labelling method chosen');
  if (opts.modes.length === 0) throw new InputError('no retraining mode chosen (scratch, finetune)');
  const names = opts.methods.map(methodName);
  const unknown = (opts.scratchMethods ?? []).filter((m) => !names.includes(m));
  if (unknown.length) throw new InputError(`scratch methods ${unknown.join(', ')} are not among the methods (${names.join(', ')})`);
  const train = labelledPart(opts.dataset, opts.split.train, classes, 'train');
  const validation = labelledPart(opts.dataset, opts.split.validation, classes, 'validation');
  const test = labelledPart(opts.dataset, opts.split.test, classes, 'test');
  if (test.length === 0) throw new InputError('the split has no test images to evaluate on');
  if (opts.unlabelled.length === 0) throw new InputError('no unlabelled images');
  const bootstrap = { resamples: opts.bootstrap?.resamples ?? 1000, seed: opts.bootstrap?.seed ?? 0 };
  const seed = (opts.seed ?? 0) + 1;

  log(`leakage guard: looking for near-duplicates of the ${test.length} test images among ${opts.unlabelled.length} unlabelled ones`);
  const guard = await excludeTestDuplicates(opts.unlabelled, test.map((t) => t.path), opts.findDuplicates);
  log(`leakage guard: ${guard.excluded.length} unlabelled images excluded`);
  const unlabelled = guard.kept;
  if (unlabelled.length === 0) throw new InputError('every unlabelled image is a near-duplicate of a test image');

  // Every arm starts from (or copies the setup of) a copy of the original in the output folder: the run is
  // unaffected if the model directory is replaced while it runs, and the folder shows what it started from.
  const baseDir = join(opts.outDir, 'original');
  await saveModel(baseDir, model.network, model.metadata);
  const base: FundusModel = { ...model, dir: baseDir };

  const variants: VariantResult[] = [];
  const rounds: RoundInfo[] = [];
  const skipped: SkippedArm[] = [];
  const evaluations = new Map<string, PartEvaluation>();
  let roundsChoice: SelfLearnReport['roundsChoice'] = null;
  const compared = new Map<string, Comparison>();
  const snapshot = (): SelfLearnReport => {
    const comparisons = compareArms(variants, evaluations, bootstrap, compared);
    return {
      format: 'fundus-selflearn-report',
      formatVersion: 2,
      createdAt: new Date().toISOString(),
      model: model.dir,
      classes,
      threshold: opts.threshold,
      rounds: opts.rounds,
      roundsChoice,
      originalTraining: originalTraining(model),
      data: { train: train.length, validation: validation.length, test: test.length, unlabelled: opts.unlabelled.length },
      leakageGuard: {
        unlabelledTotal: opts.unlabelled.length,
        excluded: guard.excluded.length,
        kept: unlabelled.length,
        excludedImages: guard.excluded,
      },
      pseudoLabelling: rounds,
      variants,
      skipped,
      comparisons,
      verdict: verdict(variants, comparisons),
      wallSeconds: (Date.now() - started) / 1000,
      notes: opts.notes ?? [],
    };
  };
  const evaluate = (m: FundusModel, name: string) => {
    log(`${name}: evaluating on the test part`);
    return evaluateOnPart(m, opts.dataset, opts.split.test, { bootstrap }).then((e) => (evaluations.set(name, e), e.metrics));
  };
  variants.push({
    name: 'original',
    method: null,
    round: 0,
    mode: 'original',
    teacher: null,
    modelDir: model.dir,
    pseudoLabelled: 0,
    positivesPerClass: null,
    budget: null,
    validationMacroAuc: validationAuc(model),
    metrics: await evaluate(model, 'original'),
  });
  await opts.onProgress?.(snapshot());

  // Embeddings per teacher model: knn and rbf spreading share them.
  const embedded = new Map<string, Embeddings>();
  const embeddingsOf = async (teacher: FundusModel, label: string): Promise<Embeddings> => {
    let e = embedded.get(teacher.dir);
    if (!e) {
      e = await embedFiles(teacher, [...train.map((t) => t.path), ...unlabelled], { layer: opts.layer, cache: opts.cache, progressLabel: `embed (${label})` });
      embedded.set(teacher.dir, e);
    }
    return e;
  };
  const scoreUnlabelled = async (method: PseudoLabelMethod, teacher: FundusModel): Promise<PseudoScores> => {
    const C = classes.length;
    const activation = model.metadata.activation;
    if (method.kind === 'confidence') {
      const probs = await predictProbabilities(teacher, unlabelled, opts.cache);
      return { scores: Float64Array.from(probs), numClasses: C, activation, info: { source: 'classifier probabilities' } };
    }
    const emb = await embeddingsOf(teacher, methodName(method));
    const labelled = new Uint8Array(train.length * C);
    train.forEach((t, i) => labelled.set(t.labels!, i * C));
    const s = spreadingScores(emb.matrix, labelled, train.length, C, activation, method);
    s.info.layer = emb.layer;
    s.info.dim = emb.matrix.cols;
    return s;
  };
  /** Pseudo-labels of one method and round, recorded in the report. */
  const pseudoLabel = async (method: PseudoLabelMethod, round: number, teacher: { model: FundusModel; name: string }) => {
    const name = methodName(method);
    log(`${name}, round ${round}: pseudo-labelling ${unlabelled.length} images with ${teacher.name}`);
    const scores = await scoreUnlabelled(method, teacher.model);
    const accepted = selectConfident(scores, opts.threshold);
    const positivesPerClass = Object.fromEntries(classes.map((c, k) => [c, accepted.filter((a) => a.labels[k] === 1).length]));
    rounds.push({
      method: name,
      round,
      teacher: teacher.name,
      unlabelledScored: unlabelled.length,
      accepted: accepted.length,
      positivesPerClass,
      meanConfidence: mean(accepted.map((a) => Math.min(...a.confidence))),
      info: scores.info,
    });
    log(`${name}, round ${round}: ${accepted.length} of ${unlabelled.length} pseudo-labels at confidence >= ${opts.threshold}`);
    if (accepted.length === 0) log(`${name}, round ${round}: no pseudo-label reached the threshold; no retraining for this method`);
    const pseudo: LabelledImage[] = accepted.map((a) => ({ filename: basename(unlabelled[a.index]), path: unlabelled[a.index], labels: a.labels }));
    return { pseudo, positivesPerClass, teacher: teacher.name };
  };

  // Arms: deadline check, training, evaluation, partial report.
  let slowestOverhead = 60;
  const runArm = async (arm: {
    name: string;
    mode: RetrainMode;
    method: string | null;
    round: number;
    labels: { pseudo: LabelledImage[]; positivesPerClass: Record<string, number>; teacher: string } | null;
  }): Promise<FundusModel | undefined> => {
    const minutes = opts.armMinutes?.[arm.mode];
    if (opts.deadline !== undefined && minutes !== undefined) {
      const endsAt = Date.now() + (minutes * 60 + slowestOverhead) * 1000;
      if (endsAt > opts.deadline) {
        const reason = `not run: it could end ${((endsAt - opts.deadline) / 60000).toFixed(1)} min past the run's deadline`;
        log(`${arm.name}: ${reason}`);
        skipped.push({ name: arm.name, reason });
        return undefined;
      }
    }
    const pseudo = arm.labels?.pseudo ?? [];
    log(`${arm.name}: training (${arm.mode}) on ${train.length} labelled + ${pseudo.length} pseudo-labelled images`);
    const t0 = Date.now();
    const r = await opts.retrain({ mode: arm.mode, base, classes, train, validation, pseudo, outDir: join(opts.outDir, 'models', arm.name), seed });
    const metrics = await evaluate(r.model, arm.name);
    const wallSeconds = (Date.now() - t0) / 1000;
    slowestOverhead = Math.max(slowestOverhead, wallSeconds - r.budget.trainSeconds);
    variants.push({
      name: arm.name,
      method: arm.method,
      round: arm.round,
      mode: arm.method === null ? 'control' : arm.mode,
      ...(arm.method === null ? { controlFor: arm.mode } : {}),
      teacher: arm.labels?.teacher ?? null,
      modelDir: r.model.dir,
      pseudoLabelled: pseudo.length,
      positivesPerClass: arm.labels?.positivesPerClass ?? null,
      budget: { ...r.budget, wallSeconds },
      validationMacroAuc: validationAuc(r.model),
      metrics,
    });
    await opts.onProgress?.(snapshot());
    return r.model;
  };

  // Round 1: every method pseudo-labels with the original.
  const first = new Map<string, Awaited<ReturnType<typeof pseudoLabel>>>();
  for (const method of opts.methods) first.set(methodName(method), await pseudoLabel(method, 1, { model, name: 'original' }));
  const usable = names.filter((n) => first.get(n)!.pseudo.length > 0);
  const scratchNames = usable.filter((n) => (opts.scratchMethods ?? names).includes(n));
  const control = opts.control !== false;
  const r1Models = new Map<string, { model: FundusModel; name: string }>();
  // Rounds 2+: the teacher is the previous round's model (fine-tuned when there is one); the student starts over.
  const runRounds = async (): Promise<void> => {
    if (opts.rounds < 2 || r1Models.size === 0) return;
    let continuing = [...r1Models.keys()];
    if ((opts.roundsFor ?? 'best-spreading') === 'best-spreading') {
      const candidates = Object.fromEntries(continuing.filter((n) => n.startsWith('spreading-')).map((n) => [n, validationAuc(r1Models.get(n)!.model)]));
      const best = Object.entries(candidates).sort((a, b) => (b[1] ?? -Infinity) - (a[1] ?? -Infinity))[0];
      continuing = best ? [best[0]] : [];
      if (best) {
        roundsChoice = { method: best[0], by: 'validation macro AUC of the round-1 model', candidates };
        log(`rounds 2-${opts.rounds} for ${best[0]} (validation macro AUC ${JSON.stringify(candidates)})`);
      } else {
        log('rounds past 1: no label-spreading method has a round-1 model (--rounds-for all continues the others)');
      }
    }
    const mode: RetrainMode = opts.modes.includes('finetune') ? 'finetune' : 'scratch';
    for (const n of continuing) {
      const method = opts.methods[names.indexOf(n)];
      let teacher = r1Models.get(n)!;
      for (let round = 2; round <= opts.rounds; round++) {
        const labels = await pseudoLabel(method, round, teacher);
        if (labels.pseudo.length === 0) break;
        const name = `${n}-r${round}-${mode}`;
        const m = await runArm({ name, mode, method: n, round, labels });
        if (!m) break;
        teacher = { model: m, name };
      }
    }
  };

  // Round 1 of one mode: its control, then one arm per method. A method's round-1 model is the teacher of its later
  // rounds: the fine-tuned one when there is one (fine-tuning runs first).
  const firstRound = async (mode: RetrainMode, methods: string[]): Promise<void> => {
    if (!opts.modes.includes(mode) || methods.length === 0) return;
    if (control) await runArm({ name: `control-${mode}`, mode, method: null, round: 1, labels: null });
    for (const n of methods) {
      const name = `${n}-r1-${mode}`;
      const m = await runArm({ name, mode, method: n, round: 1, labels: first.get(n)! });
      if (m && !r1Models.has(n)) r1Models.set(n, { model: m, name });
    }
  };

  await firstRound('finetune', usable);
  // Further rounds right after the fine-tuned arms (their teachers), before the costly from-scratch arms.
  if (opts.modes.includes('finetune')) await runRounds();
  await firstRound('scratch', scratchNames);
  if (!opts.modes.includes('finetune')) await runRounds();

  return snapshot();
}

const fmt = (x: number | null, signed = false): string => (x === null || Number.isNaN(x) ? 'n/a' : `${signed && x >= 0 ? '+' : ''}${x.toFixed(3)}`);
const fmtDelta = (d: PairedDelta): string => `${fmt(d.value, true)}${d.ci ? ` [${fmt(d.ci[0], true)}, ${fmt(d.ci[1], true)}]` : ''}`;

/**
 * Plain-words conclusions from the paired comparisons on the test part: each arm against its reference (fine-tuned
 * and from-scratch arms against their controls, controls against the original), then which approach came out best.
 * "Higher"/"lower" only where the paired 95% interval of the macro AUC difference excludes zero.
 */
export function verdict(variants: VariantResult[], comparisons: Comparison[]): string[] {
  const lines = comparisons.map(
    (c) => `${c.arm} − ${c.reference} (${c.question}): macro AUC ${fmtDelta(c.macroAuc)}, mean F1 ${fmtDelta(c.meanF1)} → ${c.outcome}`,
  );
  const arms = variants.filter((v) => v.mode === 'finetune' || v.mode === 'scratch');
  if (arms.length === 0) return lines;
  const uncontrolled = arms.filter((v) => !variants.some((c) => c.mode === 'control' && c.controlFor === v.mode));
  for (const v of uncontrolled) {
    lines.push(
      `${v.name} has no control (the same ${v.mode} training without pseudo-labels): its difference from the original mixes ` +
        `the training budget with the pseudo-labels and says nothing about the pseudo-labels alone`,
    );
  }
  // Per mode, the arms against their own control: the answer to "does self-learning help here".
  for (const mode of ['finetune', 'scratch'] as const) {
    const vsControl = comparisons.filter((c) => c.reference === `control-${mode}` && c.macroAuc.value !== null);
    const best = [...vsControl].sort((a, b) => b.macroAuc.value! - a.macroAuc.value!)[0];
    if (!best) continue;
    const how = mode === 'finetune' ? 'fine-tuned from the original' : 'trained from scratch';
    const helped = vsControl.filter((c) => c.outcome === 'higher').map((c) => c.arm);
    const hurt = vsControl.filter((c) => c.outcome === 'lower').map((c) => c.arm);
    lines.push(
      helped.length > 0
        ? `${how}: pseudo-labels helped: ${helped.join(', ')} beat${helped.length === 1 ? 's' : ''} control-${mode} beyond the paired interval; the largest gain is ${best.arm}, macro AUC ${fmtDelta(best.macroAuc)}`
        : best.outcome === 'lower'
          ? `${how}: pseudo-labels did not help: every arm is below control-${mode} beyond the paired interval; the closest is ${best.arm}, macro AUC ${fmtDelta(best.macroAuc)}`
          : `${how}: pseudo-labels did not clearly help: the best arm is ${best.arm}, macro AUC ${fmtDelta(best.macroAuc)} against control-${mode} (the interval contains zero)`,
    );
    // (When every arm is below, the line above says so already.)
    if (hurt.length > 0 && best.outcome !== 'lower') lines.push(`${how}: pseudo-labels hurt (paired interval below zero): ${hurt.join(', ')}`);
  }
  // The best model on the test part (reported, not selected: nothing is chosen on test).
  const top = [...variants].sort((a, b) => (b.metrics.overall.macroAuc.value ?? -1) - (a.metrics.overall.macroAuc.value ?? -1))[0];
  const orig = variants.find((v) => v.mode === 'original');
  if (top && orig && top !== orig) {
    lines.push(
      `highest test macro AUC: ${top.name} ${fmt(top.metrics.overall.macroAuc.value)} (mean F1 ${fmt(top.metrics.overall.meanF1.value)}) against the original's ` +
        `${fmt(orig.metrics.overall.macroAuc.value)} (${fmt(orig.metrics.overall.meanF1.value)})`,
    );
  } else if (top && orig) {
    lines.push(`highest test macro AUC: the original, ${fmt(orig.metrics.overall.macroAuc.value)} (mean F1 ${fmt(orig.metrics.overall.meanF1.value)}); no arm beat it`);
  }
  const vsConfidence = comparisons.filter((c) => c.reference === 'confidence-r1-finetune' && c.macroAuc.value !== null);
  for (const c of vsConfidence) {
    const word = c.outcome === 'higher' ? 'better than' : c.outcome === 'lower' ? 'worse than' : 'not shown to differ from';
    lines.push(`${c.arm} is ${word} plain classifier-confidence pseudo-labelling (macro AUC ${fmtDelta(c.macroAuc)})`);
  }
  const scratch = variants.find((v) => v.mode === 'control' && v.controlFor === 'scratch');
  if (scratch?.budget) {
    lines.push(
      `from-scratch arms had ${scratch.budget.epochsRun.toFixed(1)} epochs (${(scratch.budget.trainSeconds / 60).toFixed(1)} min of training): ` +
        `not comparable with the original's full training; read them only against control-scratch`,
    );
  }
  return lines;
}
