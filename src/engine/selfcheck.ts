// The engine's start-up self-check. Before anything is patched, each tfjs internal that the patches read or replace
// (internals.ts) is checked to exist with the shape they expect; after installing, one small training step (a
// convolution with ReLU, tfjs-layers' batch normalisation in training mode, its ReLU6 activation, a loss built from
// Mean, Square and Sum, and an Adam update) runs on the native backend and on the plain JS CPU backend, and must
// give the same numbers. A problem names the internal, so that the warning says what changed.
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { engineInternals, layerClass, relu6ActivationClass, tfjsCoreExports, type AdamInternals, type ConvLayerInternals, type TapeNode } from './internals.js';
import { fusionCounts } from './fusion.js';
import { momentsCounts } from './moments.js';

export interface Problem {
  /** The tfjs internal (or the patched computation) that is not as expected. */
  internal: string;
  detail: string;
}

interface Check {
  internal: string;
  /** A description of what is wrong, or null. */
  run(): string | null;
}

const isFunction = (f: unknown): f is (...args: unknown[]) => unknown => typeof f === 'function';

/** The forward pass of a gradient computation, as the tape sees it: nodes, their fields, how they are added. */
function probeTape(): string | null {
  const e = engineInternals();
  if (e.state.gradientDepth !== 0 || e.state.kernelDepth !== 0) return 'a check must run outside any gradient computation';
  let problem: string | null = 'the forward function was not called';
  tf.tidy(() => {
    const x = tf.tensor1d([1, -2, 3]);
    const { value, grads } = e.gradients(
      () => {
        const tape = e.state.activeTape;
        if (!Array.isArray(tape)) {
          problem = 'state.activeTape is not an array while a gradient is recorded';
          return tf.sum(tf.mul(x, x));
        }
        if (e.state.gradientDepth !== 1) problem = `state.gradientDepth is ${e.state.gradientDepth} while a gradient is recorded, 1 expected`;
        let pushed = 0;
        tape.push = (...nodes: TapeNode[]): number => {
          pushed += nodes.length;
          return Array.prototype.push.apply(tape, nodes);
        };
        const y = tf.sum(tf.relu(tf.mul(x, x)));
        delete (tape as { push?: unknown }).push;
        const node = tape.find((n) => n.kernelName === 'Multiply');
        if (problem === 'the forward function was not called') problem = null;
        if (pushed === 0) problem ??= 'nodes are not added with activeTape.push';
        if (!node) problem ??= 'no node with kernelName Multiply recorded';
        else if (typeof node.id !== 'number') problem ??= 'node.id is not a number';
        else if (node.inputs?.a !== x || node.inputs?.b !== x) problem ??= 'node.inputs is not { a, b } holding the input tensors';
        else if (!Array.isArray(node.outputs) || !(node.outputs[0] instanceof tf.Tensor)) problem ??= 'node.outputs is not an array of tensors';
        else if (!Array.isArray(node.saved)) problem ??= 'node.saved is not an array';
        else if (!isFunction(node.gradient)) problem ??= 'node.gradient is not a function';
        return y;
      },
      [x],
    );
    tf.dispose([value, ...grads]);
  });
  return problem;
}

function gradientChecks(): Check[] {
  const saves = (kernel: string, inputs: string[]): Check => ({
    internal: `registered gradient of ${kernel}`,
    run: () => {
      const g = tf.getGradient(kernel);
      if (!g || !isFunction(g.gradFunc)) return 'not registered';
      const actual = g.inputsToSave ?? [];
      return actual.join() === inputs.join() ? null : `saves [${actual.join(', ')}], [${inputs.join(', ')}] expected`;
    },
  });
  return [
    saves('FusedBatchNorm', ['x', 'mean', 'variance', 'scale']),
    saves('Relu', ['x']),
    saves('Relu6', ['x']),
    saves('Square', ['x']),
    // Early release keeps only the shapes of what these save (their gradients read nothing else).
    saves('Mean', ['x']),
    saves('Sum', ['x']),
    saves('Add', ['a', 'b']),
    saves('Sub', ['a', 'b']),
  ];
}

