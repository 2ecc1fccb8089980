// `npm run bench:engine`: the native engine against the JS CPU backend and PyTorch (CPU, same thread count) on
// the reference AlexNet (green channel 227x227, batch 32): training step and inference images/s, per-layer
// convolution GFLOP/s (forward, backward-data, backward-weights), peak RSS of each side (each runs in its own
// process), the native training step's kernel profile, and three closing ratio lines.
// Options (environment): BENCH_TRAIN_STEPS (5), BENCH_INFER_BATCHES (5), BENCH_CPU_INFER_BATCHES (1),
// FUNDUS_THREADS (default: all cores).
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { configuredThreads } from '../src/engine/addon.js';

interface SideResult {
  side: string;
  threads: number;
  inferImagesPerSecond?: number;
  trainImagesPerSecond?: number;
  peakRssBytes: number;
  convGflops?: { layer: string; forward: number; backwardData: number; backwardWeights: number }[];
  profile?: string;
  memory?: string;
  version?: string;
}

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const env = (name: string, fallback: number) => (process.env[name] ? Number(process.env[name]) : fallback);
const trainSteps = env('BENCH_TRAIN_STEPS', 5);
const inferBatches = env('BENCH_INFER_BATCHES', 5);
const cpuInferBatches = env('BENCH_CPU_INFER_BATCHES', 1);
const threads = configuredThreads();

function runSide(label: string, cmd: string, args: string[]): SideResult {
  process.stderr.write(`bench:engine: running ${label}...\n`);
  const t = performance.now();
  const r = spawnSync(cmd, args, { cwd: root, encoding: 'utf8', env: { ...process.env, FUNDUS_THREADS: String(threads) }, maxBuffer: 64 * 2 ** 20 });
  if (r.status !== 0) {
    process.stderr.write(r.stdout + r.stderr);
    throw new Error(`${label} failed (exit ${r.status})`);
  }
  process.stderr.write(`bench:engine: ${label} took ${((performance.now() - t) / 1000).toFixed(0)} s\n`);
  const line = r.stdout.trim().split('\n').filter((l) => l.startsWith('{')).pop();
  if (!line) throw new Error(`${label} printed no result:\n${r.stdout}${r.stderr}`);
  return JSON.parse(line) as SideResult;
}

const tsx = join(root, 'node_modules', '.bin', 'tsx');
const worker = join(root, 'benchmarks', 'engine-worker.ts');
const native = runSide('native engine', tsx, [worker, 'native', '--train-steps', String(trainSteps), '--infer-batches', String(inferBatches), '--layers', '--profile']);
const pytorch = runSide('PyTorch peer', '/usr/bin/python3', [join(root, 'benchmarks', 'engine_peer.py'), '--threads', String(threads), '--train-steps', String(trainSteps), '--infer-batches', String(inferBatches), '--layers']);
const cpu = runSide('JS CPU backend (inference only)', tsx, [worker, 'cpu', '--train-steps', '0', '--infer-batches', String(cpuInferBatches), '--no-warmup']);

const f = (v: number | undefined, digits = 2) => (v === undefined ? '-' : v.toFixed(digits));
const mib = (b: number) => (b / 2 ** 20).toFixed(0);
console.log(`\nreference AlexNet, green channel 227x227, batch 32, ${threads} thread(s) (native: oneDNN, PyTorch ${pytorch.version})`);
console.log(`${'side'.padEnd(10)} ${'train img/s'.padStart(12)} ${'infer img/s'.padStart(12)} ${'peak RSS MiB'.padStart(13)}`);
for (const s of [native, cpu, pytorch]) {
  console.log(`${s.side.padEnd(10)} ${f(s.trainImagesPerSecond).padStart(12)} ${f(s.inferImagesPerSecond).padStart(12)} ${mib(s.peakRssBytes).padStart(13)}`);
}
console.log('\nconvolution GFLOP/s (batch 32): native | pytorch');
console.log(`${'layer'.padEnd(6)} ${'forward'.padStart(17)} ${'backward-data'.padStart(17)} ${'backward-weights'.padStart(17)}`);
for (const l of native.convGflops ?? []) {
  const p = pytorch.convGflops?.find((q) => q.layer === l.layer);
  const cell = (a: number, b: number | undefined) => `${f(a, 1)} | ${f(b, 1)}`.padStart(17);
  console.log(`${l.layer.padEnd(6)} ${cell(l.forward, p?.forward)} ${cell(l.backwardData, p?.backwardData)} ${cell(l.backwardWeights, p?.backwardWeights)}`);
}
console.log(`\nnative memory ${native.memory ?? '-'}`);
console.log(`\nnative training step, time per kernel:\n${native.profile ?? ''}\n`);
console.log(`ratio train native/pytorch: ${(native.trainImagesPerSecond! / pytorch.trainImagesPerSecond!).toFixed(3)}`);
console.log(`ratio infer native/pytorch: ${(native.inferImagesPerSecond! / pytorch.inferImagesPerSecond!).toFixed(3)}`);
console.log(`ratio peak-rss native/pytorch: ${(native.peakRssBytes / pytorch.peakRssBytes).toFixed(3)}`);
