import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import sharp from 'sharp';
import { PROJECT_ROOT, VIETAI_DIR, tempDir } from '../helpers.js';
import { initEngine } from '../../src/engine/index.js';
import { readDataset } from '../../src/data/csv.js';
import { loadModel } from '../../src/models/io.js';
import { trainModel } from '../../src/train/train.js';
import { readSplitParts } from '../../src/train/split.js';
import { defaultDuplicateFinder, excludeTestDuplicates } from '../../src/selflearn/leakage.js';
import { runSelfLearning, verdict, type VariantResult } from '../../src/selflearn/pipeline.js';
import { selectConfident } from '../../src/selflearn/pseudolabel.js';
import { renderMarkdown } from '../../src/selflearn/report.js';
import { trainModelRetrainer } from '../../src/selflearn/retrain.js';
import { tinyModel } from './tiny-model.js';

await initEngine();

const TRAIN = join(VIETAI_DIR, 'train');
const UNLABELLED = join(VIETAI_DIR, 'unlabeled');
// A real repeat photograph across folders (see the dataset README): unlabelled a5289a80cde6 ≈ train fa7b559b2fdd.
const REAL_TWIN = { unlabelled: join(UNLABELLED, 'a5289a80cde6.jpg'), labelled: 'fa7b559b2fdd.jpg' };

/** A small contest CSV (3 images of each class, plus the twin) and a split with it in the test part. */
async function smallData(dir: string): Promise<{ csv: string; split: string; testImages: string[] }> {
  const lines = (await readFile(join(VIETAI_DIR, 'train.csv'), 'utf8')).trim().split('\n');
  const header = lines[0];
  const rows = lines.slice(1).map((l) => l.split(','));
  const picked: string[][] = [];
  for (let c = 1; c <= 7; c++) picked.push(...rows.filter((r) => r[c] === '1' && !picked.includes(r) && r[0] !== REAL_TWIN.labelled).slice(0, 3));
  const twin = rows.find((r) => r[0] === REAL_TWIN.labelled)!;
  const names = picked.map((r) => r[0]);
  // Every third image to test, every fifth to validation, the rest to train; the twin is a test image.
  const test = [REAL_TWIN.labelled, ...names.filter((_, i) => i % 3 === 0)];
  const validation = names.filter((_, i) => i % 3 !== 0 && i % 5 === 1);
  const train = names.filter((n) => !test.includes(n) && !validation.includes(n));
  const csv = join(dir, 'labels.csv');
  await writeFile(csv, [header, ...[...picked, twin].map((r) => r.join(','))].join('\n') + '\n');
  const split = join(dir, 'split.json');
  await writeFile(split, JSON.stringify({ version: 1, seed: 0, parts: { train, validation, test } }));
  return { csv, split, testImages: test.map((n) => join(TRAIN, n)) };
}

/** Unlabelled pool: a few real unlabelled images, the real twin, and a planted recompressed, resized test image. */
async function unlabelledPool(dir: string, testImage: string): Promise<{ pool: string[]; planted: string }> {
  const planted = join(dir, 'planted-copy.jpg');
  await sharp(testImage).resize(448, 448).modulate({ brightness: 1.05 }).jpeg({ quality: 70 }).toFile(planted);
  const others = ['012df36af16b.jpg', '0157f50bdb02.jpg', '026aa5bc0aea.jpg', '03e7e29071a5.jpg', '071ac96c6277.jpg'].map((n) => join(UNLABELLED, n));
  return { pool: [...others, REAL_TWIN.unlabelled, planted], planted };
}

test('leakage guard excludes a planted near-duplicate and a real cross-folder repeat of test images', async () => {
  const dir = await tempDir();
  const { testImages } = await smallData(dir);
  const { pool, planted } = await unlabelledPool(dir, testImages[1]);
  const r = await excludeTestDuplicates(pool, testImages, defaultDuplicateFinder({ cacheDir: false }));
  assert.deepEqual(r.excluded.map((e) => e.path).sort(), [REAL_TWIN.unlabelled, planted].sort());
  assert.deepEqual(r.excluded.find((e) => e.path === planted)!.duplicateOf, [testImages[1]]);
  assert.equal(r.kept.length, pool.length - 2);
});

test('selectConfident: every class decided with enough confidence and at least one class present', () => {
  const scores = Float64Array.from([0.95, 0.02, /* kept */ 0.6, 0.01, /* class 0 undecided */ 0.03, 0.04 /* no class */]);
  const kept = selectConfident({ scores, numClasses: 2, activation: 'sigmoid', info: {} }, 0.9);
  assert.deepEqual(kept.map((k) => k.index), [0]);
  assert.deepEqual(Array.from(kept[0].labels), [1, 0]);
  const soft = selectConfident({ scores: Float64Array.from([0.7, 0.3, 0.95, 0.05]), numClasses: 2, activation: 'softmax', info: {} }, 0.9);
  assert.deepEqual(soft.map((k) => [k.index, Array.from(k.labels)]), [[1, [1, 0]]]);
});

