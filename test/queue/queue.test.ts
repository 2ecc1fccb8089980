// Distributed scoring end to end with real parts: Debian's redis-server, worker processes of the real CLI, a small
// real model, photographs written here. Stall detection is shortened (--lock-duration, --stalled-interval) so that a
// killed worker's chunk comes back within a couple of seconds.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFile, mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { QueueEvents } from 'bullmq';
import sharp from 'sharp';
import type { Redis } from 'ioredis';
import { PROJECT_ROOT, tempDir } from '../helpers.js';
import { CLASSES } from '../../src/data/labels.js';
import { writeFakeFundus } from '../data/fixtures.js';
import { tinyModel } from '../explain/tiny-model.js';
import { initEngine } from '../../src/engine/index.js';
import { parseHeaderLine } from '../../src/serve/output.js';
import { connectRedis, redactUrl, redisOptions, redisTarget } from '../../src/queue/connection.js';
import { batchKeys, BULL_PREFIX } from '../../src/queue/batch.js';
import { modelIdentityOfDir, submitPhotos } from '../../src/queue/submit.js';
import { writeResults } from '../../src/queue/results.js';
import { runWorker, DEFAULT_STALL } from '../../src/queue/worker.js';
import { loadModel } from '../../src/models/io.js';
import { runPredict } from '../../src/serve/predict-cli.js';
import { openQueue } from '../../src/queue/jobs.js';
import { batchStatus, isFinished, type BatchStatus } from '../../src/queue/status.js';
import { RedisServer, redisServerAvailable } from './redis-server.js';

const PASSWORD = 's3cret pass/word';
const STALL = ['--lock-duration', '1500', '--stalled-interval', '500'];
const QUEUE = 'fundus';

