import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import sharp from 'sharp';
import { PROJECT_ROOT, VIETAI_DIR, tempDir } from '../helpers.js';
import { initEngine } from '../../src/engine/index.js';
import { readDataset } from '../../src/data/csv.js';
import { loadModel, saveModel, type FundusModel } from '../../src/models/io.js';
import { trainModel } from '../../src/train/train.js';
import { readSplitParts } from '../../src/data/split.js';
import { defaultDuplicateFinder, excludeTestDuplicates } from '../../src/selflearn/leakage.js';
import { comparisonPlan } from '../../src/selflearn/comparisons.js';
import { runSelfLearning } from '../../src/selflearn/pipeline.js';
import type { Comparison, RetrainMode, VariantResult } from '../../src/selflearn/schema.js';
import { verdict } from '../../src/selflearn/verdict.js';
import { selectConfident, type PseudoLabelMethod } from '../../src/selflearn/pseudolabel.js';
import { renderMarkdown } from '../../src/selflearn/report.js';
import { armBudget, trainModelRetrainer, type Retrainer } from '../../src/selflearn/retrain.js';
import { labelledPart } from '../../src/selflearn/evaluate.js';
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
    scratchMethods: ['spreading-knn', 'spreading-rbf'],
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
  const usable = ['spreading-knn', 'spreading-rbf', 'confidence'].filter((m) => accepted[m] > 0);
  assert.deepEqual(
    report.variants.map((v) => v.name),
    [
      'original',
      'control-finetune',
      ...usable.map((m) => `${m}-r1-finetune`),
      'control-scratch',
      ...usable.filter((m) => m !== 'confidence').map((m) => `${m}-r1-scratch`),
    ],
  );
  for (const v of report.variants) {
    assert.equal(v.metrics.imageCount, report.data.test);
    assert.ok(v.metrics.perClass['glaucoma'].auc.value === null || v.metrics.perClass['glaucoma'].auc.ci !== undefined);
    if (v.mode === 'original') continue;
    // Every arm reports the budget it got: one epoch here, all of it run.
    assert.equal(v.budget!.epochsPlanned, 1);
    assert.equal(v.budget!.epochsRun, 1);
    assert.equal(v.budget!.stoppedBy, 'epochs');
    assert.ok(v.budget!.wallSeconds >= v.budget!.trainSeconds);
    assert.equal(v.teacher, v.mode === 'control' ? null : 'original');
    if (v.mode !== 'control') assert.deepEqual(v.positivesPerClass, report.pseudoLabelling.find((p) => p.method === v.method)!.positivesPerClass);
  }
  assert.equal(report.variants.find((v) => v.name === 'control-scratch')!.controlFor, 'scratch');
  assert.ok(report.variants.some((v) => v.pseudoLabelled > 0), 'some pseudo-labels were used');
  // Each spreading round saw the labelled train part plus the kept unlabelled images.
  const knn = report.pseudoLabelling.find((p) => p.method === 'spreading-knn')!;
  assert.equal(knn.unlabelledScored, pool.length - 2);
  assert.equal(knn.info.nNeighbors, 3);
  assert.ok(typeof report.pseudoLabelling.find((p) => p.method === 'spreading-rbf')!.info.gamma === 'number');
  // Retrained models exist (fine-tuned from the original, or from scratch).
  const ft = await loadModel(report.variants[2].modelDir);
  assert.equal(ft.metadata.architecture, 'small-cnn');
  // Arms are compared with their controls, paired.
  const c = report.comparisons.find((x) => x.arm === 'spreading-knn-r1-scratch')!;
  assert.equal(c.reference, 'control-scratch');
  assert.ok(c.macroAuc.value === null || (c.macroAuc.ci![0] <= c.macroAuc.value && c.macroAuc.value <= c.macroAuc.ci![1]));
  assert.ok(report.verdict.some((l) => /^spreading-knn-r1-finetune − control-finetune/.test(l)), report.verdict.join('\n'));
  assert.ok(report.verdict.some((l) => /^control-finetune − original \(extra fine-tuning epochs alone, no pseudo-labels\)/.test(l)));
  assert.ok(report.verdict.some((l) => /from-scratch arms had 1\.0 epochs/.test(l)));
  const md = renderMarkdown(report);
  assert.match(md, /\| spreading-knn-r1-finetune \|/);
  assert.match(md, /\| spreading-rbf \| 1 \| original \| \d+ \/ 5 \|/);
  assert.match(md, /Leakage guard: 2 of 7 unlabelled images excluded/);
  assert.match(md, /ROC AUC per class/);
  assert.match(md, /\| spreading-knn-r1-scratch \| scratch \| original \| \d+ \|/);
  assert.match(md, /Paired comparisons on the test part/);
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

