import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { alignToModel, checkImagesExist, domainOf } from '../../src/eval/dataset.js';
import { readDataset, readLabelsCsv } from '../../src/data/csv.js';
import { CLASSES } from '../../src/data/labels.js';
import { InputError } from '../../src/util/errors.js';
import { tempDir } from '../helpers.js';

async function source(csvText: string): Promise<Parameters<typeof alignToModel>[1] & { dir: string }> {
  const dir = await tempDir('fundus-eval-');
  const csv = join(dir, 'labels.csv');
  await writeFile(csv, csvText);
  const ds = await readDataset(csv, join(dir, 'images'));
  const { format } = await readLabelsCsv(csv);
  return { classes: ds.classes, images: ds.images, format, csvPath: csv, dir };
}

const CONTEST_HEADER = `filename,${CLASSES.join(',')}\n`;

test('contest CSV: every model class scored, labels in model order', async () => {
  const s = await source(CONTEST_HEADER + 'a.jpg,0,1,0,0,0,0,0\nb.jpg,0,0,1,0,0,0,1\nc.jpg,0,0,0,0,0,0,1\n');
  const model = ['normal', 'glaucoma', 'diabetic retinopathy'];
  const e = alignToModel(model, s);
  assert.deepEqual(e.scored, [0, 1, 2]);
  assert.deepEqual(Array.from(e.labels), [0, 0, 1, 1, 1, 0, 1, 0, 0]);
  assert.deepEqual(e.notes, []);
});

test('filename,label CSV: only its labels are scored, an image is positive only for its own label', async () => {
  const s = await source('filename,label\na.jpg,glaucoma\nb.jpg,normal\nc.jpg,Glaucoma\n');
  const e = alignToModel([...CLASSES], s);
  const g = CLASSES.indexOf('glaucoma');
  const n = CLASSES.indexOf('normal');
  assert.deepEqual(e.scored, [g, n]);
  const row = (i: number): number[] => Array.from(e.labels.subarray(i * 7, i * 7 + 7));
  assert.deepEqual(row(0), CLASSES.map((_, k) => (k === g ? 1 : 0)));
  assert.deepEqual(row(1), CLASSES.map((_, k) => (k === n ? 1 : 0)));
  assert.match(e.notes[0], /only glaucoma, normal scored/);
});

test('a label the model does not predict is an error naming it', async () => {
  const s = await source('filename,label\na.jpg,glaucoma\nb.jpg,opacity\n');
  assert.throws(
    () => alignToModel(['diabetic retinopathy', 'glaucoma', 'normal'], s),
    (e: Error) => e instanceof InputError && /'opacity' \(1 image, e\.g\. b\.jpg\) is not among the model's classes/.test(e.message) && e.message.includes(s.csvPath),
  );
});

test('a model trained for classes the CSV does not label is an error', async () => {
  const s = await source(CONTEST_HEADER + 'a.jpg,0,1,0,0,0,0,0\n');
  assert.throws(() => alignToModel(['cataract', 'normal'], s), /trained for class 'cataract' that the CSV does not label/);
});

test('unknown labels in the CSV are reported by the reader with their line', async () => {
  await assert.rejects(source('filename,label\na.jpg,glaucoma\nb.jpg,cataract\n'), (e: Error) => e instanceof InputError && /:3: unknown label 'cataract'/.test(e.message));
});

test('a split part restricts the images; foreign or empty parts are errors', async () => {
  const s = await source(CONTEST_HEADER + 'a.jpg,0,1,0,0,0,0,0\nb.jpg,0,0,1,0,0,0,0\nc.jpg,0,0,0,0,0,0,1\n');
  const e = alignToModel([...CLASSES], s, { name: 'test', filenames: ['c.jpg', 'a.jpg'], splitPath: 'split.json' });
  assert.deepEqual(e.images.map((i) => i.filename), ['c.jpg', 'a.jpg']);
  assert.throws(() => alignToModel([...CLASSES], s, { name: 'test', filenames: ['z.jpg'], splitPath: 'split.json' }), /images of part 'test' are not in .*z\.jpg/);
  assert.throws(() => alignToModel([...CLASSES], s, { name: 'test', filenames: [], splitPath: 'split.json' }), /part 'test' of the split is empty/);
});

test('missing images are named before anything runs', async () => {
  const s = await source('filename,label\na.jpg,glaucoma\nb.jpg,normal\n');
  await mkdir(join(s.dir, 'images'));
  await writeFile(join(s.dir, 'images', 'a.jpg'), 'x');
  await assert.rejects(checkImagesExist(s.images, join(s.dir, 'images')), /1 image listed in the CSV is missing: b\.jpg/);
});

test("a focus model is judged on its task's images only", async () => {
  const s = await source(CONTEST_HEADER + 'a.jpg,0,1,0,0,0,0,0\nb.jpg,1,0,0,0,0,0,0\nc.jpg,0,1,1,0,0,0,0\nd.jpg,1,0,1,0,0,0,0\n');
  const focus = ['diabetic retinopathy', 'glaucoma', 'normal'];
  assert.equal(domainOf({ task: 'focus', activation: 'softmax' }), 'exactly-one');
  assert.equal(domainOf({ task: 'focus-sigmoid', activation: 'sigmoid' }), 'at-least-one');
  assert.equal(domainOf({ task: 'multilabel', activation: 'sigmoid' }), 'all');
  const one = alignToModel(focus, s, undefined, 'exactly-one');
  assert.deepEqual(one.images.map((i) => i.filename), ['a.jpg', 'd.jpg']);
  assert.match(one.notes[0], /2 of 4 images left out: they do not have exactly one of the model's classes/);
  const some = alignToModel(focus, s, undefined, 'at-least-one');
  assert.deepEqual(some.images.map((i) => i.filename), ['a.jpg', 'c.jpg', 'd.jpg']);
  assert.equal(alignToModel(focus, s).images.length, 4);
});
