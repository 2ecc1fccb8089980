// Pretrained backbones as fundus architectures: building, fine-tuning recipes, parameter groups, test-time flips.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { initEngine } from '../../src/engine/index.js';
import { createNetwork } from '../../src/models/architectures.js';
import { acceptRgb, backboneLayers } from '../../src/models/backbones.js';
import { findTargetLayer } from '../../src/models/graph.js';
import { loadModel } from '../../src/models/io.js';
import { predictTensor } from '../../src/models/predict.js';
import { lastStageStart, planFineTune } from '../../src/train/finetune.js';
import { GroupedAdam } from '../../src/train/optimizer.js';
import { readState, restoreCheckpoint, saveCheckpoint } from '../../src/train/checkpoint.js';
import { trainModel } from '../../src/train/train.js';
import { tinyDataset } from './fixtures.js';
import { tempDir } from '../helpers.js';

test('mobilenetv2 is built from its shipped ImageNet weights with a new head, and records where they came from', async () => {
  await initEngine();
  const { network, backbone, normalize } = await createNetwork('mobilenetv2', [96, 96, 3], 7, { seed: 1 });
  assert.deepEqual(network.outputs[0].shape, [null, 7]);
  assert.equal(backbone?.name, 'mobilenetv2');
  assert.equal(backbone?.licence, 'Apache-2.0');
  assert.match(backbone!.sha256, /^[0-9a-f]{64}$/);
  assert.equal(backbone?.featureLayer, 'Conv_1');
  assert.deepEqual(normalize, { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] });
  const names = network.layers.map((l) => l.name);
  assert.deepEqual(names.slice(-3), ['gap', 'logits', 'probs']);
  // The pretrained weights are the published ones, not a fresh initialisation: the first convolution's kernel
  // differs from any seeded init and is the same in two builds.
  const again = await createNetwork('mobilenetv2', [96, 96, 3], 3, { seed: 2 });
  const k1 = network.getLayer('Conv1').getWeights()[0].dataSync();
  const k2 = again.network.getLayer('Conv1').getWeights()[0].dataSync();
  assert.deepEqual(Array.from(k1), Array.from(k2));
  // The default target: the last block at stride 8 (12×12 of 96 px), which ends at its residual add.
  assert.equal(findTargetLayer(network).name, 'block_5_add');
  await assert.rejects(createNetwork('mobilenetv2', [96, 96, 1], 7), /square RGB/);
  await assert.rejects(createNetwork('mobilenetv2', [96, 96, 3], 7, { prefix: 'dr__' }), /one-vs-normal/);
  network.dispose();
  again.network.dispose();
});

test('fine-tuning recipes freeze what they keep: probe the whole backbone, partial all but its last stage', async () => {
  await initEngine();
  const build = async () => (await createNetwork('mobilenetv2', [64, 64, 3], 2, { seed: 3 })).network;
  const n1 = await build();
  const backbone = backboneLayers(n1, 'Conv_1');
  assert.equal(lastStageStart(backbone), 'block_13_depthwise');
  const partial = planFineTune(backbone, 'partial', { batchNorm: 'train' });
  assert.equal(partial.trainableFrom, 'block_13_depthwise');
  assert.ok(!n1.getLayer('block_12_project').trainable && n1.getLayer('block_13_depthwise').trainable && n1.getLayer('Conv_1').trainable);
  assert.ok(partial.trainablePretrained.includes('Conv_1') && !partial.trainablePretrained.includes('block_12_project'));
  const n2 = await build();
  const probe = planFineTune(backboneLayers(n2, 'Conv_1'), 'probe', { batchNorm: 'train' });
  assert.deepEqual(probe.trainablePretrained, []);
  assert.deepEqual(n2.trainableWeights.map((w) => w.originalName), ['logits/kernel', 'logits/bias']);
  const n3 = await build();
  const full = planFineTune(backboneLayers(n3, 'Conv_1'), 'full', { batchNorm: 'train' });
  assert.equal(full.trainablePretrained.length, 52);
  assert.throws(() => planFineTune(backboneLayers(n3, 'Conv_1'), 'partial', { batchNorm: 'train', trainableFrom: 'nope' }), /no layer "nope"/);
  [n1, n2, n3].forEach((n) => n.dispose());
});

