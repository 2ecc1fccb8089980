// Where ResNet-50's inference time goes in fundus (issue #15): CPU time of whole predictFolded batches and, within
// them, of every native call, grouped by what it computes (the stem's 7x7, the blocks' 1x1 and 3x3 convolutions, the
// residual ones, pooling, padding, ...), the rest being JS (tfjs's bookkeeping, the plan). Run it on one thread:
//   FUNDUS_THREADS=1 taskset -c 1 npx tsx benchmarks/scripts/resnet-profile.ts [<batch>...] [--reps N] [--size S]
// (defaults: batch 16 and 1, 5 repetitions after a warm-up, 224 px; the weights in cache/pretrained, as
// `fundus weights fetch resnet50` puts them).
import * as tf from '@tensorflow/tfjs-core';
import { initEngine } from '../../src/engine/index.js';
import { loadAddon, type NativeAddon } from '../../src/engine/addon.js';
import { foldedSummary, predictFolded } from '../../src/engine/inference.js';
import { createNetwork } from '../../src/models/architectures.js';

const args = process.argv.slice(2);
const option = (name: string, fallback: number) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args.splice(i, 2)[1]) : fallback;
};
const reps = option('--reps', 5);
const size = option('--size', 224);
const batches = args.length > 0 ? args.map(Number) : [16, 1];

const engine = await initEngine();
if (engine.backend !== 'native') throw new Error(`the native engine is not available (${engine.backend})`);
const model = (await createNetwork('resnet50', [size, size, 3], 7, { seed: 1 })).network;
const os = await import('node:os');
console.log(`ResNet-50 at ${size} px, plan ${JSON.stringify(foldedSummary(model))}, ${engine.threads} thread(s), load ${os.loadavg()[0].toFixed(1)}`);

const cpuMs = () => {
  const c = process.cpuUsage();
  return (c.user + c.system) / 1000;
};

/** What a native call computes, from its arguments: convolutions by kernel size, stride, residual and map size. */
function label(name: string, a: unknown[]): string {
  if (name !== 'conv2dForward') return name;
  const [, , h, , , kh, , , , sh] = a[4] as number[];
  if (kh === 7) return 'conv 7x7 s2 (stem)';
  return `conv ${kh}x${kh}${sh > 1 ? ' s2' : ''}${a[6] instanceof Float32Array ? ' +residual' : ''} at ${h}x${h}`;
}

const addon = loadAddon() as NativeAddon & Record<string, unknown>;
const totals = new Map<string, { ms: number; calls: number }>();
let recording = false;
for (const [name, f] of Object.entries(addon)) {
  if (typeof f !== 'function' || name === 'info') continue;
  const original = f as (...a: unknown[]) => unknown;
  addon[name] = (...a: unknown[]) => {
    if (!recording) return original(...a);
    const t = cpuMs();
    const r = original(...a);
    const key = label(name, a);
    const e = totals.get(key) ?? { ms: 0, calls: 0 };
    e.ms += cpuMs() - t;
    e.calls += 1;
    totals.set(key, e);
    return r;
  };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
for (const batch of batches) {
  const x = tf.randomUniform([batch, size, size, 3], 0, 255, 'float32', 7);
  tf.tidy(() => predictFolded(model, x).dataSync());
  totals.clear();
  const whole: number[] = [];
  for (let i = 0; i < reps; i++) {
    recording = true;
    const t = cpuMs();
    tf.tidy(() => predictFolded(model, x).dataSync());
    whole.push(cpuMs() - t);
    recording = false;
  }
  const total = whole.reduce((s, v) => s + v, 0);
  const native = [...totals.values()].reduce((s, v) => s + v.ms, 0);
  console.log(`\nbatch ${batch}: ${median(whole).toFixed(1)} ms CPU per batch (median of ${reps}; ${whole.map((v) => v.toFixed(0)).join(', ')})`);
  for (const [k, v] of [...totals.entries()].sort((a, b) => b[1].ms - a[1].ms)) {
    console.log(`  ${k.padEnd(32)} ${String(v.calls / reps).padStart(4)} calls ${(v.ms / reps).toFixed(1).padStart(8)} ms ${((100 * v.ms) / total).toFixed(1).padStart(5)} %`);
  }
  console.log(`  ${'outside native calls (JS)'.padEnd(32)} ${''.padStart(10)} ${((total - native) / reps).toFixed(1).padStart(8)} ms ${((100 * (total - native)) / total).toFixed(1).padStart(5)} %`);
  x.dispose();
}
