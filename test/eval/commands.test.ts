// End to end through the CLI: a small real tfjs model, real preprocessing and predictFiles, a slice of the real data.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { tempDir } from '../helpers.js';
import { CLASSES } from '../../src/data/labels.js';
import type { EvaluationReport } from '../../src/eval/schema.js';
import { fundus, tinyModelDir, vietaiSlice } from './fixtures.js';
import { evaluateCommand, thresholdsCommand } from '../../src/eval/commands.js';
import { smallClassWarnings } from '../../src/eval/evaluate.js';
import { InputError } from '../../src/util/errors.js';

let dir: string;
let model: string;
let slice: { csv: string; images: string; filenames: string[] };

before(async () => {
  dir = await tempDir();
  model = await tinyModelDir(join(dir, 'model'));
  slice = await vietaiSlice(dir, 2);
});

test('fundus evaluate --json prints the documented schema, and --report writes the HTML', async () => {
  const html = join(dir, 'out', 'report.html');
  const r = fundus('evaluate', model, '--data', slice.csv, slice.images, '--json', '--resamples', '200', '--report', html);
  assert.equal(r.status, 0, r.stderr);
  const doc = JSON.parse(r.stdout) as EvaluationReport;
  assert.equal(doc.schemaVersion, 1);
  assert.equal(doc.imageCount, slice.filenames.length);
  assert.deepEqual(doc.scoredClasses, [...CLASSES]);
  for (const c of CLASSES) {
    for (const m of ['auc', 'ap', 'f1', 'sensitivity', 'specificity', 'precision'] as const) {
      const x = doc.perClass[c][m];
      assert.ok('value' in x && 'ci' in x, `${c}.${m}`);
      if (x.value !== null) assert.ok(x.value >= 0 && x.value <= 1);
    }
  }
  for (const m of ['meanF1', 'meanF1At05', 'macroAuc'] as const) assert.ok(doc.overall[m].value !== null && doc.overall[m].ci !== null, m);
  assert.equal(doc.bootstrap.resamples, 200);
  assert.equal(doc.data.format, 'contest');
  const text = await readFile(html, 'utf8');
  assert.ok(text.includes('<svg') && text.includes('Evaluation report'));
  // the plain-text summary, too
  const plain = fundus('evaluate', model, '--data', slice.csv, slice.images, '--resamples', '50');
  assert.equal(plain.status, 0, plain.stderr);
  assert.match(plain.stdout, /mean F1 @ 0\.5 \(contest\)/);
  assert.match(plain.stdout, /retinal vascular occlusion/);
  // a class with fewer than 10 positives (or negatives) is warned about, the others are not
  const few = CLASSES.filter((c) => Math.min(doc.perClass[c].positives, doc.perClass[c].negatives) < 10);
  assert.ok(few.length > 0, 'the slice should have small classes');
  for (const c of CLASSES) {
    const warned = plain.stderr.includes(`warning: ${c} has only `);
    assert.equal(warned, few.includes(c), `${c}: ${plain.stderr}`);
  }
});

test('fundus thresholds writes tuned thresholds and the policy into fundus.json; evaluate then uses them', async () => {
  const m2 = await tinyModelDir(join(dir, 'model-thr'));
  const split = join(dir, 'split.json');
  const half = Math.floor(slice.filenames.length / 2);
  await writeFile(split, JSON.stringify({ version: 1, seed: 1, parts: { train: [], validation: slice.filenames.slice(half), test: slice.filenames.slice(0, half) } }));
  const r = fundus('thresholds', m2, '--data', slice.csv, slice.images, '--split', split, '--policy', 'sensitivity=0.9');
  assert.equal(r.status, 0, r.stderr);
  const meta = JSON.parse(await readFile(join(m2, 'fundus.json'), 'utf8'));
  assert.match(meta.thresholdPolicy, /^sensitivity=0\.9 on validation part of .*split\.json \(\d+ images\)/);
  assert.equal(meta.thresholds.length, 7);
  assert.ok(meta.thresholds.some((t: number) => t !== 0.5));
  assert.ok(!(await readdir(m2)).some((f) => f.endsWith('.tmp')), 'no temporary files left');
  // on the data they were tuned on, every class reaches the requested sensitivity
  const e = fundus('evaluate', m2, '--data', slice.csv, slice.images, '--split', split, '--part', 'validation', '--json', '--resamples', '0');
  assert.equal(e.status, 0, e.stderr);
  const doc = JSON.parse(e.stdout) as EvaluationReport;
  assert.deepEqual(doc.model.thresholds, meta.thresholds);
  for (const c of CLASSES) {
    const { value } = doc.perClass[c].sensitivity;
    if (doc.perClass[c].positives > 0) assert.ok(value! >= 0.9, `${c}: ${value}`);
    else assert.ok(value === null && meta.thresholdPolicy.includes(`kept for`) && meta.thresholdPolicy.includes(c), c);
  }
  assert.ok(CLASSES.filter((c) => doc.perClass[c].positives > 0).length >= 5);
  assert.equal(doc.perClass.opacity.auc.ci, null, 'no resamples, no intervals');
  // the test part is the default with --split
  const t = fundus('evaluate', m2, '--data', slice.csv, slice.images, '--split', split, '--json', '--resamples', '0');
  assert.equal(JSON.parse(t.stdout).imageCount, half);
});

