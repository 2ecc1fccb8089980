// A model's written card (MODEL_CARD.md): what `fundus train` writes at the end of a run, from the data it was given
// and the run's record, and what the places that show a model to a specialist read back (the viewer's "About this
// model" shows its limitations).
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describePreprocess } from '../data/preprocess.js';
import { PART_NAMES } from '../data/split.js';
import { MIN_RELIABLE_CLASS_COUNT } from '../metrics/metrics.js';
import type { PartName } from '../data/split.js';
import type { ModelMetadata, TrainingRecipe } from './metadata.js';

export const MODEL_CARD = 'MODEL_CARD.md';

/** A card's (or notes file's) "## Limitations" section up to the next heading: its items are group 1. */
export const LIMITATIONS_SECTION = /^##\s+Limitations\s*$([\s\S]*?)(?=^##\s|(?![\s\S]))/m;


/** A class's counts in one part of one source: its positives among the photographs graded for it. */
export interface ClassCount {
  positives: number;
  graded: number;
}

/** One labelled source as the card describes it: where it came from, what it grades, how it was split, its counts. */
export interface CardSource {
  /** The source's name (a datasets file's), or the CSV's file name. */
  name: string;
  /** The labels CSV as given, and its sha256. */
  csv: string;
  csvSha256: string;
  role: 'train' | 'external';
  /** Classes the source grades (the others are masked out of the loss for its photographs). */
  graded: string[];
  /** How its split was made: a split file, or made by fundus (seed, groups). */
  splitFrom: string;
  /** Per part: images, and per class of the dataset its counts (only the graded classes). */
  parts: Record<PartName, { images: number; classes: Record<string, ClassCount> }>;
}

/** What a card is written from: the saved model's record (metrics included) and the data the run was given. */
export interface ModelCardInput {
  /** The model's name (its folder's). */
  name: string;
  metadata: ModelMetadata;
  sources: CardSource[];
  /** A datasets file joined the sources (else one CSV with a split file). */
  multiSource: boolean;
  /** The images of each part the task used (a task may use only some, e.g. focus: one of its classes exactly). */
  taskImages: Record<PartName, number>;
  /** Pseudo-labelled photographs added to the training part (self-learning). */
  extraExamples: number;
  /** At most this many images of each part were used (a smoke run). */
  limit?: number;
  /** The command that re-runs the held-out evaluation, with the data as given to the run. */
  evaluateCommand: string;
  /** The history as written to history.csv. */
  historyCsv: string;
}

interface ClassScores {
  auc: number | null;
  f1: number | null;
  threshold: number;
}
interface PartScores {
  images: number;
  macroAuc: number | null;
  meanF1: number | null;
  perClass: Record<string, ClassScores>;
}
interface RunMetrics {
  validation: PartScores;
  test: PartScores;
  bestEpoch: number | null;
  epochs: number;
  trainSeconds: number;
  imagesPerSecond: number;
  monitor: string;
}

/** A score as the card prints it: `d` decimals, `n/a` when there is none. */
export const formatScore = (v: number | null | undefined, d = 3): string => (v === null || v === undefined || Number.isNaN(v) ? 'n/a' : v.toFixed(d));
const f = formatScore;
const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

const AUGMENTATION = 'augmentation (flips, rotation, zoom, shift, brightness/contrast/gamma)';
const CAMERA_AUGMENTATION = 'camera augmentation (blur/sharpness, colour temperature, noise, down-and-up resampling, JPEG re-compression)';

const FINE_TUNING: Record<string, string> = {
  probe: 'linear probe (the backbone frozen, only the new head fitted on features computed once)',
  partial: 'partial fine-tuning (the backbone frozen up to its last stage)',
  full: 'full fine-tuning',
};

function fineTuning(ft: TrainingRecipe['fineTune']): string {
  if (!ft) return '';
  const rate = ft.recipe === 'probe' ? '' : `, backbone at ${ft.backboneLrScale}× the head's learning rate`;
  const from = ft.trainableFrom && ft.recipe === 'partial' ? ` from layer \`${ft.trainableFrom}\`` : '';
  const bn = ft.batchNorm === 'frozen' ? ', batch norm kept at its pretrained statistics' : '';
  return `; ${FINE_TUNING[ft.recipe] ?? ft.recipe}${from}${rate}${bn}`;
}

