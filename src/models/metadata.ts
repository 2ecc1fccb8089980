import type { PreprocessSettings } from '../data/preprocess.js';
import type { BackboneProvenance } from './backbones.js';

/**
 * How a pretrained backbone was fine-tuned: `probe` fits only the new head on frozen features; `partial` trains the
 * layers from `trainableFrom` on (the last stage) and the head; `full` trains every layer, the backbone at
 * `backboneLrScale` times the head's rate.
 */
export type FineTuneRecipe = 'probe' | 'partial' | 'full';

/** The three training tasks of fundus (see the README). */
export type Task = 'multilabel' | 'focus' | 'focus-sigmoid' | 'one-vs-normal';

/** The optimiser settings of a training run, so that a model card can say how its weights were learnt. */
export interface TrainingRecipe {
  /** `adamw` when a decoupled weight decay was applied, else `adam`. */
  optimizer: 'adam' | 'adamw';
  /** Peak learning rate, reached after `warmupEpochs` of linear warm-up, then cosine decay to `minLr`. */
  lr: number;
  minLr: number;
  warmupEpochs: number;
  weightDecay: number;
  batchSize: number;
  /** Epochs the schedule was set for (early stopping or a time budget may end the run sooner). */
  epochs: number;
  augment: boolean;
  /** Camera augmentation too (blur, colour temperature, noise, resampling, JPEG re-compression; see data/augment.ts). */
  cameraAugment?: boolean;
  /** Source-adversarial training: the sources the reversed-gradient head told apart, its strength and learning-rate scale. */
  sourceAdversarial?: { sources: string[]; weight: number; lrScale?: number };
  /**
   * Lesion-guided attention: the class whose map was pushed into expert lesion boxes, the loss's weight, the boxes'
   * file as given, how many training photographs and boxes it covered, and the layer whose Grad-CAM map was guided
   * (none: the class activation map behind the global pooling). With `head`, a lesion map head on that layer was trained
   * as weak segmentation instead, also on `negatives` photographs graded free of the class (src/models/lesion-head.ts).
   */
  lesionAttention?: { className: string; weight: number; lesions: string; photographs: number; boxes: number; layer?: string; head?: boolean; negatives?: number };
  seed: number;
  /** The model directory whose weights the run started from (fine-tuning), as given. */
  initFrom?: string;
  /** Pretrained backbones only: the fine-tuning recipe and its settings. */
  fineTune?: {
    recipe: FineTuneRecipe;
    backboneLrScale: number;
    /** `frozen`: batch-norm layers keep their pretrained statistics and affine weights; `train`: batch statistics. */
    batchNorm: 'frozen' | 'train';
    trainableFrom?: string;
    /** `probe` only: the L2 penalty chosen by validation and the full-batch Adam step kept. */
    probe?: { l2: number; step: number };
  };
}

/**
 * A model's own default heatmap: a CAM method name (one of CAM_METHODS in src/explain/cam.ts), optionally a target
 * layer (a layer name, or several joined by ',' or '+' to fuse them), and which measurement chose them.
 */
export interface ExplanationSetting {
  method: string;
  layer?: string;
  /** The measurement that chose it, e.g. the benchmark, its photographs and the numbers. */
  chosenBy: string;
  /**
   * Classes whose heatmaps are made at a layer of their own (with the same method), by class name: the class a lesion
   * map head feeds, whose map is `lesion_map` (src/models/lesion-head.ts), while the others keep `layer`.
   */
  classes?: Record<string, ClassExplanationSetting>;
}

/** A class's own heatmap layer (a layer name, or several joined by ',' or '+') and the measurement that chose it. */
export interface ClassExplanationSetting {
  layer: string;
  chosenBy: string;
}

/** Prediction beyond one forward pass: `hflip` averages the probabilities of the photo and its mirror image. */
export type TestTimeAugmentation = 'none' | 'hflip';

/**
 * What a model directory carries beside tfjs's `model.json` and weights (`fundus.json`). Everything needed to
 * predict exactly as at training time, and to know what the model was trained on.
 */
/** One source of a multi-source training set, as a model records it. */
export interface TrainingSource {
  name: string;
  /** `external`: read for validation only, never trained on. */
  role: 'train' | 'external';
  csvSha256: string;
  /** The classes it grades (others were masked out of the loss for its photographs). */
  graded: string[];
  images: { train: number; validation: number; test: number };
  /** A split file, or how the split was made. */
  splitFrom: string;
}

export interface ModelMetadata {
  format: 'fundus-model';
  formatVersion: 1;
  /** Architecture name, e.g. `alexnet`, `resnet18-narrow`. */
  architecture: string;
  task: Task;
  /** Output class names in output order. */
  classes: string[];
  /** `sigmoid`: independent per-class probabilities; `softmax`: exactly one class. */
  activation: 'sigmoid' | 'softmax';
  preprocess: PreprocessSettings;
  /** Network input shape [height, width, channels]. */
  inputShape: [number, number, number];
  /** Per-class decision thresholds on probabilities, in `classes` order (tuned on validation). */
  thresholds: number[];
  /** How the thresholds were chosen, e.g. `max-f1 on validation` or `default 0.5`. */
  thresholdPolicy: string;
  /** Fingerprints of the training data so that anyone can tell what a model has seen. */
  trainingData?: {
    /** sha256 of the label CSV, or of the datasets file for several sources. */
    csvSha256: string;
    imageCount: number;
    splitSha256?: string;
    splitFile?: string;
    /** Several sources (a datasets file): each one's labels, graded classes and part sizes. */
    sources?: TrainingSource[];
    /** Every source weighed the same in the loss. */
    balanceSources?: boolean;
  };
  /** How the weights were learnt (absent in models saved before it was recorded). */
  training?: TrainingRecipe;
  /** The pretrained backbone the network was built on (absent for networks trained from scratch). */
  backbone?: BackboneProvenance;
  /** How predictions are made (absent: one forward pass). */
  inference?: { tta: TestTimeAugmentation };
  /**
   * How this model's heatmaps are made when no method or layer is named (absent: fundus's global default, LayerCAM at
   * the automatic target layer; see `defaultExplanation` in src/explain). Never written by training: a retrained model
   * is a new model, and the localisation benchmark (benchmarks/scripts/localisation.ts --record) chooses it.
   */
  explanation?: ExplanationSetting;
  /** Final metrics on validation/test, as produced by `fundus evaluate`. */
  metrics?: Record<string, unknown>;
  createdAt: string;
  fundusVersion: string;
  /**
   * one-vs-normal only: the binary member networks (one per pathology, against `normal`) that the saved network
   * combines; their layers are prefixed `<class slug>__` inside the one network (see src/models/combine.ts).
   */
  members?: { class: string; bestEpoch: number | null; trainSeconds: number; [metric: string]: unknown }[];
}
