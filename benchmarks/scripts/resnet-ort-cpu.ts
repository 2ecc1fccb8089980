// fundus against onnxruntime-node on the same ResNet-50, by CPU time of one thread (issue #15): `npm run
// bench:backbones` compares images/s with two threads, which a loaded machine makes meaningless; this compares the
// CPU time each engine spends per batch, one thread each (or FUNDUS_THREADS each: onnxruntime gets as many intra-op
// threads as fundus), alternating in one process so that both see the same load; wall-clock medians are printed too.
// The ONNX model is written here from fundus's own Keras model (the same weights; no PyTorch needed): one node per
// layer, NCHW, each ZeroPadding2D merged into the convolution or max pooling it feeds, batch norm left to
// onnxruntime's optimiser (it folds it into the convolution, as fundus does), every graph optimisation on. The
// first pass of each checks that the two agree.
//   FUNDUS_THREADS=1 taskset -c 1 npx tsx benchmarks/scripts/resnet-ort-cpu.ts [<batch>...] [--pairs N] [--ort-profile]
// (--ort-profile: onnxruntime's own profile of its timed runs, summed per operator and output shape, to set against
// benchmarks/scripts/resnet-profile.ts's per-convolution figures for fundus)
// (defaults: batch 16 and 1, 9 pairs; the weights in cache/pretrained, as `fundus weights fetch resnet50` puts them).
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import * as ort from 'onnxruntime-node';
import { readdirSync, readFileSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initEngine } from '../../src/engine/index.js';
import { predictFolded } from '../../src/engine/inference.js';
import { createNetwork } from '../../src/models/architectures.js';

// ---- a minimal protobuf writer for ONNX's ModelProto ----
type Field = Uint8Array;
const varint = (v: number | bigint): number[] => {
  let x = BigInt(v);
  if (x < 0n) x += 1n << 64n;
  const out: number[] = [];
  do {
    let b = Number(x & 0x7fn);
    x >>= 7n;
    if (x > 0n) b |= 0x80;
    out.push(b);
  } while (x > 0n);
  return out;
};
const cat = (parts: (Uint8Array | number[])[]): Uint8Array => {
  const n = parts.reduce((s, p) => s + p.length, 0);
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
};
const tagged = (field: number, wire: number) => varint((field << 3) | wire);
const int = (field: number, v: number): Field => new Uint8Array([...tagged(field, 0), ...varint(v)]);
const bytes = (field: number, b: Uint8Array): Field => cat([tagged(field, 2), varint(b.length), b]);
const str = (field: number, s: string): Field => bytes(field, new TextEncoder().encode(s));
const msg = (field: number, parts: Field[]): Field => bytes(field, cat(parts));

const FLOAT = 1;
const attrInts = (name: string, v: number[]) => msg(5, [str(1, name), int(20, 7), ...v.map((x) => int(8, x))]);
const attrInt = (name: string, v: number) => msg(5, [str(1, name), int(20, 2), int(3, v)]);
const attrFloat = (name: string, v: number) => {
  const f = new Uint8Array(new Float32Array([v]).buffer);
  return msg(5, [str(1, name), int(20, 1), cat([tagged(2, 5), f])]);
};
const node = (op: string, inputs: string[], outputs: string[], attrs: Field[] = []) =>
  msg(1, [...inputs.map((i) => str(1, i)), ...outputs.map((o) => str(2, o)), str(3, outputs[0]), str(4, op), ...attrs]);
const initializer = (name: string, dims: number[], data: Float32Array) =>
  msg(5, [...dims.map((d) => int(1, d)), int(2, FLOAT), str(8, name), bytes(9, new Uint8Array(data.buffer, data.byteOffset, data.byteLength))]);
const valueInfo = (field: number, name: string, dims: number[]) =>
  msg(field, [str(1, name), msg(2, [msg(1, [int(1, FLOAT), msg(2, dims.map((d) => msg(1, [int(1, d)])))])])]);

interface LayerNode {
  inboundNodes: { inputTensors: { id: number }[]; outputTensors: { id: number }[] }[];
}
type Layer = tfl.layers.Layer & LayerNode & Record<string, unknown>;

