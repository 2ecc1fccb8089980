import type { AugmentSettings } from '../data/augment.js';
import type { PreprocessSettings } from '../data/preprocess.js';
import type { FineTuneRecipe, ModelMetadata, Task, TestTimeAugmentation } from '../models/metadata.js';
import type { HistoryRow } from './checkpoint.js';
import type { LoopSettings, Monitor } from './loop-settings.js';

/** A pseudo-labelled example for self-learning: targets in the task's class order, and how much it counts. */
export interface ExtraExample {
  path: string;
  /** Targets in the task's class order (for one-vs-normal: the 7 classes of the dataset). */
  target: ArrayLike<number>;
  weight: number;
}

/**
 * A training run. Every setting left out takes its default (see recipe.ts): for a pretrained backbone, the recipe
 * the shipped model was trained with; for a network trained from scratch, the from-scratch one.
 */
export interface TrainOptions {
  /** Default `multilabel`. */
  task?: Task;
  /**
   * Architecture name (see architectures.ts); default: the `initFrom` model's, else `mobilenetv2` from its ImageNet
   * weights (`resnet18-narrow` for one-vs-normal, whose members train from scratch).
   */
  model?: string;
  /** One labelled source: a CSV, its image folder and a split file ... */
  csv?: string;
  images?: string;
  /** Absent: a split is made as `fundus data split` makes it (splitDataset's defaults) into `<runDir>/split.json`. */
  split?: string;
  /** ... or a datasets file listing several sources (see data/datasets.ts); their training sources are joined. */
  datasets?: string;
  /** Reweight examples so that every source weighs the same in the loss (with `datasets`). */
  balanceSources?: boolean;
  /** Source-adversarial training at this strength (DANN's λ; with `datasets` of two or more training sources). */
  sourceAdversarial?: number;
  /** The source head's learning rate over the task head's (default 1; see AdversarySettings.lrScale). */
  adversaryLrScale?: number;
  /**
   * Lesion-guided attention at this weight (see lesion-attention.ts): the `lesionClass` map of the training
   * photographs with boxes in `lesions` is pushed into those boxes.
   */
  lesionAttention?: number;
  /** The lesion boxes (a codras- or heimed-format CSV; photographs matched by file name). */
  lesions?: string;
  /** With several training sources: the source whose photographs the boxes belong to. */
  lesionSource?: string;
  /** The class whose map is guided (default: the table format's lesion class, diabetic retinopathy for codras). */
  lesionClass?: string;
  /** The layer whose Grad-CAM map is guided (default: the class activation map behind the global pooling). */
  lesionLayer?: string;
  /**
   * Instead of guiding a CAM map, add a lesion map head on `lesionLayer` (src/models/lesion-head.ts), trained as weak
   * segmentation from the boxes at the `lesionAttention` weight, whose peak feeds the class's score.
   */
  lesionHead?: boolean;
  /** The model directory to write. */
  out: string;
  /** Checkpoints, history and TensorBoard files (default `runs/<basename of out>`). */
  runDir?: string;
  epochs?: number;
  batchSize?: number;
  lr?: number;
  /** Final learning rate of the cosine schedule (default lr/50). */
  minLr?: number;
  /** Decoupled weight decay (AdamW); 0 is plain Adam. */
  weightDecay?: number;
  warmupEpochs?: number;
  /** Input side in pixels (default: the architecture's). */
  imageSize?: number;
  channels?: 'green' | 'rgb';
  clahe?: boolean;
  /** How photos are brought to the input size (see PreprocessSettings.resize); default `area`. */
  resize?: PreprocessSettings['resize'];
  /**
   * Camera-invariant preprocessing (see PreprocessSettings): a standard circular field (`none`: no mask, where the
   * recipe has one), local mean subtraction.
   */
  mask?: PreprocessSettings['mask'] | 'none';
  localMean?: PreprocessSettings['localMean'];
  /** The augmentation (the recipe's: camera augmentation too for pretrained backbones); false: none. */
  augment?: Partial<AugmentSettings> | false;
  patience?: number;
  monitor?: Monitor;
  seed?: number;
  /** Start from this model directory's weights (fine-tuning; self-learning rounds). */
  initFrom?: string;
  /** Asks for the architecture's pretrained weights (the only ones are ImageNet's): an error for one that has none. */
  pretrained?: 'imagenet';
  /** Pretrained backbones (`resnet50`, `mobilenetv2`): how to fine-tune them (default `full`). */
  recipe?: FineTuneRecipe;
  /** The backbone's learning rate as a multiple of the head's (default 0.1). */
  backboneLrScale?: number;
  /** `train` (default): batch norm uses batch statistics while training; `frozen`: keeps the pretrained ones. */
  batchNorm?: 'frozen' | 'train';
  /** `partial` recipe: first trainable backbone layer (default: the start of the last stage). */
  trainableFrom?: string;
  /** Test-time augmentation the model records and prediction applies (default: the `initFrom` model's, else the recipe's). */
  tta?: TestTimeAugmentation;
  /** Folder of the backbone weights, instead of the shipped or cached ones (tests). */
  weightsDir?: string;
  /** Pseudo-labelled examples added to the training part (self-learning). */
  extraExamples?: ExtraExample[];
  checkpointSeconds?: number;
  checkpointBatches?: number;
  maxMinutes?: number;
  /** Discard an existing checkpoint in the run directory instead of resuming. */
  restart?: boolean;
  /** Replace a fundus model already at `out` that another run wrote (never a folder that is not a fundus model). */
  force?: boolean;
  /** Use at most this many images of each split part (smoke runs). */
  limit?: number;
  /**
   * Train (or validate) on these images of a split part instead of the whole part, in this order; each must be in
   * that part. Self-learning's retrainer hands over the labelled images its run chose (a smoke run's first few).
   */
  partsUsed?: Partial<Record<'train' | 'validation', string[]>>;
  cacheDir?: string;
  quiet?: boolean;
  onBatch?: LoopSettings['onBatch'];
  log?: (line: string) => void;
}

export interface TrainResult {
  modelDir: string;
  metadata: ModelMetadata;
  history: HistoryRow[];
  bestEpoch: number | null;
  trainSeconds: number;
  imagesPerSecond: number;
}
