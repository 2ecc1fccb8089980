// The native side of `npm run bench:backbones` (benchmarks/backbones.ts runs each network on each side in its own
// process so that peak RSS is per network and side): one pretrained backbone as createNetwork builds it (ImageNet
// weights, fundus's 7-output head), RGB 224x224, batch 16: training step (Adam, sigmoid cross-entropy on the logits,
// `training: true`) and inference images/s; then, as diagnostics, the training step's kernel profile and, with
// --conv, the network's Conv2D FLOPs against the time its convolution kernels take in profiled forward passes.
// Usage: tsx benchmarks/backbones-worker.ts <resnet50|mobilenetv2> [--train-steps N] [--infer-batches N]
//        [--batch 16] [--size 224] [--profile] [--conv] [--no-warmup]
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { initEngine } from '../src/engine/index.js';
import { NATIVE_KERNELS } from '../src/engine/backend.js';
import { profileKernels } from '../src/engine/profile.js';
import { predictFolded } from '../src/engine/inference.js';
import { createNetwork, logitsModel } from '../src/models/architectures.js';
import { arg, medianSeconds } from './timing.js';

const CLASSES = 7;
const CONV_KERNELS = new Set(['Conv2D', 'FusedConv2D']);
const PROFILED_FORWARD_PASSES = 3;

const warmup = !process.argv.includes('--no-warmup');

const timeIt = (fn: () => void, reps: number): number => medianSeconds(fn, reps, warmup);

/** Forward FLOPs of the network's Conv2D layers: 2*N*OH*OW*O*C*KH*KW each (depthwise convolutions not counted). */
function convLayerFlops(model: tfl.LayersModel, batch: number): { layers: number; flops: number } {
  let layers = 0;
  let flops = 0;
  for (const l of model.layers) {
    if (l.getClassName() !== 'Conv2D') continue;
    const [kh, kw, c, o] = l.getWeights()[0].shape;
    const [, oh, ow] = (l.output as tfl.SymbolicTensor).shape as number[];
    layers++;
    flops += 2 * batch * oh * ow * o * c * kh * kw;
  }
  return { layers, flops };
}

/**
 * The kernel profile of the training step, top kernels first, marking the kernels that have no native implementation
 * (the JS CPU backend's). Entries named `<op>__op` are tfjs's wrappers of ops with a custom gradient (fused conv and
 * matmul): their time is that of the kernels they call, so they are shown but not counted in the totals.
 */
function formatTrainProfile(p: Awaited<ReturnType<typeof profileKernels>>, top: number): string {
  const native = new Set(NATIVE_KERNELS.map((k) => k.kernelName));
  const wrapper = (name: string) => name.endsWith('__op');
  const kernelMs = p.kernels.filter((k) => !wrapper(k.kernel)).reduce((s, k) => s + k.ms, 0);
  const lines = [`  total ${p.totalMs.toFixed(1)} ms (kernels ${kernelMs.toFixed(1)} ms)`];
  for (const k of p.kernels.slice(0, top)) {
    const share = wrapper(k.kernel) ? '-' : `${((100 * k.ms) / kernelMs).toFixed(1)}%`;
    const where = wrapper(k.kernel) ? '   (op wrapper: the kernels it calls)' : native.has(k.kernel) ? '' : '   JS fallback';
    lines.push(`  ${k.kernel.padEnd(36)} ${String(k.calls).padStart(5)} calls ${k.ms.toFixed(1).padStart(9)} ms ${share.padStart(6)}${where}`);
  }
  const js = p.kernels.filter((k) => !wrapper(k.kernel) && !native.has(k.kernel) && k.ms > 0);
  const jsMs = js.reduce((s, k) => s + k.ms, 0);
  const names = js.map((k) => `${k.kernel} ${k.ms.toFixed(1)} ms`).join(', ');
  lines.push(`  JS fallback kernels: ${jsMs.toFixed(1)} ms (${((100 * jsMs) / kernelMs).toFixed(1)}%): ${names}`);
  return lines.join('\n');
}

interface ConvShape {
  shape: string;
  calls: number;
  flops: number;
  ms: number;
}

/**
 * Times the convolution kernels (Conv2D, FusedConv2D: the layers' bias and activation are fused into the kernel) in
 * profiled inference passes; the median pass counts. Also groups them by shape, slowest total first.
 */
