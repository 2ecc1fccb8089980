import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { mkdir, writeFile } from 'node:fs/promises';
import sharp from 'sharp';
import { readDatasets } from '../../src/data/datasets.js';
import { gradeFromLesions, readOpticDiscs } from '../../src/data/lesion-grades.js';
import { CLASSES, isGraded } from '../../src/data/labels.js';
import type { LesionBox } from '../../src/data/lesions.js';
import { InputError } from '../../src/util/errors.js';
import { tempDir } from '../helpers.js';

const k = (c: string) => CLASSES.indexOf(c as (typeof CLASSES)[number]);
const box = (x0: number, y0: number, x1: number, y1: number, lesion = 'hard_exudates'): LesionBox => ({ lesion, x0, y0, x1, y1, line: 2 });
// a 640x425 photograph (IDRiD as shipped): fovea taken at (320, 212.5); a 60 px optic disc
const photo = { width: 640, height: 425 };
const disc = { x0: 500, y0: 180, x1: 560, y1: 240 };
const within1 = { lesion: 'hard_exudates', withinDiscDiameters: 1 };

test('gradeFromLesions: near the fovea 1, no lesion 0, only farther out not graded', () => {
  assert.equal(gradeFromLesions([], within1, photo, disc), 0);
  assert.equal(gradeFromLesions([box(10, 10, 20, 20, 'haemorrhage')], within1, photo, disc), 0, 'another lesion type does not count');
  assert.equal(gradeFromLesions([box(300, 200, 310, 210)], within1, photo, disc), 1, 'a box around the fovea');
  // 59 px right of the centre is inside one disc diameter (60 px), 61 px is not
  assert.equal(gradeFromLesions([box(379, 210, 390, 215)], within1, photo, disc), 1);
  assert.equal(gradeFromLesions([box(381, 210, 390, 215)], within1, photo, disc), undefined);
  assert.equal(gradeFromLesions([box(381, 210, 390, 215)], { ...within1, withinDiscDiameters: 1.5 }, photo, disc), 1);
  assert.equal(gradeFromLesions([box(300, 200, 310, 210)], within1, photo, undefined), undefined, 'no disc: no scale');
  assert.equal(gradeFromLesions([box(0, 0, 5, 5)], { lesion: 'hard_exudates' }, photo, undefined), 1, 'without a radius any box grades 1');
});

async function lesionSource(dir: string, extra: Record<string, unknown> = {}): Promise<string> {
  await mkdir(join(dir, 'img'), { recursive: true });
  for (const f of ['near.jpg', 'far.jpg', 'haem.jpg', 'nodisc.jpg']) {
    await sharp({ create: { width: 640, height: 425, channels: 3, background: { r: 90, g: 40, b: 20 } } }).jpeg().toFile(join(dir, 'img', f));
  }
  await writeFile(join(dir, 'images.csv'), 'filename,has_lesion_boxes\nnear.jpg,1\nfar.jpg,1\nhaem.jpg,1\nnodisc.jpg,1\nnone.jpg,0\n');
  await writeFile(
    join(dir, 'lesions.csv'),
    'filename,lesion,x0,y0,x1,y1\nnear.jpg,hard_exudates,330,200,340,220\nnear.jpg,haemorrhage,10,10,20,20\n' +
      'far.jpg,hard_exudates,20,20,40,40\nhaem.jpg,haemorrhage,300,200,310,210\nnodisc.jpg,hard_exudates,320,212,330,222\n',
  );
  await writeFile(join(dir, 'discs.csv'), 'filename,x0,y0,x1,y1\nnear.jpg,500,180,560,240\nfar.jpg,500,180,560,240\nhaem.jpg,500,180,560,240\n');
  const spec = {
    sources: [
      {
        name: 'codras',
        csv: 'images.csv',
        images: 'img',
        columns: { 'diabetic retinopathy': 'has_lesion_boxes' },
        where: { has_lesion_boxes: '1' },
        lesionGrades: { lesions: 'lesions.csv', opticDiscs: 'discs.csv', classes: { 'macular edema': within1 } },
        ...extra,
      },
    ],
  };
  await writeFile(join(dir, 'sources.json'), JSON.stringify(spec));
  return join(dir, 'sources.json');
}

