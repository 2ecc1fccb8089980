import { test } from 'node:test';
import assert from 'node:assert/strict';
import { evaluatePredictions } from '../../src/eval/evaluate.js';
import { bootstrapIntervals, labelCombinationStrata, quantileSorted, resampleCounts } from '../../src/eval/bootstrap.js';
import { averagePrecision, column, countsAtThreshold, f1Of, meanF1, rocAuc } from '../../src/metrics/metrics.js';
import { seededRandom } from '../../src/data/random.js';

/** n×C labels with the given prevalences and probabilities that are informative but noisy. */
function synthetic(n: number, prevalence: number[], seed = 1): { labels: Uint8Array; probs: Float32Array } {
  const rng = seededRandom(seed);
  const C = prevalence.length;
  const labels = new Uint8Array(n * C);
  const probs = new Float32Array(n * C);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < C; k++) {
      const y = rng() < prevalence[k] ? 1 : 0;
      labels[i * C + k] = y;
      probs[i * C + k] = Math.min(1, Math.max(0, 0.3 + 0.35 * y + (rng() - 0.5) * 0.6));
    }
  }
  return { labels, probs };
}

/** Walks a JSON value and fails on any non-finite number (NaN would become null silently in JSON). */
function assertFinite(v: unknown, path = '$'): void {
  if (typeof v === 'number') assert.ok(Number.isFinite(v), `${path} is ${v}`);
  else if (Array.isArray(v)) v.forEach((x, i) => assertFinite(x, `${path}[${i}]`));
  else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) assertFinite(x, `${path}.${k}`);
}

test('numpy-style percentile', () => {
  assert.equal(quantileSorted([1, 2, 3, 4], 0.5), 2.5);
  assert.ok(Math.abs(quantileSorted([1, 2, 3, 4], 0.025) - 1.075) < 1e-12);
  assert.equal(quantileSorted([7], 0.975), 7);
});

test('stratified resampling keeps every stratum size and is seeded', () => {
  const labels = Uint8Array.from([1, 0, 1, 0, 0, 1, 1, 1, 0, 0, 0, 0]); // 6 images × 2 classes
  const strata = labelCombinationStrata(labels, 2, 1);
  assert.deepEqual(Array.from(strata), [0, 0, 1, 2, 3, 3]);
  // combinations of fewer than minSize images are pooled, so that a lone image still varies between resamples
  assert.deepEqual(Array.from(labelCombinationStrata(labels, 2, 2)), [0, 0, 4, 4, 3, 3]);
  const members = [Uint32Array.from([0, 1]), Uint32Array.from([2]), Uint32Array.from([3]), Uint32Array.from([4, 5])];
  const rng = seededRandom(3);
  for (let r = 0; r < 50; r++) {
    const c = resampleCounts(members, 6, rng);
    assert.equal(c[0] + c[1], 2);
    assert.equal(c[2], 1);
    assert.equal(c[3], 1);
    assert.equal(c[4] + c[5], 2);
  }
  const stat = (w: Float64Array, out: Float64Array): void => {
    out[0] = w[0] * 1 + w[1] * 3;
  };
  const a = bootstrapIntervals(strata, 1, stat, { seed: 5, resamples: 200 });
  const b = bootstrapIntervals(strata, 1, stat, { seed: 5, resamples: 200 });
  assert.deepEqual(a, b);
  assert.deepEqual(a[0], [2, 6]);
});

test('evaluatePredictions agrees with the metric functions and brackets them with intervals', () => {
  const C = 4;
  const { labels, probs } = synthetic(300, [0.3, 0.1, 0.5, 0.05]);
  const thresholds = [0.5, 0.45, 0.6, 0.4];
  const r = evaluatePredictions({ classes: ['a', 'b', 'c', 'd'], activation: 'sigmoid', probs, labels, thresholds, bootstrap: { resamples: 300, seed: 1 } });
  assert.deepEqual(r.scoredClasses, ['a', 'b', 'c', 'd']);
  assert.equal(r.imageCount, 300);
  for (let k = 0; k < C; k++) {
    const y = column(labels, C, k);
    const p = column(probs, C, k);
    const m = r.perClass[['a', 'b', 'c', 'd'][k]];
    assert.equal(m.auc.value, rocAuc(y, p));
    assert.equal(m.ap.value, averagePrecision(y, p));
    assert.equal(m.f1.value, f1Of(countsAtThreshold(y, p, thresholds[k])));
    assert.equal(m.positives, y.reduce((a, b) => a + b, 0));
    for (const name of ['auc', 'ap', 'f1', 'sensitivity', 'specificity', 'precision', 'f1At05'] as const) {
      const { value, ci } = m[name];
      assert.ok(ci && value !== null, `${name} of class ${k} has an interval`);
      assert.ok(ci[0] <= value + 1e-9 && value - 1e-9 <= ci[1], `${name} ${value} in [${ci}]`);
      assert.ok(ci[1] - ci[0] < 0.5, `${name} interval width`);
    }
  }
  assert.equal(r.overall.meanF1At05.value, meanF1(labels, probs, C, 0.5));
  assert.equal(r.overall.meanF1.value, meanF1(labels, probs, C, thresholds));
  assert.equal(r.confusion.kind, 'per-class');
  assert.ok(r.calibration.bins.length > 0 && r.overall.ece !== null);
  assertFinite(r);
  // rarer class, wider interval
  const width = (x: { ci: [number, number] | null }): number => x.ci![1] - x.ci![0];
  assert.ok(width(r.perClass.d.auc) > width(r.perClass.c.auc));
  // seeded: the same call gives the same intervals
  const again = evaluatePredictions({ classes: ['a', 'b', 'c', 'd'], activation: 'sigmoid', probs, labels, thresholds, bootstrap: { resamples: 300, seed: 1 } });
  assert.deepEqual(again, r);
});