/** How the weights were learnt, in words, from the recipe the run recorded (models older than the record: Adam). */
export function describeRecipe(meta: ModelMetadata): string {
  const t = meta.training;
  if (!t) return `Adam with warm-up + cosine learning rate, ${AUGMENTATION}`;
  if (t.fineTune?.recipe === 'probe') {
    const probe = t.fineTune.probe;
    return (
      'a linear probe: the ImageNet backbone frozen, its pooled features computed once (no augmentation), and one ' +
      'logistic regression per output fitted on them by full-batch Adam' +
      (probe ? ` (L2 penalty ${probe.l2} chosen by validation macro AUC, step ${probe.step} kept)` : '')
    );
  }
  const optimiser = t.optimizer === 'adamw' ? `AdamW (decoupled weight decay ${t.weightDecay})` : 'Adam';
  return (
    `${optimiser}, batch ${t.batchSize}, learning rate ${t.lr} after ${plural(t.warmupEpochs, 'warm-up epoch')}, ` +
    `cosine decay to ${t.minLr} over ${plural(t.epochs, 'epoch')}, ${t.augment ? AUGMENTATION + (t.cameraAugment ? ` and ${CAMERA_AUGMENTATION}` : '') : 'no augmentation'}, ` +
    `seed ${t.seed}${t.initFrom ? `, starting from the weights of ${t.initFrom}` : meta.backbone ? ', starting from ImageNet weights' : ', from scratch'}` +
    fineTuning(t.fineTune) +
    (t.sourceAdversarial
      ? `; trained against a source-adversarial head (gradient reversal, strength ${t.sourceAdversarial.weight}` +
        `${t.sourceAdversarial.lrScale !== undefined ? `, the head at ${t.sourceAdversarial.lrScale}x the learning rate` : ''}) ` +
        `that tried to tell ${t.sourceAdversarial.sources.join(', ')} apart (how much of the source the features keep is what \`fundus audit\` measures)`
      : '') +
    lesionGuidance(t.lesionAttention)
  );
}

function lesionGuidance(l: NonNullable<ModelMetadata['training']>['lesionAttention']): string {
  if (!l) return '';
  const caveat = 'so how well they point at lesions must be measured on photographs it did not train on';
  if (l.head) {
    return `; a lesion map head on ${l.layer} (\`lesion_map\`, one logit per cell) was trained as weak segmentation from expert lesion boxes ` +
      `(${l.boxes} boxes on ${l.photographs} training photographs from ${l.lesions}, and ${l.negatives ?? 0} photographs graded free of ` +
      `${l.className}, weight ${l.weight}), and the map's peak feeds the ${l.className} score: its ${l.className} heatmap at \`lesion_map\` ` +
      `is that map, taught where lesions are, ${caveat}`;
  }
  return `; its ${l.className} map${l.layer ? ` (Grad-CAM at ${l.layer})` : ''} was guided into expert lesion boxes (${l.boxes} boxes on ` +
    `${l.photographs} training photographs from ${l.lesions}, weight ${l.weight}): its heatmaps were taught where to look, ${caveat}`;
}

/** Where the starting weights came from. */
function startingWeights(meta: ModelMetadata): string {
  const b = meta.backbone;
  if (!b) return meta.training?.initFrom ? `fine-tuned from \`${meta.training.initFrom}\`` : 'trained from scratch';
  return (
    `built on the ImageNet-pretrained \`${b.name}\` backbone (${b.source}; licence ${b.licence}; files sha256 \`${b.sha256}\`), ` +
    `its layers up to \`${b.featureLayer}\` followed by a new global-average-pooling + dense head, then trained`
  );
}

function taskSentence(meta: ModelMetadata): string {
  const classes = meta.classes.join(', ');
  switch (meta.task) {
    case 'multilabel':
      return `Multi-label: ${meta.classes.length} independent sigmoid outputs (${classes})`;
    case 'focus':
      return `Focus: softmax over ${meta.classes.join(' / ')}, trained on the photographs carrying exactly one of them`;
    case 'focus-sigmoid':
      return `Focus (sigmoid): ${meta.classes.join(' / ')} as independent outputs`;
    case 'one-vs-normal':
      return `One-vs-normal: one binary network per pathology against normal, combined into one predictor (${classes})`;
  }
}

/** One source's counts: a row per class it grades, a column per part, each cell positives / graded photographs. */
function countsTable(s: CardSource): string {
  const parts: readonly PartName[] = s.role === 'external' ? ['test'] : PART_NAMES;
  const head = `| | ${parts.map((p) => (s.role === 'external' ? 'all' : p)).join(' | ')} |\n| --- |${parts.map(() => ' --- |').join('')}`;
  const images = `| images | ${parts.map((p) => s.parts[p].images).join(' | ')} |`;
  const rows = s.graded.map((c) => `| ${c} | ${parts.map((p) => (s.parts[p].classes[c] ? `${s.parts[p].classes[c].positives} / ${s.parts[p].classes[c].graded}` : '–')).join(' | ')} |`);
  return [head, images, ...rows].join('\n');
}

