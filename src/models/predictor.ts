import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { availableParallelism } from 'node:os';
import { loadPreprocessedBytes } from '../data/cache.js';
import { DecodePool } from '../data/decode-pool.js';
import { assessGradability, UngradableError, type Gradability } from '../data/gradability.js';
import { decodeBesideInference, nativeJpegAvailable } from '../data/jpeg.js';
import { normalizeBytes, preprocessImage, type PreprocessedImage } from '../data/preprocess.js';
import { initEngine, type EngineInfo } from '../engine/index.js';
import { InputError, truncateForMessage } from '../util/errors.js';
import { embeddingModel } from './embedding.js';
import { loadModel, type FundusModel } from './io.js';
import { predictTensor, stackImages } from './predict.js';
import { toRecord, type PredictionRecord } from './records.js';

/** A photograph to predict: a file path, or the encoded bytes of a JPEG, PNG, TIFF, WebP or BMP file. */
export type ImageInput = string | Buffer;

/** One image's fate: its probabilities (one per class, in the model's class order), or why it could not be read. */
export type ImageOutcome =
  | { ok: true; probabilities: Float32Array }
  | {
      ok: false;
      /** The error as thrown (an InputError for a photo that cannot be decoded; its message names the file). */
      error: unknown;
      /** The reason without the file name, for reports that name the file themselves. */
      message: string;
      /**
       * Set when the photo was read but failed the gradability gate (`PredictorOptions.gradability`): what was
       * measured and why it is not graded. The network never saw it.
       */
      ungradable?: Gradability;
    };

/** One batch of `Predictor.batches`: the outcomes of `inputs`, which start at index `start` of the whole list. */
export interface PredictedBatch {
  start: number;
  inputs: ImageInput[];
  outcomes: ImageOutcome[];
  /** What the network saw of each input, preprocessed with the model's settings (undefined where it failed). */
  images: (PreprocessedImage | undefined)[];
}

export interface PredictorOptions {
  /** Images per forward pass (default 16): bounds memory while keeping the kernels busy. */
  batchSize?: number;
  /**
   * Read photographs (paths) through the on-disk preprocessing cache (`cache/`, or FUNDUS_CACHE_DIR; see
   * src/data/cache.ts): the same bytes training saw, and no decoding on a second pass. Default false: every photo
   * is decoded. Encoded bytes (Buffers) are always decoded.
   */
  cache?: boolean;
  /**
   * Preprocess on worker threads when the JPEG addon is missing (`auto`, the default; with the addon decoding
   * already runs off the inference thread), or never (`off`).
   */
  decodeWorkers?: 'auto' | 'off';
  /**
   * Check every photo with the gradability gate (src/data/gradability.ts) before the network: one that is not a
   * gradable fundus photograph fails with an UngradableError (`ImageOutcome.ungradable` says why) instead of being
   * given probabilities. Default false: the research paths (evaluation, training, self-learning, embeddings) take
   * curated data as it is; what answers users (`fundus predict`, the HTTP API, explain, the queue) turns it on.
   */
  gradability?: boolean;
}

export interface RunOptions {
  /** Called after each batch with the number of images done so far. */
  onProgress?: (done: number) => void;
  /**
   * Where a photo that cannot be predicted goes (its index in the inputs and its failure): given, the run keeps
   * going and that photo's row is left NaN; absent, the first failure is thrown.
   */
  onFailure?: (index: number, failure: Extract<ImageOutcome, { ok: false }>) => void;
  /**
   * Stops the run (a deadline, a client gone, Ctrl-C): checked before each batch's network pass, and a batch still
   * being decoded is not waited for. The run then rejects with `signal.reason` (an AbortError DOMException unless
   * the caller gave one), with no tensor of its own left behind; photos of the next batch not yet started are not
   * decoded.
   */
  signal?: AbortSignal;
}

/** Embeddings of images: `rows` × `dim` float32, row-major, one row per input in order. */
export interface EmbeddingRows {
  data: Float32Array;
  rows: number;
  dim: number;
  /** The layer whose (flattened) output they are. */
  layer: string;
}

/**
 * Photos preprocessed at once. Without the JPEG addon, the disc search and resampling are JavaScript: worker
 * threads keep them off the thread that runs the network, and half the cores are plenty, since more decoder threads
 * preempt the engine's threads and a parallel kernel waits for its slowest thread. With the addon, reading,
 * decoding, cropping, resampling and normalisation all run on libuv's thread pool, so no workers are needed
 * (starting them cost more than a whole batch of 128-px inference) and a batch's worth of photos is kept in flight
 * to hide each one's latency.
 */
