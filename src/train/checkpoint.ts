import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { readFile, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { disposeModel, loadModel, saveModel } from '../models/io.js';
import type { ModelMetadata } from '../models/metadata.js';
import { InputError } from '../util/errors.js';
import { isRunning } from '../util/lock.js';
import { GroupedAdam } from './optimizer.js';
import { adamBetaPowers } from '../engine/internals.js';

/** One row of the training history (one per epoch). */
export type HistoryRow = Record<string, number>;

/** Everything besides weights that a resumed run needs to continue exactly where the interrupted one was. */
export interface TrainState {
  version: 1;
  /** Hash of the options that shape the run; resuming with different ones is refused. */
  configHash: string;
  /** Epoch in progress (0-based) and the next batch of it to run. */
  epoch: number;
  batch: number;
  /** Optimiser steps done so far (drives the learning rate schedule). */
  step: number;
  /** The augmentation generator's state before the next batch. */
  rngState: number;
  /** Running sums of the epoch in progress, for its mean training loss. */
  epochLossSum: number;
  epochWeightSum: number;
  /** Source-adversarial runs: the source head's weighted loss so far this epoch. */
  epochAdvSum?: number;
  /** Lesion-attention runs: the attention loss summed over this epoch's batches with boxes, and their number. */
  epochAttentionSum?: number;
  epochAttentionBatches?: number;
  history: HistoryRow[];
  best: { value: number; epoch: number } | null;
  /** Epochs since the monitored metric last improved (early stopping). */
  badEpochs: number;
  /** Creation time of the TensorBoard event file, which names it. */
  eventsCreatedAt: number;
  /** Training seconds spent before this checkpoint (time budgets and reports survive a resume). */
  elapsedSeconds: number;
  done: boolean;
}

export const STATE_JSON = 'state.json';
export const OPTIMIZER_JSON = 'optimizer.json';
export const OPTIMIZER_BIN = 'optimizer.bin';

interface OptimizerManifest {
  className: string;
  weights: { name: string; shape: number[] }[];
}

/**
 * Adam keeps β₁ᵗ and β₂ᵗ as running products that `setWeights` recomputes as powers, which differ in the last bits:
 * they are saved too, so that a resumed run is bit-identical to an uninterrupted one.
 */
function adamPowers(opt: tf.Optimizer): { name: string; tensor: tf.Variable }[] {
  const p = adamBetaPowers(opt);
  return p ? [{ name: '__accBeta1', tensor: p.accBeta1 }, { name: '__accBeta2', tensor: p.accBeta2 }] : [];
}

/** The optimisers of a checkpoint: one, or one per parameter group. */
function membersOf(opt: tf.Optimizer | GroupedAdam): tf.Optimizer[] {
  return opt instanceof GroupedAdam ? opt.members : [opt];
}

/** Group k > 0 prefixes its state names, so that a one-group checkpoint reads as before groups existed. */
const groupPrefix = (k: number) => (k === 0 ? '' : `g${k}:`);

async function namedState(opt: tf.Optimizer, k: number): Promise<{ name: string; tensor: tf.Tensor }[]> {
  const p = groupPrefix(k);
  const named = [...(await opt.getWeights()), ...adamPowers(opt)];
  return named.map(({ name, tensor }) => ({ name: name.startsWith('__') ? `__${p}${name.slice(2)}` : `${p}${name}`, tensor }));
}

async function serializeOptimizer(optimizer: tf.Optimizer | GroupedAdam): Promise<{ json: string; bin: Uint8Array }> {
  const members = membersOf(optimizer);
  const named = (await Promise.all(members.map((m, k) => namedState(m, k)))).flat();
  const manifest: OptimizerManifest = { className: members[0].getClassName(), weights: [] };
  const arrays: Float32Array[] = [];
  for (const { name, tensor } of named) {
    manifest.weights.push({ name, shape: tensor.shape });
    arrays.push((await tensor.data()) as Float32Array);
  }
  const total = arrays.reduce((n, a) => n + a.length, 0);
  const buf = new Float32Array(total);
  let o = 0;
  for (const a of arrays) {
    buf.set(a, o);
    o += a.length;
  }
  return { json: JSON.stringify(manifest), bin: new Uint8Array(buf.buffer) };
}

async function restoreOptimizer(optimizer: tf.Optimizer | GroupedAdam, dir: string): Promise<void> {
  const members = membersOf(optimizer);
  const manifest = JSON.parse(await readFile(join(dir, OPTIMIZER_JSON), 'utf8')) as OptimizerManifest;
  if (manifest.className !== members[0].getClassName()) {
    throw new InputError(`checkpoint optimiser is ${manifest.className}, expected ${members[0].getClassName()}`, { file: join(dir, OPTIMIZER_JSON) });
  }
  const bin = await readFile(join(dir, OPTIMIZER_BIN));
  const all = new Float32Array(bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength));
  let o = 0;
  const named: { name: string; tensor: tf.Tensor }[] = manifest.weights.map(({ name, shape }) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const t = tf.tensor(all.subarray(o, o + n), shape);
    o += n;
    return { name, tensor: t };
  });
  if (o !== all.length) throw new InputError('optimizer.bin does not match optimizer.json', { file: join(dir, OPTIMIZER_BIN) });
  for (const [k, opt] of members.entries()) {
    const p = groupPrefix(k);
    const mine = named.filter((n) => groupOf(n.name) === k).map((n) => ({ ...n, name: n.name.startsWith('__') ? `__${n.name.slice(2 + p.length)}` : n.name.slice(p.length) }));
    await opt.setWeights(mine.filter((n) => !n.name.startsWith('__')));
    for (const pw of mine.filter((n) => n.name.startsWith('__'))) {
      const target = adamPowers(opt).find((a) => a.name === pw.name);
      if (target) target.tensor.assign(pw.tensor);
    }
  }
  named.forEach((n) => n.tensor.dispose());
}

