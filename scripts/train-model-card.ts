// Writes MODEL_CARD.md into a trained model directory from its fundus.json, split.json and history.csv, and, when
// the directory has one, external-validation.json (\`fundus evaluate <dir> --datasets ... --json\`).
// Usage: npx tsx scripts/train-model-card.ts <model_dir> [--notes <markdown file>]
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describePreprocess } from '../src/data/preprocess.js';
import type { ModelMetadata } from '../src/models/metadata.js';

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

const dir = process.argv[2];
if (!dir) {
  console.error('usage: npx tsx scripts/train-model-card.ts <model_dir> [--notes <file>]');
  process.exit(2);
}
const notesIdx = process.argv.indexOf('--notes');
const notes = notesIdx > 0 ? await readFile(process.argv[notesIdx + 1], 'utf8') : '';
const meta = JSON.parse(await readFile(join(dir, 'fundus.json'), 'utf8')) as ModelMetadata;
const split = JSON.parse(await readFile(join(dir, 'split.json'), 'utf8'));
const history = (await readFile(join(dir, 'history.csv'), 'utf8')).trim().split('\n');
const m = meta.metrics as { validation: PartScores; test: PartScores; bestEpoch: number | null; epochs: number; trainSeconds: number; imagesPerSecond: number; monitor: string };
const f = (v: number | null | undefined, d = 3) => (v === null || v === undefined || Number.isNaN(v) ? 'n/a' : v.toFixed(d));

const AUGMENTATION = 'augmentation (flips, rotation, zoom, shift, brightness/contrast/gamma)';

/** The optimiser in words, from the recipe the training run recorded (older models did not). */
function recipe(meta: ModelMetadata): string {
  const t = meta.training;
  if (!t) return `Adam with warm-up + cosine learning rate, ${AUGMENTATION}`;
  const probe = t.fineTune?.recipe === 'probe' ? t.fineTune.probe : undefined;
  if (t.fineTune?.recipe === 'probe') {
    return (
      'a linear probe: the ImageNet backbone frozen, its pooled features computed once (no augmentation), and one ' +
      'logistic regression per output fitted on them by full-batch Adam' +
      (probe ? ` (L2 penalty ${probe.l2} chosen by validation macro AUC, step ${probe.step} kept)` : '')
    );
  }
  const optimiser = t.optimizer === 'adamw' ? `AdamW (decoupled weight decay ${t.weightDecay})` : 'Adam';
  return (
    `${optimiser}, batch ${t.batchSize}, learning rate ${t.lr} after ${t.warmupEpochs} warm-up epoch${t.warmupEpochs === 1 ? '' : 's'}, ` +
    `cosine decay to ${t.minLr} over ${t.epochs} epochs, ${t.augment ? AUGMENTATION + (t.cameraAugment ? ' and camera augmentation (blur/sharpness, colour temperature, noise, down-and-up resampling, JPEG re-compression)' : '') : 'no augmentation'}, ` +
    `seed ${t.seed}${t.initFrom ? `, starting from the weights of ${t.initFrom}` : meta.backbone ? ', starting from ImageNet weights' : ', from scratch'}` +
    fineTuning(t.fineTune) +
    (t.sourceAdversarial
      ? `; a source-adversarial head (gradient reversal, strength ${t.sourceAdversarial.weight}) kept the features from telling ${t.sourceAdversarial.sources.join(', ')} apart`
      : '')
  );
}

const RECIPES: Record<string, string> = {
  probe: 'linear probe (the backbone frozen, only the new head fitted on features computed once)',
  partial: 'partial fine-tuning (the backbone frozen up to its last stage)',
  full: 'full fine-tuning',
};

function fineTuning(ft: NonNullable<ModelMetadata['training']>['fineTune']): string {
  if (!ft) return '';
  const rate = ft.recipe === 'probe' ? '' : `, backbone at ${ft.backboneLrScale}× the head's learning rate`;
  const from = ft.trainableFrom && ft.recipe === 'partial' ? ` from layer \`${ft.trainableFrom}\`` : '';
  const bn = ft.batchNorm === 'frozen' ? ', batch norm kept at its pretrained statistics' : '';
  return `; ${RECIPES[ft.recipe] ?? ft.recipe}${from}${rate}${bn}`;
}

