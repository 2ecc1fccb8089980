import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { PROJECT_ROOT, tempDir } from '../helpers.js';
import { loadPreprocessedBytes } from '../../src/data/cache.js';
import type { PreprocessedBytes } from '../../src/data/preprocess.js';
import { AUDIT_PREPROCESS, IMAGE_STATISTICS, PIXEL_STATISTICS, imageStatistics } from '../../src/audit/features.js';
import { groupedStratifiedFolds } from '../../src/audit/folds.js';
import { crossValidatedAuc, selectColumns } from '../../src/audit/logistic.js';
import type { FeatureMatrix } from '../../src/audit/logistic.js';
import { auditSources } from '../../src/audit/audit.js';
import type { AuditNetwork } from '../../src/audit/audit.js';
import type { AuditReport } from '../../src/audit/report.js';
import { formatAudit } from '../../src/audit/text.js';
import { InputError } from '../../src/util/errors.js';
import { initEngine } from '../../src/engine/index.js';
import { predictFiles } from '../../src/models/predictor.js';
import { embedFiles } from '../../src/selflearn/embed.js';
import { tinyModel } from '../selflearn/tiny-model.js';
import { CAMERA_A, CAMERA_B, twoSourceDatasets, writeCameraPhotos } from './fixtures.js';

const stat = (v: Float64Array, name: (typeof IMAGE_STATISTICS)[number]) => v[IMAGE_STATISTICS.indexOf(name)];

test('image statistics of a known crop', () => {
  // 10×10 crop of a 20×10 photo: the left half is a flat disc (100, 50, 25), the right half border (5, 5, 5).
  const size = 10;
  const pixels = new Uint8Array(size * size * 3);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) pixels.set(x < 5 ? [100, 50, 25] : [5, 5, 5], (y * size + x) * 3);
  }
  const img: PreprocessedBytes = { pixels, size, channels: 3, geometry: { width: 20, height: 10, x: 5, y: 0, side: 10 } };
  const v = imageStatistics(img);
  assert.equal(v.length, IMAGE_STATISTICS.length);
  const expected: [(typeof IMAGE_STATISTICS)[number], number][] = [
    ['photo width', 20],
    ['photo height', 10],
    ['aspect ratio', 2],
    ['disc share of crop', 0.5],
    ['disc share of photo', 0.25],
    ['border brightness', 5],
    ['R mean', 100],
    ['G mean', 50],
    ['B mean', 25],
    ['R std', 0],
    ['G p10', 50],
    ['B p90', 25],
    ['G sharpness', 0],
    ['R/G', 101 / 51],
    ['B/G', 26 / 51],
    ['saturation', 0.75],
  ];
  for (const [name, want] of expected) assert.ok(Math.abs(stat(v, name) - want) < 1e-9, `${name}: ${stat(v, name)} vs ${want}`);
  // Texture in the green channel raises the sharpness; the percentiles follow the values.
  for (let y = 0; y < size; y++) for (let x = 0; x < 5; x++) pixels[(y * size + x) * 3 + 1] = (x + y) % 2 ? 40 : 60;
  const t = imageStatistics(img);
  assert.ok(stat(t, 'G sharpness') > 1000);
  assert.equal(stat(t, 'G p10'), 40);
  assert.equal(stat(t, 'G p90'), 60);
  assert.equal(stat(imageStatistics({ ...img, pixels: new Uint8Array(pixels.length) }), 'R mean'), 0); // no disc at all
  assert.equal(PIXEL_STATISTICS.length, IMAGE_STATISTICS.length - 4);
});

/** Cross-validated macro AUCs of the image statistics of two lists of photos (source 0 vs source 1), per fold seed. */
async function statisticsAuc(a: string[], b: string[], opts: { columns?: readonly string[]; seeds?: number[] } = {}): Promise<number[]> {
  const bytes = await loadPreprocessedBytes([...a, ...b], AUDIT_PREPROCESS, { cache: false });
  const d = IMAGE_STATISTICS.length;
  let X: FeatureMatrix = { data: new Float64Array(bytes.length * d), rows: bytes.length, cols: d };
  bytes.forEach((im, i) => X.data.set(imageStatistics(im), i * d));
  if (opts.columns) X = selectColumns(X, opts.columns.map((c) => IMAGE_STATISTICS.indexOf(c as (typeof IMAGE_STATISTICS)[number])));
  const y = Int32Array.from(bytes, (_, i) => (i < a.length ? 0 : 1));
  return (opts.seeds ?? [0]).map((seed) => crossValidatedAuc(X, y, 2, groupedStratifiedFolds(y, new Array(y.length).fill(undefined), 5, seed).fold).macroAuc!);
}

