// Adam's update in one native pass. tfjs's AdamOptimizer runs fourteen full-size element-wise ops
// per variable (about 9% of an AlexNet training step on the native engine, each op a separate sweep over memory);
// one native call updates every variable (one parallel region: on a shared machine each region can wait for a
// descheduled thread) with the same float32 arithmetic in tfjs's order, so the result is bit-identical. It is
// installed on AdamOptimizer's prototype, so every Adam (tf.train.adam, checkpoints restored into one) uses it,
// and it defers to tfjs's own update on any other backend or for non-float32 variables.
import * as tf from '@tensorflow/tfjs-core';
import type { KernelConfig, NamedTensorMap, TensorInfo } from '@tensorflow/tfjs-core';
import { NATIVE_BACKEND_NAME } from './names.js';
import { addon, allocFloat32, f32, output, type KernelArgs } from './kernels/util.js';
import { engineInternals, type AdamInternals } from './internals.js';

interface AdamAttrs {
  /** [beta1, 1 - beta1, beta2, 1 - beta2, 1 - beta1^t, 1 - beta2^t, epsilon, -learningRate], as float32. */
  constants: number[];
}

/** FundusAdam: inputs g0, m0, v0, value0, g1, ... -> [m0', v0', value0', m1', ...], all variables in one pass. */
function adamKernel(args: KernelArgs<Record<string, TensorInfo>, AdamAttrs>): TensorInfo[] {
  const { inputs, backend, attrs } = args;
  const arrays: Float32Array[] = [];
  const outputs: TensorInfo[] = [];
  for (let i = 0; `g${i}` in inputs; i++) {
    const ins = [inputs[`g${i}`], inputs[`m${i}`], inputs[`v${i}`], inputs[`value${i}`]];
    const values = ins.map((t) => f32(backend, t));
    if (values.some((v) => !v)) throw new Error('FundusAdam: float32 inputs expected');
    const n = values[3]!.length;
    const outs = [allocFloat32(n), allocFloat32(n), allocFloat32(n)];
    arrays.push(...(values as Float32Array[]), ...outs);
    outputs.push(...outs.map((o) => output(backend, ins[3].shape, o)));
  }
  addon().adamUpdate(arrays, new Float32Array(attrs!.constants));
  return outputs;
}

export const ADAM_KERNELS: Omit<KernelConfig, 'backendName'>[] = [{ kernelName: 'FundusAdam', kernelFunc: adamKernel as never }];

type Gradients = NamedTensorMap | { name: string; tensor: tf.Tensor }[];

function nativeApplyGradients(opt: AdamInternals, variableGradients: Gradients): void {
  const names = Array.isArray(variableGradients) ? variableGradients.map((v) => v.name) : Object.keys(variableGradients);
  const f = Math.fround;
  tf.tidy(() => {
    // tfjs computes 1 - beta^t as a float32 Sub of float32 tensors; the fround of the double difference is the same.
    const omab1 = f(1 - opt.accBeta1.dataSync()[0]);
    const omab2 = f(1 - opt.accBeta2.dataSync()[0]);
    const constants = [f(opt.beta1), f(1 - opt.beta1), f(opt.beta2), f(1 - opt.beta2), omab1, omab2, f(opt.epsilon), f(-opt.learningRate)];
    const inputs: Record<string, tf.Tensor> = {};
    const targets: tf.Variable[] = [];
    names.forEach((name, i) => {
      const value = engineInternals().registeredVariables[name];
      if (opt.accumulatedFirstMoment[i] == null) {
        opt.accumulatedFirstMoment[i] = { originalName: `${name}/m`, variable: tf.tidy(() => tf.zerosLike(value).variable(false)) };
      }
      if (opt.accumulatedSecondMoment[i] == null) {
        opt.accumulatedSecondMoment[i] = { originalName: `${name}/v`, variable: tf.tidy(() => tf.zerosLike(value).variable(false)) };
      }
      const gradient = Array.isArray(variableGradients) ? variableGradients[i].tensor : variableGradients[name];
      if (gradient == null) return;
      const m = opt.accumulatedFirstMoment[i]!.variable;
      const v = opt.accumulatedSecondMoment[i]!.variable;
      const k = targets.length / 3;
      Object.assign(inputs, { [`g${k}`]: gradient, [`m${k}`]: m, [`v${k}`]: v, [`value${k}`]: value });
      targets.push(m, v, value);
    });
    if (targets.length > 0) {
      const results = tf.engine().runKernel('FundusAdam', inputs as never, { constants } as never) as tf.Tensor[];
      targets.forEach((t, j) => t.assign(results[j]));
    }
    opt.accBeta1.assign(tf.mul(opt.accBeta1, opt.beta1));
    opt.accBeta2.assign(tf.mul(opt.accBeta2, opt.beta2));
  });
  opt.incrementIterations();
}

function allFloat32(variableGradients: Gradients): boolean {
  const entries = Array.isArray(variableGradients)
    ? variableGradients.map((v) => [v.name, v.tensor] as const)
    : Object.entries(variableGradients);
  return entries.every(([name, g]) => {
    const value = engineInternals().registeredVariables[name];
    return value !== undefined && value.dtype === 'float32' && (g == null || (g.dtype === 'float32' && tf.util.arraysEqual(g.shape, value.shape)));
  });
}

/** Routes AdamOptimizer.applyGradients through the native kernel while the native backend is active; returns how to
 * restore tfjs's own. */
export function installNativeAdam(): () => void {
  const proto = tf.AdamOptimizer.prototype as unknown as { applyGradients(g: Gradients): void };
  const original = proto.applyGradients;
  proto.applyGradients = function applyGradients(this: AdamInternals, variableGradients: Gradients): void {
    if (tf.getBackend() !== NATIVE_BACKEND_NAME || !allFloat32(variableGradients)) {
      original.call(this, variableGradients);
      return;
    }
    nativeApplyGradients(this, variableGradients);
  };
  return () => {
    proto.applyGradients = original;
  };
}
