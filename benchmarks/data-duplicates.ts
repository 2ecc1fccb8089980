// Duplicate detection on the real data: timing, the similarity distribution the threshold is read from, and a check
// that the known copies and repeats of the data README are found. Exit code 1 when one of them is missed.
// Usage: npx tsx benchmarks/data-duplicates.ts [--similarity 0.5] [--no-cache]
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';
import { readDataset } from '../src/data/csv.js';
import { analyseDuplicates, similarityHistogram } from '../src/data/dedup.js';
import { DEFAULT_SIMILARITY } from '../src/data/duplicates.js';

const { values } = parseArgs({ options: { similarity: { type: 'string' }, 'no-cache': { type: 'boolean', default: false } } });
const data = join(import.meta.dirname, '..', '..', 'shared', 'data', 'vietai');
const ds = await readDataset(join(data, 'train.csv'), join(data, 'train'));
const similarity = values.similarity ? Number(values.similarity) : DEFAULT_SIMILARITY;
const t0 = performance.now();
const a = await analyseDuplicates(ds, join(data, 'unlabeled'), { similarity, progressLabel: 'fingerprinting', cacheDir: values['no-cache'] ? false : undefined });
const seconds = (performance.now() - t0) / 1000;
console.log(similarityHistogram(a.scored, similarity));
console.log(`\n${a.images} images in ${seconds.toFixed(1)} s (${values['no-cache'] ? 'no' : 'with the'} fingerprint cache)`);
console.log(`${a.groups.length} groups holding ${a.groups.reduce((s, g) => s + g.members.length, 0)} images, largest ${Math.max(...a.groups.map((g) => g.members.length))}`);
console.log(`${a.groups.filter((g) => g.crossFolder).length} groups across train/ and unlabeled/, ${a.groups.filter((g) => g.labelsDisagree).length} with disagreeing labels`);
console.log(`byte-identical pairs: ${a.exactPairs.map(([x, y]) => `${basename(x)}=${basename(y)}`).join(', ')}`);

const known: [string, string, string][] = [
  ['0ba42a306e0a', '3ebf8794ed00', 'byte-identical'],
  ['26493786f81b', 'b2aceff2ad5c', 'byte-identical'],
  ['32ccb3153d34', '9049590eef6b', 'byte-identical'],
  ['a5289a80cde6', 'fa7b559b2fdd', 'repeat (README: unlabeled a5289a80cde6, train fa7b559b2fdd)'],
  ['68458fbb7992', '9e7ec527b1f7', 'repeat (README: unlabeled 68458fbb7992, train 9e7ec527b1f7)'],
];
let missed = 0;
for (const [x, y, what] of known) {
  const g = a.groups.find((g) => g.members.some((m) => basename(m).startsWith(x)) && g.members.some((m) => basename(m).startsWith(y)));
  const where = (id: string): string => basename(join(a.paths.find((p) => basename(p).startsWith(id)) ?? '?', '..'));
  const exact = a.exactPairs.some(([p, q]) => [basename(p), basename(q)].sort().join() === [`${x}.jpg`, `${y}.jpg`].sort().join());
  if (!g) missed++;
  console.log(`${g ? 'found ' : 'MISSED'} ${x} (${where(x)}) ~ ${y} (${where(y)}): ${what}${exact ? ', same bytes' : ''}${g ? `; group of ${g.members.length}` : ''}`);
}
process.exit(missed > 0 ? 1 : 0);