let server: RedisServer;
let redis: Redis;
let work: string;
let model: string;
let photos: string[];
let more: string[];
let broken: string;
let blank: string;
/** The worker processes of the first test; the second goes on with the two that survive it. */
let workers: WorkerProc[] = [];
const outputs: string[] = [];

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI without blocking the test's event loop (it listens to queue events meanwhile). */
function fundus(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [join(PROJECT_ROOT, 'bin', 'fundus.js'), ...args], {
      cwd: work,
      env: { ...process.env, FUNDUS_NO_PROGRESS: '1', FUNDUS_REDIS_URL: server.url, ...env },
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (code) => {
      outputs.push(stdout, stderr);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

interface WorkerProc {
  proc: ChildProcess;
  name: string;
  log(): string;
  exited: Promise<number | null>;
}

function startWorker(args: string[]): WorkerProc {
  const proc = spawn(process.execPath, [join(PROJECT_ROOT, 'bin', 'fundus.js'), 'worker', ...args], {
    cwd: work,
    env: { ...process.env, FUNDUS_REDIS_URL: server.url },
  });
  let log = '';
  proc.stdout!.on('data', (d) => (log += d));
  proc.stderr!.on('data', (d) => (log += d));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  void exited.then(() => outputs.push(log));
  return { proc, name: '', log: () => log, exited };
}

async function until<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs: number, everyMs = 100): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

async function status(): Promise<BatchStatus> {
  const q = await openQueue(redisTarget(server.url), QUEUE);
  try {
    return await batchStatus(redis, q, QUEUE, 'test');
  } finally {
    await q.close();
  }
}

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/** The rows of a predictions CSV after its header line and column names: file → row. */
function csvRows(text: string): string[][] {
  return text.trim().split('\n').slice(2).map((l) => l.split(','));
}

before(async () => {
  assert.ok(redisServerAvailable(), 'redis-server is not installed (scripts/setup.sh installs it: apt-get install redis-server)');
  server = await RedisServer.start({ password: PASSWORD });
  redis = await connectRedis(redisTarget(server.url));
  work = await tempDir('fundus-queue-');
  await initEngine();
  model = join(work, 'model');
  await tinyModel(model);
  photos = [];
  for (const sub of ['a', 'b', 'b/c']) await mkdir(join(work, 'photos', sub), { recursive: true });
  for (let i = 0; i < 240; i++) {
    const p = join(work, 'photos', ['a', 'b', 'b/c'][i % 3], `eye-${String(i).padStart(3, '0')}.jpg`);
    await writeFakeFundus(p, 96, 96, i + 1);
    photos.push(p);
  }
  broken = join(work, 'photos', 'a', 'broken.jpg');
  await writeFile(broken, (await readFile(photos[0])).subarray(0, 300));
  // Not a fundus photograph: the gradability gate turns it away with its reasons, as `fundus predict` does.
  blank = join(work, 'photos', 'a', 'blank.jpg');
  await sharp({ create: { width: 96, height: 96, channels: 3, background: { r: 128, g: 128, b: 128 } } }).jpeg().toFile(blank);
  // The same bytes under a second name: one photograph, scored once.
  await copyFile(photos[5], join(work, 'photos', 'b', 'copy-of-eye-005.jpg'));
  // More work for the second test, so that a restart and a shutdown fall in the middle of the run.
  await mkdir(join(work, 'more'));
  more = [];
  for (let i = 0; i < 240; i++) {
    const p = join(work, 'more', `eye-${String(i).padStart(3, '0')}.jpg`);
    await writeFakeFundus(p, 96, 96, 1000 + i);
    more.push(p);
  }
});

after(async () => {
  for (const w of workers) if (w.proc.exitCode === null && w.proc.signalCode === null) w.proc.kill('SIGKILL');
  await Promise.all(workers.map((w) => w.exited));
  redis?.disconnect();
  await server?.stop();
  // No output of any command or worker may show the password.
  for (const o of outputs) assert.ok(!o.includes(PASSWORD) && !o.includes(encodeURIComponent(PASSWORD)), `a secret leaked into output:\n${o}`);
});

test('URLs are shown without their password; bad URLs are refused without echoing them', () => {
  assert.equal(redactUrl('redis://:hunter2@host:6379/0'), 'redis://:***@host:6379/0');
  assert.equal(redactUrl('rediss://user:hunter2@host'), 'rediss://user:***@host');
  assert.equal(redactUrl('redis://host:6379'), 'redis://host:6379');
  assert.throws(() => redisTarget('http://:hunter2@host'), (e: Error) => /redis:\/\/ or rediss:\/\//.test(e.message) && !e.message.includes('hunter2'));
  assert.throws(() => redisTarget('not a url hunter2'), (e: Error) => /not a URL/.test(e.message) && !e.message.includes('hunter2'));
  assert.throws(() => redisTarget('redis://h', '/ca.pem'), /--redis-ca is for TLS/);
});

test('three workers, one killed mid-chunk: every photograph once in the results, the corrupt one failed with its reason', async () => {
  workers = [startWorker(['--model', model, '--redis', server.url, '--batch-size', '2', ...STALL]), startWorker(['-m', model, '--batch-size', '2', ...STALL]), startWorker(['-m', model, '--batch-size', '2', ...STALL])];
  const q = await openQueue(redisTarget(server.url), QUEUE);
  const events = new QueueEvents(QUEUE, { connection: { url: server.url, ...(await redisOptions(redisTarget(server.url))) }, prefix: BULL_PREFIX });
  try {
    await until('three workers', async () => (await q.getWorkersCount()) === 3, 60_000);
    // Kill whichever worker first reports progress early in a chunk: it dies with the chunk half scored.
    let killedJob: string | undefined;
    events.on('progress', ({ jobId, data }) => {
      const p = data as { done: number; total: number; worker: string };
      if (killedJob || p.done > p.total / 2) return;
      const victim = workers.find((w) => p.worker.endsWith(`:${w.proc.pid}`));
      if (!victim) return;
      killedJob = jobId;
      victim.proc.kill('SIGKILL');
    });
    await events.waitUntilReady();
    const sub = await fundus(['queue', 'submit', '-m', model, 'photos', '--chunk', '32', '--attempts', '2', '--backoff', '200']);
    assert.equal(sub.code, 0, sub.stderr);
    assert.match(sub.stderr, /enqueued 242 photographs in 8 chunks on queue "fundus"; 1 already in the batch/);
    const done = await until('the batch to finish', async () => {
      const s = await status();
      return isFinished(s) && s;
    }, 60_000);
    assert.ok(killedJob, 'a worker was killed mid-chunk');
    assert.deepEqual(done.photographs, { total: 242, done: 241, ungradable: 1, failed: 1, active: 0, waiting: 0 });
    // The killed worker's chunk was finished by another, which found the photographs scored before the kill.
    const survivors = workers.filter((w) => w.proc.signalCode !== 'SIGKILL').map((w) => w.log()).join('');
    assert.match(survivors, new RegExp(`chunk ${killedJob}: \\d+ scored(, \\d+ unreadable)?, \\d+ already scored`), survivors);

    const res = await fundus(['queue', 'results', '--out', 'results.csv']);
    assert.equal(res.code, 3, res.stderr);
    assert.match(res.stderr, /failed .*photos\/a\/broken\.jpg: .*(JPEG|decode|truncated|premature|corrupt)/i);
    assert.match(res.stderr, /241 photographs → results\.csv \(1 ungradable\); 1 failed/);
    const text = await readFile(join(work, 'results.csv'), 'utf8');
    const header = parseHeaderLine(text.split('\n')[0]);
    assert.deepEqual(header?.model, (await modelIdentityOfDir(model)).identity, 'the header of `fundus predict`, naming the model');
    const rows = csvRows(text);
    const files = rows.map((r) => r[0]);
    assert.equal(files.length, 241);
    assert.deepEqual([...new Set(files)].sort(), [...photos, blank].sort(), 'every photograph exactly once');
    const blankRow = rows.find((r) => r[0] === blank)!;
    assert.equal(blankRow.at(-2), 'false', 'the blank frame is reported ungradable');
    assert.ok(blankRow.at(-1), 'with its reasons');

    // The same rows as `fundus predict` on the same photographs (same predictor, same format).
    const loaded = await loadModel(model);
    await runPredict({ model: loaded, images: photos.slice(0, 6), format: 'csv', out: join(work, 'predict.csv'), quiet: true });
    // The same columns; probabilities from batches of another size may differ in the last printed digit (the
    // engine's kernels), never more; every other cell is the same.
    const predicted = await readFile(join(work, 'predict.csv'), 'utf8');
    const columns = predicted.split('\n')[1].split(',');
    assert.equal(text.split('\n')[1], predicted.split('\n')[1]);
    const byFile = new Map(csvRows(text).map((r) => [r[0], r]));
    for (const row of csvRows(predicted)) {
      const mine = byFile.get(row[0]);
      assert.ok(mine, row[0]);
      columns.forEach((c, i) => {
        if ((CLASSES as readonly string[]).includes(c)) assert.ok(Math.abs(Number(row[i]) - Number(mine[i])) <= 2e-6, `${c}: ${row.join(',')} vs ${mine.join(',')}`);
        else assert.equal(mine[i], row[i], c);
      });
    }

    // Submitting again scores nothing again.
    const scored = Number(await redis.hget(batchKeys(QUEUE).stats, 'scored'));
    const again = await submitPhotos({ redis, queue: q, queueName: QUEUE, modelDir: model, inputs: [join(work, 'photos')], chunk: 32, retry: { attempts: 1, backoffMs: 100 } });
    assert.deepEqual({ enqueued: again.enqueued, chunks: again.chunks, known: again.known }, { enqueued: 0, chunks: 0, known: 243 });
    await sleep(300);
    assert.equal(Number(await redis.hget(batchKeys(QUEUE).stats, 'scored')), scored);
    assert.equal(await q.getWaitingCount(), 0);

    const st = await fundus(['queue', 'status', '--json', '--failed']);
    assert.equal(st.code, 0, st.stderr);
    const [shown, failedList] = st.stdout.trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(shown.redis, redactUrl(server.url));
    assert.equal(shown.photographs.done, 241);
    assert.equal(failedList.failed.length, 1);
    assert.equal(failedList.failed[0].attempts, 2);

    // A worker with another model refuses: at start (the queue is bound) ...
    const other = join(work, 'other-model');
    await mkdir(other);
    for (const f of await readdir(model)) await copyFile(join(model, f), join(other, f));
    const meta = JSON.parse(await readFile(join(other, 'fundus.json'), 'utf8'));
    await writeFile(join(other, 'fundus.json'), JSON.stringify({ ...meta, thresholds: meta.thresholds.map(() => 0.5) }));
    const lines: string[] = [];
    const inProcess = (queue: string) =>
      runWorker({ target: redisTarget(server.url), queue, modelDir: other, concurrency: 1, batchSize: 2, stall: DEFAULT_STALL, log: (l) => lines.push(l) });
    await assert.rejects(inProcess(QUEUE), /queue "fundus" is bound to .*model .*this worker loaded .*other-model/);
    // ... and, on a queue not bound yet, a chunk made for another model is handed back untouched.
    const q2 = await openQueue(redisTarget(server.url), 'elsewhere');
    try {
      await q2.add('score-chunk', { model: 'f'.repeat(64), photos: [{ id: 'x', file: photos[0] }], bytes: false }, { jobId: 'foreign' });
      assert.equal(await inProcess('elsewhere'), 2);
      assert.match(lines.join('\n'), /refusing a chunk made for another model \(fundus\.json sha256 ffffffffffff…\)/);
      assert.equal(await q2.getJobState('foreign'), 'waiting');
    } finally {
      await q2.obliterate({ force: true });
      await q2.close();
    }
  } finally {
    await events.close();
    await q.close();
  }
});

test('bytes in Redis, Redis restarted mid-run, a worker stopped with SIGTERM mid-chunk: the run completes', async () => {
  const drained = await fundus(['queue', 'drain']);
  assert.equal(drained.code, 0, drained.stderr);
  assert.match(drained.stderr, /drained queue "fundus": 242 photographs and 241 results removed/);
  assert.equal(await redis.exists(batchKeys(QUEUE).meta, batchKeys(QUEUE).results), 0);

  const [first, second] = workers.filter((w) => w.proc.signalCode === null && w.proc.exitCode === null);
  assert.ok(first && second, 'two workers still running');
  const q = await openQueue(redisTarget(server.url), QUEUE);
  const total = 481;
  try {
    const sub = await fundus(['queue', 'submit', '-m', model, 'photos', 'more', '--chunk', '16', '--bytes', '--attempts', '2', '--backoff', '200']);
    assert.equal(sub.code, 0, sub.stderr);
    assert.match(sub.stderr, /enqueued 482 photographs in 31 chunks/);
    // Redis is restarted (stopped and started again, its data on disk) while the workers score ...
    await until('some results', async () => (await redis.hlen(batchKeys(QUEUE).results)) >= 20, 30_000);
    await server.restart(300);
    // ... and one worker is then stopped gracefully in the middle of a chunk: it hands the rest back and exits 0.
    await until('a chunk of the first worker early in its work', async () => {
      const jobs = await q.getActive();
      return jobs.find((j) => {
        const p = j.progress as { done?: number; total?: number };
        return j.processedBy?.endsWith(`:${first.proc.pid}`) && typeof p?.done === 'number' && p.done <= p.total! / 2;
      });
    }, 30_000, 20).catch((err: Error) => {
      throw new Error(`${err.message}; the workers' logs:\n${first.log()}\n${second.log()}`);
    });
    first.proc.kill('SIGTERM');
    assert.equal(await first.exited, 0, first.log());
    assert.match(first.log(), /SIGTERM: finishing the batch in hand/);
    assert.match(first.log(), /handed back at \d+\/16 \(shutting down\)/);

    const done = await until('the batch to finish', async () => {
      const s = await status();
      return isFinished(s) && s;
    }, 60_000);
    assert.deepEqual(done.photographs, { total: total + 1, done: total, ungradable: 1, failed: 1, active: 0, waiting: 0 });
    for (const w of [first, second]) assert.match(w.log(), /Redis: connection lost; retrying\n(.*\n)*fundus worker: Redis: connected again/, w.log());
    const stored = await redis.keys(`fundus-batch:${QUEUE}:bytes:*`);
    assert.equal(stored.length, 1, 'only the failed photograph keeps its bytes in Redis');
    assert.equal(stored[0], batchKeys(QUEUE).bytes(sha256(await readFile(broken))));
    assert.equal(Number(await redis.get(batchKeys(QUEUE).bytesTotal)), 300, 'bytes counted once each, whatever the restart');

    const res = await writeResults({ redis, queue: q, queueName: QUEUE, format: 'json', out: join(work, 'bytes.jsonl') });
    assert.deepEqual({ written: res.written, failed: res.failed.map((f) => f.file), pending: res.pending }, { written: total, failed: [broken], pending: 0 });
    const lines = (await readFile(join(work, 'bytes.jsonl'), 'utf8')).trim().split('\n');
    assert.equal(parseHeaderLine(lines[0])?.format, 'fundus-predictions');
    const files = lines.slice(1).map((l) => (JSON.parse(l) as { file: string }).file);
    assert.equal(files.length, total);
    assert.deepEqual([...new Set(files)].sort(), [...photos, blank, ...more].sort());

    // The failed photograph is tried again, and fails again with its reason.
    const retry = await fundus(['queue', 'retry-failed', '--attempts', '1']);
    assert.equal(retry.code, 0, retry.stderr);
    assert.match(retry.stderr, /requeued 1 failed photograph in 1 chunk/);
    let last: BatchStatus | undefined;
    await until('the retry to fail', async () => {
      last = await status();
      return isFinished(last) && last.photographs.failed === 1;
    }, 30_000).catch((err: Error) => {
      throw new Error(`${err.message}; last status ${JSON.stringify(last)}; the worker's log:\n${second.log()}`);
    });

    second.proc.kill('SIGTERM');
    assert.equal(await second.exited, 0, second.log());
    assert.match(second.log(), /stopped\n$/);
  } finally {
    await q.close();
  }
});

test('rediss:// with a private CA: submit and status over TLS; without the CA the connection is refused', async (t) => {
  const dir = await tempDir('fundus-tls-');
  const ssl = (args: string[]) =>
    new Promise<void>((resolve, reject) => {
      const p = spawn('openssl', args, { cwd: dir, stdio: 'ignore' });
      p.on('error', reject);
      p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`openssl ${args[0]} failed (${code})`))));
    });
  await ssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1', '-subj', '/CN=fundus test CA']);
  await ssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1']);
  await writeFile(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1\n');
  await ssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '1', '-extfile', 'san.ext']);
  const tls = await RedisServer.start({ password: PASSWORD, tls: { cert: join(dir, 'server.pem'), key: join(dir, 'server.key'), ca: join(dir, 'ca.pem') } });
  t.after(() => tls.stop());
  const target = redisTarget(tls.url, join(dir, 'ca.pem'));
  const client = await connectRedis(target);
  const q = await openQueue(target, 'tls');
  try {
    const s = await submitPhotos({ redis: client, queue: q, queueName: 'tls', modelDir: model, inputs: photos.slice(0, 3), chunk: 2, retry: { attempts: 1, backoffMs: 100 } });
    assert.equal(s.enqueued, 3);
    const st = await batchStatus(client, q, 'tls', redactUrl(tls.url));
    assert.equal(st.photographs.waiting, 3);
    assert.equal(st.chunks.waiting, 2);
  } finally {
    await q.close();
    client.disconnect();
  }
  await assert.rejects(connectRedis(redisTarget(tls.url)), (e: Error) => /cannot reach Redis at rediss:\/\/:\*\*\*@127\.0\.0\.1/.test(e.message) && !e.message.includes(PASSWORD));
});