function dataSection(c: ModelCardInput): string {
  const meta = c.metadata;
  const train = c.sources.filter((s) => s.role === 'train');
  const intro = c.multiSource
    ? `Trained on ${plural(train.length, 'source')} at once (a datasets file, sha256 \`${meta.trainingData?.csvSha256 ?? 'n/a'}\`), each split on its own. ` +
      'A class a source does not grade is masked out of the loss for its photographs (an empty cell means "not graded", never "absent")' +
      `${meta.trainingData?.balanceSources ? '; every source weighs the same in the loss' : ''}.`
    : 'Trained on one labelled CSV and its split file.';
  const sources = c.sources.map(
    (s) =>
      `**${s.name}**${s.role === 'external' ? ' (external: evaluated, never trained on)' : ''}: labels \`${s.csv}\` (sha256 \`${s.csvSha256}\`), ` +
      `graded: ${s.graded.join(', ')}; split: ${s.splitFrom}. Positives / graded photographs per part:\n\n${countsTable(s)}`,
  );
  const split = PART_NAMES.map((p) => train.reduce((a, s) => a + s.parts[p].images, 0));
  const facts = [
    `Split: \`split.json\` in this directory (sha256 \`${meta.trainingData?.splitSha256 ?? 'n/a'}\`): ${split[0]} train / ${split[1]} validation / ${split[2]} test images` +
      (c.limit !== undefined ? `, at most ${c.limit} of each part (\`--limit\`: a smoke run)` : '') + '.',
    `The task used ${c.taskImages.train} training, ${c.taskImages.validation} validation and ${c.taskImages.test} test images` +
      (c.extraExamples > 0 ? `, and ${plural(c.extraExamples, 'pseudo-labelled photograph')} added to training` : '') + '.',
    `Thresholds: ${meta.thresholdPolicy}.`,
    'None of the photographs ship with this model.',
  ];
  return `${intro}\n\n${sources.join('\n\n')}\n\n${facts.map((l) => `- ${l}`).join('\n')}`;
}

function metricsSection(c: ModelCardInput, m: RunMetrics): string {
  const rows = c.metadata.classes.map((k) => {
    const t = m.test.perClass[k];
    const v = m.validation.perClass[k];
    return `| ${k} | ${f(t?.auc)} | ${f(t?.f1)} | ${f(v?.auc)} | ${f(v?.f1)} | ${f(t?.threshold)} |`;
  });
  return (
    `Test part: ${m.test.images} images (the task's images of the test part${c.multiSource ? ', every training source pooled' : ''}), thresholds tuned on ` +
    `validation (${m.validation.images} images). Macro ROC AUC **${f(m.test.macroAuc)}**, mean per-class F1 **${f(m.test.meanF1)}** on test ` +
    `(validation: ${f(m.validation.macroAuc)} / ${f(m.validation.meanF1)}; validation F1 is optimistic since the thresholds were tuned there).\n\n` +
    '| class | test AUC | test F1 | val AUC | val F1 | threshold |\n| --- | --- | --- | --- | --- | --- |\n' +
    rows.join('\n') +
    `\n\nRe-run this evaluation: \`${c.evaluateCommand}\`.`
  );
}

function trainingSection(c: ModelCardInput, m: RunMetrics): string {
  return (
    `${plural(m.epochs, 'epoch')} (best epoch ${m.bestEpoch ?? 'n/a'} by ${m.monitor}), ${(m.trainSeconds / 60).toFixed(1)} min of training at ` +
    `${f(m.imagesPerSecond, 1)} images/s, ${describeRecipe(c.metadata)}, class-balanced loss. Per-epoch history: \`history.csv\` and the ` +
    `TensorBoard event file in this directory.\n\n<details><summary>history.csv</summary>\n\n\`\`\`\n${c.historyCsv.trimEnd()}\n\`\`\`\n</details>`
  );
}

/** The positives for `cls` in `part`, over the training sources. */
function positivesIn(sources: CardSource[], part: PartName, cls: string): number {
  return sources.filter((s) => s.role === 'train').reduce((a, s) => a + (s.parts[part].classes[cls]?.positives ?? 0), 0);
}

