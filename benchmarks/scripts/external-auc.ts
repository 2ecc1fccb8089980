// Per-class ROC AUC of models on the external sets of ../shared/data/external, whose CSVs grade only some classes
// (an empty cell is "not graded" and is left out, never read as 0). A measurement script until `fundus evaluate`
// reads such CSVs itself (issue "Generalise across cameras"); the photographs never leave ../shared.
// Usage: tsx benchmarks/scripts/external-auc.ts <model-dir> [<model-dir> ...]   (EXTERNAL=../shared/data/external)
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { initEngine } from '../../src/engine/index.js';
import { rocAuc } from '../../src/metrics/metrics.js';
import { loadModel } from '../../src/models/io.js';
import { predictFiles } from '../../src/models/predictor.js';

const root = process.env.EXTERNAL ?? join(import.meta.dirname, '..', '..', '..', 'shared', 'data', 'external');
const SETS = [
  { name: 'heimed', csv: 'heimed/labels.csv', images: 'heimed/images' },
  { name: 'mexico-b', csv: 'mexico-b/labels.csv', images: 'mexico-b/images' },
];

/** Rows of a CSV whose first column is the file name; cells stay strings ('' = not graded). Quoted cells unquoted. */
async function readCsv(path: string): Promise<{ header: string[]; rows: string[][] }> {
  const lines = (await readFile(path, 'utf8')).trim().split(/\r?\n/);
  const split = (l: string) => l.split(',').map((c) => c.trim().replace(/^"(.*)"$/, '$1'));
  return { header: split(lines[0]), rows: lines.slice(1).map(split) };
}

await initEngine();
for (const dir of process.argv.slice(2)) {
  const model = await loadModel(dir);
  const C = model.metadata.classes.length;
  for (const set of SETS) {
    const { header, rows } = await readCsv(join(root, set.csv));
    const files = rows.map((r) => join(root, set.images, r[0]));
    const probs = await predictFiles(model, files);
    for (const cls of header.filter((h) => model.metadata.classes.includes(h))) {
      const col = header.indexOf(cls);
      const k = model.metadata.classes.indexOf(cls);
      const graded = rows.map((r, i) => [r[col], i] as const).filter(([v]) => v === '0' || v === '1');
      const y = Uint8Array.from(graded.map(([v]) => Number(v)));
      const p = Float64Array.from(graded.map(([, i]) => probs[i * C + k]));
      const auc = rocAuc(y, p);
      const pos = y.reduce((a, b) => a + b, 0);
      console.log(`${dir}\t${set.name}\t${cls}\tAUC ${auc === null ? 'n/a' : auc.toFixed(3)}\t(${pos} positive / ${y.length - pos} negative graded photos)`);
    }
    // Diseased vs "normal" output: does the model call disease from this camera normal?
    if (model.metadata.classes.includes('normal')) {
      const kn = model.metadata.classes.indexOf('normal');
      const dr = header.indexOf('diabetic retinopathy');
      if (dr >= 0) {
        const graded = rows.map((r, i) => [r[dr], i] as const).filter(([v]) => v === '0' || v === '1');
        const y = Uint8Array.from(graded.map(([v]) => (v === '0' ? 1 : 0)));
        const p = Float64Array.from(graded.map(([, i]) => probs[i * C + kn]));
        console.log(`${dir}\t${set.name}\tnormal output: DR-free vs DR\tAUC ${rocAuc(y, p)?.toFixed(3) ?? 'n/a'}`);
      }
    }
  }
}