test('image statistics tell two cameras apart, and not two sources of one camera', async () => {
  const dir = await tempDir();
  const n = 30;
  const a = (await writeCameraPhotos(join(dir, 'a'), CAMERA_A, n, 'a', 0)).map((f) => join(dir, 'a', f));
  const b = (await writeCameraPhotos(join(dir, 'b'), CAMERA_B, n, 'b', 500)).map((f) => join(dir, 'b', f));
  const a2 = (await writeCameraPhotos(join(dir, 'a2'), CAMERA_A, n, 'a', 1000)).map((f) => join(dir, 'a2', f));
  const [twoCameras] = await statisticsAuc(a, b);
  assert.ok(twoCameras > 0.95, `two cameras: AUC ${twoCameras}`);
  // Without the photo's size: the crop's pixels alone still tell the cameras apart.
  const [pixelsOnly] = await statisticsAuc(a, b, { columns: PIXEL_STATISTICS });
  assert.ok(pixelsOnly > 0.95, `two cameras, pixels only: AUC ${pixelsOnly}`);
  // Same generator: chance, up to the small-sample spread of a cross-validated AUC (averaged over three fold seeds).
  const oneCamera = await statisticsAuc(a, a2, { seeds: [0, 1, 2] });
  const mean = oneCamera.reduce((x, y) => x + y, 0) / oneCamera.length;
  assert.ok(Math.abs(mean - 0.5) < 0.15, `one camera: AUCs ${oneCamera}`);
});

/** Wraps the real network runs, counting the images each sees. */
function countingNetwork(): AuditNetwork & { seen: { predict: number; embed: number } } {
  const seen = { predict: 0, embed: 0 };
  return {
    seen,
    predict: (model, paths, opts) => ((seen.predict += paths.length), predictFiles(model, paths, opts)),
    embed: (model, paths, opts) => ((seen.embed += paths.length), embedFiles(model, paths, opts)),
  };
}

