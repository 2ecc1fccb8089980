// Prints the table of trained models × tasks from their model directories: held-out test macro AUC and mean F1
// (thresholds tuned on validation), AUC of the focus classes, training time and speed. Used by train-tasks.sh and
// for the models table in docs/models.md.
// Run: npx tsx scripts/models-table.ts <model-dir>...
import { readMetadata } from '../src/models/io.js';
import { InputError } from '../src/util/errors.js';

interface Scores {
  macroAuc: number | null;
  meanF1: number | null;
  perClass: Record<string, { auc: number | null; f1: number | null }>;
}

const fmt = (v: number | null | undefined, digits = 3) => (v === null || v === undefined || Number.isNaN(v) ? '–' : v.toFixed(digits));

const dirs = process.argv.slice(2);
if (dirs.length === 0) throw new InputError('usage: models-table.ts <model-dir>...');
console.log('| model | task | architecture, input | test macro AUC | test mean F1 | DR AUC | glaucoma AUC | epochs | training | images/s |');
console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
for (const dir of dirs) {
  const m = await readMetadata(dir);
  const metrics = (m.metrics ?? {}) as { test?: Scores; epochs?: number; trainSeconds?: number; imagesPerSecond?: number };
  const test = metrics.test;
  const auc = (c: string) => fmt(test?.perClass[c]?.auc);
  const [h, , ch] = m.inputShape;
  console.log(
    `| ${dir} | ${m.task} | ${m.architecture}, ${h} px ${ch === 1 ? 'green' : 'RGB'} | ${fmt(test?.macroAuc)} | ${fmt(test?.meanF1)} | ` +
      `${auc('diabetic retinopathy')} | ${auc('glaucoma')} | ${metrics.epochs ?? '–'} | ${fmt((metrics.trainSeconds ?? NaN) / 60, 1)} min | ${fmt(metrics.imagesPerSecond, 1)} |`,
  );
}
