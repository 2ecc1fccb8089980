import type { Redis } from 'ioredis';
import type { Job, Queue } from 'bullmq';
import { batchKeys, describeModel, rateBucket, readMeta, RATE_BUCKET_S, RATE_WINDOW_S, type BatchKeys, type BatchMeta, type ChunkData, type PhotoFailure, type PhotoRef } from './batch.js';
import type { ChunkProgress } from './worker.js';

/** Counts of a batch, in photographs (what `status` shows) and in chunks (BullMQ jobs). */
export interface BatchStatus {
  queue: string;
  /** The Redis URL with its password hidden. */
  redis: string;
  model?: BatchMeta['model'];
  /** The heatmaps the batch makes, if any. */
  heatmaps?: BatchMeta['heatmaps'];
  /** `done` includes the `ungradable` ones: reported with the reasons the gradability gate gave, not scored. */
  photographs: { total: number; done: number; ungradable: number; failed: number; active: number; waiting: number };
  chunks: { waiting: number; active: number; delayed: number; failed: number };
  workers: number;
  /** Photographs finished per second over the last minute; undefined before any. */
  rate?: number;
  /** Seconds left at that rate. */
  etaSeconds?: number;
  /** Bytes of photographs held in Redis (bytes-in-Redis mode). */
  bytesInRedis: number;
}

/** A failed chunk's photographs that have neither a result nor a failure of their own, with the chunk's reason. */
export async function failedChunkPhotos(redis: Redis, keys: BatchKeys, queue: Queue<ChunkData>): Promise<{ ref: PhotoRef; reason: string; job: Job<ChunkData> }[]> {
  const out: { ref: PhotoRef; reason: string; job: Job<ChunkData> }[] = [];
  for (let start = 0; ; start += 100) {
    const jobs = (await queue.getFailed(start, start + 99)) as Job<ChunkData>[];
    for (const job of jobs) {
      const ids = job.data.photos.map((p) => p.id);
      if (ids.length === 0) continue;
      const p = redis.pipeline();
      for (const id of ids) p.hexists(keys.results, id).hexists(keys.failed, id);
      const r = ((await p.exec()) ?? []).map(([, v]) => v);
      job.data.photos.forEach((ref, i) => {
        if (!r[2 * i] && !r[2 * i + 1]) out.push({ ref, reason: `its chunk failed: ${job.failedReason}`, job });
      });
    }
    if (jobs.length < 100) return out;
  }
}

/** Every failed photograph: those unreadable after their chunk's last attempt, then those of failed chunks. */
export async function failedPhotos(redis: Redis, queueName: string, queue: Queue<ChunkData>): Promise<Map<string, PhotoFailure>> {
  const keys = batchKeys(queueName);
  const out = new Map<string, PhotoFailure>();
  for (const [id, raw] of Object.entries(await redis.hgetall(keys.failed))) out.set(id, JSON.parse(raw) as PhotoFailure);
  for (const f of await failedChunkPhotos(redis, keys, queue)) out.set(f.ref.id, { file: f.ref.file, reason: f.reason, attempts: f.job.attemptsMade });
  return out;
}

async function recentRate(redis: Redis, keys: BatchKeys, now: number): Promise<number | undefined> {
  const current = rateBucket(now);
  const n = RATE_WINDOW_S / RATE_BUCKET_S;
  const buckets = Array.from({ length: n + 1 }, (_, i) => current - n + i);
  const counts = (await redis.mget(...buckets.map((b) => keys.rate(b)))).map((v) => Number(v ?? 0));
  const total = counts.reduce((a, b) => a + b, 0);
  if (total === 0) return undefined;
  const first = Number((await redis.hget(keys.stats, 'firstScoredAt')) ?? now);
  // The window: a minute back (bucket-aligned), or since the batch's first result if that is later.
  const from = Math.max((current - n) * RATE_BUCKET_S * 1000, first);
  return total / Math.max(1, (now - from) / 1000);
}