export const DECODE_CONCURRENCY = Math.max(1, Math.floor(availableParallelism() / 2));
// A batch's worth, queued on libuv's thread pool at once: measured 615–840 img/s against 585–770 with 4 in flight.
const NATIVE_IN_FLIGHT = 16;

/**
 * The engine set up for batch prediction, where the next batch decodes while the network runs (`fundus predict`):
 * its idle threads free their core soon (EngineOptions.workload) and decoding yields to it (decodeBesideInference).
 * Measured on 2 cores (alternating runs of 512 photos): the predict CLI's steady state went from 750–865 to
 * 930–1050 images/s. Not for a server, whose requests' latency suffers when their decoding yields (use `initEngine`).
 */
export async function initBatchPrediction(): Promise<EngineInfo> {
  const engine = await initEngine({ workload: 'inference' });
  decodeBesideInference();
  return engine;
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

/** `work`, or `signal`'s reason as soon as it aborts (the work goes on unobserved: its result is dropped). */
function unlessAborted<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return work;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    void work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** One photo's failure as an outcome (an UngradableError carries what the gate measured). */
function failureOf(reason: unknown, input: ImageInput): Extract<ImageOutcome, { ok: false }> {
  return {
    ok: false,
    error: reason,
    message: failureMessage(reason, input),
    ...(reason instanceof UngradableError ? { ungradable: reason.gradability } : {}),
  };
}

/** The reason of a failure without the path prefix that an InputError carries (reports name the file themselves). */
function failureMessage(reason: unknown, input: ImageInput): string {
  const msg = reason instanceof Error ? reason.message : String(reason);
  if (!(reason instanceof InputError)) return `error: ${msg}`;
  return typeof input === 'string' ? msg.replace(`${truncateForMessage(input)}: `, '') : msg.replace(/^<buffer>: /, '');
}

/**
 * The one way fundus runs a model over photographs: `fundus predict`, evaluate, explain, embed, self-learning, the
 * HTTP API and training's final scoring all go through it. Every photo is preprocessed exactly as the model was
 * trained (its stored settings), in batches; the next batch decodes while the network runs on the current one, so
 * decoding hides behind inference, and at most two batches of images are in memory whatever the number of inputs.
 * One unreadable photo yields its own failure and never takes its neighbours down. Probabilities are the model's
 * outputs after its activation, averaged with the mirror image's where the model records flip test-time
 * augmentation.
 *
 * The engine is set up separately, once per process (`initEngine`, or `initBatchPrediction` for batch runs). Call
 * `close()` when done: it stops the decode workers, if any were started.
 *
 * @example
 * ```ts
 * const predictor = await Predictor.load('models/default');
 * const [record] = await predictor.classify(['samples/images/004f7ec58fad.jpg']);
 * console.log(record.positive, record.probabilities);
 * await predictor.close();
 * ```
 */
export class Predictor {
  readonly batchSize: number;
  private readonly useCache: boolean;
  private readonly gate: boolean;
  private workers: boolean;
  private pool: DecodePool | undefined;
  private limiter: Limiter | undefined;
  private readonly embedders = new Map<string, { model: tfl.LayersModel; layer: string }>();

  constructor(
    readonly model: FundusModel,
    opts: PredictorOptions = {},
  ) {
    this.batchSize = Math.max(1, Math.floor(opts.batchSize ?? 16));
    this.useCache = opts.cache ?? false;
    this.gate = opts.gradability ?? false;
    this.workers = (opts.decodeWorkers ?? 'auto') === 'auto' && !nativeJpegAvailable();
  }

  /** Loads a model directory (see `loadModel`) and makes a predictor for it. */
  static async load(dir: string, opts: PredictorOptions = {}): Promise<Predictor> {
    return new Predictor(await loadModel(dir), opts);
  }

  /** The model's class names, in output order. */
  get classes(): string[] {
    return this.model.metadata.classes;
  }

  /** The model's decision threshold per class. */
  get thresholds(): number[] {
    return this.model.metadata.thresholds;
  }

  /** Decoding slots shared by every batch of this predictor (and the worker pool, made on first use). */
  private decoder(): Limiter {
    if (!this.limiter) {
      if (this.workers) this.pool = new DecodePool(DECODE_CONCURRENCY);
      this.limiter = new Limiter(this.pool ? 2 * DECODE_CONCURRENCY : NATIVE_IN_FLIGHT);
    }
    return this.limiter;
  }

  private async preprocessOne(input: ImageInput): Promise<PreprocessedImage> {
    if (!this.gate) return this.preprocessGradable(input);
    // Both decode on the thread pool: side by side, the gate adds little to the photo's latency.
    const [gradability, image] = await Promise.allSettled([assessGradability(input), this.preprocessGradable(input)]);
    if (gradability.status === 'rejected') throw gradability.reason;
    if (!gradability.value.gradable) throw new UngradableError(gradability.value, typeof input === 'string' ? input : '<buffer>');
    if (image.status === 'rejected') throw image.reason;
    return image.value;
  }

  private async preprocessGradable(input: ImageInput): Promise<PreprocessedImage> {
    const settings = this.model.metadata.preprocess;
    if (this.useCache && typeof input === 'string') {
      const [b] = await loadPreprocessedBytes([input], settings, { concurrency: 1 });
      return { data: normalizeBytes(b.pixels, b.channels, settings), size: b.size, channels: b.channels, geometry: b.geometry };
    }
    return this.pool ? this.pool.preprocess(input, settings) : preprocessImage(input, settings);
  }

  /**
   * Decodes and preprocesses photos with the model's settings, each on its own (a failure is that photo's only),
   * off the thread that runs the network. The building block of `batches`; the HTTP API uses it to start decoding
   * an upload as it arrives. Once `signal` has aborted, photos still waiting for a decoding slot are not decoded
   * (they fail with its reason).
   */
  preprocess(inputs: readonly ImageInput[], signal?: AbortSignal): Promise<PromiseSettledResult<PreprocessedImage>[]> {
    const lim = this.decoder();
    return Promise.allSettled(
      inputs.map((input) =>
        lim.run(() => {
          signal?.throwIfAborted();
          return this.preprocessOne(input);
        }),
      ),
    );
  }

  /** Runs the network on the photos of one batch that preprocessed; the others keep their failure. */
  infer(inputs: readonly ImageInput[], settled: readonly PromiseSettledResult<PreprocessedImage>[]): ImageOutcome[] {
    const k = this.classes.length;
    const good = settled.flatMap((s, i) => (s.status === 'fulfilled' ? [i] : []));
    const outcomes: ImageOutcome[] = settled.map((s, i) =>
      s.status === 'rejected' ? failureOf(s.reason, inputs[i]) : { ok: false, error: undefined, message: '' },
    );
    if (good.length === 0) return outcomes;
    const probs = this.run(good.map((i) => (settled[i] as PromiseFulfilledResult<PreprocessedImage>).value.data));
    good.forEach((i, j) => (outcomes[i] = { ok: true, probabilities: probs.slice(j * k, (j + 1) * k) }));
    return outcomes;
  }

  /**
   * Predicts `inputs` batch by batch, yielding each batch's outcomes in input order. While the network runs on
   * batch n, batch n+1 is already being decoded. `signal` stops it between batches, without waiting for a decode
   * (see `RunOptions.signal`).
   */
  async *batches(inputs: readonly ImageInput[], opts: Pick<RunOptions, 'signal'> = {}): AsyncGenerator<PredictedBatch> {
    const { signal } = opts;
    const slice = (start: number) => inputs.slice(start, start + this.batchSize);
    signal?.throwIfAborted();
    let next = inputs.length > 0 ? this.preprocess(slice(0), signal) : undefined;
    for (let start = 0; start < inputs.length; start += this.batchSize) {
      const settled = await unlessAborted(next!, signal);
      signal?.throwIfAborted();
      const ahead = start + this.batchSize;
      next = ahead < inputs.length ? this.preprocess(slice(ahead), signal) : undefined;
      const chunk = slice(start);
      yield {
        start,
        inputs: chunk,
        outcomes: this.infer(chunk, settled),
        images: settled.map((s) => (s.status === 'fulfilled' ? s.value : undefined)),
      };
    }
  }

  /**
   * Probabilities of every input: n×C row-major, in input order and the model's class order. Throws the first
   * failure (an InputError naming the file for a photo that cannot be read); `batches` reports them one by one.
   */
  async predict(inputs: readonly ImageInput[], opts: RunOptions = {}): Promise<Float32Array> {
    const k = this.classes.length;
    const out = new Float32Array(inputs.length * k);
    for await (const b of this.batches(inputs, opts)) {
      b.outcomes.forEach((o, i) => {
        if (o.ok) out.set(o.probabilities, (b.start + i) * k);
        else if (opts.onFailure) {
          out.fill(NaN, (b.start + i) * k, (b.start + i + 1) * k);
          opts.onFailure(b.start + i, o);
        } else throw o.error;
      });
      opts.onProgress?.(b.start + b.inputs.length);
    }
    return out;
  }

  /**
   * Each input's probabilities and decisions at the model's thresholds (`file` is the path, or absent for bytes),
   * as `fundus predict` and the HTTP API report them. Throws the first failure, like `predict`.
   */
  async classify(inputs: readonly ImageInput[], opts: RunOptions = {}): Promise<PredictionRecord[]> {
    const probs = await this.predict(inputs, opts);
    return inputs.map((input, i) => toRecord(probs, i * this.classes.length, this.classes, this.thresholds, typeof input === 'string' ? input : undefined));
  }

  /**
   * Probabilities of images already preprocessed with the model's settings: normalised HWC arrays (Float32Array),
   * or the 0..255 bytes the preprocessing cache stores (Uint8Array, normalised here one batch at a time, so that a
   * large set stays a quarter of the memory). n×C row-major; run in batches of `batchSize`. An aborted `signal`
   * (checked before each batch) throws its reason.
   */
  run(images: readonly (Float32Array | Uint8Array)[], opts: Pick<RunOptions, 'signal'> = {}): Float32Array {
    const { inputShape, preprocess, classes } = this.model.metadata;
    const k = classes.length;
    const out = new Float32Array(images.length * k);
    for (let s = 0; s < images.length; s += this.batchSize) {
      opts.signal?.throwIfAborted();
      const chunk = images.slice(s, s + this.batchSize).map((im) => (im instanceof Uint8Array ? normalizeBytes(im, inputShape[2], preprocess) : im));
      const x = stackImages(chunk, inputShape);
      try {
        out.set(predictTensor(this.model, x), s * k);
      } finally {
        x.dispose();
      }
    }
    return out;
  }

  /**
   * The activations of `layer` (default: the penultimate layer, the input of the classification head), flattened
   * to one row per input, for the same preprocessed photos as `predict` (no test-time augmentation). Throws the
   * first failure, or, with `onFailure`, leaves that photo's row NaN. `signal` stops it like `predict`.
   */
  async embed(inputs: readonly ImageInput[], opts: RunOptions & { layer?: string } = {}): Promise<EmbeddingRows> {
    if (inputs.length === 0) throw new InputError('no images to embed');
    const key = opts.layer ?? '';
    let sub = this.embedders.get(key);
    if (!sub) this.embedders.set(key, (sub = embeddingModel(this.model.network, opts.layer)));
    const { signal } = opts;
    const slice = (start: number) => inputs.slice(start, start + this.batchSize);
    let data: Float32Array | undefined;
    let dim = 0;
    signal?.throwIfAborted();
    let next = this.preprocess(slice(0), signal);
    for (let start = 0; start < inputs.length; start += this.batchSize) {
      const settled = await unlessAborted(next, signal);
      signal?.throwIfAborted();
      if (start + this.batchSize < inputs.length) next = this.preprocess(slice(start + this.batchSize), signal);
      const good: number[] = [];
      settled.forEach((s, i) => {
        if (s.status === 'fulfilled') good.push(i);
        else if (opts.onFailure) opts.onFailure(start + i, failureOf(s.reason, inputs[start + i]));
        else throw s.reason;
      });
      if (good.length > 0) {
        const images = good.map((i) => (settled[i] as PromiseFulfilledResult<PreprocessedImage>).value.data);
        const x = stackImages(images, this.model.metadata.inputShape);
        const y = tf.tidy(() => tf.reshape(sub!.model.predict(x) as tf.Tensor, [images.length, -1]));
        x.dispose();
        const values = (await y.data()) as Float32Array;
        if (!data) {
          dim = y.shape[1] as number;
          data = new Float32Array(inputs.length * dim).fill(NaN);
        }
        y.dispose();
        good.forEach((i, j) => data!.set(values.subarray(j * dim, (j + 1) * dim), (start + i) * dim));
      }
      opts.onProgress?.(start + settled.length);
    }
    if (!data) throw new InputError('none of the images could be read');
    return { data, rows: inputs.length, dim, layer: sub.layer };
  }

  /** Stops the decode workers, if any were started. The predictor still works afterwards, preprocessing in this thread. */
  async close(): Promise<void> {
    const pool = this.pool;
    this.workers = false;
    this.pool = undefined;
    this.limiter = undefined;
    await pool?.close();
  }
}

/**
 * Probabilities of photos (n×C row-major, input order) with a predictor made for this one call: the convenience
 * form of `new Predictor(model, opts).predict(inputs)`. InputError naming the file when a photo cannot be read.
 */
export async function predictFiles(model: FundusModel, inputs: readonly ImageInput[], opts: PredictorOptions & RunOptions = {}): Promise<Float32Array> {
  const predictor = new Predictor(model, opts);
  try {
    return await predictor.predict(inputs, opts);
  } finally {
    await predictor.close();
  }
}
