import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { PROJECT_ROOT, VIETAI_DIR, tempDir } from '../helpers.js';
import { initEngine } from '../../src/engine/index.js';
import { loadModel } from '../../src/models/io.js';
import { penultimateLayerName } from '../../src/models/embedding.js';
import { DeadlinePassed, stopAtDeadline } from '../../src/selflearn/deadline.js';
import { embedFiles, loadEmbeddings, saveEmbeddings } from '../../src/selflearn/embed.js';
import { InputError } from '../../src/util/errors.js';
import { tinyModel } from './tiny-model.js';
import { stalledPhoto } from '../models/stalled-photo.js';

await initEngine();

const images = (await readdir(join(VIETAI_DIR, 'train'))).sort().slice(0, 5).map((n) => join(VIETAI_DIR, 'train', n));

test('penultimate-layer embeddings: one row per image, deterministic, written as .f32 + .json', async () => {
  const dir = await tempDir();
  await tinyModel(join(dir, 'model'));
  const model = await loadModel(join(dir, 'model'));
  assert.equal(penultimateLayerName(model.network), 'gap');
  const emb = await embedFiles(model, images, { cache: false, batchSize: 2 });
  assert.equal(emb.matrix.rows, 5);
  assert.equal(emb.matrix.cols, 64); // resnet18-w8: 8·8 channels after global average pooling
  assert.equal(emb.layer, 'gap');
  // Same image → same row, whatever its batch.
  const again = await embedFiles(model, [images[3]], { cache: false });
  assert.deepEqual(Array.from(again.matrix.data), Array.from(emb.matrix.data.subarray(3 * 64, 4 * 64)));
  // A different layer, flattened.
  const conv = await embedFiles(model, images.slice(0, 1), { cache: false, layer: 'last_conv' });
  assert.equal(conv.matrix.cols, 1 * 1 * 64);

  const out = await saveEmbeddings(join(dir, 'emb'), emb, join(dir, 'model'));
  assert.equal(out.data, join(dir, 'emb.f32'));
  assert.equal((await readFile(out.data)).byteLength, 5 * 64 * 4);
  const back = await loadEmbeddings(out.data);
  assert.deepEqual(back.names, images.map((p) => p.split('/').pop()));
  assert.deepEqual(Array.from(back.matrix.data), Array.from(emb.matrix.data));

  await assert.rejects(embedFiles(model, images, { layer: 'nope' }), /no layer "nope"/);
  await writeFile(join(dir, 'emb.json'), '{"format":"x"}');
  await assert.rejects(loadEmbeddings(out.data), InputError);
});

test('fundus embed CLI writes the two files and reports the layer', async () => {
  const dir = await tempDir();
  await tinyModel(join(dir, 'model'));
  const r = spawnSync(
    process.execPath,
    ['--import', 'tsx', join(PROJECT_ROOT, 'src', 'cli.ts'), 'embed', join(dir, 'model'), ...images.slice(0, 2), '--out', join(dir, 'e.f32'), '--no-cache'],
    { encoding: 'utf8', cwd: PROJECT_ROOT },
  );
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /2 embeddings of dimension 64 from layer "gap"/);
  const meta = JSON.parse(await readFile(join(dir, 'e.json'), 'utf8'));
  assert.equal(meta.rows, 2);
  const bad = spawnSync(process.execPath, ['--import', 'tsx', join(PROJECT_ROOT, 'src', 'cli.ts'), 'embed', join(dir, 'nomodel'), images[0], '--out', join(dir, 'x')], {
    encoding: 'utf8',
    cwd: PROJECT_ROOT,
  });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /fundus\.json is missing/);
});