/** What layer-fusion.ts reads of a convolution layer: its class's call and the fields of an instance. */
function convLayerProblem(name: 'Conv2D' | 'DepthwiseConv2D'): string | null {
  if (!isFunction(layerClass(name)?.prototype.call)) return 'not registered under its class name with a call method';
  const args = { kernelSize: 3, strides: 2, padding: 'same' as const, activation: 'relu6' as const, name: `fundus_selfcheck_${name.toLowerCase()}` };
  const layer = (name === 'Conv2D' ? tfl.layers.conv2d({ ...args, filters: 2 }) : tfl.layers.depthwiseConv2d(args)) as unknown as ConvLayerInternals;
  const wrong = [
    ...(layer.rank === 2 ? [] : ['rank']),
    ...(tf.util.arraysEqual(layer.strides, [2, 2]) ? [] : ['strides']),
    ...(layer.padding === 'same' ? [] : ['padding']),
    ...(layer.dataFormat === 'channelsLast' ? [] : ['dataFormat']),
    ...(tf.util.arraysEqual([layer.dilationRate].flat(), [1, 1]) ? [] : ['dilationRate']),
    ...(layer.activation?.getClassName() === 'relu6' ? [] : ['activation']),
  ];
  return wrong.length > 0 ? `fields not as expected: ${wrong.join(', ')}` : null;
}

/** The checks that run before anything is patched; `replacedKernels` are the tfjs kernels the native backend
 * replaces and falls back to. */
export function structuralChecks(replacedKernels: string[]): Check[] {
  return [
    {
      internal: 'Engine.state',
      run: () => {
        const s = engineInternals().state as unknown as Record<string, unknown> | undefined;
        if (!s) return 'missing';
        const missing = ['gradientDepth', 'kernelDepth'].filter((k) => typeof s[k] !== 'number');
        return missing.length > 0 ? `no numeric ${missing.join(', ')}` : null;
      },
    },
    {
      internal: 'Engine.gradients',
      run: () => {
        const g = engineInternals().gradients as unknown;
        // (f, xs, dy, allowNoGradients = false): 4 in tfjs's ES5 bundle for Node, 3 where the default is native.
        if (!isFunction(g)) return 'not a function';
        return g.length === 4 || g.length === 3 ? null : `a function of (f, xs, dy, allowNoGradients) expected, found one of ${g.length} parameters`;
      },
    },
    {
      internal: 'Engine.makeTensorFromDataId',
      run: () => (isFunction(engineInternals().makeTensorFromDataId) ? null : 'not a function'),
    },
    {
      internal: 'Engine.registeredVariables',
      run: () => (typeof engineInternals().registeredVariables === 'object' ? null : 'not an object'),
    },
    { internal: 'gradient tape (Engine.state.activeTape)', run: probeTape },
    {
      internal: 'MathBackendCPU',
      run: () => {
        const proto = MathBackendCPU.prototype as unknown as Record<string, unknown>;
        const missing = ['write', 'move', 'disposeData', 'readSync', 'makeTensorInfo', 'incRef'].filter((m) => !isFunction(proto[m]));
        if (missing.length > 0) return `no method ${missing.join(', ')}`;
        const data = (tf.findBackend('cpu') as unknown as { data?: { get?: unknown; has?: unknown } } | null)?.data;
        return data && isFunction(data.get) && isFunction(data.has) ? null : 'no data storage with get/has';
      },
    },
    {
      internal: 'kernels of the cpu backend',
      run: () => {
        const missing = replacedKernels.filter((k) => !tf.getKernel(k, 'cpu'));
        return missing.length > 0 ? `no cpu kernel ${missing.join(', ')}` : null;
      },
    },
    ...gradientChecks(),
    {
      internal: "tfjs-layers' relu6 activation class",
      run: () => (isFunction(relu6ActivationClass()?.prototype.apply) ? null : 'not registered as relu6 with an apply method'),
    },
    {
      internal: "tfjs-core's moments export",
      run: () => {
        const core = tfjsCoreExports();
        const d = Object.getOwnPropertyDescriptor(core, 'moments');
        if (!d || !isFunction(d.value)) return 'not a function-valued property of the CommonJS exports';
        if (core.moments !== tf.moments) return 'not the moments that the ES import of tfjs-core gives';
        return d.writable ? null : 'not writable';
      },
    },
    ...(['Conv2D', 'DepthwiseConv2D'] as const).map((name) => ({
      internal: `tfjs-layers' ${name} layer`,
      run: () => convLayerProblem(name),
    })),
    {
      internal: 'AdamOptimizer',
      run: () => {
        if (!isFunction((tf.AdamOptimizer.prototype as unknown as Record<string, unknown>).applyGradients)) return 'no applyGradients method';
        const opt = tf.train.adam(0.001);
        try {
          const a = opt as unknown as AdamInternals;
          const wrong = [
            ...(['learningRate', 'beta1', 'beta2', 'epsilon'] as const).filter((k) => typeof a[k] !== 'number'),
            ...(['accBeta1', 'accBeta2'] as const).filter((k) => !(a[k] instanceof tf.Variable)),
            ...(['accumulatedFirstMoment', 'accumulatedSecondMoment'] as const).filter((k) => !Array.isArray(a[k])),
            ...(isFunction(a.incrementIterations) ? [] : ['incrementIterations']),
          ];
          return wrong.length > 0 ? `fields not as expected: ${wrong.join(', ')}` : null;
        } finally {
          opt.dispose();
        }
      },
    },
    {
      internal: 'BatchNormalization.momentum',
      run: () => {
        // An explicit name, so that the layer takes no number from the auto-naming of the user's layers.
        const layer = tfl.layers.batchNormalization({ momentum: 0.25, name: 'fundus_selfcheck_momentum' });
        return (layer as unknown as { momentum?: unknown }).momentum === 0.25 ? null : 'not the constructor argument';
      },
    },
  ];
}

