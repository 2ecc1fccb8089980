import type * as tfl from '@tensorflow/tfjs-layers';
import { join } from 'node:path';
import { disposeModel, loadModel, saveModel } from '../models/io.js';
import type { ModelMetadata } from '../models/metadata.js';
import { InputError } from '../util/errors.js';
import { ADVERSARY_BIN } from './adversary.js';
import { disposeBatch, makeBatch, weightOf } from './batch.js';
import type { CachedPart, InputSpec } from './batch.js';
import { BatchProgress } from './batch-progress.js';
import { copyWeights, saveCheckpoint } from './checkpoint.js';
import type { TrainState } from './checkpoint.js';
import { CheckpointPolicy } from './checkpoint-policy.js';
import { budgetSpent, closeEpoch, epochRow } from './epoch-end.js';
import { writeHistory } from './history.js';
import type { LoopData, LoopResult, LoopSettings } from './loop-settings.js';
import { Rng, epochOrder } from './rng.js';
import { runConfigHash, startOrResume } from './run-state.js';
import { learningRateAt } from './schedule.js';
import type { LrSchedule } from './schedule.js';
import { createLearner, disposeLearner, trainStep } from './step.js';
import type { Learner } from './step.js';
import { calibrateBatchNorm, validate } from './validation.js';

export type { LoopData, LoopResult, LoopSettings, Monitor } from './loop-settings.js';

export const CHECKPOINT_DIR = 'checkpoint';
export const BEST_DIR = 'best';

/** What the epochs of one run share. */
interface Run {
  s: LoopSettings;
  learner: Learner;
  train: CachedPart;
  input: InputSpec;
  batchSize: number;
  batchesPerEpoch: number;
  schedule: LrSchedule;
  progress: BatchProgress;
  /** Saves the checkpoint of the run as it stands. */
  checkpoint: () => Promise<void>;
}

/**
 * The training batches of the epoch in `state`, from the batch it stands at: one optimiser step each, mid-epoch
 * checkpoints as the policy asks. Returns the share of the epoch done: 1, or less when the time budget ran out.
 */
async function trainEpoch(run: Run, state: TrainState, rng: Rng): Promise<number> {
  const { s, train, batchSize, batchesPerEpoch, schedule } = run;
  const epoch = state.epoch;
  const order = epochOrder(train.examples.length, s.seed, epoch);
  const policy = new CheckpointPolicy(s, batchesPerEpoch);
  run.progress.startEpoch(epoch, state.batch, state.best ? state.best.value : NaN);
  let tick = Date.now();
  try {
    for (let b = state.batch; b < batchesPerEpoch; b++) {
      const idx = order.slice(b * batchSize, (b + 1) * batchSize);
      rng.state = state.rngState;
      const batch = makeBatch(idx, train, run.input, s.augment, rng, run.learner.attention?.grid);
      const step = await trainStep(run.learner, batch, idx, learningRateAt(schedule, state.step), state.step / schedule.totalSteps);
      disposeBatch(batch);
      const bw = weightOf(idx, train.examples);
      if (step.advLoss !== undefined) state.epochAdvSum = (state.epochAdvSum ?? 0) + step.advLoss * bw;
      // A batch without boxes in view adds no attention loss: the mean is over the batches that had some.
      if (step.attentionLoss !== undefined && step.attentionLoss > 0) {
        state.epochAttentionSum = (state.epochAttentionSum ?? 0) + step.attentionLoss;
        state.epochAttentionBatches = (state.epochAttentionBatches ?? 0) + 1;
      }
      if (!Number.isFinite(step.loss)) throw new Error(`training diverged: loss is ${step.loss} at epoch ${epoch + 1}, batch ${b + 1} (try a lower --lr)`);
      state.epochLossSum += step.loss * bw;
      state.epochWeightSum += bw;
      state.batch = b + 1;
      state.step++;
      state.rngState = rng.state;
      const now = Date.now();
      state.elapsedSeconds += (now - tick) / 1000;
      const weightSum = state.epochWeightSum;
      run.progress.batchDone(b, idx.length, (now - tick) / 1000, state.epochLossSum / weightSum, now, {
        ...(state.epochAdvSum !== undefined ? { adv_loss: state.epochAdvSum / weightSum } : {}),
        ...(state.epochAttentionBatches ? { attention_loss: state.epochAttentionSum! / state.epochAttentionBatches } : {}),
      });
      await s.onBatch?.({ epoch, batch: b, loss: step.loss });
      if (policy.afterBatch(b, now)) {
        await run.checkpoint();
        policy.saved();
      }
      tick = Date.now();
      if (budgetSpent(s, state) && b + 1 < batchesPerEpoch) {
        // Out of time mid-epoch: validate now, so that the run still ends with a checked, best-selected model.
        s.log(`time budget of ${s.maxMinutes} min reached at batch ${b + 1}/${batchesPerEpoch} of epoch ${epoch + 1}`);
        return (b + 1) / batchesPerEpoch;
      }
    }
    return 1;
  } finally {
    run.progress.endEpoch();
  }
}

