import { hostname } from 'node:os';
import { performance } from 'node:perf_hooks';
import { Worker, WaitingError, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { loadModel, type FundusModel } from '../models/io.js';
import { initBatchPrediction, Predictor, type ImageOutcome } from '../models/predictor.js';
import { modelIdentity } from '../serve/predict-cli.js';
import { toRecord, toUngradableRecord, type DicomRecordInfo } from '../models/records.js';
import { dicomInfoOf } from '../data/photo-source.js';
import { InputError } from '../util/errors.js';
import { connectRedis, describeRedisError, redactUrl, redisOptions, type RedisTarget } from './connection.js';
import { writeOverlays } from '../serve/heatmap-files.js';
import { BULL_PREFIX, batchKeys, describeModel, dropBytes, readMeta, recordOutcomes, type BatchKeys, type ChunkData, type PhotoFailure, type PhotoOutcome, type PhotoRef } from './batch.js';
import { checkHeatmapsReachable, lacksHeatmaps, queueHeatmapStem } from './heatmaps.js';

/**
 * How long a worker's hold on a chunk lasts without renewal, and how often workers look for chunks whose holder
 * stopped renewing (killed, frozen, cut off): such a chunk goes back to the queue after at most about
 * lockDuration + stalledInterval. Renewal runs every lockDuration / 2 while the chunk is worked on.
 */
export interface StallSettings {
  lockDurationMs: number;
  stalledIntervalMs: number;
  /** Times a chunk may be recovered from a lost worker before it is failed (a chunk that kills its workers). */
  maxStalledCount: number;
}

export const DEFAULT_STALL: StallSettings = { lockDurationMs: 30_000, stalledIntervalMs: 30_000, maxStalledCount: 2 };

export interface WorkerOptions {
  target: RedisTarget;
  queue: string;
  modelDir: string;
  /** Chunks worked on at once in this process. */
  concurrency: number;
  /** Photographs per inference batch (as `fundus predict --batch-size`). */
  batchSize: number;
  stall: StallSettings;
  log: (line: string) => void;
}

/** A job's progress, as `status` and the tests read it. */
export interface ChunkProgress {
  done: number;
  total: number;
  worker: string;
}

/** Exit status of a worker that stopped because the queue serves another model. */
export const EXIT_WRONG_MODEL = 2;

/** The worker's name in BullMQ (recorded on each job it takes) and in its log lines. */
export function workerName(): string {
  return `${hostname()}:${process.pid}`;
}

interface ChunkContext {
  model: FundusModel;
  /** The predictor with the gradability gate on (true) or off. */
  predictor: (gradability: boolean) => Predictor;
  sha: string;
  redis: Redis;
  keys: BatchKeys;
  name: string;
  stopping: () => boolean;
  refuse: (jobModel: string) => void;
  log: (line: string) => void;
}

/** What becomes of one photograph: its record as `fundus predict` writes it (a prediction, or why it is ungradable), or its failure. */
function photoOutcome(o: ImageOutcome, file: string, classes: string[], thresholds: number[], gate: boolean, dicom?: DicomRecordInfo): PhotoOutcome {
  if (!o.ok && !o.ungradable) return { kind: 'failed', reason: o.message };
  const outcome: PhotoOutcome = o.ok
    ? { kind: 'scored', record: toRecord(o.probabilities, 0, classes, thresholds, file, gate) }
    : { kind: 'ungradable', record: toUngradableRecord(o.ungradable!, file) };
  if (dicom) outcome.record.dicom = dicom;
  return outcome;
}

/** The inputs of the photographs still to score: their paths, or their bytes fetched from Redis. */
async function chunkInputs(ctx: ChunkContext, data: ChunkData, todo: PhotoRef[]): Promise<{ ready: PhotoRef[]; inputs: (string | Buffer)[]; missing: PhotoRef[] }> {
  if (!data.bytes) return { ready: todo, inputs: todo.map((p) => p.file), missing: [] };
  const bufs = todo.length > 0 ? await ctx.redis.mgetBuffer(...todo.map((p) => ctx.keys.bytes(p.id))) : [];
  const ready: PhotoRef[] = [];
  const inputs: Buffer[] = [];
  const missing: PhotoRef[] = [];
  todo.forEach((p, i) => {
    const b = bufs[i];
    if (b) {
      ready.push(p);
      inputs.push(b);
    } else missing.push(p);
  });
  return { ready, inputs, missing };
}

/**
 * Scores one chunk with the same pipeline as `fundus predict` (decoding beside inference, batch by batch), writing
 * each batch's records as it finishes, so that a worker lost mid-chunk costs only its current batch: the chunk's
 * next holder skips every photograph that already has a result. Photographs that cannot be read fail the attempt
 * (BullMQ retries the chunk with backoff, and the retry reads only them); at the last attempt they are recorded as
 * failed and the chunk completes. A chunk that makes heatmaps writes each gradable photograph's overlays as
 * `fundus predict --heatmaps` does, under names of its content hash (queueHeatmapStem), before its record, which
 * names them; one whose overlays could not be written fails the attempt likewise, and after the last its record
 * names none. On shutdown the chunk is handed back between batches.
 */
async function scoreChunk(ctx: ChunkContext, job: Job<ChunkData>, token: string | undefined): Promise<{ scored: number; failed: number }> {
  const data = job.data;
  if (data.model !== ctx.sha) {
    await job.moveToWait(token);
    ctx.refuse(data.model);
    throw new WaitingError();
  }
  const t0 = performance.now();
  const { classes, thresholds } = ctx.model.metadata;
  const total = data.photos.length;
  const heatmaps = data.heatmaps;
  // Before any work: a folder this worker cannot see fails the attempt (retried, perhaps by a worker that sees it).
  if (heatmaps) await checkHeatmapsReachable(heatmaps, ctx.name);
  const attempts = job.opts.attempts ?? 1;
  const lastAttempt = job.attemptsMade + 1 >= attempts;
  const have = total > 0 ? await ctx.redis.hmget(ctx.keys.results, ...data.photos.map((p) => p.id)) : [];
  // Done: a photograph with a record, which names its heatmaps where the chunk makes them.
  const todo = data.photos.filter((_, i) => have[i] === null || (heatmaps !== undefined && lacksHeatmaps(have[i]!)));
  if (data.bytes && todo.length < total) await dropBytes(ctx.redis, ctx.keys, String(job.id), data.photos.filter((p) => !todo.includes(p)).map((p) => p.id));
  const { ready, inputs, missing } = await chunkInputs(ctx, data, todo);
  const failures = new Map<string, { ref: PhotoRef; reason: string }>();
  for (const p of missing) failures.set(p.id, { ref: p, reason: 'its bytes are no longer in Redis (was the batch drained?)' });
  /** Photographs scored whose overlays could not be written: their records name none, and a retry makes them. */
  const noHeatmaps = new Map<string, { ref: PhotoRef; reason: string }>();
  let done = total - todo.length;
  let scored = 0;
  let overlays = 0;
  const gate = data.gradability ?? true;
  for await (const { start, outcomes, images } of ctx.predictor(gate).batches(inputs)) {
    const entries: [string, string][] = [];
    const keepBytes = new Set<string>();
    let ungradable = 0;
    // a DICOM photograph's SOP Instance UID, laterality and date, as `fundus predict` records them
    const dicom = await Promise.all(outcomes.map((o, j) => (o.ok || o.ungradable ? dicomInfoOf(inputs[start + j]).catch(() => undefined) : undefined)));
    for (const [j, o] of outcomes.entries()) {
      const ref = ready[start + j];
      const outcome = photoOutcome(o, ref.file, classes, thresholds, gate, dicom[j]);
      if (outcome.kind === 'failed') {
        failures.set(ref.id, { ref, reason: outcome.reason });
        continue;
      }
      // The overlays before the record, as `fundus predict --heatmaps` writes them, so that the record names them.
      if (heatmaps && outcome.kind === 'scored') {
        try {
          const stem = queueHeatmapStem(ref.file, ref.id);
          outcome.record.heatmaps = await writeOverlays(ctx.model, inputs[start + j], images[j]!, outcome.record, heatmaps, heatmaps.dir, stem);
          overlays += Object.keys(outcome.record.heatmaps).length;
        } catch (err) {
          noHeatmaps.set(ref.id, { ref, reason: (err as Error).message });
          if (!lastAttempt) keepBytes.add(ref.id); // the retry reads the photograph again
        }
      }
      entries.push([ref.id, JSON.stringify(outcome.record)]);
      if (outcome.kind === 'ungradable') ungradable++;
    }
    const drop = data.bytes ? entries.map(([id]) => id).filter((id) => !keepBytes.has(id)) : [];
    const kept = await recordOutcomes(ctx.redis, ctx.keys, ctx.sha, 'scored', entries, { job: String(job.id), ids: drop }, ungradable);
    if (!kept) {
      ctx.log(`chunk ${job.id}: the batch was drained or now serves another model; its results are dropped`);
      return { scored, failed: 0 };
    }
    scored += entries.length;
    done += outcomes.length;
    await job.updateProgress({ done, total, worker: ctx.name } satisfies ChunkProgress);
    if (ctx.stopping() && done < total) {
      await job.moveToWait(token);
      ctx.log(`chunk ${job.id}: handed back at ${done}/${total} (shutting down)`);
      throw new WaitingError();
    }
  }
  const some = (m: Map<string, { ref: PhotoRef; reason: string }>) => [...m.values()].slice(0, 3).map((f) => `${f.ref.file}: ${f.reason}`).join('; ');
  if ((failures.size > 0 || noHeatmaps.size > 0) && !lastAttempt) {
    const what = [
      ...(failures.size > 0 ? [`${failures.size} of ${total} photographs could not be read: ${some(failures)}`] : []),
      ...(noHeatmaps.size > 0 ? [`the heatmaps of ${noHeatmaps.size} could not be written: ${some(noHeatmaps)}`] : []),
    ];
    throw new Error(`${what.join('; ')} (attempt ${job.attemptsMade + 1} of ${attempts}; retried after a backoff)`);
  }
  const failed: [string, string][] = [...failures.values()].map((f) => [f.ref.id, JSON.stringify({ file: f.ref.file, reason: f.reason, attempts } satisfies PhotoFailure)]);
  await recordOutcomes(ctx.redis, ctx.keys, ctx.sha, 'failed', failed);
  // Scored, without overlays after every attempt: the records name none; a submit with the same --heatmaps tries again.
  if (noHeatmaps.size > 0) ctx.log(`chunk ${job.id}: ${noHeatmaps.size} photographs without heatmaps after ${attempts} attempts: ${some(noHeatmaps)}`);
  const secs = (performance.now() - t0) / 1000;
  const parts = [
    `${scored} scored`,
    ...(heatmaps ? [`${overlays} heatmaps`] : []),
    ...(failed.length ? [`${failed.length} unreadable`] : []),
    ...(total - todo.length ? [`${total - todo.length} already scored`] : []),
  ];
  ctx.log(`chunk ${job.id}: ${parts.join(', ')} in ${secs.toFixed(2)} s`);
  return { scored, failed: failed.length };
}

/**
 * Runs a worker until SIGTERM/SIGINT (or until it meets a job for another model): loads the model once, then takes
 * chunks from the queue. The first signal stops taking chunks, finishes the batch in hand and hands the rest of the
 * chunk back; a second one exits at once (the chunk returns to the queue when its lock expires). Resolves to the
 * exit status.
 */
export async function runWorker(opts: WorkerOptions): Promise<number> {
  const { log } = opts;
  await initBatchPrediction();
  const model = await loadModel(opts.modelDir);
  const identity = await modelIdentity(model);
  const keys = batchKeys(opts.queue);
  const redis = await connectRedis(opts.target);
  const bound = await readMeta(redis, keys);
  if (bound && bound.model.fundusJsonSha256 !== identity.fundusJsonSha256) {
    redis.disconnect();
    throw new InputError(`queue "${opts.queue}" is bound to ${describeModel(bound.model)}; this worker loaded ${describeModel(identity)}. Start it with that model`);
  }
  const name = workerName();
  // The predictors for the worker's life: `fundus predict`'s own (decoding beside inference, batch by batch), with
  // the gradability gate as the chunk asks (on unless submitted with --no-gradability-check).
  const predictors = new Map<boolean, Predictor>();
  const predictor = (gradability: boolean) => {
    let p = predictors.get(gradability);
    if (!p) predictors.set(gradability, (p = new Predictor(model, { batchSize: opts.batchSize, gradability })));
    return p;
  };
  let stopping = false;
  let exitCode = 0;
  let lastError = '';
  let finish!: () => void;
  const finished = new Promise<void>((res) => (finish = res));

  const ctx: ChunkContext = {
    model,
    predictor,
    sha: identity.fundusJsonSha256,
    redis,
    keys,
    name,
    stopping: () => stopping,
    refuse: (jobModel) => {
      log(`refusing a chunk made for another model (fundus.json sha256 ${jobModel.slice(0, 12)}…); this worker has ${describeModel(identity)}; stopping`);
      exitCode = EXIT_WRONG_MODEL;
      void stop();
    },
    // Any other line (a chunk done) ends an outage's report: the next error is news again.
    log: (line) => {
      lastError = '';
      log(line);
    },
  };

  // fundus's own connection says when Redis goes away and comes back (BullMQ's reconnect quietly after a clean close).
  let lost = false;
  redis.on('close', () => {
    if (stopping || lost) return;
    lost = true;
    log('Redis: connection lost; retrying');
  });
  redis.on('ready', () => {
    if (!lost) return;
    lost = false;
    lastError = '';
    log('Redis: connected again');
  });

  const worker = new Worker<ChunkData>(opts.queue, (job, token) => scoreChunk(ctx, job, token), {
    connection: { url: opts.target.url, ...(await redisOptions(opts.target)) },
    prefix: BULL_PREFIX,
    name,
    concurrency: opts.concurrency,
    lockDuration: opts.stall.lockDurationMs,
    stalledInterval: opts.stall.stalledIntervalMs,
    maxStalledCount: opts.stall.maxStalledCount,
    autorun: false,
  });
  worker.on('error', (err) => {
    // Redis going away repeats the same error at every reconnection attempt: say it once.
    const msg = describeRedisError(err);
    if (msg !== lastError) log(`Redis: ${msg} (retrying)`);
    lastError = msg;
  });
  worker.on('failed', (job, err) => {
    if (job) log(`chunk ${job.id}: attempt failed: ${describeRedisError(err)}`);
  });

  async function stop(): Promise<void> {
    if (stopping) return;
    stopping = true;
    try {
      await worker.close();
    } finally {
      for (const p of predictors.values()) await p.close();
      redis.disconnect();
      finish();
    }
  }

  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      log(`${signal} again: exiting now; the chunk in hand returns to the queue when its lock expires`);
      process.exit(130);
    }
    log(`${signal}: finishing the batch in hand, handing the rest of the chunk back`);
    void stop();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  log(
    `serving queue "${opts.queue}" on ${redactUrl(opts.target.url)} with ${describeModel(identity)}, ` +
      `concurrency ${opts.concurrency}, batch ${opts.batchSize}, lock ${opts.stall.lockDurationMs} ms`,
  );
  void worker.run().catch((err) => {
    log(`stopped: ${describeRedisError(err)}`);
    exitCode = 1;
    void stop();
  });
  await finished;
  process.removeListener('SIGTERM', onSignal);
  process.removeListener('SIGINT', onSignal);
  log(exitCode === 0 ? 'stopped' : `stopped (exit status ${exitCode})`);
  return exitCode;
}
