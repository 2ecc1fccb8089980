// What averaging several models' probabilities would give (issue 15: how far a combination of the trained backbones is
// from the 7-label target): per-class and macro ROC AUC on one part of each training source of a datasets file, for
// each model alone and for the mean of their probabilities (each model with its own preprocessing and flip TTA).
// Classes a source does not grade are left out of its AUCs. A measurement, not a product feature: fundus ships one
// network per model.
//
// Usage: tsx benchmarks/scripts/ensemble-auc.ts <model-dir> <model-dir> [...] [--datasets datasets/train.json]
//          [--part test]
import { readDatasets } from '../../src/data/datasets.js';
import { initEngine } from '../../src/engine/index.js';
import { rocAuc } from '../../src/metrics/metrics.js';
import { loadModel } from '../../src/models/io.js';
import { predictFiles } from '../../src/models/predictor.js';

const args = process.argv.slice(2);
const flag = (name: string): string | undefined => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
};
const dirs = args.filter((a, i) => !a.startsWith('--') && (i === 0 || !args[i - 1].startsWith('--')));
if (dirs.length < 2) throw new Error('name at least two model directories');
const part = (flag('part') ?? 'test') as 'train' | 'validation' | 'test';
const data = await readDatasets(flag('datasets') ?? 'datasets/train.json');

await initEngine();
const models = await Promise.all(dirs.map((d) => loadModel(d)));
const classes = models[0].metadata.classes;
for (const m of models) {
  if (m.metadata.classes.join() !== classes.join()) throw new Error(`${m.dir}: classes differ from ${models[0].dir}'s`);
}
const byName = new Map(data.dataset.images.map((im) => [im.filename, im]));
const fmt = (v: number) => (Number.isNaN(v) ? '  —  ' : v.toFixed(3));

console.log(`Per-class ROC AUC on the ${part} part of ${data.path}; "mean" averages the ${dirs.length} models' probabilities.\n`);
for (const source of data.sources.filter((s) => s.role === 'train')) {
  const images = source.parts[part].map((n) => byName.get(n)!).filter(Boolean);
  const probs: Float32Array[] = [];
  for (const m of models) probs.push(await predictFiles(m, images.map((im) => im.path)));
  const C = classes.length;
  const mean = Float32Array.from(probs[0], (_, i) => probs.reduce((s, p) => s + p[i], 0) / probs.length);
  const columns = [...dirs, 'mean'];
  const all = [...probs, mean];
  const rows: string[] = [];
  const macro = columns.map(() => [] as number[]);
  classes.forEach((cls, k) => {
    const graded = images.map((im, i) => [im, i] as const).filter(([im]) => !im.graded || im.graded[k] === 1);
    const y = Uint8Array.from(graded.map(([im]) => im.labels![k]));
    const pos = y.reduce((a, b) => a + b, 0);
    if (pos === 0 || pos === y.length) return;
    const aucs = all.map((p) => rocAuc(y, Float64Array.from(graded.map(([, i]) => p[i * C + k]))) ?? Number.NaN);
    aucs.forEach((a, j) => macro[j].push(a));
    rows.push(`| ${cls} | ${pos}/${y.length} | ${aucs.map(fmt).join(' | ')} |`);
  });
  console.log(`### ${source.name} (${images.length} photographs)\n`);
  console.log(`| class | positives | ${columns.join(' | ')} |`);
  console.log(`|:--|--:|${columns.map(() => '--:').join('|')}|`);
  console.log(rows.join('\n'));
  console.log(`| **macro** | | ${macro.map((a) => `**${fmt(a.reduce((s, v) => s + v, 0) / a.length)}**`).join(' | ')} |\n`);
}
