import { join } from 'node:path';
import type { LabelledImage } from '../data/labels.js';
import type { EvaluationMetrics } from '../eval/schema.js';
import { disposeModel, type FundusModel } from '../models/io.js';
import { ArmDeadline, DeadlinePassed } from './deadline.js';
import type { PseudoLabeller, RoundLabels, Teacher } from './pseudo-labeller.js';
import { methodName, type PseudoLabelMethod } from './pseudolabel.js';
import type { Retrainer } from './retrain.js';
import type { RetrainMode, RoundInfo, SelfLearnReport, SkippedArm, VariantResult } from './schema.js';

/** Which arms a self-learning run trains, and the time they must fit in. */
export interface ArmOptions {
  /** Pseudo-labelling methods; each gets a round-1 arm per retraining mode (scratch only for `scratchMethods`). */
  methods: PseudoLabelMethod[];
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
  /**
   * Controls (default true): the same training with no pseudo-labels, per mode that has a pseudo-labelled arm
   * (`control-finetune`, `control-scratch`). A fine-tuned arm has had more training than the original, and a scratch arm
   * a different (usually far smaller) budget: only its control separates the pseudo-labels from the training budget.
   */
  control?: boolean;
  /**
   * Wall-clock deadline of the whole run (Date.now() milliseconds): an arm is skipped, and the report says so, when it
   * would start past it or its estimated duration (`armMinutes` of its mode plus the slowest overhead seen so far)
   * would end past it; a pass over photographs for pseudo-labels (embedding, classifier scores) stops at it between
   * two batches, and nothing is pseudo-labelled or trained after that (`SelfLearnReport.stoppedEarly` says where).
   */
  deadline?: number;
  /** Time budget per arm by mode, for the deadline estimate. */
  armMinutes?: Partial<Record<RetrainMode, number>>;
  retrain: Retrainer;
  outDir: string;
}

/** What a run has done so far; its report is a snapshot of this. */
export interface RunRecord {
  variants: VariantResult[];
  pseudoLabelling: RoundInfo[];
  skipped: SkippedArm[];
  roundsChoice: SelfLearnReport['roundsChoice'];
  stoppedEarly?: string;
}

/** What the arms are trained from and with, and where their results go. */
export interface ArmsContext {
  /** The original model: round 1's teacher. */
  original: FundusModel;
  /** What every arm starts from (finetune) or copies the set-up of (scratch). */
  base: FundusModel;
  classes: string[];
  train: LabelledImage[];
  validation: LabelledImage[];
  seed: number;
  labeller: PseudoLabeller;
  /** Evaluates a model on the test part, under its name. */
  evaluate: (model: FundusModel, name: string) => Promise<EvaluationMetrics>;
  record: RunRecord;
  /** Called after each evaluated arm. */
  progress: () => Promise<void>;
  log: (message: string) => void;
}

/** One arm to train: a method's pseudo-labels of a round, or none (a control). */
interface Arm {
  name: string;
  mode: RetrainMode;
  method: string | null;
  round: number;
  labels: RoundLabels | null;
}

/** Macro AUC on the validation part as the model's training recorded it. */
export function validationAuc(model: FundusModel): number | null {
  const v = (model.metadata.metrics?.validation as { macroAuc?: number | null } | undefined)?.macroAuc;
  return typeof v === 'number' ? v : null;
}

/**
 * Pseudo-labels with the original and trains the arms, each a model trained on labelled + pseudo-labelled data and
 * evaluated on the test part: per mode its control first, then one arm per method; fine-tuned arms and the further
 * self-training rounds before the (costly) from-scratch arms. Every arm of a mode gets the same budget (the
 * retrainer's), and every fine-tuned arm starts from the base. An arm that would end past the deadline is skipped.
 */
