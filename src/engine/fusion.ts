// Batch normalisation in training, as tfjs-layers builds it: moments (Mean, Cast, Reshape, Sub, Square, Mean, or
// on the native backend the one kernel of moments.ts) then FusedBatchNorm with the batch's mean and variance. tfjs
// differentiates each of those nodes on its own: about nine full-size passes per layer in the backward pass
// (broadcasts of the mean and variance gradients, Square's and Sub's gradients, sums, and the accumulation of
// three gradients of the input), and it saves the centred and squared copies of the input for them. When the tape
// holds exactly that pattern, this takes the moments nodes off the tape (disposing what they saved) and gives the
// FusedBatchNorm node the batch-moments form of the engine's batch-norm gradient (batchnorm-gradient.ts): one
// reduction pass and one element-wise pass. It applies
// only when nothing else that leads to the loss uses the moments or their intermediates (the moving-average
// updates of tfjs-layers do not lead to the loss). A ReLU right before (tfjs-layers' conv with activation 'relu',
// then BN) is folded into the same pass when its output reaches the loss only through the BN.
import * as tf from '@tensorflow/tfjs-core';
import type { Tensor } from '@tensorflow/tfjs-core';
import { batchNormEpsilon, meanAxes } from './kernels/notes.js';
import { batchNormGradient, perChannelBatchNorm } from './batchnorm-gradient.js';
import type { TapeNode } from './internals.js';
import { BATCH_MOMENTS } from './moments.js';

/** How many batch normalisations have been fused in this process (the self-check reads it). */
export const fusionCounts = { batchNorms: 0 };

/** Tensor ids from which the loss y is reachable along the tape. */
function leadsTo(tape: TapeNode[], y: Tensor): Set<number> {
  const ids = new Set([y.id]);
  for (let i = tape.length - 1; i >= 0; i--) {
    if (tape[i].outputs.some((o) => ids.has(o.id))) for (const t of Object.values(tape[i].inputs)) ids.add(t.id);
  }
  return ids;
}

const allButLast = (axes: number[] | undefined, rank: number) =>
  axes !== undefined && axes.length === rank - 1 && axes.every((a, i) => a === i);

interface Match {
  bn: TapeNode;
  removed: TapeNode[];
  eps: number;
  /** The ReLU whose output is the batch norm's input, when its gradient is folded in too. */
  relu?: TapeNode;
}

/** Finds the moments nodes feeding a FusedBatchNorm node, or null when the pattern is not exact. */
function match(bn: TapeNode, producer: Map<number, TapeNode>): Match | null {
  const { x, mean, variance } = bn.inputs;
  if (!x || !perChannelBatchNorm(x, bn.inputs)) return null;
  const c = x.shape[x.rank - 1];
  const eps = batchNormEpsilon.get(bn.outputs[0]?.dataId);
  if (eps === undefined) return null;
  const m1 = producer.get(mean.id);
  // mean, variance = FundusBatchMoments(x) (moments.ts)
  if (m1?.kernelName === BATCH_MOMENTS) {
    const ok = producer.get(variance.id) === m1 && m1.outputs[0]?.id === mean.id && m1.outputs[1]?.id === variance.id && m1.inputs.x?.id === x.id;
    return ok ? { bn, removed: [m1], eps } : null;
  }
  // mean = Mean(x) over every axis but the channels
  if (!m1 || m1.kernelName !== 'Mean' || m1.inputs.x?.id !== x.id || !allButLast(meanAxes.get(mean.dataId), x.rank)) return null;
  // variance = Mean(Square(Sub(Cast(x) | x, Reshape(mean) | mean)))
  const m2 = producer.get(variance.id);
  if (!m2 || m2.kernelName !== 'Mean' || !allButLast(meanAxes.get(variance.dataId), x.rank)) return null;
  const sq = producer.get(m2.inputs.x?.id ?? -1);
  if (!sq || sq.kernelName !== 'Square') return null;
  const sub = producer.get(sq.inputs.x?.id ?? -1);
  if (!sub || sub.kernelName !== 'Sub' || !tf.util.arraysEqual(sub.outputs[0].shape, x.shape)) return null;
  const removed = [m1, m2, sq, sub];
  const a = sub.inputs.a;
  if (a?.id !== x.id) {
    const cast = producer.get(a?.id ?? -1);
    if (!cast || cast.kernelName !== 'Cast' || cast.inputs.x?.id !== x.id || a.dtype !== 'float32') return null;
    removed.push(cast);
  }
  const b = sub.inputs.b;
  if (b?.id !== mean.id) {
    const reshape = producer.get(b?.id ?? -1);
    const keepDims = [...Array(x.rank - 1).fill(1), c];
    if (!reshape || reshape.kernelName !== 'Reshape' || reshape.inputs.x?.id !== mean.id || !tf.util.arraysEqual(b.shape, keepDims)) return null;
    removed.push(reshape);
  }
  return { bn, removed, eps };
}

