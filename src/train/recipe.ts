// The settings of a training run: the options as given, every one left out filled in from the defaults: the
// recipe the shipped model was trained with for pretrained backbones, the from-scratch recipe for the others.
import { CAMERA_AUGMENT } from '../data/augment.js';
import type { AugmentSettings } from '../data/augment.js';
import { validatePreprocessSettings } from '../data/preprocess.js';
import type { PreprocessSettings } from '../data/preprocess.js';
import { architectureInfo } from '../models/architectures.js';
import type { ModelMetadata, Task, TestTimeAugmentation, TrainingRecipe } from '../models/metadata.js';
import { InputError } from '../util/errors.js';
import type { AdversarySettings } from './adversary.js';
import type { LoopSettings, Monitor } from './loop-settings.js';
import type { TrainOptions } from './train-options.js';

/** The fine-tuning settings a pretrained backbone trains with. */
export type FineTuneSettings = NonNullable<TrainingRecipe['fineTune']>;

/** What a run trains with when its options leave it out. */
export interface Recipe {
  epochs: number;
  batchSize: number;
  /** Peak learning rate; the cosine schedule ends at lr / 50. */
  lr: number;
  /** Decoupled weight decay (AdamW); 0 is plain Adam. */
  weightDecay: number;
  warmupEpochs: number;
  /** Early stopping: epochs without improvement of the monitored metric. */
  patience: number;
  /** The augmentation (`--no-augment` turns it off). */
  augment: Partial<AugmentSettings>;
  /** A standard circular field around the disc (camera-invariant preprocessing); never with `--init-from`. */
  mask?: PreprocessSettings['mask'];
  tta: TestTimeAugmentation;
}

/**
 * How the shipped model (models/default, scripts/train-bundled.sh) was trained: an ImageNet backbone fine-tuned
 * whole, its layers at 0.1x the head's rate, AdamW, a 12-epoch warm-up + cosine schedule, camera augmentation, the
 * circle mask and flip test-time augmentation. The defaults of every pretrained backbone (mobilenetv2, resnet50).
 */
export const PRETRAINED_RECIPE: Recipe & { fineTune: FineTuneSettings } = {
  epochs: 12,
  batchSize: 16,
  lr: 1e-3,
  weightDecay: 0.05,
  warmupEpochs: 1,
  patience: 5,
  augment: CAMERA_AUGMENT,
  mask: 'circle',
  tta: 'hflip',
  fineTune: { recipe: 'full', backboneLrScale: 0.1, batchNorm: 'train' },
};

/**
 * The defaults of networks trained from scratch (alexnet, resnet18-narrow, small-cnn): Adam, 30 epochs, the usual
 * augmentation; the inputs are the architecture's own (the reference AlexNet: green channel, 227 px), unmasked.
 */
export const SCRATCH_RECIPE: Recipe = {
  epochs: 30,
  batchSize: 16,
  lr: 1e-3,
  weightDecay: 0,
  warmupEpochs: 1,
  patience: 8,
  augment: {},
  tta: 'none',
};

/** The run's settings that do not depend on how the network starts (the CLI's --help shows these). */
export const RUN_DEFAULTS: { seed: number; monitor: Monitor; checkpointSeconds: number } = {
  seed: 42,
  /** The validation metric that picks the best epoch and stops early. */
  monitor: 'val_auc',
  /** A mid-epoch checkpoint at least this often. */
  checkpointSeconds: 120,
};

export const DEFAULT_TASK: Task = 'multilabel';
/** The architecture of a run that names none (and has no --init-from): the shipped model's. */
export const DEFAULT_MODEL = 'mobilenetv2';
/** One-vs-normal trains one network per pathology from scratch: no pretrained backbone, so its own default. */
export const DEFAULT_ONE_VS_NORMAL_MODEL = 'resnet18-narrow';

/** The defaults of `model`: the shipped recipe for a pretrained backbone, else the from-scratch one. */
export function recipeFor(model: string): Recipe {
  return architectureInfo(model).backbone ? PRETRAINED_RECIPE : SCRATCH_RECIPE;
}

