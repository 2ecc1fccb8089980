import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFile, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import sharp from 'sharp';
import { PROJECT_ROOT, tempDir } from '../helpers.js';
import { CLASSES } from '../../src/data/labels.js';
import { ResultSink, csvHeader, headerLine, parseHeaderLine, predictionsHeader } from '../../src/serve/output.js';
import { collectImages } from '../../src/data/image-files.js';
import { buildFixtureModel, realImages } from './fixture.js';

let model: string;
let work: string;
let photos: string[];

function fundus(...args: string[]): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [join(PROJECT_ROOT, 'bin', 'fundus.js'), ...args], {
    encoding: 'utf8',
    cwd: work,
    env: { ...process.env, FUNDUS_NO_PROGRESS: '1' },
  });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function csvRows(text: string): string[][] {
  return text.trim().split('\n').map((l) => l.split(','));
}

before(async () => {
  model = await buildFixtureModel();
  work = await tempDir('fundus-predict-');
  photos = realImages(4);
  await mkdir(join(work, 'folder', 'nested'), { recursive: true });
  await copyFile(photos[1], join(work, 'folder', basename(photos[1])));
  await copyFile(photos[2], join(work, 'folder', 'nested', basename(photos[2])));
  // A PNG too, and two things that are not photographs: one named like one (reported), one not (ignored).
  await sharp(photos[3]).png().toFile(join(work, 'folder', 'nested', 'eye.png'));
  await writeFile(join(work, 'folder', 'broken.jpg'), (await readFile(photos[0])).subarray(0, 5000));
  await writeFile(join(work, 'folder', 'notes.txt'), 'not an image');
});

test('folders are walked; an unreadable file is reported and skipped, the rest predicted, exit status 3', async () => {
  const r = fundus('predict', model, photos[0], 'folder', '--out', 'out/preds.csv');
  assert.equal(r.status, 3, r.stderr);
  assert.match(r.stderr, /skipped folder\/broken\.jpg: .*(decode|JPEG|truncated|premature)/i);
  assert.match(r.stderr, /predicted 4 images .*1 unreadable/);
  const [marker, ...rest] = (await readFile(join(work, 'out', 'preds.csv'), 'utf8')).split('\n');
  assert.equal(parseHeaderLine(marker)?.model.dir, model, 'first line: the fundus-predictions header with the model');
  const rows = csvRows(rest.join('\n'));
  assert.equal(rows[0].join(','), csvHeader(CLASSES).trim());
  assert.deepEqual(rows.slice(1).map((r) => r[0]).sort(), [photos[0], `folder/${basename(photos[1])}`, `folder/nested/${basename(photos[2])}`, 'folder/nested/eye.png'].sort());
  for (const row of rows.slice(1)) {
    const probs = row.slice(1, 1 + CLASSES.length).map(Number);
    assert.ok(probs.every((p) => p >= 0 && p <= 1), row.join(','));
  }
  assert.deepEqual((await readdir(join(work, 'out'))).sort(), ['preds.csv'], 'no .partial left behind');
});

test('--resume predicts only the images not yet in the output', async () => {
  await copyFile(photos[3], join(work, 'folder', 'late.jpg'));
  const r = fundus('predict', '--model', model, photos[0], 'folder', '--out', 'out/preds.csv', '--resume');
  assert.equal(r.status, 3, r.stderr);
  assert.match(r.stderr, /predicted 1 image .*4 already in out\/preds\.csv/);
  const files = csvRows(await readFile(join(work, 'out', 'preds.csv'), 'utf8')).slice(2).map((r) => r[0]);
  assert.equal(files.length, 5);
  assert.equal(new Set(files).size, 5);
  assert.ok(files.includes('folder/late.jpg'));
});

test('JSON Lines output with heatmap overlays for chosen classes', async () => {
  const r = fundus('predict', model, photos[0], photos[1], '--format', 'json', '--heatmaps', 'maps', '--heatmap-classes', 'glaucoma,normal', '--heatmap-method', 'gradcam++');
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { file: string; probabilities: Record<string, number>; decisions: Record<string, boolean>; positive: string[]; heatmaps?: Record<string, string> });
  assert.deepEqual(lines.map((l) => l.file), [photos[0], photos[1]]);
  for (const l of lines) assert.deepEqual(Object.keys(l.probabilities), [...CLASSES]);
  // Each record names its overlays, class → path.
  for (const l of lines) {
    const stem = basename(l.file, '.jpg');
    assert.deepEqual(l.heatmaps, { glaucoma: join('maps', `${stem}.glaucoma.gradcam++.png`), normal: join('maps', `${stem}.normal.gradcam++.png`) });
  }
  const maps = (await readdir(join(work, 'maps'))).filter((f) => f.endsWith('.png')).sort();
  assert.equal(maps.length, 4);
  assert.ok(maps.includes(`${basename(photos[0], '.jpg')}.glaucoma.gradcam++.png`), maps.join(' '));
  const meta = await sharp(join(work, 'maps', maps[0])).metadata();
  assert.equal(meta.format, 'png');
  assert.equal(meta.width, 512);
});

test('the readable table names every class with its probability, threshold and decision', () => {
  const r = fundus('predict', model, photos[0]);
  assert.equal(r.status, 0, r.stderr);
  for (const c of CLASSES) assert.match(r.stdout, new RegExp(`${c} +[█·]*\\|[█·]* [01]\\.\\d{3}  \\(threshold 0\\.\\d\\d\\)`));
  assert.match(r.stdout.split('\n')[0], new RegExp(`^${photos[0]}  →  `));
});

