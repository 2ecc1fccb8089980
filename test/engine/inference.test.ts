// Inference with batch norms folded into the convolutions and activations and residual additions fused
// (src/engine/inference.ts) against plain model.predict on the JS CPU backend.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { countNativeCalls, nativeOrSkip, randomValues, relativeError, runOn, TOLERANCE } from './native.js';
import { foldedSummary, predictFolded, releaseFolded } from '../../src/engine/inference.js';
import { loadAddon } from '../../src/engine/addon.js';
import type { ConvLayerInternals } from '../../src/engine/internals.js';
import { invertedResidualOfLayers } from '../../src/engine/layer-fusion.js';
import { loadModel } from '../../src/models/io.js';
import { predictFiles } from '../../src/models/predictor.js';
import { PROJECT_ROOT } from '../helpers.js';

/** After a test: FUNDUS_BLOCK_FUSION as the test found it, the native backend, and the model and its plan freed. */
async function restore(previousFusion: string | undefined, model: tfl.LayersModel): Promise<void> {
  if (previousFusion === undefined) delete process.env.FUNDUS_BLOCK_FUSION;
  else process.env.FUNDUS_BLOCK_FUSION = previousFusion;
  await tf.setBackend('native');
  releaseFolded(model);
  model.dispose();
}

const skip = await nativeOrSkip();

/** A bottleneck block with a projection shortcut, a block with an identity shortcut and MobileNetV2's pieces. */
function network(): tfl.LayersModel {
  const init = (seed: number) => tfl.initializers.glorotUniform({ seed });
  const conv = (filters: number, k: number, seed: number, strides = 1, activation: 'linear' | 'relu6' = 'linear') =>
    tfl.layers.conv2d({ filters, kernelSize: k, strides, padding: 'same', activation, kernelInitializer: init(seed), biasInitializer: tfl.initializers.randomUniform({ minval: -0.3, maxval: 0.3, seed }) });
  const bn = () => tfl.layers.batchNormalization({ epsilon: 1.001e-5 });
  const relu = () => tfl.layers.activation({ activation: 'relu' });
  const apply = (l: { apply(x: tfl.SymbolicTensor | tfl.SymbolicTensor[]): unknown }, x: tfl.SymbolicTensor | tfl.SymbolicTensor[]) => l.apply(x) as tfl.SymbolicTensor;
  const input = tfl.input({ shape: [12, 12, 3] });
  // Projection block: conv-BN-ReLU, conv-BN, shortcut conv-BN, add, ReLU.
  let h = apply(relu(), apply(bn(), apply(conv(8, 3, 1, 2), input)));
  h = apply(bn(), apply(conv(16, 1, 2), h));
  const shortcut = apply(bn(), apply(conv(16, 1, 3, 2), input));
  let x = apply(relu(), apply(tfl.layers.add(), [h, shortcut]));
  // Identity block without a final activation.
  h = apply(relu(), apply(bn(), apply(conv(16, 3, 4), x)));
  x = apply(tfl.layers.add(), [x, apply(bn(), apply(conv(16, 1, 5), h))]);
  // MobileNetV2 pieces: depthwise-BN-ReLU6, a convolution with its own ReLU6, a linear projection and an add.
  h = apply(tfl.layers.activation({ activation: 'relu6' }), apply(bn(), apply(tfl.layers.depthwiseConv2d({ kernelSize: 3, padding: 'same', useBias: false, depthwiseInitializer: init(6) }), x)));
  h = apply(conv(16, 1, 8), apply(conv(24, 1, 7, 1, 'relu6'), h));
  x = apply(tfl.layers.add(), [h, x]);
  const pooled = apply(tfl.layers.globalAveragePooling2d({}), x);
  const out = apply(tfl.layers.dense({ units: 3, activation: 'sigmoid', kernelInitializer: init(9) }), pooled);
  const model = tfl.model({ inputs: input, outputs: out });
  // Batch-norm statistics and affine weights far from the identity, so that a wrong fold shows.
  let seed = 20;
  for (const l of model.layers.filter((l) => l.getClassName() === 'BatchNormalization')) {
    const c = l.getWeights()[0].shape[0];
    l.setWeights([
      tf.tensor1d(randomValues(c, seed++, 0.5, 2)),
      tf.tensor1d(randomValues(c, seed++, -0.5, 0.5)),
      tf.tensor1d(randomValues(c, seed++, -1, 1)),
      tf.tensor1d(randomValues(c, seed++, 0.2, 3)),
    ]);
  }
  return model;
}