/** Runs the structural checks; each problem names its internal. */
export function checkInternals(replacedKernels: string[]): Problem[] {
  // The checks use the JS CPU backend, whose first use would advise installing tfjs-node (a private flag, left
  // alone if it is gone): fundus gives its own advice. tf.backend() first: tfjs's first use of a backend replaces
  // the instances findBackend has made.
  tf.backend();
  const cpuBackend = tf.findBackend('cpu') as unknown as { firstUse?: boolean } | null;
  if (cpuBackend && 'firstUse' in cpuBackend) cpuBackend.firstUse = false;
  const problems: Problem[] = [];
  for (const c of structuralChecks(replacedKernels)) {
    let detail: string | null;
    try {
      detail = c.run();
    } catch (e) {
      detail = `threw ${(e as Error).message}`;
    }
    if (detail !== null) problems.push({ internal: c.internal, detail });
  }
  return problems;
}

// --- the training step, patched (native) against plain tfjs (cpu) ---

const X_SHAPE = [2, 5, 5, 3];
const FILTER_SHAPE = [2, 2, 3, 4];
const Y_SHAPE = [2, 4, 4, 4];

/** Fixed values in [lo, hi) (a linear congruential sequence: the check needs no randomness). */
function values(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = lo + (s / 4294967296) * (hi - lo);
  }
  return out;
}

const NAMES = ['gradient of x', 'gradient of the filter', 'gradient of gamma', 'gradient of beta', 'filter after Adam', 'gamma after Adam', 'beta after Adam'];

