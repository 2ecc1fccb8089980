import { join } from 'node:path';
import type { Dataset } from '../data/labels.js';
import type { SplitParts } from '../data/split.js';
import { saveModel, type FundusModel } from '../models/io.js';
import { InputError } from '../util/errors.js';
import { runArms, validationAuc, type ArmOptions, type RunRecord } from './arms.js';
import { compareArms } from './comparisons.js';
import { evaluateOnPart, labelledPart, type PartEvaluation } from './evaluate.js';
import { excludeTestDuplicates, type DuplicateFinder } from './leakage.js';
import { PseudoLabeller } from './pseudo-labeller.js';
import { methodName } from './pseudolabel.js';
import type { Comparison, SelfLearnReport } from './schema.js';
import { verdict } from './verdict.js';

export interface SelfLearnOptions extends ArmOptions {
  model: FundusModel;
  /** The labelled data (contest CSV); labels in `dataset.classes` order. */
  dataset: Dataset;
  split: SplitParts;
  /** Paths of the unlabelled images. */
  unlabelled: string[];
  /** Confidence a pseudo-label must reach (see selectConfident). */
  threshold: number;
  /** Embedding layer (default: penultimate). */
  layer?: string;
  bootstrap?: { resamples?: number; seed?: number };
  seed?: number;
  findDuplicates: DuplicateFinder;
  log?: (message: string) => void;
  /** Use the preprocessing cache (default true). */
  cache?: boolean;
  /**
   * Smoke runs: at most this many images of the train and validation parts (their first, as trainModel's `limit`
   * takes them, so that the spreading seeds are the labelled images the arms train on) and of the unlabelled images
   * the leakage guard keeps: the images embedded and pseudo-labelled. The test part is evaluated whole. The report
   * says so in a note.
   */
  limit?: number;
  /** Lines for the head of the report (e.g. that training was limited to a few images: a smoke run). */
  notes?: string[];
  /** Called with the report so far after each evaluated model (long runs write partial reports). */
  onProgress?: (partial: SelfLearnReport) => Promise<void> | void;
}

function originalTraining(model: FundusModel): SelfLearnReport['originalTraining'] {
  const m = model.metadata.metrics as { epochs?: unknown; trainSeconds?: unknown } | undefined;
  return typeof m?.epochs === 'number' && typeof m.trainSeconds === 'number' ? { epochs: m.epochs, trainSeconds: m.trainSeconds } : null;
}

/**
 * The self-learning experiment. Leakage guard → evaluate the original → pseudo-label the unlabelled images with each
 * method (label spreading over the original's embeddings, or its own probabilities) → arms, each a model trained on
 * labelled + pseudo-labelled data and evaluated on the same held-out test part with the same bootstrap resamples:
 * the controls (no pseudo-labels) first, then fine-tuned arms, from-scratch arms, and further self-training rounds
 * (see runArms). Every arm of a mode gets the same budget (the retrainer's), and every fine-tuned arm starts from
 * the original.
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
  if (opts.limit !== undefined && !(Number.isInteger(opts.limit) && opts.limit > 0)) throw new InputError(`limit must be a positive integer (got ${opts.limit})`);
  const upToLimit = <T>(items: T[]): T[] => (opts.limit === undefined ? items : items.slice(0, opts.limit));
  const train = upToLimit(labelledPart(opts.dataset, opts.split.train, classes, 'train'));
  const validation = upToLimit(labelledPart(opts.dataset, opts.split.validation, classes, 'validation'));
  const test = labelledPart(opts.dataset, opts.split.test, classes, 'test');
  if (test.length === 0) throw new InputError('the split has no test images to evaluate on');
  if (opts.unlabelled.length === 0) throw new InputError('no unlabelled images');
  const bootstrap = { resamples: opts.bootstrap?.resamples ?? 1000, seed: opts.bootstrap?.seed ?? 0 };

  log(`leakage guard: looking for near-duplicates of the ${test.length} test images among ${opts.unlabelled.length} unlabelled ones`);
  const guard = await excludeTestDuplicates(opts.unlabelled, test.map((t) => t.path), opts.findDuplicates);
  log(`leakage guard: ${guard.excluded.length} unlabelled images excluded`);
  if (guard.kept.length === 0) throw new InputError('every unlabelled image is a near-duplicate of a test image');
  const unlabelled = upToLimit(guard.kept);
  const notes = [...(opts.notes ?? [])];
  if (opts.limit !== undefined) {
    const note =
      `Smoke run (limit ${opts.limit}): ${train.length} labelled training images (the spreading seeds), ${validation.length} validation, and ` +
      `${unlabelled.length} of the ${guard.kept.length} unlabelled images the leakage guard kept; the test part is whole. These numbers are not results.`;
    notes.push(note);
    log(note);
  }

  // Every arm starts from (or copies the setup of) a copy of the original in the output folder: the run is
  // unaffected if the model directory is replaced while it runs, and the folder shows what it started from.
  const baseDir = join(opts.outDir, 'original');
  await saveModel(baseDir, model.network, model.metadata);
  const base: FundusModel = { ...model, dir: baseDir };

  const record: RunRecord = { variants: [], pseudoLabelling: [], skipped: [], roundsChoice: null };
  const evaluations = new Map<string, PartEvaluation>();
  const compared = new Map<string, Comparison>();
  const snapshot = (): SelfLearnReport => {
    const comparisons = compareArms(record.variants, evaluations, bootstrap, compared);
    return {
      format: 'fundus-selflearn-report',
      formatVersion: 2,
      createdAt: new Date().toISOString(),
      model: model.dir,
      classes,
      threshold: opts.threshold,
      rounds: opts.rounds,
      roundsChoice: record.roundsChoice,
      originalTraining: originalTraining(model),
      data: { train: train.length, validation: validation.length, test: test.length, unlabelled: opts.unlabelled.length },
      leakageGuard: {
        unlabelledTotal: opts.unlabelled.length,
        excluded: guard.excluded.length,
        kept: guard.kept.length,
        excludedImages: guard.excluded,
      },
      pseudoLabelling: record.pseudoLabelling,
      variants: record.variants,
      skipped: record.skipped,
      comparisons,
      verdict: verdict(record.variants, comparisons),
      wallSeconds: (Date.now() - started) / 1000,
      notes,
      ...(record.stoppedEarly ? { stoppedEarly: record.stoppedEarly } : {}),
    };
  };
  const progress = async () => {
    await opts.onProgress?.(snapshot());
  };
  const evaluate = (m: FundusModel, name: string) => {
    log(`${name}: evaluating on the test part`);
    return evaluateOnPart(m, opts.dataset, opts.split.test, { bootstrap }).then((e) => (evaluations.set(name, e), e.metrics));
  };
  record.variants.push({
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
  await progress();

  const labeller = new PseudoLabeller({
    classes,
    activation: model.metadata.activation,
    seeds: train,
    unlabelled,
    threshold: opts.threshold,
    layer: opts.layer,
    cache: opts.cache,
    deadline: opts.deadline,
    log,
  });
  await runArms(opts, { original: model, base, classes, train, validation, seed: (opts.seed ?? 0) + 1, labeller, evaluate, record, progress, log });
  return snapshot();
}