function budgetLimitation(meta: ModelMetadata): string {
  const side = meta.inputShape[0];
  if (meta.backbone) {
    return (
      `- Fine-tuned from ImageNet weights on a 2-core CPU at ${side} px: the smallest lesions (microaneurysms) span a pixel or\n` +
      '  two at this input size, and published results on this dataset (mean F1 about 0.95 with a larger pretrained\n' +
      '  network at higher resolution) remain above it.'
    );
  }
  return (
    '- Trained from scratch within a one-hour CPU budget at reduced resolution: small lesions (microaneurysms, small\n' +
    '  haemorrhages) may be invisible at this input size, and the model is far from the state of the art on this dataset\n' +
    '  (a pretrained ResNeSt-50 reaches a mean F1 of about 0.95).'
  );
}

/** Where the starting weights came from, for models built on a pretrained backbone. */
function backboneLine(meta: ModelMetadata): string {
  const b = meta.backbone;
  if (!b) return 'trained from scratch';
  return (
    `built on the ImageNet-pretrained \`${b.name}\` backbone (${b.source}; licence ${b.licence}; files sha256 \`${b.sha256}\`), ` +
    `its layers up to \`${b.featureLayer}\` followed by a new global-average-pooling + dense head, then trained`
  );
}

const rows = meta.classes
  .map((c: string) => {
    const t = m.test.perClass[c];
    const v = m.validation.perClass[c];
    return `| ${c} | ${f(t.auc)} | ${f(t.f1)} | ${f(v.auc)} | ${f(v.f1)} | ${f(t.threshold, 3)} |`;
  })
  .join('\n');

const task: Record<string, string> = {
  multilabel: 'multi-label: 7 independent sigmoid outputs (opacity, diabetic retinopathy, glaucoma, macular edema, macular degeneration, retinal vascular occlusion, normal)',
  focus: 'focus: softmax over diabetic retinopathy / glaucoma / normal, trained on images carrying exactly one of the three',
  'focus-sigmoid': 'focus (sigmoid): diabetic retinopathy / glaucoma / normal as independent outputs',
  'one-vs-normal': 'one-vs-normal: one binary network per pathology against normal, combined into one predictor',
};

/** The camera-confound limitation: what a VietAI-only model risks, or what multi-source training does about it. */
function cameraLimitation(meta: ModelMetadata): string {
  if (!meta.trainingData?.sources) {
    return `- **Camera confound.** Most \`normal\` images come from other cameras and clinics (Messidor / EyePACS) than the diseased
  ones (Cao Thang Eye Hospital). A network can tell \`normal\` from disease partly by colour, field of view, resolution
  and compression of the camera rather than by the retina. Held-out metrics on this split therefore overstate how well
  the model separates healthy from diseased eyes photographed *with the same camera*; on photographs from a new clinic
  or camera, expect the \`normal\` output (and every pathology-vs-normal decision) to be much less reliable. Check
  Grad-CAM heatmaps: evidence on the black border or the image edges, rather than on the vessels, disc or macula, is
  this shortcut at work.`;
  }
  return (
    '- **Camera confound, reduced, not removed.** In VietAI most `normal` photographs come from other cameras (Messidor /\n' +
    '  EyePACS) than the diseased ones. This model also learnt from mexico-b, where diabetic retinopathy, macular edema\n' +
    '  and their absence come from the same camera, and from IDRiD photographs with lesions; the external validation\n' +
    '  above shows how it does on photographs from clinics it was trained on (held-out patients) and one it never saw.\n' +
    '  Its `normal` output is still learnt from VietAI alone (no other source grades it), so on a new camera trust the\n' +
    '  pathology outputs more than `normal`, and check Grad-CAM heatmaps: evidence on the border or the image edges is\n' +
    '  the shortcut at work. `fundus audit --model` measures how much of the source the embedding still carries.'
  );
}