test('fundus selflearn CLI at its deadline: embedding stops, the report says what was done, and only complete files are left', async () => {
  const dir = await tempDir();
  const { csv, split } = await smallData(dir);
  await tinyModel(join(dir, 'model'));
  const out = join(dir, 'out');
  // 6 ms: gone before the embedding starts (loading the engine alone takes longer).
  const r = spawnSync(
    process.execPath,
    ['--import', 'tsx', join(PROJECT_ROOT, 'src', 'cli.ts'), 'selflearn', join(dir, 'model'), '--data', csv, TRAIN, '--split', split,
      '--unlabelled', join(UNLABELLED, '012df36af16b.jpg'), join(UNLABELLED, '0157f50bdb02.jpg'), '--out', out, '--methods', 'knn',
      '--retrain', 'finetune', '--threshold', '0.5', '--bootstrap', '10', '--deadline-minutes', '0.0001', '--quiet'],
    { encoding: 'utf8', cwd: PROJECT_ROOT },
  );
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /^selflearn: Stopped at the deadline while pseudo-labelling with spreading-knn, round 1 \(teacher original\): 0 of \d+ photographs embedded; .*no arm trained/m);
  const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8'));
  assert.match(report.stoppedEarly, /0 of \d+ photographs embedded/);
  assert.deepEqual(report.variants.map((v: { name: string }) => v.name), ['original']);
  assert.deepEqual(report.pseudoLabelling, []);
  assert.match(await readFile(join(out, 'report.md'), 'utf8'), /^\*\*Stopped at the deadline while pseudo-labelling with spreading-knn/m);
  // No partial report, no model or run folder of an arm: the original's copy and the two complete report files.
  assert.deepEqual((await readdir(out)).sort(), ['original', 'report.json', 'report.md']);
});

