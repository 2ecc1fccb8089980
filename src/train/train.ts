import * as tfl from '@tensorflow/tfjs-layers';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { loadPreprocessedBytes } from '../data/cache.js';
import type { AugmentSettings } from '../data/augment.js';
import { readDataset } from '../data/csv.js';
import { describeSources, readDatasets } from '../data/datasets.js';
import type { MultiSourceData } from '../data/datasets.js';
import { PART_NAMES } from '../data/split.js';
import type { PartName } from '../data/split.js';
import type { Dataset, LabelledImage } from '../data/labels.js';
import { channelCount, validatePreprocessSettings } from '../data/preprocess.js';
import type { PreprocessSettings } from '../data/preprocess.js';
import { architectureInfo, buildNetwork, createNetwork } from '../models/architectures.js';
import type { CreatedNetwork } from '../models/architectures.js';
import { backboneLayers } from '../models/backbones.js';
import { buildOneVsNormalNetwork, classSlug, loadMemberWeights } from '../models/combine.js';
import { loadModel, saveModel } from '../models/io.js';
import type { FineTuneRecipe, ModelMetadata, Task, TestTimeAugmentation } from '../models/metadata.js';
import { balanceSources, memberExamples, oneVsNormalMembers, taskExamples, taskHead } from '../models/tasks.js';
import type { Example } from '../models/tasks.js';
import { InputError } from '../util/errors.js';
import { copyWeights } from './checkpoint.js';
import type { HistoryRow } from './checkpoint.js';
import { historyFiles } from './history.js';
import { planFineTune } from './finetune.js';
import { prepareTrainOutput, recordRunOutput } from './out-guard.js';
import { trainLoop } from './loop.js';
import { trainProbe } from './probe.js';
import type { LoopSettings, Monitor } from './loop.js';
import { scoringExamples, tuneAndScore } from './finalize.js';
import { readSplitParts } from '../data/split.js';
import type { SplitFile } from '../data/split.js';

const FUNDUS_VERSION = '0.1.0';

/** A pseudo-labelled example for self-learning: targets in the task's class order, and how much it counts. */
export interface ExtraExample {
  path: string;
  /** Targets in the task's class order (for one-vs-normal: the 7 classes of the dataset). */
  target: ArrayLike<number>;
  weight: number;
}

