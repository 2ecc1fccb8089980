import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../helpers.js';
import { initEngine } from '../../src/engine/index.js';
import { fromRows } from '../../src/selflearn/matrix.js';
import { kNearestNeighbors, knnConnectivity } from '../../src/selflearn/knn.js';
import { LabelPropagation, LabelSpreading, type SpreadingKernel } from '../../src/selflearn/spreading.js';
import { spreadMultiLabel } from '../../src/selflearn/multilabel.js';
import { InputError } from '../../src/util/errors.js';

interface Case {
  name: string;
  variant: 'spreading' | 'propagation';
  params: { kernel: SpreadingKernel; gamma?: number; n_neighbors?: number; alpha?: number; max_iter?: number; tol?: number };
  X: number[][];
  y: number[];
  classes: number[];
  labelDistributions: number[][];
  transduction: number[];
  nIter: number;
  converged: boolean;
}
interface Fixtures {
  sklearn: string;
  cases: Case[];
  knnGraph: { X: number[][]; nNeighbors: number; indices: number[][] };
  multilabel: {
    X: number[][];
    Y: number[][];
    kernels: { kernel: SpreadingKernel; params: { alpha: number; n_neighbors?: number; gamma?: number }; confidences: number[][] }[];
  };
}

const fixtures = JSON.parse(
  readFileSync(join(PROJECT_ROOT, 'test', 'fixtures', 'label-spreading', 'cases.json'), 'utf8'),
) as Fixtures;

await initEngine();

test(`fixtures come from scikit-learn 1.2.1 and cover both variants, kernels and max_iter`, () => {
  assert.equal(fixtures.sklearn, '1.2.1');
  const names = fixtures.cases.map((c) => `${c.variant}-${c.params.kernel}`);
  for (const k of ['spreading-knn', 'spreading-rbf', 'propagation-knn', 'propagation-rbf']) assert.ok(names.includes(k));
  assert.ok(fixtures.cases.some((c) => !c.converged));
});

for (const c of fixtures.cases) {
  test(`matches sklearn: ${c.name}`, () => {
    const p = {
      kernel: c.params.kernel,
      gamma: c.params.gamma,
      nNeighbors: c.params.n_neighbors,
      maxIter: c.params.max_iter,
      tol: c.params.tol,
    };
    const model = c.variant === 'spreading' ? new LabelSpreading({ ...p, alpha: c.params.alpha }) : new LabelPropagation(p);
    model.fit(fromRows(c.X), c.y);
    assert.deepEqual(model.classes, c.classes);
    assert.equal(model.nIter, c.nIter, 'n_iter_');
    assert.equal(model.converged, c.converged, 'convergence');
    assert.deepEqual(Array.from(model.transduction), c.transduction, 'transduction_');
    const k = c.classes.length;
    let maxErr = 0;
    c.labelDistributions.forEach((row, i) =>
      row.forEach((v, j) => (maxErr = Math.max(maxErr, Math.abs(v - model.labelDistributions[i * k + j])))),
    );
    assert.ok(maxErr <= 1e-6, `label_distributions_ differ by ${maxErr}`);
  });
}

test('kNN neighbour sets equal sklearn NearestNeighbors (self included)', () => {
  const g = fixtures.knnGraph;
  const knn = kNearestNeighbors(fromRows(g.X), g.nNeighbors, { blockBytes: 4 * 300 * 37 });
  g.indices.forEach((row, i) => {
    const mine = Array.from(knn.indices.subarray(i * g.nNeighbors, (i + 1) * g.nNeighbors));
    assert.deepEqual(mine, row, `neighbours of point ${i}`);
  });
});

test('kNN graph of a small known case: points on a line', () => {
  // 0, 1, 3, 7, 15 on a line: with k = 2 every point's neighbours are itself and the closest other point.
  const x = fromRows([[0], [1], [3], [7], [15]]);
  const knn = kNearestNeighbors(x, 2);
  assert.deepEqual(Array.from(knn.indices), [0, 1, 1, 0, 2, 1, 3, 2, 4, 3]);
  assert.deepEqual(Array.from(knn.sqDistances), [0, 1, 0, 1, 0, 4, 0, 16, 0, 64]);
  const a = knnConnectivity(knn, 5);
  assert.deepEqual(Array.from(a.indptr), [0, 2, 4, 6, 8, 10]);
  assert.deepEqual(Array.from(a.indices), [0, 1, 0, 1, 1, 2, 2, 3, 3, 4]);
  assert.deepEqual(Array.from(a.values), new Array(10).fill(1));
  // k = n: everyone is everyone's neighbour.
  assert.equal(kNearestNeighbors(x, 5).indices.length, 25);
});

test('kNN is exact beyond float32: near-tied neighbours far from the origin', () => {
  // Large offset + tiny gaps: float32 alone cannot order these, the float64 re-ranking must.
  const rows = Array.from({ length: 40 }, (_, i) => [1e4 + i * 1e-3, 1e4 - ((i * 7) % 40) * 1e-3]);
  const x = fromRows(rows);
  const knn = kNearestNeighbors(x, 4);
  for (let i = 0; i < 40; i++) {
    const exact = rows
      .map((r, j) => ({ j, d: (r[0] - rows[i][0]) ** 2 + (r[1] - rows[i][1]) ** 2 }))
      .sort((a, b) => a.d - b.d || a.j - b.j)
      .slice(0, 4)
      .map((e) => e.j);
    assert.deepEqual(Array.from(knn.indices.subarray(i * 4, i * 4 + 4)), exact, `point ${i}`);
  }
});