/**
 * Three MobileNetV2 inverted-residual blocks on a size x size map: expansion, depthwise convolution and projection
 * with batch norms and ReLU6, stride 1 with the identity shortcut, then stride 2 ("same" padding: asymmetric on an
 * even map), then one without batch norms (the layers' own biases and activations, a ReLU6 projection).
 */
function mobileNetBlocks(size: number): tfl.LayersModel {
  const init = (seed: number) => tfl.initializers.glorotUniform({ seed });
  const biasInit = (seed: number) => tfl.initializers.randomUniform({ minval: -0.3, maxval: 0.3, seed });
  const apply = (l: { apply(x: tfl.SymbolicTensor | tfl.SymbolicTensor[]): unknown }, x: tfl.SymbolicTensor | tfl.SymbolicTensor[]) => l.apply(x) as tfl.SymbolicTensor;
  const relu6 = () => tfl.layers.activation({ activation: 'relu6' });
  const bn = () => tfl.layers.batchNormalization({ epsilon: 1e-3 });
  const pointwise = (filters: number, seed: number, useBias = false, activation: 'linear' | 'relu6' = 'linear') =>
    tfl.layers.conv2d({ filters, kernelSize: 1, useBias, activation, kernelInitializer: init(seed), biasInitializer: biasInit(seed) });
  const depthwise = (strides: number, seed: number, useBias = false, activation: 'linear' | 'relu6' = 'linear') =>
    tfl.layers.depthwiseConv2d({ kernelSize: 3, strides, padding: 'same', useBias, activation, depthwiseInitializer: init(seed), biasInitializer: biasInit(seed) });
  const input = tfl.input({ shape: [size, size, 8] });
  let h = apply(relu6(), apply(bn(), apply(pointwise(96, 1), input)));
  h = apply(relu6(), apply(bn(), apply(depthwise(1, 2), h)));
  let x = apply(tfl.layers.add(), [input, apply(bn(), apply(pointwise(8, 3), h))]);
  h = apply(relu6(), apply(bn(), apply(pointwise(48, 4), x)));
  h = apply(relu6(), apply(bn(), apply(depthwise(2, 5), h)));
  x = apply(bn(), apply(pointwise(16, 6), h));
  h = apply(pointwise(96, 7, true, 'relu6'), x);
  h = apply(depthwise(1, 8, true, 'relu6'), h);
  const model = tfl.model({ inputs: input, outputs: apply(pointwise(24, 9, true, 'relu6'), h) });
  let seed = 40;
  for (const l of model.layers.filter((l) => l.getClassName() === 'BatchNormalization')) {
    const c = l.getWeights()[0].shape[0];
    l.setWeights([tf.tensor1d(randomValues(c, seed++, 0.5, 2)), tf.tensor1d(randomValues(c, seed++, -0.5, 0.5)), tf.tensor1d(randomValues(c, seed++, -1, 1)), tf.tensor1d(randomValues(c, seed++, 0.2, 3))]);
  }
  return model;
}

/**
 * A small Keras ResNet-50 v1 on a size x size map, as keras.applications builds it: ZeroPadding2D(3) and a "valid"
 * 7x7 convolution at stride 2 (batch norm, ReLU), ZeroPadding2D(1) and a "valid" 3x3 max pooling at stride 2, then
 * two stages of a projection block (stride on the first 1x1 and on the shortcut) and an identity block each. The
 * first identity block's input is also pooled into the head, so that a later layer reads a residual after its Add.
 * Wide enough at batch 4 that the residuals are recycled buffers (pool.ts), which the plan may sum into in place.
 */
