import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import type { SymbolicTensor } from '@tensorflow/tfjs-layers';
import { logitsModel } from '../models/architectures.js';
import { LESION_HEAD_LAYERS, hasLesionHead } from '../models/lesion-head.js';
import type { ModelMetadata } from '../models/metadata.js';
import type { Example } from '../models/tasks.js';
import { InputError } from '../util/errors.js';
import { SourceAdversary, adversaryFeatures, adversaryLambda } from './adversary.js';
import { attentionLoss, attentionTaps, attentionWeights, lesionMapLoss, type AttentionTaps, type LesionAttentionSettings } from './lesion-attention.js';
import type { Batch } from './batch.js';
import type { LoopSettings } from './loop-settings.js';
import { taskLoss } from './losses.js';
import type { TaskLoss } from './losses.js';
import { GroupedAdam, type ParamGroup } from './optimizer.js';

/** What an optimiser step works on, set up once per run: the logits network, the optimiser, the source adversary. */
export interface Learner {
  /** The network without its output activation: the losses take logits. */
  logits: tfl.LayersModel;
  optimizer: GroupedAdam;
  adversary?: SourceAdversary;
  /** Each training example's source, as an index into the adversary's sources. */
  sourceIndex?: Int32Array;
  /** Lesion attention: its settings, where its map is read, and the map's grid. */
  attention?: { settings: LesionAttentionSettings; taps: AttentionTaps; grid: [number, number] };
  /** With an adversary or lesion attention: the network with its extra outputs, [logits, pooled features?, feature map?]. */
  heads?: tfl.LayersModel;
  loss: TaskLoss;
  weightDecay: number;
}

/**
 * A lesion map head's rate over the head's: it starts from zero inside a network that is already trained, and a
 * fine-tuning run at a backbone's low rate (a few hundred steps at 1e-4) would leave it where it started.
 */
const LESION_HEAD_LR_SCALE = 10;

/** The trainable variables, split into the pretrained layers' group (at its rate), a lesion map head's and the rest. */
function paramGroups(network: tfl.LayersModel, pretrained: LoopSettings['pretrained']): ParamGroup[] {
  const slow = new Set(pretrained?.layers ?? []);
  const groupOf = (l: tfl.layers.Layer) => (LESION_HEAD_LAYERS.has(l.name) ? 'lesion' : slow.has(l.name) ? 'slow' : 'head');
  const vars = (group: string) =>
    network.layers.filter((l) => groupOf(l) === group).flatMap((l) => l.trainableWeights.map((w) => w.read() as tf.Variable));
  const lesion = hasLesionHead(network) ? [{ vars: vars('lesion'), lrScale: LESION_HEAD_LR_SCALE }] : [];
  return [{ vars: vars('head'), lrScale: 1 }, ...(pretrained ? [{ vars: vars('slow'), lrScale: pretrained.lrScale }] : []), ...lesion];
}

/** Sets up the learner of `network` on `train`: parameter groups, Adam, the class-balanced loss and the source adversary when asked for. */
export function createLearner(
  network: tfl.LayersModel,
  metadata: Pick<ModelMetadata, 'classes' | 'activation'>,
  train: Example[],
  s: Pick<LoopSettings, 'adversary' | 'lesionAttention' | 'pretrained' | 'lr' | 'seed' | 'weightDecay'>,
): Learner {
  const logits = logitsModel(network);
  const adversary = s.adversary ? new SourceAdversary(network, s.adversary, s.seed) : undefined;
  const taps = s.lesionAttention ? attentionTaps(network, s.lesionAttention.layer, s.lesionAttention.head) : undefined;
  const extra: SymbolicTensor[] = [...(adversary ? [adversaryFeatures(network)] : []), ...(taps ? [taps.features] : [])];
  const heads = extra.length > 0 ? tfl.model({ inputs: network.inputs, outputs: [logits.outputs[0], ...extra] }) : undefined;
  const attention = taps && s.lesionAttention
    ? { settings: s.lesionAttention, taps, grid: taps.features.shape.slice(1, 3) as [number, number] }
    : undefined;
  const sourceIndex = adversary ? Int32Array.from(train, (e) => adversary.settings.sources.indexOf(e.source ?? '')) : undefined;
  if (sourceIndex?.some((j) => j < 0)) {
    const e = train[sourceIndex.indexOf(-1)];
    throw new InputError(`source-adversarial training: '${e.filename}' comes from no training source (${adversary!.settings.sources.join(', ')})`);
  }
  const groups = paramGroups(network, s.pretrained);
  if (adversary) groups.push({ vars: adversary.vars, lrScale: adversary.settings.lrScale ?? 1 });
  const optimizer = new GroupedAdam(groups, s.lr);
  const loss = taskLoss(train, metadata.classes.length, metadata.activation);
  return { logits, optimizer, adversary, sourceIndex, attention, heads, loss, weightDecay: s.weightDecay ?? 0 };
}