/** The batch-moments gradient for a matched node (saved: x, mean, variance, then scale when it has one). */
function fusedGradient(node: TapeNode, eps: number, reluMask: boolean): TapeNode['gradient'] {
  return (dys) => {
    const [x, mean, variance] = node.saved!;
    const scale = node.inputs.scale ? node.saved![3] : undefined;
    const dy = dys[0] ?? tf.zerosLike(node.outputs[0]);
    return batchNormGradient({ x, mean, variance, scale }, dy, eps, { batchMoments: true, reluMask });
  };
}

/**
 * Rewrites the tape in place: for each batch normalisation fed by its own moments, takes the moments nodes off
 * and installs the closed-form gradient. Returns how many were fused.
 */
export function fuseBatchNormMoments(tape: TapeNode[], y: Tensor): number {
  const producer = new Map<number, TapeNode>();
  for (const node of tape) for (const o of node.outputs) producer.set(o.id, node);
  const matches = tape
    .filter((n) => n.kernelName === 'FusedBatchNorm' && n.gradient && (n.saved?.length ?? 0) >= (n.inputs.scale ? 4 : 3))
    .map((n) => match(n, producer))
    .filter((m): m is Match => m !== null);
  if (matches.length === 0) return 0;
  const toY = leadsTo(tape, y);
  const fused: Match[] = [];
  for (const m of matches) {
    // Every tensor the removed nodes produce may reach the loss only through this batch normalisation.
    const removedIds = new Set(m.removed.map((r) => r.id));
    const internal = new Set(m.removed.flatMap((r) => r.outputs.map((o) => o.id)));
    const escapes = tape.some(
      (node) => node !== m.bn && !removedIds.has(node.id) && Object.values(node.inputs).some((t) => internal.has(t.id)) && node.outputs.some((o) => toY.has(o.id)),
    );
    if (escapes) continue;
    // ReLU -> BN: when the ReLU's output reaches the loss only through this BN, the BN's input gradient is masked
    // in the same pass and the ReLU passes it on as it is (a reshape, no pass over the data).
    const relu = producer.get(m.bn.inputs.x.id);
    if (relu?.kernelName === 'Relu' && relu.gradient && relu.outputs.length === 1 && relu.inputs.x?.dtype === 'float32') {
      const rId = relu.outputs[0].id;
      const otherUse = tape.some(
        (node) => node !== m.bn && !removedIds.has(node.id) && Object.values(node.inputs).some((t) => t.id === rId) && node.outputs.some((o) => toY.has(o.id)),
      );
      if (!otherUse) m.relu = relu;
    }
    fused.push(m);
  }
  const drop = new Set<TapeNode>();
  for (const m of fused) {
    for (const r of m.removed) {
      drop.add(r);
      for (const s of r.saved ?? []) s.dispose();
    }
    m.bn.gradient = fusedGradient(m.bn, m.eps, m.relu !== undefined);
    if (m.relu) {
      const input = m.relu.inputs.x;
      m.relu.gradient = (dys) => ({ x: () => tf.reshape(dys[0] ?? tf.zeros(input.shape), input.shape) });
      for (const s of m.relu.saved ?? []) s.dispose();
      m.relu.saved = [];
    }
  }
  for (let i = tape.length - 1; i >= 0; i--) if (drop.has(tape[i])) tape.splice(i, 1);
  fusionCounts.batchNorms += fused.length;
  return fused.length;
}
