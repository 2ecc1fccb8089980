import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { mkdir, writeFile } from 'node:fs/promises';
import { parseLabelsCsv } from '../../src/data/csv.js';
import { readDatasets } from '../../src/data/datasets.js';
import { CLASSES, isGraded } from '../../src/data/labels.js';
import { InputError } from '../../src/util/errors.js';
import { tempDir } from '../helpers.js';
import { CONTEST_HEADER } from './fixtures.js';

const k = (c: string) => CLASSES.indexOf(c as (typeof CLASSES)[number]);

test('an empty cell is "not graded": label 0 with a graded mask, counted apart from negatives', () => {
  const p = parseLabelsCsv(`${CONTEST_HEADER}\na.jpg,0,1,,0,0,0,0\nb.jpg,0,0,1,0,0,0,0\n`, 'x.csv');
  assert.deepEqual(p.issues, []);
  assert.equal(p.rows[0].graded?.[k('glaucoma')], 0);
  assert.equal(p.rows[0].graded?.[k('diabetic retinopathy')], 1);
  assert.equal(p.rows[1].graded, undefined, 'a fully graded row carries no mask');
  // other values are still errors, and the message says what an empty cell means
  const bad = parseLabelsCsv(`${CONTEST_HEADER}\na.jpg,0,1,?,0,0,0,0\n`, 'x.csv');
  assert.equal(bad.issues[0].code, 'non-binary-value');
  assert.match(bad.issues[0].message, /empty \(not graded\)/);
});

test('a partial source: other columns ignored, missing classes not graded, a graded disease rules out normal', () => {
  const csv = 'filename,patient,eye,diabetic retinopathy,macular edema\n1_OD.jpg,001,right,1,0\n1_OI.jpg,001,left,0,0\n2_OD.jpg,002,right,,0\n';
  assert.ok(parseLabelsCsv(csv, 'x.csv').issues.some((i) => i.code === 'unknown-column'), 'without options it is not the contest format');
  const p = parseLabelsCsv(csv, 'x.csv', { partial: true, groupBy: 'patient' });
  assert.deepEqual(p.issues, []);
  const [a, b, c] = p.rows;
  assert.equal(a.group, '001');
  assert.deepEqual(Array.from(a.graded!), [0, 1, 0, 1, 0, 0, 1], 'DR = 1 makes normal known to be 0');
  assert.equal(a.labels[k('normal')], 0);
  assert.deepEqual(Array.from(b.graded!), [0, 1, 0, 1, 0, 0, 0], 'no disease graded: normal stays unknown (not certified healthy)');
  assert.deepEqual(Array.from(c.graded!), [0, 0, 0, 1, 0, 0, 0]);
});

test('columns map a class onto another header and where keeps matching rows only', () => {
  const csv = 'filename,origin,has_lesion_boxes\n1.jpg,IDRiD,1\n2.jpg,IDRiD,0\n3.jpg,IDRiD,\n';
  const p = parseLabelsCsv(csv, 'x.csv', { partial: true, columns: { 'diabetic retinopathy': 'has_lesion_boxes' }, where: { has_lesion_boxes: '1' } });
  assert.deepEqual(p.issues, []);
  assert.deepEqual(p.rows.map((r) => r.filename), ['1.jpg']);
  assert.equal(p.rows[0].labels[k('diabetic retinopathy')], 1);
  const missing = parseLabelsCsv(csv, 'x.csv', { partial: true, columns: { glaucoma: 'nope' } });
  assert.ok(missing.issues.some((i) => i.code === 'missing-column' && i.message.includes("'nope'")));
});

