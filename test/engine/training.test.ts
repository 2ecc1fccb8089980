// Whole training runs: the native backend reproduces the JS CPU backend's losses, and leaks nothing.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { nativeOrSkip, randomValues } from './native.js';

const skip = await nativeOrSkip();

/** A small AlexNet-like CNN: strided conv, batch norm, max pooling, a second conv block, dense head. */
function smallCnn(): tfl.LayersModel {
  const init = (seed: number) => tfl.initializers.glorotUniform({ seed });
  const m = tfl.sequential();
  m.add(tfl.layers.conv2d({ inputShape: [20, 20, 1], filters: 8, kernelSize: 5, strides: 2, kernelInitializer: init(1) }));
  m.add(tfl.layers.batchNormalization());
  m.add(tfl.layers.activation({ activation: 'relu' }));
  m.add(tfl.layers.maxPooling2d({ poolSize: 3, strides: 2 }));
  m.add(tfl.layers.conv2d({ filters: 12, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: init(2) }));
  m.add(tfl.layers.averagePooling2d({ poolSize: 2 }));
  m.add(tfl.layers.flatten());
  m.add(tfl.layers.dense({ units: 3, activation: 'softmax', kernelInitializer: init(3) }));
  m.compile({ optimizer: tf.train.adam(0.01), loss: 'categoricalCrossentropy' });
  return m;
}

function batch(step: number): { x: tf.Tensor; y: tf.Tensor } {
  const x = tf.tensor4d(randomValues(8 * 20 * 20, 100 + step), [8, 20, 20, 1]);
  const labels = Array.from({ length: 8 }, (_, i) => (i + step) % 3);
  return { x, y: tf.oneHot(tf.tensor1d(labels, 'int32'), 3) };
}

async function losses(backend: string, steps: number): Promise<number[]> {
  await tf.setBackend(backend);
  const model = smallCnn();
  const out: number[] = [];
  for (let s = 0; s < steps; s++) {
    const { x, y } = batch(s);
    out.push((await model.trainOnBatch(x, y)) as number);
    tf.dispose([x, y]);
  }
  model.dispose();
  return out;
}

describe('training on the native backend', { skip }, () => {
  it('gives the same losses as the JS CPU backend over 20 steps (to 1e-3)', async () => {
    const native = await losses('native', 20);
    const cpu = await losses('cpu', 20);
    for (let i = 0; i < 20; i++) {
      assert.ok(Math.abs(native[i] - cpu[i]) <= 1e-3 * Math.max(1, Math.abs(cpu[i])), `step ${i}: native ${native[i]} vs cpu ${cpu[i]}`);
    }
    assert.ok(native[19] < native[0], `the loss falls (${native[0]} -> ${native[19]})`);
  });

  it('keeps tf.memory() and RSS stable over 200 steps', async () => {
    await tf.setBackend('native');
    const model = smallCnn();
    const x = tf.tensor4d(randomValues(8 * 20 * 20, 7), [8, 20, 20, 1]);
    const y = tf.oneHot(tf.tensor1d([0, 1, 2, 0, 1, 2, 0, 1], 'int32'), 3);
    let at20: tf.MemoryInfo | undefined;
    let rss20 = 0;
    for (let s = 0; s < 200; s++) {
      await model.trainOnBatch(x, y);
      if (s === 19) {
        at20 = tf.memory();
        rss20 = process.memoryUsage.rss();
      }
    }
    const end = tf.memory();
    assert.equal(end.numTensors, at20!.numTensors, 'no tensors leak');
    assert.equal(end.numBytes, at20!.numBytes, 'no tensor bytes leak');
    const growth = process.memoryUsage.rss() - rss20;
    assert.ok(growth < 64 * 2 ** 20, `RSS grew by ${(growth / 2 ** 20).toFixed(1)} MiB over 180 steps`);
    tf.dispose([x, y]);
    model.dispose();
  });
});
