import { mkdir } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import type { Redis } from 'ioredis';
import type { Queue } from 'bullmq';
import { isUngradable, type PhotoRecord } from '../models/records.js';
import { ResultSink, type OutputFormat } from '../serve/output.js';
import { checkPredictOut } from '../serve/predict-cli.js';
import { acquireLock, type Lock } from '../util/lock.js';
import { InputError } from '../util/errors.js';
import { batchKeys, readMeta, type ChunkData, type PhotoFailure } from './batch.js';
import { failedPhotos } from './status.js';

/** Photographs read from Redis at once while writing results: memory stays bounded whatever the batch's size. */
const PAGE = 1000;

export interface ResultsSummary {
  written: number;
  /** Of those written, the photographs the gradability gate turned away (their rows say why). */
  ungradable: number;
  failed: PhotoFailure[];
  /** Photographs neither scored nor failed yet (the output holds the others). */
  pending: number;
  /** In a batch that makes heatmaps: gradable photographs whose records name none (scored before heatmaps were asked for, or their overlays could not be written). */
  withoutHeatmaps: number;
}

/**
 * Writes every scored photograph of the batch once, in submission order, in the format of `fundus predict` (the same
 * header line naming the model, the same CSV columns or JSON Lines records): a results file can be read, resumed or
 * evaluated like a predictions file; in a batch that makes heatmaps, a JSON record names its overlays as `predict
 * --heatmaps` does. A file is written through `<out>.partial` and guarded like `predict --out`
 * (never someone else's file, one writer at a time).
 */
export async function writeResults(opts: { redis: Redis; queue: Queue<ChunkData>; queueName: string; format: OutputFormat; out?: string }): Promise<ResultsSummary> {
  const { redis } = opts;
  const keys = batchKeys(opts.queueName);
  const meta = await readMeta(redis, keys);
  if (!meta) throw new InputError(`queue "${opts.queueName}" holds no batch (nothing submitted, or drained)`);
  let lock: Lock | undefined;
  if (opts.out) {
    await checkPredictOut(opts.out);
    await mkdir(dirname(resolve(opts.out)), { recursive: true });
    lock = await acquireLock(`${opts.out}.lock`, 'queue results');
  }
  let success = false;
  let sink: ResultSink | undefined;
  const summary: ResultsSummary = { written: 0, ungradable: 0, failed: [], pending: 0, withoutHeatmaps: 0 };
  try {
    ({ sink } = await ResultSink.open({ format: opts.format, classes: meta.classes, thresholds: meta.thresholds, out: opts.out, model: meta.model }));
    const total = await redis.llen(keys.order);
    for (let start = 0; start < total; start += PAGE) {
      const ids = await redis.lrange(keys.order, start, start + PAGE - 1);
      if (ids.length === 0) break;
      const rows = await redis.hmget(keys.results, ...ids);
      const records = rows.filter((r) => r !== null).map((r) => JSON.parse(r) as PhotoRecord);
      await sink.write(records);
      summary.written += records.length;
      summary.ungradable += records.filter(isUngradable).length;
      if (meta.heatmaps) summary.withoutHeatmaps += records.filter((r) => !isUngradable(r) && !r.heatmaps).length;
    }
    summary.failed = [...(await failedPhotos(redis, opts.queueName, opts.queue)).values()];
    summary.pending = Math.max(0, total - summary.written - summary.failed.length);
    success = true;
  } finally {
    try {
      await sink?.close(success);
    } finally {
      await lock?.release();
    }
  }
  return summary;
}