export interface TrainOptions {
  task: Task;
  /** Architecture name (see architectures.ts). */
  model: string;
  /** One labelled source: a CSV, its image folder and a split file ... */
  csv?: string;
  images?: string;
  split?: string;
  /** ... or a datasets file listing several sources (see data/datasets.ts); their training sources are joined. */
  datasets?: string;
  /** Reweight examples so that every source weighs the same in the loss (with `datasets`). */
  balanceSources?: boolean;
  /** Source-adversarial training at this strength (DANN's λ; with `datasets` of two or more training sources). */
  sourceAdversarial?: number;
  /** The model directory to write. */
  out: string;
  /** Checkpoints, history and TensorBoard files (default `runs/<basename of out>`). */
  runDir?: string;
  epochs?: number;
  batchSize?: number;
  lr?: number;
  /** Final learning rate of the cosine schedule (default lr/50). */
  minLr?: number;
  /** Decoupled weight decay (AdamW); default 0, plain Adam. */
  weightDecay?: number;
  warmupEpochs?: number;
  /** Input side in pixels (default: the architecture's). */
  imageSize?: number;
  channels?: 'green' | 'rgb';
  clahe?: boolean;
  /** How photos are brought to the input size (see PreprocessSettings.resize); default `area`. */
  resize?: PreprocessSettings['resize'];
  /** Camera-invariant preprocessing (see PreprocessSettings): a standard circular field, local mean subtraction. */
  mask?: PreprocessSettings['mask'];
  localMean?: PreprocessSettings['localMean'];
  augment?: Partial<AugmentSettings> | false;
  patience?: number;
  monitor?: Monitor;
  seed?: number;
  /** Start from this model directory's weights (fine-tuning; self-learning rounds). */
  initFrom?: string;
  /** Pretrained backbones (`resnet50`, `mobilenetv2`): how to fine-tune them (default `full`). */
  recipe?: FineTuneRecipe;
  /** The backbone's learning rate as a multiple of the head's (default 0.1). */
  backboneLrScale?: number;
  /** `train` (default): batch norm uses batch statistics while training; `frozen`: keeps the pretrained ones. */
  batchNorm?: 'frozen' | 'train';
  /** `partial` recipe: first trainable backbone layer (default: the start of the last stage). */
  trainableFrom?: string;
  /** Test-time augmentation the model records and prediction applies (default `none`). */
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

/** The labelled data of a run: one CSV with its split file, or the sources of a datasets file. */
async function trainingData(opts: TrainOptions): Promise<{ dataset: Dataset; split: SplitFile; splitPath: string; sources?: MultiSourceData }> {
  if (opts.datasets !== undefined) {
    if (opts.csv !== undefined || opts.images !== undefined || opts.split !== undefined) {
      throw new InputError('give either --datasets or --csv, --images and --split, not both');
    }
    const sources = await readDatasets(opts.datasets);
    const { train, validation, test } = sources.parts;
    const sha256 = createHash('sha256').update(sources.splitText).digest('hex');
    return { dataset: sources.dataset, split: { train, validation, test, text: sources.splitText, sha256 }, splitPath: opts.datasets, sources };
  }
  if (opts.csv === undefined || opts.images === undefined || opts.split === undefined) {
    throw new InputError('training needs --csv, --images and --split (or --datasets)');
  }
  return { dataset: await readDataset(opts.csv, opts.images), split: await readSplitParts(opts.split), splitPath: opts.split };
}

/** The images of a split part, in the split's order; InputError for names the CSV does not have. */
function partImages(dataset: Dataset, names: string[], part: string, splitPath: string, limit?: number): LabelledImage[] {
  const byName = new Map(dataset.images.map((im) => [im.filename, im]));
  const out: LabelledImage[] = [];
  for (const n of names) {
    const im = byName.get(n);
    if (!im) throw new InputError(`split part "${part}" lists ${n}, which is not in the CSV`, { file: splitPath });
    out.push(im);
  }
  return limit !== undefined ? out.slice(0, limit) : out;
}

function preprocessFor(opts: TrainOptions, init?: ModelMetadata): PreprocessSettings {
  // Fine-tuning keeps the preprocessing the weights were learnt on, except the input side: a network that ends in
  // global pooling takes any size, and training at a small size then finishing at a larger one (progressive
  // resizing) buys resolution for a fraction of the time.
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

async function sha256File(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex');
}

/** Copies weights of the init model into the new network: all of them, or all but the output layer when classes differ. */
function initFromModel(init: { network: tfl.LayersModel; metadata: ModelMetadata }, classes: string[]) {
  return async (network: tfl.LayersModel): Promise<void> => {
    if (init.metadata.classes.join('|') === classes.join('|')) {
      copyWeights(init.network, network, `--init-from ${init.metadata.architecture}`);
      return;
    }
    for (const layer of network.layers) {
      if (layer.name === 'logits' || layer.getWeights().length === 0) continue;
      let src: tfl.layers.Layer;
      try {
        src = init.network.getLayer(layer.name);
      } catch {
        throw new InputError(`--init-from: the model has no layer "${layer.name}"`);
      }
      layer.setWeights(src.getWeights());
    }
  };
}

/**
 * Trains a model for `opts.task` and writes its directory (`opts.out`): network, fundus.json (task, classes,
 * preprocessing, thresholds tuned for max F1 on validation, data and split fingerprints, validation and test
 * metrics), the split file, history.csv and the TensorBoard event file.
 */
export async function trainModel(opts: TrainOptions): Promise<TrainResult> {
  const log = opts.log ?? ((line: string) => (opts.quiet ? undefined : process.stderr.write(line + '\n')));
  const runDir = resolve(opts.runDir ?? join('runs', basename(resolve(opts.out))));
  // Before anything is read or trained: never replace a folder or file fundus did not write, nor another run's model
  // without --force (see out-guard.ts); --restart clears the run directory.
  await prepareTrainOutput(opts.out, runDir, { force: opts.force, restart: opts.restart });
  const { dataset, split, splitPath, sources } = await trainingData(opts);
  const trainImages = partImages(dataset, split.train, 'train', splitPath, opts.limit);
  const valImages = partImages(dataset, split.validation, 'validation', splitPath, opts.limit);
  const testImages = partImages(dataset, split.test, 'test', splitPath, opts.limit);
  if (sources) for (const line of describeSources(sources)) log(line);
  if (opts.balanceSources && !sources) throw new InputError('--balance-sources needs --datasets (several sources)');
  const trainingSources = sources?.sources.filter((s) => s.role === 'train' && s.parts.train.length > 0).map((s) => s.name) ?? [];
  if (opts.sourceAdversarial !== undefined && trainingSources.length < 2) {
    throw new InputError('--source-adversarial needs --datasets with at least two training sources');
  }
  const adversary = opts.sourceAdversarial !== undefined ? { sources: trainingSources, weight: opts.sourceAdversarial } : undefined;

  const init = opts.initFrom ? await loadModel(opts.initFrom) : undefined;
  if (init && init.metadata.architecture !== opts.model) {
    throw new InputError(`--init-from is a ${init.metadata.architecture} model, not ${opts.model}`, { file: opts.initFrom });
  }
  const head = taskHead(opts.task);
  const info = architectureInfo(opts.model);
  if (info.backbone && opts.task === 'one-vs-normal') {
    throw new InputError(`--task one-vs-normal trains one network per pathology; with ${opts.model} use --task multilabel or focus`);
  }
  if (!info.backbone && (opts.recipe !== undefined || opts.batchNorm !== undefined || opts.trainableFrom !== undefined || opts.backboneLrScale !== undefined)) {
    throw new InputError(`--recipe, --batch-norm, --trainable-from and --backbone-lr-scale apply to pretrained backbones (mobilenetv2, resnet50), not ${opts.model}`);
  }
  let preprocess = preprocessFor(opts, init?.metadata);
  const inputShape: [number, number, number] = [preprocess.size, preprocess.size, channelCount(preprocess)];
  const seed = opts.seed ?? 42;
  let created: CreatedNetwork | undefined;
  if (info.backbone) {
    created = await createNetwork(opts.model, inputShape, head.classes.length, { activation: head.activation, seed, weightsDir: opts.weightsDir });
    // The pretrained weights expect their own normalisation (a fine-tuned model already records it).
    if (!init) preprocess = { ...preprocess, normalize: created.normalize! };
  }
  const recipe: FineTuneRecipe = opts.recipe ?? 'full';
  const fineTune = info.backbone
    ? {
        recipe,
        backboneLrScale: opts.backboneLrScale ?? 0.1,
        batchNorm: opts.batchNorm ?? ('train' as const),
        ...(opts.trainableFrom !== undefined ? { trainableFrom: opts.trainableFrom } : {}),
      }
    : undefined;
  const settings: LoopSettings = {
    epochs: opts.epochs ?? 30,
    batchSize: opts.batchSize ?? 16,
    lr: opts.lr ?? 1e-3,
    minLr: opts.minLr ?? (opts.lr ?? 1e-3) / 50,
    weightDecay: opts.weightDecay ?? 0,
    warmupEpochs: opts.warmupEpochs ?? 1,
    patience: opts.patience ?? 8,
    monitor: opts.monitor ?? 'val_auc',
    seed,
    augment: opts.augment ?? {},
    ...(adversary ? { adversary } : {}),
    checkpointSeconds: opts.checkpointSeconds ?? 120,
    checkpointBatches: opts.checkpointBatches ?? 0,
    maxMinutes: opts.maxMinutes,
    quiet: opts.quiet ?? false,
    onBatch: opts.onBatch,
    log,
  };

  const cacheOpts = { cacheDir: opts.cacheDir, progressLabel: opts.quiet ? undefined : 'preprocessing' };
  const bytesOf = async (images: { path: string }[]) => (await loadPreprocessedBytes(images.map((i) => i.path), preprocess, cacheOpts)).map((b) => b.pixels);
  const extra = (opts.extraExamples ?? []).map((e, i) => {
    if (e.target.length !== head.classes.length) {
      throw new InputError(`extra example ${i} (${e.path}) has ${e.target.length} targets, the task has ${head.classes.length}`);
    }
    if (!(e.weight >= 0)) throw new InputError(`extra example ${i} (${e.path}) has weight ${e.weight}`);
    return { path: resolve(e.path), filename: basename(e.path), target: Float32Array.from(e.target), weight: e.weight };
  });

  const baseMeta = {
    format: 'fundus-model' as const,
    formatVersion: 1 as const,
    architecture: opts.model,
    task: opts.task,
    preprocess,
    inputShape,
    thresholdPolicy: 'default 0.5',
    trainingData: {
      csvSha256: await sha256File(sources ? sources.path : opts.csv!),
      imageCount: trainImages.length + extra.length,
      splitSha256: split.sha256,
      splitFile: 'split.json',
      ...(sources
        ? {
            sources: sources.sources.map((s) => ({
              name: s.name,
              role: s.role,
              csvSha256: s.csvSha256,
              graded: s.graded,
              images: Object.fromEntries(PART_NAMES.map((p) => [p, s.parts[p].length])) as Record<PartName, number>,
              splitFrom: s.splitFrom,
            })),
            ...(opts.balanceSources ? { balanceSources: true } : {}),
          }
        : {}),
    },
    training: {
      optimizer: settings.weightDecay ? ('adamw' as const) : ('adam' as const),
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
      ...(adversary ? { sourceAdversarial: adversary } : {}),
    },
    ...(created?.backbone ? { backbone: created.backbone } : {}),
    ...(opts.tta && opts.tta !== 'none' ? { inference: { tta: opts.tta } } : {}),
    createdAt: new Date().toISOString(),
    fundusVersion: FUNDUS_VERSION,
  };
  const configExtra = {
    task: opts.task,
    initFrom: init ? init.metadata.createdAt : null,
    limit: opts.limit ?? null,
    ...(fineTune ? { fineTune, backbone: created?.backbone?.sha256 } : {}),
  };

  let network: tfl.LayersModel;
  let metadata: ModelMetadata;
  let history: HistoryRow[];
  let bestEpoch: number | null;
  let trainSeconds: number;
  let imagesPerSecond: number;
  let eventsCreatedAt: number;
  let valExamples: Example[];
  let valPixels: Uint8Array[];
  let testExamples: Example[];
  let memberInfo: ModelMetadata['members'];

  if (opts.task !== 'one-vs-normal') {
    let train = [...taskExamples(opts.task, dataset, trainImages), ...extra];
    if (opts.balanceSources) train = balanceSources(train);
    valExamples = taskExamples(opts.task, dataset, valImages);
    testExamples = taskExamples(opts.task, dataset, testImages);
    log(`${opts.task}: ${train.length} training, ${valExamples.length} validation, ${testExamples.length} test images; ${inputShape.join('x')} inputs`);
    const trainPixels = await bytesOf(train);
    valPixels = await bytesOf(valExamples);
    network = created?.network ?? buildNetwork(opts.model, inputShape, head.classes.length, { activation: head.activation, seed: settings.seed });
    const meta: ModelMetadata = { ...baseMeta, classes: head.classes, activation: head.activation, thresholds: head.classes.map(() => 0.5) };
    const loopData = { train, trainPixels, validation: valExamples, validationPixels: valPixels };
    const initWeights = init ? initFromModel(init, head.classes) : undefined;
    let r;
    if (created?.backbone && fineTune) {
      const plan = planFineTune(backboneLayers(network, created.backbone.featureLayer), fineTune.recipe, fineTune);
      if (fineTune.trainableFrom === undefined && plan.trainableFrom && recipe === 'partial') meta.training!.fineTune!.trainableFrom = plan.trainableFrom;
      log(recipe === 'probe'
        ? `${opts.model}: ImageNet weights, linear probe (frozen backbone, features computed once)`
        : `${opts.model}: ImageNet weights, ${recipe} fine-tuning (${plan.trainablePretrained.length} pretrained layers train at ` +
          `${fineTune.backboneLrScale}x the head's rate; batch norm ${fineTune.batchNorm === 'frozen' ? 'frozen' : 'batch statistics'})`);
      if (recipe === 'probe') {
        if (initWeights) await initWeights(network);
        const probed = await trainProbe(network, meta, loopData, { steps: 2000, lr: 0.01, l2Grid: [1e-3, 1e-2, 0.1, 1], patience: 10, evalEvery: 20, featureLayer: 'gap', cacheDir: opts.cacheDir, log }, runDir);
        meta.training!.fineTune!.probe = probed.probe;
        r = probed;
      } else {
        r = await trainLoop(network, meta, loopData, { ...settings, pretrained: { layers: plan.trainablePretrained, lrScale: fineTune.backboneLrScale } }, runDir, configExtra, initWeights);
      }
    } else {
      r = await trainLoop(network, meta, loopData, settings, runDir, configExtra, initWeights);
    }
    ({ history, trainSeconds, imagesPerSecond, eventsCreatedAt } = r);
    bestEpoch = r.best?.epoch ?? null;
    metadata = meta;
  } else {
    // One binary member per pathology (that pathology vs normal), each with its own run directory, then one network.
    const pathologies = oneVsNormalMembers();
    const combined = buildOneVsNormalNetwork(opts.model, inputShape, pathologies);
    network = combined.network;
    history = [];
    trainSeconds = 0;
    let imagesSeen = 0;
    eventsCreatedAt = Date.now() / 1000;
    memberInfo = [];
    const fullIdx = (name: string) => dataset.classes.indexOf(name);
    for (const [m, p] of pathologies.entries()) {
      const train = [
        ...memberExamples(p, dataset, trainImages),
        ...extra
          .filter((e) => e.target[fullIdx(p)] === 1 || e.target[fullIdx('normal')] === 1)
          .map((e) => ({ ...e, target: Float32Array.of(e.target[fullIdx(p)]) })),
      ];
      const val = memberExamples(p, dataset, valImages);
      log(`one-vs-normal member ${m + 1}/${pathologies.length} "${p}": ${train.length} training, ${val.length} validation images`);
      const member = buildNetwork(opts.model, inputShape, 1, { activation: 'sigmoid', seed: settings.seed + m });
      const meta: ModelMetadata = { ...baseMeta, task: 'one-vs-normal', classes: [p], activation: 'sigmoid', thresholds: [0.5] };
      const r = await trainLoop(
        member,
        meta,
        { train, trainPixels: await bytesOf(train), validation: val, validationPixels: await bytesOf(val) },
        settings,
        join(runDir, 'members', classSlug(p)),
        { ...configExtra, member: p },
        // every member starts from the init model's features; only its one-output head is new
        init ? initFromModel(init, [p]) : undefined,
      );
      loadMemberWeights(network, member, p);
      trainSeconds += r.trainSeconds;
      imagesSeen += r.imagesPerSecond * r.trainSeconds;
      for (const row of r.history) history.push({ ...row, member: m });
      memberInfo!.push({ class: p, bestEpoch: r.best?.epoch ?? null, [settings.monitor]: r.best?.value ?? null, trainSeconds: r.trainSeconds });
      member.dispose();
    }
    imagesPerSecond = trainSeconds > 0 ? imagesSeen / trainSeconds : NaN;
    bestEpoch = null;
    metadata = { ...baseMeta, classes: combined.classes, activation: 'sigmoid', thresholds: combined.classes.map(() => 0.5) };
    // The combined predictor is judged on every image, like the multilabel model.
    valExamples = scoringExamples(metadata, dataset, valImages);
    testExamples = scoringExamples(metadata, dataset, testImages);
    valPixels = await bytesOf(valExamples);
  }

  // Thresholds: max F1 per class on validation; then held-out scores with them.
  const testPixels = await bytesOf(testExamples);
  const scores = tuneAndScore(network, metadata, { examples: valExamples, pixels: valPixels }, { examples: testExamples, pixels: testPixels });
  metadata.metrics = {
    ...scores,
    bestEpoch,
    epochs: history.length,
    trainSeconds,
    imagesPerSecond,
    monitor: settings.monitor,
  };
  if (memberInfo) metadata.members = memberInfo;

  await saveModel(opts.out, network, metadata, { 'split.json': split.text, ...historyFiles(history, eventsCreatedAt) });
  await recordRunOutput(opts.out, runDir);
  const t = metadata.metrics.test as { macroAuc: number | null; meanF1: number | null };
  log(`wrote ${opts.out}: test macro AUC ${t.macroAuc?.toFixed(4) ?? 'n/a'}, mean F1 ${t.meanF1?.toFixed(4) ?? 'n/a'} (thresholds tuned on validation)`);
  return { modelDir: opts.out, metadata, history, bestEpoch, trainSeconds, imagesPerSecond };
}
