import type * as tfl from '@tensorflow/tfjs-layers';
import type { AugmentSettings } from '../data/augment.js';
import type { Example } from '../models/tasks.js';
import type { AdversarySettings } from './adversary.js';
import type { Box } from '../data/lesions.js';
import type { LesionAttentionSettings } from './lesion-attention.js';
import type { HistoryRow } from './checkpoint.js';

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
  /** Lesion-guided attention: the class map pushed into expert lesion boxes (see lesion-attention.ts). */
  lesionAttention?: LesionAttentionSettings;
  /** Called after every optimiser step (tests use it to simulate a kill). */
  onBatch?: (info: { epoch: number; batch: number; loss: number }) => void | Promise<void>;
  log: (line: string) => void;
}

/** The data of one run: preprocessed bytes of each example, as cached by the data stage. */
export interface LoopData {
  train: Example[];
  trainPixels: Uint8Array[];
  /** Lesion attention: each training example's lesion boxes on its network input, where it has any. */
  trainLesionBoxes?: (Box[] | undefined)[];
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
