import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import type { SymbolicTensor } from '@tensorflow/tfjs-layers';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { poolingLayer } from '../models/architectures.js';
import { InputError } from '../util/errors.js';

/**
 * Source-adversarial training (Ganin & Lempitsky's domain-adversarial networks): a linear head on the pooled features
 * learns to tell which source (camera, clinic) a photograph comes from, and a gradient-reversal layer between the
 * features and that head hands the feature extractor the opposite of the head's gradient, so that the features
 * keep as little of the source as they can while the task head still learns from them.
 */
export interface AdversarySettings {
  /** The training sources, in the order of the head's outputs. */
  sources: string[];
  /** Strength of the reversed gradient at full ramp (DANN's λ). */
  weight: number;
  /**
   * The source head's learning rate as a multiple of the task head's (default 1). The reversed gradient removes what
   * the head *can* read; a head slower than the features only gets fooled (its loss rises above log S while a fresh
   * classifier still reads the source), so it needs to learn at least as fast as the backbone changes.
   */
  lrScale?: number;
}


/** Saved next to a checkpoint so that a resumed run continues with the same adversary. */
export const ADVERSARY_BIN = 'adversary.bin';

/**
 * DANN's schedule: λ rises from 0 to `weight` as 2 / (1 + exp(-10 p)) - 1 over the run's progress p, so that the
 * reversed gradient does not scramble features the task head has not yet learnt to use.
 */
export function adversaryLambda(weight: number, progress: number): number {
  const p = Math.min(1, Math.max(0, progress));
  return weight * (2 / (1 + Math.exp(-10 * p)) - 1);
}

/** Identity forward; the gradient is multiplied by -`scale` on the way back. */
export function reverseGradient(x: tf.Tensor2D, scale: number): tf.Tensor2D {
  const op = tf.customGrad(((input: tf.Tensor) => ({
    value: tf.clone(input),
    gradFunc: (dy: tf.Tensor) => tf.mul(dy, -scale),
  })) as unknown as Parameters<typeof tf.customGrad>[0]);
  return op(x) as tf.Tensor2D;
}

/** The pooled features the adversary reads. */
export function adversaryFeatures(network: tfl.LayersModel): SymbolicTensor {
  return poolingLayer(network, 'source-adversarial training').output as SymbolicTensor;
}

/** The adversary's weights (the learner feeds it the network's pooled features, `adversaryFeatures`). */
export class SourceAdversary {
  readonly kernel: tf.Variable;
  readonly bias: tf.Variable;

  constructor(
    network: tfl.LayersModel,
    readonly settings: AdversarySettings,
    seed: number,
  ) {
    if (settings.sources.length < 2) throw new InputError('source-adversarial training needs at least two training sources');
    const features = adversaryFeatures(network);
    const d = features.shape[features.shape.length - 1]!;
    const S = settings.sources.length;
    const limit = Math.sqrt(6 / (d + S)); // Glorot uniform, as Keras's Dense
    this.kernel = tf.variable(tf.randomUniform([d, S], -limit, limit, 'float32', seed), true);
    this.bias = tf.variable(tf.zeros([S]), true);
  }

  get vars(): tf.Variable[] {
    return [this.kernel, this.bias];
  }

  /** Mean (sample-weighted) cross-entropy of the source head on features that pass the reversal layer. */
  loss(features: tf.Tensor2D, sourceIndex: tf.Tensor1D, sampleWeight: tf.Tensor1D, lambda: number): tf.Scalar {
    return tf.tidy(() => {
      const logits = tf.add(tf.matMul(reverseGradient(features, lambda), this.kernel), this.bias);
      const onehot = tf.oneHot(tf.cast(sourceIndex, 'int32'), this.settings.sources.length);
      const perExample = tf.neg(tf.sum(tf.mul(onehot, tf.logSoftmax(logits)), 1));
      return tf.div(tf.sum(tf.mul(perExample, sampleWeight)), tf.maximum(tf.sum(sampleWeight), 1e-8)) as tf.Scalar;
    });
  }

  /** The weights as one file's bytes (kernel then bias, float32). */
  serialize(): Uint8Array {
    const k = this.kernel.dataSync() as Float32Array;
    const b = this.bias.dataSync() as Float32Array;
    const all = new Float32Array(k.length + b.length);
    all.set(k);
    all.set(b, k.length);
    return new Uint8Array(all.buffer);
  }

  async restore(dir: string): Promise<void> {
    const path = join(dir, ADVERSARY_BIN);
    const bin = await readFile(path).catch(() => undefined);
    if (!bin) throw new InputError('the checkpoint has no adversary weights (was it made without --source-adversarial?)', { file: dir });
    const all = new Float32Array(bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength));
    const nk = this.kernel.size;
    if (all.length !== nk + this.bias.size) throw new InputError(`${ADVERSARY_BIN} holds ${all.length} values, expected ${nk + this.bias.size}`, { file: path });
    this.kernel.assign(tf.tensor(all.subarray(0, nk), this.kernel.shape));
    this.bias.assign(tf.tensor(all.subarray(nk), this.bias.shape));
  }

  dispose(): void {
    tf.dispose([this.kernel, this.bias]);
  }
}
