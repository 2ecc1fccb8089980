// The engine's start-up self-check (src/engine/selfcheck.ts, install.ts): it passes on the pinned tfjs, and when an
// internal the patches rely on has changed (simulated here in a fresh process) it warns, naming the internal and
// the tfjs version, undoes every patch and leaves plain tfjs computing.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../helpers.js';
import { nativeOrSkip } from './native.js';
import { initEngine } from '../../src/engine/index.js';
import { INSTALL_STEPS } from '../../src/engine/install.js';
import { TESTED_TFJS_VERSION, tfjsVersions } from '../../src/engine/internals.js';

const skip = await nativeOrSkip();

it('package.json pins the three tfjs packages exactly, at the version the engine is checked against', () => {
  const pkg = JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
  for (const name of ['@tensorflow/tfjs-core', '@tensorflow/tfjs-layers', '@tensorflow/tfjs-backend-cpu']) {
    assert.equal(pkg.dependencies[name], TESTED_TFJS_VERSION, name);
  }
  assert.deepEqual(Object.values(tfjsVersions()), [TESTED_TFJS_VERSION, TESTED_TFJS_VERSION, TESTED_TFJS_VERSION], 'installed');
});

/** Runs `prelude` (which changes something), then initEngine twice and a small training step, in a fresh process. */
function runChanged(prelude: string) {
  const script = `
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
const originals = {
  relu: tf.getGradient('Relu').gradFunc,
  batchNorm: tf.getGradient('FusedBatchNorm').gradFunc,
  adam: tf.AdamOptimizer.prototype.applyGradients,
  relu6Class: tf.serialization.SerializationMap.getMap().classNameMap.relu6[0],
};
originals.relu6 = originals.relu6Class.prototype.apply;
${prelude}
const { initEngine } = await import('./src/engine/index.ts');
const info = await initEngine();
const again = await initEngine();
const model = tfl.sequential({ layers: [
  tfl.layers.conv2d({ inputShape: [6, 6, 1], filters: 2, kernelSize: 3, activation: 'relu', kernelInitializer: tfl.initializers.ones() }),
  tfl.layers.batchNormalization(),
  tfl.layers.flatten(),
  tfl.layers.dense({ units: 1, kernelInitializer: tfl.initializers.ones() }),
] });
model.compile({ optimizer: tf.train.adam(0.01), loss: 'meanSquaredError' });
const x = tf.tensor4d(Array.from({ length: 72 }, (_, i) => (i % 7) / 7), [2, 6, 6, 1]);
const loss = await model.trainOnBatch(x, tf.tensor2d([[1], [0]]));
const grad = Array.from(tf.grad((t) => tf.sum(tf.square(t)))(tf.tensor1d([1, -2, 3])).dataSync());
console.log(JSON.stringify({
  info, again, loss, grad, backend: tf.getBackend(), nativeRegistered: tf.findBackend('native') !== null,
  restored: {
    relu: tf.getGradient('Relu').gradFunc === originals.relu,
    batchNorm: tf.getGradient('FusedBatchNorm').gradFunc === originals.batchNorm,
    adam: tf.AdamOptimizer.prototype.applyGradients === originals.adam,
    relu6: originals.relu6Class.prototype.apply === originals.relu6,
    gradients: !Object.prototype.hasOwnProperty.call(tf.engine(), 'gradients') || tf.engine().gradients.length === 0,
  },
}));
`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: PROJECT_ROOT, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return { out: JSON.parse(r.stdout.trim().split('\n').pop()!), stderr: r.stderr };
}

function assertFellBack(run: ReturnType<typeof runChanged>, internal: RegExp) {
  const { out, stderr } = run;
  assert.equal(out.backend, 'cpu');
  assert.equal(out.info.backend, 'cpu');
  assert.equal(out.info.selfCheck.passed, false);
  assert.ok(out.info.selfCheck.problems.some((p: { internal: string }) => internal.test(p.internal)), JSON.stringify(out.info.selfCheck.problems));
  assert.match(out.info.reason, /self-check/);
  assert.deepEqual(out.again, out.info, 'a second initEngine reports the same');
  // Loud, once, naming the internal and the tfjs versions.
  const warnings = stderr.split('\n').filter((l) => l.includes('native engine is off'));
  assert.equal(warnings.length, 1, stderr);
  assert.match(warnings[0], /tfjs-core 4\.\d+\.\d+, tfjs-layers 4\.\d+\.\d+, tfjs-backend-cpu 4\.\d+\.\d+/);
  assert.match(stderr, internal);
  assert.match(stderr, /running on the slow JS CPU backend instead/);
  // Plain tfjs: nothing left patched, nothing left registered, and training still computes.
  assert.equal(out.nativeRegistered, false);
  assert.deepEqual(out.restored, { relu: true, batchNorm: true, adam: true, relu6: true, gradients: true });
  assert.ok(Number.isFinite(out.loss), `loss ${out.loss}`);
  assert.deepEqual(out.grad, [2, -4, 6]);
}

describe('the engine self-check', { skip }, () => {
  it('passes on the pinned tfjs: every step installed, the batch-norm fusion in effect', async () => {
    const info = await initEngine();
    assert.equal(info.backend, 'native');
    assert.equal(info.selfCheck?.passed, true);
    assert.deepEqual(info.selfCheck?.problems, []);
    assert.deepEqual(info.selfCheck?.notes, []);
    assert.deepEqual(info.selfCheck?.steps, INSTALL_STEPS.map((s) => s.name));
    assert.match(info.tfjs, new RegExp(`tfjs-core ${TESTED_TFJS_VERSION.replace(/\./g, '\\.')}`));
  });

  it('falls back to plain tfjs when Engine.gradients has another signature', () => {
    // A wrapper of another arity: tfjs itself still works through it, the engine's wrapper could not.
    assertFellBack(runChanged('{ const e = tf.engine(); const g = e.gradients; e.gradients = function (...args) { return g.apply(this, args); }; }'), /Engine\.gradients/);
  });

  it("falls back to plain tfjs when tfjs-layers' relu6 activation is registered under another name", () => {
    const rename = `{ const m = tf.serialization.SerializationMap.getMap().classNameMap; m.Relu6Activation = m.relu6; delete m.relu6; }`;
    assertFellBack(runChanged(rename), /relu6 activation/);
  });

  it('falls back to plain tfjs, undoing every installed patch, when the patched training step gives other numbers', () => {
    // The batch-norm input gradient's kernel writes zeros: only the numeric check can notice.
    const corrupt = `{
      const { loadAddon } = await import('./src/engine/addon.ts');
      const addon = loadAddon();
      const original = addon.batchNormGradX;
      addon.batchNormGradX = (...args) => { const r = original(...args); args[8].fill(0); return r; };
    }`;
    const run = runChanged(corrupt);
    assertFellBack(run, /native training step/);
    assert.match(run.stderr, /gradient of x differs from plain tfjs/);
  });
});
