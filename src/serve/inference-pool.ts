import { Worker } from 'node:worker_threads';
import type { EngineInfo } from '../engine/index.js';
import type { ModelMetadata } from '../models/metadata.js';
import { fromWire, type FromWorker, type InferenceTask, type TaskResults, type ToWorker, type WorkerSetup } from './inference-protocol.js';

// Compiled (dist/), the worker is plain JavaScript; run from the sources, it needs tsx's loader, which workers do not
// inherit: the .mjs entry registers it first.
const WORKER_ENTRY = new URL(import.meta.url.endsWith('.ts') ? './inference-worker.mjs' : './inference-worker.js', import.meta.url);

/** Longest wait before trying again to start an inference thread that failed to start. */
const MAX_RESTART_DELAY = 30_000;

/** No inference thread could do the work (one stopped, is restarting, or the pool is closing): worth a retry. */
export class InferenceUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InferenceUnavailableError';
  }
}

export interface PoolOptions extends WorkerSetup {
  /** Inference threads, each with its own copy of the model (default 1). */
  threads?: number;
  /** Where a stopped or restarted thread is reported (default: standard error). */
  log?: (line: string) => void;
}

interface Job {
  id: number;
  message: Extract<ToWorker, { type: 'run' }>;
  resolve: (result: TaskResults[keyof TaskResults]) => void;
  reject: (err: unknown) => void;
  /** Removes the abort listener once the job is settled. */
  done: () => void;
  thread?: Thread;
}

interface Thread {
  worker: Worker;
  ready: boolean;
  jobs: Map<number, Job>;
}

/** One place for a thread: the one running (or starting) there, and how often in a row it failed to start. */
interface Place {
  thread?: Thread;
  failures: number;
  timer?: NodeJS.Timeout;
}

/**
 * The inference threads of the server (node:worker_threads), each running inference-worker.ts: it loads the model
 * once, and decodes, predicts and explains the uploads sent to it, so that the event loop that answers HTTP stays free
 * however long the network runs. A request goes to the ready thread with the fewest requests in hand (within a
 * thread, concurrent predictions are batched). A thread that dies is started again; the requests it had in hand fail
 * with InferenceUnavailableError, as do requests made while no thread is running and none is starting. `close()`
 * terminates the threads.
 */
export class InferencePool {
  private readonly places: Place[];
  /** Requests waiting for a thread to become ready (while one restarts). */
  private readonly queue: Job[] = [];
  private nextId = 1;
  private started = false;
  private closed = false;
  private lastFailure = 'not started yet';
  metadata!: ModelMetadata;
  version!: string;
  engine!: EngineInfo;

  private constructor(
    private readonly setup: WorkerSetup,
    threads: number,
    private readonly log: (line: string) => void,
  ) {
    this.places = Array.from({ length: threads }, () => ({ failures: 0 }));
  }

  /**
   * Starts the threads and resolves once every one has loaded the model; rejects with the first failure (an
   * InputError for a folder that is not a valid model), with no thread left running.
   */
  static async start(opts: PoolOptions): Promise<InferencePool> {
    const { threads = 1, log = (line: string) => process.stderr.write(line + '\n'), ...setup } = opts;
    const pool = new InferencePool(setup, Math.max(1, Math.floor(threads)), log);
    try {
      await Promise.all(pool.places.map((_, i) => pool.spawn(i)));
    } catch (err) {
      await pool.close();
      throw err;
    }
    pool.started = true;
    return pool;
  }

  /** Whether a thread is ready to take work now (false while every thread restarts). */
  get available(): boolean {
    return this.places.some((p) => p.thread?.ready);
  }

  /** The running inference threads (for diagnostics and tests). */
  workers(): Worker[] {
    return this.places.flatMap((p) => (p.thread ? [p.thread.worker] : []));
  }

  /**
   * Runs `task` on one encoded upload in an inference thread. `signal` aborting (the client is gone) skips the work
   * not yet started; the promise then rejects once the work already started is over.
   */
  run<K extends InferenceTask['kind']>(task: Extract<InferenceTask, { kind: K }>, data: Uint8Array, name: string, signal?: AbortSignal): Promise<TaskResults[K]> {
    if (this.closed) return Promise.reject(new InferenceUnavailableError('the server is shutting down'));
    if (signal?.aborted) return Promise.reject(signal.reason);
    // A copy that the thread takes over (transferred, not copied again): the caller's buffer stays as it was.
    const bytes = new Uint8Array(data.byteLength);
    bytes.set(data);
    const id = this.nextId++;
    return new Promise<TaskResults[K]>((resolve, reject) => {
      const onAbort = () => this.cancel(job, signal!.reason);
      signal?.addEventListener('abort', onAbort, { once: true });
      const job: Job = {
        id,
        message: { type: 'run', id, bytes, name, task },
        resolve: resolve as Job['resolve'],
        reject,
        done: () => signal?.removeEventListener('abort', onAbort),
      };
      this.queue.push(job);
      this.dispatch();
    });
  }

