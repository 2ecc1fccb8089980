import * as tf from '@tensorflow/tfjs-core';
import { predictFolded } from '../engine/inference.js';
import { InputError } from '../util/errors.js';
import type { FundusModel } from './io.js';

function checkInput(model: FundusModel, x: tf.Tensor4D): void {
  const [h, w, c] = model.metadata.inputShape;
  const [, xh, xw, xc] = x.shape;
  if (xh !== h || xw !== w || xc !== c) {
    throw new InputError(`model ${model.dir} expects ${h}x${w}x${c} inputs, got ${xh}x${xw}x${xc}`);
  }
}

/**
 * Probabilities for a batch of preprocessed inputs [n, h, w, c]: n×C row-major, after the model's activation (the
 * saved network ends with its sigmoid/softmax, see architectures.ts). Training-time layers run in inference mode, with
 * batch norms folded into the convolutions on the native engine (engine/inference.ts). A model that records flip
 * test-time augmentation averages the photo's and its mirror image's probabilities.
 */
export function predictTensor(model: FundusModel, x: tf.Tensor4D): Float32Array {
  checkInput(model, x);
  return tf.tidy(() => {
    let y = predictFolded(model.network, x);
    if (model.metadata.inference?.tta === 'hflip') y = tf.mul(0.5, tf.add(y, predictFolded(model.network, tf.reverse(x, 2))));
    return y.dataSync() as Float32Array;
  }).slice();
}

/** Stacks preprocessed HWC arrays into one [n, h, w, c] tensor. */
export function stackImages(images: Float32Array[], shape: [number, number, number]): tf.Tensor4D {
  const [h, w, c] = shape;
  const per = h * w * c;
  const buf = new Float32Array(images.length * per);
  images.forEach((im, i) => {
    if (im.length !== per) throw new Error(`image ${i} has ${im.length} values, expected ${per}`);
    buf.set(im, i * per);
  });
  return tf.tensor4d(buf, [images.length, h, w, c]);
}
