// Heatmaps from the queue's workers, with real parts as queue.test.ts: Debian's redis-server, two worker processes of
// the real CLI, a small real model, photographs written here. A batch scored without heatmaps takes them on when a
// submit asks for them: every photograph's overlays land once, under names of its content hash, and the results
// name them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import sharp from 'sharp';
import type { Redis } from 'ioredis';
import { PROJECT_ROOT, tempDir } from '../helpers.js';
import { writeFakeFundus } from '../data/fixtures.js';
import { tinyModel } from '../explain/tiny-model.js';
import { parseHeaderLine } from '../../src/serve/output.js';
import type { PhotoRecord } from '../../src/models/records.js';
import { connectRedis, redisTarget } from '../../src/queue/connection.js';
import { batchKeys } from '../../src/queue/batch.js';
import { DEFAULT_CAM_METHOD, type CamMethod } from '../../src/explain/cam.js';
import { submitPhotos } from '../../src/queue/submit.js';
import { openQueue } from '../../src/queue/jobs.js';
import { batchStatus, isFinished } from '../../src/queue/status.js';
import { RedisServer, redisServerAvailable } from './redis-server.js';

const QUEUE = 'fundus';
const EXPLAINED = ['glaucoma', 'normal'];

let server: RedisServer;
let redis: Redis;
let work: string;
let model: string;
let photos: string[];
let broken: string;
let blank: string;
const workers: { proc: ChildProcess; log: () => string; exited: Promise<number | null> }[] = [];