/** What each source of a multi-source model is, its terms, and what was used of it. */
const SOURCE_NOTES: Record<string, string> = {
  vietai:
    'VietAI retinal disease dataset (Kaggle "vietai-advance-course-retinal-disease-detection"): 512×512 photographs from Cao Thang Eye ' +
    'Hospital (Vietnam); most `normal` images come from public screening sets (Messidor / EyePACS), i.e. other cameras',
  'mexico-b':
    'OCT-AND-EYE-FUNDUS-DATASET, acquisition batch B (Mexican clinics IMO, APEC, INDEREB; Hughes Cano, Olivares Pinto & Thébault): ' +
    'diabetic retinopathy and macular edema graded on photographs of diabetic patients, disease and its absence from the same camera; ' +
    'split by patient. No licence is granted: the photographs are used for research with citation and are not redistributed',
  codras:
    'CODRAS (von Csefalvay, 2019) on IDRiD photographs (Porwal et al., 2018; CC BY 4.0; Kowa VX-10α, India): only photographs with ' +
    'expert lesion boxes, as diabetic retinopathy positives (photographs without boxes are of unknown grade and are not used)',
  heimed: 'HEI-MED (Giancardo et al., 2012; non-commercial research only): macular edema (exudate proxy); external validation only, never trained on',
};

function dataSection(meta: ModelMetadata): string {
  const sources = meta.trainingData?.sources;
  const common =
    `- Split: \`split.json\` in this directory (sha256 \`${meta.trainingData?.splitSha256 ?? 'n/a'}\`): ${split.parts.train.length} train /\n` +
    `  ${split.parts.validation.length} validation / ${split.parts.test.length} test images. Training ${sources ? 'datasets file' : 'CSV'} sha256 ` +
    `\`${meta.trainingData?.csvSha256 ?? 'n/a'}\`; the task used\n  ${meta.trainingData?.imageCount ?? 'n/a'} training images.\n` +
    `- Thresholds: ${meta.thresholdPolicy}.`;
  if (!sources) {
    return (
      '- VietAI retinal disease dataset (Kaggle "vietai-advance-course-retinal-disease-detection"): 3,435 labelled\n' +
      '  512×512 fundus photographs from Cao Thang Eye Hospital (Vietnam); most `normal` images come from public screening\n' +
      '  sets (Messidor / EyePACS). The data is not redistributed with this model. Near-duplicate photographs of one eye are\n' +
      '  kept in one part of the split, stratified over the labels.\n' +
      common
    );
  }
  const lines = sources.map(
    (s) =>
      `- **${s.name}** (${s.images.train} / ${s.images.validation} / ${s.images.test} train / validation / test; split: ${s.splitFrom}; ` +
      `graded: ${s.graded.join(', ')}): ${SOURCE_NOTES[s.name] ?? 'see its datasets file'}.`,
  );
  return (
    'Trained on several sources at once (`--datasets`), each split by its own groups so that nothing leaks between parts. ' +
    'A class a source does not grade is masked out of the loss for its photographs (an empty cell means "not graded", never ' +
    `"absent")${meta.trainingData?.balanceSources ? '; every source weighs the same in the loss' : ''}. None of the photographs ship with this model.\n\n` +
    lines.join('\n') +
    '\n' +
    common
  );
}

interface ExternalMetric {
  value: number | null;
  ci: [number, number] | null;
}
interface ExternalSet {
  data: { source?: string; role?: string; part?: string };
  imageCount: number;
  notes: string[];
  perClass: Record<string, { positives: number; negatives: number; auc: ExternalMetric }>;
}