test('fundus embed keeps going past a truncated photograph: the good rows written, the bad one listed, exit 3', async () => {
  const dir = await tempDir();
  await tinyModel(join(dir, 'model'));
  const broken = join(dir, 'broken.jpg');
  await writeFile(broken, (await readFile(images[0])).subarray(0, 2000));
  // in process: the rows skip the broken photo and stay in order
  const model = await loadModel(join(dir, 'model'));
  const whole = await embedFiles(model, images.slice(0, 3), { cache: false });
  const emb = await embedFiles(model, [images[0], broken, images[1], images[2]], { cache: false, batchSize: 2, skipUnreadable: true });
  assert.deepEqual(emb.paths, images.slice(0, 3));
  assert.deepEqual(Array.from(emb.matrix.data), Array.from(whole.matrix.data));
  assert.equal(emb.skipped.length, 1);
  assert.equal(emb.skipped[0].path, broken);
  // without skipUnreadable (self-learning, whose rows must line up with its labels) the run still fails
  await assert.rejects(embedFiles(model, [images[0], broken], { cache: false }), /broken\.jpg: cannot decode/);
  await assert.rejects(embedFiles(model, [broken], { cache: false, skipUnreadable: true }), /none of the 1 images could be read \(.*broken\.jpg: cannot decode/);

  const r = spawnSync(
    process.execPath,
    ['--import', 'tsx', join(PROJECT_ROOT, 'src', 'cli.ts'), 'embed', join(dir, 'model'), images[0], broken, images[1], '--out', join(dir, 'e.f32'), '--no-cache'],
    { encoding: 'utf8', cwd: PROJECT_ROOT },
  );
  assert.equal(r.status, 3, r.stderr);
  assert.match(r.stderr, /fundus embed: skipped .*broken\.jpg: cannot decode/);
  assert.match(r.stdout, /2 embeddings of dimension 64 .*1 skipped/);
  const meta = JSON.parse(await readFile(join(dir, 'e.json'), 'utf8'));
  assert.equal(meta.rows, 2);
  assert.deepEqual(meta.paths, [images[0], images[1]]);
  assert.deepEqual(meta.skipped.map((s: { path: string }) => s.path), [broken]);
  assert.equal((await readFile(join(dir, 'e.f32'))).byteLength, 2 * 64 * 4);
});

test('a deadline stops embedding without waiting for the batch being decoded', { timeout: 60_000 }, async () => {
  const dir = await tempDir();
  await tinyModel(join(dir, 'model'));
  const model = await loadModel(join(dir, 'model'));
  // The first batch never finishes reading: the deadline, 300 ms away, is what ends the pass.
  const stalled = stalledPhoto(dir);
  try {
    const started = Date.now();
    const stop = stopAtDeadline(Date.now() + 300, 3, 'embedded');
    await assert.rejects(embedFiles(model, [images[0], stalled.path, images[1]], { cache: false, batchSize: 2, ...stop }), (err: unknown) => {
      assert.ok(err instanceof DeadlinePassed);
      assert.match(err.message, /^the run's deadline passed with 0 of 3 photographs embedded$/);
      return true;
    });
    assert.ok(Date.now() - started < 10_000, `stopped after ${Date.now() - started} ms`);
  } finally {
    await stalled.release();
  }
});

test('stopAtDeadline: aborts with how far the pass got, at once when the deadline has passed, never a finished pass', (t) => {
  // The clock and timers move only when told.
  t.mock.timers.enable({ apis: ['Date', 'setTimeout'], now: 0 });
  const stop = stopAtDeadline(1000, 5, 'embedded');
  stop.onProgress(2);
  t.mock.timers.tick(999);
  assert.equal(stop.signal!.aborted, false);
  t.mock.timers.tick(1);
  assert.ok(stop.signal!.reason instanceof DeadlinePassed);
  assert.deepEqual([stop.signal!.reason.done, stop.signal!.reason.total], [2, 5]);
  // Already past: the pass does not start.
  assert.throws(() => stopAtDeadline(1000, 5, 'embedded'), /with 0 of 5 photographs embedded/);
  // A pass that has done every photograph is not stopped afterwards.
  const finished = stopAtDeadline(1500, 5, 'scored');
  finished.onProgress(5);
  t.mock.timers.tick(1000);
  assert.equal(finished.signal!.aborted, false);
  // A deadline beyond setTimeout's longest delay (about 24.8 days) comes neither early nor never.
  const month = 30 * 86_400_000;
  const far = stopAtDeadline(Date.now() + month, 5, 'embedded');
  t.mock.timers.tick(2 ** 31);
  assert.equal(far.signal!.aborted, false);
  t.mock.timers.tick(month - 2 ** 31);
  assert.equal(far.signal!.aborted, true);
  // No deadline: nothing to stop.
  assert.equal(stopAtDeadline(undefined, 5, 'embedded').signal, undefined);
});
