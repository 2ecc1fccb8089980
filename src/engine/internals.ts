// Every internal of tfjs that fundus reads or replaces, typed in one place. They are not tfjs's public API, so a
// tfjs release may change them without notice: package.json pins tfjs exactly, and the engine's self-check
// (selfcheck.ts) verifies each of them before the engine patches anything.
import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs-core';
import { version_layers } from '@tensorflow/tfjs-layers';
import { version_cpu } from '@tensorflow/tfjs-backend-cpu';

/** The tfjs version the engine's patches were written and tested against; package.json pins all three packages to it. */
export const TESTED_TFJS_VERSION = '4.22.0';

/** The tfjs packages in use, for messages and the engine's report. */
export function tfjsVersions(): { core: string; layers: string; backendCpu: string } {
  return { core: tf.version_core, layers: version_layers, backendCpu: version_cpu };
}

export function describeTfjsVersions(): string {
  const v = tfjsVersions();
  return `tfjs-core ${v.core}, tfjs-layers ${v.layers}, tfjs-backend-cpu ${v.backendCpu}`;
}

/** A node of tfjs's gradient tape (tfjs-core engine.ts, addTapeNode): the fields fusion and early release read. */
export interface TapeNode {
  id: number;
  kernelName: string;
  inputs: Record<string, tf.Tensor>;
  outputs: tf.Tensor[];
  saved?: tf.Tensor[];
  gradient?: (dys: (tf.Tensor | null)[]) => Record<string, () => tf.Tensor>;
}

/** The parts of tfjs's Engine (tfjs-core engine.ts) that the engine reads or wraps. */
export interface EngineInternals {
  state: { activeTape: TapeNode[] | null | undefined; gradientDepth: number; kernelDepth: number };
  gradients(f: () => tf.Tensor, xs: tf.Tensor[], dy?: tf.Tensor, allowNoGradients?: boolean): { value: tf.Tensor; grads: tf.Tensor[] };
  makeTensorFromDataId(dataId: object, shape: number[], dtype: tf.DataType): tf.Tensor;
  registeredVariables: Record<string, tf.Variable>;
}

export const engineInternals = (): EngineInternals => tf.engine() as unknown as EngineInternals;

/** True while a tape records the backward pass (higher-order gradients): the engine's own gradients, which have
 * no gradients of their own, then leave the work to tfjs. */
export const recordingBackward = (): boolean => engineInternals().state.gradientDepth > 0;

/** The protected state of tfjs's AdamOptimizer (tfjs-core optimizers/adam_optimizer.ts). */
export interface AdamInternals {
  learningRate: number;
  beta1: number;
  beta2: number;
  epsilon: number;
  accBeta1: tf.Variable;
  accBeta2: tf.Variable;
  accumulatedFirstMoment: ({ originalName: string; variable: tf.Variable } | undefined)[];
  accumulatedSecondMoment: ({ originalName: string; variable: tf.Variable } | undefined)[];
  incrementIterations(): void;
}

function internalError(what: string): Error {
  return new Error(`tfjs internal changed: ${what} (${describeTfjsVersions()}; fundus is tested with ${TESTED_TFJS_VERSION}, run npm ci)`);
}

function adamInternals(opt: tf.Optimizer): AdamInternals {
  const a = opt as unknown as AdamInternals;
  if (typeof a.learningRate !== 'number') throw internalError('AdamOptimizer.learningRate is not a number');
  return a;
}

/** Sets an Adam optimiser's learning rate (tfjs reads it on every step and has no setter). */
export function setAdamLearningRate(opt: tf.AdamOptimizer, lr: number): void {
  adamInternals(opt).learningRate = lr;
}

/** Adam's running products β₁ᵗ and β₂ᵗ, which tfjs's getWeights leaves out; none for other optimisers. */
export function adamBetaPowers(opt: tf.Optimizer): { accBeta1: tf.Variable; accBeta2: tf.Variable } | null {
  if (!(opt instanceof tf.AdamOptimizer)) return null;
  const { accBeta1, accBeta2 } = opt as unknown as AdamInternals;
  if (!(accBeta1 instanceof tf.Variable) || !(accBeta2 instanceof tf.Variable)) throw internalError('AdamOptimizer.accBeta1/accBeta2 are not variables');
  return { accBeta1, accBeta2 };
}

/** The private momentum of tfjs-layers' BatchNormalization (moving ← moving·m + batch·(1 − m) in training). */
interface BatchNormInternals {
  momentum: number;
}

export function batchNormMomentum(layer: object): number {
  const m = (layer as BatchNormInternals).momentum;
  if (typeof m !== 'number') throw internalError('BatchNormalization.momentum is not a number');
  return m;
}

export function setBatchNormMomentum(layer: object, momentum: number): void {
  batchNormMomentum(layer);
  (layer as BatchNormInternals).momentum = momentum;
}

/** The class that tfjs-layers' `relu6` activation deserialises to (its `apply` is replaced by gradients.ts). */
export function relu6ActivationClass(): { prototype: { apply(x: tf.Tensor): tf.Tensor } } | undefined {
  const entry = tf.serialization.SerializationMap.getMap().classNameMap.relu6 as unknown as [{ prototype: { apply(x: tf.Tensor): tf.Tensor } }] | undefined;
  return entry?.[0];
}

/** The fields of tfjs-layers' convolution layers (BaseConv, Conv2D, DepthwiseConv2D) that layer-fusion.ts reads. */
export interface ConvLayerInternals {
  rank: number;
  strides: number[];
  padding: string;
  dataFormat: string;
  dilationRate: number[] | number;
  activation: { getClassName(): string; apply(x: tf.Tensor): tf.Tensor } | null;
  bias: { read(): tf.Tensor } | null;
  /** Conv2D's filter. */
  kernel?: { read(): tf.Tensor } | null;
  /** DepthwiseConv2D's filter. */
  depthwiseKernel?: { read(): tf.Tensor } | null;
}

/** A tfjs-layers layer class as registered for deserialisation (Conv2D, DepthwiseConv2D, ...). */
export type LayerClass = { prototype: { call(inputs: tf.Tensor | tf.Tensor[], kwargs: Record<string, unknown>): tf.Tensor | tf.Tensor[] } };

export function layerClass(className: string): LayerClass | undefined {
  const entry = tf.serialization.SerializationMap.getMap().classNameMap[className] as unknown as [LayerClass] | undefined;
  return entry?.[0];
}

/**
 * tfjs-core's CommonJS exports object: the one tfjs-layers' bundle reads its ops from at every call (through a
 * namespace of getters), unlike an ES import of it, whose bindings are fixed. moments.ts replaces `moments` there.
 */
export function tfjsCoreExports(): Record<string, unknown> {
  return createRequire(import.meta.url)('@tensorflow/tfjs-core') as Record<string, unknown>;
}
