import { describe, test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { initEngine } from '../../src/engine/index.js';
import { buildNetwork } from '../../src/models/architectures.js';
import { CAM_METHODS, CamExplainer, type CamMethod, type CamTarget } from '../../src/explain/cam.js';
import { findTargetLayer } from '../../src/models/graph.js';
import { argmax, resizeHeatmap } from '../../src/explain/heatmap.js';
import { faithfulnessTable, formatFaithfulnessTable } from '../../src/explain/faithfulness.js';
import { insideBlob, makeBlobImages, rng, trainBlobNet, type BlobImage } from './blobs.js';

const SIZE = 24;
let net: tfl.LayersModel;
let testImages: BlobImage[];

describe('known answer: a CNN trained on blob images', () => {
  before(async () => {
    await initEngine();
    net = await trainBlobNet(makeBlobImages(400, SIZE, 1), SIZE, 7, 6);
    testImages = makeBlobImages(48, SIZE, 2);
  });

  /** Every (image, class) pair whose blob is in the image: the heatmap of that class must point at that blob. */
  function blobTargets(images: BlobImage[]): CamTarget[] {
    return images.flatMap((im, i) => [
      ...(im.bright ? [{ image: i, classIndex: 0 }] : []),
      ...(im.dark ? [{ image: i, classIndex: 1 }] : []),
    ]);
  }

  function hitRate(method: CamMethod, onlyOneBlob = false): number {
    const e = new CamExplainer(net, 'sigmoid');
    const targets = blobTargets(testImages).filter((t) => !onlyOneBlob || !(testImages[t.image].bright && testImages[t.image].dark));
    const results = e.explain(testImages, targets, method);
    let hits = 0;
    for (const r of results) {
      const im = testImages[r.image];
      const peak = argmax(resizeHeatmap(r.heatmap, SIZE, SIZE));
      if (insideBlob(r.classIndex === 0 ? im.bright! : im.dark!, peak.x, peak.y)) hits++;
    }
    return hits / results.length;
  }

  test('the blob network learned the task (else the known-answer test means nothing)', () => {
    const e = new CamExplainer(net, 'sigmoid');
    const p = e.predict(testImages);
    let correct = 0;
    testImages.forEach((im, i) => im.labels.forEach((y, c) => (correct += Number((p[i * 2 + c] > 0.5 ? 1 : 0) === y))));
    assert.ok(correct / (2 * testImages.length) >= 0.95, `accuracy ${correct / (2 * testImages.length)}`);
  });

  test('known answer: the heatmap maximum falls inside the class blob in >= 90% of test images', () => {
    const rates: string[] = [];
    for (const method of CAM_METHODS) {
      // Grad-CAM++'s closed-form weights (one over the activation mass per channel) are known to be less
      // class-discriminative: with both blobs in an image it may point at the other one. It must still find the blob
      // when the image holds only its own.
      const rate = hitRate(method, method === 'gradcam++');
      rates.push(`${method}=${rate.toFixed(3)}${method === 'gradcam++' ? ` (all: ${hitRate(method).toFixed(3)})` : ''}`);
      assert.ok(rate >= 0.9, `${method}: heatmap max inside the blob in only ${(100 * rate).toFixed(1)}% of images`);
    }
    console.log(`hit rates: ${rates.join(', ')}`);
  });

  // Insertion starts from a blurred copy, in which a blurred blob still reads as a blob: its margin over random is
  // smaller than deletion's by nature.
  test('faithfulness: deleting the hottest pixels first lowers the score faster than random, insertion raises it faster', () => {
    const e = new CamExplainer(net, 'sigmoid');
    const images = testImages.slice(0, 16);
    const targets = blobTargets(images);
    const methods: CamMethod[] = ['gradcam', 'hirescam', 'layercam'];
    const rows = faithfulnessTable(e, images, targets, methods, { steps: 12, randomRepeats: 2, seed: 3 });
    console.log(formatFaithfulnessTable(rows));
    for (const r of rows) {
      assert.ok(r.deletion < r.randomDeletion - 0.1, `${r.method}: deletion AUC ${r.deletion} vs random ${r.randomDeletion}`);
      assert.ok(r.insertion > r.randomInsertion + 0.03, `${r.method}: insertion AUC ${r.insertion} vs random ${r.randomInsertion}`);
    }
  });

  test('several classes of one image in one call give the same maps as one class at a time', () => {
    const e = new CamExplainer(net, 'sigmoid');
    const images = testImages.slice(0, 3);
    const targets = [0, 1, 2].flatMap((i) => [0, 1].map((c) => ({ image: i, classIndex: c })));
    for (const method of ['gradcam', 'gradcam++', 'scorecam'] as const) {
      const batched = e.explain(images, targets, method);
      targets.forEach((t, k) => {
        const single = e.explain([images[t.image]], [{ image: 0, classIndex: t.classIndex }], method)[0];
        assert.equal(batched[k].classIndex, t.classIndex);
        for (let j = 0; j < single.raw.data.length; j++) {
          assert.ok(Math.abs(single.raw.data[j] - batched[k].raw.data[j]) <= 1e-5 * (1 + Math.abs(single.raw.data[j])));
        }
        assert.ok(Math.abs(single.score - batched[k].score) < 1e-5);
      });
    }
  });
});

test('logits are the pre-activation scores and Grad-CAM weights equal finite differences (ResNet with skips, softmax)', () => {
  const model = buildNetwork('resnet18-w8', [32, 32, 3], 3, { activation: 'softmax', seed: 5 });
  // The last block at stride 8 (stage 2 of a 32 px input): its ReLU after the residual add, not the linear
  // convolution before it.
  assert.equal(new CamExplainer(model, 'softmax').layerName, 's2b2_out');
  // Cut at the linear last_conv instead, the head must also carry the skip connection around it (context).
  const e = new CamExplainer(model, 'softmax', { layer: 'last_conv' });
  const rand = rng(9);
  const x = tf.tensor4d(Float32Array.from({ length: 2 * 32 * 32 * 3 }, () => rand() * 2 - 1), [2, 32, 32, 3]);
  tf.tidy(() => {
    const p = model.predict(x) as tf.Tensor;
    const z = e.split.logits(x);
    const close = tf.max(tf.abs(tf.sub(tf.softmax(z), p))).dataSync()[0];
    assert.ok(close < 1e-5, `softmax(logits) differs from the output by ${close}`);
    const { activations, context } = e.split.trunk(x);
    assert.equal(context.length, 1, 'the residual shortcut is context of the head');
    const viaHead = tf.max(tf.abs(tf.sub(e.split.head(activations, context), z))).dataSync()[0];
    assert.ok(viaHead < 1e-4, `head(trunk(x)) differs from the logits by ${viaHead}`);
    // d score / d activation at a few entries, against central differences.
    const a = tf.slice(activations, [0, 0, 0, 0], [1, -1, -1, -1]) as tf.Tensor4D;
    const ctx = context.map((c) => tf.slice(c, [0], [1]));
    const f = (t: tf.Tensor) => tf.sum(tf.slice(e.split.head(t as tf.Tensor4D, ctx), [0, 1], [1, 1]));
    const g = tf.grad(f)(a).dataSync();
    const av = a.dataSync();
    const h = 1e-2;
    for (const idx of [0, 7, Math.floor(av.length / 2), av.length - 3]) {
      const bump = (d: number) => {
        const v = Float32Array.from(av);
        v[idx] += d;
        return f(tf.tensor4d(v, a.shape)).dataSync()[0];
      };
      const numeric = (bump(h) - bump(-h)) / (2 * h);
      assert.ok(Math.abs(numeric - g[idx]) < 2e-3 + 0.02 * Math.abs(numeric), `grad ${g[idx]} vs numeric ${numeric}`);
    }
  });
  x.dispose();
});

test('the target layer is found automatically: the last block at stride 8 at most, overridable by name', () => {
  const alex = buildNetwork('alexnet', [227, 227, 1], 7, { seed: 1 });
  // conv2 (27×27 of 227 px) is the last rectified convolution at stride 8; last_conv works at 13×13.
  assert.equal(findTargetLayer(alex).name, 'conv2');
  // A ResNet block's output is its ReLU after the residual add: stage 2's last block at 224 px (28×28).
  const resnet = buildNetwork('resnet18-narrow', [224, 224, 3], 7, { seed: 1 });
  assert.equal(findTargetLayer(resnet).name, 's2b2_out');
  assert.deepEqual((findTargetLayer(resnet).output as tfl.SymbolicTensor).shape, [null, 28, 28, 32]);
  // Every convolution of the small CNN is at stride 4 or finer: its last block, as before.
  assert.equal(findTargetLayer(buildNetwork('small-cnn', [32, 32, 3], 7, { seed: 1 })).name, 'last_conv');
  // No fixed input side, no stride: the last convolutional block.
  const open = tfl.sequential({
    layers: [
      tfl.layers.conv2d({ inputShape: [null, null, 1], filters: 4, kernelSize: 3, activation: 'relu', name: 'c1' }),
      tfl.layers.conv2d({ filters: 4, kernelSize: 3, strides: 4, activation: 'relu', name: 'c2' }),
      tfl.layers.globalAveragePooling2d({}),
      tfl.layers.dense({ units: 2, activation: 'softmax' }),
    ],
  });
  assert.equal(findTargetLayer(open).name, 'c2');
  assert.equal(findTargetLayer(alex, 'last_conv').name, 'last_conv');
  assert.equal(findTargetLayer(alex, 'conv3').name, 'conv3');
  assert.throws(() => findTargetLayer(alex, 'nope'), /no layer named "nope"/);
  assert.throws(() => findTargetLayer(alex, 'flatten'), /not a spatial feature map/);
  const seq = tfl.sequential({
    layers: [
      tfl.layers.conv2d({ inputShape: [16, 16, 1], filters: 4, kernelSize: 3, activation: 'relu' }),
      tfl.layers.flatten(),
      tfl.layers.dense({ units: 2, activation: 'softmax' }),
    ],
  });
  const e = new CamExplainer(seq, 'softmax');
  const im = { data: new Float32Array(256).map((_, i) => Math.sin(i)), size: 16, channels: 1 };
  const [r] = e.explain([im], [{ image: 0, classIndex: 1 }], 'gradcam');
  assert.equal(r.heatmap.width, 14);
  assert.ok(r.probability > 0 && r.probability < 1);
});

test('Grad-CAM on the native backend equals the JS cpu backend to 1e-4', async (t) => {
  const info = await initEngine();
  if (info.backend !== 'native') {
    if (process.env.CI) assert.fail(`the native backend must be built in CI (${info.reason ?? 'unavailable'})`);
    t.skip(`native backend unavailable here: ${info.reason ?? 'not built'}`);
    return;
  }
  const alex = buildNetwork('alexnet', [227, 227, 1], 7, { seed: 2 });
  const rand = rng(4);
  // One image, three classes (one of them negated): the JS backend needs seconds per AlexNet pass.
  const images = [{ data: Float32Array.from({ length: 227 * 227 }, () => rand() * 4 - 2), size: 227, channels: 1 }];
  const targets = [{ image: 0, classIndex: 1 }, { image: 0, classIndex: 2 }, { image: 0, classIndex: 6, negate: true }];
  // A small ResNet too: its trunk runs as fused conv+BN+ReLU kernels.
  const resnet = buildNetwork('resnet18-w8', [64, 64, 3], 7, { seed: 3 });
  const rgb = [{ data: Float32Array.from({ length: 64 * 64 * 3 }, () => rand() * 4 - 2), size: 64, channels: 3 }];
  const run = async (backend: string, method: CamMethod, net: tfl.LayersModel) => {
    await tf.setBackend(backend);
    return new CamExplainer(net, 'sigmoid').explain(net === alex ? images : rgb, targets, method);
  };
  try {
    for (const [method, net] of [['gradcam', alex], ['gradcam++', alex], ['gradcam', resnet]] as const) {
      const cpu = await run('cpu', method, net);
      const native = await run('native', method, net);
      cpu.forEach((c, k) => {
        let worst = 0;
        c.heatmap.data.forEach((v, j) => (worst = Math.max(worst, Math.abs(v - native[k].heatmap.data[j]))));
        assert.ok(worst <= 1e-4, `${method} target ${k}: heatmaps differ by ${worst}`);
        assert.ok(Math.abs(c.score - native[k].score) <= 1e-4 * (1 + Math.abs(c.score)), `${method}: scores ${c.score} vs ${native[k].score}`);
      });
    }
  } finally {
    await tf.setBackend(info.backend);
  }
});