test('a datasets source grades macular edema from hard exudates within a disc diameter of the fovea', async () => {
  const dir = await tempDir('lesion-grades');
  const d = await readDatasets(await lesionSource(dir));
  const me = k('macular edema');
  const byName = new Map(d.dataset.images.map((im) => [im.filename, im]));
  assert.equal(byName.get('codras/near.jpg')!.labels![me], 1);
  assert.equal(byName.get('codras/haem.jpg')!.labels![me], 0);
  assert.ok(isGraded(byName.get('codras/haem.jpg')!, me), 'no exudate at all: graded absent');
  assert.ok(!isGraded(byName.get('codras/far.jpg')!, me), 'exudates only far from the fovea: not graded');
  assert.ok(!isGraded(byName.get('codras/nodisc.jpg')!, me), 'no optic disc to measure by: not graded');
  assert.deepEqual(d.sources[0].graded, ['diabetic retinopathy', 'macular edema', 'normal']);
  for (const im of d.dataset.images) assert.equal(im.labels![k('diabetic retinopathy')], 1, 'the CSV column still grades its class');
});

test('lesionGrades names the datasets file and the problem', async () => {
  const dir = await tempDir('lesion-grades-bad');
  const file = join(dir, 'sources.json');
  const bad = async (extra: Record<string, unknown>, re: RegExp, at = file) => {
    await lesionSource(dir, extra);
    await assert.rejects(readDatasets(file), (e: unknown) => e instanceof InputError && re.test(e.message) && e.file === at);
  };
  const grades = (classes: unknown, more: Record<string, unknown> = {}) => ({ lesionGrades: { lesions: 'lesions.csv', opticDiscs: 'discs.csv', classes, ...more } });
  await bad(grades({ 'macular edema': { lesion: 'cotton_wool' } }), /lesion type 'cotton_wool', which lesions\.csv does not have \(types: hard_exudates, haemorrhage\)/);
  await bad(grades({ 'macular edema': { lesion: 'hard_exudates', withinDiscDiameters: -1 } }), /withinDiscDiameters must be a positive number/);
  await bad(grades({ 'macular holes': { lesion: 'hard_exudates' } }), /unknown class 'macular holes'/);
  await bad(grades({ 'diabetic retinopathy': { lesion: 'hard_exudates' } }), /'diabetic retinopathy' is graded by the CSV already \(e\.g\. near\.jpg\)/);
  await bad({ lesionGrades: { lesions: 'lesions.csv', classes: { 'macular edema': within1 } } }, /withinDiscDiameters needs opticDiscs/);
  await bad({ lesionGrades: { classes: {} } }, /needs a lesions path/);
  await writeFile(join(dir, 'heimed-discs.csv'), 'filename,x,y\nnear.jpg,1,2\n');
  await bad(grades({ 'macular edema': within1 }, { opticDiscs: 'heimed-discs.csv' }), /not an optic-disc file: missing columns x0, y0, x1, y1 \(expected filename,x0,y0,x1,y1; got filename,x,y\)/, join(dir, 'heimed-discs.csv'));
});

test('readOpticDiscs rejects a box that is not one, naming the line', async () => {
  const dir = await tempDir('discs');
  const f = join(dir, 'd.csv');
  await writeFile(f, 'filename,x0,y0,x1,y1\na.jpg,1,2,3,4\nb.jpg,5,5,4,9\n');
  await assert.rejects(readOpticDiscs(f), (e: unknown) => e instanceof InputError && /not a box/.test(e.message) && e.line === 3);
  // The same checks as a lesions file's (one parser of box tables), and an empty box is not a disc.
  await writeFile(f, 'filename,x0,y0,x1,y1\na.jpg,1,2,3,4\nc.jpg,1,1,1,5\n');
  await assert.rejects(readOpticDiscs(f), (e: unknown) => e instanceof InputError && /^.*d\.csv:3: not a box \(x0 1, y0 1, x1 1, y1 5\)/.test(e.message));
  await writeFile(f, 'filename,x0,y0,x1,y1\na.jpg,1,two,3,4\n');
  await assert.rejects(readOpticDiscs(f), (e: unknown) => e instanceof InputError && /y0 is not a number \(got 'two'\)/.test(e.message) && e.line === 2);
  await writeFile(f, 'filename,x0,y0,x1,y1\n ,1,2,3,4\n');
  await assert.rejects(readOpticDiscs(f), /empty filename/);
  await writeFile(f, 'filename,x0,y0,x1,y1\na.jpg,1,2,3,4\nsub/b.jpg,5,6,7,8\n');
  assert.deepEqual([...(await readOpticDiscs(f))], [['a.jpg', { x0: 1, y0: 2, x1: 3, y1: 4 }], ['sub/b.jpg', { x0: 5, y0: 6, x1: 7, y1: 8 }]]);
});