test('frozen batch norm keeps its statistics in a training step; trained batch norm uses the batch', async () => {
  await initEngine();
  const input = tfl.input({ shape: [4, 4, 2] });
  const bnLayer = tfl.layers.batchNormalization({ name: 'bn' });
  const out = tfl.layers.globalAveragePooling2d({}).apply(bnLayer.apply(input)) as tfl.SymbolicTensor;
  const model = tfl.model({ inputs: input, outputs: out });
  const x = tf.add(tf.mul(tf.randomNormal([8, 4, 4, 2], 0, 1, 'float32', 5), 3), 10);
  const batchMean = () => tf.mean(model.apply(x, { training: true }) as tf.Tensor, 0).dataSync();
  assert.ok(Math.abs(batchMean()[0]) < 1e-3, 'batch statistics centre the batch');
  planFineTune([bnLayer as unknown as tfl.layers.Layer], 'full', { batchNorm: 'frozen' });
  const frozen = batchMean()[0];
  assert.ok(Math.abs(frozen - 10) < 0.5, `moving statistics (mean 0, variance 1) leave the input as it was: ${frozen}`);
  assert.equal(model.trainableWeights.length, 0);
  tf.dispose([x]);
});

test('parameter groups: the slow group moves as a separate Adam at its own rate, and a checkpoint restores both', async () => {
  await initEngine();
  const a = tf.variable(tf.tensor1d([1, 2, 3]), true, 'group_a');
  const b = tf.variable(tf.tensor1d([-1, 0.5]), true, 'group_b');
  const loss = () => tf.add(tf.sum(tf.square(a)), tf.sum(tf.square(tf.sub(b, 2)))) as tf.Scalar;
  const grouped = new GroupedAdam([{ vars: [a], lrScale: 1 }, { vars: [b], lrScale: 0.1 }], 0.05);
  // Reference: two plain Adams.
  const a2 = tf.variable(tf.tensor1d([1, 2, 3]), true, 'ref_a');
  const b2 = tf.variable(tf.tensor1d([-1, 0.5]), true, 'ref_b');
  const optA = tf.train.adam(0.05);
  const optB = tf.train.adam(0.005);
  const loss2 = () => tf.add(tf.sum(tf.square(a2)), tf.sum(tf.square(tf.sub(b2, 2)))) as tf.Scalar;
  for (let i = 0; i < 5; i++) {
    tf.dispose(grouped.minimize(loss));
    tf.dispose(optA.minimize(loss2, true, [a2]) as tf.Scalar);
    tf.dispose(optB.minimize(loss2, true, [b2]) as tf.Scalar);
  }
  assert.deepEqual(Array.from(a.dataSync()), Array.from(a2.dataSync()));
  assert.deepEqual(Array.from(b.dataSync()), Array.from(b2.dataSync()));
  // Save with a small network (of fundus.json's input shape) standing in, then restore into a fresh optimiser: the next step matches.
  const dir = join(await tempDir('fundus-groups-'), 'ckpt');
  const net = tfl.sequential({ layers: [tfl.layers.flatten({ inputShape: [8, 8, 3] }), tfl.layers.dense({ units: 1 })] });
  const metadata = { format: 'fundus-model', formatVersion: 1, architecture: 'x', task: 'multilabel', classes: ['c'], activation: 'sigmoid', preprocess: { crop: true, size: 8, channels: 'rgb', clahe: false, normalize: { mean: [0.5], std: [0.25] } }, inputShape: [8, 8, 3], thresholds: [0.5], thresholdPolicy: 'x', createdAt: '', fundusVersion: '' } as never;
  const state = { version: 1, configHash: 'h', epoch: 0, batch: 0, step: 5, rngState: 1, epochLossSum: 0, epochWeightSum: 0, history: [], best: null, badEpochs: 0, eventsCreatedAt: 0, elapsedSeconds: 0, done: false } as const;
  await saveCheckpoint(dir, net, metadata, grouped, { ...state, history: [] });
  assert.equal((await readState(dir))?.step, 5);
  const restored = new GroupedAdam([{ vars: [a], lrScale: 1 }, { vars: [b], lrScale: 0.1 }], 0.05);
  await restoreCheckpoint(dir, net, restored);
  tf.dispose(restored.minimize(loss));
  tf.dispose(optA.minimize(loss2, true, [a2]) as tf.Scalar);
  tf.dispose(optB.minimize(loss2, true, [b2]) as tf.Scalar);
  assert.deepEqual(Array.from(a.dataSync()), Array.from(a2.dataSync()));
  assert.deepEqual(Array.from(b.dataSync()), Array.from(b2.dataSync()));
});

