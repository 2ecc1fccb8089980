import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import sharp from 'sharp';
import { findDuplicateGroups } from '../../src/data/duplicates.js';
import { dctHash, hammingDistance } from '../../src/data/phash.js';
import { readSplit } from '../../src/data/split.js';
import { PROJECT_ROOT, tempDir, VIETAI_DIR } from '../helpers.js';

const LABELLED = ['088d39c0d7c0', '0ba42a306e0a', '3ebf8794ed00', 'fa7b559b2fdd', 'c24a1b14d253', '9ee905a41651', '0007e7645554', '9f1657e1801b', 'f73146b8cede'];

/** A slice of the real data with known repeats, plus a re-encoded, shrunk and brightened copy of one photo. */
async function slice(): Promise<{ train: string; unlabeled: string; csv: string }> {
  const dir = await tempDir();
  const train = join(dir, 'train');
  const unlabeled = join(dir, 'unlabeled');
  await mkdir(train);
  await mkdir(unlabeled);
  for (const id of LABELLED) await copyFile(join(VIETAI_DIR, 'train', `${id}.jpg`), join(train, `${id}.jpg`));
  await copyFile(join(VIETAI_DIR, 'unlabeled', 'a5289a80cde6.jpg'), join(unlabeled, 'a5289a80cde6.jpg'));
  const copy = await sharp(join(VIETAI_DIR, 'train', 'c24a1b14d253.jpg')).resize(400, 400).modulate({ brightness: 1.15 }).jpeg({ quality: 70 }).toBuffer();
  await writeFile(join(train, 'copy-of-c24a.jpg'), copy);
  const rows = (await readFile(join(VIETAI_DIR, 'train.csv'), 'utf8')).split('\n');
  const keep = rows.filter((r, i) => i === 0 || LABELLED.some((id) => r.startsWith(id)));
  keep.push(`copy-of-c24a.jpg,${rows.find((r) => r.startsWith('c24a1b14d253'))!.split(',').slice(1).join(',')}`);
  const csv = join(dir, 'labels.csv');
  await writeFile(csv, keep.join('\n') + '\n');
  return { train, unlabeled, csv };
}

test('finds the byte-identical pair, the cross-folder repeat and a re-encoded copy, and nothing else', async () => {
  const { train, unlabeled } = await slice();
  const paths = [...LABELLED.map((id) => join(train, `${id}.jpg`)), join(train, 'copy-of-c24a.jpg'), join(unlabeled, 'a5289a80cde6.jpg')];
  const groups = await findDuplicateGroups(paths, { cacheDir: false });
  const names = groups.map((g) => g.members.map((m) => basename(m)).sort().join(' ')).sort();
  assert.deepEqual(names, [
    '088d39c0d7c0.jpg 0ba42a306e0a.jpg 3ebf8794ed00.jpg',
    'a5289a80cde6.jpg fa7b559b2fdd.jpg',
    'c24a1b14d253.jpg copy-of-c24a.jpg',
  ]);
  assert.ok(groups.every((g) => !g.exact)); // the exact pair sits in a group with a repeat
  const exactOnly = await findDuplicateGroups(paths.slice(1, 3), { cacheDir: false });
  assert.equal(exactOnly.length, 1);
  assert.equal(exactOnly[0].exact, true);
  assert.equal(exactOnly[0].maxDistance, 0);
});

test('pHash: identical pixels give distance 0, a different image a large one', () => {
  const a = Float64Array.from({ length: 1024 }, (_, i) => (i * 37) % 255);
  const b = Float64Array.from({ length: 1024 }, (_, i) => ((i >> 5) * 8) % 255);
  assert.equal(hammingDistance(dctHash(a), dctHash(a)), 0);
  assert.ok(hammingDistance(dctHash(a), dctHash(b)) > 10);
});

test('fundus data split keeps repeats together and links the unlabelled repeat to its part', async () => {
  const { train, unlabeled, csv } = await slice();
  const out = join(train, '..', 'split.json');
  const run = () =>
    spawnSync(process.execPath, [join(PROJECT_ROOT, 'bin', 'fundus.js'), 'data', 'split', csv, train, '--unlabeled', unlabeled, '-o', out, '--seed', '3'], {
      encoding: 'utf8',
      env: { ...process.env, FUNDUS_NO_PROGRESS: '1', FUNDUS_CACHE_DIR: join(train, '..', 'cache') },
    });
  const r = run();
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /2 near-duplicate groups kept whole/);
  const first = await readFile(out, 'utf8');
  const s = await readSplit(out);
  const where = new Map(Object.entries(s.parts).flatMap(([p, fs]) => fs.map((f: string) => [f, p])));
  assert.equal(where.size, 10);
  assert.equal(new Set(['088d39c0d7c0.jpg', '0ba42a306e0a.jpg', '3ebf8794ed00.jpg'].map((f) => where.get(f))).size, 1);
  assert.equal(where.get('c24a1b14d253.jpg'), where.get('copy-of-c24a.jpg'));
  assert.deepEqual(s.unlabeledLinks, { 'a5289a80cde6.jpg': where.get('fa7b559b2fdd.jpg') });
  assert.equal(run().status, 0);
  assert.equal(await readFile(out, 'utf8'), first, 'the same inputs and seed must give the same file');
});

test('fundus data duplicates prints the labels of each photograph in a group whose labels disagree', async () => {
  const { train, csv } = await slice();
  // the re-encoded copy of c24a1b14d253 (retinal vascular occlusion) labelled glaucoma instead
  const rows = (await readFile(csv, 'utf8')).trim().split('\n').map((r) => (r.startsWith('copy-of-c24a.jpg') ? 'copy-of-c24a.jpg,0,0,1,0,0,0,0' : r));
  await writeFile(csv, rows.join('\n') + '\n');
  const r = spawnSync(process.execPath, [join(PROJECT_ROOT, 'bin', 'fundus.js'), 'data', 'duplicates', csv, train], { encoding: 'utf8', env: { ...process.env, FUNDUS_NO_PROGRESS: '1', FUNDUS_CACHE_DIR: join(train, '..', 'cache') } });
  assert.equal(r.status, 0, r.stderr);
  const line = r.stdout.split('\n').find((l) => l.includes('LABELS DISAGREE'));
  assert.ok(line, r.stdout);
  assert.match(line, /c24a1b14d253\.jpg \[retinal vascular occlusion\]/);
  assert.match(line, /copy-of-c24a\.jpg \[glaucoma\]/);
});
