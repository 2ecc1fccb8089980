import type * as tfl from '@tensorflow/tfjs-layers';
import { basename, join, resolve } from 'node:path';
import { loadPreprocessedBytes } from '../data/cache.js';
import { describeSources } from '../data/datasets.js';
import { channelCount } from '../data/preprocess.js';
import { architectureInfo, architectureNames, createNetwork } from '../models/architectures.js';
import type { CreatedNetwork } from '../models/architectures.js';
import { saveModel, loadModel } from '../models/io.js';
import type { ModelMetadata } from '../models/metadata.js';
import { balanceSources, taskExamples, taskHead } from '../models/tasks.js';
import type { Example } from '../models/tasks.js';
import { InputError } from '../util/errors.js';
import type { HistoryRow } from './checkpoint.js';
import { scoringExamples, tuneAndScore } from './finalize.js';
import { historyCsv, historyFiles } from './history.js';
import { cardSources, evaluateCommand } from './card-data.js';
import { MODEL_CARD, modelCard } from '../models/card.js';
import { runRecord } from './model-record.js';
import { trainOneVsNormal } from './one-vs-normal.js';
import { prepareTrainOutput, recordRunOutput } from './out-guard.js';
import { DEFAULT_TASK, fineTuneFor, loopSettingsFor, modelFor, preprocessFor, trainingRecord, ttaFor } from './recipe.js';
import type { RunOptions } from './recipe.js';
import { trainTaskNetwork } from './task-network.js';
import { extraExamples, readTrainingData } from './train-data.js';
import { prepareLesionAttention } from './lesion-attention.js';
import type { TrainOptions, TrainResult } from './train-options.js';
import type { LoopData } from './loop-settings.js';

export type { ExtraExample, TrainOptions, TrainResult } from './train-options.js';

/**
 * Trains a model for `opts.task` and writes its directory (`opts.out`): network, fundus.json (task, classes,
 * preprocessing, thresholds tuned for max F1 on validation, data and split fingerprints, validation and test
 * metrics), the split file, history.csv, the TensorBoard event file and the model card (MODEL_CARD.md: its data,
 * recipe, metrics and limitations).
 */
