import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CLASSES } from '../../src/data/labels.js';
import type { Dataset } from '../../src/data/labels.js';
import { iterativeStratification, makeSplit, PART_NAMES, partOf, readSplit } from '../../src/data/split.js';
import type { MakeSplitOptions } from '../../src/data/split.js';
import { seededRandom } from '../../src/data/random.js';
import { InputError } from '../../src/util/errors.js';
import { tempDir } from '../helpers.js';

/** A synthetic multi-label dataset with the VietAI's imbalance (a rare class) and near-duplicate groups. */
function synthetic(n: number, seed: number): { ds: Dataset; groups: string[][] } {
  const rng = seededRandom(seed);
  const rates = [0.45, 0.22, 0.17, 0.15, 0.17, 0.03, 0.15];
  const images = Array.from({ length: n }, (_, i) => {
    const labels = new Uint8Array(7);
    if (rng() < rates[6]) labels[6] = 1;
    else for (let k = 0; k < 6; k++) if (rng() < rates[k]) labels[k] = 1;
    return { filename: `img${String(i).padStart(4, '0')}.jpg`, path: `/x/img${i}.jpg`, labels };
  });
  // groups of 2-6 consecutive images (repeats of one eye), labels copied from the first
  const groups: string[][] = [];
  for (let i = 0; i + 6 < n; i += 23) {
    const size = 2 + Math.floor(rng() * 5);
    for (let j = 1; j < size; j++) images[i + j].labels = images[i].labels.slice();
    groups.push(images.slice(i, i + size).map((im) => im.filename));
  }
  return { ds: { classes: [...CLASSES], images, imagesDir: '/x' }, groups };
}

const opts = (groups: string[][], seed = 42): MakeSplitOptions => ({
  seed,
  ratios: { train: 0.7, validation: 0.15, test: 0.15 },
  groups,
  source: { csv: 'x.csv', csvSha256: '0', images: 0 },
  duplicates: null,
});

test('every image lands in exactly one part and every group stays whole', () => {
  const { ds, groups } = synthetic(1200, 1);
  const s = makeSplit(ds, opts(groups));
  const where = partOf(s);
  assert.equal(where.size, 1200);
  assert.equal(PART_NAMES.reduce((a, p) => a + s.parts[p].length, 0), 1200);
  for (const g of groups) assert.equal(new Set(g.map((f) => where.get(f))).size, 1, `group ${g.join(',')} split across parts`);
  assert.equal(s.groups.length, groups.length);
});

test('label proportions follow the ratios in every part, rare class included', () => {
  const { ds, groups } = synthetic(1200, 2);
  const s = makeSplit(ds, opts(groups));
  for (const c of CLASSES) {
    const total = PART_NAMES.reduce((a, p) => a + s.counts[p].labels[c], 0);
    for (const [p, r] of [['train', 0.7], ['validation', 0.15], ['test', 0.15]] as const) {
      const got = s.counts[p].labels[c];
      // groups of up to 6 identical-label images make exact proportions impossible; 6 images or 3% is the slack
      assert.ok(Math.abs(got - r * total) <= Math.max(6, 0.03 * total), `${c} in ${p}: ${got} of ${total}`);
    }
  }
  for (const [p, r] of [['train', 0.7], ['validation', 0.15], ['test', 0.15]] as const) {
    assert.ok(Math.abs(s.counts[p].images - r * 1200) <= 12, `${p}: ${s.counts[p].images}`);
  }
});

test('stratification beats a random split on label balance', () => {
  const { ds, groups } = synthetic(600, 3);
  const s = makeSplit(ds, opts(groups));
  const rng = seededRandom(9);
  const random = { train: [] as string[], validation: [] as string[], test: [] as string[] };
  for (const im of ds.images) {
    const u = rng();
    random[u < 0.7 ? 'train' : u < 0.85 ? 'validation' : 'test'].push(im.filename);
  }
  const err = (parts: typeof random): number => {
    const by = new Map(ds.images.map((im) => [im.filename, im.labels!]));
    let e = 0;
    CLASSES.forEach((_, k) => {
      const total = ds.images.reduce((a, im) => a + im.labels![k], 0);
      for (const [p, r] of [['train', 0.7], ['validation', 0.15], ['test', 0.15]] as const) {
        e += Math.abs(parts[p].reduce((a, f) => a + by.get(f)![k], 0) - r * total);
      }
    });
    return e;
  };
  assert.ok(err(s.parts) < err(random) / 2, `stratified ${err(s.parts)} vs random ${err(random)}`);
});

test('deterministic: same inputs and seed give the same split; another seed another one', () => {
  const { ds, groups } = synthetic(500, 4);
  const a = JSON.stringify(makeSplit(ds, opts(groups, 5)));
  const b = JSON.stringify(makeSplit(ds, opts(groups, 5)));
  const c = JSON.stringify(makeSplit(ds, opts(groups, 6)));
  assert.equal(a, b);
  assert.notEqual(a, c);
});

test('groups sharing an image are merged; unlabelled repeats take the strictest part', () => {
  const { ds } = synthetic(100, 5);
  const f = (i: number): string => ds.images[i].filename;
  const s = makeSplit(ds, { ...opts([[f(1), f(2)], [f(2), f(3)], [f(10), f(11)]]), unlabeledLinks: { 'u.jpg': [f(1)], 'v.jpg': [f(10), f(50)] } });
  const where = partOf(s);
  assert.equal(new Set([1, 2, 3].map((i) => where.get(f(i)))).size, 1);
  assert.deepEqual(s.groups.find((g) => g.includes(f(1))), [f(1), f(2), f(3)].sort());
  assert.equal(s.unlabeledLinks['u.jpg'], where.get(f(1)));
  const parts = [where.get(f(10)), where.get(f(50))];
  assert.equal(s.unlabeledLinks['v.jpg'], parts.includes('test') ? 'test' : parts.includes('validation') ? 'validation' : 'train');
});

test('iterative stratification handles units without labels and zero ratios', () => {
  const units = [
    { labels: [1, 0], size: 1 },
    { labels: [0, 0], size: 3 },
    { labels: [0, 1], size: 2 },
    { labels: [0, 0], size: 1 },
  ];
  const a = iterativeStratification(units, [1, 0, 1], seededRandom(1));
  assert.ok(a.every((p) => p === 0 || p === 2));
});

test('readSplit reads what makeSplit wrote and refuses an image in two parts', async () => {
  const dir = await tempDir();
  const { ds, groups } = synthetic(50, 6);
  const s = makeSplit(ds, opts(groups));
  const good = join(dir, 'split.json');
  await writeFile(good, JSON.stringify(s));
  assert.deepEqual(await readSplit(good), s);
  const bad = join(dir, 'bad.json');
  await writeFile(bad, JSON.stringify({ ...s, parts: { ...s.parts, test: [...s.parts.test, s.parts.train[0]] } }));
  await assert.rejects(readSplit(bad), (e: unknown) => e instanceof InputError && /is in both train and test/.test(e.message));
  await writeFile(bad, '{"version": 2}');
  await assert.rejects(readSplit(bad), InputError);
});
