import { join } from 'node:path';
import type { LabelledImage } from '../data/labels.js';
import { createNetwork } from '../models/architectures.js';
import { loadModel, saveModel, type FundusModel } from '../models/io.js';
import { trainModel } from '../train/train.js';
import type { ArmBudget, RetrainMode } from './schema.js';

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

/** A retrained model, loaded, and the budget it used. */
export interface Retrained {
  model: FundusModel;
  budget: Omit<ArmBudget, 'wallSeconds'>;
}

/** Trains one model as asked (trainModelRetrainer below is the one built on src/train). */
export type Retrainer = (req: RetrainRequest) => Promise<Retrained>;

export interface TrainingBudget {
  /** Epochs of a model trained from scratch. */
  epochs: number;
  /** Epochs of a fine-tuned model (default: `epochs`). */
  finetuneEpochs?: number;
  /** Time budget of a model trained from scratch: training stops (mid-epoch if need be) once it is spent. */
  maxMinutes?: number;
  /** Time budget of a fine-tuned model (default: `maxMinutes`). */
  finetuneMaxMinutes?: number;
  batchSize?: number;
  /** Peak learning rate for training from scratch. */
  lr?: number;
  /** Peak learning rate for fine-tuning (lower: the weights are already good). */
  finetuneLr?: number;
  patience?: number;
  /** Weight of a pseudo-labelled example in the loss, relative to a labelled one. */
  pseudoWeight: number;
  quiet?: boolean;
}

/**
 * The retrainer built on src/train's `trainModel`: the same task, architecture and preprocessing as the original
 * model; `finetune` starts from the base model's weights (`initFrom`), `scratch` from a fresh initialisation; the
 * pseudo-labelled images are `extraExamples` (targets in the task's class order) with weight `pseudoWeight`.
 * Thresholds are tuned on the validation part by trainModel, as for any model.
 */
export function trainModelRetrainer(data: { csv: string; images: string; split: string; runsDir: string }, budget: TrainingBudget, log?: (line: string) => void): Retrainer {
  return async (req) => {
    const meta = req.base.metadata;
    const finetune = req.mode === 'finetune';
    const epochs = finetune ? (budget.finetuneEpochs ?? budget.epochs) : budget.epochs;
    const maxMinutes = finetune ? (budget.finetuneMaxMinutes ?? budget.maxMinutes) : budget.maxMinutes;
    const lr = finetune ? (budget.finetuneLr ?? (budget.lr ?? 1e-3) / 10) : (budget.lr ?? 1e-3);
    const runDir = join(data.runsDir, req.outDir.split('/').pop()!);
    // From scratch = from a freshly initialised copy of the base: the base's exact preprocessing (crop, size,
    // channels, CLAHE, normalisation, resize filter), which trainModel's defaults for new models need not match.
    const initFrom = finetune ? req.base.dir : await freshCopy(req.base, `${runDir}.init`, req.seed);
    const result = await trainModel({
      task: meta.task,
      model: meta.architecture,
      csv: data.csv,
      images: data.images,
      split: data.split,
      out: req.outDir,
      runDir,
      imageSize: meta.preprocess.size,
      channels: meta.preprocess.channels,
      clahe: meta.preprocess.clahe,
      epochs,
      maxMinutes,
      batchSize: budget.batchSize,
      lr,
      patience: budget.patience,
      seed: req.seed,
      initFrom,
      // a model fine-tuned from a pretrained backbone is retrained with the same recipe
      recipe: meta.training?.fineTune?.recipe,
      backboneLrScale: meta.training?.fineTune?.backboneLrScale,
      batchNorm: meta.training?.fineTune?.batchNorm,
      trainableFrom: meta.training?.fineTune?.trainableFrom,
      tta: meta.inference?.tta,
      extraExamples: req.pseudo.map((p) => ({ path: p.path, target: p.labels!, weight: budget.pseudoWeight })),
      // The labelled images the run chose (a smoke run's first few), not the split's whole parts read again.
      partsUsed: { train: req.train.map((t) => t.filename), validation: req.validation.map((t) => t.filename) },
      restart: true,
      quiet: budget.quiet ?? true,
      log,
    });
    return { model: await loadModel(result.modelDir), budget: armBudget(result.history, epochs, maxMinutes, lr, result.trainSeconds, result.bestEpoch) };
  };
}

/**
 * An untrained network of the base's architecture, saved with the base's metadata (classes, preprocessing); for a
 * pretrained backbone, its ImageNet weights with a new head (where the base's own training started).
 */
async function freshCopy(base: FundusModel, dir: string, seed: number): Promise<string> {
  const meta = base.metadata;
  const { network } = await createNetwork(meta.architecture, meta.inputShape, meta.classes.length, { activation: meta.activation, seed });
  const { metrics: _metrics, ...rest } = meta;
  await saveModel(dir, network, { ...rest, thresholds: meta.classes.map(() => 0.5), thresholdPolicy: 'default 0.5', createdAt: new Date().toISOString() });
  network.dispose();
  return dir;
}

/** What an arm's training actually got: epochs (a partial last epoch by its fraction), time, and why it stopped. */
export function armBudget(
  history: { epoch_fraction?: number }[],
  epochsPlanned: number,
  maxMinutes: number | undefined,
  lr: number,
  trainSeconds: number,
  bestEpoch: number | null,
): Omit<ArmBudget, 'wallSeconds'> {
  const epochsRun = history.reduce((a, row) => a + (row.epoch_fraction ?? 1), 0);
  const outOfTime = maxMinutes !== undefined && trainSeconds >= maxMinutes * 60;
  return {
    epochsPlanned,
    epochsRun,
    bestEpoch,
    maxMinutes: maxMinutes ?? null,
    trainSeconds,
    lr,
    stoppedBy: epochsRun >= epochsPlanned ? 'epochs' : outOfTime ? 'time' : 'early-stopping',
  };
}
