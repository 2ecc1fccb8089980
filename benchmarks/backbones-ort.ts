// The onnxruntime-node side of `npm run bench:backbones`: inference images/s of a backbone that the PyTorch peer
// exported to ONNX (benchmarks/backbones_peer.py --export; NCHW input of the same size as the other sides, batch
// fixed at export), on the CPU execution provider with N intra-op threads and every graph optimisation; prints one
// JSON line with the peak RSS of this process.
// Usage: tsx benchmarks/backbones-ort.ts <model.onnx> --network NAME --threads N [--infer-batches N] [--no-warmup]
import * as ort from 'onnxruntime-node';
import { medianSecondsAsync } from './timing.js';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

const warmup = !process.argv.includes('--no-warmup');

/** Median seconds per call (the machine is shared: the median resists bursts of other load); same in the other sides. */
const timeIt = (fn: () => Promise<void>, reps: number): Promise<number> => medianSecondsAsync(fn, reps, warmup);

/** Uniform [0, 1) values from a fixed seed (mulberry32), so runs see the same input. */
function uniform(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  return out;
}

async function main(): Promise<void> {
  const path = process.argv[2];
  const ni = process.argv.indexOf('--network');
  const network = ni >= 0 ? process.argv[ni + 1] : path;
  const threads = arg('--threads', 1);
  const inferBatches = arg('--infer-batches', 5);
  const session = await ort.InferenceSession.create(path, {
    executionProviders: ['cpu'],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  const meta = session.inputMetadata[0];
  const shape = meta.isTensor ? meta.shape : [];
  if (shape.length !== 4 || shape.some((d) => typeof d !== 'number')) throw new Error(`${path}: expected a fixed 4-d input, got [${shape.join(', ')}]`);
  const dims = shape as number[];
  const batch = dims[0];
  const input = new ort.Tensor('float32', uniform(dims.reduce((a, b) => a * b, 1), 1), dims);
  const feeds = { [session.inputNames[0]]: input };
  const result: Record<string, unknown> = { side: 'onnxruntime', network, version: ort.env.versions.node, threads, batch, input: dims };
  const s = await timeIt(async () => {
    const out = await session.run(feeds);
    for (const v of Object.values(out)) v.dispose();
  }, inferBatches);
  result.inferImagesPerSecond = batch / s;
  result.peakRssBytes = process.resourceUsage().maxRSS * 1024;
  await session.release();
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

await main();
