// One side of `npm run bench:engine` (benchmarks/engine.ts runs each side in its own process so that peak RSS
// is per side): times the reference AlexNet's training step and inference, and per-layer conv kernels.
// Usage: tsx benchmarks/engine-worker.ts <native|cpu> [--train-steps N] [--infer-batches N] [--profile] [--layers] [--no-warmup]
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-layers';
import { initEngine } from '../src/engine/index.js';
import { buildNetwork } from '../src/models/architectures.js';
import { formatProfile, profileKernels } from '../src/engine/profile.js';
import { bufferPool } from '../src/engine/pool.js';
import { loadAddon } from '../src/engine/addon.js';
import { arg, medianSeconds } from './timing.js';

const BATCH = 32;
const INPUT: [number, number, number] = [227, 227, 1];
const CLASSES = 7;

/** The reference AlexNet's convolutions (input size, channels, filters, kernel, stride, padding) at batch 32. */
export const CONV_LAYERS = [
  { name: 'conv1', hw: 227, c: 1, o: 96, k: 11, s: 4, pad: 'valid' as const },
  { name: 'conv2', hw: 27, c: 96, o: 256, k: 5, s: 1, pad: 'same' as const },
  { name: 'conv3', hw: 13, c: 256, o: 384, k: 3, s: 1, pad: 'same' as const },
  { name: 'conv4', hw: 13, c: 384, o: 384, k: 3, s: 1, pad: 'same' as const },
  { name: 'conv5', hw: 13, c: 384, o: 256, k: 3, s: 1, pad: 'same' as const },
];

const warmup = !process.argv.includes('--no-warmup');

const timeIt = (fn: () => void, reps: number): number => medianSeconds(fn, reps, warmup);

async function main(): Promise<void> {
  const backend = process.argv[2] ?? 'native';
  const trainSteps = arg('--train-steps', 5);
  const inferBatches = arg('--infer-batches', 5);
  let threads = 1;
  if (backend === 'native') {
    const info = await initEngine();
    if (info.backend !== 'native') throw new Error(`native engine unavailable: ${info.reason}`);
    threads = info.threads;
  } else {
    await tf.setBackend('cpu');
  }
  const result: Record<string, unknown> = { side: backend, threads, batch: BATCH };
  const model = buildNetwork('alexnet', INPUT, CLASSES, { seed: 1 } as never);
  const x = tf.randomUniform([BATCH, ...INPUT], 0, 1, 'float32', 1);
  const labels = tf.oneHot(tf.tensor1d(Array.from({ length: BATCH }, (_, i) => i % CLASSES), 'int32'), CLASSES);

  // Inference: the layers model in inference mode (BN uses moving statistics), as predict would run it.
  // (A tidy must not return the typed array: tfjs would walk its millions of elements looking for tensors.)
  const infer = () => {
    tf.tidy(() => {
      (model.predict(x) as tf.Tensor).dataSync();
    });
  };
  if (inferBatches > 0) {
    const s = timeIt(infer, inferBatches);
    result.inferImagesPerSecond = BATCH / s;
  }

  let step: (() => void) | undefined;
  if (trainSteps > 0) {
    const optimizer = tf.train.adam(1e-3);
    step = () => {
      const loss = optimizer.minimize(() => {
        const logits = model.apply(x, { training: true }) as tf.Tensor;
        return tf.losses.softmaxCrossEntropy(labels, logits) as tf.Scalar;
      }, true);
      loss!.dataSync();
      loss!.dispose();
    };
    const s = timeIt(step, trainSteps);
    result.trainImagesPerSecond = BATCH / s;
  }

  // Peak RSS of inference + training, before the diagnostics below (the profile reads every kernel's output) and
  // the per-layer runs, as the peer does.
  result.peakRssBytes = process.resourceUsage().maxRSS * 1024;
  if (backend === 'native') {
    const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
    const m = tf.memory();
    const pool = bufferPool.stats();
    const addon = loadAddon();
    result.memory = `between steps: rss ${mib(process.memoryUsage().rss)}, tensors ${mib(m.numBytes)} (${m.numTensors}), ` +
      `recycled buffers ${mib(pool.freeBytes)}, oneDNN scratch ${mib(addon?.info().scratchBytes ?? 0)}`;
  }

  if (trainSteps > 0 && process.argv.includes('--profile')) {
    const p = await profileKernels(step!);
    result.profile = formatProfile(p, 25);
  }

  if (process.argv.includes('--layers')) {
    const layers: Record<string, unknown>[] = [];
    for (const l of CONV_LAYERS) {
      const xs = tf.randomUniform([BATCH, l.hw, l.hw, l.c]) as tf.Tensor4D;
      const w = tf.randomUniform([l.k, l.k, l.c, l.o]) as tf.Tensor4D;
      const y = tf.conv2d(xs, w, l.s, l.pad);
      const [, oh, ow] = y.shape;
      const flops = 2 * BATCH * oh * ow * l.o * l.c * l.k * l.k;
      const dy = tf.randomUniform(y.shape) as tf.Tensor4D;
      const reps = 3;
      // Kernels run synchronously; disposing the result without reading it times the kernel alone.
      const fwd = timeIt(() => tf.dispose(tf.conv2d(xs, w, l.s, l.pad)), reps);
      const bwdData = timeIt(() => tf.dispose(tf.conv2dTranspose(dy, w, xs.shape, l.s, l.pad)), reps);
      const bwdWeights = timeIt(
        () => tf.dispose(tf.engine().runKernel('Conv2DBackpropFilter', { x: xs, dy }, { strides: l.s, pad: l.pad, dataFormat: 'NHWC', dimRoundingMode: undefined, filterShape: w.shape } as never)),
        reps,
      );
      layers.push({ layer: l.name, flops, forward: flops / fwd / 1e9, backwardData: flops / bwdData / 1e9, backwardWeights: flops / bwdWeights / 1e9 });
      tf.dispose([xs, w, y, dy]);
    }
    result.convGflops = layers;
  }
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

await main();
