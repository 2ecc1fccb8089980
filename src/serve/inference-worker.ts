import { parentPort, workerData } from 'node:worker_threads';
import { initEngine } from '../engine/index.js';
import { toWire, type FromWorker, type InferenceTask, type TaskResults, type ToWorker, type WorkerSetup } from './inference-protocol.js';
import { ModelRunner } from './model-runner.js';

// The server's inference thread: loads the model once and answers the event loop's requests (inference-pool.ts), so
// that decoding, the network and heatmaps (Score-CAM runs for seconds) never hold up the loop that answers health
// checks and enforces timeouts.
const port = parentPort!;
const setup = workerData as WorkerSetup;
const post = (msg: FromWorker) => port.postMessage(msg);

function perform(runner: ModelRunner, task: InferenceTask, data: Buffer, name: string, signal: AbortSignal): Promise<TaskResults[keyof TaskResults]> {
  switch (task.kind) {
    case 'predict':
      return runner.predict(data, name, signal);
    case 'explain':
      return runner.explain(data, name, task.classIndex, task.method, task.overlay, signal);
    case 'photo':
      return runner.photo(data, name, signal);
  }
}

/** Answers requests until the event loop terminates this thread; `running` holds those in progress. */
function serve(runner: ModelRunner): void {
  const running = new Map<number, AbortController>();
  port.on('message', (msg: ToWorker) => {
    if (msg.type === 'cancel') {
      running.get(msg.id)?.abort(new Error(msg.reason));
      return;
    }
    const controller = new AbortController();
    running.set(msg.id, controller);
    const data = Buffer.from(msg.bytes.buffer, msg.bytes.byteOffset, msg.bytes.byteLength);
    perform(runner, msg.task, data, msg.name, controller.signal)
      .then(
        (result) => post({ type: 'done', id: msg.id, result }),
        (err: unknown) => post({ type: 'error', id: msg.id, error: toWire(err) }),
      )
      .finally(() => running.delete(msg.id));
  });
}

try {
  const engine = await initEngine();
  const runner = await ModelRunner.load(setup.modelDir, setup);
  serve(runner);
  post({ type: 'ready', metadata: runner.model.metadata, version: runner.version, engine });
} catch (err) {
  post({ type: 'failed', error: toWire(err) });
  port.close(); // nothing else keeps the thread alive: it ends
}