/** TensorFlow's "same" padding of one axis: [before, after]. */
function samePads(size: number, k: number, s: number): [number, number] {
  const total = Math.max((Math.ceil(size / s) - 1) * s + k - size, 0);
  return [Math.floor(total / 2), total - Math.floor(total / 2)];
}

/** The ONNX bytes of a Keras model of the layers ResNet-50 with fundus's head uses, for a fixed NHWC input shape. */
function toOnnx(model: tfl.LayersModel, batch: number): Uint8Array {
  const layers = model.layers as Layer[];
  const nodes: Field[] = [];
  const inits: Field[] = [];
  const name = (id: number) => `t${id}`;
  const single = (l: Layer, which: 'inputTensors' | 'outputTensors') => l.inboundNodes[0][which][0].id;
  /** ZeroPadding2D layers merged into their consumer: output tensor id -> [input id, [[top, bottom], [left, right]]]. */
  const padded = new Map<number, [number, [[number, number], [number, number]]]>();
  const [, h0, w0, c0] = model.inputs[0].shape as number[];
  const inputId = model.inputs[0].id;
  for (const l of layers) {
    const cls = l.getClassName();
    if (cls === 'InputLayer') continue;
    const ins = l.inboundNodes[0].inputTensors.map((t) => t.id);
    const out = single(l, 'outputTensors');
    const inShape = (l.inboundNodes[0] as unknown as { inputTensors: { shape: number[] }[] }).inputTensors[0].shape;
    const w = l.getWeights();
    if (cls === 'ZeroPadding2D') {
      padded.set(out, [ins[0], l.padding as [[number, number], [number, number]]]);
      continue;
    }
    const from = padded.get(ins[0]);
    const src = from ? from[0] : ins[0];
    const zero: [[number, number], [number, number]] = [[0, 0], [0, 0]];
    const extra = from ? from[1] : zero;
    if (cls === 'Conv2D' || cls === 'MaxPooling2D') {
      const k = cls === 'Conv2D' ? (l.kernelSize as number[]) : (l.poolSize as number[]);
      const s = l.strides as number[];
      const same = l.padding === 'same';
      const ph = same ? samePads(inShape[1], k[0], s[0]) : extra[0];
      const pw = same ? samePads(inShape[2], k[1], s[1]) : extra[1];
      const attrs = [attrInts('kernel_shape', k), attrInts('strides', s), attrInts('pads', [ph[0], pw[0], ph[1], pw[1]])];
      if (cls === 'MaxPooling2D') {
        nodes.push(node('MaxPool', [name(src)], [name(out)], attrs));
        continue;
      }
      // HWIO -> OIHW.
      const kernel = tf.tidy(() => tf.transpose(w[0], [3, 2, 0, 1]).dataSync() as Float32Array);
      const [kh, kw, ci, co] = w[0].shape;
      inits.push(initializer(`${l.name}_W`, [co, ci, kh, kw], kernel));
      const inputs = [name(src), `${l.name}_W`];
      if (w[1]) {
        inits.push(initializer(`${l.name}_B`, [co], w[1].dataSync() as Float32Array));
        inputs.push(`${l.name}_B`);
      }
      const act = (l.activation as { getClassName(): string }).getClassName();
      if (act !== 'linear' && act !== 'relu') throw new Error(`${l.name}: activation ${act}`);
      nodes.push(node('Conv', inputs, [act === 'relu' ? `${name(out)}_pre` : name(out)], attrs));
      if (act === 'relu') nodes.push(node('Relu', [`${name(out)}_pre`], [name(out)]));
    } else if (cls === 'BatchNormalization') {
      const [gamma, beta, mean, variance] = (l.scale === false || l.center === false ? null : w) ?? [];
      if (!gamma) throw new Error(`${l.name}: batch norm without scale or centre`);
      for (const [n, t] of [['scale', gamma], ['bias', beta], ['mean', mean], ['var', variance]] as const) inits.push(initializer(`${l.name}_${n}`, [t.shape[0]], t.dataSync() as Float32Array));
      nodes.push(node('BatchNormalization', [name(src), `${l.name}_scale`, `${l.name}_bias`, `${l.name}_mean`, `${l.name}_var`], [name(out)], [attrFloat('epsilon', l.epsilon as number)]));
    } else if (cls === 'Activation') {
      const act = (l.activation as { getClassName(): string }).getClassName();
      const op = { relu: 'Relu', sigmoid: 'Sigmoid' }[act];
      if (!op) throw new Error(`${l.name}: activation ${act}`);
      nodes.push(node(op, [name(src)], [name(out)]));
    } else if (cls === 'Add') {
      nodes.push(node('Add', ins.map(name), [name(out)]));
    } else if (cls === 'GlobalAveragePooling2D') {
      nodes.push(node('GlobalAveragePool', [name(src)], [`${name(out)}_4d`]));
      nodes.push(node('Flatten', [`${name(out)}_4d`], [name(out)], [attrInt('axis', 1)]));
    } else if (cls === 'Dense') {
      const [k, b] = w;
      inits.push(initializer(`${l.name}_W`, k.shape, k.dataSync() as Float32Array));
      inits.push(initializer(`${l.name}_B`, [k.shape[1]!], b.dataSync() as Float32Array));
      const act = (l.activation as { getClassName(): string }).getClassName();
      nodes.push(node('Gemm', [name(src), `${l.name}_W`, `${l.name}_B`], [act === 'linear' ? name(out) : `${name(out)}_pre`]));
      if (act === 'sigmoid') nodes.push(node('Sigmoid', [`${name(out)}_pre`], [name(out)]));
      else if (act !== 'linear') throw new Error(`${l.name}: activation ${act}`);
    } else {
      throw new Error(`${l.name}: no ONNX node for ${cls}`);
    }
  }
  const outId = model.outputs[0].id;
  const outShape = model.outputs[0].shape as number[];
  const graph = msg(7, [...nodes, str(2, 'resnet50'), ...inits, valueInfo(11, name(inputId), [batch, c0, h0, w0]), valueInfo(12, name(outId), [batch, ...outShape.slice(1)])]);
  return cat([int(1, 8), str(2, 'fundus'), graph, msg(8, [str(1, ''), int(2, 13)])]);
}

