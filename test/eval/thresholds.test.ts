import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parsePolicy, tuneThreshold, tuneThresholds } from '../../src/metrics/thresholds.js';
import { countsAtThreshold, f1Of, sensitivityOf, specificityOf } from '../../src/metrics/metrics.js';
import { InputError } from '../../src/util/errors.js';
import { seededRandom } from '../../src/data/random.js';

function noisy(n: number, prevalence: number, seed: number): { y: Uint8Array; p: Float64Array } {
  const rng = seededRandom(seed);
  const y = new Uint8Array(n);
  const p = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    y[i] = rng() < prevalence ? 1 : 0;
    p[i] = Math.round((0.3 + 0.3 * y[i] + (rng() - 0.5) * 0.7) * 50) / 50; // rounded: ties on purpose
  }
  return { y, p };
}

test('max-f1 finds the best F1 over every possible cut', () => {
  for (const seed of [1, 2, 3]) {
    const { y, p } = noisy(200, 0.25, seed);
    const t = tuneThreshold(y, p, { kind: 'max-f1' });
    const bruteBest = Math.max(...[...new Set(p)].map((s) => f1Of(countsAtThreshold(y, p, s)) ?? 0));
    assert.equal(t.f1, bruteBest);
    assert.equal(f1Of(countsAtThreshold(y, p, t.threshold)), bruteBest);
    assert.ok(t.tuned);
    // half-way between two distinct scores, not on one
    assert.ok(!p.includes(t.threshold) || t.threshold === Math.min(...p));
  }
});

test('sensitivity target: reached, at the highest such threshold', () => {
  const { y, p } = noisy(300, 0.3, 7);
  const t = tuneThreshold(y, p, { kind: 'sensitivity', target: 0.9 });
  assert.ok(t.sensitivity! >= 0.9);
  const c = countsAtThreshold(y, p, t.threshold);
  assert.equal(sensitivityOf(c), t.sensitivity);
  assert.equal(specificityOf(c), t.specificity);
  // any higher candidate misses the target
  const above = [...new Set(p)].filter((s) => s > t.threshold);
  const cut = Math.min(...above); // the lowest score still predicted positive: same predictions as the threshold
  const higher = above.filter((s) => s > cut);
  assert.ok(higher.length > 0);
  for (const s of higher) assert.ok(sensitivityOf(countsAtThreshold(y, p, s))! < 0.9);
});

test('a class without positives keeps its fallback threshold', () => {
  const t = tuneThresholds([Uint8Array.from([1, 0]), Uint8Array.from([0, 0]), Uint8Array.from([1, 0])], Float32Array.from([0.8, 0.6, 0.3, 0.2, 0.9, 0.1]), 2, { kind: 'max-f1' }, [0.5, 0.35]);
  assert.equal(t.thresholds[1], 0.35);
  assert.equal(t.perClass[1].tuned, false);
  assert.match(t.perClass[1].note!, /no positive examples/);
  // class 0: positives 0.8 and 0.9, negative 0.3 -> cut between 0.8 and 0.3
  assert.ok(Math.abs(t.thresholds[0] - (0.8 + Math.fround(0.3)) / 2) < 1e-6);
  assert.equal(t.perClass[0].f1, 1);
  assert.equal(t.policy, 'max-f1');
});

test('policies parse, bad ones are input errors', () => {
  assert.deepEqual(parsePolicy('max-f1'), { kind: 'max-f1' });
  assert.deepEqual(parsePolicy('sensitivity=0.9'), { kind: 'sensitivity', target: 0.9 });
  assert.throws(() => parsePolicy('sensitivity=1.5'), InputError);
  assert.throws(() => parsePolicy('youden'), /unknown threshold policy 'youden'/);
});