/** One training step on `backend`: the gradients, then the values after one Adam update. */
async function trainingStep(backend: string): Promise<{ outputs: Float32Array[]; leaked: number }> {
  await tf.setBackend(backend);
  const before = tf.memory().numTensors;
  const bn = tfl.layers.batchNormalization({ epsilon: 1e-3, name: 'fundus_selfcheck_bn' });
  const relu6 = tfl.layers.activation({ activation: 'relu6', name: 'fundus_selfcheck_relu6' });
  // Variables, so that one variableGrads gives every gradient (x's included).
  const x = tf.variable(tf.tensor(values(tf.util.sizeFromShape(X_SHAPE), 1, -2, 3), X_SHAPE));
  const filter = tf.variable(tf.tensor(values(tf.util.sizeFromShape(FILTER_SHAPE), 2), FILTER_SHAPE));
  const optimizer = tf.train.adam(0.01);
  let outputs: Float32Array[] = [];
  try {
    bn.build(Y_SHAPE);
    tf.tidy(() => bn.setWeights([tf.tensor1d(values(4, 3, 0.5, 1.5)), tf.tensor1d(values(4, 4)), tf.zeros([4]), tf.ones([4])]));
    const [gamma, beta] = bn.trainableWeights.map((w) => w.read());
    if (!(gamma instanceof tf.Variable) || !(beta instanceof tf.Variable)) throw new Error("tfjs-layers' LayerVariable.read() is not a tf.Variable");
    outputs = tf.tidy(() => {
      const w = tf.tensor(values(tf.util.sizeFromShape(Y_SHAPE), 5), Y_SHAPE);
      const loss = () => {
        const h = tf.relu(tf.conv2d(x as tf.Tensor4D, filter as tf.Tensor4D, 1, 'valid'));
        const z = relu6.apply(bn.apply(h, { training: true })) as tf.Tensor;
        return tf.add(tf.sum(tf.mul(tf.square(z), w)), tf.mean(z)) as tf.Scalar;
      };
      const { grads } = tf.variableGrads(loss, [x, filter, gamma, beta]);
      const got = [x, filter, gamma, beta].map((v) => grads[v.name].dataSync() as Float32Array);
      optimizer.applyGradients([filter, gamma, beta].map((v) => ({ name: v.name, tensor: grads[v.name] })));
      return [...got, ...[filter, gamma, beta].map((v) => v.dataSync() as Float32Array)];
    });
  } finally {
    tf.dispose([x, filter]);
    optimizer.dispose();
    for (const w of bn.weights) w.dispose();
  }
  return { outputs, leaked: tf.memory().numTensors - before };
}

function relativeError(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return Infinity;
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!Number.isFinite(d)) return Infinity;
    diff = Math.max(diff, d);
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return scale === 0 ? diff : diff / scale;
}

const TOLERANCE = 1e-3;

/**
 * Runs the training step on the (patched) native backend and on the plain JS CPU backend; leaves `native` as the
 * backend. Problems when the numbers differ or tensors leak; notes when a patch did not take effect (the results are
 * still right, only slower).
 */
export async function checkTrainingStep(nativeBackend: string): Promise<{ problems: Problem[]; notes: string[] }> {
  const internal = 'the native training step (conv, ReLU, batch norm, ReLU6, Adam) against plain tfjs';
  const problems: Problem[] = [];
  const notes: string[] = [];
  try {
    const fusedBefore = fusionCounts.batchNorms;
    const momentsBefore = momentsCounts.native;
    const native = await trainingStep(nativeBackend);
    const fused = fusionCounts.batchNorms - fusedBefore;
    const nativeMoments = momentsCounts.native - momentsBefore;
    const cpu = await trainingStep('cpu');
    if (native.leaked > cpu.leaked) problems.push({ internal, detail: `${native.leaked - cpu.leaked} tensor(s) leaked` });
    native.outputs.forEach((out, i) => {
      const e = relativeError(out, cpu.outputs[i]);
      if (!(e <= TOLERANCE)) problems.push({ internal, detail: `${NAMES[i]} differs from plain tfjs (relative error ${e.toExponential(2)})` });
    });
    if (nativeMoments === 0) notes.push("tfjs-layers' batch normalisation no longer reads tfjs-core's moments from its exports: its statistics take tfjs's five passes");
    if (fused === 0) notes.push("tfjs-layers' batch normalisation no longer matches the engine's fused gradient: it trains on tfjs's slower gradient");
  } catch (e) {
    problems.push({ internal, detail: `threw ${(e as Error).message}` });
  } finally {
    await tf.setBackend(nativeBackend);
  }
  return { problems, notes };
}
