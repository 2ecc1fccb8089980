import { basename, join } from 'node:path';
import type { Dataset, LabelledImage } from '../data/labels.js';
import { evaluatePredictions } from '../eval/evaluate.js';
import type { EvaluationMetrics } from '../eval/schema.js';
import type { FundusModel } from '../models/io.js';
import { predictFiles } from '../models/predict.js';
import { InputError } from '../util/errors.js';
import { embedFiles } from './embed.js';
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

/** Trains one model as asked and returns it loaded (see commands.ts for the one built on src/train). */
export type Retrainer = (req: RetrainRequest) => Promise<FundusModel>;

export interface SplitParts {
  train: string[];
  validation: string[];
  test: string[];
}

export interface SelfLearnOptions {
  model: FundusModel;
  /** The labelled data (contest CSV); labels in `dataset.classes` order. */
  dataset: Dataset;
  split: SplitParts;
  /** Paths of the unlabelled images. */
  unlabelled: string[];
  methods: PseudoLabelMethod[];
  /** Confidence a pseudo-label must reach (see selectConfident). */
  threshold: number;
  modes: RetrainMode[];
  /** Self-training rounds: round r pseudo-labels with the model retrained in round r − 1 (fine-tuned if any). */
  rounds: number;
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
   * Also fine-tune the original on the labelled data alone with the same budget (`control-finetune`): fine-tuned
   * variants have had more training than the original, and only this control separates that from the pseudo-labels.
   * Default true when `finetune` is among the modes.
   */
  control?: boolean;
  /** Called with the report so far after each evaluated model (long runs write partial reports). */
  onProgress?: (partial: SelfLearnReport) => Promise<void> | void;
}

/** One evaluated model of the experiment. */
export interface VariantResult {
  name: string;
  method: string | null;
  round: number;
  mode: RetrainMode | 'original' | 'control';
  modelDir: string;
  pseudoLabelled: number;
  metrics: EvaluationMetrics;
}

export interface RoundInfo {
  method: string;
  round: number;
  unlabelledScored: number;
  accepted: number;
  /** Accepted pseudo-labels per class (positives). */
  positivesPerClass: Record<string, number>;
  /** Mean over accepted images of the per-class decision confidence. */
  meanConfidence: number | null;
  info: Record<string, unknown>;
}

export interface SelfLearnReport {
  format: 'fundus-selflearn-report';
  formatVersion: 1;
  createdAt: string;
  model: string;
  classes: string[];
  threshold: number;
  rounds: number;
  data: { train: number; validation: number; test: number; unlabelled: number };
  leakageGuard: { unlabelledTotal: number; excluded: number; kept: number; excludedImages: { path: string; duplicateOf: string[] }[] };
  pseudoLabelling: RoundInfo[];
  variants: VariantResult[];
  verdict: string[];
}

/** Labelled images of a split part, with labels re-ordered to the model's classes. */
function partImages(dataset: Dataset, names: string[], classes: string[], part: string): LabelledImage[] {
  const byName = new Map(dataset.images.map((im) => [im.filename, im]));
  const index = classes.map((c) => {
    const k = dataset.classes.indexOf(c);
    if (k < 0) throw new InputError(`the model's class "${c}" is not a column of the CSV`, { file: dataset.csvPath });
    return k;
  });
  return names.map((n) => {
    const im = byName.get(n);
    if (!im) throw new InputError(`image "${n}" of the split's ${part} part is not in the CSV`, { file: dataset.csvPath });
    if (!im.labels) throw new InputError(`image "${n}" has no labels`, { file: dataset.csvPath });
    return { filename: im.filename, path: im.path, labels: Uint8Array.from(index.map((k) => im.labels![k])) };
  });
}

function outputLayer(model: FundusModel): string {
  const layers = model.network.layers;
  return layers[layers.length - 1].name;
}

/**
 * The model's output probabilities on paths (n×C). `cache`: through the preprocessing cache (the same pixels as
 * training saw); otherwise `predictFiles`, exactly as `fundus predict` and `fundus evaluate` compute them.
 */