test('self-learning end to end on a tiny model: spreading (knn, rbf) and confidence, scratch and fine-tuned, one report', async () => {
  const dir = await tempDir();
  const { csv, split } = await smallData(dir);
  const { pool, planted } = await unlabelledPool(dir, join(TRAIN, JSON.parse(await readFile(split, 'utf8')).parts.test[1]));
  const log: string[] = [];
  const quietTrain = { csv, images: TRAIN, split, runsDir: join(dir, 'runs') };
  // The "original" model: a real (tiny, briefly trained) multilabel model.
  const original = await trainModel({
    task: 'multilabel',
    model: 'small-cnn',
    ...quietTrain,
    out: join(dir, 'original'),
    runDir: join(dir, 'runs', 'original'),
    epochs: 1,
    augment: false,
    quiet: true,
    seed: 1,
  });
  const model = await loadModel(original.modelDir);
  const report = await runSelfLearning({
    model,
    dataset: await readDataset(csv, TRAIN),
    split: await readSplitParts(split),
    unlabelled: pool,
    methods: [
      { kind: 'spreading', kernel: 'knn', normalize: 'l2', params: { nNeighbors: 3 } },
      { kind: 'spreading', kernel: 'rbf', normalize: 'l2', params: {} },
      { kind: 'confidence' },
    ],
    threshold: 0.5,
    modes: ['scratch', 'finetune'],
    rounds: 1,
    bootstrap: { resamples: 50, seed: 0 },
    outDir: join(dir, 'out'),
    retrain: trainModelRetrainer(quietTrain, { epochs: 1, pseudoWeight: 0.5, quiet: true }),
    findDuplicates: defaultDuplicateFinder({ cacheDir: false }),
    log: (l) => log.push(l),
    cache: false,
  });
  assert.equal(report.leakageGuard.excluded, 2);
  assert.ok(report.leakageGuard.excludedImages.some((e) => e.path === planted));
  assert.equal(report.leakageGuard.kept, pool.length - 2);
  // A method whose pseudo-labels all miss the threshold is not retrained (the rbf one may, on an untrained embedding).
  const accepted = Object.fromEntries(report.pseudoLabelling.map((p) => [p.method, p.accepted]));
  assert.ok(accepted['spreading-knn'] > 0 && accepted['confidence'] > 0, JSON.stringify(accepted));
  assert.deepEqual(
    report.variants.map((v) => v.name),
    [
      'original',
      'control-finetune',
      ...['spreading-knn', 'spreading-rbf', 'confidence'].filter((m) => accepted[m] > 0).flatMap((m) => [`${m}-r1-scratch`, `${m}-r1-finetune`]),
    ],
  );
  for (const v of report.variants) {
    assert.equal(v.metrics.imageCount, report.data.test);
    assert.ok(v.metrics.perClass['glaucoma'].auc.value === null || v.metrics.perClass['glaucoma'].auc.ci !== undefined);
  }
  assert.ok(report.variants.some((v) => v.pseudoLabelled > 0), 'some pseudo-labels were used');
  // Each spreading round saw the labelled train part plus the kept unlabelled images.
  const knn = report.pseudoLabelling.find((p) => p.method === 'spreading-knn')!;
  assert.equal(knn.unlabelledScored, pool.length - 2);
  assert.equal(knn.info.nNeighbors, 3);
  assert.ok(typeof report.pseudoLabelling.find((p) => p.method === 'spreading-rbf')!.info.gamma === 'number');
  // Retrained models exist and differ from the original (fine-tuned from it, or from scratch).
  const ft = await loadModel(report.variants[3].modelDir);
  assert.equal(ft.metadata.architecture, 'small-cnn');
  assert.ok(report.verdict.length >= 6);
  assert.ok(report.verdict.some((l) => /spreading-knn-r1-finetune: .* vs control-finetune/.test(l)), report.verdict.join('\n'));
  assert.ok(report.verdict.some((l) => /spreading-knn-r1-scratch: .* vs original/.test(l)));
  const md = renderMarkdown(report);
  assert.match(md, /\| spreading-knn-r1-finetune \|/);
  assert.match(md, /\| spreading-rbf \| 1 \| \d+ \/ 5 \|/);
  assert.match(md, /Leakage guard: 2 of 7 unlabelled images excluded/);
  assert.match(md, /ROC AUC per class/);
});

