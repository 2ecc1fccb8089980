import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { checkDataset, formatCheckReport, MAX_LISTED } from '../../src/data/check.js';
import { CsvRecordReader, parseCsvRecords, type CsvRecord } from '../../src/data/csv.js';
import { PROJECT_ROOT, tempDir, VIETAI_DIR } from '../helpers.js';
import { CONTEST_HEADER, writeFakeFundus } from './fixtures.js';

const CLI = join(PROJECT_ROOT, 'bin', 'fundus.js');
const cli = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, FUNDUS_NO_PROGRESS: '1' } });

/** A folder with one problem of every kind the issue lists, and its CSV. */
async function badFixture(): Promise<{ dir: string; csv: string; images: string }> {
  const dir = await tempDir();
  const images = join(dir, 'images');
  await mkdir(images);
  await copyFile(join(VIETAI_DIR, 'train', 'c24a1b14d253.jpg'), join(images, 'real.jpg'));
  await writeFakeFundus(join(images, 'good.jpg'), 512, 512);
  const whole = await readFile(join(VIETAI_DIR, 'train', '9ee905a41651.jpg'));
  await writeFile(join(images, 'truncated.jpg'), whole.subarray(0, Math.floor(whole.length / 2)));
  await writeFile(join(images, 'text.jpg'), 'this is not an image\n');
  await writeFakeFundus(join(images, 'odd-size.jpg'), 400, 300);
  await writeFile(join(images, 'tiny.jpg'), await sharp({ create: { width: 20, height: 20, channels: 3, background: '#800' } }).jpeg().toBuffer());
  await writeFakeFundus(join(images, 'extra.jpg'), 512, 512);
  const csv = join(dir, 'labels.csv');
  await writeFile(
    csv,
    [
      CONTEST_HEADER,
      'real.jpg,0,0,0,0,0,1,0',
      'good.jpg,0,0,0,0,0,0,1',
      'truncated.jpg,1,0,0,0,0,0,0',
      'text.jpg,1,0,0,0,0,0,0',
      'odd-size.jpg,0,1,1,0,0,0,0',
      'tiny.jpg,0,0,1,0,0,0,1',
      'missing.jpg,0,0,1,0,0,0,0',
      'good.jpg,0,0,0,0,0,0,1',
      'half.jpg,0,0,5,0,0,0,0',
    ].join('\n') + '\n',
  );
  return { dir, csv, images };
}

test('check reports every kind of bad input, each with its file and line', async () => {
  const { csv, images } = await badFixture();
  const r = await checkDataset(csv, images);
  const found = r.issues.map((i) => `${i.severity} ${i.code} ${i.file.split('/').pop()}${i.line ? `:${i.line}` : ''}`).sort();
  assert.deepEqual(found, [
    'error duplicate-row labels.csv:9',
    'error missing-image labels.csv:8',
    'error non-binary-value labels.csv:10',
    'error too-small tiny.jpg',
    'error truncated-image truncated.jpg',
    'error unreadable-image text.jpg',
    'warning normal-with-disease labels.csv:7',
    'warning not-in-csv extra.jpg',
    'warning unexpected-size odd-size.jpg',
  ]);
  assert.match(r.issues.find((i) => i.code === 'normal-with-disease')!.message, /'tiny\.jpg' is labelled normal and glaucoma at once/);
  assert.equal(r.usable, false);
  assert.equal(r.rows, 7);
  assert.deepEqual(r.missingOnDisk, ['missing.jpg']);
  assert.deepEqual(r.notInCsv, ['extra.jpg']);
  assert.deepEqual(r.unreadable.map((u) => u.file).sort(), ['text.jpg', 'truncated.jpg']);
  assert.equal(r.sizes['512x512'], 2);
  assert.equal(r.labelCounts['glaucoma'], 3);
  const dr = r.classes.indexOf('diabetic retinopathy');
  const g = r.classes.indexOf('glaucoma');
  assert.equal(r.cooccurrence[dr][g], 1);
  assert.equal(r.combinations['diabetic retinopathy+glaucoma'], 1);
});

test('fundus data check: exit 0 on the bundled samples, 1 with problems named, JSON with --json, 2 on bad arguments', async () => {
  const ok = cli('data', 'check', join(PROJECT_ROOT, 'samples', 'labels.csv'), join(PROJECT_ROOT, 'samples', 'images'));
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, /usable: 0 errors/);

  const { csv, images } = await badFixture();
  const bad = cli('data', 'check', csv, images);
  assert.equal(bad.status, 1);
  assert.match(bad.stdout, /error: .*labels\.csv:8: 'missing\.jpg' is not in/);
  assert.match(bad.stdout, /error: .*truncated\.jpg: truncated or corrupt jpeg data/);
  assert.match(bad.stdout, /NOT usable: 6 errors, 3 warnings/);
  assert.match(bad.stdout, /warning: .*labels\.csv:7: .tiny\.jpg. is labelled normal and glaucoma at once/);

  const json = cli('data', 'check', csv, images, '--json');
  assert.equal(json.status, 1);
  const report = JSON.parse(json.stdout);
  assert.equal(report.usable, false);
  assert.equal(report.errors, 6);

  const strict = cli('data', 'check', join(PROJECT_ROOT, 'samples', 'labels.csv'), join(PROJECT_ROOT, 'samples', 'images'), '--strict', '--expect-size', '256x256');
  assert.equal(strict.status, 1);

  const noDir = cli('data', 'check', csv, join(images, 'nope'));
  assert.equal(noDir.status, 2);
  assert.match(noDir.stderr, /nope: the images folder does not exist/);
});

