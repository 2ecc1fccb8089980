// The settings of a training run: the options as given, every one left out filled in from the defaults.
import { validatePreprocessSettings } from '../data/preprocess.js';
import type { PreprocessSettings } from '../data/preprocess.js';
import { architectureInfo } from '../models/architectures.js';
import type { ModelMetadata, TrainingRecipe } from '../models/metadata.js';
import { InputError } from '../util/errors.js';
import type { AdversarySettings } from './adversary.js';
import type { LoopSettings } from './loop-settings.js';
import type { TrainOptions } from './train-options.js';

/** The fine-tuning settings a pretrained backbone trains with. */
export type FineTuneSettings = NonNullable<TrainingRecipe['fineTune']>;

/**
 * The preprocessing of the run. Fine-tuning keeps the preprocessing the weights were learnt on (`init`), except the
 * input side: a network that ends in global pooling takes any size, and training at a small size then finishing at a
 * larger one (progressive resizing) buys resolution for a fraction of the time.
 */
export function preprocessFor(opts: TrainOptions, init?: ModelMetadata): PreprocessSettings {
  if (init) {
    if (opts.mask !== undefined || opts.localMean !== undefined) throw new InputError('--mask and --local-mean change what the weights were learnt on: they cannot be combined with --init-from');
    return opts.imageSize ? { ...init.preprocess, size: opts.imageSize } : init.preprocess;
  }
  const info = architectureInfo(opts.model);
  const channels = opts.channels ?? (info.defaultInput[2] === 1 ? 'green' : 'rgb');
  const size = opts.imageSize ?? info.defaultInput[0];
  return validatePreprocessSettings({
    crop: true,
    size,
    channels,
    clahe: opts.clahe ?? false,
    normalize: { mean: [0.5], std: [0.25] },
    resize: opts.resize ?? 'area',
    ...(opts.mask ? { mask: opts.mask } : {}),
    ...(opts.localMean ? { localMean: opts.localMean } : {}),
  });
}

/** How a pretrained backbone fine-tunes; undefined for a network trained from scratch (where these options are an error). */
export function fineTuneFor(opts: TrainOptions): FineTuneSettings | undefined {
  if (!architectureInfo(opts.model).backbone) {
    if (opts.recipe !== undefined || opts.batchNorm !== undefined || opts.trainableFrom !== undefined || opts.backboneLrScale !== undefined) {
      throw new InputError(`--recipe, --batch-norm, --trainable-from and --backbone-lr-scale apply to pretrained backbones (mobilenetv2, resnet50), not ${opts.model}`);
    }
    return undefined;
  }
  return {
    recipe: opts.recipe ?? 'full',
    backboneLrScale: opts.backboneLrScale ?? 0.1,
    batchNorm: opts.batchNorm ?? 'train',
    ...(opts.trainableFrom !== undefined ? { trainableFrom: opts.trainableFrom } : {}),
  };
}

/** The training loop's settings. */
export function loopSettingsFor(opts: TrainOptions, adversary: AdversarySettings | undefined, log: (line: string) => void): LoopSettings {
  return {
    epochs: opts.epochs ?? 30,
    batchSize: opts.batchSize ?? 16,
    lr: opts.lr ?? 1e-3,
    minLr: opts.minLr ?? (opts.lr ?? 1e-3) / 50,
    weightDecay: opts.weightDecay ?? 0,
    warmupEpochs: opts.warmupEpochs ?? 1,
    patience: opts.patience ?? 8,
    monitor: opts.monitor ?? 'val_auc',
    seed: opts.seed ?? 42,
    augment: opts.augment ?? {},
    ...(adversary ? { adversary } : {}),
    checkpointSeconds: opts.checkpointSeconds ?? 120,
    checkpointBatches: opts.checkpointBatches ?? 0,
    maxMinutes: opts.maxMinutes,
    quiet: opts.quiet ?? false,
    onBatch: opts.onBatch,
    log,
  };
}

/** What fundus.json records of how the weights were learnt. */
export function trainingRecord(settings: LoopSettings, opts: Pick<TrainOptions, 'initFrom'>, fineTune: FineTuneSettings | undefined): TrainingRecipe {
  return {
    optimizer: settings.weightDecay ? 'adamw' : 'adam',
    lr: settings.lr,
    minLr: settings.minLr,
    warmupEpochs: settings.warmupEpochs,
    weightDecay: settings.weightDecay ?? 0,
    batchSize: settings.batchSize,
    epochs: settings.epochs,
    augment: settings.augment !== false,
    ...(settings.augment && settings.augment.jpeg ? { cameraAugment: true } : {}),
    seed: settings.seed,
    ...(opts.initFrom ? { initFrom: opts.initFrom } : {}),
    ...(fineTune ? { fineTune } : {}),
    ...(settings.adversary ? { sourceAdversarial: settings.adversary } : {}),
  };
}