function resnetV1(size: number): tfl.LayersModel {
  const init = (seed: number) => tfl.initializers.heNormal({ seed });
  const apply = (l: { apply(x: tfl.SymbolicTensor | tfl.SymbolicTensor[]): unknown }, x: tfl.SymbolicTensor | tfl.SymbolicTensor[]) => l.apply(x) as tfl.SymbolicTensor;
  const conv = (filters: number, k: number, seed: number, strides = 1, padding: 'same' | 'valid' = 'valid') =>
    tfl.layers.conv2d({ filters, kernelSize: k, strides, padding, kernelInitializer: init(seed), biasInitializer: tfl.initializers.randomUniform({ minval: -0.3, maxval: 0.3, seed }) });
  const bn = () => tfl.layers.batchNormalization({ epsilon: 1.001e-5 });
  const relu = () => tfl.layers.activation({ activation: 'relu' });
  let seed = 1;
  const block = (x: tfl.SymbolicTensor, mid: number, out: number, strides: number, projection: boolean) => {
    let h = apply(relu(), apply(bn(), apply(conv(mid, 1, seed++, strides), x)));
    h = apply(relu(), apply(bn(), apply(conv(mid, 3, seed++, 1, 'same'), h)));
    h = apply(bn(), apply(conv(out, 1, seed++), h));
    const shortcut = projection ? apply(bn(), apply(conv(out, 1, seed++, strides), x)) : x;
    return apply(relu(), apply(tfl.layers.add(), [h, shortcut]));
  };
  const input = tfl.input({ shape: [size, size, 3] });
  let x = apply(tfl.layers.zeroPadding2d({ padding: 3 }), input);
  x = apply(relu(), apply(bn(), apply(conv(16, 7, seed++, 2), x)));
  x = apply(tfl.layers.maxPooling2d({ poolSize: 3, strides: 2 }), apply(tfl.layers.zeroPadding2d({ padding: 1 }), x));
  const early = block(x, 16, 64, 1, true);
  x = block(early, 16, 64, 1, false);
  x = block(x, 32, 128, 2, true);
  x = block(x, 32, 128, 1, false);
  const pooled = apply(tfl.layers.concatenate(), [apply(tfl.layers.globalAveragePooling2d({}), x), apply(tfl.layers.globalAveragePooling2d({}), early)]);
  const model = tfl.model({ inputs: input, outputs: apply(tfl.layers.dense({ units: 5, activation: 'sigmoid', kernelInitializer: init(99) }), pooled) });
  let s = 60;
  for (const l of model.layers.filter((l) => l.getClassName() === 'BatchNormalization')) {
    const c = l.getWeights()[0].shape[0];
    l.setWeights([tf.tensor1d(randomValues(c, s++, 0.5, 1.5)), tf.tensor1d(randomValues(c, s++, -0.5, 0.5)), tf.tensor1d(randomValues(c, s++, -1, 1)), tf.tensor1d(randomValues(c, s++, 0.5, 2))]);
  }
  return model;
}

const X = { shape: [4, 12, 12, 3], values: randomValues(4 * 12 * 12 * 3, 3, -1, 2) };

