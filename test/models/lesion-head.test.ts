import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { DEFAULT_PREPROCESS } from '../../src/data/preprocess.js';
import { initEngine } from '../../src/engine/index.js';
import { foldedSummary, predictFolded } from '../../src/engine/inference.js';
import { CamExplainer } from '../../src/explain/cam.js';
import { buildNetwork } from '../../src/models/architectures.js';
import { backboneLayers } from '../../src/models/backbones.js';
import { loadModel, saveModel } from '../../src/models/io.js';
import { LESION_MAP_LAYER, addLesionHead, hasLesionHead } from '../../src/models/lesion-head.js';
import type { ModelMetadata } from '../../src/models/metadata.js';
import { initFromModel } from '../../src/train/init-from.js';
import { InputError } from '../../src/util/errors.js';
import { tempDir } from '../helpers.js';

const SIZE = 24;
const images = () => tf.randomUniform([3, SIZE, SIZE, 3], -1, 1, 'float32', 11) as tf.Tensor4D;
const probs = (network: tfl.LayersModel, x: tf.Tensor4D) => (network.predict(x) as tf.Tensor).arraySync() as number[][];

test('a lesion map head adds nothing to any score until trained, then only to its class', async () => {
  await initEngine();
  const base = buildNetwork('small-cnn', [SIZE, SIZE, 3], 3, { seed: 3 });
  const x = images();
  const before = probs(base, x);
  const network = addLesionHead(base, 'bn2', 1);
  assert.ok(hasLesionHead(network) && !hasLesionHead(base));
  assert.equal(network.layers[network.layers.length - 1].name, 'probs');
  probs(network, x).forEach((row, i) => row.forEach((p, k) => assert.ok(Math.abs(p - before[i][k]) < 1e-6, `image ${i} class ${k}: ${p} vs ${before[i][k]}`)));

  const map = network.getLayer(LESION_MAP_LAYER);
  const [kernel, bias] = map.getWeights();
  map.setWeights([tf.randomNormal(kernel.shape, 0, 1, 'float32', 4), bias]);
  const after = probs(network, x);
  after.forEach((row, i) => {
    assert.ok(Math.abs(row[1] - before[i][1]) > 1e-4, `image ${i}: the head's class moves`);
    for (const k of [0, 2]) assert.ok(Math.abs(row[k] - before[i][k]) < 1e-6, `image ${i} class ${k} stays`);
  });

  assert.throws(() => addLesionHead(network, 'bn2', 1), (e: unknown) => e instanceof InputError && /already has a lesion map head/.test(e.message));
  assert.throws(() => addLesionHead(base, 'bn2', 3), (e: unknown) => e instanceof InputError && /class index 3/.test(e.message));
  const bare = tfl.model({ inputs: base.inputs, outputs: base.getLayer('probs').input as tfl.SymbolicTensor });
  assert.throws(() => addLesionHead(bare, 'bn2', 0), (e: unknown) => e instanceof InputError && /end in an Activation layer/.test(e.message));
  assert.throws(() => addLesionHead(base, 'nope', 0), (e: unknown) => e instanceof InputError && /no layer named "nope"/.test(e.message));
});

test("the class's Grad-CAM at lesion_map is the lesion map itself, and the head saves, loads and starts fine-tuning runs", async () => {
  await initEngine();
  const network = addLesionHead(buildNetwork('small-cnn', [SIZE, SIZE, 3], 3, { seed: 5 }), 'bn2', 2);
  const map = network.getLayer(LESION_MAP_LAYER);
  map.setWeights([tf.randomNormal(map.getWeights()[0].shape, 0, 1, 'float32', 6), tf.tensor1d([0.3])]);
  const x = images();
  const logitsOf = tfl.model({ inputs: network.inputs, outputs: map.output as tfl.SymbolicTensor });
  const z = (logitsOf.predict(x) as tf.Tensor4D).arraySync().map((im) => im.flat(2));
  const explainer = new CamExplainer(network, 'sigmoid', { layer: LESION_MAP_LAYER });
  const data = x.arraySync().map((im) => ({ size: SIZE, channels: 3, data: Float32Array.from(im.flat(2)) }));
  const maps = explainer.explain(data, [0, 1, 2].map((image) => ({ image, classIndex: 2 })), 'gradcam');
  maps.forEach((m, i) => {
    // Grad-CAM: ReLU of the map times the class's (one-channel) weight a / cells: the map's positive part, scaled.
    const expected = z[i].map((v) => Math.max(0, v));
    const peak = expected.indexOf(Math.max(...expected));
    const scale = m.raw.data[peak] / expected[peak];
    assert.ok(scale > 0, `image ${i}: a map with something in it`);
    expected.forEach((v, c) => assert.ok(Math.abs(m.raw.data[c] - v * scale) < 1e-4 * Math.abs(expected[peak] * scale), `image ${i} cell ${c}`));
  });

  const dir = join(await tempDir('fundus-lesion-head-'), 'model');
  const metadata: ModelMetadata = {
    format: 'fundus-model',
    formatVersion: 1,
    architecture: 'small-cnn',
    task: 'multilabel',
    classes: ['a', 'b', 'c'],
    activation: 'sigmoid',
    preprocess: { ...DEFAULT_PREPROCESS, size: SIZE, channels: 'rgb' },
    inputShape: [SIZE, SIZE, 3],
    thresholds: [0.5, 0.5, 0.5],
    thresholdPolicy: 'test',
    createdAt: new Date(0).toISOString(),
    fundusVersion: '0.1.0',
  };
  await saveModel(dir, network, metadata);
  const loaded = await loadModel(dir);
  assert.ok(hasLesionHead(loaded.network));
  const a = probs(network, x);
  probs(loaded.network, x).forEach((row, i) => row.forEach((p, k) => assert.ok(Math.abs(p - a[i][k]) < 1e-6)));
  // The engine's inference plan (batch norm folded, what predict and serve run) takes the branch as it is.
  assert.ok(foldedSummary(loaded.network), 'the plan understands the graph');
  const folded = (predictFolded(loaded.network, x) as tf.Tensor2D).arraySync();
  folded.forEach((row, i) => row.forEach((p, k) => assert.ok(Math.abs(p - a[i][k]) < 1e-5, `folded: image ${i} class ${k}: ${p} vs ${a[i][k]}`)));

  // --init-from a model without the head: the head keeps its starting values, every other layer is copied by name.
  const plain = buildNetwork('small-cnn', [SIZE, SIZE, 3], 3, { seed: 8 });
  const fresh = addLesionHead(buildNetwork('small-cnn', [SIZE, SIZE, 3], 3, { seed: 9 }), 'bn2', 2);
  await initFromModel({ network: plain, metadata }, metadata.classes)(fresh);
  const p = probs(plain, x);
  probs(fresh, x).forEach((row, i) => row.forEach((v, k) => assert.ok(Math.abs(v - p[i][k]) < 1e-6, `image ${i} class ${k}`)));
  // --init-from a model with the head: its trained head too.
  const again = addLesionHead(buildNetwork('small-cnn', [SIZE, SIZE, 3], 3, { seed: 9 }), 'bn2', 2);
  await initFromModel({ network: loaded.network, metadata }, metadata.classes)(again);
  probs(again, x).forEach((row, i) => row.forEach((v, k) => assert.ok(Math.abs(v - a[i][k]) < 1e-6)));

  // The head trains at the head's rate, not the backbone's, though it branches off inside the backbone.
  assert.ok(!backboneLayers(network, 'bn3').some((l) => l.name === LESION_MAP_LAYER));
});