test('usage errors exit 2 with a clear message', () => {
  const missing = fundus('predict', model, 'no-such-folder');
  assert.equal(missing.status, 2);
  assert.match(missing.stderr, /no-such-folder: no such file or folder/);
  const noImages = fundus('predict', model);
  assert.equal(noImages.status, 2);
  assert.match(noImages.stderr, /no images given/);
  const resume = fundus('predict', model, photos[0], '--resume');
  assert.equal(resume.status, 2);
  assert.match(resume.stderr, /--resume needs --out/);
  const notModel = fundus('predict', '--model', work, photos[0]);
  assert.equal(notModel.status, 2);
  assert.match(notModel.stderr, /not a fundus model directory/);
  const remote = fundus('serve', model, '--host', '0.0.0.0');
  assert.equal(remote.status, 2);
  assert.match(remote.stderr, /refusing to listen on 0\.0\.0\.0.*--allow-remote/);
});

test('resuming after a crash drops the torn last line and keeps the finished ones', async () => {
  const dir = await tempDir();
  const out = join(dir, 'p.jsonl');
  const rec = (f: string) => JSON.stringify({ file: f, probabilities: {}, decisions: {}, positive: [] });
  const identity = { dir: '/models/m', fundusJsonSha256: 'ab'.repeat(32) };
  const header = headerLine('json', predictionsHeader(identity, ['x']));
  await writeFile(`${out}.partial`, `${header}${rec('a.jpg')}\n${rec('b.jpg')}\n{"file": "c.j`);
  const { sink, done } = await ResultSink.open({ format: 'json', classes: ['x'], thresholds: [0.5], out, resume: true, model: identity });
  assert.deepEqual([...done].map((p) => basename(p)).sort(), ['a.jpg', 'b.jpg']);
  await sink.write([{ file: 'c.jpg', probabilities: { x: 0.7 }, decisions: { x: true }, positive: ['x'] }]);
  await sink.close(true);
  const lines = (await readFile(out, 'utf8')).trim().split('\n');
  assert.equal(lines[0] + '\n', header);
  assert.deepEqual(lines.slice(1).map((l) => (JSON.parse(l) as { file: string }).file), ['a.jpg', 'b.jpg', 'c.jpg']);
  assert.deepEqual(await readdir(dir), ['p.jsonl']);
});

test('collectImages walks folders in a stable order and keeps explicitly named files', async () => {
  const found = await collectImages([join(work, 'folder'), photos[0], join(work, 'folder', 'notes.txt')]);
  const names = found.map((f) => f.replace(work + '/', ''));
  assert.deepEqual(names.slice(0, 2), ['folder/' + basename(photos[1]), 'folder/broken.jpg'].sort());
  assert.ok(names.includes('folder/nested/eye.png'));
  assert.ok(names.includes('folder/notes.txt'), 'a named file is tried even with another extension');
});

test('a black frame is reported ungradable with the reason, with no probabilities; --no-gradability-check predicts it', async () => {
  const black = join(work, 'black.png');
  await sharp({ create: { width: 512, height: 512, channels: 3, background: '#000' } }).png().toFile(black);
  const j = fundus('predict', model, black, photos[0], '--format', 'json');
  assert.equal(j.status, 0, j.stderr);
  const rows = j.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  const bad = rows.find((r) => r.file === black)!;
  assert.equal(bad.gradable, false);
  assert.match((bad.ungradable as { message: string }).message, /too dark/);
  assert.ok((bad.ungradable as { reasons: string[] }).reasons.includes('too-dark'));
  assert.equal(bad.probabilities, undefined);
  assert.equal(rows.find((r) => r.file === photos[0])!.gradable, true);
  assert.match(j.stderr, /1 ungradable/);

  const c = fundus('predict', model, black, '--format', 'csv');
  const [head, row] = csvRows(c.stdout);
  assert.deepEqual(head.slice(-3), ['predicted', 'gradable', 'ungradable reason']);
  assert.deepEqual(row.slice(1, 1 + CLASSES.length + 2), [...CLASSES.map(() => ''), '', 'false'], 'no probabilities or decisions');
  assert.match(row.slice(CLASSES.length + 3).join(','), /too dark/);

  const t = fundus('predict', model, black);
  assert.match(t.stdout, /black\.png {2}→ {2}ungradable: too dark/);

  const off = fundus('predict', model, black, '--format', 'json', '--no-gradability-check');
  const rec = JSON.parse(off.stdout.trim()) as { probabilities: Record<string, number>; gradable?: boolean };
  assert.equal(rec.gradable, undefined);
  assert.deepEqual(Object.keys(rec.probabilities), [...CLASSES]);
});

test('CSV cells that a spreadsheet would run as formulas are written as text', async () => {
  const name = '=HYPERLINK(1).jpg'; // relative: the file column starts with '='
  await copyFile(photos[0], join(work, name));
  const c = fundus('predict', model, name, '--format', 'csv', '--out', 'formula.csv');
  assert.equal(c.status, 0, c.stderr);
  const row = (await readFile(join(work, 'formula.csv'), 'utf8')).trim().split('\n')[2];
  assert.ok(row.startsWith(`'${name},`), row);
  // --resume reads the guarded cell back as the file it names: nothing is predicted twice.
  const again = fundus('predict', model, name, '--out', 'formula.csv', '--resume');
  assert.match(again.stderr, /predicted 0 images.*1 already in formula\.csv/);
});
