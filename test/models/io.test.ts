import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { writeFile, readdir } from 'node:fs/promises';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { initEngine } from '../../src/engine/index.js';
import { loadModel, saveModel } from '../../src/models/io.js';
import type { ModelMetadata } from '../../src/models/metadata.js';
import { DEFAULT_PREPROCESS } from '../../src/data/preprocess.js';
import { InputError } from '../../src/util/errors.js';
import { tempDir } from '../helpers.js';

function tinyNetwork(): tfl.LayersModel {
  const m = tfl.sequential();
  m.add(tfl.layers.conv2d({ inputShape: [8, 8, 1], filters: 2, kernelSize: 3, activation: 'relu' }));
  m.add(tfl.layers.flatten());
  m.add(tfl.layers.dense({ units: 3 }));
  return m;
}

const meta: ModelMetadata = {
  format: 'fundus-model',
  formatVersion: 1,
  architecture: 'tiny',
  task: 'focus',
  classes: ['diabetic retinopathy', 'glaucoma', 'normal'],
  activation: 'softmax',
  preprocess: { ...DEFAULT_PREPROCESS, size: 8 },
  inputShape: [8, 8, 1],
  thresholds: [0.5, 0.5, 0.5],
  thresholdPolicy: 'default 0.5',
  createdAt: new Date(0).toISOString(),
  fundusVersion: '0.1.0',
};

test('a saved model loads back and predicts exactly the same', async () => {
  await initEngine();
  const dir = join(await tempDir(), 'model');
  const net = tinyNetwork();
  const x = tf.randomNormal([2, 8, 8, 1], 0, 1, 'float32', 7);
  const before = (net.predict(x) as tf.Tensor).dataSync();
  await saveModel(dir, net, meta, { 'split.json': '{}' });
  const loaded = await loadModel(dir);
  const after = (loaded.network.predict(x) as tf.Tensor).dataSync();
  assert.deepEqual(Array.from(after), Array.from(before));
  assert.deepEqual(loaded.metadata, meta);
  assert.deepEqual((await readdir(dir)).sort(), ['fundus.json', 'model.json', 'split.json', 'weights.bin']);
});

test('a foreign or corrupt directory gives a clear error', async () => {
  const dir = await tempDir();
  await assert.rejects(loadModel(dir), (e: unknown) => e instanceof InputError && /fundus.json is missing/.test(e.message));
  await writeFile(join(dir, 'fundus.json'), '{"format": "something-else"}');
  await assert.rejects(loadModel(dir), /not a fundus model/);
  await writeFile(join(dir, 'fundus.json'), '{not json');
  await assert.rejects(loadModel(dir), /not valid JSON/);
  await writeFile(join(dir, 'fundus.json'), JSON.stringify(meta));
  await assert.rejects(loadModel(dir), /model.json is missing/);
});