/** The parameter group a saved state name belongs to (see groupPrefix). */
function groupOf(name: string): number {
  const m = /^(?:__)?g(\d+):/.exec(name);
  return m ? Number(m[1]) : 0;
}

/**
 * Writes a checkpoint directory atomically (network, optimiser state, run state): a kill at any moment leaves
 * either the previous checkpoint or this one, never a torn one.
 */
export async function saveCheckpoint(
  dir: string,
  network: tfl.LayersModel,
  metadata: ModelMetadata,
  optimizer: tf.Optimizer | GroupedAdam,
  state: TrainState,
  extra: Record<string, Uint8Array> = {},
): Promise<void> {
  const opt = await serializeOptimizer(optimizer);
  await saveModel(dir, network, metadata, {
    [OPTIMIZER_JSON]: opt.json,
    [OPTIMIZER_BIN]: opt.bin,
    [STATE_JSON]: JSON.stringify(state, null, 1),
    ...extra,
  });
}

/**
 * The run state of a checkpoint folder; null when there is no checkpoint. A checkpoint whose state.json is missing,
 * unreadable or not a run state is an InputError: silently starting again from scratch would throw away days of
 * training, and a user who wants that says so with --restart.
 */
export async function readState(dir: string): Promise<TrainState | null> {
  if (!(await stat(dir).catch(() => undefined))) return null;
  const file = join(dir, STATE_JSON);
  const fail = (why: string): never => {
    throw new InputError(`${why}: this checkpoint cannot be resumed; pass --restart to discard it and train from scratch`, { file });
  };
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    return fail((err as NodeJS.ErrnoException).code === 'ENOENT' ? 'is missing' : `cannot be read (${(err as Error).message})`);
  }
  let state: Partial<TrainState>;
  try {
    state = JSON.parse(text) as Partial<TrainState>;
  } catch (err) {
    return fail(`is not valid JSON (${(err as Error).message})`);
  }
  const counts = ['epoch', 'batch', 'step', 'rngState', 'badEpochs'] as const;
  if (!state || typeof state !== 'object' || state.version !== 1 || typeof state.configHash !== 'string' || !Array.isArray(state.history)) {
    return fail('is not a training state (version 1, configHash and history required)');
  }
  const bad = counts.find((k) => !Number.isInteger(state[k]) || (state[k] as number) < 0);
  if (bad) return fail(`has an invalid ${bad} (${JSON.stringify(state[bad])})`);
  return state as TrainState;
}

/** Temporary folders of interrupted atomic writes of a checkpoint or best model: `.checkpoint.<pid>.<hex>.tmp`. */
const CHECKPOINT_TEMP = /^\.(checkpoint|best)\.(\d+)\.[0-9a-f]{8}\.tmp$/;

/**
 * Removes what killed runs left of their checkpoint writes in a run folder (a whole model each, megabytes to
 * hundreds of them). Those of a process still running (this one, or another run in the same folder) are kept.
 * Returns the names removed.
 */
export async function removeStaleCheckpointTemps(runDir: string): Promise<string[]> {
  const names = await readdir(runDir).catch(() => [] as string[]);
  const stale = names.filter((n) => {
    const m = CHECKPOINT_TEMP.exec(n);
    return m !== null && Number(m[2]) !== process.pid && !isRunning(Number(m[2]));
  });
  for (const n of stale) await rm(join(runDir, n), { recursive: true, force: true });
  return stale;
}

/** Copies the weights of one network into another of the same architecture (layer order and shapes must agree). */
export function copyWeights(from: tfl.LayersModel, to: tfl.LayersModel, where = 'checkpoint'): void {
  const src = from.weights;
  const dst = to.weights;
  if (src.length !== dst.length) throw new InputError(`${where}: ${src.length} weight tensors, the network has ${dst.length}`);
  for (let i = 0; i < src.length; i++) {
    const a = src[i].read();
    if (a.shape.join() !== dst[i].shape.join()) {
      throw new InputError(`${where}: weight ${dst[i].originalName} is [${a.shape}] there, [${dst[i].shape}] here`);
    }
    const copy = a.clone();
    dst[i].write(copy);
    copy.dispose();
  }
}

/** Restores network weights and optimiser state from a checkpoint into the (freshly built) network and optimiser. */
export async function restoreCheckpoint(dir: string, network: tfl.LayersModel, optimizer: tf.Optimizer | GroupedAdam): Promise<TrainState> {
  const state = await readState(dir);
  if (!state) throw new InputError('there is no checkpoint here', { file: dir });
  const saved = await loadModel(dir);
  copyWeights(saved.network, network, dir);
  disposeModel(saved);
  await restoreOptimizer(optimizer, dir);
  return state;
}