export function disposeLearner(l: Learner): void {
  l.optimizer.dispose();
  l.adversary?.dispose();
  l.loss.dispose();
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

/**
 * One optimiser step on `batch` (the training examples at `idx`) at learning rate `lr`; `progress` (0..1, the share
 * of the run's steps done) ramps the adversary's strength. Returns the batch's loss and, with an adversary or lesion
 * attention, the source head's loss and the attention loss (unweighted).
 */
export async function trainStep(
  l: Learner,
  batch: Batch,
  idx: number[],
  lr: number,
  progress: number,
): Promise<{ loss: number; advLoss?: number; attentionLoss?: number }> {
  const { adversary, attention, optimizer } = l;
  optimizer.setLearningRate(lr);
  let advT: tf.Scalar | undefined;
  let attT: tf.Scalar | undefined;
  // The map's channel weights as constants (made outside the loss, so no gradient reaches the head through them): the
  // accuracy cost is the same either way (docs/explain-localisation.md), and Grad-CAM's would need second derivatives.
  const mapWeights = attention && batch.lesions && !attention.taps.lesionMap ? attentionWeights(attention.taps, batch.x, attention.settings.classIndex, batch.lesions.present) : undefined;
  const lossT = optimizer.minimize(() => {
    if (!l.heads) return l.loss(batch.y, l.logits.apply(batch.x, { training: true }) as tf.Tensor2D, batch.w, batch.mask);
    const [logits, ...extra] = l.heads.apply(batch.x, { training: true }) as tf.Tensor[];
    let total = l.loss(batch.y, logits as tf.Tensor2D, batch.w, batch.mask);
    if (adversary) {
      const src = tf.tensor1d(Int32Array.from(idx, (j) => l.sourceIndex![j]), 'int32');
      const adv = adversary.loss(extra.shift() as tf.Tensor2D, src, batch.w, adversaryLambda(adversary.settings.weight, progress));
      advT = tf.keep(tf.clone(adv));
      total = tf.add(total, adv);
    }
    if (attention && batch.lesions && (mapWeights || attention.taps.lesionMap)) {
      const features = extra.shift() as tf.Tensor4D;
      const att = mapWeights
        ? attentionLoss(features, mapWeights, batch.lesions.cells, batch.lesions.present)
        : lesionMapLoss(features, batch.lesions.cells, batch.lesions.present);
      attT = tf.keep(tf.clone(att));
      total = tf.add(total, tf.mul(att, attention.settings.weight));
    }
    return total as tf.Scalar;
  });
  if (l.weightDecay) for (const g of optimizer.groups) decayWeights(g.vars, lr * g.lrScale * l.weightDecay);
  const loss = (await lossT.data())[0];
  const advLoss = advT ? (await advT.data())[0] : undefined;
  const attLoss = attT ? (await attT.data())[0] : undefined;
  tf.dispose([lossT, advT ?? [], attT ?? [], mapWeights ?? []]);
  return { loss, ...(advLoss !== undefined ? { advLoss } : {}), ...(attLoss !== undefined ? { attentionLoss: attLoss } : {}) };
}