test('limit bounds the photographs embedded and pseudo-labelled; the deadline stops pseudo-labelling between methods', async (t) => {
  const dir = await tempDir();
  const { csv, split } = await smallData(dir);
  await tinyModel(join(dir, 'model'));
  const model = await loadModel(join(dir, 'model'));
  const requests: { name: string; train: number }[] = [];
  const trained: FundusModel[] = [];
  const retrain: Retrainer = async (req) => {
    requests.push({ name: req.outDir.split('/').pop()!, train: req.train.length });
    await saveModel(req.outDir, req.base.network, req.base.metadata);
    trained.push(await loadModel(req.outDir));
    return { model: trained[trained.length - 1], budget: armBudget([{}], 1, 1, 1e-4, 1, 1) };
  };
  const log: string[] = [];
  const common = {
    model,
    dataset: await readDataset(csv, TRAIN),
    split: await readSplitParts(split),
    unlabelled: ['012df36af16b.jpg', '0157f50bdb02.jpg', '026aa5bc0aea.jpg', '03e7e29071a5.jpg'].map((n) => join(UNLABELLED, n)),
    methods: [{ kind: 'spreading', kernel: 'knn', normalize: 'l2', params: { nNeighbors: 3 } }, { kind: 'confidence' }] as PseudoLabelMethod[],
    threshold: 0.5,
    modes: ['finetune'] as RetrainMode[],
    rounds: 1,
    bootstrap: { resamples: 10 },
    retrain,
    findDuplicates: async () => [],
    cache: false,
    log: (l: string) => log.push(l),
  };
  const limited = await runSelfLearning({ ...common, outDir: join(dir, 'limited'), limit: 3 });
  assert.equal(limited.data.train, 3);
  assert.ok(limited.data.validation <= 3);
  assert.deepEqual(
    limited.pseudoLabelling.map((p) => [p.method, p.unlabelledScored, p.info.seeds]),
    [
      ['spreading-knn', 3, 3],
      ['confidence', 3, undefined],
    ],
  );
  assert.ok(requests.length > 0 && requests.every((q) => q.train === 3), JSON.stringify(requests));
  assert.match(limited.notes.join('\n'), /^Smoke run \(limit 3\): 3 labelled training images \(the spreading seeds\), \d validation, and 3 of the 4 unlabelled images/);
  assert.equal(limited.stoppedEarly, undefined);
  // Each arm's model is freed once saved and evaluated; the original stays usable.
  const disposed = (m: FundusModel) => assert.throws(() => m.network.getWeights(), /disposed/i);
  assert.ok(trained.length >= 2);
  trained.forEach(disposed);
  assert.ok(model.network.getWeights().length > 0);

  // The clock moves only when told: the deadline comes after the knn round, as the classifier scores start.
  t.mock.timers.enable({ apis: ['Date'], now: 1_000_000 });
  requests.length = 0;
  const late = await runSelfLearning({
    ...common,
    outDir: join(dir, 'late'),
    deadline: 1_060_000,
    log: (l: string) => {
      if (/^confidence, round 1: pseudo-labelling/.test(l)) t.mock.timers.tick(120_000);
    },
  });
  assert.deepEqual(late.pseudoLabelling.map((p) => p.method), ['spreading-knn']);
  assert.match(late.stoppedEarly!, /^Stopped at the deadline while pseudo-labelling with confidence, round 1 \(teacher original\): 0 of 4 photographs scored;/);
  assert.deepEqual(requests, [], 'nothing trained past the deadline');
  assert.deepEqual(late.variants.map((v) => v.name), ['original']);
  // The knn arm and its control could not start: listed, with the reason.
  assert.deepEqual(late.skipped.map((s) => [s.name, s.reason]), [
    ['control-finetune', "not run: it would start past the run's deadline"],
    ['spreading-knn-r1-finetune', "not run: it would start past the run's deadline"],
  ]);
  assert.match(renderMarkdown(late), /^\*\*Stopped at the deadline while pseudo-labelling with confidence/m);
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

test('verdict: arms judged against their controls by the paired interval, and not at all without a control', () => {
  const v = (name: string, mode: VariantResult['mode'], method: string | null, controlFor?: 'finetune' | 'scratch'): VariantResult =>
    ({ name, mode, method, round: 1, controlFor, budget: null, metrics: { overall: { macroAuc: { value: name.length / 100 }, meanF1: { value: 0.5 } } } }) as unknown as VariantResult;
  const d = (value: number, lo: number, hi: number) => ({ value, ci: [lo, hi] as [number, number] });
  const cmp = (arm: string, reference: string, auc: ReturnType<typeof d>, outcome: Comparison['outcome']): Comparison => ({
    arm,
    reference,
    question: 'q',
    macroAuc: auc,
    meanF1: d(0, -0.01, 0.01),
    outcome,
  });
  const orig = v('original', 'original', null);
  const ctrl = v('control-finetune', 'control', null, 'finetune');
  const knn = v('spreading-knn-r1-finetune', 'finetune', 'spreading-knn');
  const conf = v('confidence-r1-finetune', 'finetune', 'confidence');
  const flat = verdict(
    [orig, ctrl, knn, conf],
    [cmp(knn.name, ctrl.name, d(-0.01, -0.03, 0.01), 'no clear difference'), cmp(conf.name, ctrl.name, d(-0.04, -0.06, -0.02), 'lower'), cmp(knn.name, conf.name, d(0.03, 0.01, 0.05), 'higher')],
  );
  assert.ok(flat.some((l) => /^spreading-knn-r1-finetune − control-finetune \(q\): macro AUC -0\.010 \[-0\.030, \+0\.010\].*→ no clear difference/.test(l)), flat.join('\n'));
  assert.ok(flat.some((l) => /^fine-tuned from the original: pseudo-labels did not clearly help: the best arm is spreading-knn-r1-finetune/.test(l)), flat.join('\n'));
  assert.ok(flat.some((l) => /spreading-knn-r1-finetune is better than plain classifier-confidence/.test(l)));
  const allLower = verdict([orig, ctrl, conf], [cmp(conf.name, ctrl.name, d(-0.04, -0.06, -0.02), 'lower')]);
  assert.ok(allLower.some((l) => /^fine-tuned from the original: pseudo-labels did not help: every arm is below control-finetune/.test(l)), allLower.join('\n'));
  // Per mode: scratch arms that help do not make the fine-tuned ones look helpful, and hurting ones are named.
  const ctrlS = v('control-scratch', 'control', null, 'scratch');
  const knnS = v('spreading-knn-r1-scratch', 'scratch', 'spreading-knn');
  const mixed = verdict(
    [orig, ctrl, knn, ctrlS, knnS],
    [cmp(knn.name, ctrl.name, d(-0.02, -0.03, -0.01), 'lower'), cmp(knnS.name, ctrlS.name, d(0.03, 0.01, 0.05), 'higher')],
  );
  assert.ok(mixed.some((l) => /^fine-tuned from the original: pseudo-labels did not help/.test(l)), mixed.join('\n'));
  assert.ok(mixed.some((l) => /^trained from scratch: pseudo-labels helped: spreading-knn-r1-scratch beats control-scratch/.test(l)));
  // The highest test macro AUC is named (here by the stand-in metric: the longest name).
  assert.ok(mixed.some((l) => /^highest test macro AUC: spreading-knn-r1-finetune 0\.250/.test(l)), mixed.join('\n'));
  const helped = verdict([orig, ctrl, knn], [cmp(knn.name, ctrl.name, d(0.02, 0.005, 0.035), 'higher')]);
  assert.ok(helped.some((l) => /^fine-tuned from the original: pseudo-labels helped: spreading-knn-r1-finetune beats control-finetune/.test(l)), helped.join('\n'));
  const without = verdict([orig, knn], []);
  assert.ok(without.some((l) => /has no control .* says nothing about the pseudo-labels alone/.test(l)), without.join('\n'));
  assert.ok(!without.some((l) => /helped/.test(l)));
});

test('comparison plan: arms against their controls, rounds against the previous round, kernels and confidence against each other', () => {
  const arm = (name: string, mode: VariantResult['mode'], method: string | null, round = 1, controlFor?: 'finetune' | 'scratch') => ({ name, mode, method, round, controlFor });
  const plan = comparisonPlan([
    arm('original', 'original', null, 0),
    arm('control-finetune', 'control', null, 1, 'finetune'),
    arm('spreading-knn-r1-finetune', 'finetune', 'spreading-knn'),
    arm('spreading-rbf-r1-finetune', 'finetune', 'spreading-rbf'),
    arm('confidence-r1-finetune', 'finetune', 'confidence'),
    arm('control-scratch', 'control', null, 1, 'scratch'),
    arm('spreading-knn-r1-scratch', 'scratch', 'spreading-knn'),
    arm('spreading-rbf-r2-finetune', 'finetune', 'spreading-rbf', 2),
  ]).map((p) => `${p.arm} vs ${p.reference}`);
  assert.deepEqual(plan, [
    'control-finetune vs original',
    'spreading-knn-r1-finetune vs control-finetune',
    'spreading-rbf-r1-finetune vs control-finetune',
    'confidence-r1-finetune vs control-finetune',
    'control-scratch vs original',
    'spreading-knn-r1-scratch vs control-scratch',
    'spreading-rbf-r2-finetune vs control-finetune',
    'spreading-rbf-r2-finetune vs spreading-rbf-r1-finetune',
    'spreading-knn-r1-finetune vs spreading-rbf-r1-finetune',
    'spreading-knn-r1-finetune vs confidence-r1-finetune',
    'spreading-rbf-r1-finetune vs confidence-r1-finetune',
  ]);
});

test('arms: controls, fine-tuned from the original, scratch only for spreading, rounds for the kernel better on validation, deadline', async () => {
  const dir = await tempDir();
  const { csv, split } = await smallData(dir);
  await tinyModel(join(dir, 'model'));
  const model = await loadModel(join(dir, 'model'));
  // A stand-in for training (the real one is covered above): the base network saved as the arm's model, with a
  // validation macro AUC that makes rbf the better kernel; every request is recorded.
  const requests: { name: string; mode: string; base: string; pseudo: number }[] = [];
  const retrain: Retrainer = async (req) => {
    const name = req.outDir.split('/').pop()!;
    requests.push({ name, mode: req.mode, base: req.base.dir, pseudo: req.pseudo.length });
    const auc = name.includes('rbf') ? 0.7 : 0.6;
    await saveModel(req.outDir, req.base.network, { ...req.base.metadata, metrics: { validation: { macroAuc: auc } } });
    return { model: await loadModel(req.outDir), budget: armBudget([{}], 1, 1, 1e-4, 1, 1) };
  };
  const common = {
    model,
    dataset: await readDataset(csv, TRAIN),
    split: await readSplitParts(split),
    unlabelled: ['012df36af16b.jpg', '0157f50bdb02.jpg', '026aa5bc0aea.jpg', '03e7e29071a5.jpg'].map((n) => join(UNLABELLED, n)),
    methods: [
      { kind: 'spreading', kernel: 'knn', normalize: 'l2', params: { nNeighbors: 3 } },
      { kind: 'spreading', kernel: 'rbf', normalize: 'l2', params: {}, gammaScale: 30 },
      { kind: 'confidence' },
    ] as PseudoLabelMethod[],
    threshold: 0.5,
    modes: ['finetune', 'scratch'] as RetrainMode[],
    scratchMethods: ['spreading-knn', 'spreading-rbf'],
    rounds: 3,
    bootstrap: { resamples: 20 },
    retrain,
    findDuplicates: async () => [],
    cache: false,
  };
  const report = await runSelfLearning({ ...common, outDir: join(dir, 'out') });
  assert.deepEqual(report.pseudoLabelling.filter((p) => p.round === 1).map((p) => p.accepted > 0), [true, true, true], JSON.stringify(report.pseudoLabelling));
  assert.deepEqual(report.variants.map((v) => v.name), [
    'original',
    'control-finetune',
    'spreading-knn-r1-finetune',
    'spreading-rbf-r1-finetune',
    'confidence-r1-finetune',
    'spreading-rbf-r2-finetune',
    'spreading-rbf-r3-finetune',
    'control-scratch',
    'spreading-knn-r1-scratch',
    'spreading-rbf-r1-scratch',
  ]);
  // Every fine-tuned student starts from the original (rounds change only the teacher); controls get no pseudo-labels.
  // (a copy of it in the output folder, identical to it).
  for (const r of requests) assert.equal(r.base, join(dir, 'out', 'original'), r.name);
  assert.deepEqual((await loadModel(join(dir, 'out', 'original'))).metadata, model.metadata);
  assert.deepEqual(requests.filter((r) => r.pseudo === 0).map((r) => r.name), ['control-finetune', 'control-scratch']);
  assert.deepEqual(report.roundsChoice, { method: 'spreading-rbf', by: 'validation macro AUC of the round-1 model', candidates: { 'spreading-knn': 0.6, 'spreading-rbf': 0.7 } });
  assert.deepEqual(
    report.pseudoLabelling.filter((p) => p.round > 1).map((p) => [p.method, p.round, p.teacher]),
    [
      ['spreading-rbf', 2, 'spreading-rbf-r1-finetune'],
      ['spreading-rbf', 3, 'spreading-rbf-r2-finetune'],
    ],
  );
  assert.equal(report.variants.find((v) => v.name === 'spreading-rbf-r3-finetune')!.teacher, 'spreading-rbf-r2-finetune');
  assert.ok(report.comparisons.some((c) => c.arm === 'spreading-rbf-r3-finetune' && c.reference === 'spreading-rbf-r2-finetune'));
  // Identical networks (the stand-in copies the original): every paired difference is exactly zero.
  for (const c of report.comparisons) assert.deepEqual(c.macroAuc, { value: 0, ci: [0, 0] }, `${c.arm} vs ${c.reference}`);
  assert.deepEqual(report.skipped, []);

  // A deadline too close for any arm: nothing is trained, and the report names every arm it skipped.
  requests.length = 0;
  const late = await runSelfLearning({ ...common, outDir: join(dir, 'late'), deadline: Date.now() + 30_000, armMinutes: { finetune: 1, scratch: 2 }, notes: ['Smoke run.'] });
  assert.equal(requests.length, 0);
  assert.deepEqual(late.variants.map((v) => v.name), ['original']);
  assert.deepEqual(late.skipped.map((s) => s.name), [
    'control-finetune',
    'spreading-knn-r1-finetune',
    'spreading-rbf-r1-finetune',
    'confidence-r1-finetune',
    'control-scratch',
    'spreading-knn-r1-scratch',
    'spreading-rbf-r1-scratch',
  ]);
  assert.match(late.skipped[0].reason, /past the run's deadline/);
  assert.match(renderMarkdown(late), /Not run:\n\n- control-finetune: not run/);
  assert.match(renderMarkdown(late), /^\*\*Smoke run\.\*\*$/m);
});

test('retrainer: a from-scratch arm keeps the base model\'s exact preprocessing and a fresh initialisation', async () => {
  const dir = await tempDir();
  const { csv, split } = await smallData(dir);
  await tinyModel(join(dir, 'model'));
  const base = await loadModel(join(dir, 'model'));
  // The tiny model's preprocessing (3-channel normalisation, lanczos3 resize) differs from trainModel's defaults for new models.
  const retrain = trainModelRetrainer({ csv, images: TRAIN, split, runsDir: join(dir, 'runs') }, { epochs: 1, pseudoWeight: 1, quiet: true });
  const parts = await readSplitParts(split);
  // The run's choice of labelled images (a smoke run's first few) is what the arm trains and validates on.
  const dataset = await readDataset(csv, TRAIN);
  const classes = base.metadata.classes;
  const train = labelledPart(dataset, parts.train.slice(0, 6), classes, 'train');
  const validation = labelledPart(dataset, parts.validation.slice(0, 4), classes, 'validation');
  const req = { base, classes, train, validation, pseudo: [], seed: 5 };
  const scratch = await retrain({ ...req, mode: 'scratch', outDir: join(dir, 'out', 'scratch') });
  assert.deepEqual(scratch.model.metadata.preprocess, base.metadata.preprocess);
  assert.equal(scratch.model.metadata.trainingData!.imageCount, train.length);
  assert.equal((scratch.model.metadata.metrics?.validation as { images: number }).images, validation.length);
  await assert.rejects(
    retrain({ ...req, train: validation, mode: 'finetune', outDir: join(dir, 'out', 'stray') }),
    new RegExp(`${validation[0].filename} was asked to be used as a train image, but the split's train part does not list it`),
  );
  assert.deepEqual(scratch.budget, { ...scratch.budget, epochsPlanned: 1, epochsRun: 1, stoppedBy: 'epochs', lr: 1e-3 });
  // Not the base's weights: trained from a fresh initialisation.
  const w0 = base.network.getWeights()[0].dataSync();
  const w1 = scratch.model.network.getWeights()[0].dataSync();
  assert.ok(w0.some((v, i) => Math.abs(v - w1[i]) > 1e-3));
  const ft = await retrain({ ...req, mode: 'finetune', outDir: join(dir, 'out', 'ft') });
  assert.deepEqual(ft.model.metadata.preprocess, base.metadata.preprocess);
  assert.equal(ft.budget.lr, 1e-4);
});
