import { test } from 'node:test';
import assert from 'node:assert/strict';
import { seededRandom } from '../../src/data/random.js';
import { evaluatePredictions } from '../../src/eval/evaluate.js';
import { pairedDifference } from '../../src/selflearn/compare.js';
import { armBudget } from '../../src/selflearn/retrain.js';

/** n images, C classes: random multi-hot labels, a good model (scores follow labels) and a noisy one. */
function data(n: number, C: number, seed: number) {
  const rng = seededRandom(seed);
  const labels = new Uint8Array(n * C);
  const good = new Float32Array(n * C);
  const noisy = new Float32Array(n * C);
  for (let i = 0; i < n * C; i++) {
    labels[i] = rng() < 0.3 ? 1 : 0;
    good[i] = Math.min(1, Math.max(0, 0.5 * labels[i] + 0.25 + 0.3 * (rng() - 0.5)));
    noisy[i] = Math.min(1, Math.max(0, 0.2 * labels[i] + 0.4 + 0.6 * (rng() - 0.5)));
  }
  return { labels, good, noisy };
}

test('pairedDifference: the point difference is that of evaluatePredictions, and a model against itself differs by exactly 0', () => {
  const C = 3;
  const { labels, good, noisy } = data(200, C, 1);
  const thr = [0.5, 0.45, 0.55];
  const a = { probs: good, thresholds: thr };
  const b = { probs: noisy, thresholds: [0.5, 0.5, 0.5] };
  const d = pairedDifference(labels, C, a, b, { resamples: 200, seed: 3 });
  const ev = (p: Float32Array, t: number[]) => evaluatePredictions({ classes: ['a', 'b', 'c'], activation: 'sigmoid', probs: p, labels, thresholds: t, bootstrap: { resamples: 0 } }).overall;
  const ea = ev(good, thr);
  const eb = ev(noisy, [0.5, 0.5, 0.5]);
  assert.ok(Math.abs(d.macroAuc.value! - (ea.macroAuc.value! - eb.macroAuc.value!)) < 1e-12);
  assert.ok(Math.abs(d.meanF1.value! - (ea.meanF1.value! - eb.meanF1.value!)) < 1e-12);
  // The good model is clearly better: the paired interval is above zero and contains the point value.
  assert.ok(d.macroAuc.ci![0] > 0 && d.macroAuc.ci![0] <= d.macroAuc.value! && d.macroAuc.value! <= d.macroAuc.ci![1], JSON.stringify(d));
  const same = pairedDifference(labels, C, a, a, { resamples: 50 });
  assert.deepEqual(same.macroAuc, { value: 0, ci: [0, 0] });
  assert.deepEqual(same.meanF1, { value: 0, ci: [0, 0] });
  // Reversing the pair flips the sign.
  const back = pairedDifference(labels, C, b, a, { resamples: 200, seed: 3 });
  assert.ok(Math.abs(back.macroAuc.value! + d.macroAuc.value!) < 1e-12);
  assert.ok(Math.abs(back.macroAuc.ci![0] + d.macroAuc.ci![1]) < 1e-12);
});

test('pairedDifference: a class without positives is left out of both averages; mismatched shapes are refused', () => {
  const C = 2;
  const labels = Uint8Array.from([1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0]);
  const a = { probs: Float32Array.from([0.9, 0.1, 0.2, 0.1, 0.8, 0.3, 0.1, 0.2, 0.7, 0.4, 0.3, 0.5]), thresholds: [0.5, 0.5] };
  const b = { probs: Float32Array.from([0.4, 0.1, 0.5, 0.1, 0.3, 0.3, 0.6, 0.2, 0.7, 0.4, 0.3, 0.5]), thresholds: [0.5, 0.5] };
  const d = pairedDifference(labels, C, a, b, { resamples: 20 });
  // Class 1 has no positives (AUC undefined): the macro AUC is class 0 alone, AUC 1 against 4.5/9.
  assert.equal(d.macroAuc.value, 1 - 0.5);
  assert.throws(() => pairedDifference(labels, 3, a, b), RangeError);
  assert.throws(() => pairedDifference(labels, C, a, { probs: b.probs, thresholds: [0.5] }), RangeError);
});

test('armBudget: partial epochs count by their fraction, and the reason training stopped', () => {
  assert.deepEqual(armBudget([{}, {}], 2, 3, 1e-4, 100, 2), { epochsPlanned: 2, epochsRun: 2, bestEpoch: 2, maxMinutes: 3, trainSeconds: 100, lr: 1e-4, stoppedBy: 'epochs' });
  const cut = armBudget([{}, { epoch_fraction: 0.25 }], 3, 1, 1e-3, 61, 1);
  assert.equal(cut.epochsRun, 1.25);
  assert.equal(cut.stoppedBy, 'time');
  assert.equal(armBudget([{}], 3, undefined, 1e-3, 10, 1).stoppedBy, 'early-stopping');
});
