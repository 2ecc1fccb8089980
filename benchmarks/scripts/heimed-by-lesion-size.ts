// HEI-MED macular edema AUC by how much exudate a positive photograph shows: the positives are cut into quartiles of
// their total exudate box area (heimed/lesions.csv, pixels² of the shipped 1024 px photographs) and each quartile
// is scored against every negative. It says whether a model misses macular edema because the exudates are too small
// for its input resolution (a few pixels at 224 px) rather than because it does not know them.
// Usage: npx tsx benchmarks/scripts/heimed-by-lesion-size.ts <predictions.csv> ...
//   (each from `fundus predict <model> ../shared/data/external/heimed/images -f csv -o <file>`)
import { readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { parseCsvRecords } from '../../src/data/csv.js';
import { readLesions } from '../../src/data/lesions.js';
import { rocAuc } from '../../src/metrics/metrics.js';

const HEIMED = join(import.meta.dirname, '..', '..', '..', 'shared', 'data', 'external', 'heimed');
const CLASS = 'macular edema';

async function csvRows(file: string): Promise<Record<string, string>[]> {
  const text = (await readFile(file, 'utf8')).split('\n').filter((l) => !l.startsWith('#')).join('\n');
  const [head, ...rows] = parseCsvRecords(text);
  return rows.map((r) => Object.fromEntries(head.fields.map((h, i) => [h.trim(), r.fields[i]?.trim() ?? ''])));
}

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error('usage: npx tsx benchmarks/scripts/heimed-by-lesion-size.ts <predictions.csv> ...');
  process.exit(2);
}
const labels = new Map((await csvRows(join(HEIMED, 'labels.csv'))).filter((r) => r[CLASS] !== '').map((r) => [r.filename, r[CLASS] === '1']));
const exudates = await readLesions(join(HEIMED, 'lesions.csv'), { types: ['Exudate'] });
const area = (f: string) => (exudates.byImage.get(f) ?? []).reduce((a, b) => a + (b.x1 - b.x0) * (b.y1 - b.y0), 0);

const auc = (pos: number[], neg: number[]) =>
  rocAuc(Uint8Array.from([...pos.map(() => 1), ...neg.map(() => 0)]), Float64Array.from([...pos, ...neg]));
console.log('| predictions | all | ' + [1, 2, 3, 4].map((q) => `quartile ${q} of exudate area`).join(' | ') + ' |');
console.log('| --- | --- | --- | --- | --- | --- |');
let ranges: string[] = [];
for (const file of files) {
  const score = new Map((await csvRows(file)).map((r) => [basename(r.file), Number(r[CLASS])]));
  const neg = [...labels].filter(([f, y]) => !y && score.has(f)).map(([f]) => score.get(f)!);
  const pos = [...labels].filter(([f, y]) => y && score.has(f)).map(([f]) => ({ area: area(f), p: score.get(f)! }));
  pos.sort((a, b) => a.area - b.area);
  const quartiles = [0, 1, 2, 3].map((q) => pos.slice(Math.floor((q * pos.length) / 4), Math.floor(((q + 1) * pos.length) / 4)));
  ranges = quartiles.map((qs) => `${qs[0].area.toFixed(0)}–${qs[qs.length - 1].area.toFixed(0)} px² (${qs.length})`);
  const cells = [auc(pos.map((x) => x.p), neg), ...quartiles.map((qs) => auc(qs.map((x) => x.p), neg))];
  console.log(`| ${file} (${pos.length} + / ${neg.length} −) | ${cells.map((c) => (c === null ? 'n/a' : c.toFixed(3))).join(' | ')} |`);
}
console.log(`\nQuartiles of the positives' total exudate box area: ${ranges.join('; ')}.`);