async function profileConvs(model: tfl.LayersModel, x: tf.Tensor, batch: number) {
  const { layers, flops } = convLayerFlops(model, batch);
  const passes: { ms: number; kernels: number; shapes: Map<string, ConvShape> }[] = [];
  for (let i = 0; i < PROFILED_FORWARD_PASSES; i++) {
    const info = await tf.profile(() => {
      tf.tidy(() => {
        (model.predict(x) as tf.Tensor).dataSync();
      });
    });
    let ms = 0;
    let kernels = 0;
    const shapes = new Map<string, ConvShape>();
    for (const k of info.kernels) {
      if (!CONV_KERNELS.has(k.name)) continue;
      const t = await k.kernelTimeMs;
      if (typeof t !== 'number') throw new Error(`kernel ${k.name} has no time: ${t.error}`);
      const [, h, , c] = k.inputShapes[0];
      const [kh, kw, , o] = k.inputShapes[1];
      const [n, oh, ow] = k.outputShapes[0];
      const stride = Math.round(h / oh);
      const key = `${kh}x${kw}/${stride} ${c}->${o} @${h}`;
      const f = 2 * n * oh * ow * o * c * kh * kw;
      const e = shapes.get(key) ?? { shape: key, calls: 0, flops: 0, ms: 0 };
      e.calls++;
      e.flops += f;
      e.ms += t;
      shapes.set(key, e);
      ms += t;
      kernels++;
    }
    passes.push({ ms, kernels, shapes });
  }
  passes.sort((a, b) => a.ms - b.ms);
  const median = passes[Math.floor((passes.length - 1) / 2)];
  if (median.kernels !== layers) throw new Error(`profiled ${median.kernels} convolution kernels for ${layers} Conv2D layers`);
  const byShape = [...median.shapes.values()].sort((a, b) => b.ms - a.ms).map((s) => ({ ...s, gflops: s.flops / s.ms / 1e6 }));
  return { layers, flops, ms: median.ms, gflops: flops / median.ms / 1e6, byShape };
}

async function main(): Promise<void> {
  const network = process.argv[2];
  if (network !== 'resnet50' && network !== 'mobilenetv2') throw new Error(`usage: backbones-worker.ts <resnet50|mobilenetv2> (got ${network})`);
  const trainSteps = arg('--train-steps', 3);
  const inferBatches = arg('--infer-batches', 5);
  const batch = arg('--batch', 16);
  const size = arg('--size', 224);
  const info = await initEngine();
  if (info.backend !== 'native') throw new Error(`native engine unavailable: ${info.reason}`);
  const result: Record<string, unknown> = { side: 'native', network, threads: info.threads, batch, size, version: `oneDNN ${info.onednn}` };

  // backbones.ts has checked that the weights are there (ResNet-50's are fetched, not shipped).
  const model = (await createNetwork(network, [size, size, 3], CLASSES, { seed: 1 })).network;
  const logits = logitsModel(model);
  const x = tf.randomUniform([batch, size, size, 3], 0, 1, 'float32', 1);
  // The same multi-hot labels as the peer.
  const labels = tf.tensor2d(
    Array.from({ length: batch }, (_, i) => Array.from({ length: CLASSES }, (_, j) => ((i * CLASSES + j) % 3 === 0 ? 1 : 0))),
  );

  // Inference as fundus predicts (models/predict.ts): batch norms folded, activations and residual additions fused
  // (engine/inference.ts); a tidy must not return the typed array.
  if (inferBatches > 0) {
    const s = timeIt(() => {
      tf.tidy(() => {
        predictFolded(model, x).dataSync();
      });
    }, inferBatches);
    result.inferImagesPerSecond = batch / s;
  }

  let step: (() => void) | undefined;
  if (trainSteps > 0) {
    const optimizer = tf.train.adam(1e-3);
    step = () => {
      const loss = optimizer.minimize(() => {
        const out = logits.apply(x, { training: true }) as tf.Tensor;
        return tf.losses.sigmoidCrossEntropy(labels, out) as tf.Scalar;
      }, true);
      loss!.dataSync();
      loss!.dispose();
    };
    result.trainImagesPerSecond = batch / timeIt(step, trainSteps);
  }

  // Peak RSS of inference + training, before the diagnostics below, as the peer does before its ONNX export.
  result.peakRssBytes = process.resourceUsage().maxRSS * 1024;

  if (step && process.argv.includes('--profile')) result.profile = formatTrainProfile(await profileKernels(step), 20);
  if (process.argv.includes('--conv')) result.conv = await profileConvs(model, x, batch);
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

await main();