/** The architecture of a run: as given, else the --init-from model's, else the default of the task. */
export function modelFor(task: Task, model: string | undefined, init?: ModelMetadata): string {
  return model ?? init?.architecture ?? (task === 'one-vs-normal' ? DEFAULT_ONE_VS_NORMAL_MODEL : DEFAULT_MODEL);
}

/** The test-time augmentation a model records: as given, else the --init-from model's, else the recipe's. */
export function ttaFor(opts: Pick<RunOptions, 'tta' | 'model'>, init?: ModelMetadata): TestTimeAugmentation {
  return opts.tta ?? (init ? (init.inference?.tta ?? 'none') : recipeFor(opts.model).tta);
}

/** The options of a run once its task and architecture are settled. */
export type RunOptions = TrainOptions & { task: Task; model: string };

/**
 * The preprocessing of the run. Fine-tuning keeps the preprocessing the weights were learnt on (`init`), except the
 * input side: a network that ends in global pooling takes any size, and training at a small size then finishing at a
 * larger one (progressive resizing) buys resolution for a fraction of the time.
 */
export function preprocessFor(opts: RunOptions, init?: ModelMetadata): PreprocessSettings {
  if (init) {
    if (opts.mask !== undefined || opts.localMean !== undefined) throw new InputError('--mask and --local-mean change what the weights were learnt on: they cannot be combined with --init-from');
    return opts.imageSize ? { ...init.preprocess, size: opts.imageSize } : init.preprocess;
  }
  const info = architectureInfo(opts.model);
  const channels = opts.channels ?? (info.defaultInput[2] === 1 ? 'green' : 'rgb');
  const size = opts.imageSize ?? info.defaultInput[0];
  const mask = opts.mask === undefined ? recipeFor(opts.model).mask : opts.mask === 'none' ? undefined : opts.mask;
  return validatePreprocessSettings({
    crop: true,
    size,
    channels,
    clahe: opts.clahe ?? false,
    normalize: { mean: [0.5], std: [0.25] },
    resize: opts.resize ?? 'area',
    ...(mask ? { mask } : {}),
    ...(opts.localMean ? { localMean: opts.localMean } : {}),
  });
}

/** How a pretrained backbone fine-tunes; undefined for a network trained from scratch (where these options are an error). */
export function fineTuneFor(opts: RunOptions): FineTuneSettings | undefined {
  if (!architectureInfo(opts.model).backbone) {
    if (opts.recipe !== undefined || opts.batchNorm !== undefined || opts.trainableFrom !== undefined || opts.backboneLrScale !== undefined) {
      throw new InputError(`--recipe, --batch-norm, --trainable-from and --backbone-lr-scale apply to pretrained backbones (mobilenetv2, resnet50), not ${opts.model}`);
    }
    return undefined;
  }
  const d = PRETRAINED_RECIPE.fineTune;
  return {
    recipe: opts.recipe ?? d.recipe,
    backboneLrScale: opts.backboneLrScale ?? d.backboneLrScale,
    batchNorm: opts.batchNorm ?? d.batchNorm,
    ...(opts.trainableFrom !== undefined ? { trainableFrom: opts.trainableFrom } : {}),
  };
}

/** The training loop's settings. */
export function loopSettingsFor(opts: RunOptions, adversary: AdversarySettings | undefined, log: (line: string) => void): LoopSettings {
  const d = recipeFor(opts.model);
  const lr = opts.lr ?? d.lr;
  return {
    epochs: opts.epochs ?? d.epochs,
    batchSize: opts.batchSize ?? d.batchSize,
    lr,
    minLr: opts.minLr ?? lr / 50,
    weightDecay: opts.weightDecay ?? d.weightDecay,
    warmupEpochs: opts.warmupEpochs ?? d.warmupEpochs,
    patience: opts.patience ?? d.patience,
    monitor: opts.monitor ?? RUN_DEFAULTS.monitor,
    seed: opts.seed ?? RUN_DEFAULTS.seed,
    augment: opts.augment ?? { ...d.augment },
    ...(adversary ? { adversary } : {}),
    checkpointSeconds: opts.checkpointSeconds ?? RUN_DEFAULTS.checkpointSeconds,
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
