import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { augmentDrawn, warpMask } from '../../src/data/augment.js';
import { loadPreprocessedBytes } from '../../src/data/cache.js';
import { toPhotoCoordinates } from '../../src/data/geometry.js';
import { normalizeBytes } from '../../src/data/preprocess.js';
import { initEngine } from '../../src/engine/index.js';
import { loadModel } from '../../src/models/io.js';
import { LESION_MAP_LAYER, hasLesionHead } from '../../src/models/lesion-head.js';
import { CamExplainer } from '../../src/explain/cam.js';
import { attentionLoss, attentionTaps, attentionWeights, boxOnInput, lesionMapLoss, lesionBoxesOnInputs, maskOnGrid, rasterBoxes } from '../../src/train/lesion-attention.js';
import { trainModel } from '../../src/train/train.js';
import type { Box } from '../../src/data/lesions.js';
import { InputError } from '../../src/util/errors.js';
import { tinyTrainOptions } from './fixtures.js';

test('boxes go onto the network input as the crop maps it back, and onto the feature grid by cell', () => {
  const g = { width: 640, height: 425, x: 40, y: -47, side: 520 };
  const b = boxOnInput({ x0: 300, y0: 100, x1: 340, y1: 150 }, g, 448);
  const [x0, y0] = toPhotoCoordinates(g, 448, b.x0, b.y0);
  const [x1, y1] = toPhotoCoordinates(g, 448, b.x1, b.y1);
  assert.deepEqual([x0, y0, x1, y1].map((v) => +v.toFixed(9)), [300, 100, 340, 150]);

  // pixel centres: 10..20 covers pixels 10..19 (centres 10.5..19.5)
  const m = rasterBoxes([{ x0: 10, y0: 10, x1: 20, y1: 20 }, { x0: 40, y0: 0, x1: 50, y1: 5 }], 32);
  assert.equal(m.reduce((a, v) => a + v, 0), 100);
  assert.equal(m[10 * 32 + 10], 1);
  assert.equal(m[9 * 32 + 10], 0);
  assert.equal(m[10 * 32 + 20], 0);
  assert.deepEqual(Array.from(maskOnGrid(m, 32, 4, 4)), [0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0]);

  const examples = [
    { path: '/a/x/1.jpg', filename: 'codras/1.jpg', target: new Float32Array(1), weight: 1, source: 'codras' },
    { path: '/a/y/1.jpg', filename: 'vietai/1.jpg', target: new Float32Array(1), weight: 1, source: 'vietai' },
    { path: '/a/x/2.jpg', filename: 'codras/2.jpg', target: new Float32Array(1), weight: 1, source: 'codras' },
  ];
  const box = { lesion: 'haemorrhage', line: 2, x0: 0, y0: 0, x1: 52, y1: 52 };
  const table = { file: 'l.csv', format: 'codras' as const, types: { haemorrhage: 1 }, kept: ['haemorrhage'], byImage: new Map([['1.jpg', [box]]]) };
  const square = { width: 520, height: 520, x: 0, y: 0, side: 520 };
  const on = lesionBoxesOnInputs(examples, [square, square, square], 448, table, 'codras');
  assert.deepEqual(on.map((b) => b?.map((x) => +x.x1.toFixed(6))), [[44.8], undefined, undefined]);
});

test('the attention loss is minus the log of the class map softmax inside the box cells, 0 for photographs without boxes', async () => {
  await initEngine();
  // 1 photo with boxes, 1 without; 2x2 grid, 2 channels, 2 classes: the class-1 map is features[..., 0] * 2
  const features = tf.tensor4d([1, 0, 2, 0, 0, 0, 3, 0, 5, 0, 5, 0, 5, 0, 5, 0], [2, 2, 2, 2]);
  const weights = tf.tensor2d([2, 0, 2, 0], [2, 2]);
  const cells = tf.tensor3d([0, 1, 1, 0, 0, 0, 0, 0], [2, 2, 2]);
  const present = tf.tensor1d([1, 0]);
  const cam = [2, 4, 0, 6];
  const z = cam.reduce((a, v) => a + Math.exp(v), 0);
  const expected = -Math.log((Math.exp(4) + Math.exp(0)) / z);
  const loss = attentionLoss(features, weights, cells, present);
  assert.ok(Math.abs(loss.dataSync()[0] - expected) < 1e-5, `${loss.dataSync()[0]} vs ${expected}`);
  const g = tf.grad((f: tf.Tensor) => attentionLoss(f as tf.Tensor4D, weights, cells, present))(features);
  const gd = g.arraySync() as number[][][][];
  assert.ok(gd[1].flat(2).every((v) => v === 0), 'no gradient from a photograph without boxes');
  // moving evidence into the box cells lowers the loss: the box cells' gradient is negative, the others' positive
  assert.ok(gd[0][0][1][0] < 0 && gd[0][1][0][0] < 0 && gd[0][0][0][0] > 0 && gd[0][1][1][0] > 0);
});