function fundus(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [join(PROJECT_ROOT, 'bin', 'fundus.js'), ...args], {
      cwd: work,
      env: { ...process.env, FUNDUS_NO_PROGRESS: '1', FUNDUS_REDIS_URL: server.url },
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

function startWorker(): void {
  const proc = spawn(process.execPath, [join(PROJECT_ROOT, 'bin', 'fundus.js'), 'worker', '-m', model, '--batch-size', '2'], {
    cwd: work,
    env: { ...process.env, FUNDUS_REDIS_URL: server.url },
  });
  let log = '';
  proc.stdout!.on('data', (d) => (log += d));
  proc.stderr!.on('data', (d) => (log += d));
  workers.push({ proc, log: () => log, exited: new Promise((resolve) => proc.on('exit', (code) => resolve(code))) });
}

async function finished(timeoutMs = 60_000): Promise<void> {
  const q = await openQueue(redisTarget(server.url), QUEUE);
  try {
    const end = Date.now() + timeoutMs;
    while (!isFinished(await batchStatus(redis, q, QUEUE, 'test'))) {
      if (Date.now() > end) throw new Error(`timed out waiting for the batch; the workers' logs:\n${workers.map((w) => w.log()).join('\n')}`);
      await sleep(100);
    }
  } finally {
    await q.close();
  }
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** The overlays a photograph must have: `<name>.<hash8>.<class>.<method>.png` (the CLI's default method). */
async function expectedOverlays(photo: string, dir: string): Promise<Record<string, string>> {
  const hash8 = sha256(await readFile(photo)).slice(0, 8);
  return Object.fromEntries(EXPLAINED.map((c) => [c, join(dir, `${basename(photo, '.jpg')}.${hash8}.${c}.${DEFAULT_CAM_METHOD}.png`)]));
}

before(async () => {
  assert.ok(redisServerAvailable(), 'redis-server is not installed (scripts/setup.sh installs it: apt-get install redis-server)');
  server = await RedisServer.start({ password: 'heat' });
  redis = await connectRedis(redisTarget(server.url));
  work = await tempDir('fundus-queue-heatmaps-');
  model = join(work, 'model');
  await tinyModel(model);
  photos = [];
  // Two photographs of the same name in two folders: their overlays must not collide.
  for (const [i, rel] of ['a/x.jpg', 'b/x.jpg', 'a/eye-1.jpg', 'b/eye-2.jpg', 'b/eye-3.jpg'].entries()) {
    const p = join(work, 'photos', rel);
    await mkdir(join(p, '..'), { recursive: true });
    await writeFakeFundus(p, 120, 96, 40 + i);
    photos.push(p);
  }
  broken = join(work, 'photos', 'a', 'broken.jpg');
  await writeFile(broken, (await readFile(photos[0])).subarray(0, 300));
  blank = join(work, 'photos', 'a', 'blank.jpg');
  await sharp({ create: { width: 96, height: 96, channels: 3, background: { r: 128, g: 128, b: 128 } } }).jpeg().toFile(blank);
});

after(async () => {
  for (const w of workers) if (w.proc.exitCode === null && w.proc.signalCode === null) w.proc.kill('SIGTERM');
  await Promise.all(workers.map((w) => w.exited));
  redis?.disconnect();
  await server?.stop();
});

test('submit refuses a --heatmaps folder fundus did not write heatmaps into, or one inside the model folder, with exit 2', async () => {
  const album = join(work, 'album');
  await mkdir(album);
  await writeFile(join(album, 'holiday.png'), 'a picture');
  const r = await fundus(['queue', 'submit', '-m', model, 'photos', '--heatmaps', album]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /album: --heatmaps is a folder fundus did not write heatmaps into \(no fundus-heatmaps\.jsonl; it holds holiday\.png\)/);
  const q = await openQueue(redisTarget(server.url), QUEUE);
  try {
    const submit = (dir: string, classes: string[] = EXPLAINED) =>
      submitPhotos({ redis, queue: q, queueName: QUEUE, modelDir: model, inputs: [join(work, 'photos')], chunk: 2, retry: { attempts: 2, backoffMs: 200 }, heatmaps: { dir, choice: { method: 'gradcam', classes } } });
    await assert.rejects(submit(join(model, 'maps')), /--heatmaps lies inside the model folder/);
    await assert.rejects(submit(join(work, 'maps'), ['no-such-class']), /--heatmap-classes: unknown class "no-such-class"/);
  } finally {
    await q.close();
  }
  assert.equal(await redis.exists(batchKeys(QUEUE).meta), 0, 'nothing bound, nothing enqueued');
  assert.deepEqual(await readdir(album), ['holiday.png']);
  await assert.rejects(stat(join(model, 'maps')), 'no folder made in the model');
});

test('a batch scored without heatmaps takes them on: two workers write each overlay once, under stable names, and the results name them', async (t) => {
  const maps = join(work, 'maps');
  // Scoring only, the bytes through Redis; no worker is running yet, so the chunks still wait ...
  const plain = await fundus(['queue', 'submit', '-m', model, 'photos', '--chunk', '2', '--bytes', '--attempts', '2', '--backoff', '200']);
  assert.equal(plain.code, 0, plain.stderr);
  assert.match(plain.stderr, /enqueued 7 photographs in 4 chunks/);
  // ... when the same folder is submitted again with heatmaps: not "nothing to do", but every photograph again, for them.
  const withMaps = await fundus(['queue', 'submit', '-m', model, 'photos', '--chunk', '2', '--attempts', '2', '--backoff', '200', '--heatmaps', maps, '--heatmap-classes', EXPLAINED.join(',')]);
  assert.equal(withMaps.code, 0, withMaps.stderr);
  assert.match(withMaps.stderr, /enqueued 7 photographs in 4 chunks on queue "fundus"; 7 of them already in the batch without heatmaps, for their heatmaps/);
  // Another choice of heatmaps, or none, is refused while the batch makes these.
  const q = await openQueue(redisTarget(server.url), QUEUE);
  t.after(() => q.close());
  const submit = (heatmaps?: { dir: string; choice: { method: CamMethod; classes: string[] } }) =>
    submitPhotos({ redis, queue: q, queueName: QUEUE, modelDir: model, inputs: [join(work, 'photos')], chunk: 2, retry: { attempts: 2, backoffMs: 200 }, heatmaps });
  const same = { dir: maps, choice: { method: DEFAULT_CAM_METHOD, classes: EXPLAINED } };
  const refused = /holds a batch that makes heatmaps \(--heatmaps .*maps --heatmap-method layercam --heatmap-classes glaucoma,normal\); submit with these same options/;
  await assert.rejects(submit({ ...same, choice: { ...same.choice, method: 'gradcam++' } }), refused);
  await assert.rejects(submit(), refused);

  // Both workers are up before the first chunk is taken, so that both write into the folder.
  await q.pause();
  startWorker();
  startWorker();
  const end = Date.now() + 60_000;
  while ((await q.getWorkersCount()) < 2 && Date.now() < end) await sleep(100);
  await q.resume();
  await finished();
  const logs = workers.map((w) => w.log()).join('\n');
  assert.match(logs, /chunk chunk-\w+: \d+ scored, \d+ heatmaps/, logs);
  for (const w of workers) assert.match(w.log(), /chunk chunk-\w+: \d+ scored/, 'each worker scored chunks');

  // Each gradable photograph's overlays once, of the photograph's size; none of the blank or broken one; no temporaries.
  const pngs = (await readdir(maps)).filter((f) => f !== 'fundus-heatmaps.jsonl').sort();
  const expected = await Promise.all(photos.map((p) => expectedOverlays(p, maps)));
  assert.deepEqual(pngs, expected.flatMap((e) => Object.values(e).map((f) => basename(f))).sort(), logs);
  for (const f of pngs) {
    const meta = await sharp(join(maps, f)).metadata();
    assert.deepEqual([meta.format, meta.width, meta.height], ['png', 120, 96], f);
  }

  // The results name them, as `fundus predict --heatmaps` records do; the broken photograph is failed with its reason.
  const res = await fundus(['queue', 'results', '--out', 'results.jsonl']);
  assert.equal(res.code, 3, res.stderr);
  assert.match(res.stderr, /failed .*photos\/a\/broken\.jpg: /);
  assert.match(res.stderr, /6 photographs → results\.jsonl \(1 ungradable\); 1 failed$/m);
  const lines = (await readFile(join(work, 'results.jsonl'), 'utf8')).trim().split('\n');
  assert.equal(parseHeaderLine(lines[0])?.format, 'fundus-predictions');
  const records = new Map(lines.slice(1).map((l) => JSON.parse(l) as PhotoRecord).map((r) => [r.file, r]));
  for (const [i, p] of photos.entries()) assert.deepEqual((records.get(p) as { heatmaps?: unknown }).heatmaps, expected[i], p);
  assert.equal((records.get(blank) as { heatmaps?: unknown }).heatmaps, undefined);
  // Only the failed photograph keeps its bytes: the scoring-only chunks left them to the chunks that made the heatmaps.
  assert.equal(Number(await redis.get(batchKeys(QUEUE).bytesTotal)), 300);

  // A photograph whose overlay went missing (its record naming none) is enqueued again: it gets the same names, and
  // no other photograph's overlays are written again.
  const before = new Map(await Promise.all(pngs.map(async (f) => [f, (await stat(join(maps, f))).mtimeMs] as const)));
  const keys = batchKeys(QUEUE);
  const id = sha256(await readFile(photos[1]));
  const rec = JSON.parse((await redis.hget(keys.results, id))!) as PhotoRecord & { heatmaps?: unknown };
  delete rec.heatmaps;
  await redis.hset(keys.results, id, JSON.stringify(rec));
  await rm(expected[1].glaucoma);
  const again = await submit(same);
  assert.deepEqual([again.enqueued, again.forHeatmaps, again.known], [1, 1, 6]);
  await finished();
  assert.deepEqual((await readdir(maps)).filter((f) => f !== 'fundus-heatmaps.jsonl').sort(), pngs);
  for (const f of pngs) {
    if (f.startsWith(basename(expected[1].glaucoma).split('.').slice(0, 2).join('.') + '.')) continue;
    assert.equal((await stat(join(maps, f))).mtimeMs, before.get(f), `${f} was not written again`);
  }
  assert.deepEqual((JSON.parse((await redis.hget(keys.results, id))!) as { heatmaps?: unknown }).heatmaps, expected[1]);
  assert.equal(Number(await redis.get(keys.bytesTotal)), 300, 'the bytes stored again for the heatmaps are dropped once they are made');

  // Everything done: the same submit once more has nothing to do.
  const nothing = await submit(same);
  assert.deepEqual([nothing.enqueued, nothing.known], [0, 7]);
});