test('fundus train on mobilenetv2: probe and full recipes run end to end, record their recipe, and flip TTA predicts the mean of both views', async () => {
  await initEngine();
  const d = await tinyDataset(2);
  const common = {
    task: 'multilabel' as const, model: 'mobilenetv2', csv: d.csv, images: d.images, split: d.split, imageSize: 64, batchSize: 4,
    warmupEpochs: 0, seed: 5, quiet: true, cacheDir: join(d.dir, 'cache'),
  };
  const probe = await trainModel({ ...common, recipe: 'probe', out: join(d.dir, 'probe'), runDir: join(d.dir, 'probe-run') });
  assert.equal(probe.metadata.training?.fineTune?.recipe, 'probe');
  assert.ok([1e-3, 1e-2, 0.1, 1].includes(probe.metadata.training!.fineTune!.probe!.l2), 'the L2 penalty chosen from the grid is recorded');
  assert.equal(probe.metadata.backbone?.name, 'mobilenetv2');
  assert.deepEqual(probe.metadata.preprocess.normalize, { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] });
  const full = await trainModel({ ...common, recipe: 'full', epochs: 1, lr: 1e-3, tta: 'hflip', out: join(d.dir, 'full'), runDir: join(d.dir, 'full-run') });
  assert.deepEqual(full.metadata.training?.fineTune, { recipe: 'full', backboneLrScale: 0.1, batchNorm: 'train' });
  const m = await loadModel(join(d.dir, 'full'));
  assert.deepEqual(m.metadata.inference, { tta: 'hflip' });
  const x = tf.randomUniform([2, 64, 64, 3], -1, 1, 'float32', 9) as tf.Tensor4D;
  const both = predictTensor(m, x);
  const plain = predictTensor({ ...m, metadata: { ...m.metadata, inference: undefined } }, x);
  const mirrored = predictTensor({ ...m, metadata: { ...m.metadata, inference: undefined } }, tf.reverse(x, 2) as tf.Tensor4D);
  both.forEach((p, i) => assert.ok(Math.abs(p - (plain[i] + mirrored[i]) / 2) < 1e-5));
  assert.ok(plain.some((p, i) => Math.abs(p - mirrored[i]) > 1e-6), 'the mirror image is a different input');
  await assert.rejects(trainModel({ ...common, model: 'small-cnn', recipe: 'probe', out: join(d.dir, 'x') }), /apply to pretrained backbones/);
  await assert.rejects(trainModel({ ...common, task: 'one-vs-normal', out: join(d.dir, 'y') }), /one-vs-normal/);
});

test("a BGR backbone (Keras 'caffe' weights) takes RGB once its first convolution's input channels are reversed", async () => {
  await initEngine();
  const input = tfl.input({ shape: [6, 6, 3] });
  const conv = tfl.layers.conv2d({ filters: 4, kernelSize: 3, name: 'conv1', kernelInitializer: tfl.initializers.glorotUniform({ seed: 3 }), biasInitializer: 'ones' });
  const model = tfl.model({ inputs: input, outputs: tfl.layers.conv2d({ filters: 2, kernelSize: 1 }).apply(conv.apply(input)) as tfl.SymbolicTensor });
  const rgb = tf.randomUniform([2, 6, 6, 3], 0, 1, 'float32', 4);
  const bgr = tf.reverse(rgb, 3);
  const before = (model.predict(bgr) as tf.Tensor).dataSync();
  acceptRgb(model);
  const after = (model.predict(rgb) as tf.Tensor).dataSync();
  before.forEach((v, i) => assert.ok(Math.abs(v - after[i]) < 1e-5));
  tf.dispose([rgb, bgr]);
});
