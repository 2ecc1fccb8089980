// Distributed scoring's cost on one machine: photographs/s of `fundus predict` against 1 and 2 local workers on a
// Redis queue, on the same photographs in the same run (target: the queue within 10 % of predict at one worker), the
// submit's own rate, and the memory of a worker. Redis is a real redis-server on a free loopback port.
// Workers are started (model loaded) before the clock starts, as long-running workers are; predict's figure is its
// own reported rate (model loading excluded too). The queue's rates: `scoring` from the first chunk taken to the
// last result, `end to end` from the start of the submit (hashing every photograph, run here beside the workers).
// Run: npm run bench:queue -- [--model models/default] [--images 512] [--chunk 64] [--repeats 2] [--out file.json]
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { QueueEvents } from 'bullmq';
import { DEFAULT_MODEL_DIR } from '../src/models/io.js';
import { connectRedis, redisOptions, redisTarget } from '../src/queue/connection.js';
import { batchKeys, BULL_PREFIX } from '../src/queue/batch.js';
import { openQueue } from '../src/queue/jobs.js';
import { submitPhotos } from '../src/queue/submit.js';
import { drain } from '../src/queue/maintenance.js';
import { RedisServer } from '../test/queue/redis-server.js';

const argv = process.argv.slice(2);
const opt = (name: string, dflt: string): string => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : dflt;
};
const ROOT = join(import.meta.dirname, '..');
const CLI = join(ROOT, 'bin', 'fundus.js');
const model = opt('model', DEFAULT_MODEL_DIR);
const nImages = Number(opt('images', '512'));
const chunk = Number(opt('chunk', '64'));
const repeats = Number(opt('repeats', '2'));
const out = opt('out', join(ROOT, 'benchmarks', 'results', 'queue.json'));
const VIETAI = join(ROOT, '..', 'shared', 'data', 'vietai', 'train');
const QUEUE = 'bench';

if (!existsSync(VIETAI)) throw new Error(`the benchmark reads real photographs from ${VIETAI}`);
const images = readdirSync(VIETAI).filter((f) => f.endsWith('.jpg')).sort().slice(0, nImages).map((f) => join(VIETAI, f));
const tmp = join(tmpdir(), `fundus-bench-queue-${process.pid}`);
await mkdir(tmp, { recursive: true });
const server = await RedisServer.start();
const target = redisTarget(server.url);
const redis = await connectRedis(target);
const queue = await openQueue(target, QUEUE);

function run(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, FUNDUS_NO_PROGRESS: '1' } });
    let stderr = '';
    p.stderr.on('data', (d) => (stderr += d));
    p.on('exit', (code) => resolve({ code, stderr }));
  });
}

/** `fundus predict` on the photographs: its own reported rate (the run, without start-up and model loading). */
async function predictRate(): Promise<number> {
  const r = await run(['predict', model, ...images, '--out', join(tmp, 'predict.csv')]);
  const m = /predicted (\d+) images? in [\d.]+ s \(([\d.]+) images\/s\)/.exec(r.stderr);
  if (r.code !== 0 || !m) throw new Error(`fundus predict failed (${r.code}):\n${r.stderr}`);
  await rm(join(tmp, 'predict.csv'), { force: true });
  return Number(m[2]);
}

