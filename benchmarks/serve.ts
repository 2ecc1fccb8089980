// Serving speed: the predict CLI's throughput against the engine's raw inference rate on the same images (target
// ≥ 80%: decoding must not dominate), and /v1/predict under concurrent load from a second process on loopback.
// Run: npm run bench:serve -- [--model models/default] [--images 256] [--batch 16] [--duration 10] [--connections 8]
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { readdirSync, existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import * as tf from '@tensorflow/tfjs-core';
import { initEngine } from '../src/engine/index.js';
import { initBatchPrediction } from '../src/models/predictor.js';
import { loadModel, saveModel, type FundusModel } from '../src/models/io.js';
import { buildNetwork } from '../src/models/architectures.js';
import { predictTensor } from '../src/models/predict.js';
import { preprocessImage } from '../src/data/preprocess.js';
import { CLASSES } from '../src/data/labels.js';
import { runPredict } from '../src/serve/predict-cli.js';
import { DEFAULT_MODEL_DIR } from '../src/models/io.js';

const argv = process.argv.slice(2);
const opt = (name: string, dflt: string): string => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : dflt;
};
const nImages = Number(opt('images', '256'));
const batchSize = Number(opt('batch', '16'));
const duration = Number(opt('duration', '10'));
const connections = Number(opt('connections', '8'));
const ROOT = join(import.meta.dirname, '..');
const VIETAI = join(ROOT, '..', 'shared', 'data', 'vietai', 'train');

// `--raw-only`: this script as a child process that times raw inference with the engine's training settings (see
// EngineOptions.workload), so that the ratio is never flattered by an engine slowed down for the predict CLI.
const rawOnly = argv.includes('--raw-only');
const engine = rawOnly ? await initEngine() : await initBatchPrediction();
const tmp = await mkdtemp(join(tmpdir(), 'fundus-bench-serve-'));

/** The bundled model when it exists; otherwise an untrained network of the same family, so the timing is real. */
async function benchModel(): Promise<{ dir: string; note: string }> {
  const explicit = opt('model', '');
  if (explicit) return { dir: explicit, note: explicit };
  if (existsSync(join(DEFAULT_MODEL_DIR, 'fundus.json'))) return { dir: DEFAULT_MODEL_DIR, note: 'models/default' };
  const dir = join(tmp, 'model');
  const shape: [number, number, number] = [224, 224, 3];
  await saveModel(dir, buildNetwork('resnet18-narrow', shape, CLASSES.length, { seed: 1 }), {
    format: 'fundus-model',
    formatVersion: 1,
    architecture: 'resnet18-narrow',
    task: 'multilabel',
    classes: [...CLASSES],
    activation: 'sigmoid',
    preprocess: { crop: true, size: 224, channels: 'rgb', clahe: false, normalize: { mean: [0.5], std: [0.25] } },
    inputShape: shape,
    thresholds: CLASSES.map(() => 0.5),
    thresholdPolicy: 'default 0.5',
    createdAt: new Date().toISOString(),
    fundusVersion: '0.1.0',
  });
  return { dir, note: 'untrained resnet18-narrow 224 (models/default not present)' };
}

interface Rate {
  imagesPerSecond: number;
  /** CPU time of the whole process per image (all threads), in ms: where the two cores went. */
  cpuMsPerImage: number;
}

function timed(n: number, run: () => Promise<unknown> | unknown): Promise<Rate> {
  return (async () => {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await run();
    const seconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(c0);
    return { imagesPerSecond: n / seconds, cpuMsPerImage: (cpu.user + cpu.system) / 1000 / n };
  })();
}

/** The images as network input, batch by batch: made once, so that the timed runs allocate nothing. */
async function inputBatches(model: FundusModel, images: string[]): Promise<tf.Tensor4D[]> {
  const [h, w, c] = model.metadata.inputShape;
  const pre = await Promise.all(images.map((p) => preprocessImage(p, model.metadata.preprocess)));
  const batches: tf.Tensor4D[] = [];
  for (let s = 0; s < pre.length; s += batchSize) {
    const part = pre.slice(s, s + batchSize);
    const buf = new Float32Array(part.length * h * w * c);
    part.forEach((im, i) => buf.set(im.data, i * h * w * c));
    batches.push(tf.tensor4d(buf, [part.length, h, w, c]));
  }
  return batches;
}

async function rawInference(model: FundusModel, batches: tf.Tensor4D[]): Promise<Rate> {
  predictTensor(model, batches[0]); // warm-up
  return timed(batches.reduce((n, b) => n + b.shape[0], 0), () => batches.forEach((b) => predictTensor(model, b)));
}

async function cliThroughput(model: FundusModel, images: string[]): Promise<Rate> {
  return timed(images.length, async () => {
    const s = await runPredict({ model, images, format: 'json', out: join(tmp, 'preds.jsonl'), batchSize, quiet: true });
    if (s.failed.length) throw new Error(`predict failed on ${s.failed.length} images`);
  });
}

async function load(url: string, image: string, c: number): Promise<{ rps: number; p50: number; p95: number; p99: number; non2xx: number; errors: number }> {
  // The server runs in this process (so the call must not block its event loop); the load comes from another
  // process, over loopback.
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--import', 'tsx', join(ROOT, 'benchmarks', 'serve-load.ts'), url, image, String(c), String(duration)],
    { encoding: 'utf8', timeout: (duration + 60) * 1000 },
  );
  return JSON.parse(stdout.trim().split('\n').pop()!);
}

