// tfjs-layers' convolution layers with bias and activation fused (src/engine/layer-fusion.ts): the same predictions
// and gradients as plain tfjs-layers on the JS CPU backend, in fewer kernels.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { countNativeCalls, nativeOrSkip, randomValues, relativeError, TOLERANCE } from './native.js';

const skip = await nativeOrSkip();

/** An inverted residual block as MobileNetV2 builds it: expand (ReLU6), depthwise with bias (ReLU6), project. */
function block(activation: 'relu6' | 'sigmoid' | 'relu'): tfl.LayersModel {
  const init = (seed: number) => tfl.initializers.glorotUniform({ seed });
  const bias = (seed: number) => tfl.initializers.randomUniform({ minval: -0.5, maxval: 0.5, seed });
  const input = tfl.input({ shape: [9, 9, 4] });
  const expand = tfl.layers.conv2d({ filters: 8, kernelSize: 1, activation, kernelInitializer: init(1), biasInitializer: bias(2) }).apply(input);
  const dw = tfl.layers.depthwiseConv2d({ kernelSize: 3, padding: 'same', activation, depthwiseInitializer: init(3), biasInitializer: bias(4) }).apply(expand);
  const strided = tfl.layers.depthwiseConv2d({ kernelSize: 3, strides: 2, padding: 'same', useBias: false, depthwiseInitializer: init(5) }).apply(dw);
  const project = tfl.layers.conv2d({ filters: 4, kernelSize: 1, kernelInitializer: init(6), biasInitializer: bias(7) }).apply(strided);
  return tfl.model({ inputs: input, outputs: project as tfl.SymbolicTensor });
}

const X = { shape: [3, 9, 9, 4], values: randomValues(3 * 9 * 9 * 4, 21, -2, 8) };

async function predictOn(backend: string, activation: 'relu6' | 'sigmoid' | 'relu'): Promise<Float32Array> {
  await tf.setBackend(backend);
  const model = block(activation);
  try {
    return tf.tidy(() => (model.predict(tf.tensor(X.values, X.shape)) as tf.Tensor).dataSync() as Float32Array);
  } finally {
    model.dispose();
  }
}

/** Gradients of a loss with respect to the input and every weight, in a training-mode forward pass. */
async function gradientsOn(backend: string): Promise<Float32Array[]> {
  await tf.setBackend(backend);
  const model = block('relu6');
  try {
    return tf.tidy(() => {
      const x = tf.tensor(X.values, X.shape);
      const weights = model.trainableWeights.map((w) => w.read() as tf.Variable);
      const f = (input: tf.Tensor, ...ws: tf.Tensor[]) => {
        void ws;
        return tf.sum(tf.square(model.apply(input, { training: true }) as tf.Tensor));
      };
      return tf.grads(f)([x, ...weights]).map((g) => g.dataSync() as Float32Array);
    });
  } finally {
    model.dispose();
  }
}

describe('fused convolution layers on the native backend', { skip }, () => {
  for (const activation of ['relu6', 'sigmoid', 'relu'] as const) {
    it(`predict with ${activation}: same outputs as plain tfjs-layers, bias and activation inside the convolution`, async () => {
      const { result: native, calls } = await (async () => {
        await tf.setBackend('native');
        return countNativeCalls(() => {
          const model = block(activation);
          try {
            return tf.tidy(() => (model.predict(tf.tensor(X.values, X.shape)) as tf.Tensor).dataSync() as Float32Array);
          } finally {
            model.dispose();
          }
        });
      })();
      const cpu = await predictOn('cpu', activation);
      const err = relativeError(native, cpu);
      assert.ok(err <= TOLERANCE, `relative error ${err}`);
      // Four convolutions and nothing else: no bias Add, no activation kernel.
      assert.equal(calls.conv2dForward, 4);
      assert.equal(calls.binary ?? 0, 0, 'no separate bias add');
      assert.equal(calls.unary ?? 0, 0, 'no separate activation');
      await tf.setBackend('native');
    });
  }

  it('training-mode gradients equal plain tfjs-layers (depthwise bias fused, ReLU6 a kernel of its own)', async () => {
    const native = await gradientsOn('native');
    const cpu = await gradientsOn('cpu');
    assert.equal(native.length, cpu.length);
    cpu.forEach((c, i) => {
      const err = relativeError(native[i], c);
      assert.ok(err <= TOLERANCE, `gradient ${i}: relative error ${err}`);
    });
    await tf.setBackend('native');
  });
});