test('a filename,label CSV scores only its labels', async () => {
  const csv = join(dir, 'pairs.csv');
  const all = await readFile(slice.csv, 'utf8');
  const g = CLASSES.indexOf('glaucoma');
  const n = CLASSES.indexOf('normal');
  const rows = all.trim().split('\n').slice(1).map((l) => l.split(','));
  const pairs = rows.filter((f) => f[1 + g] === '1').map((f) => `${f[0]},glaucoma`).concat(rows.filter((f) => f[1 + n] === '1').map((f) => `${f[0]},normal`));
  await writeFile(csv, 'filename,label\n' + pairs.join('\n') + '\n');
  const r = fundus('evaluate', model, '--data', csv, slice.images, '--json', '--resamples', '50');
  assert.equal(r.status, 0, r.stderr);
  const doc = JSON.parse(r.stdout) as EvaluationReport;
  assert.deepEqual(doc.scoredClasses, ['glaucoma', 'normal']);
  assert.deepEqual(Object.keys(doc.perClass), ['glaucoma', 'normal']);
  assert.equal(doc.data.format, 'pairs');
  assert.match(doc.notes[0], /only glaucoma, normal scored/);
});

test('bad input: clear messages and exit code 2', async () => {
  const cases: [string[], RegExp][] = [];
  const missing = join(dir, 'missing.csv');
  await writeFile(missing, `filename,label\n${slice.filenames[0]},glaucoma\nnot-there.jpg,normal\n`);
  cases.push([['evaluate', model, '--data', missing, slice.images], /missing.*not-there\.jpg/]);
  const unknown = join(dir, 'unknown.csv');
  await writeFile(unknown, `filename,label\n${slice.filenames[0]},cataract\n`);
  cases.push([['evaluate', model, '--data', unknown, slice.images], /unknown\.csv:2: unknown label 'cataract'/]);
  const focus = await tinyModelDir(join(dir, 'focus'), ['diabetic retinopathy', 'glaucoma', 'normal'], 'softmax');
  const opacity = join(dir, 'opacity.csv');
  await writeFile(opacity, `filename,label\n${slice.filenames[0]},opacity\n`);
  cases.push([['evaluate', focus, '--data', opacity, slice.images], /'opacity' \(1 image.*not among the model's classes \(diabetic retinopathy, glaucoma, normal\)/]);
  cases.push([['evaluate', model, '--data', slice.csv], /--data takes two values/]);
  cases.push([['evaluate', join(dir, 'nope'), '--data', slice.csv, slice.images], /not a fundus model directory/]);
  cases.push([['thresholds', model, '--data', slice.csv, slice.images, '--policy', 'youden'], /unknown threshold policy 'youden'/]);
  cases.push([['evaluate', model, '--data', slice.csv, slice.images, '--split', join(dir, 'split.json'), '--part', 'holdout'], /unknown split part 'holdout'/]);
  // In process (each CLI start costs seconds); the CLI's handling of InputError is checked once below.
  for (const [[command, modelDir, ...rest], message] of cases) {
    const opts: Record<string, unknown> = { quiet: true };
    for (let i = 0; i < rest.length; i++) {
      const key = rest[i].slice(2);
      if (key === 'data') {
        const values: string[] = [];
        while (i + 1 < rest.length && !rest[i + 1].startsWith('--')) values.push(rest[++i]);
        opts.data = values;
      } else opts[key] = rest[++i];
    }
    const run = command === 'evaluate' ? evaluateCommand(modelDir, opts as never) : thresholdsCommand(modelDir, opts as never);
    await assert.rejects(run, (e: Error) => e instanceof InputError && message.test(e.message), `${command} ${rest.join(' ')}`);
  }
  const r = fundus(...cases[0][0]);
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /(^|\n)fundus: .*missing.*not-there\.jpg/);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
});

test('--help documents both commands', () => {
  assert.match(fundus('evaluate', '--help').stdout, /--report <file.html>[\s\S]*--resamples/);
  assert.match(fundus('thresholds', '--help').stdout, /sensitivity=0\.9/);
});

test('fundus evaluate --datasets gives one report per source, each class on its graded images, and skips unscoreable sources', async () => {
  // source "full": the contest slice; "partial": the same photographs graded for DR only, a third left empty;
  // "positives": DR positives only (nothing to score); "ext": external, evaluated whole
  const rows = (await readFile(slice.csv, 'utf8')).trim().split('\n').slice(1);
  const drCol = 2;
  await writeFile(join(dir, 'partial.csv'), ['filename,diabetic retinopathy', ...rows.map((r, i) => `${r.split(',')[0]},${i % 3 === 0 ? '' : r.split(',')[drCol]}`)].join('\n') + '\n');
  await writeFile(join(dir, 'pos.csv'), ['filename,diabetic retinopathy', ...rows.slice(0, 3).map((r) => `${r.split(',')[0]},1`)].join('\n') + '\n');
  const all = slice.filenames;
  await writeFile(join(dir, 'split-all.json'), JSON.stringify({ version: 1, parts: { train: [], validation: [], test: all } }));
  await writeFile(join(dir, 'split-pos.json'), JSON.stringify({ version: 1, parts: { train: [], validation: [], test: all.slice(0, 3) } }));
  await writeFile(
    join(dir, 'sources.json'),
    JSON.stringify({
      sources: [
        { name: 'full', csv: slice.csv, images: slice.images, split: 'split-all.json' },
        { name: 'partial', csv: 'partial.csv', images: slice.images, split: 'split-all.json' },
        { name: 'positives', csv: 'pos.csv', images: slice.images, split: 'split-pos.json' },
      ],
    }),
  );
  await writeFile(join(dir, 'ext.json'), JSON.stringify({ sources: [{ name: 'ext', csv: 'partial.csv', images: slice.images, role: 'external' }] }));
  const r = fundus('evaluate', model, '--datasets', join(dir, 'sources.json'), join(dir, 'ext.json'), '--json', '--resamples', '50');
  assert.equal(r.status, 0, r.stderr);
  const doc = JSON.parse(r.stdout) as { sets: EvaluationReport[]; skipped: { source: string }[] };
  assert.deepEqual(doc.sets.map((s) => [s.data.source, s.data.role, s.imageCount]), [
    ['full', 'train', all.length],
    ['partial', 'train', all.length],
    ['ext', 'external', all.length],
  ]);
  assert.deepEqual(doc.skipped.map((s) => s.source), ['positives']);
  const [full, partial] = doc.sets;
  assert.deepEqual(partial.scoredClasses, ['diabetic retinopathy']);
  const dr = (s: EvaluationReport) => s.perClass['diabetic retinopathy'];
  assert.equal(dr(partial).positives + dr(partial).negatives, all.length - Math.ceil(all.length / 3));
  assert.ok(dr(full).positives + dr(full).negatives === all.length);
  const text = fundus('evaluate', model, '--datasets', join(dir, 'sources.json'), '--resamples', '20');
  assert.equal(text.status, 0, text.stderr);
  assert.match(text.stdout, /== partial \(part 'test'\) ==/);
  assert.match(text.stdout, /== positives: not scored/);
  const both = fundus('evaluate', model, '--datasets', join(dir, 'sources.json'), '--data', slice.csv, slice.images);
  assert.equal(both.status, 2);
  assert.match(both.stderr, /either --datasets or --data/);
});

test('smallClassWarnings names each class with fewer than 10 positives or negatives, and which side is short', () => {
  const c = (positives: number, negatives: number) => ({ positives, negatives }) as EvaluationReport['perClass'][string];
  const w = smallClassWarnings({ perClass: { a: c(12, 30), b: c(3, 40), n: c(50, 9) } }, 'src: ');
  assert.deepEqual(w.map((x) => x.split(' (')[0]), ['src: b has only 3 positive photographs', 'src: n has only 9 negative photographs']);
});
