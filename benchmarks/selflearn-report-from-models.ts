// Rebuilds the before/after tables from the model directories a `fundus selflearn` run left behind (for a run that
// was stopped before writing report.json): every model under <out>/models plus the original, evaluated on the test
// part of the split with the same bootstrap as the pipeline. Pseudo-labelling statistics are not recovered.
// Usage: npx tsx benchmarks/selflearn-report-from-models.ts <original-model> <out-dir> <split.json> <csv> <images>
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { readDataset } from '../src/data/csv.js';
import { initEngine } from '../src/engine/index.js';
import { evaluatePredictions } from '../src/eval/evaluate.js';
import { loadModel, type FundusModel } from '../src/models/io.js';
import { predictFiles } from '../src/models/predict.js';
import { verdict, type SelfLearnReport, type VariantResult } from '../src/selflearn/pipeline.js';
import { renderMarkdown } from '../src/selflearn/report.js';
import { readSplitParts } from '../src/train/split.js';
import { writeFileAtomic } from '../src/util/atomic.js';

const [originalDir, outDir, splitPath, csv, images] = process.argv.slice(2);
await initEngine();
const dataset = await readDataset(csv, images);
const split = await readSplitParts(splitPath);
const byName = new Map(dataset.images.map((im) => [im.filename, im]));
const test = split.test.map((n) => byName.get(n)!);

async function evaluate(model: FundusModel) {
  const C = model.metadata.classes.length;
  const idx = model.metadata.classes.map((c) => dataset.classes.indexOf(c));
  const labels = new Uint8Array(test.length * C);
  test.forEach((t, i) => idx.forEach((k, c) => (labels[i * C + c] = t.labels![k])));
  const probs = await predictFiles(model, test.map((t) => t.path));
  return evaluatePredictions({
    classes: model.metadata.classes,
    activation: model.metadata.activation,
    probs,
    labels,
    thresholds: model.metadata.thresholds,
    bootstrap: { resamples: 1000, seed: 0 },
  });
}

const original = await loadModel(originalDir);
const variants: VariantResult[] = [{ name: 'original', method: null, round: 0, mode: 'original', modelDir: originalDir, pseudoLabelled: 0, metrics: await evaluate(original) }];
const order = (n: string) => (n === 'control-finetune' ? 0 : 1);
const names = (await readdir(join(outDir, 'models'))).filter((n) => !n.startsWith('.')).sort((a, b) => order(a) - order(b));
for (const name of names) {
  const m = await loadModel(join(outDir, 'models', name));
  const parts = /^(.*)-r(\d+)-(scratch|finetune)$/.exec(name);
  variants.push({
    name,
    method: parts ? parts[1] : null,
    round: parts ? Number(parts[2]) : 1,
    mode: parts ? (parts[3] as 'scratch' | 'finetune') : 'control',
    modelDir: m.dir,
    pseudoLabelled: m.metadata.trainingData ? m.metadata.trainingData.imageCount - split.train.length : 0,
    metrics: await evaluate(m),
  });
  console.error(`evaluated ${name}`);
}
const report: SelfLearnReport = {
  format: 'fundus-selflearn-report',
  formatVersion: 1,
  createdAt: new Date().toISOString(),
  model: originalDir,
  classes: original.metadata.classes,
  threshold: NaN,
  rounds: 1,
  data: { train: split.train.length, validation: split.validation.length, test: split.test.length, unlabelled: NaN },
  leakageGuard: { unlabelledTotal: NaN, excluded: NaN, kept: NaN, excludedImages: [] },
  pseudoLabelling: [],
  variants,
  verdict: verdict(variants),
};
await writeFileAtomic(join(outDir, 'report.from-models.json'), JSON.stringify(report, null, 2) + '\n');
await writeFileAtomic(join(outDir, 'report.from-models.md'), renderMarkdown(report));
console.log(renderMarkdown(report));