describe('inference with folded batch norms and fused activations and residuals', { skip }, () => {
  it('folds every batch norm, fuses the activations and both residual additions', () => {
    const model = network();
    assert.deepEqual(foldedSummary(model), { convs: 8, batchNorms: 6, activations: 5, residuals: 3, blocks: 0 });
    model.dispose();
  });

  it('predicts what model.predict predicts on the JS CPU backend, and again after the weights change', async () => {
    await tf.setBackend('native');
    const model = network();
    const x = () => tf.tensor(X.values, X.shape);
    const predictOnCpu = async () => {
      await tf.setBackend('cpu');
      const y = tf.tidy(() => (model.predict(x()) as tf.Tensor).dataSync() as Float32Array);
      await tf.setBackend('native');
      return y;
    };
    const packs = () => loadAddon()!.info().weightPacks;
    const packsAtStart = packs();
    try {
      for (let round = 0; round < 2; round++) {
        // The first prediction after a weight change folds (a few small element-wise ops on the weights).
        const kept = tf.memory().numTensors;
        tf.tidy(() => predictFolded(model, x()).dataSync());
        assert.ok(tf.memory().numTensors - kept <= 2 * 6, 'only the folded filters and biases are kept');
        const before = tf.memory().numTensors;
        const { result: native, calls } = countNativeCalls(() => tf.tidy(() => predictFolded(model, x()).dataSync() as Float32Array));
        assert.equal(calls.conv2dForward, 8, 'every convolution natively');
        assert.equal(calls.batchNorm ?? 0, 0, 'no batch-norm pass');
        assert.equal(calls.unary ?? 0, 0, 'no activation pass');
        assert.equal(calls.binary ?? 0, 0, 'no addition pass');
        assert.equal(tf.memory().numTensors, before, 'nothing leaks');
        assert.equal(packs(), packsAtStart! + 8, 'one weight pack per convolution, the last weights\' replacing the earlier');
        const cpu = await predictOnCpu();
        const err = relativeError(native, cpu);
        assert.ok(err <= TOLERANCE, `round ${round}: relative error ${err}`);
        // New batch-norm statistics (as training leaves them): the fold must follow.
        const bnLayer = model.layers.find((l) => l.getClassName() === 'BatchNormalization')!;
        const [g, b, m, v] = bnLayer.getWeights();
        bnLayer.setWeights([tf.mul(g, 1.5), tf.add(b, 0.25), tf.sub(m, 0.5), tf.mul(v, 2)]);
        // And a new kernel for a convolution without batch norm (packed from the layer's own variable).
        const own = model.layers.find((l) => l.getClassName() === 'Conv2D' && (l as unknown as { activation: { getClassName(): string } }).activation.getClassName() === 'relu6')!;
        const [k, kb] = own.getWeights();
        own.setWeights([tf.mul(k, -0.75), kb]);
      }
    } finally {
      releaseFolded(model);
      model.dispose();
    }
    assert.equal(packs(), packsAtStart, 'releaseFolded frees the weight packs');
  });

  it("runs MobileNetV2's inverted-residual blocks as one native kernel each, as model.predict on the JS CPU backend", async () => {
    const previous = process.env.FUNDUS_BLOCK_FUSION;
    for (const size of [56, 28]) {
      const model = mobileNetBlocks(size);
      assert.deepEqual(foldedSummary(model), { convs: 9, batchNorms: 6, activations: 7, residuals: 1, blocks: 3 });
      const xs = { shape: [3, size, size, 8], values: randomValues(3 * size * size * 8, size, -1, 2) };
      const x = () => tf.tensor(xs.values, xs.shape);
      try {
        for (let round = 0; round < 2; round++) {
          await tf.setBackend('cpu');
          const cpu = tf.tidy(() => (model.predict(x()) as tf.Tensor).dataSync() as Float32Array);
          await tf.setBackend('native');
          // Every block fused (the default), then each as its three convolutions (off).
          process.env.FUNDUS_BLOCK_FUSION = 'on';
          const runs = [0, 1].map(() => countNativeCalls(() => tf.tidy(() => predictFolded(model, x()).dataSync() as Float32Array)));
          process.env.FUNDUS_BLOCK_FUSION = 'off';
          const unfused = countNativeCalls(() => tf.tidy(() => predictFolded(model, x()).dataSync() as Float32Array));
          for (const { result, calls } of runs) {
            assert.equal(calls.invertedResidualForward, 3, `size ${size}: each block as one native call`);
            assert.equal(calls.conv2dForward ?? 0, 0, `size ${size}: no convolution outside the blocks`);
            const err = relativeError(result, cpu);
            assert.ok(err <= TOLERANCE, `size ${size}, round ${round}: relative error ${err}`);
          }
          // oneDNN 2.6's fused primitive on NHWC gave different results from run to run; blocked it must not.
          assert.deepEqual(runs[1].result, runs[0].result, `size ${size}: the same result twice`);
          // An addon built before the block kernel: the same three convolutions.
          process.env.FUNDUS_BLOCK_FUSION = 'on';
          const addon = loadAddon()!;
          const native = addon.invertedResidualForward;
          delete addon.invertedResidualForward;
          const older = (() => {
            try {
              return countNativeCalls(() => tf.tidy(() => predictFolded(model, x()).dataSync() as Float32Array));
            } finally {
              addon.invertedResidualForward = native;
            }
          })();
          for (const { result, calls } of [unfused, older]) {
            assert.equal(calls.invertedResidualForward ?? 0, 0);
            assert.equal(calls.conv2dForward, 9);
            assert.ok(relativeError(result, cpu) <= TOLERANCE);
          }
          // New batch-norm statistics in the first block: its packed filters must follow.
          const bnLayer = model.layers.find((l) => l.getClassName() === 'BatchNormalization')!;
          const [g, b, m, v] = bnLayer.getWeights();
          bnLayer.setWeights([tf.mul(g, 1.5), tf.add(b, 0.25), tf.sub(m, 0.5), tf.mul(v, 2)]);
        }
      } finally {
        await restore(previous, model);
      }
    }
  });

  it("runs a Keras ResNet-50 v1's paddings inside its stem convolution and pooling and sums residuals in place, as model.predict on the JS CPU backend", async () => {
    const previous = process.env.FUNDUS_BLOCK_FUSION;
    const model = resnetV1(96);
    assert.deepEqual(foldedSummary(model), { convs: 15, batchNorms: 15, activations: 13, residuals: 4, blocks: 0 });
    const xs = { shape: [4, 96, 96, 3], values: randomValues(4 * 96 * 96 * 3, 11, -2, 2) };
    const x = () => tf.tensor(xs.values, xs.shape);
    const addon = loadAddon()!;
    const conv = addon.conv2dForward;
    let inPlace = 0;
    addon.conv2dForward = (...args) => {
      if (args[6] && args[6] === args[3]) inPlace++;
      return conv(...args);
    };
    const predict = (mode: string) => {
      process.env.FUNDUS_BLOCK_FUSION = mode;
      inPlace = 0;
      const before = tf.memory().numTensors;
      const r = countNativeCalls(() => tf.tidy(() => predictFolded(model, x()).dataSync() as Float32Array));
      assert.equal(tf.memory().numTensors, before, `${mode}: nothing leaks`);
      return { ...r, inPlace };
    };
    try {
      await tf.setBackend('cpu');
      const cpu = tf.tidy(() => (model.predict(x()) as tf.Tensor).dataSync() as Float32Array);
      await tf.setBackend('native');
      // The first prediction folds the batch norms (the folded filters and biases are kept).
      tf.tidy(() => predictFolded(model, x()).dataSync());
      for (let round = 0; round < 2; round++) {
        const fused = predict('on');
        const unfused = predict('off');
        assert.equal(fused.calls.pad ?? 0, 0, 'both paddings inside the convolution and the pooling');
        assert.equal(fused.calls.poolForward, 1);
        assert.equal(fused.calls.conv2dForward, 15);
        // The first identity block's input is read after its Add (the head pools it): not that one.
        assert.equal(fused.inPlace, 3, 'three of the four residuals summed in place');
        assert.equal(unfused.calls.pad, 2);
        assert.equal(unfused.inPlace, 0);
        for (const [name, r] of [['fused', fused], ['unfused', unfused]] as const) {
          const err = relativeError(r.result, cpu);
          assert.ok(err <= TOLERANCE, `round ${round}, ${name}: relative error ${err}`);
        }
        assert.deepEqual(fused.result, unfused.result, `round ${round}: the same arithmetic`);
      }
    } finally {
      addon.conv2dForward = conv;
      await restore(previous, model);
    }
  });

  it('runs a block natively without weight packs (outside an inference plan), as the layers on the JS CPU backend', async () => {
    const model = mobileNetBlocks(28);
    // The last block: the layers' own biases and ReLU6 activations, on a 14x14 map of 16 channels.
    const [expand, depthwise, project] = model.layers.slice(-3) as unknown as ConvLayerInternals[];
    const xs = { shape: [2, 14, 14, 16], values: randomValues(2 * 14 * 14 * 16, 5, -1, 2) };
    const relu6 = { activation: 'relu6' } as const;
    try {
      const [cpu] = runOn('cpu', [xs], (x) => (model.layers.slice(-3) as tfl.layers.Layer[]).reduce((h, l) => l.apply(h) as tf.Tensor, x));
      const { result, calls } = countNativeCalls(() => runOn('native', [xs], (x) => invertedResidualOfLayers({ expand, depthwise, project }, x as tf.Tensor4D, { expand: relu6, depthwise: relu6, project: relu6 }))[0]);
      assert.equal(calls.invertedResidualForward, 1);
      const err = relativeError(result, cpu);
      assert.ok(err <= TOLERANCE, `relative error ${err}`);
    } finally {
      await tf.setBackend('native');
      model.dispose();
    }
  });

  it('predicts with the shipped models/default on sample photographs what the unfused plan predicts, every time', async () => {
    const previous = process.env.FUNDUS_BLOCK_FUSION;
    const model = await loadModel(join(PROJECT_ROOT, 'models', 'default'));
    const photos = ['004f7ec58fad.jpg', '01cd56fe2454.jpg', '0d11eadea83b.jpg'].map((f) => join(PROJECT_ROOT, 'samples', 'images', f));
    const addon = loadAddon()!;
    const native = addon.invertedResidualForward!;
    let blockCalls = 0;
    addon.invertedResidualForward = (...args) => {
      const done = native(...args);
      if (done) blockCalls++;
      return done;
    };
    const predict = async (mode: string) => {
      process.env.FUNDUS_BLOCK_FUSION = mode;
      blockCalls = 0;
      const probabilities = await predictFiles(model, photos);
      return { probabilities, blockCalls };
    };
    try {
      assert.equal(foldedSummary(model.network)!.blocks, 16, "each of MobileNetV2's 16 expansion blocks");
      const unfused = (await predict('off')).probabilities;
      const runs = [await predict('on'), await predict('on')];
      for (const r of runs) assert.ok(r.blockCalls >= 16, `${r.blockCalls} fused blocks`);
      const fused = runs.map((r) => r.probabilities);
      let diff = 0;
      for (const f of fused) f.forEach((p, i) => (diff = Math.max(diff, Math.abs(p - unfused[i]))));
      assert.ok(diff <= 1e-5, `probabilities differ by up to ${diff}`);
      assert.deepEqual(fused[1], fused[0], 'the same probabilities twice');
    } finally {
      addon.invertedResidualForward = native;
      await restore(previous, model.network);
    }
  });

  it('runs model.predict itself on other backends', async () => {
    const model = network();
    await tf.setBackend('cpu');
    try {
      const folded = tf.tidy(() => predictFolded(model, tf.tensor(X.values, X.shape)).dataSync() as Float32Array);
      const plain = tf.tidy(() => (model.predict(tf.tensor(X.values, X.shape)) as tf.Tensor).dataSync() as Float32Array);
      assert.deepEqual(folded, plain);
    } finally {
      model.dispose();
      await tf.setBackend('native');
    }
  });
});