test('the lesion map loss: cross-entropy of box cells and other cells averaged apart, photographs with and without boxes averaged apart', async () => {
  await initEngine();
  // 3 photographs on a 1x2 grid: one with a box in its first cell, one free of lesions, one out of the loss.
  const map = tf.tensor4d([2, -1, 0.5, -3, 7, 7], [3, 1, 2, 1]);
  const cells = tf.tensor3d([1, 0, 0, 0, 0, 0], [3, 1, 2]);
  const present = tf.tensor1d([1, 1, 0]);
  const sp = (v: number) => Math.log1p(Math.exp(v));
  const expected = sp(-2) + sp(-1) + (sp(0.5) + sp(-3)) / 2;
  const loss = lesionMapLoss(map, cells, present).dataSync()[0];
  assert.ok(Math.abs(loss - expected) < 1e-5, `${loss} vs ${expected}`);
  assert.equal(lesionMapLoss(map, cells, tf.zeros([3]) as tf.Tensor1D).dataSync()[0], 0);
  // the photograph out of the loss gets no gradient; a box cell is pushed up, the others down
  const g = tf.grad((m: tf.Tensor) => lesionMapLoss(m as tf.Tensor4D, cells, present))(map).dataSync();
  assert.deepEqual([g[4], g[5]], [0, 0]);
  assert.ok(g[0] < 0 && g[1] > 0 && g[2] > 0 && g[3] > 0, Array.from(g).join(', '));
});

