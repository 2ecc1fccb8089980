import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadModel, MODEL_JSON, WEIGHTS_BIN, METADATA_JSON, type FundusModel } from '../models/io.js';
import { Predictor } from '../models/predictor.js';
import { toRecord, toUngradableRecord, type PhotoRecord } from '../models/records.js';
import type { CropGeometry, PreprocessedImage } from '../data/preprocess.js';
import { CAM_METHODS, type CamMethod, type Heatmap } from '../explain/cam.js';
import { explainerFor } from '../explain/explainer.js';
import { InputError } from '../util/errors.js';
import type { ModelCard } from './api-types.js';

/** A short fingerprint of the model files: two servers answer with the same version only for the same model. */
export async function modelVersion(dir: string): Promise<string> {
  const h = createHash('sha256');
  for (const f of [METADATA_JSON, MODEL_JSON, WEIGHTS_BIN]) h.update(await readFile(join(dir, f)));
  return h.digest('hex').slice(0, 12);
}

/** Decoding errors of in-memory images say `<buffer>`: name the upload instead. */
function renamed(err: unknown, name: string): unknown {
  return err instanceof InputError ? new InputError(err.message.replace(/^<buffer>: /, ''), { file: name }) : err;
}

interface Pending {
  data: Buffer;
  name: string;
  /** Decoding starts on arrival, so that it overlaps the inference of the batch before. */
  decoded: Promise<PromiseSettledResult<PreprocessedImage>>;
  /** Aborted when nobody waits for the answer any more: the image is then left out of its batch. */
  signal?: AbortSignal;
  resolve: (r: PhotoRecord) => void;
  reject: (e: unknown) => void;
}

export interface Explanation {
  heatmap: Heatmap;
  geometry: CropGeometry;
  probability: number;
}

/**
 * A loaded model behind the HTTP API. Predictions of concurrent requests are gathered into one batch while the
 * previous batch runs (dynamic batching): under load the network sees full batches, at rest a request runs alone
 * with no added wait.
 */
export class ModelService {
  private queue: Pending[] = [];
  private running = false;
  /** Preprocessing off the thread that runs the network, and the network itself. */
  private readonly predictor: Predictor;

  private constructor(
    readonly model: FundusModel,
    readonly version: string,
    readonly maxBatch: number,
    readonly gradabilityCheck: boolean,
  ) {
    this.predictor = new Predictor(model, { batchSize: maxBatch, gradability: gradabilityCheck });
  }

  /**
   * `gradabilityCheck` (default true): photographs that fail the gradability gate are answered "ungradable" with the
   * reasons (`predict`) or refused (`explain`) instead of being shown to the network.
   */
  static async load(dir: string, opts: { maxBatch?: number; gradabilityCheck?: boolean } = {}): Promise<ModelService> {
    const model = await loadModel(dir);
    return new ModelService(model, await modelVersion(dir), opts.maxBatch ?? 16, opts.gradabilityCheck ?? true);
  }

  get classes(): string[] {
    return this.model.metadata.classes;
  }

  card(): ModelCard {
    const m = this.model.metadata;
    return {
      version: this.version,
      architecture: m.architecture,
      task: m.task,
      classes: m.classes,
      activation: m.activation,
      thresholds: m.thresholds,
      thresholdPolicy: m.thresholdPolicy,
      inputShape: m.inputShape,
      preprocess: m.preprocess,
      explainMethods: [...CAM_METHODS],
      ...(m.backbone ? { backbone: m.backbone } : {}),
      ...(m.inference ? { inference: m.inference } : {}),
      ...(m.trainingData ? { trainingData: m.trainingData } : {}),
      ...(m.metrics ? { metrics: m.metrics } : {}),
      createdAt: m.createdAt,
      fundusVersion: m.fundusVersion,
    };
  }

  /**
   * Predicts one encoded image (checked beforehand with `inspectImage`); `name` names it in errors. When `signal`
   * aborts before the image's batch runs, the image is left out and the promise rejects with the abort reason.
   */
  predict(data: Buffer, name: string, signal?: AbortSignal): Promise<PhotoRecord> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const decoded = this.predictor.preprocess([data]).then((r) => r[0]);
      this.queue.push({ data, name, decoded, signal, resolve, reject });
      if (!this.running) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.running = true;
    try {
      while (this.queue.length > 0) {
        const batch: Pending[] = [];
        while (batch.length < this.maxBatch && this.queue.length > 0) {
          const p = this.queue.shift()!;
          if (p.signal?.aborted) {
            // Left out of the batch. Its decoding started on arrival: reject once that is over, so that the caller's
            // slot covers the work it caused.
            const drop = () => p.reject(p.signal!.reason);
            void p.decoded.then(drop, drop);
          } else batch.push(p);
        }
        if (batch.length > 0) await this.runBatch(batch);
      }
    } finally {
      this.running = false;
    }
  }

  private async runBatch(batch: Pending[]): Promise<void> {
    const { classes, thresholds } = this.model.metadata;
    const inputs = batch.map((p) => p.data);
    try {
      const outcomes = this.predictor.infer(inputs, await Promise.all(batch.map((p) => p.decoded)));
      batch.forEach((p, i) => {
        const o = outcomes[i];
        if (o.ok) p.resolve(toRecord(o.probabilities, 0, classes, thresholds, undefined, this.gradabilityCheck));
        else if (o.ungradable) p.resolve(toUngradableRecord(o.ungradable));
        else p.reject(renamed(o.error, p.name));
      });
    } catch (err) {
      for (const p of batch) p.reject(err);
    }
  }

  /** The heatmap of class `classIndex` for one encoded image, with the crop it covers in photo coordinates. */
  async explain(data: Buffer, name: string, classIndex: number, method: CamMethod, signal?: AbortSignal): Promise<Explanation> {
    const [settled] = await this.predictor.preprocess([data]);
    if (settled.status === 'rejected') throw renamed(settled.reason, name);
    const image = settled.value;
    // The heatmap is the expensive part (Score-CAM: one forward pass per channel): not for a client that left.
    signal?.throwIfAborted();
    const [r] = explainerFor(this.model).explain([image], [{ image: 0, classIndex }], method);
    return { heatmap: r.heatmap, geometry: image.geometry, probability: r.probability };
  }

  /** Stops the decode workers, if any. */
  close(): Promise<void> {
    return this.predictor.close();
  }

  classIndex(name: string): number {
    const i = this.classes.indexOf(name);
    if (i >= 0) return i;
    if (/^\d+$/.test(name) && Number(name) < this.classes.length) return Number(name);
    throw new InputError(`unknown class "${name}" (this model's classes: ${this.classes.join(', ')})`);
  }
}
