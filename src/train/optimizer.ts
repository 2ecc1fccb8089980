import * as tf from '@tensorflow/tfjs-core';
import { setAdamLearningRate } from '../engine/internals.js';

/** Variables that learn at `lrScale` times the schedule's rate (e.g. a pretrained backbone at 0.1×, its new head at 1×). */
export interface ParamGroup {
  vars: tf.Variable[];
  lrScale: number;
}

/**
 * Adam with per-group learning rates, as PyTorch's parameter groups: one tfjs AdamOptimizer per group, the gradients
 * computed once for all of them. With one group it is exactly tfjs's Adam (and saves the same checkpoint).
 */
export class GroupedAdam {
  readonly members: tf.AdamOptimizer[];
  readonly groups: ParamGroup[];

  constructor(groups: ParamGroup[], lr: number) {
    this.groups = groups.filter((g) => g.vars.length > 0);
    if (this.groups.length === 0) throw new Error('no trainable variables');
    this.members = this.groups.map((g) => tf.train.adam(lr * g.lrScale));
  }

  /** Sets the schedule's rate; each group runs at its multiple of it. tfjs reads the rate on every step. */
  setLearningRate(lr: number): void {
    this.members.forEach((m, i) => setAdamLearningRate(m, lr * this.groups[i].lrScale));
  }

  /** One step on `loss`; returns its value (caller disposes). */
  minimize(loss: () => tf.Scalar): tf.Scalar {
    if (this.members.length === 1) return this.members[0].minimize(loss, true, this.groups[0].vars) as tf.Scalar;
    const all = this.groups.flatMap((g) => g.vars);
    const { value, grads } = tf.variableGrads(loss, all);
    this.groups.forEach((g, i) => {
      this.members[i].applyGradients(g.vars.map((v) => ({ name: v.name, tensor: grads[v.name] })));
    });
    tf.dispose(grads);
    return value;
  }

  dispose(): void {
    this.members.forEach((m) => m.dispose());
  }
}
