// `predict --out`, `--resume` and `--heatmaps` never overwrite what fundus did not write, never mix two models' rows,
// keep a second writer off the same file, and give two photos with the same name their own heatmaps (#20).
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFile, cp, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { loadModel, type FundusModel } from '../../src/models/io.js';
import { initBatchPrediction } from '../../src/models/predictor.js';
import { runPredict, type PredictRunOptions } from '../../src/serve/predict-cli.js';
import { csvHeader } from '../../src/serve/output.js';
import { InputError } from '../../src/util/errors.js';
import { CLASSES } from '../../src/data/labels.js';
import { PROJECT_ROOT, tempDir } from '../helpers.js';
import { buildFixtureModel, realImages } from './fixture.js';

let modelDir: string;
let model: FundusModel;
let photos: string[];

before(async () => {
  modelDir = await buildFixtureModel();
  await initBatchPrediction();
  model = await loadModel(modelDir);
  photos = realImages(4);
});

function run(opts: Partial<PredictRunOptions>) {
  return runPredict({ model, images: [photos[0], photos[1]], format: 'csv', quiet: true, ...opts });
}

const refused = (re: RegExp) => (err: unknown) => {
  assert.ok(err instanceof InputError, String((err as Error).stack));
  assert.match(err.message, re);
  return true;
};

const sha256 = async (p: string) => createHash('sha256').update(await readFile(p)).digest('hex');

/** The first line of a predictions file: `# {json}` in CSV, `{json}` in JSON Lines (read here without fundus's own parser). */
function header(line: string): { format: string; version: number; model: { dir: string; fundusJsonSha256: string }; classes: string[] } | undefined {
  try {
    const h = JSON.parse(line.startsWith('# ') ? line.slice(2) : line);
    return h?.format === 'fundus-predictions' ? h : undefined;
  } catch {
    return undefined;
  }
}

const HEATMAPS_INDEX = 'fundus-heatmaps.jsonl';

test('predict --out refuses a photograph, a file in a model folder, a folder and a file fundus did not write, and leaves them as they were', async () => {
  const dir = await tempDir();
  const photo = join(dir, 'in.jpg');
  await copyFile(photos[0], photo);
  const photoSha = await sha256(photo);
  await assert.rejects(run({ images: [photo], out: photo, format: 'json' }), refused(/in\.jpg: --out names a picture/));
  assert.equal(await sha256(photo), photoSha);

  const weights = join(modelDir, 'weights.bin');
  const weightsSha = await sha256(weights);
  await assert.rejects(run({ out: weights }), refused(/weights\.bin: --out lies inside the model folder/));
  await assert.rejects(run({ out: join(modelDir, 'predictions.csv') }), refused(/--out lies inside the model folder/));
  assert.equal(await sha256(weights), weightsSha);
  assert.deepEqual((await readdir(modelDir)).sort(), ['fundus.json', 'model.json', 'weights.bin']);

  await assert.rejects(run({ out: dir }), refused(/--out is a folder; give the predictions file a name/));

  const notes = join(dir, 'notes.csv');
  await writeFile(notes, 'patient,visit\nA,1\n');
  await assert.rejects(run({ out: notes }), refused(/notes\.csv: refusing to overwrite or resume a file fundus did not write/));
  assert.equal(await readFile(notes, 'utf8'), 'patient,visit\nA,1\n');
  await writeFile(`${join(dir, 'p.csv')}.partial`, 'someone else\'s\n');
  await assert.rejects(run({ out: join(dir, 'p.csv') }), refused(/p\.csv\.partial: refusing to overwrite/));
  assert.deepEqual((await readdir(dir)).sort(), ['in.jpg', 'notes.csv', 'p.csv.partial'], 'no lock or partial file left behind');
});

test('fundus predict --out <folder> fails at once with exit 2, before any image is read', async () => {
  const folder = await tempDir();
  const r = spawnSync(process.execPath, [join(PROJECT_ROOT, 'bin', 'fundus.js'), 'predict', modelDir, photos[0], '--out', folder], {
    encoding: 'utf8',
    env: { ...process.env, FUNDUS_NO_PROGRESS: '1' },
  });
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /^fundus: .*: --out is a folder; give the predictions file a name/m);
  assert.deepEqual(await readdir(folder), []);
});