test('fundus selflearn CLI: report files, rounds, and clear errors', async () => {
  const dir = await tempDir();
  const { csv, split } = await smallData(dir);
  const trainDir = join(dir, 'orig');
  await trainModel({ task: 'multilabel', model: 'small-cnn', csv, images: TRAIN, split, out: trainDir, runDir: join(dir, 'r'), epochs: 1, quiet: true, augment: false });
  const unl = join(dir, 'unl');
  await mkdir(unl);
  for (const n of ['012df36af16b.jpg', '0157f50bdb02.jpg', '026aa5bc0aea.jpg']) await writeFile(join(unl, n), await readFile(join(UNLABELLED, n)));
  const cli = (...args: string[]) =>
    spawnSync(process.execPath, ['--import', 'tsx', join(PROJECT_ROOT, 'src', 'cli.ts'), 'selflearn', ...args], { encoding: 'utf8', cwd: PROJECT_ROOT });
  const out = join(dir, 'out');
  const r = cli(trainDir, '--data', csv, TRAIN, '--split', split, '--unlabelled', unl, '--out', out, '--methods', 'knn', '--n-neighbors', '3',
    '--retrain', 'finetune', '--rounds', '2', '--threshold', '0.5', '--epochs', '1', '--bootstrap', '20', '--quiet', '--no-control');
  assert.equal(r.status, 0, r.stderr);
  const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8'));
  assert.deepEqual(report.variants.map((v: { name: string }) => v.name), ['original', 'spreading-knn-r1-finetune', 'spreading-knn-r2-finetune']);
  assert.match(await readFile(join(out, 'report.md'), 'utf8'), /F1 per class/);
  await assert.rejects(readFile(join(out, 'report.partial.json'), 'utf8'), /ENOENT/);
  const bad = cli(trainDir, '--data', csv, TRAIN, '--split', split, '--unlabelled', unl, '--out', out, '--methods', 'knn,pca');
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--methods takes a comma-separated list/);
  const help = cli('--help');
  assert.match(help.stdout, /--n-neighbors/);
});

test('no pseudo-label above the threshold: nothing is retrained, the report says so', async () => {
  const dir = await tempDir();
  const { csv, split } = await smallData(dir);
  await tinyModel(join(dir, 'model'));
  const log: string[] = [];
  let partials = 0;
  const report = await runSelfLearning({
    model: await loadModel(join(dir, 'model')),
    dataset: await readDataset(csv, TRAIN),
    split: await readSplitParts(split),
    unlabelled: [join(UNLABELLED, '012df36af16b.jpg'), join(UNLABELLED, '0157f50bdb02.jpg')],
    methods: [{ kind: 'confidence' }],
    threshold: 1,
    modes: ['scratch'],
    rounds: 2,
    bootstrap: { resamples: 10 },
    outDir: join(dir, 'out'),
    retrain: () => Promise.reject(new Error('retrain must not be called without pseudo-labels')),
    onProgress: () => {
      partials++;
    },
    findDuplicates: async () => [],
    log: (l) => log.push(l),
  });
  assert.deepEqual(report.variants.map((v) => v.name), ['original']);
  assert.equal(report.pseudoLabelling.length, 1);
  assert.equal(report.pseudoLabelling[0].accepted, 0);
  assert.equal(partials, 1);
  assert.ok(log.some((l) => /no pseudo-label reached the threshold/.test(l)));
});

test('verdict: fine-tuned variants are judged against the control, and not at all without it', () => {
  const v = (name: string, mode: VariantResult['mode'], method: string | null, auc: number, ci: [number, number]): VariantResult =>
    ({
      name,
      mode,
      method,
      round: 1,
      modelDir: name,
      pseudoLabelled: 0,
      metrics: { overall: { macroAuc: { value: auc, ci }, meanF1: { value: auc / 2, ci: [ci[0] / 2, ci[1] / 2] } } },
    }) as unknown as VariantResult;
  const orig = v('original', 'original', null, 0.6, [0.58, 0.62]);
  const ctrl = v('control-finetune', 'control', null, 0.7, [0.68, 0.72]);
  const ft = v('spreading-knn-r1-finetune', 'finetune', 'spreading-knn', 0.69, [0.67, 0.71]);
  const withControl = verdict([orig, ctrl, ft]);
  assert.ok(withControl.some((l) => /spreading-knn-r1-finetune: macro AUC -0\.010.* vs control-finetune \(intervals overlap\)/.test(l)), withControl.join('\n'));
  assert.ok(withControl.some((l) => /did not help/.test(l)));
  const without = verdict([orig, ft]);
  assert.ok(without.some((l) => /says nothing about the pseudo-labels/.test(l)), without.join('\n'));
  assert.ok(!without.some((l) => /helped here/.test(l)));
});
