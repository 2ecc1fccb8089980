import type * as tfl from '@tensorflow/tfjs-layers';
import { createHash } from 'node:crypto';
import type { ModelMetadata } from '../models/metadata.js';
import type { Example } from '../models/tasks.js';
import { InputError } from '../util/errors.js';
import type { SourceAdversary } from './adversary.js';
import { readState, removeStaleCheckpointTemps, restoreCheckpoint } from './checkpoint.js';
import type { TrainState } from './checkpoint.js';
import type { LoopSettings } from './loop-settings.js';
import type { GroupedAdam } from './optimizer.js';

function hashOf(value: unknown): string {
  return createHash('sha256').update(JSON.stringify(value)).digest('hex').slice(0, 16);
}

/**
 * The fingerprint of everything that shapes a run: a checkpoint resumes only into a run with the same one. `extra`
 * is what the caller adds (task, init model, limit, fine-tuning, member).
 */
export function runConfigHash(
  metadata: ModelMetadata,
  s: LoopSettings,
  batchSize: number,
  data: { train: Example[]; validation: Example[] },
  extra: Record<string, unknown>,
): string {
  return hashOf({
    ...extra,
    architecture: metadata.architecture,
    classes: metadata.classes,
    activation: metadata.activation,
    preprocess: metadata.preprocess,
    epochs: s.epochs,
    batchSize,
    lr: s.lr,
    minLr: s.minLr,
    // absent when 0, so that a run started before the setting existed still resumes
    weightDecay: s.weightDecay || undefined,
    pretrained: s.pretrained,
    adversary: s.adversary,
    lesionAttention: s.lesionAttention,
    warmupEpochs: s.warmupEpochs,
    patience: s.patience,
    monitor: s.monitor,
    seed: s.seed,
    augment: s.augment,
    train: data.train.map((e) => [e.filename, Array.from(e.target), e.weight]),
    validation: data.validation.map((e) => e.filename),
  });
}

/** The state of a run that starts now: epoch 0, no history. */
export function freshState(configHash: string, seed: number): TrainState {
  return {
    version: 1,
    configHash,
    epoch: 0,
    batch: 0,
    step: 0,
    rngState: (seed ^ 0x5bd1e995) >>> 0,
    epochLossSum: 0,
    epochWeightSum: 0,
    history: [],
    best: null,
    badEpochs: 0,
    eventsCreatedAt: Date.now() / 1000,
    elapsedSeconds: 0,
    done: false,
  };
}

/**
 * Opens the run in `runDir`: the checkpoint in `ckptDir` restored into `network`, `optimizer` and `adversary` when
 * there is one of this configuration (another configuration is an InputError, never a silent restart); otherwise
 * `init` sets the starting weights and the state is fresh. Temporary folders of killed runs are removed first.
 */
export async function startOrResume(
  run: { runDir: string; ckptDir: string; configHash: string; seed: number; batchesPerEpoch: number; log: (line: string) => void },
  network: tfl.LayersModel,
  optimizer: GroupedAdam,
  adversary: SourceAdversary | undefined,
  init?: (network: tfl.LayersModel) => Promise<void>,
): Promise<TrainState> {
  const removed = await removeStaleCheckpointTemps(run.runDir);
  if (removed.length) run.log(`removed ${removed.length} temporary checkpoint folder(s) left by interrupted runs`);
  const previous = await readState(run.ckptDir);
  if (!previous) {
    if (init) await init(network);
    return freshState(run.configHash, run.seed);
  }
  if (previous.configHash !== run.configHash) {
    throw new InputError('holds a checkpoint of a different training configuration; pass --restart to discard it, or another --run-dir', { file: run.runDir });
  }
  const state = await restoreCheckpoint(run.ckptDir, network, optimizer);
  await adversary?.restore(run.ckptDir);
  run.log(`resuming from ${run.ckptDir}: epoch ${state.epoch + 1}, batch ${state.batch}/${run.batchesPerEpoch}`);
  return state;
}