test('a class without positives gives null with a reason and is left out of the averages', () => {
  const { labels, probs } = synthetic(120, [0.4, 0, 0.3], 2);
  const r = evaluatePredictions({ classes: ['a', 'b', 'c'], activation: 'sigmoid', probs, labels, thresholds: [0.5, 0.5, 0.5], bootstrap: { resamples: 100 } });
  const b = r.perClass.b;
  assert.equal(b.positives, 0);
  for (const name of ['auc', 'ap', 'sensitivity'] as const) {
    assert.equal(b[name].value, null);
    assert.equal(b[name].ci, null);
    assert.match(b[name].note!, /no positive examples/);
  }
  assert.equal(b.specificity.value !== null, true);
  const aucs = [r.perClass.a.auc.value!, r.perClass.c.auc.value!];
  assert.equal(r.overall.macroAuc.value, (aucs[0] + aucs[1]) / 2);
  assert.match(r.overall.macroAuc.note!, /leaves out b/);
  assertFinite(r);
  assert.doesNotMatch(JSON.stringify(r), /NaN/);
});

test('perfect separation: AUC 1 with the interval [1, 1]', () => {
  const labels = Uint8Array.from([1, 0, 1, 0, 0, 1, 0, 0]);
  const probs = Float32Array.from([0.9, 0.1, 0.8, 0.2, 0.3, 0.7, 0.05, 0.4]);
  const r = evaluatePredictions({ classes: ['x'], activation: 'sigmoid', probs, labels, thresholds: [0.5], bootstrap: { resamples: 200 } });
  assert.equal(r.perClass.x.auc.value, 1);
  assert.deepEqual(r.perClass.x.auc.ci, [1, 1]);
  assert.equal(r.overall.meanF1At05.value, 1);
});

test('softmax: full confusion matrix of top classes, accuracy, top-label calibration', () => {
  // 3 classes, 6 images; image 5 has no label among them and is left out of the full matrix
  const labels = Uint8Array.from([1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0]);
  const probs = Float32Array.from([0.7, 0.2, 0.1, 0.1, 0.8, 0.1, 0.2, 0.5, 0.3, 0.3, 0.3, 0.4, 0.1, 0.6, 0.3, 0.5, 0.2, 0.3]);
  const r = evaluatePredictions({ classes: ['dr', 'glaucoma', 'normal'], activation: 'softmax', probs, labels, thresholds: [0.5, 0.5, 0.5], bootstrap: { resamples: 50 } });
  assert.equal(r.confusion.kind, 'full');
  if (r.confusion.kind !== 'full') return;
  assert.deepEqual(r.confusion.matrix, [
    [1, 0, 1],
    [0, 2, 0],
    [0, 1, 0],
  ]);
  assert.equal(r.confusion.excludedImages, 1);
  assert.equal(r.overall.accuracy!.value, 3 / 5);
  assert.equal(r.calibration.kind, 'top-label');
  assert.equal(r.calibration.bins.reduce((a, b) => a + b.count, 0), 5);
});

test('only the scored classes are evaluated', () => {
  const { labels, probs } = synthetic(80, [0.3, 0.3, 0.3], 4);
  const r = evaluatePredictions({ classes: ['a', 'b', 'c'], activation: 'sigmoid', probs, labels, scored: [0, 2], thresholds: [0.5, 0.5, 0.5], bootstrap: { resamples: 50 } });
  assert.deepEqual(Object.keys(r.perClass), ['a', 'c']);
  assert.deepEqual(r.scoredClasses, ['a', 'c']);
  assert.equal(r.calibration.bins.reduce((a, b) => a + b.count, 0), 160);
});

test('1000 resamples of a test-sized set stay fast', () => {
  const { labels, probs } = synthetic(700, [0.1, 0.2, 0.15, 0.05, 0.1, 0.05, 0.3], 9);
  const t0 = performance.now();
  const r = evaluatePredictions({ classes: ['1', '2', '3', '4', '5', '6', '7'], activation: 'sigmoid', probs, labels, thresholds: new Array(7).fill(0.5) });
  const ms = performance.now() - t0;
  assert.equal(r.bootstrap.resamples, 1000);
  // not a benchmark: only a guard against an accidental O(n^2) (typical: well under a second)
  assert.ok(ms < 20000, `${ms} ms`);
});

test('small sets with unique label combinations still get honest (non-degenerate) intervals', () => {
  const { labels, probs } = synthetic(14, [0.4, 0.5, 0.3, 0.45], 21);
  const r = evaluatePredictions({ classes: ['a', 'b', 'c', 'd'], activation: 'sigmoid', probs, labels, thresholds: [0.5, 0.5, 0.5, 0.5], bootstrap: { resamples: 300 } });
  for (const name of ['a', 'b', 'c', 'd']) {
    const { value, ci } = r.perClass[name].auc;
    if (value !== null && value > 0 && value < 1) assert.ok(ci![1] - ci![0] > 0.05, `${name}: [${ci}] around ${value}`);
  }
  const ci = r.overall.macroAuc.ci!;
  assert.ok(ci[1] - ci[0] > 0.02, `macro AUC [${ci}]`);
  assert.deepEqual(r.bootstrap.stratifiedBy, { perClass: 'class-label', overall: 'label-combination' });
});
