import * as tf from '@tensorflow/tfjs-core';
import { preprocessImage } from '../data/preprocess.js';
import { mapLimit } from '../data/cache.js';
import { InputError } from '../util/errors.js';
import type { FundusModel } from './io.js';

export interface PredictOptions {
  /** Images per forward pass (default 16): bounds memory while keeping the kernels busy. */
  batchSize?: number;
  /** Called after each batch with the number of images done so far. */
  onProgress?: (done: number) => void;
}

function checkInput(model: FundusModel, x: tf.Tensor4D): void {
  const [h, w, c] = model.metadata.inputShape;
  const [, xh, xw, xc] = x.shape;
  if (xh !== h || xw !== w || xc !== c) {
    throw new InputError(`model ${model.dir} expects ${h}x${w}x${c} inputs, got ${xh}x${xw}x${xc}`);
  }
}

/**
 * Probabilities for a batch of preprocessed inputs [n, h, w, c]: n×C row-major, after the model's activation (the
 * saved network ends with its sigmoid/softmax, see architectures.ts). Training-time layers run in inference mode. A
 * model that records flip test-time augmentation averages the photo's and its mirror image's probabilities.
 */
export function predictTensor(model: FundusModel, x: tf.Tensor4D): Float32Array {
  checkInput(model, x);
  return tf.tidy(() => {
    let y = model.network.predict(x) as tf.Tensor;
    if (model.metadata.inference?.tta === 'hflip') y = tf.mul(0.5, tf.add(y, model.network.predict(tf.reverse(x, 2)) as tf.Tensor));
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

/**
 * Preprocesses each photo exactly as the model was trained (its stored settings) and predicts in batches. Returns
 * N×C row-major probabilities in input order. InputError naming the file when a photo cannot be read.
 */
export async function predictFiles(model: FundusModel, inputs: (string | Buffer)[], opts: PredictOptions = {}): Promise<Float32Array> {
  const batchSize = Math.max(1, Math.floor(opts.batchSize ?? 16));
  const numClasses = model.metadata.classes.length;
  const out = new Float32Array(inputs.length * numClasses);
  for (let start = 0; start < inputs.length; start += batchSize) {
    const chunk = inputs.slice(start, start + batchSize);
    const images = await mapLimit(chunk, 4, async (input) => (await preprocessImage(input, model.metadata.preprocess)).data);
    const x = stackImages(images, model.metadata.inputShape);
    try {
      out.set(predictTensor(model, x), start * numClasses);
    } finally {
      x.dispose();
    }
    opts.onProgress?.(start + chunk.length);
  }
  return out;
}
