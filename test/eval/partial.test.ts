import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CLASSES } from '../../src/data/labels.js';
import type { LabelledImage } from '../../src/data/labels.js';
import { labelledImage } from '../data/fixtures.js';
import { alignToModel } from '../../src/eval/dataset.js';
import { confoundingBySource, confoundingWarnings } from '../../src/eval/confounding.js';
import { evaluatePredictions } from '../../src/eval/evaluate.js';
import { tuneThresholds } from '../../src/metrics/thresholds.js';

const C = CLASSES.length;
const k = (c: string) => CLASSES.indexOf(c as (typeof CLASSES)[number]);


test('alignToModel scores each class of a partial source on its graded images; one-sided classes are left out with a note', () => {
  const g = ['diabetic retinopathy', 'macular edema'];
  const images = [
    labelledImage('a', ['diabetic retinopathy'], [...g, 'normal']),
    labelledImage('b', [], g),
    labelledImage('c', ['macular edema'], ['macular edema']),
    labelledImage('d', [], ['macular edema']),
  ];
  const set = alignToModel([...CLASSES], { classes: [...CLASSES], images, format: 'contest', csvPath: 'x.csv' });
  assert.deepEqual(set.scored.map((j) => CLASSES[j]), ['diabetic retinopathy', 'macular edema']);
  assert.ok(set.notes.some((n) => /not scored: opacity/.test(n)));
  assert.ok(set.notes.some((n) => /only positives or only negatives.*normal/.test(n)), set.notes.join(' | '));
  assert.deepEqual([0, 1, 2, 3].map((i) => set.graded![i * C + k('diabetic retinopathy')]), [1, 1, 0, 0]);
});

test('evaluatePredictions with a graded mask equals evaluating the graded images alone', () => {
  const classes = ['a', 'b'];
  // b is graded on the first 6 images only; the last 4 would flip its AUC if counted as negatives
  const labels = Uint8Array.from([1, 1, 0, 0, 1, 1, 0, 0, 1, 0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0]);
  const probs = Float32Array.from([0.9, 0.8, 0.2, 0.3, 0.7, 0.9, 0.1, 0.2, 0.8, 0.1, 0.3, 0.7, 0.6, 0.95, 0.4, 0.9, 0.9, 0.99, 0.2, 0.97]);
  const graded = Uint8Array.from(Array.from({ length: 10 }, (_, i) => [1, i < 6 ? 1 : 0]).flat());
  const opts = { classes, activation: 'sigmoid' as const, thresholds: [0.5, 0.5], bootstrap: { resamples: 50, seed: 1 } };
  const masked = evaluatePredictions({ ...opts, probs, labels, graded });
  const sub = evaluatePredictions({ ...opts, probs: probs.slice(0, 12), labels: labels.slice(0, 12), classes, scored: [1] });
  assert.equal(masked.perClass.b.auc.value, sub.perClass.b.auc.value);
  assert.deepEqual(masked.perClass.b.auc.ci, sub.perClass.b.auc.ci);
  assert.equal(masked.perClass.b.positives + masked.perClass.b.negatives, 6);
  assert.equal(masked.perClass.a.positives + masked.perClass.a.negatives, 10);
  const unmasked = evaluatePredictions({ ...opts, probs, labels });
  assert.notEqual(unmasked.perClass.b.auc.value, masked.perClass.b.auc.value);
});

test('confounding: a class whose positives come from one source is flagged, one spread evenly is not', () => {
  const images: LabelledImage[] = [];
  for (let i = 0; i < 20; i++) images.push(labelledImage(`a${i}`, i < 18 ? ['diabetic retinopathy'] : ['normal'], undefined, 'hospital'));
  for (let i = 0; i < 20; i++) images.push(labelledImage(`b${i}`, i < 2 ? ['diabetic retinopathy'] : ['normal'], undefined, 'screening'));
  for (let i = 0; i < 40; i++) if (i % 4 === 0) images[i].labels![k('glaucoma')] = 1;
  const rows = confoundingBySource(images, ['diabetic retinopathy', 'glaucoma'], [...CLASSES]);
  const dr = rows[0];
  assert.ok(dr.confounded && dr.sourceAuc! > 0.85, `${dr.sourceAuc}`);
  assert.deepEqual(dr.perSource.map((p) => [p.source, p.positives, p.graded]), [['hospital', 18, 20], ['screening', 2, 20]]);
  assert.ok(!rows[1].confounded && Math.abs(rows[1].sourceAuc! - 0.5) < 1e-9);
  const w = confoundingWarnings(rows);
  assert.equal(w.length, 1);
  assert.match(w[0], /'diabetic retinopathy'.*hospital 18\/20 \(90%\)/);
});

test('a focus model is scored on the graded negatives of a partial source, outside its training domain', () => {
  const g = ['diabetic retinopathy', 'macular edema'];
  const images = [labelledImage('a', ['diabetic retinopathy'], [...g, 'normal']), labelledImage('b', [], g), labelledImage('c', [], g)];
  const focus = ['diabetic retinopathy', 'glaucoma', 'normal'];
  const set = alignToModel(focus, { classes: [...CLASSES], images, format: 'contest', csvPath: 'x.csv' }, undefined, 'exactly-one');
  assert.deepEqual(set.images.map((im) => im.filename), ['a', 'b', 'c']);
  assert.deepEqual(set.scored, [0]);
  // a fully graded image outside the domain is still left out
  const full = [labelledImage('v', ['opacity']), labelledImage('w', ['glaucoma'])];
  const set2 = alignToModel(focus, { classes: [...CLASSES], images: full, format: 'contest', csvPath: 'x.csv' }, undefined, 'exactly-one');
  assert.deepEqual(set2.images.map((im) => im.filename), ['w']);
});

test('tuneThresholds with a graded mask tunes each class on its graded images only', () => {
  // class 1 is graded on the first 4 images; counting the other 4 as negatives would move its threshold
  const labels = Uint8Array.from([1, 1, 0, 0, 1, 1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0]);
  const probs = Float32Array.from([0.9, 0.6, 0.2, 0.3, 0.8, 0.7, 0.1, 0.2, 0.7, 0.62, 0.3, 0.64, 0.6, 0.66, 0.2, 0.5]);
  const graded = Uint8Array.from(Array.from({ length: 8 }, (_, i) => [1, i < 4 ? 1 : 0]).flat());
  const masked = tuneThresholds(labels, probs, 2, { kind: 'max-f1' }, [], graded);
  const subset = tuneThresholds(labels.slice(0, 8), probs.slice(0, 8), 2, { kind: 'max-f1' });
  assert.equal(masked.thresholds[1], subset.thresholds[1]);
  assert.notEqual(tuneThresholds(labels, probs, 2, { kind: 'max-f1' }).thresholds[1], masked.thresholds[1]);
  assert.equal(masked.perClass[1].positives, 2);
});
