import { test } from 'node:test';
import assert from 'node:assert/strict';
import { seededRandom } from '../../src/data/random.js';
import { groupedStratifiedFolds } from '../../src/audit/folds.js';
import { crossValidatedAuc, decisionScores, fitOneVsRest, selectColumns } from '../../src/audit/logistic.js';
import type { FeatureMatrix } from '../../src/audit/logistic.js';
import { auditVerdict, classAucs, statisticsBySource } from '../../src/audit/report.js';
import type { AuditReport } from '../../src/audit/report.js';
import type { LabelledImage } from '../../src/data/labels.js';

/** Standard normal by Box-Muller. */
function gauss(rng: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - rng())) * Math.cos(2 * Math.PI * rng());
}

/** n rows of d features; class i % S; class s shifts the first S features by `shift` on feature s. */
function blobs(n: number, d: number, S: number, shift: number, seed: number): { X: FeatureMatrix; y: Int32Array } {
  const rng = seededRandom(seed);
  const data = new Float64Array(n * d);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    y[i] = i % S;
    for (let j = 0; j < d; j++) data[i * d + j] = gauss(rng) * (1 + j) + 10 * j + (j === y[i] ? shift : 0);
  }
  return { X: { data, rows: n, cols: d }, y };
}

const noGroups = (n: number) => new Array<string | undefined>(n).fill(undefined);

test('logistic regression recovers a separable problem (AUC ≈ 1) and gives ≈ 0.5 on noise', () => {
  const S = 3;
  const sep = blobs(240, 12, S, 8, 1);
  const folds = groupedStratifiedFolds(sep.y, noGroups(240), 5, 0);
  const cv = crossValidatedAuc(sep.X, sep.y, S, folds.fold);
  assert.equal(cv.folds, 5);
  assert.ok(cv.converged);
  for (const a of cv.auc) assert.ok(a! > 0.99, `separable: AUC ${a}`);
  assert.ok(cv.macroAuc! > 0.99);

  const noise = blobs(300, 12, S, 0, 2);
  const cvNoise = crossValidatedAuc(noise.X, noise.y, S, groupedStratifiedFolds(noise.y, noGroups(300), 5, 0).fold);
  assert.ok(Math.abs(cvNoise.macroAuc! - 0.5) < 0.08, `noise: macro AUC ${cvNoise.macroAuc}`);
  for (const a of cvNoise.auc) assert.ok(Math.abs(a! - 0.5) < 0.12, `noise: AUC ${a}`);
});

test('the fit is the regularised optimum: plain gradient descent reaches the same weights', () => {
  const { X, y } = blobs(80, 3, 2, 1.5, 3);
  const l2 = 0.05;
  const m = fitOneVsRest(X, y, 2, undefined, { l2, tolerance: 1e-9, maxIterations: 2000 });
  assert.ok(m.converged);
  // Independent solver on the same standardised problem, class 1 against the rest: slow, simple, obviously right.
  const n = X.rows;
  const d = X.cols;
  const Z = Array.from({ length: n }, (_, i) => Array.from({ length: d }, (_, j) => (X.data[i * d + j] - m.mean[j]) / m.scale[j]));
  const w = new Array(d).fill(0);
  let b = 0;
  for (let it = 0; it < 20000; it++) {
    const gw = w.map((v) => l2 * v);
    let gb = 0;
    for (let i = 0; i < n; i++) {
      const z = b + Z[i].reduce((s, v, j) => s + v * w[j], 0);
      const r = (1 / (1 + Math.exp(-z)) - (y[i] === 1 ? 1 : 0)) / n;
      gb += r;
      for (let j = 0; j < d; j++) gw[j] += r * Z[i][j];
    }
    for (let j = 0; j < d; j++) w[j] -= 0.5 * gw[j];
    b -= 0.5 * gb;
  }
  for (let j = 0; j < d; j++) assert.ok(Math.abs(m.weights[d + j] - w[j]) < 1e-4, `w[${j}] ${m.weights[d + j]} vs ${w[j]}`);
  assert.ok(Math.abs(m.bias[1] - b) < 1e-4);
  // Scores are the log-odds of the standardised features.
  const s = decisionScores(m, X, [0]);
  assert.ok(Math.abs(s[1] - (b + Z[0].reduce((acc, v, j) => acc + v * w[j], 0))) < 1e-3);
  // Stronger L2 shrinks the weights.
  const strong = fitOneVsRest(X, y, 2, undefined, { l2: 5 });
  assert.ok(Math.hypot(...strong.weights) < Math.hypot(...m.weights));
});

test('a constant feature and more features than rows do not break the fit', () => {
  const { X, y } = blobs(40, 60, 2, 3, 4);
  for (let i = 0; i < X.rows; i++) X.data[i * X.cols + 5] = 7; // constant column
  const cv = crossValidatedAuc(X, y, 2, groupedStratifiedFolds(y, noGroups(40), 4, 1).fold);
  assert.ok(cv.auc.every((a) => a !== null && Number.isFinite(a)));
  assert.ok(cv.macroAuc! > 0.8, `d > n: ${cv.macroAuc}`);
  const sub = selectColumns(X, [5, 0]);
  assert.equal(sub.cols, 2);
  assert.equal(sub.data[0], 7);
  assert.equal(sub.data[3], X.data[X.cols]);
});

