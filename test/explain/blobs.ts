/**
 * The known-answer fixture for CAM tests: small grey images whose labels depend only on blobs at random positions.
 * Class 0 (`bright`) is present when the image holds a bright disc, class 1 (`dark`) when it holds a dark one; each is
 * present independently, so an image may hold both and a heatmap of one class must find its own blob, not the other.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import type { CamInput } from '../../src/explain/cam.js';
import { seededRandom } from '../../src/data/random.js';

export interface Blob {
  cx: number;
  cy: number;
  r: number;
}

export interface BlobImage extends CamInput {
  labels: [number, number];
  bright?: Blob;
  dark?: Blob;
}

/** Deterministic PRNG, so that the fixture and thus the test outcome never change between runs. */
export const rng = seededRandom;

export function insideBlob(b: Blob, x: number, y: number, margin = 0): boolean {
  return (x + 0.5 - b.cx) ** 2 + (y + 0.5 - b.cy) ** 2 <= (b.r + margin) ** 2;
}

export function makeBlobImages(n: number, size: number, seed: number): BlobImage[] {
  const rand = rng(seed);
  const images: BlobImage[] = [];
  const place = (avoid?: Blob): Blob => {
    for (;;) {
      const r = 2.5 + rand();
      const b = { cx: r + 1 + rand() * (size - 2 * r - 2), cy: r + 1 + rand() * (size - 2 * r - 2), r };
      if (!avoid || Math.hypot(b.cx - avoid.cx, b.cy - avoid.cy) > b.r + avoid.r + 3) return b;
    }
  };
  for (let i = 0; i < n; i++) {
    const kind = i % 4; // balanced: none, bright, dark, both
    const bright = kind === 1 || kind === 3 ? place() : undefined;
    const dark = kind === 2 || kind === 3 ? place(bright) : undefined;
    const data = new Float32Array(size * size);
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        let v = 0.45 + (rand() - 0.5) * 0.3;
        if (bright && insideBlob(bright, x, y)) v = 0.95 + (rand() - 0.5) * 0.1;
        if (dark && insideBlob(dark, x, y)) v = 0.05 + (rand() - 0.5) * 0.1;
        data[y * size + x] = (v - 0.5) / 0.25;
      }
    }
    images.push({ data, size, channels: 1, labels: [bright ? 1 : 0, dark ? 1 : 0], bright, dark });
  }
  return images;
}

/**
 * A small CNN whose output Dense has a fused sigmoid (so the explainer must split it off to reach the logits). The last
 * convolution works at half the input resolution, fine enough for heatmaps to land inside a blob of radius 2.5.
 */
export function buildBlobNet(size: number, seed: number, head: 'sigmoid' | 'softmax' = 'sigmoid', classes = 2): tfl.LayersModel {
  const init = (s: number) => tfl.initializers.heNormal({ seed: seed + s });
  const input = tfl.input({ shape: [size, size, 1] });
  let x = tfl.layers
    .conv2d({ filters: 4, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: init(1), name: 'conv1' })
    .apply(input) as tfl.SymbolicTensor;
  x = tfl.layers.averagePooling2d({ poolSize: 2 }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers
    .conv2d({ filters: 8, kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: init(2), name: 'last_conv' })
    .apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.globalMaxPooling2d({}).apply(x) as tfl.SymbolicTensor;
  const out = tfl.layers
    .dense({ units: classes, activation: head, kernelInitializer: tfl.initializers.glorotUniform({ seed: seed + 4 }) })
    .apply(x) as tfl.SymbolicTensor;
  return tfl.model({ inputs: input, outputs: out });
}

/** Trains `buildBlobNet` (binary cross-entropy, Adam) with tfjs-layers' own `fit`. */
export async function trainBlobNet(train: BlobImage[], size: number, seed: number, epochs: number): Promise<tfl.LayersModel> {
  const model = buildBlobNet(size, seed);
  model.compile({ optimizer: tf.train.adam(0.02), loss: 'binaryCrossentropy' });
  const x = tf.tensor4d(
    train.flatMap((im) => Array.from(im.data)),
    [train.length, size, size, 1],
  );
  const y = tf.tensor2d(
    train.map((im) => im.labels),
    [train.length, 2],
  );
  await model.fit(x, y, { epochs, batchSize: 32, shuffle: false, verbose: 0 });
  tf.dispose([x, y]);
  return model;
}