/** Peak and current resident memory of a process, in MiB (Linux /proc). */
function memory(pid: number): { peakMiB: number; rssMiB: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`${key}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN);
  return { peakMiB: kb('VmHWM') / 1024, rssMiB: kb('VmRSS') / 1024 };
}

interface QueueRun {
  workers: number;
  /** Photographs/s from the first chunk taken to the last result. */
  scoring: number;
  /** Photographs/s from the start of the submit to the last result. */
  endToEnd: number;
  /** The submit alone (read, hash, register, enqueue), photographs/s. */
  submit: number;
  memory: { peakMiB: number; rssMiB: number }[];
}

async function queueRun(n: number): Promise<QueueRun> {
  const procs: ChildProcess[] = [];
  for (let i = 0; i < n; i++) {
    procs.push(spawn(process.execPath, [CLI, 'worker', '-m', model, '--queue', QUEUE], { env: { ...process.env, FUNDUS_REDIS_URL: server.url }, stdio: 'ignore' }));
  }
  const events = new QueueEvents(QUEUE, { connection: { url: server.url, ...(await redisOptions(target)) }, prefix: BULL_PREFIX });
  let firstActive = 0;
  events.on('active', () => (firstActive ||= performance.now()));
  try {
    await events.waitUntilReady();
    while ((await queue.getWorkersCount()) < n) await sleep(100);
    const t0 = performance.now();
    const s = await submitPhotos({ redis, queue, queueName: QUEUE, modelDir: model, inputs: images, chunk, retry: { attempts: 3, backoffMs: 1000 } });
    const tSubmitted = performance.now();
    if (s.enqueued !== images.length) throw new Error(`enqueued ${s.enqueued} of ${images.length} photographs`);
    const keys = batchKeys(QUEUE);
    while ((await redis.hlen(keys.results)) + (await redis.hlen(keys.failed)) < images.length) await sleep(20);
    const t1 = performance.now();
    if (!firstActive) throw new Error('no chunk was seen taken (queue events lost?)');
    const mem = procs.map((p) => memory(p.pid!));
    return { workers: n, scoring: images.length / ((t1 - firstActive) / 1000), endToEnd: images.length / ((t1 - t0) / 1000), submit: images.length / ((tSubmitted - t0) / 1000), memory: mem };
  } finally {
    await events.close();
    for (const p of procs) p.kill('SIGTERM');
    await Promise.all(procs.map((p) => new Promise((resolve) => (p.exitCode !== null ? resolve(null) : p.once('exit', resolve)))));
    await drain(redis, queue, QUEUE, true);
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const predict: number[] = [];
const one: QueueRun[] = [];
const two: QueueRun[] = [];
try {
  // Interleaved, so that a change in the machine's load falls on both sides.
  for (let r = 0; r < repeats; r++) {
    predict.push(await predictRate());
    one.push(await queueRun(1));
    two.push(await queueRun(2));
    console.error(`round ${r + 1}: predict ${predict[r].toFixed(1)}/s, 1 worker ${one[r].scoring.toFixed(1)}/s, 2 workers ${two[r].scoring.toFixed(1)}/s`);
  }
} finally {
  await queue.close();
  redis.disconnect();
  await server.stop();
  await rm(tmp, { recursive: true, force: true });
}

const p = median(predict);
const q1 = median(one.map((r) => r.scoring));
const q2 = median(two.map((r) => r.scoring));
const result = {
  machine: `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}`,
  model,
  photographs: images.length,
  chunk,
  repeats,
  predict: { perSecond: predict },
  oneWorker: one,
  twoWorkers: two,
  summary: {
    predictPerSecond: p,
    oneWorkerPerSecond: q1,
    twoWorkersPerSecond: q2,
    /** 1 − (queue at one worker ÷ predict), from the medians: the target is at most 0.10. */
    overheadAtOneWorker: 1 - q1 / p,
    oneWorkerEndToEndPerSecond: median(one.map((r) => r.endToEnd)),
    submitPerSecond: median([...one, ...two].map((r) => r.submit)),
    workerPeakMiB: Math.max(...[...one, ...two].flatMap((r) => r.memory.map((m) => m.peakMiB))),
  },
};
await writeFile(out, JSON.stringify(result, null, 2) + '\n');
const s = result.summary;
console.log(
  [
    `${images.length} photographs, ${model}, chunks of ${chunk}, ${result.machine}; medians of ${repeats}`,
    `fundus predict           ${s.predictPerSecond.toFixed(1)} photographs/s`,
    `queue, 1 worker          ${s.oneWorkerPerSecond.toFixed(1)} photographs/s (overhead ${(100 * s.overheadAtOneWorker).toFixed(1)} %; end to end with the submit ${s.oneWorkerEndToEndPerSecond.toFixed(1)}/s)`,
    `queue, 2 workers         ${s.twoWorkersPerSecond.toFixed(1)} photographs/s`,
    `submit                   ${s.submitPerSecond.toFixed(0)} photographs/s`,
    `worker memory (peak RSS) ${s.workerPeakMiB.toFixed(0)} MiB`,
    `→ ${out}`,
  ].join('\n'),
);