test('grouped folds never split a group, spread each stratum and are deterministic', () => {
  const rng = seededRandom(9);
  const strata: number[] = [];
  const groups: (string | undefined)[] = [];
  // stratum 0: 30 patients with 1..4 photos; stratum 1: 25 ungrouped photos; stratum 2: 3 patients only
  const add = (stratum: number, group: string | undefined) => {
    strata.push(stratum);
    groups.push(group);
  };
  for (let p = 0; p < 30; p++) for (let k = 0, m = 1 + Math.floor(rng() * 4); k < m; k++) add(0, `a${p}`);
  for (let i = 0; i < 25; i++) add(1, undefined);
  for (let p = 0; p < 3; p++) for (let k = 0; k < 3; k++) add(2, `c${p}`);
  const { fold, folds } = groupedStratifiedFolds(strata, groups, 5, 42);
  assert.equal(folds, 5);
  const foldOf = new Map<string, number>();
  groups.forEach((g, i) => {
    assert.ok(fold[i] >= 0 && fold[i] < 5);
    if (g === undefined) return;
    if (foldOf.has(g)) assert.equal(fold[i], foldOf.get(g), `group ${g} is split`);
    foldOf.set(g, fold[i]);
  });
  // Each stratum's images are spread evenly, up to one group's size.
  for (const [s, maxGroup] of [[0, 4], [1, 1]] as const) {
    const counts = new Array(5).fill(0);
    strata.forEach((v, i) => v === s && counts[fold[i]]++);
    assert.ok(Math.max(...counts) - Math.min(...counts) <= maxGroup, `stratum ${s}: ${counts}`);
  }
  // Stratum 2's three patients land in three different folds.
  assert.equal(new Set(strata.flatMap((v, i) => (v === 2 ? [fold[i]] : []))).size, 3);
  assert.deepEqual(groupedStratifiedFolds(strata, groups, 5, 42).fold, fold);
  assert.notDeepEqual(groupedStratifiedFolds(strata, groups, 5, 43).fold, fold);
  // Fewer groups than folds: as many folds as groups.
  const few = groupedStratifiedFolds([0, 0, 1, 1], ['x', 'x', 'y', 'z'], 5);
  assert.equal(few.folds, 3);
  assert.equal(few.fold[0], few.fold[1]);
  assert.throws(() => groupedStratifiedFolds([0], ['a'], 1), RangeError);
});

test('statistics by source, per-class AUCs within a source and the verdict', () => {
  const X: FeatureMatrix = { data: Float64Array.from([1, 5, 2, 5, 10, 5, 11, 5]), rows: 4, cols: 2 };
  const y = Int32Array.from([0, 0, 1, 1]);
  const [first, second] = statisticsBySource(X, ['size', 'flat'], y, ['a', 'b']);
  assert.deepEqual(first.means, [1.5, 10.5]);
  assert.equal(first.separation, 1);
  assert.equal(second.separation, 0.5);
  assert.equal(second.separates, '');

  const classes = ['diabetic retinopathy', 'normal'];
  const im = (labels: number[], graded?: number[]): LabelledImage => ({
    filename: 'x',
    path: 'x',
    labels: Uint8Array.from(labels),
    ...(graded ? { graded: Uint8Array.from(graded) } : {}),
    source: 's',
  });
  const images = [im([1, 0]), im([0, 1]), im([1, 0]), im([0, 0], [0, 1])];
  const probs = Float32Array.from([0.9, 0.1, 0.2, 0.4, 0.6, 0.3, 0.5, 0.5]);
  const [dr, normal] = classAucs(images, [0, 1, 2, 3], probs, classes, classes);
  assert.deepEqual(dr, { class: 'diabetic retinopathy', graded: 3, positives: 2, auc: 1 });
  assert.equal(normal.graded, 4);
  assert.equal(normal.auc, 2 / 3); // the positive's 0.4 beats the negatives' 0.1 and 0.3, not the ungraded-for-DR image's 0.5
  const onlyPositives = classAucs(images, [0, 2], probs, classes, classes);
  assert.equal(onlyPositives[0].skipped, 'no negatives');
  assert.equal(onlyPositives[1].skipped, 'no positives');
  assert.equal(classAucs(images, [3], probs, ['glaucoma'], classes)[0].skipped, 'not graded');

  const pred = (macro: number) => ({ features: '', dim: 2, folds: 2, groupedFolds: false, classifier: '', perSource: [], macroAuc: macro, converged: true });
  const base: Omit<AuditReport, 'verdict'> = {
    format: 'fundus-audit',
    formatVersion: 1,
    datasets: [],
    part: 'test',
    limitPerSource: null,
    seed: 0,
    sources: [],
    statistics: { preprocess: '', names: [], predictability: pred(0.98), pixelPredictability: pred(0.9), bySource: [first, second] },
    confounding: [{ class: 'normal', perSource: [], sourceAuc: 0.9, confounded: true }],
    warnings: [],
    model: null,
    notes: [],
  };
  const v = auditVerdict(base);
  assert.match(v, /source is predictable from image statistics alone \(macro AUC 0\.98; 0\.90 from the crop's pixels/);
  assert.match(v, /strongest cues: in the crop: size \(a, 1\.00\)\)/); // 'flat' does not separate: not a cue
  assert.match(v, /'normal' is confounded/);
  assert.match(auditVerdict({ ...base, statistics: { ...base.statistics, predictability: pred(0.55) }, confounding: [] }), /hardly predictable/);
});
