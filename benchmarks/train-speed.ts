// Training throughput of fundus's own loop (trainModel: cached bytes → normalise → augment → Adam step) on real
// VietAI images, per architecture at its bundled settings. The raw-engine comparison against PyTorch on the same
// AlexNet is `npm run bench:engine`; this measures what `fundus train` actually achieves end to end.
// Usage: npx tsx benchmarks/train-speed.ts [images=96]    (needs ../shared/data/vietai; writes under runs/bench-train/)
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { initEngine } from '../src/engine/index.js';
import { trainModel } from '../src/train/train.js';

const data = join('..', 'shared', 'data', 'vietai');
const n = Number(process.argv[2] ?? 96);
const root = join('runs', 'bench-train');
await rm(root, { recursive: true, force: true });
await mkdir(root, { recursive: true });
const names = (await readFile(join(data, 'train.csv'), 'utf8')).trim().split('\n').slice(1).map((l) => l.split(',')[0]);
const split = join(root, 'split.json');
// The first n images train, the next 32 validate/test: enough for one timed epoch without a long validation.
await writeFile(split, JSON.stringify({ version: 1, seed: 0, parts: { train: names.slice(0, n), validation: names.slice(n, n + 32), test: names.slice(n + 32, n + 48) } }));
const engine = await initEngine();
console.log(`engine: ${engine.backend}, ${engine.threads} threads`);
const configs = [
  { label: 'alexnet 227 green, focus', task: 'focus' as const, model: 'alexnet', imageSize: 227 },
  { label: 'alexnet 227 green, multilabel', task: 'multilabel' as const, model: 'alexnet', imageSize: 227 },
  { label: 'resnet18-narrow 128 RGB, multilabel', task: 'multilabel' as const, model: 'resnet18-narrow', imageSize: 128 },
  { label: 'resnet18-narrow 224 RGB, multilabel', task: 'multilabel' as const, model: 'resnet18-narrow', imageSize: 224 },
];
for (const c of configs) {
  const r = await trainModel({
    task: c.task,
    model: c.model,
    imageSize: c.imageSize,
    csv: join(data, 'train.csv'),
    images: join(data, 'train'),
    split,
    out: join(root, c.model + c.imageSize + c.task),
    runDir: join(root, 'run-' + c.model + c.imageSize + c.task),
    epochs: 1,
    batchSize: 16,
    quiet: true,
  });
  console.log(`${c.label}: ${r.imagesPerSecond.toFixed(2)} training images/s (batch 16, augmentation on)`);
}