test("at a named layer the guided map is the class's Grad-CAM there, on the layers' current weights", async () => {
  await initEngine();
  const input = tfl.input({ shape: [12, 12, 3] });
  // Seeded: some draws (seeds 1, 2, 3 among them) give a class map negative everywhere, all zero after the ReLU.
  const seeded = (seed: number) => tfl.initializers.glorotUniform({ seed });
  let x = tfl.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', useBias: false, kernelInitializer: seeded(11), name: 'c1' }).apply(input) as tfl.SymbolicTensor;
  x = tfl.layers.batchNormalization({ name: 'b1' }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.activation({ activation: 'relu', name: 'r1' }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.conv2d({ filters: 5, kernelSize: 3, strides: 2, padding: 'same', activation: 'relu', kernelInitializer: seeded(12), name: 'c2' }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.globalAveragePooling2d({ name: 'gap' }).apply(x) as tfl.SymbolicTensor;
  const out = tfl.layers.dense({ units: 2, activation: 'sigmoid', kernelInitializer: seeded(13), name: 'logits' }).apply(x) as tfl.SymbolicTensor;
  const network = tfl.model({ inputs: input, outputs: out });
  const images = tf.randomUniform([3, 12, 12, 3], -1, 1, 'float32', 5) as tf.Tensor4D;
  const taps = attentionTaps(network, 'r1');
  const features = tfl.model({ inputs: network.inputs, outputs: taps.features });
  const present = tf.tensor1d([1, 0, 1]);
  const mapsOf = () => {
    const weights = attentionWeights(taps, images, 1, present);
    const f = features.predict(images) as tf.Tensor4D;
    // the guided map over the number of cells, rectified: what Grad-CAM shows
    return tf.tidy(() => tf.relu(tf.div(tf.sum(tf.mul(f, tf.reshape(weights, [3, 1, 1, 4])), 3), 144)).arraySync() as number[][][]);
  };
  const gradCam = () => {
    // The explainer folds batch norm into the convolution when it is built: build it anew after the weights change.
    const explainer = new CamExplainer(network, 'sigmoid', { layer: 'r1' });
    const data = images.arraySync() as number[][][][];
    const inputs = data.map((im) => ({ size: 12, channels: 3, data: Float32Array.from(im.flat(2)) }));
    return explainer.explain(inputs, [0, 2].map((image) => ({ image, classIndex: 1 })), 'gradcam').map((r) => Array.from(r.raw.data));
  };
  // Batch norm with statistics of its own, changed after the taps were made (training moves them at every step).
  const bn = network.getLayer('b1');
  bn.setWeights([tf.tensor1d([1.5, 0.5, 2, 1]), tf.tensor1d([0.1, -0.2, 0.3, 0]), tf.tensor1d([0.2, -0.1, 0, 0.3]), tf.tensor1d([0.5, 2, 1, 0.8])]);
  for (const attempt of [0, 1]) {
    if (attempt === 1) bn.setWeights([tf.tensor1d([0.5, 1.5, 1, 2]), tf.tensor1d([0, 0.2, -0.3, 0.1]), tf.tensor1d([-0.3, 0.1, 0.2, 0]), tf.tensor1d([1.5, 0.3, 0.7, 1])]);
    const maps = mapsOf();
    const expected = gradCam();
    assert.ok(maps[1].flat().every((v) => v === 0), 'a photograph without boxes gets no weights');
    [0, 2].forEach((image, k) => {
      const got = maps[image].flat();
      const scale = Math.max(...expected[k].map(Math.abs));
      assert.ok(scale > 0, 'a map with something in it');
      got.forEach((v, i) => assert.ok(Math.abs(v - expected[k][i]) < 1e-4 * scale, `weights ${attempt}, image ${image}, cell ${i}: ${v} vs ${expected[k][i]}`));
    });
  }
});

test('a mask moves with its image under augmentation', async () => {
  const size = 40;
  const mask = rasterBoxes([{ x0: 5, y0: 8, x1: 17, y1: 20 }], size);
  // one channel equal to the mask, in units that normalise 0 to black
  const image = Float32Array.from(mask, (v) => (v - 0.5) / 0.25);
  let state = 12345;
  const rng = () => ((state = (state * 1103515245 + 12345) >>> 0) / 4294967296);
  const settings = { hflip: 1, rotation: 20, scale: 0.1, translate: 0.1, brightness: 0, contrast: 0, gamma: 0, normalize: { mean: [0.5], std: [0.25] } };
  const { image: moved, params } = augmentDrawn(image, size, 1, rng, settings);
  const warped = warpMask(mask, size, params);
  for (let i = 0; i < warped.length; i++) assert.ok(Math.abs(warped[i] - (moved[i] * 0.25 + 0.5)) < 1e-5, `pixel ${i}`);
  assert.ok(warped.some((v, i) => Math.abs(v - mask[i]) > 0.5), 'the augmentation moved the mask');
});

/** Box cells share of the class map's softmax, per photograph, on unaugmented inputs (what the loss trains). */
async function shareInBoxes(modelDir: string, paths: string[], boxes: Box[][], classIndex: number, layer?: string): Promise<number> {
  const model = await loadModel(modelDir);
  const taps = attentionTaps(model.network, layer);
  const { features } = taps;
  const featureNet = tfl.model({ inputs: model.network.inputs, outputs: features });
  const [size, , channels] = model.metadata.inputShape;
  const bytes = await loadPreprocessedBytes(paths, model.metadata.preprocess, { cache: false });
  const [rows, cols] = features.shape.slice(1, 3) as [number, number];
  const x = tf.tensor4d(
    Float32Array.from(bytes.flatMap((b) => Array.from(normalizeBytes(b.pixels, channels, model.metadata.preprocess)))),
    [paths.length, size, size, channels],
  );
  const cells = tf.tensor3d(
    Float32Array.from(bytes.flatMap((b, i) => Array.from(maskOnGrid(rasterBoxes(boxes[i].map((bx) => boxOnInput(bx, b.geometry, size)), size), size, rows, cols)))),
    [paths.length, rows, cols],
  );
  const present = tf.ones([paths.length]) as tf.Tensor1D;
  const loss = attentionLoss(featureNet.predict(x) as tf.Tensor4D, attentionWeights(taps, x, classIndex, present), cells, present);
  return Math.exp(-loss.dataSync()[0]);
}

test('train --lesion-attention guides the class map into the boxes, and records it', async () => {
  await initEngine();
  const base = await tinyTrainOptions('plain', 2, { imageSize: 48, epochs: 4, lr: 5e-3, augment: false });
  const split = JSON.parse(await readFile(base.split!, 'utf8')) as { parts: { train: string[] } };
  // A box in the upper left of every training photograph (VietAI photographs are 512 x 512).
  const lesions = join(base.out, '..', 'lesions.csv');
  await writeFile(lesions, ['filename,lesion,x0,y0,x1,y1', ...split.parts.train.map((f) => `${f},haemorrhage,40,40,200,200`)].join('\n') + '\n');
  const guided = { ...base, out: base.out.replace('plain', 'guided'), runDir: base.runDir!.replace('plain', 'guided'), lesionAttention: 2, lesions };

  const plain = await trainModel(base);
  const r = await trainModel(guided);
  assert.ok(r.history.every((h) => Number.isFinite(h.attention_loss)), JSON.stringify(r.history));
  assert.deepEqual(r.metadata.training?.lesionAttention, {
    className: 'diabetic retinopathy',
    weight: 2,
    lesions,
    photographs: split.parts.train.length,
    boxes: split.parts.train.length,
  });
  assert.match(await readFile(join(r.modelDir, 'MODEL_CARD.md'), 'utf8'), /map was guided into expert lesion boxes/);

  const paths = split.parts.train.map((f) => join(base.images!, f));
  const boxes = paths.map(() => [{ x0: 40, y0: 40, x1: 200, y1: 200 }]);
  const dr = r.metadata.classes.indexOf('diabetic retinopathy');
  const before = await shareInBoxes(plain.modelDir, paths, boxes, dr);
  const after = await shareInBoxes(r.modelDir, paths, boxes, dr);
  assert.ok(after > before + 0.1, `share of the map in the boxes: ${before.toFixed(3)} unguided, ${after.toFixed(3)} guided`);

  // Guided at a finer layer (its Grad-CAM map), as the heatmaps a specialist sees are read there.
  const atLayer = { ...guided, out: base.out.replace('plain', 'layer'), runDir: base.runDir!.replace('plain', 'layer'), lesionLayer: 'bn2' };
  const l = await trainModel(atLayer);
  assert.equal(l.metadata.training?.lesionAttention?.layer, 'bn2');
  assert.match(await readFile(join(l.modelDir, 'MODEL_CARD.md'), 'utf8'), /map \(Grad-CAM at bn2\) was guided into expert lesion boxes/);
  const layerBefore = await shareInBoxes(plain.modelDir, paths, boxes, dr, 'bn2');
  const layerAfter = await shareInBoxes(l.modelDir, paths, boxes, dr, 'bn2');
  assert.ok(layerAfter > layerBefore + 0.1, `share of the bn2 Grad-CAM map in the boxes: ${layerBefore.toFixed(3)} unguided, ${layerAfter.toFixed(3)} guided`);
});

test('train --lesion-head trains a lesion map on the boxes and on photographs graded free of the class, and records it', async () => {
  await initEngine();
  const base = await tinyTrainOptions('head', 3, { imageSize: 48, epochs: 12, lr: 5e-3, augment: false });
  const split = JSON.parse(await readFile(base.split!, 'utf8')) as { parts: { train: string[] } };
  const [header, ...lines] = (await readFile(base.csv!, 'utf8')).trim().split('\n');
  const dr = header.split(',').indexOf('diabetic retinopathy');
  const graded = new Map(lines.map((r) => [r.split(',')[0], r.split(',')[dr]]));
  const positives = split.parts.train.filter((f) => graded.get(f) === '1');
  // A box in the upper left of every training photograph with diabetic retinopathy (VietAI photographs are 512 x 512).
  const lesions = join(base.out, '..', 'lesions.csv');
  await writeFile(lesions, ['filename,lesion,x0,y0,x1,y1', ...positives.map((f) => `${f},haemorrhage,40,40,200,200`)].join('\n') + '\n');
  const r = await trainModel({ ...base, lesionAttention: 1, lesions, lesionLayer: 'bn2', lesionHead: true });
  const negatives = split.parts.train.length - positives.length;
  assert.deepEqual(r.metadata.training?.lesionAttention, {
    className: 'diabetic retinopathy', weight: 1, lesions, photographs: positives.length, boxes: positives.length, layer: 'bn2', head: true, negatives,
  });
  const losses = r.history.map((h) => h.attention_loss as number);
  assert.ok(losses[losses.length - 1] < losses[0], `the segmentation loss falls: ${losses.join(', ')}`);
  assert.match(await readFile(join(r.modelDir, 'MODEL_CARD.md'), 'utf8'), /a lesion map head on bn2 \(`lesion_map`, one logit per cell\) was trained as weak segmentation/);

  // The map of the photographs with boxes: higher in the box cells than elsewhere; lower everywhere on the others.
  const model = await loadModel(r.modelDir);
  assert.ok(hasLesionHead(model.network));
  const map = tfl.model({ inputs: model.network.inputs, outputs: model.network.getLayer(LESION_MAP_LAYER).output as tfl.SymbolicTensor });
  const bytes = await loadPreprocessedBytes(split.parts.train.map((f) => join(base.images!, f)), model.metadata.preprocess, { cache: false });
  const x = tf.tensor4d(Float32Array.from(bytes.flatMap((b) => Array.from(normalizeBytes(b.pixels, 3, model.metadata.preprocess)))), [bytes.length, 48, 48, 3]);
  const z = (map.predict(x) as tf.Tensor4D).arraySync().map((im) => im.flat(2));
  const [rows, cols] = (map.outputs[0].shape as number[]).slice(1, 3);
  const cellsOf = bytes.map((b) => maskOnGrid(rasterBoxes([boxOnInput({ x0: 40, y0: 40, x1: 200, y1: 200 }, b.geometry, 48)], 48), 48, rows, cols));
  const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;
  const inBox = mean(split.parts.train.flatMap((f, i) => (positives.includes(f) ? z[i].filter((_, c) => cellsOf[i][c] > 0) : [])));
  const outside = mean(split.parts.train.flatMap((f, i) => (positives.includes(f) ? z[i].filter((_, c) => cellsOf[i][c] === 0) : [])));
  const free = mean(split.parts.train.flatMap((f, i) => (positives.includes(f) ? [] : z[i])));
  assert.ok(inBox > outside + 0.5 && inBox > free + 0.5, `lesion map logits: ${inBox.toFixed(2)} in the boxes, ${outside.toFixed(2)} outside, ${free.toFixed(2)} on lesion-free photographs`);

  const o = await tinyTrainOptions('head-bad', 1);
  await assert.rejects(trainModel({ ...o, lesionAttention: 1, lesions, lesionHead: true }), (e: unknown) => e instanceof InputError && /--lesion-head needs --lesion-layer/.test(e.message));
  await assert.rejects(trainModel({ ...o, lesionHead: true }), (e: unknown) => e instanceof InputError && /go with --lesion-attention/.test(e.message));
});

test('train refuses lesion attention without boxes, with an unknown class or source, and boxes without it', async () => {
  const o = await tinyTrainOptions('bad', 1);
  const lesions = join(o.out, '..', 'lesions.csv');
  await writeFile(lesions, 'filename,lesion,x0,y0,x1,y1\nnot-a-photo.jpg,haemorrhage,1,1,5,5\n');
  const rejects = (extra: Partial<typeof o>, pattern: RegExp) =>
    assert.rejects(trainModel({ ...o, ...extra }), (e: unknown) => e instanceof InputError && pattern.test(e.message), JSON.stringify(extra));
  await rejects({ lesions }, /go with --lesion-attention/);
  await rejects({ lesionLayer: 'bn2' }, /go with --lesion-attention/);
  await rejects({ lesionAttention: 1 }, /needs --lesions/);
  await rejects({ lesionAttention: 1, lesions }, /no training photograph has a box/);
  await rejects({ lesionAttention: 1, lesions, lesionClass: 'cataract' }, /no class 'cataract'/);
  await rejects({ lesionAttention: 1, lesions, lesionSource: 'codras' }, /not a training source/);
});
