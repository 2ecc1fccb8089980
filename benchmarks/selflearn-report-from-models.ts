// Rebuilds the before/after tables from the model directories a `fundus selflearn` run left behind (for a run that
// was stopped before writing report.json): every model under <out>/models plus the original, evaluated on the test
// part of the split by the pipeline's own evaluation (evaluateOnPart) and compared by its own paired comparisons.
// Pseudo-labelling statistics and arm budgets are not recovered (see report.partial.* for those).
// Usage: npx tsx benchmarks/selflearn-report-from-models.ts <original-model> <out-dir> <split.json> <csv> <images>
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { readDataset } from '../src/data/csv.js';
import { initEngine } from '../src/engine/index.js';
import { loadModel } from '../src/models/io.js';
import { evaluateOnPart, type PartEvaluation } from '../src/selflearn/evaluate.js';
import { compareArms } from '../src/selflearn/comparisons.js';
import type { SelfLearnReport, VariantResult } from '../src/selflearn/schema.js';
import { verdict } from '../src/selflearn/verdict.js';
import { renderMarkdown } from '../src/selflearn/report.js';
import { readSplitParts } from '../src/data/split.js';
import { writeFileAtomic } from '../src/util/atomic.js';

const [originalDir, outDir, splitPath, csv, images] = process.argv.slice(2);
if (!images) {
  console.error('usage: npx tsx benchmarks/selflearn-report-from-models.ts <original-model> <out-dir> <split.json> <csv> <images>');
  process.exit(2);
}
await initEngine();
const dataset = await readDataset(csv, images);
const split = await readSplitParts(splitPath);
const bootstrap = { resamples: 1000, seed: 0 };
const evaluations = new Map<string, PartEvaluation>();

const original = await loadModel(originalDir);
const validationAuc = (m: typeof original) => (m.metadata.metrics?.validation as { macroAuc?: number } | undefined)?.macroAuc ?? null;
const evaluate = async (name: string, m: typeof original) => {
  const e = await evaluateOnPart(m, dataset, split.test, { bootstrap });
  evaluations.set(name, e);
  console.error(`evaluated ${name}`);
  return e.metrics;
};
const base = { teacher: null, positivesPerClass: null, budget: null };
const variants: VariantResult[] = [
  { ...base, name: 'original', method: null, round: 0, mode: 'original', modelDir: originalDir, pseudoLabelled: 0, validationMacroAuc: validationAuc(original), metrics: await evaluate('original', original) },
];
// Controls first, as the pipeline runs them.
const order = (n: string) => (n.startsWith('control-') ? 0 : 1);
const names = (await readdir(join(outDir, 'models'))).filter((n) => !n.startsWith('.')).sort((a, b) => order(a) - order(b));
for (const name of names) {
  const m = await loadModel(join(outDir, 'models', name));
  const arm = /^(.*)-r(\d+)-(scratch|finetune)$/.exec(name);
  const control = /^control-(scratch|finetune)$/.exec(name);
  if (!arm && !control) continue;
  variants.push({
    ...base,
    name,
    method: arm ? arm[1] : null,
    round: arm ? Number(arm[2]) : 1,
    mode: arm ? (arm[3] as 'scratch' | 'finetune') : 'control',
    ...(control ? { controlFor: control[1] as 'scratch' | 'finetune' } : {}),
    modelDir: m.dir,
    // Training images beyond the labelled train part; unknown (NaN) for a run with --limit.
    pseudoLabelled: m.metadata.trainingData && m.metadata.trainingData.imageCount >= split.train.length ? m.metadata.trainingData.imageCount - split.train.length : NaN,
    validationMacroAuc: validationAuc(m),
    metrics: await evaluate(name, m),
  });
}
const comparisons = compareArms(variants, evaluations, bootstrap);
const report: SelfLearnReport = {
  format: 'fundus-selflearn-report',
  formatVersion: 2,
  createdAt: new Date().toISOString(),
  model: originalDir,
  classes: original.metadata.classes,
  threshold: NaN,
  rounds: Math.max(...variants.map((v) => v.round)),
  roundsChoice: null,
  originalTraining: null,
  data: { train: split.train.length, validation: split.validation.length, test: split.test.length, unlabelled: NaN },
  leakageGuard: { unlabelledTotal: NaN, excluded: NaN, kept: NaN, excludedImages: [] },
  pseudoLabelling: [],
  variants,
  skipped: [],
  comparisons,
  verdict: verdict(variants, comparisons),
  wallSeconds: NaN,
  notes: ['Rebuilt from the model directories: pseudo-labelling statistics, budgets and the leakage guard are not recovered.'],
};
await writeFileAtomic(join(outDir, 'report.from-models.json'), JSON.stringify(report, null, 2) + '\n');
await writeFileAtomic(join(outDir, 'report.from-models.md'), renderMarkdown(report));
console.log(renderMarkdown(report));