/** onnxruntime's profile (the warm-up and the timed runs), per operator and output shape, in ms per run. */
function printOrtProfile(session: ort.InferenceSession, prefix: string, runs: number): void {
  session.endProfiling();
  // onnxruntime names the file after the prefix and the time it started.
  const name = readdirSync(tmpdir()).find((f) => f.startsWith(prefix) && f.endsWith('.json'));
  if (!name) throw new Error(`no onnxruntime profile ${prefix}* in ${tmpdir()}`);
  const file = join(tmpdir(), name);
  type Event = { cat: string; name: string; dur: number; args?: { op_name?: string; input_type_shape?: unknown[]; output_type_shape?: unknown[] } };
  const nodes = (JSON.parse(readFileSync(file, 'utf8')) as Event[]).filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time'));
  // The first run (the check before the timed pairs) is left out: the same nodes run in each.
  const perRun = nodes.length / (runs + 1);
  const total = new Map<string, { us: number; calls: number }>();
  const shapeOf = (s: unknown) => JSON.stringify(s ?? []).replace(/[{}"]/g, '').replace(/float:/g, '');
  for (const e of nodes.slice(perRun)) {
    const key = `${e.args?.op_name ?? '?'} ${shapeOf(e.args?.input_type_shape?.[0])} -> ${shapeOf(e.args?.output_type_shape?.[0])}`;
    const t = total.get(key) ?? { us: 0, calls: 0 };
    t.us += e.dur;
    t.calls += 1;
    total.set(key, t);
  }
  const sum = [...total.values()].reduce((a, t) => a + t.us, 0);
  console.log(`  onnxruntime's profile, ms per run (mean of ${runs}): ${(sum / 1000 / runs).toFixed(1)} in kernels`);
  for (const [k, t] of [...total.entries()].sort((a, b) => b[1].us - a[1].us).slice(0, 30)) {
    console.log(`  ${(t.us / 1000 / runs).toFixed(1).padStart(8)} ms ${String(t.calls / runs).padStart(4)} calls  ${k}`);
  }
  unlinkSync(file);
}

// ---- the comparison ----
const args = process.argv.slice(2);
const option = (flag: string, fallback: number) => {
  const i = args.indexOf(flag);
  return i >= 0 ? Number(args.splice(i, 2)[1]) : fallback;
};
const profileAt = args.indexOf('--ort-profile');
const ortProfile = profileAt >= 0 && args.splice(profileAt, 1).length === 1;
const pairs = option('--pairs', 9);
const batches = args.length > 0 ? args.map(Number) : [16, 1];
const engine = await initEngine();
if (engine.backend !== 'native') throw new Error(`the native engine is not available (${engine.backend})`);
const model = (await createNetwork('resnet50', [224, 224, 3], 7, { seed: 1 })).network;
const os = await import('node:os');
console.log(
  `ResNet-50 at 224 px, fundus ${engine.threads} thread(s) (oneDNN ${engine.onednn}${process.env.FUNDUS_BLOCK_FUSION === 'off' ? ', FUNDUS_BLOCK_FUSION=off' : ''}), ` +
    `onnxruntime-node ${ort.env.versions.node} ${engine.threads} intra-op thread(s); load ${os.loadavg()[0].toFixed(1)}`,
);
const cpuMs = () => {
  const c = process.cpuUsage();
  return (c.user + c.system) / 1000;
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

for (const batch of batches) {
  const session = await ort.InferenceSession.create(toOnnx(model, batch), {
    executionProviders: ['cpu'],
    intraOpNumThreads: engine.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    enableProfiling: ortProfile,
    profileFilePrefix: join(tmpdir(), `fundus-ort-profile-${process.pid}-${batch}`),
  });
  const x = tf.randomUniform([batch, 224, 224, 3], -120, 140, 'float32', 5);
  const nchw = tf.tidy(() => tf.transpose(x, [0, 3, 1, 2]).dataSync() as Float32Array);
  const feeds = { [session.inputNames[0]]: new ort.Tensor('float32', nchw, [batch, 3, 224, 224]) };
  const runFundus = () => tf.tidy(() => predictFolded(model, x).dataSync() as Float32Array);
  const runOrt = async () => {
    const out = await session.run(feeds);
    const y = (out[session.outputNames[0]].data as Float32Array).slice();
    for (const v of Object.values(out)) v.dispose();
    return y;
  };
  const [a, b] = [runFundus(), await runOrt()];
  let diff = 0;
  a.forEach((v, i) => (diff = Math.max(diff, Math.abs(v - b[i]))));
  const f: number[] = [];
  const o: number[] = [];
  const wall = { fundus: [] as number[], ort: [] as number[] };
  for (let i = 0; i < pairs; i++) {
    for (const side of i % 2 === 0 ? (['fundus', 'ort'] as const) : (['ort', 'fundus'] as const)) {
      const t = cpuMs();
      const t0 = performance.now();
      if (side === 'fundus') runFundus();
      else await runOrt();
      wall[side].push(performance.now() - t0);
      (side === 'fundus' ? f : o).push(cpuMs() - t);
    }
  }
  const ratios = f.map((v, i) => o[i] / v);
  console.log(
    `batch ${batch}: fundus median ${median(f).toFixed(1)} ms CPU, onnxruntime ${median(o).toFixed(1)} ms; per-pair onnxruntime/fundus CPU time (fundus's speed as a fraction of onnxruntime's) median ${median(ratios).toFixed(3)} [${Math.min(...ratios).toFixed(3)}, ${Math.max(...ratios).toFixed(3)}]; ` +
      `wall-clock medians ${median(wall.fundus).toFixed(1)} vs ${median(wall.ort).toFixed(1)} ms; max |fundus - onnxruntime| probability ${diff.toExponential(1)}`,
  );
  if (ortProfile) printOrtProfile(session, `fundus-ort-profile-${process.pid}-${batch}`, pairs);
  await session.release();
  x.dispose();
}