export async function trainModel(options: TrainOptions): Promise<TrainResult> {
  const log = options.log ?? ((line: string) => (options.quiet ? undefined : process.stderr.write(line + '\n')));
  const runDir = resolve(options.runDir ?? join('runs', basename(resolve(options.out))));
  // Before anything is read or trained: never replace a folder or file fundus did not write, nor another run's model
  // without --force (see out-guard.ts); --restart clears the run directory.
  await prepareTrainOutput(options.out, runDir, { force: options.force, restart: options.restart });
  const init = options.initFrom ? await loadModel(options.initFrom) : undefined;
  const task = options.task ?? DEFAULT_TASK;
  const model = modelFor(task, options.model, init?.metadata);
  const opts: RunOptions = { ...options, task, model, tta: ttaFor({ tta: options.tta, model }, init?.metadata) };
  const data = await readTrainingData(opts, { runDir, log, quiet: opts.quiet });
  const { dataset, sources } = data;
  const { train: trainImages, validation: valImages, test: testImages } = data.parts;
  if (sources) for (const line of describeSources(sources)) log(line);
  if (opts.balanceSources && !sources) throw new InputError('--balance-sources needs --datasets (several sources)');
  const trainingSources = sources?.sources.filter((s) => s.role === 'train' && s.parts.train.length > 0).map((s) => s.name) ?? [];
  if (opts.sourceAdversarial !== undefined && trainingSources.length < 2) {
    throw new InputError('--source-adversarial needs --datasets with at least two training sources');
  }
  if (opts.adversaryLrScale !== undefined && opts.sourceAdversarial === undefined) throw new InputError('--adversary-lr-scale needs --source-adversarial');
  const adversary =
    opts.sourceAdversarial !== undefined
      ? { sources: trainingSources, weight: opts.sourceAdversarial, ...(opts.adversaryLrScale !== undefined ? { lrScale: opts.adversaryLrScale } : {}) }
      : undefined;

  const attentionAsked = opts.lesionAttention !== undefined;
  if (!attentionAsked && ((opts.lesions ?? opts.lesionSource ?? opts.lesionClass ?? opts.lesionLayer) !== undefined || opts.lesionHead)) {
    throw new InputError('--lesions, --lesion-source, --lesion-class, --lesion-layer and --lesion-head go with --lesion-attention <weight>');
  }
  if (attentionAsked && opts.lesions === undefined) throw new InputError('--lesion-attention needs --lesions <boxes.csv>');
  if (opts.lesionHead && opts.lesionLayer === undefined) throw new InputError('--lesion-head needs --lesion-layer <name> (the feature layer the lesion map reads)');
  if (attentionAsked && opts.task === 'one-vs-normal') throw new InputError('--lesion-attention trains one network: use --task multilabel or focus');

  if (init && init.metadata.architecture !== opts.model) {
    throw new InputError(`--init-from is a ${init.metadata.architecture} model, not ${opts.model}`, { file: opts.initFrom });
  }
  const head = taskHead(opts.task);
  const info = architectureInfo(opts.model);
  if (opts.pretrained && !info.backbone) {
    throw new InputError(`--pretrained: ${opts.model} has no pretrained weights (backbones: ${architectureNames().filter((n) => architectureInfo(n).backbone).join(', ')})`);
  }
  if (info.backbone && opts.task === 'one-vs-normal') {
    throw new InputError(`--task one-vs-normal trains one network per pathology; with ${opts.model} use --task multilabel or focus`);
  }
  const fineTune = fineTuneFor(opts);
  if (attentionAsked && fineTune?.recipe === 'probe') throw new InputError('--lesion-attention needs the backbone to train: use --recipe partial or full');
  let preprocess = preprocessFor(opts, init?.metadata);
  const inputShape: [number, number, number] = [preprocess.size, preprocess.size, channelCount(preprocess)];
  const settings = loopSettingsFor(opts, adversary, log);
  let created: CreatedNetwork | undefined;
  if (info.backbone) {
    created = await createNetwork(opts.model, inputShape, head.classes.length, { activation: head.activation, seed: settings.seed, weightsDir: opts.weightsDir });
    // The pretrained weights expect their own normalisation (a fine-tuned model already records it).
    if (!init) preprocess = { ...preprocess, normalize: created.normalize! };
  }

  const cacheOpts = { cacheDir: opts.cacheDir, progressLabel: opts.quiet ? undefined : 'preprocessing' };
  const bytesOf = async (images: { path: string }[]) => (await loadPreprocessedBytes(images.map((i) => i.path), preprocess, cacheOpts)).map((b) => b.pixels);
  const extra = extraExamples(opts.extraExamples, head.classes.length);
  const record = await runRecord(opts, data, { preprocess, inputShape }, trainImages.length + extra.length, trainingRecord(settings, opts, fineTune), created?.backbone);
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
  let taskTrainImages: number;
  let members: ModelMetadata['members'];
  if (opts.task !== 'one-vs-normal') {
    let train = [...taskExamples(opts.task, dataset, trainImages), ...extra];
    taskTrainImages = train.length - extra.length;
    if (opts.balanceSources) train = balanceSources(train);
    valExamples = taskExamples(opts.task, dataset, valImages);
    testExamples = taskExamples(opts.task, dataset, testImages);
    log(`${opts.task}: ${train.length} training, ${valExamples.length} validation, ${testExamples.length} test images; ${inputShape.join('x')} inputs`);
    const trainBytes = await loadPreprocessedBytes(train.map((e) => e.path), preprocess, cacheOpts);
    const trainPixels = trainBytes.map((b) => b.pixels);
    valPixels = await bytesOf(valExamples);
    const data: LoopData = { train, trainPixels, validation: valExamples, validationPixels: valPixels };
    let runSettings = settings;
    if (attentionAsked) {
      const request = { lesionAttention: opts.lesionAttention!, lesions: opts.lesions!, lesionSource: opts.lesionSource, lesionClass: opts.lesionClass, lesionLayer: opts.lesionLayer, lesionHead: opts.lesionHead };
      const attention = await prepareLesionAttention(request, train, trainBytes.map((b) => b.geometry), inputShape[0], head.classes, trainingSources);
      const { classIndex: _, ...recorded } = attention.settings;
      const { weight, className, lesions, photographs, boxes, layer, head: lesionHead, negatives } = recorded;
      const map = layer ? `Grad-CAM map at ${layer}` : 'activation map';
      log(lesionHead
        ? `lesion map head on ${layer} feeding ${className}: trained on ${boxes} boxes on ${photographs} training photographs (${lesions}) and ${negatives} photographs graded free of it, weight ${weight}`
        : `lesion attention: the ${className} ${map} guided into ${boxes} boxes on ${photographs} training photographs (${lesions}), weight ${weight}`);
      runSettings = { ...settings, lesionAttention: attention.settings };
      data.trainLesionBoxes = attention.boxes;
      record.training = { ...record.training!, lesionAttention: recorded };
    }
    const r = await trainTaskNetwork({ model: opts.model, inputShape, head, data, record, settings: runSettings, runDir, configExtra, created, fineTune, init, cacheDir: opts.cacheDir });
    ({ network, metadata } = r);
    ({ history, trainSeconds, imagesPerSecond, eventsCreatedAt } = r.result);
    bestEpoch = r.result.best?.epoch ?? null;
  } else {
    const r = await trainOneVsNormal({ model: opts.model, inputShape, dataset, trainImages, valImages, extra, record, settings, runDir, configExtra, init }, bytesOf);
    ({ network, history, trainSeconds, imagesPerSecond, eventsCreatedAt } = r);
    bestEpoch = null;
    taskTrainImages = trainImages.length;
    metadata = { ...record, classes: r.classes, activation: 'sigmoid', thresholds: r.classes.map(() => 0.5) };
    members = r.members;
    // The combined predictor is judged on every image, like the multilabel model.
    valExamples = scoringExamples(metadata, dataset, valImages);
    testExamples = scoringExamples(metadata, dataset, testImages);
    valPixels = await bytesOf(valExamples);
  }

  // Thresholds: max F1 per class on validation; then held-out scores with them.
  const testPixels = await bytesOf(testExamples);
  const scores = tuneAndScore(network, metadata, { examples: valExamples, pixels: valPixels }, { examples: testExamples, pixels: testPixels });
  metadata.metrics = { ...scores, bestEpoch, epochs: history.length, trainSeconds, imagesPerSecond, monitor: settings.monitor };
  if (members) metadata.members = members;

  const card = modelCard({
    name: basename(resolve(opts.out)),
    metadata,
    sources: cardSources(data, opts, record.trainingData!.csvSha256),
    multiSource: sources !== undefined,
    taskImages: { train: taskTrainImages, validation: valExamples.length, test: testExamples.length },
    extraExamples: extra.length,
    limit: opts.limit,
    evaluateCommand: evaluateCommand(opts.out, opts),
    historyCsv: historyCsv(history),
  });
  await saveModel(opts.out, network, metadata, { 'split.json': data.split.text, ...historyFiles(history, eventsCreatedAt), [MODEL_CARD]: card });
  await recordRunOutput(opts.out, runDir);
  const t = metadata.metrics.test as { macroAuc: number | null; meanF1: number | null };
  log(`wrote ${opts.out}: test macro AUC ${t.macroAuc?.toFixed(4) ?? 'n/a'}, mean F1 ${t.meanF1?.toFixed(4) ?? 'n/a'} (thresholds tuned on validation)`);
  return { modelDir: opts.out, metadata, history, bestEpoch, trainSeconds, imagesPerSecond };
}
