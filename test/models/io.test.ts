import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { mkdir, readFile, writeFile, readdir } from 'node:fs/promises';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { initEngine } from '../../src/engine/index.js';
import { disposeModel, loadModel, saveModel } from '../../src/models/io.js';
import { predictTensor } from '../../src/models/predict.js';
import { foldedSummary, releaseFolded } from '../../src/engine/inference.js';
import { loadAddon } from '../../src/engine/addon.js';
import { NATIVE_BACKEND_NAME } from '../../src/engine/names.js';
import { tinyModel } from '../selflearn/tiny-model.js';
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

test('saveModel replaces an earlier model, but never a folder or file that is not a fundus model', async () => {
  await initEngine();
  const tmp = await tempDir();
  const photos = join(tmp, 'photos');
  await mkdir(photos);
  await writeFile(join(photos, 'eye.jpg'), 'a photograph');
  await assert.rejects(saveModel(photos, tinyNetwork(), meta), (e: unknown) => e instanceof InputError && /not a fundus model folder \(it holds eye\.jpg\)/.test(e.message));
  assert.deepEqual(await readdir(photos), ['eye.jpg']);
  const file = join(tmp, 'notes.txt');
  await writeFile(file, 'notes');
  await assert.rejects(saveModel(file, tinyNetwork(), meta), /refusing to replace this file/);
  assert.equal(await readFile(file, 'utf8'), 'notes');
  assert.deepEqual((await readdir(tmp)).sort(), ['notes.txt', 'photos'], 'no temporary folder left behind');
  // an empty folder, and a model over a model
  const empty = join(tmp, 'empty');
  await mkdir(empty);
  await saveModel(empty, tinyNetwork(), meta);
  await saveModel(empty, tinyNetwork(), { ...meta, thresholds: [0.1, 0.2, 0.3] });
  assert.deepEqual((await loadModel(empty)).metadata.thresholds, [0.1, 0.2, 0.3]);
});

test('loading refuses corrupt metadata, weights outside the folder and non-finite weights (#20)', async () => {
  await initEngine();
  const root = await tempDir();
  const save = async (name: string, m: unknown, net = tinyNetwork()): Promise<string> => {
    const dir = join(root, name);
    await saveModel(dir, net, meta);
    await writeFile(join(dir, 'fundus.json'), JSON.stringify(m));
    return dir;
  };
  const refuses = async (dir: string, re: RegExp) =>
    assert.rejects(loadModel(dir), (e: unknown) => e instanceof InputError && re.test(e.message), `${dir} should be refused with ${re}`);
  await refuses(await save('null-threshold', { ...meta, thresholds: [null, 0.5, 0.5] }), /numbers in \[0, 1\] \(diabetic retinopathy: null\)/);
  await refuses(await save('string-threshold', { ...meta, thresholds: [0.5, 'x', 0.5] }), /numbers in \[0, 1\]/);
  await refuses(await save('big-threshold', { ...meta, thresholds: [0.5, 0.5, 1e9] }), /numbers in \[0, 1\]/);
  await refuses(await save('proto', { ...meta, classes: ['__proto__', 'glaucoma', 'normal'] }), /may not contain "__proto__"/);
  await refuses(await save('twice', { ...meta, classes: ['glaucoma', 'glaucoma', 'normal'] }), /twice/);
  await refuses(await save('channels', { ...meta, preprocess: { ...meta.preprocess, channels: 'blue' } }), /channels must be/);
  await refuses(await save('shape', { ...meta, inputShape: [64, 64, 1] }), /does not match the preprocessing/);
  // fundus.json edited to other preprocessing than the network was trained for (crashed on the first photograph)
  await refuses(
    await save('size-64', { ...meta, preprocess: { ...meta.preprocess, size: 64 }, inputShape: [64, 64, 1] }),
    /fundus\.json: the network takes 8×8×1 inputs but fundus\.json says 64×64×1 \(preprocess size 64, channels green\)/,
  );
  await refuses(
    await save('rgb', { ...meta, preprocess: { ...meta.preprocess, channels: 'rgb', normalize: { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] } }, inputShape: [8, 8, 3] }),
    /the network takes 8×8×1 inputs but fundus\.json says 8×8×3/,
  );
  // a model's own default heatmap (fundus.json "explanation"): its shape here, its method and layer where maps are made
  const explanation = { method: 'gradcam', layer: 'conv2d_1', chosenBy: 'a benchmark' };
  await refuses(await save('explanation-list', { ...meta, explanation: ['gradcam'] }), /fundus\.json: "explanation" must be an object \{ method, layer\?, chosenBy \}/);
  await refuses(await save('explanation-method', { ...meta, explanation: { ...explanation, method: 3 } }), /fundus\.json: "explanation\.method" must be a CAM method name \(got 3\)/);
  await refuses(await save('explanation-layer', { ...meta, explanation: { ...explanation, layer: '' } }), /"explanation\.layer" must be a layer name when given \(got ""\)/);
  await refuses(await save('explanation-why', { ...meta, explanation: { method: 'gradcam' } }), /"explanation\.chosenBy" must say which measurement chose the method/);
  assert.deepEqual((await loadModel(await save('explanation', { ...meta, explanation }))).metadata.explanation, explanation);
  // a weights path that leaves the folder
  const escape = await save('escape', meta);
  const mj = JSON.parse(await readFile(join(escape, 'model.json'), 'utf8'));
  mj.weightsManifest[0].paths = ['../../etc/passwd'];
  await writeFile(join(escape, 'model.json'), JSON.stringify(mj));
  await refuses(escape, /points outside the model folder/);
  // one NaN weight
  const net = tinyNetwork();
  const [k, b] = net.layers[0].getWeights();
  const poisoned = k.dataSync().slice();
  poisoned[3] = NaN;
  net.layers[0].setWeights([tf.tensor(poisoned, k.shape), b]);
  await refuses(await save('nan', meta, net), /holds NaN at index 3/);
  // the untouched model still loads
  await loadModel(await save('fine', meta));
});

test('disposeModel frees the network and the folded inference weights: load, predict, dispose leaves no tensor', async () => {
  await initEngine();
  const dir = await tempDir();
  await tinyModel(join(dir, 'model'));
  const x = tf.zeros<tf.Rank.R4>([2, 32, 32, 3]);
  const start = tf.memory().numTensors;
  const packs = () => loadAddon()?.info().weightPacks ?? 0;
  const packsAtStart = packs();
  const model = await loadModel(join(dir, 'model'));
  predictTensor(model, x);
  const folds = tf.getBackend() === NATIVE_BACKEND_NAME;
  if (folds) assert.ok(foldedSummary(model.network)!.batchNorms > 0, 'the tiny resnet has batch norms to fold');
  if (folds) assert.ok(packs() > packsAtStart, 'the plan packed its convolution weights');
  disposeModel(model);
  assert.equal(tf.memory().numTensors, start);
  assert.equal(packs(), packsAtStart, 'and their native weight packs');
  // The network's own dispose leaves the folded weights behind (the engine keeps them per network).
  if (folds) {
    const again = await loadModel(join(dir, 'model'));
    predictTensor(again, x);
    again.network.dispose();
    assert.ok(tf.memory().numTensors > start, 'folded weights outlive network.dispose()');
    releaseFolded(again.network);
    assert.equal(tf.memory().numTensors, start);
  }
  x.dispose();
});