async function sources(dir: string): Promise<string> {
  await mkdir(join(dir, 'a'), { recursive: true });
  await mkdir(join(dir, 'b'), { recursive: true });
  const rows = Array.from({ length: 20 }, (_, i) => `a${i}.jpg,${i % 4 === 0 ? '0,1,0,0,0,0,0' : '0,0,0,0,0,0,1'}`);
  await writeFile(join(dir, 'a.csv'), `${CONTEST_HEADER}\n${rows.join('\n')}\n`);
  // 12 patients with two photographs each; every third photograph ungraded for DR
  const b = Array.from({ length: 24 }, (_, i) => `b${i}.jpg,p${Math.floor(i / 2)},${i % 3 === 0 ? '' : i % 2},0`);
  await writeFile(join(dir, 'b.csv'), `filename,patient,diabetic retinopathy,macular edema\n${b.join('\n')}\n`);
  await writeFile(join(dir, 'c.csv'), 'filename,macular edema\nc0.jpg,1\nc1.jpg,0\n');
  const spec = {
    sources: [
      { name: 'a', csv: 'a.csv', images: 'a' },
      { name: 'b', csv: 'b.csv', images: 'b', groupBy: 'patient' },
      { name: 'c', csv: 'c.csv', images: 'c', role: 'external' },
    ],
  };
  await writeFile(join(dir, 'sources.json'), JSON.stringify(spec));
  return join(dir, 'sources.json');
}

test('readDatasets joins sources with prefixed names, patient-grouped splits and external sources kept out of training', async () => {
  const dir = await tempDir('datasets');
  const file = await sources(dir);
  const d = await readDatasets(file);
  assert.deepEqual(d.sources.map((s) => [s.name, s.role, s.dataset.images.length]), [['a', 'train', 20], ['b', 'train', 24], ['c', 'external', 2]]);
  const all = [...d.parts.train, ...d.parts.validation, ...d.parts.test];
  assert.equal(all.length, 44, 'every training image in one part, external ones in none');
  assert.equal(new Set(all).size, 44);
  assert.ok(all.every((f) => /^[ab]\//.test(f)));
  // no patient straddles two parts
  const b = d.sources[1];
  const partOf = new Map<string, string>();
  for (const p of ['train', 'validation', 'test'] as const) for (const f of b.parts[p]) partOf.set(f, p);
  for (const im of b.dataset.images) {
    const mate = b.dataset.images.find((o) => o.group === im.group && o !== im)!;
    assert.equal(partOf.get(im.filename), partOf.get(mate.filename), `patient ${im.group}`);
  }
  assert.deepEqual(b.graded, ['diabetic retinopathy', 'macular edema', 'normal']);
  assert.equal(b.dataset.images.filter((im) => !isGraded(im, k('diabetic retinopathy'))).length, 8);
  assert.ok(b.dataset.images.every((im) => im.source === 'b' && im.path.endsWith(im.filename.slice(2))));
  // deterministic: the same file gives the same split
  assert.deepEqual((await readDatasets(file)).parts, d.parts);
  assert.deepEqual(JSON.parse(d.splitText).parts, d.parts);
});

test('readDatasets names the file and the problem', async () => {
  const dir = await tempDir('datasets-bad');
  const bad = async (spec: unknown, re: RegExp, file = 'bad.json') => {
    const f = join(dir, 'bad.json');
    await writeFile(f, typeof spec === 'string' ? spec : JSON.stringify(spec));
    await assert.rejects(readDatasets(f), (e: unknown) => e instanceof InputError && re.test(e.message) && e.file === join(dir, file));
  };
  await bad('{ nope', /not JSON/);
  await bad({ sources: [] }, /expected \{ "sources"/);
  await bad({ sources: [{ name: 'a', csv: 'a.csv', images: 'a' }, { name: 'a', csv: 'a.csv', images: 'a' }] }, /appears twice/);
  await bad({ sources: [{ name: 'x', csv: 'x.csv', images: 'x', role: 'external', split: 's.json' }] }, /no split/);
  await writeFile(join(dir, 'x.csv'), `${CONTEST_HEADER}\nx.jpg,0,0,0,0,0,0,1\n`);
  await writeFile(join(dir, 's.json'), JSON.stringify({ version: 1, parts: { train: ['y.jpg'], validation: [], test: [] } }));
  await bad({ sources: [{ name: 'x', csv: 'x.csv', images: 'x', split: 's.json' }] }, /not in x\.csv/, 's.json');
});