test('auditSources with a tiny model: embedding predictability and per-class AUCs within each source', async () => {
  const dir = await tempDir();
  const datasets = await twoSourceDatasets(dir, { count: 12 });
  await initEngine(); // building the network needs a backend
  await tinyModel(join(dir, 'model'));
  const network = countingNetwork();
  const r = await auditSources({ datasets: [datasets], part: 'all', folds: 3, model: join(dir, 'model'), cache: false, quiet: true, network });
  // Every image through the network once for predictions and once for the embedding.
  assert.deepEqual(network.seen, { predict: 24, embed: 24 });
  assert.deepEqual(
    r.sources.map((s) => [s.name, s.role, s.images, s.groups, s.grouped]),
    [
      ['clinic-a', 'train', 12, 6, true],
      ['clinic-b', 'external', 12, 12, false],
    ],
  );
  assert.ok(r.statistics.predictability.macroAuc! > 0.95);
  assert.ok(r.model);
  assert.equal(r.model.layer, 'gap');
  assert.equal(r.model.dim, 64);
  assert.equal(r.model.embedding.folds, 3);
  assert.ok(r.model.embedding.groupedFolds);
  assert.ok(r.model.embedding.perSource.every((p) => p.auc !== null && p.auc >= 0 && p.auc <= 1));
  const [a, b] = r.model.perSource;
  const cls = (list: typeof a.classes, c: string) => list.find((x) => x.class === c)!;
  const aDr = cls(a.classes, 'diabetic retinopathy');
  assert.deepEqual([aDr.graded, aDr.positives, aDr.skipped], [12, 4, undefined]);
  assert.ok(aDr.auc !== null && aDr.auc >= 0 && aDr.auc <= 1);
  assert.equal(cls(a.classes, 'glaucoma').skipped, 'not graded');
  // a positive for a disease is known not to be normal (src/data/csv.ts), so clinic-b grades `normal` on its 9 positives
  assert.deepEqual([cls(b.classes, 'normal').graded, cls(b.classes, 'normal').skipped], [9, 'no positives']);
  assert.equal(cls(b.classes, 'diabetic retinopathy').positives, 9);
  assert.equal(cls(r.model.pooled, 'diabetic retinopathy').graded, 24);
  // diabetic retinopathy: 4/12 in clinic-a, 9/12 in clinic-b → the source alone predicts it
  const dr = r.confounding.find((c) => c.class === 'diabetic retinopathy')!;
  assert.equal(dr.perSource.length, 2);
  assert.equal(r.confounding.find((c) => c.class === 'glaucoma'), undefined);
  const text = formatAudit(r);
  assert.match(text, /2\. Source from the model's embedding\n {2}model: .*resnet18-w8/);
  assert.match(text, /4\. Each class's ROC AUC within each source/);
  assert.match(r.verdict, /embedding \(gap, 64-d\) predicts the source with macro AUC/);
});

test('bad input: unreadable datasets file, a single source, a source with one image', async () => {
  const dir = await tempDir();
  const datasets = await twoSourceDatasets(dir, { count: 4 });
  const missing = join(dir, 'nope.json');
  await assert.rejects(auditSources({ datasets: [missing], quiet: true }), (e: Error) => e instanceof InputError && e.message.includes(missing));
  const spec = JSON.parse(await readFile(datasets, 'utf8'));
  const one = join(dir, 'one.json');
  await writeFile(one, JSON.stringify({ sources: [spec.sources[1]] }));
  await assert.rejects(auditSources({ datasets: [one], quiet: true }), /one\.json: the audit compares sources, and only source 'clinic-b' has images/);
  await writeFile(join(dir, 'b1.csv'), 'filename,diabetic retinopathy\nb00.jpg,1\n');
  const single = join(dir, 'single.json');
  await writeFile(single, JSON.stringify({ sources: [spec.sources[0], { ...spec.sources[1], csv: 'b1.csv' }] }));
  await assert.rejects(auditSources({ datasets: [single], part: 'all', quiet: true }), /single\.json: source 'clinic-b' has a single image/);
  await assert.rejects(auditSources({ datasets: [datasets, datasets], quiet: true }), /source 'clinic-a' is also in/);
  await assert.rejects(auditSources({ datasets: [datasets], part: 'everything' as 'all', quiet: true }), /unknown part 'everything'/);
  await assert.rejects(auditSources({ datasets: [datasets], folds: 1, quiet: true }), /--folds must be an integer >= 2/);
});

test('fundus audit CLI: text sections, --out JSON, and an InputError exit', async () => {
  const dir = await tempDir();
  const datasets = await twoSourceDatasets(dir, { count: 12 });
  const cli = (...args: string[]) =>
    spawnSync(process.execPath, ['--import', 'tsx', join(PROJECT_ROOT, 'src', 'cli.ts'), 'audit', ...args], { encoding: 'utf8', cwd: PROJECT_ROOT });
  const out = join(dir, 'audit.json');
  const r = cli('--datasets', datasets, '--part', 'all', '--folds', '3', '--no-cache', '--out', out);
  assert.equal(r.status, 0, r.stderr);
  for (const section of [
    /Shortcut audit of 2 sources: part 'all'/,
    /1\. Source from plain image statistics \(no model\)/,
    /macro\s+\d\.\d{3}\s+\d\.\d{3}/,
    /Mean per source/,
    /2\. Source from the model's embedding\n {2}\(no --model: skipped\)/,
    /3\. Each class's share per source/,
    /diabetic retinopathy\s+4\/12 33%\s+9\/12 75%/,
    /4\. Each class's ROC AUC within each source/,
    /Verdict\n {2}The source is predictable from image statistics alone/,
  ]) {
    assert.match(r.stdout, section);
  }
  assert.match(r.stdout, new RegExp(`report: ${out.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
  const report = JSON.parse(await readFile(out, 'utf8')) as AuditReport;
  assert.equal(report.format, 'fundus-audit');
  assert.equal(report.model, null);
  assert.deepEqual(report.statistics.names, [...IMAGE_STATISTICS]);
  assert.equal(report.statistics.bySource.length, IMAGE_STATISTICS.length);
  assert.ok(report.statistics.predictability.macroAuc! > 0.95);
  assert.equal(report.statistics.predictability.folds, 3);

  const bad = cli('--datasets', join(dir, 'missing.json'));
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /fundus: .*missing\.json: cannot read the datasets file/);
});