export async function runArms(opts: ArmOptions, ctx: ArmsContext): Promise<void> {
  const { record, log, labeller } = ctx;
  const names = opts.methods.map(methodName);
  const deadline = new ArmDeadline(opts.deadline, opts.armMinutes);

  // Undefined once the deadline has stopped pseudo-labelling (recorded in the report): no later round or method runs.
  const pseudoLabel = async (method: PseudoLabelMethod, round: number, teacher: Teacher): Promise<RoundLabels | undefined> => {
    if (record.stoppedEarly) return undefined;
    try {
      const { labels, info } = await labeller.label(method, round, teacher);
      record.pseudoLabelling.push(info);
      return labels;
    } catch (err) {
      if (!(err instanceof DeadlinePassed)) throw err;
      record.stoppedEarly =
        `Stopped at the deadline while pseudo-labelling with ${methodName(method)}, round ${round} (teacher ${teacher.name}): ` +
        `${err.done} of ${err.total} photographs ${err.what}; no method or round was pseudo-labelled, and no arm trained, after that.`;
      log(record.stoppedEarly);
      return undefined;
    }
  };

  // Deadline check, training, evaluation, partial report.
  const runArm = async (arm: Arm): Promise<FundusModel | undefined> => {
    const reason = deadline.whyNot(arm.mode);
    if (reason) {
      log(`${arm.name}: ${reason}`);
      record.skipped.push({ name: arm.name, reason });
      return undefined;
    }
    const pseudo = arm.labels?.pseudo ?? [];
    const { base, classes, train, validation, seed } = ctx;
    log(`${arm.name}: training (${arm.mode}) on ${train.length} labelled + ${pseudo.length} pseudo-labelled images`);
    const t0 = Date.now();
    const r = await opts.retrain({ mode: arm.mode, base, classes, train, validation, pseudo, outDir: join(opts.outDir, 'models', arm.name), seed });
    const metrics = await ctx.evaluate(r.model, arm.name);
    const wallSeconds = (Date.now() - t0) / 1000;
    deadline.observe(wallSeconds, r.budget.trainSeconds);
    record.variants.push({
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
    await ctx.progress();
    return r.model;
  };

  // Round 1: every method pseudo-labels with the original.
  const first = new Map<string, RoundLabels>();
  for (const method of opts.methods) {
    const labels = await pseudoLabel(method, 1, { model: ctx.original, name: 'original' });
    if (!labels) break;
    first.set(methodName(method), labels);
  }
  const usable = names.filter((n) => (first.get(n)?.pseudo.length ?? 0) > 0);
  const scratchNames = usable.filter((n) => (opts.scratchMethods ?? names).includes(n));
  const control = opts.control !== false;
  const r1Models = new Map<string, Teacher>();
  // Rounds 2+: the teacher is the previous round's model (fine-tuned when there is one); the student starts over.
  const runRounds = async (): Promise<void> => {
    if (opts.rounds < 2 || r1Models.size === 0) return;
    let continuing = [...r1Models.keys()];
    if ((opts.roundsFor ?? 'best-spreading') === 'best-spreading') {
      const candidates = Object.fromEntries(continuing.filter((n) => n.startsWith('spreading-')).map((n) => [n, validationAuc(r1Models.get(n)!.model)]));
      const best = Object.entries(candidates).sort((a, b) => (b[1] ?? -Infinity) - (a[1] ?? -Infinity))[0];
      continuing = best ? [best[0]] : [];
      if (best) {
        record.roundsChoice = { method: best[0], by: 'validation macro AUC of the round-1 model', candidates };
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
        if (!labels || labels.pseudo.length === 0) break;
        const name = `${n}-r${round}-${mode}`;
        const m = await runArm({ name, mode, method: n, round, labels });
        if (!m) break;
        // A later round's teacher is needed only until its student exists; round 1's stay for the other methods.
        if (round > 2) disposeModel(teacher.model);
        teacher = { model: m, name };
      }
      if (teacher !== r1Models.get(n)) disposeModel(teacher.model);
    }
  };

  // Round 1 of one mode: its control, then one arm per method. A method's round-1 model is the teacher of its later
  // rounds: the fine-tuned one when there is one (fine-tuning runs first).
  const firstRound = async (mode: RetrainMode, methods: string[]): Promise<void> => {
    if (!opts.modes.includes(mode) || methods.length === 0) return;
    if (control) {
      const m = await runArm({ name: `control-${mode}`, mode, method: null, round: 1, labels: null });
      if (m) disposeModel(m);
    }
    for (const n of methods) {
      const name = `${n}-r1-${mode}`;
      const m = await runArm({ name, mode, method: n, round: 1, labels: first.get(n)! });
      // Every arm's model is saved and evaluated by now; only a later round's teacher stays in memory.
      if (m && !r1Models.has(n)) r1Models.set(n, { model: m, name });
      else if (m) disposeModel(m);
    }
  };

  await firstRound('finetune', usable);
  // Further rounds right after the fine-tuned arms (their teachers), before the costly from-scratch arms.
  if (opts.modes.includes('finetune')) await runRounds();
  await firstRound('scratch', scratchNames);
  if (!opts.modes.includes('finetune')) await runRounds();
  for (const t of r1Models.values()) disposeModel(t.model);
}
