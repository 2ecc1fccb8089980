import type { Redis } from 'ioredis';
import type { Queue } from 'bullmq';
import { InputError } from '../util/errors.js';
import { batchKeys, deleteBatchKeys, readMeta, type ChunkData, type PhotoEntry, type PhotoFailure, type PhotoRef } from './batch.js';
import { CHUNK_JOB, chunkJobId, jobOptions, type RetryPolicy } from './jobs.js';
import { failedChunkPhotos } from './status.js';

/**
 * Requeues every failed photograph: the unreadable ones (their failure is cleared) and those of failed chunks (the
 * failed chunk is removed), in new chunks with a fresh retry budget (and the batch's heatmaps, if it makes them).
 * Returns how many were requeued.
 */
export async function retryFailed(redis: Redis, queue: Queue<ChunkData>, queueName: string, chunk: number, retry: RetryPolicy): Promise<{ photographs: number; chunks: number }> {
  const keys = batchKeys(queueName);
  const meta = await readMeta(redis, keys);
  if (!meta) throw new InputError(`queue "${queueName}" holds no batch (nothing submitted, or drained)`);
  const refs = new Map<string, PhotoRef & { bytes: boolean }>();
  const entryOf = async (id: string): Promise<PhotoEntry | undefined> => {
    const raw = await redis.hget(keys.photos, id);
    return raw ? (JSON.parse(raw) as PhotoEntry) : undefined;
  };
  for (const [id, raw] of Object.entries(await redis.hgetall(keys.failed))) {
    const entry = await entryOf(id);
    refs.set(id, { id, file: (JSON.parse(raw) as PhotoFailure).file, bytes: !!entry?.bytes });
  }
  const chunkFailures = await failedChunkPhotos(redis, keys, queue);
  for (const f of chunkFailures) refs.set(f.ref.id, { ...f.ref, bytes: f.job.data.bytes });
  const salt = `retry-${Date.now()}`;
  const all = [...refs.values()];
  let chunks = 0;
  for (const mode of [false, true]) {
    const photos = all.filter((p) => p.bytes === mode).map(({ id, file }) => ({ id, file }));
    for (let start = 0; start < photos.length; start += chunk) {
      const part = photos.slice(start, start + chunk);
      const jobId = chunkJobId(part, salt);
      // Failures cleared and entries naming their job before it exists: a worker finishing it at once must find its
      // own failures kept and its photographs' bytes its own to drop. (Stopped in between, the photographs are in
      // no job; submitting them again enqueues them.)
      const tx = redis.multi();
      for (const p of part) tx.hdel(keys.failed, p.id).hset(keys.photos, p.id, JSON.stringify({ file: p.file, bytes: mode || undefined, job: jobId, heatmaps: meta.heatmaps ? true : undefined } satisfies PhotoEntry));
      await tx.exec();
      const data = { model: meta.model.fundusJsonSha256, photos: part, bytes: mode, gradability: meta.gradability, ...(meta.heatmaps ? { heatmaps: meta.heatmaps } : {}) };
      await queue.add(CHUNK_JOB, data, jobOptions(jobId, retry));
      chunks++;
    }
  }
  for (const job of new Set(chunkFailures.map((f) => f.job))) await job.remove();
  return { photographs: all.length, chunks };
}

/**
 * Empties the queue: every chunk (waiting, retrying, failed), every result, failure and stored photograph, and the
 * model binding. Refused while chunks are being scored unless `force` (their workers' results are then dropped).
 */
export async function drain(redis: Redis, queue: Queue<ChunkData>, queueName: string, force: boolean): Promise<{ photographs: number; results: number }> {
  const keys = batchKeys(queueName);
  const active = await queue.getActiveCount();
  if (active > 0 && !force) {
    throw new InputError(`queue "${queueName}" has ${active} chunk${active === 1 ? '' : 's'} being scored; stop the workers or wait, or pass --force to drop their work too`);
  }
  const [photographs, results] = await Promise.all([redis.hlen(keys.photos), redis.hlen(keys.results)]);
  // The binding goes first: a worker finishing a chunk from now on writes nothing (see recordOutcomes).
  await redis.del(keys.meta);
  await queue.obliterate({ force: true });
  await deleteBatchKeys(redis, keys);
  return { photographs, results };
}
