// The messages between the server's event loop and its inference threads (inference-pool.ts, inference-worker.ts).
import type { CamMethod } from '../explain/cam.js';
import type { EngineInfo } from '../engine/index.js';
import type { ModelMetadata } from '../models/metadata.js';
import { InputError } from '../util/errors.js';
import type { Explanation, OverlayStyle, Prediction, RunnerOptions } from './model-runner.js';

/** What an inference thread is started with. */
export interface WorkerSetup extends RunnerOptions {
  modelDir: string;
}

/** The work one upload asks for. */
export type InferenceTask =
  | { kind: 'predict' }
  | { kind: 'explain'; classIndex: number; method: CamMethod; overlay?: OverlayStyle }
  | { kind: 'photo' };

/** What each kind of task answers. A Buffer crosses threads as a plain Uint8Array. */
export interface TaskResults {
  predict: Prediction;
  explain: Omit<Explanation, 'png'> & { png?: Uint8Array };
  photo: Uint8Array;
}

export type ToWorker =
  | { type: 'run'; id: number; bytes: Uint8Array; name: string; task: InferenceTask }
  /** The client of request `id` is gone: work of it not yet started is skipped. */
  | { type: 'cancel'; id: number; reason: string };

export type FromWorker =
  | { type: 'ready'; metadata: ModelMetadata; version: string; engine: EngineInfo }
  /** The model could not be loaded; the thread then exits. */
  | { type: 'failed'; error: WireError }
  | { type: 'done'; id: number; result: TaskResults[keyof TaskResults] }
  | { type: 'error'; id: number; error: WireError };

/** An error as it crosses threads: an InputError keeps its class, message (file prefix included), file and line. */
export interface WireError {
  name: string;
  message: string;
  input: boolean;
  file?: string;
  line?: number;
  stack?: string;
}

export function toWire(err: unknown): WireError {
  if (!(err instanceof Error)) return { name: 'Error', message: String(err), input: false };
  const input = err instanceof InputError;
  return {
    name: err.name,
    message: err.message,
    input,
    ...(input && err.file !== undefined ? { file: err.file } : {}),
    ...(input && err.line !== undefined ? { line: err.line } : {}),
    ...(err.stack ? { stack: err.stack } : {}),
  };
}

export function fromWire(w: WireError): Error {
  // The message is set as it was: building it again from the file would prefix (and shorten) it a second time.
  const err = w.input ? new InputError('') : new Error();
  err.message = w.message;
  err.name = w.name;
  if (w.input) Object.assign(err, { file: w.file, line: w.line });
  if (w.stack) err.stack = w.stack;
  return err;
}