export async function predictProbabilities(model: FundusModel, paths: string[], cache = true): Promise<Float32Array> {
  if (!cache) return predictFiles(model, paths);
  return (await embedFiles(model, paths, { layer: outputLayer(model), cache })).matrix.data;
}

async function evaluateOn(model: FundusModel, test: LabelledImage[], opts: SelfLearnOptions): Promise<EvaluationMetrics> {
  const C = model.metadata.classes.length;
  // Test predictions always the way `fundus evaluate` makes them, so that the numbers are comparable.
  const probs = await predictProbabilities(model, test.map((t) => t.path), false);
  const labels = new Uint8Array(test.length * C);
  test.forEach((t, i) => labels.set(t.labels!, i * C));
  return evaluatePredictions({
    classes: model.metadata.classes,
    activation: model.metadata.activation,
    probs,
    labels,
    thresholds: model.metadata.thresholds,
    bootstrap: { resamples: opts.bootstrap?.resamples ?? 1000, seed: opts.bootstrap?.seed ?? 0 },
  });
}

async function scoreUnlabelled(
  method: PseudoLabelMethod,
  model: FundusModel,
  train: LabelledImage[],
  unlabelled: string[],
  opts: SelfLearnOptions,
): Promise<PseudoScores> {
  const C = model.metadata.classes.length;
  const activation = model.metadata.activation;
  if (method.kind === 'confidence') {
    const probs = await predictProbabilities(model, unlabelled, opts.cache);
    return { scores: Float64Array.from(probs), numClasses: C, activation, info: { source: 'classifier probabilities' } };
  }
  const emb = await embedFiles(model, [...train.map((t) => t.path), ...unlabelled], {
    layer: opts.layer,
    cache: opts.cache,
    progressLabel: `embed (${methodName(method)})`,
  });
  const labelled = new Uint8Array(train.length * C);
  train.forEach((t, i) => labelled.set(t.labels!, i * C));
  const s = spreadingScores(emb.matrix, labelled, train.length, C, activation, method);
  s.info.layer = emb.layer;
  s.info.dim = emb.matrix.cols;
  return s;
}

function mean(values: number[]): number | null {
  return values.length ? values.reduce((a, b) => a + b, 0) / values.length : null;
}

/**
 * The self-learning experiment: leakage guard → evaluate the original → for each pseudo-labelling method and round:
 * score the unlabelled images (label spreading over embeddings, or the classifier's own probabilities), keep the
 * confident ones, retrain (from scratch and/or fine-tuned) on labelled + pseudo-labelled data, evaluate on the same
 * held-out test part with the same bootstrap resamples.
 */
