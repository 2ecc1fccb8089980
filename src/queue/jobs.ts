import { createHash } from 'node:crypto';
import { Queue, type JobsOptions } from 'bullmq';
import { redisOptions, type RedisTarget } from './connection.js';
import { BULL_PREFIX, type ChunkData, type PhotoRef } from './batch.js';

/** The BullMQ name of every job: a chunk of photographs to score. */
export const CHUNK_JOB = 'score-chunk';

/** Retry policy of a chunk whose photographs could not all be read, or whose worker failed. */
export interface RetryPolicy {
  /** Attempts in all (the first included). */
  attempts: number;
  /** First backoff in ms; doubled at each further attempt. */
  backoffMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 3, backoffMs: 5000 };

export async function openQueue(target: RedisTarget, queue: string): Promise<Queue<ChunkData>> {
  const q = new Queue<ChunkData>(queue, { connection: { url: target.url, ...(await redisOptions(target)) }, prefix: BULL_PREFIX });
  // Connection errors surface in the commands' own calls; without a listener BullMQ would also print each one.
  q.on('error', () => {});
  return q;
}

export function jobOptions(jobId: string, retry: RetryPolicy): JobsOptions {
  return {
    jobId,
    attempts: retry.attempts,
    backoff: { type: 'exponential', delay: retry.backoffMs },
    // A finished chunk's photographs are in the results hash; the job itself is no longer needed.
    removeOnComplete: true,
    // A failed chunk stays: `status` counts its photographs, `retry-failed` requeues them.
    removeOnFail: false,
  };
}

/**
 * A chunk's job id, from its photographs' content hashes: enqueueing the same chunk again (a submit interrupted and
 * run again) adds nothing, since BullMQ ignores a job id it already holds. `salt` makes a fresh id for a retry.
 */
export function chunkJobId(photos: PhotoRef[], salt = ''): string {
  const h = createHash('sha256');
  for (const p of photos) h.update(p.id);
  h.update(salt);
  return `chunk-${h.digest('hex').slice(0, 32)}`;
}