test('predictions files record the model; --resume with another model or on a file without the header is refused', async () => {
  const dir = await tempDir();
  const out = join(dir, 'preds.csv');
  await run({ out });
  const text = await readFile(out, 'utf8');
  const [first, second] = text.split('\n');
  const h = header(first);
  assert.ok(first.startsWith('# {"format":"fundus-predictions"') && h, first);
  assert.deepEqual(h.model, { dir: modelDir, fundusJsonSha256: await sha256(join(modelDir, 'fundus.json')) });
  assert.deepEqual(h.classes, [...CLASSES]);
  assert.equal(second + '\n', csvHeader(CLASSES));

  // Another model: same classes, other thresholds.
  const otherDir = join(dir, 'other-model');
  await cp(modelDir, otherDir, { recursive: true });
  const meta = JSON.parse(await readFile(join(otherDir, 'fundus.json'), 'utf8'));
  await writeFile(join(otherDir, 'fundus.json'), JSON.stringify({ ...meta, thresholds: meta.thresholds.map(() => 0.3) }));
  const other = await loadModel(otherDir);
  await assert.rejects(
    run({ model: other, images: [photos[0], photos[1], photos[2]], out, resume: true }),
    refused(/preds\.csv: cannot resume: another model wrote these predictions \(.*model, fundus\.json sha256 [0-9a-f]{12}\.\.\.\), not .*other-model/),
  );
  assert.equal(await readFile(out, 'utf8'), text, 'untouched');
  // The same model resumes; a fresh run (no --resume) replaces its own earlier output.
  const resumed = await run({ images: [photos[0], photos[1], photos[2]], out, resume: true });
  assert.deepEqual([resumed.skipped, resumed.predicted], [2, 1]);
  const fresh = await run({ model: other, images: [photos[3]], out });
  assert.equal(fresh.predicted, 1);
  const lines = (await readFile(out, 'utf8')).trim().split('\n');
  assert.equal(header(lines[0])?.model.dir, otherDir);
  assert.equal(lines.length, 3);

  // JSON Lines: the header is a line of its own; a file written before headers existed is not resumed.
  const jsonl = join(dir, 'preds.jsonl');
  await run({ out: jsonl, format: 'json' });
  const j = (await readFile(jsonl, 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(j[0].format, 'fundus-predictions');
  assert.deepEqual(j.slice(1).map((r: { file: string }) => r.file), [photos[0], photos[1]]);
  const legacy = join(dir, 'legacy.jsonl');
  await writeFile(legacy, JSON.stringify({ file: photos[0], probabilities: {}, decisions: {}, positive: [] }) + '\n');
  await assert.rejects(run({ out: legacy, format: 'json', resume: true }), refused(/legacy\.jsonl: refusing to overwrite or resume a file fundus did not write/));
});

test('two runs into the same --out: the second is refused while the first runs; a stale lock is taken over', async () => {
  const dir = await tempDir();
  const out = join(dir, 'same.csv');
  const images = [...photos, ...photos]; // eight files, each photo under two names
  const inputs: string[] = [];
  for (let i = 0; i < 8; i++) {
    const p = join(dir, `p${i}.jpg`);
    await copyFile(images[i], p);
    inputs.push(p);
  }
  const first = run({ images: inputs, out, resume: true, batchSize: 1 });
  // Wait (bounded) until the first has taken the lock, then start the second.
  for (let i = 0; i < 400; i++) {
    if (await stat(`${out}.lock`).then(() => true, () => false)) break;
    await new Promise((r) => setTimeout(r, 5));
  }
  const second = run({ images: inputs, out, resume: true, batchSize: 1 });
  const [a, b] = await Promise.allSettled([first, second]);
  assert.equal(a.status, 'fulfilled', a.status === 'rejected' ? String(a.reason?.stack) : '');
  assert.equal(b.status, 'rejected');
  refused(new RegExp(`same\\.csv\\.lock: another fundus predict \\(pid ${process.pid}, since .*\\) is writing this output`))((b as PromiseRejectedResult).reason);
  const rows = (await readFile(out, 'utf8')).trim().split('\n').slice(2).map((l) => l.split(',')[0]);
  assert.deepEqual(rows.sort(), [...inputs].sort(), 'each photo once');
  assert.deepEqual((await readdir(dir)).filter((f) => f.startsWith('same')), ['same.csv'], 'lock released');

  // A lock left by a process that is gone is taken over.
  const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
  await writeFile(`${out}.lock`, JSON.stringify({ format: 'fundus-lock', command: 'predict', pid: dead, host: hostname(), since: new Date().toISOString(), token: 'dead' }));
  const r = await run({ images: inputs, out, resume: true });
  assert.equal(r.skipped, 8);
  assert.deepEqual((await readdir(dir)).filter((f) => f.startsWith('same')), ['same.csv']);
  // A file in the lock's place that is not a fundus lock is not deleted.
  await writeFile(`${out}.lock`, 'mine');
  await assert.rejects(run({ images: inputs, out, resume: true }), refused(/same\.csv\.lock: exists and is not a fundus lock file/));
  assert.equal(await readFile(`${out}.lock`, 'utf8'), 'mine');
});

test('--heatmaps: photos with the same name get their own overlays, under the same names on every run; a folder of photos is refused', async () => {
  const dir = await tempDir();
  const d = (n: string) => join(dir, n, 'x.jpg');
  for (const [n, p] of [['d1', photos[0]], ['d2', photos[1]], ['d0', photos[2]]] as const) {
    await mkdir(join(dir, n));
    await copyFile(p, d(n));
  }
  const maps = join(dir, 'maps');
  const out = join(dir, 'p.csv');
  const opts = { out, heatmaps: maps, heatmapClasses: ['glaucoma'] };
  const r = await run({ ...opts, images: [d('d1'), d('d2')] });
  assert.equal(r.heatmaps, 2);
  const pngs = async () => (await readdir(maps)).filter((f) => f.endsWith('.png')).sort();
  assert.deepEqual(await pngs(), ['x-2.glaucoma.layercam.png', 'x.glaucoma.layercam.png']);
  const index = async () => (await readFile(join(maps, HEATMAPS_INDEX), 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual((await index()).slice(1), [{ image: d('d1'), stem: 'x' }, { image: d('d2'), stem: 'x-2' }]);
  const overlaySha = await sha256(join(maps, 'x.glaucoma.layercam.png'));
  // A resumed run with a third x.jpg (sorting first): the new one gets a new name, the others keep theirs.
  const again = await run({ ...opts, images: [d('d0'), d('d1'), d('d2')], resume: true });
  assert.deepEqual([again.predicted, again.heatmaps], [1, 1]);
  assert.deepEqual(await pngs(), ['x-2.glaucoma.layercam.png', 'x-3.glaucoma.layercam.png', 'x.glaucoma.layercam.png']);
  assert.equal(await sha256(join(maps, 'x.glaucoma.layercam.png')), overlaySha, "d1/x.jpg's overlay is still d1's");
  assert.deepEqual((await index()).slice(1).map((e) => e.stem), ['x', 'x-2', 'x-3']);
  assert.ok(!(await readdir(maps)).some((f) => f.includes('.lock')), 'lock released');

  // A folder fundus did not write heatmaps into.
  const album = join(dir, 'album');
  await mkdir(album);
  await writeFile(join(album, 'x.glaucoma.layercam.png'), 'a drawing');
  await assert.rejects(run({ heatmaps: album, images: [d('d1')] }), refused(/album: --heatmaps is a folder fundus did not write heatmaps into/));
  assert.deepEqual(await readdir(album), ['x.glaucoma.layercam.png']);
  await assert.rejects(run({ heatmaps: dir, images: [d('d1')] }), refused(/--heatmaps is a folder fundus did not write heatmaps into/));
});
