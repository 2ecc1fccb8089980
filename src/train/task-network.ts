import type * as tfl from '@tensorflow/tfjs-layers';
import { POOLING_LAYER, buildNetwork } from '../models/architectures.js';
import type { CreatedNetwork } from '../models/architectures.js';
import { backboneLayers } from '../models/backbones.js';
import { addLesionHead } from '../models/lesion-head.js';
import type { ModelMetadata } from '../models/metadata.js';
import type { TaskHead } from '../models/tasks.js';
import { planFineTune } from './finetune.js';
import { initFromModel } from './init-from.js';
import { trainLoop } from './loop.js';
import type { LoopData, LoopResult, LoopSettings } from './loop-settings.js';
import type { RunRecord } from './model-record.js';
import { trainProbe } from './probe.js';
import type { FineTuneSettings } from './recipe.js';

/**
 * Trains the one network of a multilabel or focus task: from scratch, or from a pretrained backbone by its fine-tuning
 * recipe (a linear probe, or the training loop with the backbone's layers at their own rate). Returns the trained
 * network, its metadata (thresholds still 0.5) and the loop's result.
 */
export async function trainTaskNetwork(run: {
  model: string;
  inputShape: [number, number, number];
  head: TaskHead;
  data: LoopData;
  record: RunRecord;
  settings: LoopSettings;
  runDir: string;
  configExtra: Record<string, unknown>;
  created?: CreatedNetwork;
  fineTune?: FineTuneSettings;
  init?: { network: tfl.LayersModel; metadata: ModelMetadata };
  cacheDir?: string;
}): Promise<{ network: tfl.LayersModel; metadata: ModelMetadata; result: Omit<LoopResult, 'network' | 'validationProbs'> }> {
  const { head, settings, created, fineTune, runDir, configExtra } = run;
  const log = settings.log;
  const built = created?.network ?? buildNetwork(run.model, run.inputShape, head.classes.length, { activation: head.activation, seed: settings.seed });
  const lesions = settings.lesionAttention;
  const network = lesions?.head ? addLesionHead(built, lesions.layer!, lesions.classIndex) : built;
  const metadata: ModelMetadata = { ...run.record, classes: head.classes, activation: head.activation, thresholds: head.classes.map(() => 0.5) };
  const initWeights = run.init ? initFromModel(run.init, head.classes) : undefined;
  if (!(created?.backbone && fineTune)) return { network, metadata, result: await trainLoop(network, metadata, run.data, settings, runDir, configExtra, initWeights) };

  const plan = planFineTune(backboneLayers(network, created.backbone.featureLayer), fineTune.recipe, fineTune);
  if (fineTune.trainableFrom === undefined && plan.trainableFrom && fineTune.recipe === 'partial') metadata.training!.fineTune!.trainableFrom = plan.trainableFrom;
  log(fineTune.recipe === 'probe'
    ? `${run.model}: ImageNet weights, linear probe (frozen backbone, features computed once)`
    : `${run.model}: ImageNet weights, ${fineTune.recipe} fine-tuning (${plan.trainablePretrained.length} pretrained layers train at ` +
      `${fineTune.backboneLrScale}x the head's rate; batch norm ${fineTune.batchNorm === 'frozen' ? 'frozen' : 'batch statistics'})`);
  if (fineTune.recipe !== 'probe') {
    const pretrained = { layers: plan.trainablePretrained, lrScale: fineTune.backboneLrScale };
    return { network, metadata, result: await trainLoop(network, metadata, run.data, { ...settings, pretrained }, runDir, configExtra, initWeights) };
  }
  if (initWeights) await initWeights(network);
  const probeSettings = { steps: 2000, lr: 0.01, l2Grid: [1e-3, 1e-2, 0.1, 1], patience: 10, evalEvery: 20, featureLayer: POOLING_LAYER, cacheDir: run.cacheDir, log };
  const probed = await trainProbe(network, metadata, run.data, probeSettings, runDir);
  metadata.training!.fineTune!.probe = probed.probe;
  return { network, metadata, result: probed };
}

