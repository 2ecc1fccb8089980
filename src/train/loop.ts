import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { augment } from '../data/augment.js';
import type { AugmentSettings } from '../data/augment.js';
import { normalizeBytes } from '../data/preprocess.js';
import type { PreprocessSettings } from '../data/preprocess.js';
import { loadModel, saveModel } from '../models/io.js';
import type { ModelMetadata } from '../models/metadata.js';
import { logitsModel } from '../models/architectures.js';
import { balancedClassWeights } from '../models/tasks.js';
import type { Example } from '../models/tasks.js';
import { progress } from '../util/progress.js';
import { copyWeights, readState, removeStaleCheckpointTemps, restoreCheckpoint, saveCheckpoint } from './checkpoint.js';
import type { HistoryRow, TrainState } from './checkpoint.js';
import { writeHistory } from './history.js';
import { splitGraded, weightedSigmoidCrossEntropy, weightedSoftmaxCrossEntropy } from './losses.js';
import { Rng, epochOrder } from './rng.js';
import { learningRateAt } from './schedule.js';
import { scoreProbabilities } from './scores.js';
import { InputError } from '../util/errors.js';
import { recalibrateBatchNorm } from './bnstats.js';
import { GroupedAdam, type ParamGroup } from './optimizer.js';
import { ADVERSARY_BIN, SourceAdversary, adversaryLambda } from './adversary.js';
import type { AdversarySettings } from './adversary.js';

/** The quantity that picks the best epoch and drives early stopping. */
export type Monitor = 'val_auc' | 'val_f1' | 'val_loss';

/** Settings of one training run of one network (a task, or one member of one-vs-normal). */
export interface LoopSettings {
  epochs: number;
  batchSize: number;
  lr: number;
  minLr: number;
  /**
   * Decoupled weight decay (AdamW, as PyTorch's AdamW applies it: every trainable weight shrinks by lr × decay each
   * step); 0 is plain Adam.
   */
  weightDecay?: number;
  warmupEpochs: number;
  patience: number;
  monitor: Monitor;
  seed: number;
  augment: Partial<AugmentSettings> | false;
  /** Save a mid-epoch checkpoint at least this often (seconds) ... */
  checkpointSeconds: number;
  /** ... or every this many batches, whichever comes first (0: off). */
  checkpointBatches: number;
  /** Stop after the epoch during which the run's training time passes this many minutes. */
  maxMinutes?: number;
  quiet: boolean;
  /** Training images whose batch statistics replace the BN moving averages before each validation (0: off). */
  bnCalibrationImages?: number;
  /**
   * Fine-tuning a pretrained backbone: these layers (the pretrained ones) learn at lr × `lrScale`, every other
   * trainable layer (the new head) at lr. Frozen layers are marked non-trainable by the caller.
   */
  pretrained?: { layers: string[]; lrScale: number };
  /** Source-adversarial training: a source head behind a gradient-reversal layer (see adversary.ts). */
  adversary?: AdversarySettings;
  /** Called after every optimiser step (tests use it to simulate a kill). */
  onBatch?: (info: { epoch: number; batch: number; loss: number }) => void | Promise<void>;
  log: (line: string) => void;
}

/** The data of one run: preprocessed bytes of each example, as cached by the data stage. */
export interface LoopData {
  train: Example[];
  trainPixels: Uint8Array[];
  validation: Example[];
  validationPixels: Uint8Array[];
}

export interface LoopResult {
  /** The network with the best epoch's weights. */
  network: tfl.LayersModel;
  history: HistoryRow[];
  best: { value: number; epoch: number } | null;
  /** Validation probabilities of the best network, n×C. */
  validationProbs: Float32Array;
  trainSeconds: number;
  imagesPerSecond: number;
  eventsCreatedAt: number;
}

export const CHECKPOINT_DIR = 'checkpoint';
export const BEST_DIR = 'best';

function hashOf(value: unknown): string {
  return createHash('sha256').update(JSON.stringify(value)).digest('hex').slice(0, 16);
}

