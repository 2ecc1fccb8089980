import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { writeFile } from 'node:fs/promises';
import { parseCsvRecords, parseLabelsCsv, readDataset } from '../../src/data/csv.js';
import { CLASSES } from '../../src/data/labels.js';
import { InputError } from '../../src/util/errors.js';
import { tempDir } from '../helpers.js';
import { CONTEST_HEADER } from './fixtures.js';

const codes = (text: string): string[] => parseLabelsCsv(text, 'x.csv').issues.map((i) => `${i.code}@${i.line ?? '-'}`);

test('reads the contest format into CLASSES order', () => {
  const p = parseLabelsCsv(`${CONTEST_HEADER}\na.jpg,0,1,1,0,0,0,0\nb.jpg,0,0,0,0,0,0,1\n`, 'x.csv');
  assert.equal(p.format, 'contest');
  assert.deepEqual(p.issues, []);
  assert.deepEqual(Array.from(p.rows[0].labels), [0, 1, 1, 0, 0, 0, 0]);
  assert.equal(p.rows[1].line, 3);
});

test('maps reordered columns, BOM, CRLF and quoted headers onto the class order', () => {
  const header = ['filename', ...[...CLASSES].reverse().map((c) => `"${c}"`)].join(',');
  const p = parseLabelsCsv(`\ufeff${header}\r\na.jpg,1,0,0,0,0,0,0\r\n`, 'x.csv');
  assert.deepEqual(p.issues, []);
  // the first class column is now 'normal'
  assert.deepEqual(Array.from(p.rows[0].labels), [0, 0, 0, 0, 0, 0, 1]);
});

test('reads the two-column filename,label format, merging rows of one image', () => {
  const p = parseLabelsCsv('filename,label\na.jpg,glaucoma\nb.jpg,Diabetic_Retinopathy\na.jpg,normal\n', 'x.csv');
  assert.equal(p.format, 'pairs');
  assert.deepEqual(p.issues, []);
  assert.equal(p.rows.length, 2);
  assert.deepEqual(Array.from(p.rows[0].labels), [0, 0, 1, 0, 0, 0, 1]);
  assert.deepEqual(Array.from(p.rows[1].labels), [0, 1, 0, 0, 0, 0, 0]);
});

test('a missing class column is an error on line 1', () => {
  const header = CONTEST_HEADER.replace(',glaucoma', '');
  assert.deepEqual(codes(`${header}\na.jpg,0,1,0,0,0,0\n`), ['missing-column@1']);
  assert.deepEqual(codes('name,foo\na.jpg,1\n'), ['missing-column@1']);
});

test('non-0/1 values, duplicate rows, wrong field counts and unknown columns are located by line', () => {
  const text = [
    `${CONTEST_HEADER},extra`,
    'a.jpg,0,1,0,0,0,0,0,0',
    'b.jpg,0,2,0,0,0,0,0,0',
    'a.jpg,0,1,0,0,0,0,0,0',
    'c.jpg,0,1,0',
    'd.jpg,yes,0,0,0,0,0,0,0',
  ].join('\n');
  assert.deepEqual(codes(text), ['unknown-column@1', 'non-binary-value@3', 'duplicate-row@4', 'wrong-field-count@5', 'non-binary-value@6']);
  const msg = parseLabelsCsv(text, 'x.csv').issues.find((i) => i.code === 'duplicate-row')!.message;
  assert.match(msg, /first on line 2/);
});

test('unknown labels and duplicate rows in the two-column format', () => {
  assert.deepEqual(codes('filename,label\na.jpg,glaucoma\nb.jpg,cataract\na.jpg,glaucoma\n'), ['unknown-label@3', 'duplicate-row@4']);
});

test('file names must stay inside the image folder', () => {
  assert.deepEqual(codes('filename,label\n../etc/passwd,glaucoma\n'), ['bad-filename@2']);
});

test('an all-zero row is only a warning', () => {
  const p = parseLabelsCsv(`${CONTEST_HEADER}\na.jpg,0,0,0,0,0,0,0\n`, 'x.csv');
  assert.deepEqual(p.issues.map((i) => i.severity), ['warning']);
});

test('readDataset resolves paths and throws InputError naming file and line', async () => {
  const dir = await tempDir();
  const good = join(dir, 'good.csv');
  await writeFile(good, `${CONTEST_HEADER}\na.jpg,1,0,0,0,0,0,0\n`);
  const ds = await readDataset(good, join(dir, 'imgs'));
  assert.equal(ds.images[0].path, join(dir, 'imgs', 'a.jpg'));
  assert.deepEqual(ds.classes, [...CLASSES]);
  const bad = join(dir, 'bad.csv');
  await writeFile(bad, `${CONTEST_HEADER}\na.jpg,1,0,0,0,0,0,x\n`);
  await assert.rejects(readDataset(bad, dir), (e: unknown) => e instanceof InputError && e.file === bad && e.line === 2 && /'x', expected 0, 1 or empty/.test(e.message));
  await assert.rejects(readDataset(join(dir, 'nope.csv'), dir), InputError);
});

test('CSV records: quotes with commas and doubled quotes', () => {
  assert.deepEqual(parseCsvRecords('a,"b,c","d""e"\n\n'), [{ fields: ['a', 'b,c', 'd"e'], line: 1 }]);
});
