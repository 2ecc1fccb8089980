import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { initEngine } from '../../src/engine/index.js';
import { architectureInfo, architectureNames, buildNetwork, logitsModel } from '../../src/models/architectures.js';
import { buildOneVsNormalNetwork, loadMemberWeights } from '../../src/models/combine.js';
import { InputError } from '../../src/util/errors.js';

test('alexnet is the reference layer for layer (green 227 px)', async () => {
  await initEngine();
  const net = buildNetwork('alexnet', [227, 227, 1], 3, { activation: 'softmax' });
  const shape = (name: string) => net.getLayer(name).outputShape;
  assert.deepEqual(shape('conv1'), [null, 55, 55, 96]);
  assert.deepEqual(shape('pool1'), [null, 27, 27, 96]);
  assert.deepEqual(shape('conv2'), [null, 27, 27, 256]);
  assert.deepEqual(shape('pool2'), [null, 13, 13, 256]);
  assert.deepEqual(shape('conv3'), [null, 13, 13, 384]);
  assert.deepEqual(shape('conv4'), [null, 13, 13, 384]);
  assert.deepEqual(shape('last_conv'), [null, 13, 13, 256]);
  assert.deepEqual(shape('pool5'), [null, 6, 6, 256]);
  assert.deepEqual(shape('logits'), [null, 3]);
  assert.deepEqual(net.outputs[0].shape, [null, 3]);
  const kinds = net.layers.map((l) => l.getClassName());
  assert.deepEqual(kinds, [
    'InputLayer',
    ...['Conv2D', 'BatchNormalization', 'MaxPooling2D', 'Conv2D', 'BatchNormalization', 'MaxPooling2D'],
    ...['Conv2D', 'BatchNormalization', 'Conv2D', 'BatchNormalization', 'Conv2D', 'BatchNormalization', 'MaxPooling2D'],
    'Flatten',
    'Dense',
    'Activation',
  ]);
  const conv1 = net.getLayer('conv1').getConfig() as Record<string, unknown>;
  assert.deepEqual([conv1.kernelSize, conv1.strides, conv1.padding, conv1.activation], [[11, 11], [4, 4], 'valid', 'relu']);
  assert.equal((conv1.kernelInitializer as { className: string }).className, 'VarianceScaling'); // he_normal
  assert.equal(((conv1.kernelInitializer as { config: Record<string, unknown> }).config).distribution, 'normal');
  assert.equal((net.getLayer('probs').getConfig() as { activation: string }).activation, 'softmax');
  net.dispose();
});

test('resnet18-narrow: 224 px RGB in, 7x7 last_conv, one logit per class', () => {
  const net = buildNetwork('resnet18-narrow', [224, 224, 3], 7);
  assert.deepEqual(net.getLayer('last_conv').outputShape, [null, 7, 7, 128]);
  assert.deepEqual(net.outputs[0].shape, [null, 7]);
  assert.equal(net.layers.filter((l) => l.getClassName() === 'Add').length, 8);
  net.dispose();
});

test('every architecture builds; unknown names and impossible sizes are clear errors', () => {
  // pretrained backbones come from their weights (createNetwork, test/train/backbone.test.ts)
  for (const name of architectureNames().filter((n) => !architectureInfo(n).backbone)) {
    const n = buildNetwork(name, name === 'alexnet' ? [67, 67, 1] : [32, 32, 3], 2);
    assert.ok(n.getLayer('last_conv'));
    n.dispose();
  }
  assert.throws(() => buildNetwork('vgg99', [32, 32, 3], 2), (e: unknown) => e instanceof InputError && /unknown model "vgg99"/.test(e.message));
  assert.throws(() => buildNetwork('alexnet', [32, 32, 1], 2), InputError);
  assert.throws(() => buildNetwork('mobilenetv2', [32, 32, 3], 2), /built from its weights by createNetwork/);
});

test('same seed, same initial weights; the logits view shares them', () => {
  const a = buildNetwork('small-cnn', [16, 16, 3], 2, { seed: 5 });
  const b = buildNetwork('small-cnn', [16, 16, 3], 2, { seed: 5 });
  a.weights.forEach((w, i) => assert.deepEqual(Array.from(w.read().dataSync()), Array.from(b.weights[i].read().dataSync())));
  const x = tf.randomNormal([2, 16, 16, 3], 0, 1, 'float32', 1);
  const probs = (a.predict(x) as tf.Tensor).dataSync();
  const logits = (logitsModel(a).predict(x) as tf.Tensor).dataSync();
  logits.forEach((z, i) => assert.ok(Math.abs(1 / (1 + Math.exp(-z)) - probs[i]) < 1e-6));
});

test('one-vs-normal combines binary members; normal = 1 - max(member probabilities)', () => {
  const pathologies = ['glaucoma', 'diabetic retinopathy'];
  const { network, classes } = buildOneVsNormalNetwork('small-cnn', [16, 16, 3], pathologies);
  assert.deepEqual(classes, ['glaucoma', 'diabetic retinopathy', 'normal']);
  const members = pathologies.map((_, i) => buildNetwork('small-cnn', [16, 16, 3], 1, { seed: 10 + i }));
  members.forEach((m, i) => loadMemberWeights(network, m, pathologies[i]));
  const x = tf.randomNormal([3, 16, 16, 3], 0, 1, 'float32', 2);
  const out = (network.predict(x) as tf.Tensor).arraySync() as number[][];
  const memberOut = members.map((m) => (m.predict(x) as tf.Tensor).dataSync());
  out.forEach((row, r) => {
    assert.ok(Math.abs(row[0] - memberOut[0][r]) < 1e-6);
    assert.ok(Math.abs(row[1] - memberOut[1][r]) < 1e-6);
    assert.ok(Math.abs(row[2] - (1 - Math.max(memberOut[0][r], memberOut[1][r]))) < 1e-6);
  });
});