/**
 * Trains `network` on `data` with Adam, a warm-up + cosine learning rate schedule, augmentation, early stopping on
 * `monitor` and the best epoch kept. Everything needed to continue is checkpointed (atomically) under `runDir`; a
 * run started again with the same configuration resumes from the last checkpoint, mid-epoch included, and ends with
 * the same weights as an uninterrupted run.
 */
export async function trainLoop(
  network: tfl.LayersModel,
  metadata: ModelMetadata,
  data: LoopData,
  s: LoopSettings,
  runDir: string,
  configExtra: Record<string, unknown>,
  init?: (network: tfl.LayersModel) => Promise<void>,
): Promise<LoopResult> {
  const { train, validation } = data;
  if (train.length === 0) throw new InputError(`no training examples for ${metadata.task} (${metadata.classes.join(', ')})`);
  if (validation.length === 0) throw new InputError(`no validation examples for ${metadata.task} (${metadata.classes.join(', ')})`);
  const batchSize = Math.min(s.batchSize, train.length);
  const batchesPerEpoch = Math.ceil(train.length / batchSize);
  const schedule = { lr: s.lr, minLr: s.minLr, warmupSteps: Math.round(s.warmupEpochs * batchesPerEpoch), totalSteps: s.epochs * batchesPerEpoch };
  const configHash = runConfigHash(metadata, s, batchSize, data, configExtra);
  const learner = createLearner(network, metadata, train, s);
  const { adversary } = learner;
  const ckptDir = join(runDir, CHECKPOINT_DIR);
  const bestDir = join(runDir, BEST_DIR);
  const state = await startOrResume({ runDir, ckptDir, configHash, seed: s.seed, batchesPerEpoch, log: s.log }, network, learner.optimizer, adversary, init);

  const trainPart: CachedPart = { examples: train, pixels: data.trainPixels, ...(data.trainLesionBoxes ? { lesionBoxes: data.trainLesionBoxes } : {}) };
  const valPart: CachedPart = { examples: validation, pixels: data.validationPixels };
  const input: InputSpec = { preprocess: metadata.preprocess, inputShape: metadata.inputShape };
  const run: Run = {
    s,
    learner,
    train: trainPart,
    input,
    batchSize,
    batchesPerEpoch,
    schedule,
    progress: new BatchProgress(s, batchesPerEpoch),
    checkpoint: () => saveCheckpoint(ckptDir, network, metadata, learner.optimizer, state, adversary ? { [ADVERSARY_BIN]: adversary.serialize() } : {}),
  };
  const validateNetwork = () => validate(learner.logits, metadata.activation, learner.loss, valPart, input, batchSize);

  const rng = new Rng(state.rngState);
  while (!state.done && state.epoch < s.epochs) {
    const fraction = await trainEpoch(run, state, rng);
    calibrateBatchNorm(network, trainPart, input, s.bnCalibrationImages ?? 512, batchSize);
    const row = epochRow(state, validateNetwork(), metadata.classes.length, schedule, fraction, { adversary: adversary !== undefined, attention: learner.attention !== undefined });
    if (closeEpoch(state, row, s, fraction)) await saveModel(bestDir, network, metadata);
    await writeHistory(runDir, state.history, state.eventsCreatedAt);
    await run.checkpoint();
  }

  // The best epoch's weights; the last ones when no epoch produced a finite metric.
  if (state.best) {
    const best = await loadModel(bestDir);
    copyWeights(best.network, network, bestDir);
    disposeModel(best);
  }
  const v = validateNetwork();
  disposeLearner(learner);
  return {
    network,
    history: state.history,
    best: state.best,
    validationProbs: v.probs,
    trainSeconds: state.elapsedSeconds,
    // over the whole run, resumes included: a run resumed only to be finalised saw no images in this process
    imagesPerSecond: state.elapsedSeconds > 0 ? (train.length * state.history.reduce((a, h) => a + (h.epoch_fraction ?? 1), 0)) / state.elapsedSeconds : NaN,
    eventsCreatedAt: state.eventsCreatedAt,
  };
}
