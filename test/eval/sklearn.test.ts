// The metric functions against scikit-learn 1.2.1 on committed fixtures (benchmarks/fixtures/make_metric_fixtures.py).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../helpers.js';
import {
  argmaxRows,
  averagePrecision,
  binaryCounts,
  column,
  confusionMatrix,
  countsAtThreshold,
  f1Score,
  meanF1,
  multilabelConfusionMatrix,
  precisionRecallCurve,
  precisionScore,
  recallScore,
  reliabilityCurve,
  rocAuc,
  rocCurve,
  specificityScore,
} from '../../src/metrics/metrics.js';

type Answer = { value: number; warned: boolean } | { error: string };
interface BinaryCase {
  name: string;
  y: number[];
  scores: number[];
  threshold: number;
  yPred: number[];
  rocAuc: Answer;
  averagePrecision: Answer;
  f1: Answer;
  precision: Answer;
  recall: Answer;
  specificity: Answer;
  confusion: number[][];
  rocCurve?: { fpr: number[]; tpr: number[]; thresholds: number[] };
  prCurve?: { precision: number[]; recall: number[]; thresholds: number[] };
  weights?: number[];
  weightedRocAuc?: Answer;
  weightedAveragePrecision?: Answer;
}

const fixtures = JSON.parse(readFileSync(join(PROJECT_ROOT, 'test', 'fixtures', 'sklearn-metrics', 'metrics.json'), 'utf8'));
const TOL = 1e-12;

function close(actual: number | null, expected: number, what: string): void {
  assert.notEqual(actual, null, `${what}: got null, sklearn says ${expected}`);
  assert.ok(Math.abs((actual as number) - expected) <= TOL, `${what}: ${actual} vs sklearn ${expected}`);
}

/** Where sklearn raises or warns that a value is ill-defined (and substitutes 0), we must answer null; else agree. */
function agrees(actual: number | null, answer: Answer, what: string): void {
  if ('error' in answer || answer.warned) assert.equal(actual, null, `${what}: sklearn says ill-defined, got ${actual}`);
  else close(actual, answer.value, what);
}

function closeArrays(actual: number[], expected: number[], what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length ${actual.length} vs sklearn ${expected.length}`);
  actual.forEach((v, i) => close(v, expected[i], `${what}[${i}]`));
}

assert.equal(fixtures.sklearn, '1.2.1');

for (const c of fixtures.binary as BinaryCase[]) {
  test(`binary metrics match sklearn: ${c.name}`, () => {
    agrees(rocAuc(c.y, c.scores), c.rocAuc, 'roc_auc_score');
    agrees(averagePrecision(c.y, c.scores), c.averagePrecision, 'average_precision_score');
    agrees(f1Score(c.y, c.yPred), c.f1, 'f1_score');
    agrees(precisionScore(c.y, c.yPred), c.precision, 'precision_score');
    agrees(recallScore(c.y, c.yPred), c.recall, 'recall_score');
    agrees(specificityScore(c.y, c.yPred), c.specificity, 'specificity');
    const k = countsAtThreshold(c.y, c.scores, c.threshold);
    assert.deepEqual([[k.tn, k.fp], [k.fn, k.tp]], c.confusion);
    assert.deepEqual(binaryCounts(c.y, c.yPred), k);
    const roc = rocCurve(c.y, c.scores);
    if (c.rocCurve) {
      assert.ok(roc);
      closeArrays(roc.fpr, c.rocCurve.fpr, 'fpr');
      closeArrays(roc.tpr, c.rocCurve.tpr, 'tpr');
      closeArrays(roc.thresholds, c.rocCurve.thresholds, 'roc thresholds');
    } else assert.equal(roc, null);
    const pr = precisionRecallCurve(c.y, c.scores);
    if (c.prCurve) {
      assert.ok(pr);
      closeArrays(pr.precision, c.prCurve.precision, 'precision curve');
      closeArrays(pr.recall, c.prCurve.recall, 'recall curve');
      closeArrays(pr.thresholds, c.prCurve.thresholds, 'pr thresholds');
    } else assert.equal(pr, null);
    if (c.weights) {
      agrees(rocAuc(c.y, c.scores, c.weights), c.weightedRocAuc!, 'weighted roc_auc_score');
      agrees(averagePrecision(c.y, c.scores, c.weights), c.weightedAveragePrecision!, 'weighted average_precision_score');
    }
  });
}

test('the fixtures cover ties, one-class labels and perfect separation', () => {
  const names = (fixtures.binary as BinaryCase[]).map((c) => c.name);
  for (const n of ['ties', 'all-tied', 'perfect', 'no-positives', 'no-negatives', 'random-weighted']) assert.ok(names.includes(n), n);
  // a tie-aware AUC is not the same number as a naive rank sum: the fixture must be able to tell them apart
  const ties = (fixtures.binary as BinaryCase[]).find((c) => c.name === 'ties')!;
  assert.ok(new Set(ties.scores).size < ties.scores.length / 5);
});

test('multi-label metrics match sklearn per class', () => {
  const m = fixtures.multilabel;
  const C = m.thresholds.length as number;
  const Y = Float64Array.from((m.y as number[][]).flat());
  const P = Float64Array.from((m.probs as number[][]).flat());
  const Yp = Float64Array.from((m.yPred as number[][]).flat());
  assert.deepEqual(multilabelConfusionMatrix(Y, Yp, C), m.multilabelConfusion);
  for (let k = 0; k < C; k++) {
    const y = column(Y, C, k);
    const p = column(P, C, k);
    const expectedAuc = m.rocAucPerClass[k] as number | null;
    if (expectedAuc === null) assert.equal(rocAuc(y, p), null);
    else close(rocAuc(y, p), expectedAuc, `auc class ${k}`);
    const yHat = column(Yp, C, k);
    const hasPositives = y.some((v) => v === 1);
    if (hasPositives) {
      close(averagePrecision(y, p), m.averagePrecisionPerClass[k], `ap class ${k}`);
      close(f1Score(y, yHat), m.f1PerClass[k], `f1 class ${k}`);
      close(recallScore(y, yHat), m.recallPerClass[k], `recall class ${k}`);
    } else {
      assert.equal(averagePrecision(y, p), null);
      assert.equal(recallScore(y, yHat), null);
    }
  }
  // our mean leaves out the class without positives when nothing is predicted there; sklearn counts it as 0
  const ours = meanF1(Y, P, C, m.thresholds);
  const definedF1 = (m.f1PerClass as number[]).filter((_, k) => column(Y, C, k).some((v) => v === 1) || column(Yp, C, k).some((v) => v === 1));
  close(ours, definedF1.reduce((a, b) => a + b, 0) / definedF1.length, 'mean F1');
  if (definedF1.length === C) close(ours, m.f1Macro, 'macro F1');
});

test('softmax confusion matrix matches sklearn', () => {
  const m = fixtures.multiclass;
  const C = (m.probs as number[][])[0].length;
  const pred = argmaxRows(Float64Array.from((m.probs as number[][]).flat()), C);
  assert.deepEqual(Array.from(pred), m.yPred);
  assert.deepEqual(confusionMatrix(m.yTrue, pred, C), m.confusion);
});

test('reliability curve matches calibration_curve, bin edges included', () => {
  const c = fixtures.calibration;
  const bins = reliabilityCurve(c.y, c.probs, c.nBins);
  closeArrays(bins.map((b) => b.fractionPositive), c.probTrue, 'prob_true');
  closeArrays(bins.map((b) => b.meanPredicted), c.probPred, 'prob_pred');
  assert.equal(bins.reduce((a, b) => a + b.count, 0), c.y.length);
});
