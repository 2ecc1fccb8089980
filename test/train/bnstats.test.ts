import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { initEngine } from '../../src/engine/index.js';
import { recalibrateBatchNorm } from '../../src/train/bnstats.js';

test('precise BN: moving statistics become the mean of the batch statistics; momentum is restored', async () => {
  await initEngine();
  const input = tfl.input({ shape: [2, 2, 3] });
  const bn = tfl.layers.batchNormalization({ name: 'bn' });
  const net = tfl.model({ inputs: input, outputs: bn.apply(input) as tfl.SymbolicTensor });
  const a = tf.randomNormal([4, 2, 2, 3], 2, 3, 'float32', 1) as tf.Tensor4D;
  const b = tf.randomNormal([4, 2, 2, 3], -1, 0.5, 'float32', 2) as tf.Tensor4D;
  assert.equal(recalibrateBatchNorm(net, [a, b]), 2);
  const ma = tf.moments(a, [0, 1, 2]);
  const mb = tf.moments(b, [0, 1, 2]);
  const [, , mean, variance] = bn.getWeights();
  const close = (x: tf.Tensor, y: tf.Tensor) =>
    Array.from(x.dataSync()).forEach((v, i) => assert.ok(Math.abs(v - y.dataSync()[i]) < 1e-4, `${v} vs ${y.dataSync()[i]}`));
  close(mean, tf.div(tf.add(ma.mean, mb.mean), 2));
  close(variance, tf.div(tf.add(ma.variance, mb.variance), 2));
  assert.equal((bn as unknown as { momentum: number }).momentum, 0.99);
});
