// Prints the backbone × recipe × input size table of trained model directories (their fundus.json): validation and
// test macro AUC and mean F1 (thresholds tuned on validation), training minutes and images/s.
// Usage: tsx benchmarks/backbone-recipes-table.ts <model-dir> [<model-dir> ...]
import { readMetadata } from '../src/models/io.js';

interface PartScores {
  macroAuc: number | null;
  meanF1: number | null;
}

const f = (v: number | null | undefined, d = 3) => (v === null || v === undefined || Number.isNaN(v) ? 'n/a' : v.toFixed(d));

const dirs = process.argv.slice(2);
if (dirs.length === 0) {
  console.error('usage: tsx benchmarks/backbone-recipes-table.ts <model-dir> [<model-dir> ...]');
  process.exit(2);
}
console.log('| model | backbone | recipe | input | val macro AUC | val mean F1 | test macro AUC | test mean F1 | epochs (best) | training min | images/s |');
console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
for (const dir of dirs) {
  const meta = await readMetadata(dir);
  const m = (meta.metrics ?? {}) as { validation?: PartScores; test?: PartScores; epochs?: number; bestEpoch?: number | null; trainSeconds?: number; imagesPerSecond?: number };
  const ft = meta.training?.fineTune;
  const recipe = ft
    ? `${ft.recipe}${ft.recipe === 'probe' ? '' : `, backbone lr ×${ft.backboneLrScale}, BN ${ft.batchNorm}`}${meta.training?.initFrom ? `, from ${meta.training.initFrom}` : ''}`
    : meta.training?.initFrom
      ? `from ${meta.training.initFrom}`
      : 'from scratch';
  const epochs = ft?.recipe === 'probe' ? 'probe' : `${m.epochs ?? 'n/a'} (${m.bestEpoch ?? 'n/a'})`;
  console.log(
    `| ${dir} | ${meta.backbone?.name ?? meta.architecture} | ${recipe}${meta.inference?.tta === 'hflip' ? ', flip TTA' : ''} | ${meta.inputShape[0]} px | ` +
      `${f(m.validation?.macroAuc)} | ${f(m.validation?.meanF1)} | ${f(m.test?.macroAuc)} | ${f(m.test?.meanF1)} | ${epochs} | ` +
      `${m.trainSeconds !== undefined ? (m.trainSeconds / 60).toFixed(1) : 'n/a'} | ${f(m.imagesPerSecond, 1)} |`,
  );
}