/** The trainable variables, split into the pretrained layers' group (at its rate) and the rest. */
function paramGroups(network: tfl.LayersModel, pretrained: LoopSettings['pretrained']): ParamGroup[] {
  const slow = new Set(pretrained?.layers ?? []);
  const vars = (inSlow: boolean) =>
    network.layers.filter((l) => slow.has(l.name) === inSlow).flatMap((l) => l.trainableWeights.map((w) => w.read() as tf.Variable));
  return pretrained ? [{ vars: vars(false), lrScale: 1 }, { vars: vars(true), lrScale: pretrained.lrScale }] : [{ vars: vars(false), lrScale: 1 }];
}

function better(monitor: Monitor, a: number, b: number): boolean {
  return monitor === 'val_loss' ? a < b : a > b;
}

/**
 * AdamW's decoupled decay, applied after Adam's step rather than before it: the weights then differ from PyTorch's
 * order by lr × decay × the step (about 1e-4 of it), and Adam's own native update stays untouched.
 */
function decayWeights(vars: tf.Variable[], amount: number): void {
  tf.tidy(() => {
    for (const v of vars) v.assign(tf.mul(v, 1 - amount));
  });
}

/** Assembles one batch: normalise the cached bytes, augment (when training), stack; targets and sample weights. */
function makeBatch(
  idx: number[],
  examples: Example[],
  pixels: Uint8Array[],
  preprocess: PreprocessSettings,
  inputShape: [number, number, number],
  aug: Partial<AugmentSettings> | false,
  rng: Rng | null,
): { x: tf.Tensor4D; y: tf.Tensor2D; w: tf.Tensor1D; mask?: tf.Tensor2D } {
  const [size, , channels] = inputShape;
  const per = size * size * channels;
  const numClasses = examples[0].target.length;
  const xs = new Float32Array(idx.length * per);
  const ys = new Float32Array(idx.length * numClasses);
  const ws = new Float32Array(idx.length);
  idx.forEach((j, i) => {
    let im = normalizeBytes(pixels[j], channels, preprocess);
    if (aug && rng) im = augment(im, size, channels, rng.fn(), { ...aug, normalize: preprocess.normalize });
    xs.set(im, i * per);
    ys.set(examples[j].target, i * numClasses);
    ws[i] = examples[j].weight;
  });
  const graded = splitGraded(ys);
  return {
    x: tf.tensor4d(xs, [idx.length, size, size, channels]),
    y: tf.tensor2d(graded.targets, [idx.length, numClasses]),
    w: tf.tensor1d(ws),
    ...(graded.mask ? { mask: tf.tensor2d(graded.mask, [idx.length, numClasses]) } : {}),
  };
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
  const numClasses = metadata.classes.length;
  const activation = metadata.activation;
  const { train, trainPixels, validation, validationPixels } = data;
  if (train.length === 0) throw new InputError(`no training examples for ${metadata.task} (${metadata.classes.join(', ')})`);
  if (validation.length === 0) throw new InputError(`no validation examples for ${metadata.task} (${metadata.classes.join(', ')})`);
  const batchSize = Math.min(s.batchSize, train.length);
  const batchesPerEpoch = Math.ceil(train.length / batchSize);
  const schedule = { lr: s.lr, minLr: s.minLr, warmupSteps: Math.round(s.warmupEpochs * batchesPerEpoch), totalSteps: s.epochs * batchesPerEpoch };
  const configHash = hashOf({
    ...configExtra,
    architecture: metadata.architecture,
    classes: metadata.classes,
    activation,
    preprocess: metadata.preprocess,
    epochs: s.epochs,
    batchSize,
    lr: s.lr,
    minLr: s.minLr,
    // absent when 0, so that a run started before the setting existed still resumes
    weightDecay: s.weightDecay || undefined,
    pretrained: s.pretrained,
    adversary: s.adversary,
    warmupEpochs: s.warmupEpochs,
    patience: s.patience,
    monitor: s.monitor,
    seed: s.seed,
    augment: s.augment,
    train: train.map((e) => [e.filename, Array.from(e.target), e.weight]),
    validation: validation.map((e) => e.filename),
  });

  const training = logitsModel(network);
  const adversary = s.adversary ? new SourceAdversary(network, training, s.adversary, s.seed) : undefined;
  const sourceIndex = adversary ? Int32Array.from(train, (e) => adversary.settings.sources.indexOf(e.source ?? '')) : undefined;
  if (sourceIndex?.some((j) => j < 0)) {
    const e = train[sourceIndex.indexOf(-1)];
    throw new InputError(`source-adversarial training: '${e.filename}' comes from no training source (${adversary!.settings.sources.join(', ')})`);
  }
  const groups = paramGroups(network, s.pretrained);
  if (adversary) groups.push({ vars: adversary.vars, lrScale: 1 });
  const optimizer = new GroupedAdam(groups, s.lr);
  const ckptDir = join(runDir, CHECKPOINT_DIR);
  const bestDir = join(runDir, BEST_DIR);
  let state: TrainState;
  const removed = await removeStaleCheckpointTemps(runDir);
  if (removed.length) s.log(`removed ${removed.length} temporary checkpoint folder(s) left by interrupted runs`);
  const previous = await readState(ckptDir);
  if (previous) {
    if (previous.configHash !== configHash) {
      throw new InputError(
        'holds a checkpoint of a different training configuration; pass --restart to discard it, or another --run-dir',
        { file: runDir },
      );
    }
    state = await restoreCheckpoint(ckptDir, network, optimizer);
    await adversary?.restore(ckptDir);
    s.log(`resuming from ${ckptDir}: epoch ${state.epoch + 1}, batch ${state.batch}/${batchesPerEpoch}`);
  } else {
    if (init) await init(network);
    state = {
      version: 1,
      configHash,
      epoch: 0,
      batch: 0,
      step: 0,
      rngState: (s.seed ^ 0x5bd1e995) >>> 0,
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

  const weights = balancedClassWeights(train, numClasses, activation);
  const posW = tf.tensor1d(weights.positive);
  const negW = tf.tensor1d(weights.negative);
  const lossOf = (y: tf.Tensor2D, logits: tf.Tensor2D, w: tf.Tensor1D, mask?: tf.Tensor2D): tf.Scalar =>
    activation === 'softmax' ? weightedSoftmaxCrossEntropy(y, logits, posW, w) : weightedSigmoidCrossEntropy(y, logits, posW, negW, w, mask);

  const checkpoint = async () => {
    await saveCheckpoint(ckptDir, network, metadata, optimizer, state, adversary ? { [ADVERSARY_BIN]: adversary.serialize() } : {});
  };

  /** Precise BN: moving statistics from the first training images (fixed, un-augmented), see bnstats.ts. */
  const calibrate = (): void => {
    const n = Math.min(train.length, s.bnCalibrationImages ?? 512);
    if (n === 0) return;
    function* batches(): Generator<tf.Tensor4D> {
      for (let start = 0; start < n; start += batchSize) {
        const idx = Array.from({ length: Math.min(batchSize, n - start) }, (_, i) => start + i);
        if (idx.length < 2) break; // a single image has no batch variance
        const b = makeBatch(idx, train, trainPixels, metadata.preprocess, metadata.inputShape, false, null);
        tf.dispose([b.y, b.w, b.mask ?? []]);
        yield b.x;
        b.x.dispose();
      }
    }
    recalibrateBatchNorm(network, batches());
  };

  /** Validation logits → loss and probabilities, batched, inference mode. */
  const validate = (): { loss: number; probs: Float32Array; targets: Float32Array } => {
    const probs = new Float32Array(validation.length * numClasses);
    const targets = new Float32Array(validation.length * numClasses);
    let lossSum = 0;
    for (let start = 0; start < validation.length; start += batchSize) {
      const idx = Array.from({ length: Math.min(batchSize, validation.length - start) }, (_, i) => start + i);
      const b = makeBatch(idx, validation, validationPixels, metadata.preprocess, metadata.inputShape, false, null);
      const [l, p] = tf.tidy(() => {
        const logits = training.predict(b.x) as tf.Tensor2D;
        const loss = lossOf(b.y, logits, b.w, b.mask);
        const pr = activation === 'softmax' ? tf.softmax(logits) : tf.sigmoid(logits);
        return [loss.dataSync()[0], pr.dataSync() as Float32Array];
      });
      lossSum += l * idx.length;
      probs.set(p, start * numClasses);
      // the targets as given, NaN where not graded, so that scoring skips those
      idx.forEach((j, i) => targets.set(validation[j].target, (start + i) * numClasses));
      tf.dispose([b.x, b.y, b.w, b.mask ?? []]);
    }
    return { loss: lossSum / validation.length, probs, targets };
  };

  let imagesSeen = 0;
  let secondsSpent = 0;
  let lastLogAt = Date.now();
  const rng = new Rng(state.rngState);
  while (!state.done && state.epoch < s.epochs) {
    const epoch = state.epoch;
    const order = epochOrder(train.length, s.seed, epoch);
    const bar = progress(`epoch ${epoch + 1}/${s.epochs}`, batchesPerEpoch, { quiet: s.quiet });
    bar.tick(state.batch);
    const lastBest = state.best ? state.best.value : NaN;
    let sinceCheckpoint = 0;
    let partial = 1;
    let lastCheckpointAt = Date.now();
    let tick = Date.now();
    for (let b = state.batch; b < batchesPerEpoch; b++) {
      const idx = order.slice(b * batchSize, (b + 1) * batchSize);
      rng.state = state.rngState;
      const batch = makeBatch(idx, train, trainPixels, metadata.preprocess, metadata.inputShape, s.augment, rng);
      const lr = learningRateAt(schedule, state.step);
      optimizer.setLearningRate(lr);
      let advT: tf.Scalar | undefined;
      const lossT = optimizer.minimize(() => {
        if (!adversary) return lossOf(batch.y, training.apply(batch.x, { training: true }) as tf.Tensor2D, batch.w, batch.mask);
        const [logits, features] = adversary.twoHeaded.apply(batch.x, { training: true }) as tf.Tensor2D[];
        const src = tf.tensor1d(Int32Array.from(idx, (j) => sourceIndex![j]), 'int32');
        const adv = adversary.loss(features, src, batch.w, adversaryLambda(adversary.settings.weight, state.step / schedule.totalSteps));
        advT = tf.keep(tf.clone(adv));
        return tf.add(lossOf(batch.y, logits, batch.w, batch.mask), adv) as tf.Scalar;
      });
      if (s.weightDecay) for (const g of optimizer.groups) decayWeights(g.vars, lr * g.lrScale * s.weightDecay);
      const loss = (await lossT.data())[0];
      if (advT) state.epochAdvSum = (state.epochAdvSum ?? 0) + (await advT.data())[0] * idx.reduce((a, j) => a + train[j].weight, 0);
      tf.dispose([lossT, batch.x, batch.y, batch.w, batch.mask ?? [], advT ?? []]);
      if (!Number.isFinite(loss)) throw new Error(`training diverged: loss is ${loss} at epoch ${epoch + 1}, batch ${b + 1} (try a lower --lr)`);
      const bw = idx.reduce((a, j) => a + train[j].weight, 0);
      state.epochLossSum += loss * bw;
      state.epochWeightSum += bw;
      state.batch = b + 1;
      state.step++;
      state.rngState = rng.state;
      const now = Date.now();
      secondsSpent += (now - tick) / 1000;
      state.elapsedSeconds += (now - tick) / 1000;
      imagesSeen += idx.length;
      bar.tick(1, { loss: state.epochLossSum / state.epochWeightSum, ...(Number.isFinite(lastBest) ? { [`best_${s.monitor}`]: lastBest } : {}) });
      if (!process.stderr.isTTY && now - lastLogAt >= 60_000) {
        // Without a terminal there is no bar: a line a minute lets a log file show the run is alive, and how fast.
        s.log(`  epoch ${epoch + 1} batch ${b + 1}/${batchesPerEpoch} loss ${(state.epochLossSum / state.epochWeightSum).toFixed(4)} ` +
          `${(imagesSeen / secondsSpent).toFixed(2)} images/s`);
        lastLogAt = now;
      }
      await s.onBatch?.({ epoch, batch: b, loss });
      sinceCheckpoint++;
      if (
        b + 1 < batchesPerEpoch &&
        ((s.checkpointBatches > 0 && sinceCheckpoint >= s.checkpointBatches) || now - lastCheckpointAt >= s.checkpointSeconds * 1000)
      ) {
        await checkpoint();
        sinceCheckpoint = 0;
        lastCheckpointAt = Date.now();
      }
      tick = Date.now();
      if (s.maxMinutes !== undefined && state.elapsedSeconds >= s.maxMinutes * 60 && b + 1 < batchesPerEpoch) {
        // Out of time mid-epoch: validate now, so that the run still ends with a checked, best-selected model.
        s.log(`time budget of ${s.maxMinutes} min reached at batch ${b + 1}/${batchesPerEpoch} of epoch ${epoch + 1}`);
        partial = (b + 1) / batchesPerEpoch;
        break;
      }
    }
    bar.stop();

    calibrate();
    const v = validate();
    const sc = scoreProbabilities(v.targets, v.probs, numClasses, 0.5);
    const row: HistoryRow = {
      epoch: epoch + 1,
      loss: state.epochLossSum / Math.max(1e-8, state.epochWeightSum),
      val_loss: v.loss,
      val_auc: sc.macroAuc ?? NaN,
      val_f1: sc.meanF1 ?? NaN,
      lr: learningRateAt(schedule, Math.max(0, state.step - 1)),
      seconds: state.elapsedSeconds,
      wall_time: Date.now() / 1000,
      ...(partial < 1 ? { epoch_fraction: partial } : {}),
      // the source head's cross-entropy (included in `loss`): near log(sources) when the features hide the source
      ...(adversary ? { adv_loss: (state.epochAdvSum ?? 0) / Math.max(1e-8, state.epochWeightSum) } : {}),
    };
    const value = row[s.monitor];
    state.history.push(row);
    const improved = Number.isFinite(value) && (!state.best || better(s.monitor, value, state.best.value));
    if (improved) {
      state.best = { value, epoch: epoch + 1 };
      state.badEpochs = 0;
      await saveModel(bestDir, network, metadata);
    } else {
      state.badEpochs++;
    }
    s.log(
      `epoch ${epoch + 1}/${s.epochs}: loss ${row.loss.toFixed(4)} val_loss ${row.val_loss.toFixed(4)} ` +
        `val_auc ${row.val_auc.toFixed(4)} val_f1 ${row.val_f1.toFixed(4)}${improved ? ' (best)' : ''} [${state.elapsedSeconds.toFixed(0)} s]`,
    );
    state.epoch = epoch + 1;
    state.batch = 0;
    state.epochLossSum = 0;
    state.epochWeightSum = 0;
    if (adversary) state.epochAdvSum = 0;
    if (state.badEpochs >= s.patience) {
      s.log(`early stopping: ${s.monitor} has not improved for ${s.patience} epochs`);
      state.done = true;
    }
    if (s.maxMinutes !== undefined && state.elapsedSeconds >= s.maxMinutes * 60 && state.epoch < s.epochs) {
      if (partial === 1) s.log(`time budget of ${s.maxMinutes} min reached after epoch ${state.epoch}`);
      state.done = true;
    }
    if (state.epoch >= s.epochs) state.done = true;
    await writeHistory(runDir, state.history, state.eventsCreatedAt);
    await checkpoint();
  }
  optimizer.dispose();
  adversary?.dispose();

  // The best epoch's weights; the last ones when no epoch produced a finite metric.
  if (state.best) {
    const best = await loadModel(bestDir);
    copyWeights(best.network, network, bestDir);
    best.network.dispose();
  }
  const v = validate();
  tf.dispose([posW, negW]);
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
