// What running MobileNetV2's inverted-residual blocks as one kernel each saves (src/engine/kernels/conv.ts,
// FundusInvertedResidual), or with --network resnet50 what summing ResNet-50's residuals in place saves
// (FundusConv2DResidual writing into the shortcut's memory): CPU time of one inference batch through predictFolded
// as in production and with FUNDUS_BLOCK_FUSION=off (every block as three convolutions, every residual copied into a
// new output), the two alternating in one process so that both see the same load. Run it on one thread for figures
// that other jobs on the machine move least:
//   FUNDUS_THREADS=1 taskset -c 1 npx tsx benchmarks/scripts/block-fusion-cost.ts [<batch>...] [--pairs N] [--size S] [--network mobilenetv2|resnet50]
// (defaults: batches 16 and 1, 15 pairs, 224 px, MobileNetV2; ResNet-50's weights in cache/pretrained, as
// `fundus weights fetch resnet50` puts them).
import * as tf from '@tensorflow/tfjs-core';
import { initEngine } from '../../src/engine/index.js';
import { foldedSummary, predictFolded } from '../../src/engine/inference.js';
import { createNetwork } from '../../src/models/architectures.js';

const args = process.argv.slice(2);
const option = (name: string, fallback: number) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args.splice(i, 2)[1]) : fallback;
};
const networkAt = args.indexOf('--network');
const network = networkAt >= 0 ? args.splice(networkAt, 2)[1] : 'mobilenetv2';
if (network !== 'mobilenetv2' && network !== 'resnet50') throw new Error(`--network mobilenetv2|resnet50 (got ${network})`);
const pairs = option('--pairs', 15);
const size = option('--size', 224);
const batches = args.length > 0 ? args.map(Number) : [16, 1];

const engine = await initEngine();
if (engine.backend !== 'native') throw new Error(`the native engine is not available (${engine.backend})`);
const model = (await createNetwork(network, [size, size, 3], 7, { seed: 1 })).network;
const summary = foldedSummary(model)!;
console.log(`${network} at ${size} px, ${summary.blocks} blocks, ${summary.residuals} residuals, ${engine.threads} thread(s), load ${(await import('node:os')).loadavg()[0].toFixed(1)}`);

/** CPU and wall-clock milliseconds of one prediction in the given mode, and its output. */
function run(mode: 'on' | 'off', x: tf.Tensor): { ms: number; wall: number; y: Float32Array } {
  process.env.FUNDUS_BLOCK_FUSION = mode;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const y = tf.tidy(() => predictFolded(model, x).dataSync() as Float32Array);
  const wall = performance.now() - t0;
  const c = process.cpuUsage(c0);
  return { ms: (c.user + c.system) / 1000, wall, y };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
for (const batch of batches) {
  // MobileNetV2 takes [-1, 1], ResNet-50 the ImageNet-mean-subtracted 0-255 range.
  const x = network === 'resnet50' ? tf.randomUniform([batch, size, size, 3], -120, 140, 'float32', 7) : tf.randomUniform([batch, size, size, 3], -1, 1, 'float32', 7);
  const warm = [run('on', x), run('off', x)];
  let diff = 0;
  warm[0].y.forEach((v, i) => (diff = Math.max(diff, Math.abs(v - warm[1].y[i]))));
  const fused: number[] = [];
  const unfused: number[] = [];
  const walls = { on: [] as number[], off: [] as number[] };
  for (let i = 0; i < pairs; i++) {
    // Alternate which goes first, so that neither always follows the other's cache state.
    const order = i % 2 === 0 ? (['on', 'off'] as const) : (['off', 'on'] as const);
    for (const mode of order) {
      const r = run(mode, x);
      (mode === 'off' ? unfused : fused).push(r.ms);
      walls[mode].push(r.wall);
    }
  }
  const savings = fused.map((f, i) => 1 - f / unfused[i]);
  console.log(
    `batch ${batch}: fused median ${median(fused).toFixed(1)} ms, unfused ${median(unfused).toFixed(1)} ms; ` +
      `median per-pair saving ${(100 * median(savings)).toFixed(1)} %, fused faster in ${savings.filter((s) => s > 0).length} of ${pairs} pairs; ` +
      `wall-clock medians ${median(walls.on).toFixed(1)} vs ${median(walls.off).toFixed(1)} ms; max |fused - unfused| output ${diff.toExponential(1)}, max |unfused| ${Math.max(...warm[1].y.map(Math.abs)).toExponential(1)}`,
  );
  x.dispose();
}
