// What flip test-time augmentation costs a model's prediction, in CPU time (robust to other load on the machine):
// one batch of 16 VietAI photographs through predictTensor (both views), tf.reverse alone on the same batch, and
// tf.reverse on the JS CPU backend (the kernel the native backend replaces).
// Usage: npx tsx benchmarks/scripts/tta-cost.ts [<model-dir>] [<image-folder>]   (defaults models/default, ../shared/data/vietai/train)
import * as tf from '@tensorflow/tfjs-core';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { preprocessImage } from '../../src/data/preprocess.js';
import { initEngine } from '../../src/engine/index.js';
import { loadModel } from '../../src/models/io.js';
import { predictTensor, stackImages } from '../../src/models/predict.js';

const [dir = 'models/default', images = '../shared/data/vietai/train'] = process.argv.slice(2);
const engine = await initEngine();
const model = await loadModel(dir);
const files = (await readdir(images)).filter((f) => /\.(jpe?g|png)$/i.test(f)).slice(0, 16);
const photos = await Promise.all(files.map((f) => preprocessImage(join(images, f), model.metadata.preprocess)));

function cpu(label: string, f: () => void): void {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  f();
  const c = process.cpuUsage(c0);
  console.log(`${label}: wall ${(performance.now() - t0).toFixed(0)} ms, CPU ${((c.user + c.system) / 1000).toFixed(0)} ms`);
}

console.log(`${dir} (${model.metadata.inputShape.join('x')}, tta ${model.metadata.inference?.tta ?? 'none'}), engine ${engine.backend}, batch ${files.length}`);
for (let round = 0; round < 3; round++) {
  const x = stackImages(photos.map((p) => p.data), model.metadata.inputShape);
  cpu('  predictTensor', () => predictTensor(model, x));
  cpu('  tf.reverse (the flip)', () => {
    const flipped = tf.reverse(x, 2);
    flipped.dataSync();
    flipped.dispose();
  });
  x.dispose();
}

// The JS CPU backend's own Reverse, which the native backend's replaces (src/engine/kernels/reverse.ts).
tf.setBackend('cpu');
const onCpu = stackImages(photos.map((p) => p.data), model.metadata.inputShape);
cpu('  tf.reverse on the JS CPU backend', () => {
  const flipped = tf.reverse(onCpu, 2);
  flipped.dataSync();
  flipped.dispose();
});
