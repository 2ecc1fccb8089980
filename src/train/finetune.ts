import type * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import type { FineTuneRecipe } from '../models/metadata.js';
import { InputError } from '../util/errors.js';

/** What a fine-tuning recipe did to a backbone network, for the training loop and fundus.json. */
export interface FineTunePlan {
  /** Pretrained layers that train (at the backbone's rate). */
  trainablePretrained: string[];
  /** First trainable backbone layer (`partial`), or the first layer (`full`); absent for `probe`. */
  trainableFrom?: string;
}

type Layer = tfl.layers.Layer;

function spatialSide(layer: Layer): number | null {
  const shape = layer.outputShape as (number | null)[];
  return Array.isArray(shape) && shape.length === 4 ? shape[1] : null;
}

/**
 * The first layer of the backbone's last stage: the first layer (in execution order) whose output already has the
 * final feature map's resolution. MobileNetV2 at 224 px: `block_13_depthwise` (7×7); ResNet-50: the first 7×7
 * convolutions of stage 5.
 */
export function lastStageStart(backbone: Layer[]): string {
  const side = spatialSide(backbone[backbone.length - 1]);
  const first = backbone.find((l) => l.getClassName() !== 'InputLayer' && spatialSide(l) === side);
  if (!first) throw new InputError('cannot find the last stage of the backbone');
  return first.name;
}

/**
 * Batch norm with its pretrained statistics: the layer runs in inference mode even in a training step and its
 * γ and β do not train (Keras's `trainable = False` on BatchNormalization). The layer stays a stock layer, so the
 * saved model is unchanged.
 */
export function freezeBatchNorm(layer: Layer): void {
  const bn = layer as unknown as { call(inputs: tf.Tensor | tf.Tensor[], kwargs: Record<string, unknown>): tf.Tensor | tf.Tensor[] };
  const call = bn.call.bind(layer);
  bn.call = (inputs, kwargs) => call(inputs, { ...kwargs, training: false });
  layer.trainable = false;
}

/**
 * Freezes what the recipe keeps fixed: `probe` every backbone layer; `partial` the backbone before `trainableFrom`
 * (default: its last stage); `full` nothing. A frozen part's batch norm keeps its pretrained statistics; with
 * `batchNorm: 'frozen'` every batch-norm layer does.
 */
export function planFineTune(
  backbone: Layer[],
  recipe: FineTuneRecipe,
  opts: { batchNorm: 'frozen' | 'train'; trainableFrom?: string },
): FineTunePlan {
  let from = 0;
  let trainableFrom: string | undefined;
  if (recipe === 'probe') {
    from = backbone.length;
  } else if (recipe === 'partial') {
    trainableFrom = opts.trainableFrom ?? lastStageStart(backbone);
    from = backbone.findIndex((l) => l.name === trainableFrom);
    if (from < 0) throw new InputError(`--trainable-from: the backbone has no layer "${trainableFrom}"`);
  } else {
    trainableFrom = backbone.find((l) => l.getClassName() !== 'InputLayer')?.name;
  }
  // A frozen layer's batch norm keeps its statistics too (as Keras does), or its features would drift.
  const isBn = (l: Layer) => l.getClassName() === 'BatchNormalization';
  backbone.forEach((l, i) => {
    if (isBn(l) && (i < from || opts.batchNorm === 'frozen')) freezeBatchNorm(l);
    else if (i < from) l.trainable = false;
  });
  return { trainablePretrained: backbone.filter((l) => l.trainable && l.trainableWeights.length > 0).map((l) => l.name), trainableFrom };
}
