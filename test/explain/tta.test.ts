import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initEngine } from '../../src/engine/index.js';
import { mirrorInput, type CamInput } from '../../src/explain/cam.js';
import { explainCommand } from '../../src/explain/commands.js';
import { explainerFor } from '../../src/explain/explainer.js';
import type { ExplainManifest } from '../../src/explain/run.js';
import { mirrorHeatmap } from '../../src/explain/heatmap.js';
import { loadModel } from '../../src/models/io.js';
import type { ModelMetadata } from '../../src/models/metadata.js';
import { predictTensor } from '../../src/models/predict.js';
import { VIETAI_DIR, tempDir } from '../helpers.js';
import { tinyModel } from './tiny-model.js';

/** The tiny model (8×8 maps at last_conv), predicting with flip test-time augmentation. */
async function mirroredModel() {
  const dir = join(await tempDir('fundus-tta-explain-'), 'model');
  await tinyModel(dir);
  const path = join(dir, 'fundus.json');
  const meta = JSON.parse(await readFile(path, 'utf8')) as ModelMetadata;
  await writeFile(path, JSON.stringify({ ...meta, inference: { tta: 'hflip' } }, null, 2));
  return loadModel(dir);
}

/** A deterministic input that is not left-right symmetric. */
function input(): CamInput {
  const data = new Float32Array(32 * 32 * 3);
  for (let i = 0; i < data.length; i++) data[i] = Math.sin(i * 0.37) * 1.5 + ((i / 3) % 32 < 10 ? 1 : 0);
  return { data, size: 32, channels: 3 };
}

const close = (a: ArrayLike<number>, b: ArrayLike<number>, tol: number) => {
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) <= tol, `element ${i}: ${a[i]} vs ${b[i]}`);
};

test('mirroring an input or a map twice gives it back, and mirrors columns', () => {
  const image = input();
  assert.deepEqual(mirrorInput(mirrorInput(image)).data, image.data);
  // Pixel (row 2, column 5) lands at column 26 with its channels in order.
  const m = mirrorInput(image);
  for (let c = 0; c < 3; c++) assert.equal(m.data[(2 * 32 + 26) * 3 + c], image.data[(2 * 32 + 5) * 3 + c]);
  const map = { width: 3, height: 2, data: Float32Array.from([1, 2, 3, 4, 5, 6]) };
  assert.deepEqual([...mirrorHeatmap(map).data], [3, 2, 1, 6, 5, 4]);
});

test("a model predicting with flip TTA is explained through it: its probability, and the photo's and the mirror image's maps averaged", async () => {
  await initEngine();
  const model = await mirroredModel();
  const image = input();
  const target = [{ image: 0, classIndex: 1 }];
  const mirrored = explainerFor(model);
  const plain = explainerFor(model, { tta: 'none' });
  assert.notEqual(mirrored, plain);

  const [tta] = mirrored.explain([image], target, 'gradcam');
  // The probability is the model's own prediction, which averages the photo and its mirror image.
  const probs = tf.tidy(() => predictTensor(model, tf.tensor4d(image.data, [1, 32, 32, 3])));
  assert.ok(Math.abs(tta.probability - probs[1]) < 1e-5, `${tta.probability} vs ${probs[1]}`);

  // So is the explainer's prediction, which deletion/insertion curves are made of.
  close(mirrored.predict([image]), probs, 1e-5);
  assert.ok(Math.abs(plain.predict([image])[1] - probs[1]) > 1e-6, 'the network alone predicts differently');

  const [own] = plain.explain([image], target, 'gradcam');
  const [ofMirror] = plain.explain([mirrorInput(image)], target, 'gradcam');
  const back = mirrorHeatmap(ofMirror.raw).data;
  close(tta.raw.data, own.raw.data.map((v, i) => (v + back[i]) / 2), 1e-5);
  // Without the mirror image the map differs (the input is not symmetric), so the average is not a no-op.
  assert.ok(own.raw.data.some((v, i) => Math.abs(v - tta.raw.data[i]) > 1e-4));

  // A TTA map is mirror-equivariant: the mirror image's map is the photo's, mirrored.
  const [ttaOfMirror] = mirrored.explain([mirrorInput(image)], target, 'gradcam');
  close(mirrorHeatmap(ttaOfMirror.raw).data, tta.raw.data, 1e-5);
  assert.ok(Math.abs(ttaOfMirror.probability - tta.probability) < 1e-5);
});

test('several photos and classes in one TTA batch keep their own maps', async () => {
  await initEngine();
  const model = await mirroredModel();
  const a = input();
  const b = mirrorInput(a);
  const explainer = explainerFor(model);
  const targets = [
    { image: 0, classIndex: 0 },
    { image: 1, classIndex: 1 },
    { image: 1, classIndex: 0 },
  ];
  for (const method of ['gradcam', 'scorecam'] as const) {
    const batch = explainer.explain([a, b], targets, method);
    targets.forEach((t, i) => {
      const [alone] = explainer.explain([[a, b][t.image]], [{ image: 0, classIndex: t.classIndex }], method);
      close(batch[i].raw.data, alone.raw.data, 1e-4);
      assert.equal(batch[i].classIndex, t.classIndex);
      assert.equal(batch[i].image, t.image);
    });
  }
});

test('fundus explain says the maps went through the flip, and --tta none gives the photo\'s pass alone', async () => {
  await initEngine();
  const model = await mirroredModel();
  const tmp = await tempDir('fundus-tta-explain-');
  const photo = join(VIETAI_DIR, 'train', 'c24a1b14d253.jpg');
  const run = async (name: string, tta?: 'none' | 'hflip') => {
    const out = join(tmp, name);
    await explainCommand(model.dir, [photo], { out, quiet: true, raw: 'npy', classes: '1', method: 'gradcam', ...(tta ? { tta } : {}) });
    return { out, manifest: JSON.parse(await readFile(join(out, 'explain.json'), 'utf8')) as ExplainManifest };
  };
  const mirrored = await run('default');
  assert.equal(mirrored.manifest.tta, 'hflip');
  assert.match(await readFile(join(mirrored.out, 'index.html'), 'utf8'), /mirror image/);
  const plain = await run('plain', 'none');
  assert.equal(plain.manifest.tta, 'none');
  assert.doesNotMatch(await readFile(join(plain.out, 'index.html'), 'utf8'), /mirror image/);
  // The same photo, class and method: the probabilities are the model's with and without the flip.
  assert.notEqual(mirrored.manifest.entries[0].probability, plain.manifest.entries[0].probability);
});