/** The "External validation" section from `fundus evaluate --datasets ... --json`, when the directory keeps its output. */
async function externalSection(): Promise<string> {
  const text = await readFile(join(dir, 'external-validation.json'), 'utf8').catch(() => undefined);
  if (!text) return '';
  const ev = JSON.parse(text) as { sets: ExternalSet[]; warnings: string[] };
  const trained = new Set((meta.trainingData?.sources ?? [{ name: 'vietai', role: 'train' }]).filter((s) => s.role === 'train').map((s) => s.name));
  const rows = ev.sets.flatMap((s) => {
    const name = s.data.source ?? '?';
    const how = s.data.role === 'external' ? 'all photographs; **never trained on**' : `held-out ${s.data.part} part${trained.has(name) ? '' : '; never trained on'}`;
    return Object.entries(s.perClass).map(
      ([c, v]) => `| ${name} (${how}) | ${c} | ${v.positives} / ${v.negatives} | ${f(v.auc.value)} | ${v.auc.ci ? `${f(v.auc.ci[0])}–${f(v.auc.ci[1])}` : 'n/a'} |`,
    );
  });
  return (
    '## External validation\n\n' +
    'Each class on the photographs graded for it (an empty cell is "not graded"), with 95% bootstrap intervals; small ' +
    'sets give wide intervals. These sets have their own acquisition cues (in mexico-b, simple colour statistics separate ' +
    'DR from non-DR photographs with AUC 0.87, see its README), so they bound rather than settle how the model does in a ' +
    'new clinic.\n\n' +
    '| set | class | positives / negatives | ROC AUC | 95% interval |\n| --- | --- | --- | --- | --- |\n' +
    rows.join('\n') +
    '\n\n' +
    (ev.warnings.length
      ? `Confounding between class and source in these sets: ${ev.warnings.join('; ')}.\n\n`
      : 'No class is confounded with the source across these sets (the source alone predicts no class with AUC ≥ 0.7).\n\n') +
    `Re-run: \`fundus evaluate ${dir} --datasets datasets/train.json datasets/external.json --part test\`.\n\n`
  );
}


const card = `# Model card: ${dir.replace(/\/$/, '').split('/').pop()}

${task[meta.task] ?? meta.task}. Architecture \`${meta.architecture}\`, input ${meta.inputShape.join('×')}
(${describePreprocess(meta.preprocess)}),
${backboneLine(meta)} with \`fundus train\` (created ${meta.createdAt})${meta.inference?.tta === 'hflip' ? '. Predictions average each photo and its mirror image (flip test-time augmentation)' : ''}.

## Data

${dataSection(meta)}

## Held-out metrics

Test part: ${m.test.images} images (the task's images of the test part${meta.trainingData?.sources ? ', every training source pooled: the per-source tables are under External validation' : ''}), thresholds tuned on validation
(${m.validation.images} images). Macro ROC AUC **${f(m.test.macroAuc)}**, mean per-class F1 **${f(m.test.meanF1)}** on test
(validation: ${f(m.validation.macroAuc)} / ${f(m.validation.meanF1)}; validation F1 is optimistic since the thresholds were
tuned there).

| class | test AUC | test F1 | val AUC | val F1 | threshold |
| --- | --- | --- | --- | --- | --- |
${rows}

Re-run this evaluation: ${meta.trainingData?.sources ? `\`fundus evaluate ${dir} --datasets datasets/train.json --part test\` (one table per source)` : `\`fundus evaluate ${dir} --data ../shared/data/vietai/train.csv ../shared/data/vietai/train --split ${dir}/split.json --part test\``}.

${await externalSection()}
## Training

${m.epochs} epochs (best epoch ${m.bestEpoch ?? 'n/a'} by ${m.monitor}), ${(m.trainSeconds / 60).toFixed(1)} min of training at
${f(m.imagesPerSecond, 1)} images/s on a 2-core machine (native oneDNN engine), ${recipe(meta)},
class-balanced loss. Per-epoch history:
\`history.csv\` and the TensorBoard event file in this directory.

<details><summary>history.csv</summary>

\`\`\`
${history.join('\n')}
\`\`\`
</details>

${notes}
## Intended use

Research and teaching: a baseline to compare fundus models, to try the \`fundus\` tools (evaluation, Grad-CAM
explanations, self-learning, the viewer) and to triage which photographs a specialist should look at first. It is
**not** a medical device and must not be used to diagnose or to rule out disease.

## Limitations

${cameraLimitation(meta)}
- Small data (${meta.trainingData?.imageCount ?? 'n/a'} training images for this task; 440–1,533 positives per class in the whole dataset), one hospital, no patient ids (repeat
  photographs of one eye were grouped by image similarity, which can miss some), labels from the contest without
  known grading protocol.
${budgetLimitation(meta)}
- Thresholds were tuned on a validation part of a few hundred images; re-tune them (\`fundus thresholds\`) for another
  population or a different sensitivity target.
`;

await writeFile(join(dir, 'MODEL_CARD.md'), card);
console.log(`wrote ${join(dir, 'MODEL_CARD.md')}`);
