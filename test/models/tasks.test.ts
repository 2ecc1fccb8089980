import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CLASSES } from '../../src/data/labels.js';
import type { Dataset } from '../../src/data/labels.js';
import { balancedClassWeights, memberExamples, taskExamples, taskHead } from '../../src/models/tasks.js';

// Columns: opacity, DR, glaucoma, ME, AMD, RVO, normal.
const rows: Record<string, number[]> = {
  'dr.jpg': [0, 1, 0, 0, 0, 0, 0],
  'dr_opacity.jpg': [1, 1, 0, 0, 0, 0, 0],
  'glaucoma.jpg': [0, 0, 1, 0, 0, 0, 0],
  'dr_glaucoma.jpg': [0, 1, 1, 0, 0, 0, 0],
  'normal.jpg': [0, 0, 0, 0, 0, 0, 1],
  'opacity.jpg': [1, 0, 0, 0, 0, 0, 0],
  'rvo_me.jpg': [0, 0, 0, 1, 0, 1, 0],
};
const dataset: Dataset = {
  classes: [...CLASSES],
  imagesDir: '/x',
  images: [
    ...Object.entries(rows).map(([f, l]) => ({ filename: f, path: `/x/${f}`, labels: Uint8Array.from(l) })),
    { filename: 'unlabelled.jpg', path: '/x/unlabelled.jpg' },
  ],
};
const names = (ex: { filename: string }[]) => ex.map((e) => e.filename);

test('multilabel: every labelled image, multi-hot over the 7 classes', () => {
  const ex = taskExamples('multilabel', dataset, dataset.images);
  assert.equal(ex.length, 7);
  assert.deepEqual(Array.from(ex.find((e) => e.filename === 'rvo_me.jpg')!.target), rows['rvo_me.jpg']);
  assert.deepEqual(taskHead('multilabel'), { classes: [...CLASSES], activation: 'sigmoid' });
});

test('focus: exactly one of DR / glaucoma / normal, one-hot, softmax', () => {
  const ex = taskExamples('focus', dataset, dataset.images);
  assert.deepEqual(names(ex), ['dr.jpg', 'dr_opacity.jpg', 'glaucoma.jpg', 'normal.jpg']);
  assert.deepEqual(Array.from(ex[1].target), [1, 0, 0]);
  assert.deepEqual(Array.from(ex[3].target), [0, 0, 1]);
  assert.equal(taskHead('focus').activation, 'softmax');
});

test('focus-sigmoid keeps DR + glaucoma, multi-hot over the three', () => {
  const ex = taskExamples('focus-sigmoid', dataset, dataset.images);
  assert.deepEqual(names(ex), ['dr.jpg', 'dr_opacity.jpg', 'glaucoma.jpg', 'dr_glaucoma.jpg', 'normal.jpg']);
  assert.deepEqual(Array.from(ex[3].target), [1, 1, 0]);
  assert.equal(taskHead('focus-sigmoid').activation, 'sigmoid');
});

test('one-vs-normal member: the pathology (1) against normal (0), nothing else', () => {
  const ex = memberExamples('glaucoma', dataset, dataset.images);
  assert.deepEqual(names(ex), ['glaucoma.jpg', 'dr_glaucoma.jpg', 'normal.jpg']);
  assert.deepEqual(ex.map((e) => e.target[0]), [1, 1, 0]);
  assert.throws(() => taskExamples('one-vs-normal', dataset, dataset.images), /memberExamples/);
});

test('a dataset without a needed class is an InputError naming it', () => {
  const other: Dataset = { classes: ['cat', 'dog'], imagesDir: '/x', images: [] };
  assert.throws(() => taskExamples('focus', other, []), /no "diabetic retinopathy" column/);
});

test('balanced class weights: rare positives weigh more, softmax by class frequency', () => {
  const ex = taskExamples('multilabel', dataset, dataset.images);
  const w = balancedClassWeights(ex, 7, 'sigmoid');
  // DR: 3 positives of 7 → 7/6 and 7/8; normal: 1 of 7 → 3.5 and 7/12.
  assert.ok(Math.abs(w.positive[1] - 7 / 6) < 1e-6 && Math.abs(w.negative[1] - 7 / 8) < 1e-6);
  assert.ok(Math.abs(w.positive[6] - 3.5) < 1e-6 && Math.abs(w.negative[6] - 7 / 12) < 1e-6);
  const f = balancedClassWeights(taskExamples('focus', dataset, dataset.images), 3, 'softmax');
  assert.deepEqual(Array.from(f.positive).map((v) => +v.toFixed(4)), [+(4 / 6).toFixed(4), +(4 / 3).toFixed(4), +(4 / 3).toFixed(4)]);
});