  /** Sends the waiting requests to ready threads; fails them when no thread is ready or starting. */
  private dispatch(): void {
    while (this.queue.length > 0) {
      let best: Thread | undefined;
      for (const p of this.places) if (p.thread?.ready && (!best || p.thread.jobs.size < best.jobs.size)) best = p.thread;
      if (!best) break;
      const job = this.queue.shift()!;
      job.thread = best;
      best.jobs.set(job.id, job);
      best.worker.postMessage(job.message, [job.message.bytes.buffer as ArrayBuffer]);
    }
    if (this.queue.length > 0 && !this.places.some((p) => p.thread)) {
      this.failQueue(new InferenceUnavailableError(`no inference thread is running (${this.lastFailure}); retry later`));
    }
  }

  private failQueue(err: Error): void {
    for (const job of this.queue.splice(0)) this.settle(job, () => job.reject(err));
  }

  private settle(job: Job, how: () => void): void {
    job.done();
    job.thread?.jobs.delete(job.id);
    how();
  }

  private cancel(job: Job, reason: unknown): void {
    const i = this.queue.indexOf(job);
    if (i >= 0) {
      this.queue.splice(i, 1);
      this.settle(job, () => job.reject(reason));
    } else if (job.thread?.jobs.has(job.id)) {
      const message: ToWorker = { type: 'cancel', id: job.id, reason: reason instanceof Error ? reason.message : String(reason) };
      job.thread.worker.postMessage(message);
    }
  }

  /** Starts the thread of place `index`; resolves once it has loaded the model, rejects if it stops before that. */
  private spawn(index: number): Promise<void> {
    const place = this.places[index];
    const worker = new Worker(WORKER_ENTRY, { workerData: this.setup });
    const thread: Thread = { worker, ready: false, jobs: new Map() };
    place.thread = thread;
    return new Promise((resolve, reject) => {
      let failure: Error | undefined;
      worker.on('message', (msg: FromWorker) => {
        if (msg.type === 'ready') {
          if (this.version === undefined) ({ metadata: this.metadata, version: this.version, engine: this.engine } = msg);
          else if (msg.version !== this.version) {
            // A restarted thread must serve the model the server announced (its version, classes, thresholds).
            failure = new Error(`the model files changed since the server started (version ${this.version}, now ${msg.version}); restart the server to serve them`);
            void worker.terminate();
            return;
          }
          thread.ready = true;
          place.failures = 0;
          resolve();
          this.dispatch();
        } else if (msg.type === 'failed') {
          failure = fromWire(msg.error);
        } else {
          const job = thread.jobs.get(msg.id);
          if (!job) return;
          if (msg.type === 'done') this.settle(job, () => job.resolve(msg.result));
          else this.settle(job, () => job.reject(fromWire(msg.error)));
        }
      });
      worker.on('error', (err) => {
        failure ??= err;
      });
      worker.on('exit', (code) => {
        const wasReady = thread.ready;
        thread.ready = false;
        if (place.thread === thread) place.thread = undefined;
        const reason = failure ? failure.message : `exit code ${code}`;
        const lost = this.closed
          ? new InferenceUnavailableError('the server is shutting down')
          : new InferenceUnavailableError(`the inference thread stopped (${reason}) while this request ran; it is being restarted: retry shortly`);
        for (const job of [...thread.jobs.values()]) this.settle(job, () => job.reject(lost));
        if (!wasReady) reject(failure ?? new Error(`the inference thread exited (code ${code}) before it had loaded the model`));
        if (this.closed || !this.started) return;
        this.lastFailure = reason;
        if (!wasReady) place.failures++;
        this.restart(index, `the inference thread ${wasReady ? 'stopped' : 'failed to start'} (${reason})`);
        // Requests waiting for this thread: they wait for the next start, unless no thread is left to serve them.
        this.dispatch();
      });
    });
  }

  /**
   * Starts the thread of place `index` again: at once after a crash (requests wait for it meanwhile), after a growing
   * delay when it keeps failing to start (requests fail meanwhile).
   */
  private restart(index: number, why: string): void {
    const place = this.places[index];
    const delay = place.failures === 0 ? 0 : Math.min(MAX_RESTART_DELAY, 1000 * 2 ** (place.failures - 1));
    this.log(`fundus serve: ${why}; starting it again${delay ? ` in ${delay / 1000} s` : ''}`);
    const attempt = () => {
      place.timer = undefined;
      if (this.closed) return;
      try {
        this.spawn(index).catch(() => {}); // a failure to start ends in its 'exit', handled there
      } catch (err) {
        this.lastFailure = (err as Error).message;
        place.failures++;
        this.restart(index, `the inference thread could not be started (${this.lastFailure})`);
      }
    };
    if (delay === 0) attempt();
    else {
      place.timer = setTimeout(attempt, delay);
      place.timer.unref();
    }
  }

  /** Terminates the threads; requests in hand or waiting fail with InferenceUnavailableError. */
  async close(): Promise<void> {
    this.closed = true;
    this.failQueue(new InferenceUnavailableError('the server is shutting down'));
    for (const p of this.places) clearTimeout(p.timer);
    await Promise.all(this.workers().map((w) => w.terminate()));
  }
}