test('a CSV with a missing column makes check fail naming line 1', async () => {
  const { dir, images } = await badFixture();
  const csv = join(dir, 'short.csv');
  await writeFile(csv, `${CONTEST_HEADER.replace(',normal', '')}\nreal.jpg,0,0,0,0,0,1\n`);
  const r = cli('data', 'check', csv, images);
  assert.equal(r.status, 1);
  assert.match(r.stdout, /short\.csv:1: missing column 'normal'/);
});

test('data check counts empty cells as not graded, and --partial reads a source that grades some classes only', async () => {
  const dir = await tempDir();
  const images = join(dir, 'images');
  await mkdir(images);
  for (const n of ['a.jpg', 'b.jpg', 'c.jpg']) await writeFakeFundus(join(images, n), 256, 256);
  const csv = join(dir, 'labels.csv');
  await writeFile(csv, 'filename,patient,diabetic retinopathy,macular edema\na.jpg,1,1,0\nb.jpg,1,,0\nc.jpg,2,0,1\n');
  const strict = await checkDataset(csv, images);
  assert.ok(!strict.usable && strict.issues.some((i) => i.code === 'unknown-column'));
  const r = await checkDataset(csv, images, { parse: { partial: true } });
  assert.ok(r.usable, JSON.stringify(r.issues));
  assert.equal(r.labelCounts['diabetic retinopathy'], 1);
  assert.equal(r.notGraded['diabetic retinopathy'], 1);
  assert.equal(r.notGraded.glaucoma, 3);
  assert.equal(r.notGraded.normal, 1, 'normal is known (0) only where a disease is graded present: a and c');
  const out = cli('data', 'check', '--partial', csv, images);
  assert.equal(out.status, 0, out.stderr);
  assert.match(out.stdout, /diabetic retinopathy\s+1\s+1 not graded/);
});

test('a large CSV is streamed: counts for every row, the first MAX_LISTED of each kind listed, memory bounded', async () => {
  const dir = await tempDir();
  const images = join(dir, 'images');
  await mkdir(images);
  await writeFakeFundus(join(images, 'a.jpg'));
  const n = 2500;
  const rows = Array.from({ length: n }, (_, i) => `gone-${i}.jpg,0,1,0,0,0,0,0`);
  // a quoted file name with a comma and a CRLF line end, and a file that exists with another extension
  await writeFile(join(images, 'notes.txt'), 'x');
  await writeFile(join(dir, 'big.csv'), `${CONTEST_HEADER}\r\n"a.jpg",0,0,1,0,0,0,0\r\n${rows.join('\n')}\n"odd,name.jpg",0,0,0,0,0,0,1\nnotes.txt,0,0,0,0,0,0,1\n`);
  const r = await checkDataset(join(dir, 'big.csv'), images);
  assert.equal(r.rows, n + 3);
  assert.equal(r.labelCounts['diabetic retinopathy'], n);
  assert.equal(r.missingOnDiskCount, n + 1);
  assert.equal(r.missingOnDisk.length, MAX_LISTED);
  assert.equal(r.missingOnDisk[0], 'gone-0.jpg');
  assert.equal(r.errors, n + 2); // the missing ones, and notes.txt is not an image
  assert.equal(r.issues.filter((i) => i.code === 'missing-image').length, MAX_LISTED);
  assert.equal(r.issuesOmitted, n + 1 - MAX_LISTED);
  assert.match(formatCheckReport(r), /missing on disk: 2501;[\s\S]*\.\.\. and \d+ more \(the first 1000 of each kind with --json\)/);
});

test('the CSV reader gives the same records whatever the chunks it is fed', () => {
  const text = '\ufeffa,"b,c","d""e"\r\n\r\n"multi\nline",x\r\nlast,"q"""';
  const whole = parseCsvRecords(text);
  assert.deepEqual(whole, [
    { fields: ['a', 'b,c', 'd"e'], line: 1 },
    { fields: ['multi\nline', 'x'], line: 3 },
    { fields: ['last', 'q"'], line: 5 },
  ]);
  for (const size of [1, 2, 3, 5, 7]) {
    const reader = new CsvRecordReader();
    const out: CsvRecord[] = [];
    for (let i = 0; i < text.length; i += size) reader.push(text.slice(i, i + size), out);
    assert.deepEqual(reader.end(out), whole, `chunks of ${size}`);
  }
});
