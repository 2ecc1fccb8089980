import { join } from 'node:path';
import { loadModel } from '../models/io.js';
import { trainModel } from '../train/train.js';
import type { Retrainer } from './pipeline.js';

export interface TrainingBudget {
  epochs: number;
  /** Stop after the epoch in which training time passes this (per retrained model). */
  maxMinutes?: number;
  batchSize?: number;
  /** Peak learning rate for training from scratch. */
  lr?: number;
  /** Peak learning rate for fine-tuning (lower: the weights are already good). */
  finetuneLr?: number;
  patience?: number;
  /** Weight of a pseudo-labelled example in the loss, relative to a labelled one. */
  pseudoWeight: number;
  /** Use at most this many images of each split part (smoke runs and tests). */
  limit?: number;
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
    const result = await trainModel({
      task: meta.task,
      model: meta.architecture,
      csv: data.csv,
      images: data.images,
      split: data.split,
      out: req.outDir,
      runDir: join(data.runsDir, req.outDir.split('/').pop()!),
      imageSize: meta.preprocess.size,
      channels: meta.preprocess.channels,
      clahe: meta.preprocess.clahe,
      epochs: budget.epochs,
      maxMinutes: budget.maxMinutes,
      batchSize: budget.batchSize,
      lr: req.mode === 'finetune' ? (budget.finetuneLr ?? (budget.lr ?? 1e-3) / 10) : budget.lr,
      patience: budget.patience,
      seed: req.seed,
      initFrom: req.mode === 'finetune' ? req.base.dir : undefined,
      extraExamples: req.pseudo.map((p) => ({ path: p.path, target: p.labels!, weight: budget.pseudoWeight })),
      limit: budget.limit,
      restart: true,
      quiet: budget.quiet ?? true,
      log,
    });
    return loadModel(result.modelDir);
  };
}