/** Limitations that follow from the data and the run; none about data the model was not trained on. */
function limitations(c: ModelCardInput): string[] {
  const meta = c.metadata;
  const train = c.sources.filter((s) => s.role === 'train');
  const names = train.map((s) => s.name).join(', ');
  const items = [
    `**Only the data above.** The held-out parts come from the same ${train.length === 1 ? 'source' : 'sources'} as the training part (${names}), so the ` +
      'metrics say how the model does on more photographs like these, not on another camera, clinic or population. A network ' +
      'also learns whatever else separates the classes in its training photographs (camera, field of view, colour, ' +
      'compression, the clinic a class was collected at): on new photographs expect less than the metrics above, and check ' +
      'Grad-CAM heatmaps (`fundus explain`): evidence on the border or outside the retina is such a shortcut at work.',
  ];
  const few = meta.classes
    .map((k) => ({ k, test: positivesIn(c.sources, 'test', k), val: positivesIn(c.sources, 'validation', k) }))
    .filter((x) => x.test < MIN_RELIABLE_CLASS_COUNT || x.val < MIN_RELIABLE_CLASS_COUNT);
  if (few.length > 0) {
    items.push(
      `**Few positives.** ${few.map((x) => `${x.k}: ${x.val} in validation, ${x.test} in test`).join('; ')}. Below ${MIN_RELIABLE_CLASS_COUNT} positives a ` +
        "class's AUC, F1 and tuned threshold rest on a handful of photographs and can be far from the truth.",
    );
  }
  if (c.multiSource) {
    const partial = meta.classes
      .map((k) => ({ k, by: train.filter((s) => s.graded.includes(k)).map((s) => s.name) }))
      .filter((x) => x.by.length < train.length);
    if (partial.length > 0) {
      items.push(`**Partly graded classes.** ${partial.map((x) => `${x.k} is graded only in ${x.by.length ? x.by.join(', ') : 'no training source'}`).join('; ')}: those outputs learnt from fewer photographs, and from those sources' cameras only.`);
    }
  }
  items.push(
    "**Labels as given.** The labels are the CSV's; fundus does not know how they were graded or by whom, and label errors bound every metric above.",
    `**Input size.** Photographs are reduced to ${meta.inputShape[0]} px: details spanning a pixel or two at this size (the smallest lesions, such as microaneurysms) may be invisible to the model.`,
    `**Thresholds.** Tuned on the validation part (${c.taskImages.validation} images) for the best F1 per class; re-tune them (\`fundus thresholds\`) for another population or a different sensitivity target.`,
  );
  if (c.limit !== undefined) items.push(`**A smoke run.** At most ${c.limit} images of each part were used (\`--limit\`): this model is for testing the tools only.`);
  return items;
}

/** The card's Markdown. */
export function modelCard(c: ModelCardInput): string {
  const meta = c.metadata;
  const m = meta.metrics as unknown as RunMetrics;
  const wrap = (s: string) => s.replace(/\n/g, '\n  ');
  return `# Model card: ${c.name}

${taskSentence(meta)}. Architecture \`${meta.architecture}\`, input ${meta.inputShape.join('×')} (${describePreprocess(meta.preprocess)}),
${startingWeights(meta)} with \`fundus train\` (created ${meta.createdAt})${meta.inference?.tta === 'hflip' ? '. Predictions average each photo and its mirror image (flip test-time augmentation)' : ''}.

## Data

${dataSection(c)}

## Held-out metrics

${metricsSection(c, m)}

## Training

${trainingSection(c, m)}

## Intended use

Research and teaching: a baseline to compare fundus models, to try the \`fundus\` tools (evaluation, Grad-CAM
explanations, self-learning, the viewer) and to triage which photographs a specialist should look at first. It is
**not** a medical device and must not be used to diagnose or to rule out disease.

## Limitations

${limitations(c).map((l) => `- ${wrap(l)}`).join('\n')}
`;
}

/**
 * The items of the card's "Limitations" section as plain text (Markdown emphasis and code marks removed, wrapped
 * lines joined); empty when the model has no card or the card no such section.
 */
export async function modelLimitations(dir: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(join(dir, MODEL_CARD), 'utf8');
  } catch {
    return [];
  }
  const section = LIMITATIONS_SECTION.exec(text)?.[1] ?? '';
  const items: string[] = [];
  for (const line of section.split('\n')) {
    if (/^\s*<!--.*-->\s*$/.test(line)) continue; // markers of what a script added
    if (/^\s*[-*]\s+/.test(line)) items.push(line.replace(/^\s*[-*]\s+/, ''));
    else if (items.length > 0 && line.trim() !== '') items[items.length - 1] += ` ${line.trim()}`;
  }
  return items.map((s) => s.replace(/\*\*|__|`/g, '').replace(/\[([^\]]+)\]\([^)]*\)/g, '$1').trim());
}