export async function runSelfLearning(opts: SelfLearnOptions): Promise<SelfLearnReport> {
  const log = opts.log ?? (() => {});
  const { model } = opts;
  const classes = model.metadata.classes;
  if (model.metadata.task !== 'multilabel') {
    throw new InputError(`self-learning supports multilabel models; this one is a ${model.metadata.task} model`, { file: model.dir });
  }
  if (opts.rounds < 1 || !Number.isInteger(opts.rounds)) throw new InputError(`rounds must be a positive integer (got ${opts.rounds})`);
  if (opts.methods.length === 0) throw new InputError('no pseudo-labelling method chosen');
  if (opts.modes.length === 0) throw new InputError('no retraining mode chosen (scratch, finetune)');
  const train = partImages(opts.dataset, opts.split.train, classes, 'train');
  const validation = partImages(opts.dataset, opts.split.validation, classes, 'validation');
  const test = partImages(opts.dataset, opts.split.test, classes, 'test');
  if (test.length === 0) throw new InputError('the split has no test images to evaluate on');
  if (opts.unlabelled.length === 0) throw new InputError('no unlabelled images');

  log(`leakage guard: looking for near-duplicates of the ${test.length} test images among ${opts.unlabelled.length} unlabelled ones`);
  const guard = await excludeTestDuplicates(opts.unlabelled, test.map((t) => t.path), opts.findDuplicates);
  log(`leakage guard: ${guard.excluded.length} unlabelled images excluded`);
  const unlabelled = guard.kept;
  if (unlabelled.length === 0) throw new InputError('every unlabelled image is a near-duplicate of a test image');

  const variants: VariantResult[] = [];
  const rounds: RoundInfo[] = [];
  const snapshot = (): SelfLearnReport => ({
    format: 'fundus-selflearn-report',
    formatVersion: 1,
    createdAt: new Date().toISOString(),
    model: model.dir,
    classes,
    threshold: opts.threshold,
    rounds: opts.rounds,
    data: { train: train.length, validation: validation.length, test: test.length, unlabelled: opts.unlabelled.length },
    leakageGuard: {
      unlabelledTotal: opts.unlabelled.length,
      excluded: guard.excluded.length,
      kept: unlabelled.length,
      excludedImages: guard.excluded,
    },
    pseudoLabelling: rounds,
    variants,
    verdict: verdict(variants),
  });
  const progress = async () => {
    await opts.onProgress?.(snapshot());
  };
  log('evaluating the original model on the test part');
  variants.push({ name: 'original', method: null, round: 0, mode: 'original', modelDir: model.dir, pseudoLabelled: 0, metrics: await evaluateOn(model, test, opts) });
  await progress();

  if (opts.control !== false && opts.modes.includes('finetune')) {
    log('control-finetune: fine-tuning the original on the labelled images alone, same budget');
    const control = await opts.retrain({
      mode: 'finetune',
      base: model,
      classes,
      train,
      validation,
      pseudo: [],
      outDir: join(opts.outDir, 'models', 'control-finetune'),
      seed: (opts.seed ?? 0) + 1,
    });
    variants.push({ name: 'control-finetune', method: null, round: 1, mode: 'control', modelDir: control.dir, pseudoLabelled: 0, metrics: await evaluateOn(control, test, opts) });
    await progress();
  }

  for (const method of opts.methods) {
    const name = methodName(method);
    let current = model;
    for (let round = 1; round <= opts.rounds; round++) {
      log(`${name}, round ${round}: pseudo-labelling ${unlabelled.length} images`);
      const scores = await scoreUnlabelled(method, current, train, unlabelled, opts);
      const accepted = selectConfident(scores, opts.threshold);
      const positivesPerClass = Object.fromEntries(classes.map((c, k) => [c, accepted.filter((a) => a.labels[k] === 1).length]));
      rounds.push({
        method: name,
        round,
        unlabelledScored: unlabelled.length,
        accepted: accepted.length,
        positivesPerClass,
        meanConfidence: mean(accepted.map((a) => Math.min(...a.confidence))),
        info: scores.info,
      });
      log(`${name}, round ${round}: ${accepted.length} of ${unlabelled.length} pseudo-labels at confidence >= ${opts.threshold}`);
      const pseudo: LabelledImage[] = accepted.map((a) => ({
        filename: basename(unlabelled[a.index]),
        path: unlabelled[a.index],
        labels: a.labels,
      }));
      if (pseudo.length === 0) {
        // Retraining on nothing new would only re-measure the original (or the control) with another seed.
        log(`${name}, round ${round}: no pseudo-label reached the threshold; no retraining for this method`);
        break;
      }
      let next: FundusModel | undefined;
      for (const mode of opts.modes) {
        const variant = `${name}-r${round}-${mode}`;
        log(`${variant}: training on ${train.length} labelled + ${pseudo.length} pseudo-labelled images`);
        const trained = await opts.retrain({
          mode,
          base: mode === 'finetune' ? current : model,
          classes,
          train,
          validation,
          pseudo,
          outDir: join(opts.outDir, 'models', variant),
          seed: (opts.seed ?? 0) + round,
        });
        log(`${variant}: evaluating on the test part`);
        variants.push({ name: variant, method: name, round, mode, modelDir: trained.dir, pseudoLabelled: pseudo.length, metrics: await evaluateOn(trained, test, opts) });
        await progress();
        if (mode === 'finetune' || !next) next = trained;
      }
      current = next ?? current;
    }
  }

  return snapshot();
}

