import type { FundusModel } from '../models/io.js';
import { modelLimitations } from '../models/card.js';
import { CAM_METHODS, type CamMethod } from '../explain/cam.js';
import { defaultExplanation, type DefaultExplanation } from '../explain/explainer.js';
import type { EngineInfo } from '../engine/index.js';
import { InputError } from '../util/errors.js';
import type { ModelCard } from './api-types.js';
import { InferencePool } from './inference-pool.js';
import type { TaskResults } from './inference-protocol.js';
import type { Explanation, OverlayStyle, Prediction } from './model-runner.js';

export type { Explanation, OverlayStyle, Prediction };

export interface ServiceOptions {
  /** Largest batch formed from concurrent predictions (default 16). */
  maxBatch?: number;
  /** Refuse photographs that fail the gradability gate (default true; see RunnerOptions). */
  gradabilityCheck?: boolean;
  /** Inference threads, each with its own copy of the model (default 1: the engine already uses every core). */
  threads?: number;
  /** Where a stopped or restarted inference thread is reported (default: standard error). */
  log?: (line: string) => void;
}

/** A Buffer again for what crossed from the inference thread as a plain Uint8Array. */
const asBuffer = (u: Uint8Array) => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

/**
 * The model behind the HTTP API, as the event loop sees it: its card and version, and its work done on inference
 * threads (InferencePool), so that however long a prediction or a heatmap takes, the loop stays free to answer
 * health checks and enforce timeouts. Call `close()` when done: it terminates the threads.
 */
export class ModelService {
  private constructor(
    private readonly pool: InferencePool,
    /** The model's folder and metadata (its network lives in the inference threads). */
    readonly model: Pick<FundusModel, 'dir' | 'metadata'>,
    /** The model card's limitations, shown with the model (the viewer's "About this model"). */
    private readonly limitations: string[],
  ) {}

  /** Starts the inference threads on the model in `dir` (InputError when it is not a valid model). */
  static async load(dir: string, opts: ServiceOptions = {}): Promise<ModelService> {
    const pool = await InferencePool.start({ modelDir: dir, maxBatch: opts.maxBatch, gradabilityCheck: opts.gradabilityCheck, threads: opts.threads, log: opts.log });
    return new ModelService(pool, { dir, metadata: pool.metadata }, await modelLimitations(dir));
  }

  get version(): string {
    return this.pool.version;
  }

  /** The engine the inference threads run on. */
  get engine(): EngineInfo {
    return this.pool.engine;
  }

  /** Whether an inference thread is ready now (false while it restarts). */
  get available(): boolean {
    return this.pool.available;
  }

  /** The inference threads (diagnostics and tests). */
  get threads() {
    return this.pool.workers();
  }

  /** The method and layer of a heatmap asked for without a method (the model's own, else fundus's global default). */
  get defaultExplanation(): DefaultExplanation {
    return defaultExplanation(this.model);
  }

  get classes(): string[] {
    return this.model.metadata.classes;
  }

  card(): ModelCard {
    const m = this.model.metadata;
    const explanation = this.defaultExplanation;
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
      defaultExplainMethod: explanation.method,
      ...(explanation.layer !== undefined ? { defaultExplainLayer: explanation.layer } : {}),
      ...(m.explanation?.classes ? { defaultExplainLayerByClass: Object.fromEntries(Object.entries(m.explanation.classes).map(([c, e]) => [c, e.layer])) } : {}),
      ...(explanation.chosenBy !== undefined ? { defaultExplainChosenBy: explanation.chosenBy } : {}),
      ...(m.backbone ? { backbone: m.backbone } : {}),
      ...(m.inference ? { inference: m.inference } : {}),
      ...(m.trainingData ? { trainingData: m.trainingData } : {}),
      ...(m.metrics ? { metrics: m.metrics } : {}),
      ...(this.limitations.length ? { limitations: this.limitations } : {}),
      createdAt: m.createdAt,
      fundusVersion: m.fundusVersion,
    };
  }

  /**
   * Checks and predicts one encoded image; `name` names it in errors. When `signal` aborts before the image's batch
   * runs, the image is left out and the promise rejects with the abort reason.
   */
  predict(data: Buffer, name: string, signal?: AbortSignal): Promise<Prediction> {
    return this.pool.run({ kind: 'predict' }, data, name, signal);
  }

  /**
   * The heatmap of class `classIndex` for one encoded image, with the crop it covers in photo coordinates, and drawn
   * over the photograph (PNG) when `overlay` is given.
   */
  async explain(data: Buffer, name: string, classIndex: number, method: CamMethod, overlay?: OverlayStyle, signal?: AbortSignal): Promise<Explanation> {
    const r: TaskResults['explain'] = await this.pool.run({ kind: 'explain', classIndex, method, overlay }, data, name, signal);
    return { ...r, png: r.png && asBuffer(r.png) };
  }

  /** The photograph as the server decodes it, as PNG. */
  async photo(data: Buffer, name: string, signal?: AbortSignal): Promise<Buffer> {
    return asBuffer(await this.pool.run({ kind: 'photo' }, data, name, signal));
  }

  /** Terminates the inference threads; requests still in hand fail with InferenceUnavailableError. */
  close(): Promise<void> {
    return this.pool.close();
  }

  classIndex(name: string): number {
    const i = this.classes.indexOf(name);
    if (i >= 0) return i;
    if (/^\d+$/.test(name) && Number(name) < this.classes.length) return Number(name);
    throw new InputError(`unknown class "${name}" (this model's classes: ${this.classes.join(', ')})`);
  }
}