export async function batchStatus(redis: Redis, queue: Queue<ChunkData>, queueName: string, redisShown: string): Promise<BatchStatus> {
  const keys = batchKeys(queueName);
  const now = Date.now();
  const [meta, total, done, failedHere, counts, workers, bytes, ungradable] = await Promise.all([
    readMeta(redis, keys),
    redis.hlen(keys.photos),
    redis.hlen(keys.results),
    redis.hlen(keys.failed),
    queue.getJobCounts('wait', 'active', 'delayed', 'failed', 'prioritized'),
    queue.getWorkersCount(),
    redis.get(keys.bytesTotal),
    redis.hget(keys.stats, 'ungradable'),
  ]);
  const failedChunks = counts.failed > 0 ? (await failedChunkPhotos(redis, keys, queue)).length : 0;
  let active = 0;
  for (const job of (await queue.getActive()) as Job<ChunkData>[]) {
    const p = job.progress as Partial<ChunkProgress> | number;
    active += job.data.photos.length - (typeof p === 'object' && p !== null && typeof p.done === 'number' ? p.done : 0);
  }
  const failed = failedHere + failedChunks;
  const waiting = Math.max(0, total - done - failed - active);
  const rate = await recentRate(redis, keys, now);
  return {
    queue: queueName,
    redis: redisShown,
    model: meta?.model,
    ...(meta?.heatmaps ? { heatmaps: meta.heatmaps } : {}),
    photographs: { total, done, ungradable: Number(ungradable ?? 0), failed, active, waiting },
    chunks: { waiting: counts.wait + counts.prioritized, active: counts.active, delayed: counts.delayed, failed: counts.failed },
    workers,
    rate,
    etaSeconds: rate && waiting + active > 0 ? (waiting + active) / rate : undefined,
    bytesInRedis: Number(bytes ?? 0),
  };
}

/** Whether nothing is left to do: every photograph scored or failed. */
export function isFinished(s: BatchStatus): boolean {
  return s.photographs.waiting + s.photographs.active === 0 && s.chunks.waiting + s.chunks.active + s.chunks.delayed === 0;
}

function bar(fraction: number, width = 30): string {
  const filled = Math.round(Math.min(1, Math.max(0, fraction)) * width);
  return '█'.repeat(filled) + '·'.repeat(width - filled);
}

function bytes(n: number): string {
  return n < 1024 * 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function duration(s: number): string {
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

/** The status for a person: the batch, a progress bar, counts, rate and time left. */
export function formatStatus(s: BatchStatus): string {
  const p = s.photographs;
  const lines = [`queue "${s.queue}" on ${s.redis}${s.model ? `, model ${describeModel(s.model)}` : ', empty (no batch submitted)'}`];
  if (s.heatmaps) lines.push(`heatmaps: ${s.heatmaps.method} of ${Array.isArray(s.heatmaps.classes) ? s.heatmaps.classes.join(', ') : `${s.heatmaps.classes} classes`} into ${s.heatmaps.dir}`);
  const finished = p.done + p.failed;
  const fraction = p.total > 0 ? finished / p.total : 0;
  lines.push(`[${bar(fraction)}] ${(100 * fraction).toFixed(1)}%  ${finished}/${p.total} photographs`);
  lines.push(`done ${p.done}${p.ungradable ? ` (${p.ungradable} ungradable)` : ''}, failed ${p.failed}, active ${p.active}, waiting ${p.waiting}`);
  const rate = s.rate !== undefined ? `${s.rate.toFixed(1)} photographs/s over the last minute` : 'no photograph finished in the last minute';
  lines.push(`${rate}${s.etaSeconds !== undefined ? `, about ${duration(s.etaSeconds)} left` : ''}`);
  const c = s.chunks;
  lines.push(`chunks: waiting ${c.waiting}, active ${c.active}, retrying ${c.delayed}, failed ${c.failed}; workers ${s.workers}`);
  if (s.bytesInRedis > 0) lines.push(`photographs held in Redis: ${bytes(s.bytesInRedis)}`);
  return lines.join('\n') + '\n';
}
