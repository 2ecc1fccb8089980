import { availableParallelism } from 'node:os';
import type { PreprocessedImage } from '../data/preprocess.js';
import { preprocessImage } from '../data/preprocess.js';
import type { FundusModel } from '../models/io.js';
import { predictTensor, stackImages } from '../models/predict.js';
import { InputError } from '../util/errors.js';
import { DecodePool } from './decode-pool.js';
import { decodeBesideInference, nativeJpegAvailable } from '../data/jpeg.js';
import { initEngine, type EngineInfo } from '../engine/index.js';

/** One image's fate: its probabilities (a row of the model's classes), or why it could not be read. */
export type Outcome = { ok: true; probs: Float32Array } | { ok: false; message: string };

/**
 * How photos are decoded beside inference. With the JPEG addon, reading, decoding, cropping, resampling and
 * normalisation all run on libuv's thread pool, so no worker threads are needed (starting them cost more than a
 * whole batch of 128-px inference) and a batch's worth of photos is kept in flight to hide each one's latency.
 * Without it, sharp decodes on the thread pool but the disc search and resampling are JavaScript: worker threads
 * (decode-pool.ts) keep them off the thread that runs the network, and half the cores are plenty, since more decoder
 * threads preempt the engine's threads and a parallel kernel waits for its slowest thread.
 */
export const DECODE_CONCURRENCY = Math.max(1, Math.floor(availableParallelism() / 2));
// A batch's worth, queued on libuv's thread pool at once: measured 615–840 img/s against 585–770 with 4 in flight.
const NATIVE_IN_FLIGHT = 16;

/**
 * The engine set up for batch prediction, where the next batch decodes while the network runs (`fundus predict`):
 * its idle threads free their core soon (EngineOptions.workload) and decoding yields to it (decodeBesideInference).
 * Measured on 2 cores (alternating runs of 512 photos): the predict CLI's steady state went from 750–865 to
 * 930–1050 images/s.
 */
export async function initBatchPrediction(): Promise<EngineInfo> {
  const engine = await initEngine({ workload: 'inference' });
  decodeBesideInference();
  return engine;
}

/** A pool of preprocessing workers when preprocessing needs one (see DECODE_CONCURRENCY); none with the addon. */
export function decodePoolIfNeeded(): DecodePool | undefined {
  return nativeJpegAvailable() ? undefined : new DecodePool(DECODE_CONCURRENCY);
}

/** Photos preprocessed at once: with a worker pool, two per worker; without, as many as keep the thread pool busy. */
export function decodeLimiter(pool: DecodePool | undefined): Limiter {
  return new Limiter(pool ? 2 * DECODE_CONCURRENCY : NATIVE_IN_FLIGHT);
}

/** A counting semaphore: at most `limit` tasks at a time, in arrival order. */
export class Limiter {
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(readonly limit: number) {}

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.active++;
    try {
      return await task();
    } finally {
      this.active--;
      this.waiting.shift()?.();
    }
  }
}

/**
 * Decodes and preprocesses a batch, each image on its own: one unreadable file yields its own failure and never
 * takes its neighbours down. The JPEG addon and sharp both decode on libuv's thread pool, off the thread that runs
 * inference.
 */
export function preprocessBatch(
  model: FundusModel,
  inputs: (string | Buffer)[],
  limiter?: Limiter,
  pool?: DecodePool,
): Promise<PromiseSettledResult<PreprocessedImage>[]> {
  const lim = limiter ?? decodeLimiter(pool);
  const settings = model.metadata.preprocess;
  const one = (input: string | Buffer) => (pool ? pool.preprocess(input, settings) : preprocessImage(input, settings));
  return Promise.allSettled(inputs.map((input) => lim.run(() => one(input))));
}

function failure(reason: unknown, input: string | Buffer): string {
  const msg = reason instanceof Error ? reason.message : String(reason);
  if (!(reason instanceof InputError)) return `error: ${msg}`;
  // The CLI names the file in its own report line; drop the path prefix the error carries.
  return typeof input === 'string' ? msg.replace(`${input}: `, '') : msg.replace(/^<buffer>: /, '');
}

/** Runs the network on the images that decoded; the others keep their failure. */
export function inferBatch(model: FundusModel, inputs: (string | Buffer)[], settled: PromiseSettledResult<PreprocessedImage>[]): Outcome[] {
  const k = model.metadata.classes.length;
  const good = settled.flatMap((s, i) => (s.status === 'fulfilled' ? [i] : []));
  const outcomes: Outcome[] = settled.map((s, i) => (s.status === 'rejected' ? { ok: false, message: failure(s.reason, inputs[i]) } : { ok: false, message: '' }));
  if (good.length === 0) return outcomes;
  const x = stackImages(good.map((i) => (settled[i] as PromiseFulfilledResult<PreprocessedImage>).value.data), model.metadata.inputShape);
  try {
    const probs = predictTensor(model, x);
    good.forEach((i, j) => (outcomes[i] = { ok: true, probs: probs.slice(j * k, (j + 1) * k) }));
  } finally {
    x.dispose();
  }
  return outcomes;
}

/**
 * Predicts `inputs` batch by batch, yielding each batch's outcomes in order. While the network runs on batch n,
 * batch n+1 is already being decoded on the thread pool, so that decoding hides behind inference instead of adding
 * to it. At most two batches of images are in memory, whatever the number of inputs.
 */
export async function* predictBatches(
  model: FundusModel,
  inputs: (string | Buffer)[],
  batchSize: number,
  pool?: DecodePool,
): AsyncGenerator<{ start: number; outcomes: Outcome[] }> {
  const slice = (start: number) => inputs.slice(start, start + batchSize);
  const limiter = decodeLimiter(pool);
  let next = inputs.length > 0 ? preprocessBatch(model, slice(0), limiter, pool) : undefined;
  for (let start = 0; start < inputs.length; start += batchSize) {
    const settled = await next!;
    const ahead = start + batchSize;
    next = ahead < inputs.length ? preprocessBatch(model, slice(ahead), limiter, pool) : undefined;
    yield { start, outcomes: inferBatch(model, slice(start), settled) };
  }
}