test('multi-label: each class spread as its own binary problem matches sklearn per class', () => {
  const m = fixtures.multilabel;
  const n = m.X.length;
  const c = m.Y[0].length;
  const y = Int8Array.from(m.Y.flat());
  for (const k of m.kernels) {
    const r = spreadMultiLabel(fromRows(m.X), y, c, {
      kernel: k.kernel,
      alpha: k.params.alpha,
      nNeighbors: k.params.n_neighbors,
      gamma: k.params.gamma,
    });
    let maxErr = 0;
    for (let cls = 0; cls < c; cls++) {
      for (let i = 0; i < n; i++) maxErr = Math.max(maxErr, Math.abs(r.confidences[i * c + cls] - k.confidences[cls][i]));
    }
    assert.ok(maxErr <= 1e-6, `${k.kernel}: per-class confidences differ by ${maxErr}`);
    // A point can carry several classes at once.
    let multi = 0;
    for (let i = 0; i < n; i++) if (r.labels.subarray(i * c, (i + 1) * c).reduce((a, b) => a + b, 0) > 1) multi++;
    assert.ok(multi > 0, 'some points should get more than one class');
  }
});

test('multi-label: a class with no labelled positives gets confidence 0', () => {
  const x = fromRows([[0], [1], [2], [3]]);
  const y = Int8Array.from([0, 1, -1, -1, -1, 0, 1, 0]);
  // class 0: labelled 0, -1, -1, 1 → spread; class 1: labelled 1, -1, 0, 0 → spread.
  const r = spreadMultiLabel(x, y, 2, { kernel: 'knn', nNeighbors: 2 });
  assert.equal(r.perClass[0].labelledPositives, 1);
  const none = spreadMultiLabel(x, Int8Array.from([0, -1, -1, 0]), 1, { kernel: 'knn', nNeighbors: 2 });
  assert.deepEqual(Array.from(none.confidences), [0, 0, 0, 0]);
});

test('bad parameters and inputs are InputErrors', () => {
  const x = fromRows([[0], [1], [2]]);
  assert.throws(() => new LabelSpreading({ alpha: 1 }).fit(x, [0, 1, -1]), InputError);
  assert.throws(() => new LabelSpreading({ kernel: 'knn', nNeighbors: 4 }).fit(x, [0, 1, -1]), /cannot exceed/);
  assert.throws(() => new LabelSpreading().fit(x, [-1, -1, -1]), /no labelled points/);
  assert.throws(() => new LabelSpreading().fit(x, [0, 1]), /3 rows but y has 2/);
  assert.throws(() => new LabelSpreading({ maxDenseSamples: 2 }).fit(x, [0, 1, -1]), /use the knn kernel/);
  assert.throws(() => new LabelSpreading().fit(fromRows([[0], [NaN]]), [0, -1]), /non-finite/);
});

test('predictProba / predict for new points, as sklearn: knn sums the k nearest fitted distributions, rbf weighs them all', () => {
  const x = fromRows([[0], [1], [10], [11], [5.2]]);
  const y = [0, -1, 1, -1, -1];
  const near = fromRows([[0.4], [10.6]]);
  const row = (f: Float64Array, i: number) => [f[2 * i], f[2 * i + 1]];
  const normalised = (v: number[]) => v.map((a) => a / (v[0] + v[1]));
  const close = (a: ArrayLike<number>, b: number[]) => b.forEach((v, i) => assert.ok(Math.abs(a[i] - v) < 1e-12, `${Array.from(a)} vs ${b}`));

  const knn = new LabelSpreading({ kernel: 'knn', nNeighbors: 2 }).fit(x, y);
  const f = knn.labelDistributions;
  const pk = knn.predictProba(near);
  // 0.4: nearest fitted points 0 and 1; 10.6: 11 and 10
  close(pk.subarray(0, 2), normalised([row(f, 0)[0] + row(f, 1)[0], row(f, 0)[1] + row(f, 1)[1]]));
  close(pk.subarray(2, 4), normalised([row(f, 3)[0] + row(f, 2)[0], row(f, 3)[1] + row(f, 2)[1]]));
  assert.deepEqual(Array.from(knn.predict(near)), [0, 1]);

  const rbf = new LabelSpreading({ kernel: 'rbf', gamma: 0.5 }).fit(x, y);
  const g = rbf.labelDistributions;
  const weights = [0, 1, 10, 11, 5.2].map((v) => Math.exp(-0.5 * (0.4 - v) ** 2));
  const sum = [0, 1].map((t) => weights.reduce((s, w, j) => s + w * g[2 * j + t], 0));
  close(rbf.predictProba(fromRows([[0.4]])), normalised(sum));
  assert.deepEqual(Array.from(rbf.predict(near)), [0, 1]);
  // Far from every fitted point the rbf weights underflow to zero: NaN, as sklearn's 0/0.
  assert.ok(Number.isNaN(new LabelSpreading({ kernel: 'rbf', gamma: 20 }).fit(x, y).predictProba(fromRows([[1000]]))[0]));

  assert.throws(() => knn.predictProba(fromRows([[1, 2]])), (e: unknown) => e instanceof InputError && /2 features per point .* fitted on 1/.test(e.message));
  assert.throws(() => new LabelPropagation().predictProba(near), (e: unknown) => e instanceof InputError && /fit\(X, y\)/.test(e.message));
});
