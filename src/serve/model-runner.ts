import { createHash } from 'node:crypto';
import { openPhoto } from '../data/photo-source.js';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { loadModel, MODEL_JSON, WEIGHTS_BIN, METADATA_JSON, type FundusModel } from '../models/io.js';
import { Predictor } from '../models/predictor.js';
import { toRecord, toUngradableRecord, type PhotoRecord } from '../models/records.js';
import { decodeRgb, type CropGeometry, type PreprocessedImage } from '../data/preprocess.js';
import type { CamMethod, Heatmap } from '../explain/cam.js';
import { defaultExplanation, explainerFor, layerOfClass } from '../explain/explainer.js';
import { renderOverlay, type Colormap } from '../explain/overlay.js';
import { InputError } from '../util/errors.js';
import { inspectImage, type ImageInfo } from './image-check.js';

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

export interface RunnerOptions {
  /** Largest batch formed from concurrent predictions (default 16). */
  maxBatch?: number;
  /**
   * Default true: photographs that fail the gradability gate are answered "ungradable" with the reasons (`predict`)
   * or refused (`explain`) instead of being shown to the network.
   */
  gradabilityCheck?: boolean;
}

/** One upload's prediction, with what its header said. */
export interface Prediction {
  image: ImageInfo;
  record: PhotoRecord;
}

export interface Explanation {
  image: ImageInfo;
  heatmap: Heatmap;
  geometry: CropGeometry;
  probability: number;
  /** The layer (or fused layers, joined by '+') the map was made at: the class's default target layer (`defaultExplanation`). */
  layer: string;
  /** The heatmap drawn over the photograph (PNG), when an overlay was asked for. */
  png?: Buffer;
}

/** How to draw a heatmap over its photograph (see OverlayOptions). */
export interface OverlayStyle {
  alpha: number;
  colormap: Colormap;
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

/**
 * A loaded model answering uploads one at a time, in the thread that runs it (the server's inference thread):
 * every upload's header is checked (`inspectImage`) before it is decoded. Predictions of concurrent uploads are
 * gathered into one batch while the previous batch runs (dynamic batching): under load the network sees full
 * batches, at rest an upload runs alone with no added wait. Work whose `signal` aborted before it started is skipped
 * and rejects with the abort reason.
 */
export class ModelRunner {
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

  /** Loads the model (`loadModel`: InputError for a folder that is not a valid model); the engine is set up already. */
  static async load(dir: string, opts: RunnerOptions = {}): Promise<ModelRunner> {
    const model = await loadModel(dir);
    // A recorded default heatmap the network cannot make refuses the model now, not on the first /v1/explain.
    defaultExplanation(model);
    return new ModelRunner(model, await modelVersion(dir), opts.maxBatch ?? 16, opts.gradabilityCheck ?? true);
  }

  /**
   * Checks an upload's header, and gives the bytes to decode: for a DICOM upload its frame's image (the frame named
   * `<name>#frame-<n>`, the API's ?frame=n, else its only frame), so that a multi-frame file is never decoded whole.
   */
  private async checked(upload: Buffer, name: string): Promise<{ image: ImageInfo; data: Buffer }> {
    const opened = await openPhoto(upload, name);
    return { image: await inspectImage(opened, name), data: opened.source as Buffer };
  }

  /** Predicts one encoded image; `name` names it in errors. */
  async predict(upload: Buffer, name: string, signal?: AbortSignal): Promise<Prediction> {
    const { image, data } = await this.checked(upload, name);
    signal?.throwIfAborted();
    const record = await new Promise<PhotoRecord>((resolve, reject) => {
      const decoded = this.predictor.preprocess([data]).then((r) => r[0]);
      this.queue.push({ data, name, decoded, signal, resolve, reject });
      if (!this.running) void this.drain();
    });
    return { image, record };
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

  /**
   * The heatmap of class `classIndex` for one encoded image, with the crop it covers in photo coordinates, and drawn
   * over the photograph when `overlay` is given.
   */
  async explain(upload: Buffer, name: string, classIndex: number, method: CamMethod, overlay?: OverlayStyle, signal?: AbortSignal): Promise<Explanation> {
    const { image, data } = await this.checked(upload, name);
    signal?.throwIfAborted();
    const [settled] = await this.predictor.preprocess([data]);
    if (settled.status === 'rejected') throw renamed(settled.reason, name);
    const pre = settled.value;
    // The heatmap is the expensive part (Score-CAM: one forward pass per channel): not for a client that left.
    signal?.throwIfAborted();
    const explainer = explainerFor(this.model);
    const [r] = explainer.explain([pre], [{ image: 0, classIndex }], method);
    const explanation: Explanation = { image, heatmap: r.heatmap, geometry: pre.geometry, probability: r.probability, layer: layerOfClass(explainer, classIndex) };
    if (overlay) {
      signal?.throwIfAborted();
      explanation.png = await renderOverlay(data, r.heatmap, pre.geometry, overlay);
    }
    return explanation;
  }

  /** The photograph as the server decodes it (a DICOM file's frame included), as PNG. */
  async photo(upload: Buffer, name: string, signal?: AbortSignal): Promise<Buffer> {
    const { data } = await this.checked(upload, name);
    signal?.throwIfAborted();
    const rgb = await decodeRgb(data);
    return sharp(rgb.data, { raw: { width: rgb.width, height: rgb.height, channels: 3 } }).png({ compressionLevel: 3 }).toBuffer();
  }

  /** Stops the decode workers, if any. */
  close(): Promise<void> {
    return this.predictor.close();
  }
}