const value = (m: { value: number | null }): number => m.value ?? NaN;

/**
 * Plain-words comparison on the test part: each retrained variant against the original (mean F1 and macro AUC), and
 * the best spreading variant against the best classifier-confidence one. Intervals come from the same bootstrap
 * resamples for every model, but they are marginal ones: overlapping intervals mean "not shown to differ".
 */
export function verdict(variants: VariantResult[]): string[] {
  const orig = variants.find((v) => v.mode === 'original');
  if (!orig) return [];
  const lines: string[] = [];
  const fmt = (x: number) => (Number.isNaN(x) ? 'n/a' : x.toFixed(3));
  const overlaps = (a: { ci: [number, number] | null }, b: { ci: [number, number] | null }) =>
    !a.ci || !b.ci || (a.ci[0] <= b.ci[1] && b.ci[0] <= a.ci[1]);
  const control = variants.find((v) => v.mode === 'control');
  for (const v of variants) {
    if (v === orig) continue;
    // Fine-tuned variants are compared with the control (same extra training without pseudo-labels), others with the original.
    const ref = v.mode === 'finetune' && control ? control : orig;
    const r = ref.metrics.overall;
    const m = v.metrics.overall;
    const dAuc = value(m.macroAuc) - value(r.macroAuc);
    const dF1 = value(m.meanF1) - value(r.meanF1);
    const sig = overlaps(m.macroAuc, r.macroAuc) && overlaps(m.meanF1, r.meanF1) ? 'intervals overlap' : 'intervals do not overlap';
    lines.push(`${v.name}: macro AUC ${dAuc >= 0 ? '+' : ''}${fmt(dAuc)}, mean F1 ${dF1 >= 0 ? '+' : ''}${fmt(dF1)} vs ${ref.name} (${sig})`);
  }
  const best = (pred: (v: VariantResult) => boolean) =>
    variants.filter(pred).sort((a, b) => value(b.metrics.overall.macroAuc) - value(a.metrics.overall.macroAuc))[0];
  const spreading = best((v) => v.method?.startsWith('spreading') ?? false);
  const confidence = best((v) => v.method === 'confidence');
  if (spreading && confidence) {
    const d = value(spreading.metrics.overall.macroAuc) - value(confidence.metrics.overall.macroAuc);
    const winner = d > 0 ? spreading.name : d < 0 ? confidence.name : 'neither';
    lines.push(
      `best label-spreading variant ${spreading.name} (macro AUC ${fmt(value(spreading.metrics.overall.macroAuc))}) vs best ` +
        `classifier-confidence variant ${confidence.name} (${fmt(value(confidence.metrics.overall.macroAuc))}): ${winner} is higher`,
    );
  }
  const top = best((v) => v.method !== null);
  if (top) {
    const ref = top.mode === 'finetune' && control ? control : orig;
    const d = value(top.metrics.overall.macroAuc) - value(ref.metrics.overall.macroAuc);
    if (top.mode === 'finetune' && !control) {
      lines.push(
        `${top.name} is ${fmt(d)} macro AUC against the original, but fine-tuning adds training: without the control ` +
          `(control-finetune, labelled images only, same budget) this says nothing about the pseudo-labels`,
      );
      return lines;
    }
    lines.push(
      d > 0 && !overlaps(top.metrics.overall.macroAuc, ref.metrics.overall.macroAuc)
        ? `self-learning helped here: ${top.name} beats ${ref.name} on macro AUC beyond the intervals`
        : d > 0
          ? `self-learning did not clearly help: the best variant ${top.name} is ${fmt(d)} macro AUC above ${ref.name}, within the intervals`
          : `self-learning did not help: the best pseudo-labelled variant ${top.name} is ${fmt(d)} macro AUC against ${ref.name}`,
    );
  }
  return lines;
}
