import { Worker } from 'node:worker_threads';
import { preprocessImage, type CropGeometry, type PreprocessedImage, type PreprocessSettings } from './preprocess.js';
import { InputError } from '../util/errors.js';

export interface DecodeRequest {
  id: number;
  input: string | Uint8Array;
  settings: PreprocessSettings;
}

export type DecodeReply =
  | { id: number; ok: true; data: Float32Array; size: number; channels: number; geometry: CropGeometry }
  | { id: number; ok: false; inputError: boolean; message: string };

// Compiled (dist/), the worker is plain JavaScript; run from the sources, it needs tsx's loader, which workers do
// not inherit: the .mjs entry registers it first.
const WORKER_ENTRY = new URL(import.meta.url.endsWith('.ts') ? './decode-worker.mjs' : './decode-worker.js', import.meta.url);

interface Waiting {
  resolve: (im: PreprocessedImage) => void;
  reject: (err: unknown) => void;
  worker: Worker;
  input: string | Buffer;
  settings: PreprocessSettings;
}

/**
 * Worker threads that preprocess photos, so that the inference thread only runs the network. Falls back to
 * preprocessing in the calling thread if a worker cannot start or dies, so a broken worker never fails a run.
 */
export class DecodePool {
  private readonly workers: Worker[] = [];
  private readonly waiting = new Map<number, Waiting>();
  private nextId = 0;
  private turn = 0;
  private broken = false;

  constructor(size: number) {
    for (let i = 0; i < size; i++) {
      let w: Worker;
      try {
        w = new Worker(WORKER_ENTRY);
      } catch {
        this.broken = true;
        break;
      }
      // An idle pool must not keep the process alive.
      w.unref();
      w.on('message', (reply: DecodeReply) => this.settle(reply));
      w.on('error', (err) => this.fail(w, err));
      w.on('exit', (code) => this.fail(w, new Error(`decode worker exited with code ${code}`)));
      this.workers.push(w);
    }
  }

  private settle(reply: DecodeReply): void {
    const w = this.waiting.get(reply.id);
    if (!w) return;
    this.waiting.delete(reply.id);
    if (reply.ok) w.resolve({ data: reply.data, size: reply.size, channels: reply.channels, geometry: reply.geometry });
    else w.reject(reply.inputError ? new InputError(reply.message) : new Error(reply.message));
  }

  private fail(worker: Worker, _err: Error): void {
    this.broken = true;
    // What the lost worker had in hand is redone here: a worker crash costs time, never a result.
    for (const [id, w] of this.waiting) {
      if (w.worker !== worker) continue;
      this.waiting.delete(id);
      preprocessImage(w.input, w.settings).then(w.resolve, w.reject);
    }
  }

  /** `preprocessImage` on a worker (round robin). */
  preprocess(input: string | Buffer, settings: PreprocessSettings): Promise<PreprocessedImage> {
    if (this.broken || this.workers.length === 0) return preprocessImage(input, settings);
    const worker = this.workers[this.turn++ % this.workers.length];
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject, worker, input, settings });
      worker.ref();
      const request: DecodeRequest = { id, input: typeof input === 'string' ? input : new Uint8Array(input), settings };
      worker.postMessage(request);
    }).finally(() => {
      if (![...this.waiting.values()].some((w) => w.worker === worker)) worker.unref();
    }) as Promise<PreprocessedImage>;
  }

  async close(): Promise<void> {
    this.broken = true;
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