async function rawInferenceWithTrainingSettings(dir: string): Promise<Rate> {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--import', 'tsx', join(ROOT, 'benchmarks', 'serve.ts'), '--raw-only', '--model', dir, '--images', String(nImages), '--batch', String(batchSize)],
    { encoding: 'utf8', timeout: 300_000 },
  );
  return JSON.parse(stdout.trim().split('\n').pop()!) as Rate;
}

function startServeProcess(dir: string): Promise<{ url: string; stop: () => void }> {
  const child = spawn(process.execPath, [join(ROOT, 'bin', 'fundus.js'), 'serve', dir, '--port', '0', '--max-in-flight', '256', '--batch-size', String(batchSize)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const m = /fundus serve: (http:\/\/\S+)/.exec(out);
      if (m) resolve({ url: m[1], stop: () => child.kill() });
    });
    child.once('exit', (code) => reject(new Error(`fundus serve exited (${code}) before listening: ${out}`)));
  });
}

try {
  const { dir, note } = await benchModel();
  const model = await loadModel(dir);
  const images = readdirSync(VIETAI).filter((f) => f.endsWith('.jpg')).sort().slice(0, nImages).map((f) => join(VIETAI, f));
  if (rawOnly) {
    const batches = await inputBatches(model, images);
    let best: Rate = { imagesPerSecond: 0, cpuMsPerImage: 0 };
    for (let rep = 0; rep < 5; rep++) {
      const r = await rawInference(model, batches);
      if (r.imagesPerSecond > best.imagesPerSecond) best = r;
    }
    console.log(JSON.stringify(best));
    await rm(tmp, { recursive: true, force: true });
    process.exit(0);
  }
  console.log(`serve benchmark: model ${note} (${model.metadata.architecture}, input ${model.metadata.inputShape.join('x')}), engine ${engine.backend}, ${images.length} VietAI images, batch ${batchSize}`);

  // Alternated, best of five each: load from other processes on a shared machine then hits both alike. The CLI's
  // first rounds are cold (measured: 580, 665, 750, then 850-1030 images/s from the fourth round on, with CPU per
  // image falling from 2.9 to 1.9 ms: JIT, the thread pool's per-thread buffers), so three unmeasured rounds come
  // first, as raw inference gets its warm-up call.
  let raw: Rate = { imagesPerSecond: 0, cpuMsPerImage: 0 };
  let cli: Rate = { imagesPerSecond: 0, cpuMsPerImage: 0 };
  const paired: number[] = [];
  const batches = await inputBatches(model, images);
  for (let rep = 0; rep < 3; rep++) await cliThroughput(model, images);
  for (let rep = 0; rep < 5; rep++) {
    const r = await rawInference(model, batches);
    const c = await cliThroughput(model, images);
    paired.push(c.imagesPerSecond / r.imagesPerSecond);
    if (r.imagesPerSecond > raw.imagesPerSecond) raw = r;
    if (c.imagesPerSecond > cli.imagesPerSecond) cli = c;
  }
  batches.forEach((b) => b.dispose());
  const trainingRaw = await rawInferenceWithTrainingSettings(dir);
  const cpu = (r: Rate) => `${r.cpuMsPerImage.toFixed(2)} ms of CPU per image`;
  console.log(`raw inference (preprocessed tensors, predictTensor), predict CLI settings: ${raw.imagesPerSecond.toFixed(1)} images/s, ${cpu(raw)}`);
  console.log(`raw inference, training settings (own process): ${trainingRaw.imagesPerSecond.toFixed(1)} images/s, ${cpu(trainingRaw)}`);
  console.log(`predict CLI (decode + preprocess + inference + output, model loaded): ${cli.imagesPerSecond.toFixed(1)} images/s, ${cpu(cli)}`);
  // Against the faster of the two raw rates.
  const best = Math.max(raw.imagesPerSecond, trainingRaw.imagesPerSecond);
  console.log(`ratio predict-cli/raw-inference: ${(cli.imagesPerSecond / best).toFixed(2)}  (target >= 0.80; best of 5 each; paired runs ${paired.map((x) => x.toFixed(2)).join(', ')})`);

  // Bounded memory: the resident set after predicting 8× as many images (JSON Lines to a file) should not grow with
  // the count, since results stream out and at most two batches of images are in memory.
  const many = Array.from({ length: 8 }, () => images).flat();
  const rss0 = process.memoryUsage().rss;
  let peak = rss0;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 50);
  const manyRun = await runPredict({ model, images: many, format: 'json', out: join(tmp, 'many.jsonl'), batchSize, quiet: true });
  clearInterval(sampler);
  peak = Math.max(peak, process.memoryUsage().rss);
  console.log(
    `predict CLI memory: ${many.length} images at ${(many.length / manyRun.seconds).toFixed(1)} images/s, resident set ${(rss0 / 2 ** 20).toFixed(0)} MiB before, peak ${(peak / 2 ** 20).toFixed(0)} MiB (+${((peak - rss0) / 2 ** 20).toFixed(0)} MiB)`,
  );

  // The server as users start it, in its own process (its engine settings are not the predict CLI's), and the load
  // from a third one.
  const { url, stop } = await startServeProcess(dir);
  try {
    for (const c of [1, connections]) {
      const r = await load(url + 'v1/predict', images[0], c);
      console.log(
        `/v1/predict ${c} connection${c === 1 ? '' : 's'}, ${duration} s: ${r.rps.toFixed(1)} req/s, p50 ${r.p50.toFixed(0)} ms, p95 ${r.p95.toFixed(0)} ms, p99 ${r.p99.toFixed(0)} ms, non-2xx ${r.non2xx}, errors ${r.errors}`,
      );
    }
  } finally {
    stop();
  }
} finally {
  await rm(tmp, { recursive: true, force: true });
}
