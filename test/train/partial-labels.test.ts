import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { CLASSES } from '../../src/data/labels.js';
import { initEngine } from '../../src/engine/index.js';
import type { Dataset, LabelledImage } from '../../src/data/labels.js';
import { labelledImage } from '../data/fixtures.js';
import { balanceSources, balancedClassWeights, taskExamples } from '../../src/models/tasks.js';
import { splitGraded, weightedSigmoidCrossEntropy } from '../../src/train/losses.js';
import { scoreProbabilities } from '../../src/train/scores.js';

const k = (c: string) => CLASSES.indexOf(c as (typeof CLASSES)[number]);


const dataset = (images: LabelledImage[]): Dataset => ({ classes: [...CLASSES], images, imagesDir: '/x' });

test('taskExamples: ungraded classes are NaN targets; the softmax focus task takes one graded positive as its class', () => {
  const ims = [
    labelledImage('v.jpg', ['glaucoma']),
    labelledImage('m1.jpg', ['diabetic retinopathy'], ['diabetic retinopathy', 'macular edema', 'normal']),
    labelledImage('m0.jpg', [], ['diabetic retinopathy', 'macular edema']),
  ];
  const ml = taskExamples('multilabel', dataset(ims), ims);
  assert.deepEqual(Array.from(ml[0].target), [0, 0, 1, 0, 0, 0, 0]);
  assert.ok(Number.isNaN(ml[1].target[k('glaucoma')]) && ml[1].target[k('diabetic retinopathy')] === 1 && ml[1].target[k('normal')] === 0);
  assert.ok(Number.isNaN(ml[2].target[k('normal')]));
  const focus = taskExamples('focus', dataset(ims), ims);
  // DR-free but not graded for glaucoma or normal: cannot be placed among three exclusive classes
  assert.deepEqual(focus.map((e) => [e.filename, Array.from(e.target)]), [['v.jpg', [0, 1, 0]], ['m1.jpg', [1, 0, 0]]]);
  const fs = taskExamples('focus-sigmoid', dataset(ims), ims);
  assert.deepEqual(fs.map((e) => e.filename), ['v.jpg', 'm1.jpg']);
  assert.ok(Number.isNaN(fs[1].target[1]));
});

test('the masked loss ignores ungraded entries and equals the plain loss when all are graded', async () => {
  await initEngine();
  const targets = Float32Array.from([1, NaN, 0, 0, 1, NaN]);
  const { targets: filled, mask } = splitGraded(targets);
  assert.deepEqual(Array.from(filled), [1, 0, 0, 0, 1, 0]);
  assert.deepEqual(Array.from(mask!), [1, 0, 1, 1, 1, 0]);
  assert.equal(splitGraded(Float32Array.of(1, 0)).mask, undefined);
  const y = tf.tensor2d(filled, [2, 3]);
  const m = tf.tensor2d(mask!, [2, 3]);
  const w = tf.ones([3]) as tf.Tensor1D;
  const sw = tf.ones([2]) as tf.Tensor1D;
  const loss = (logits: number[], withMask: boolean) =>
    weightedSigmoidCrossEntropy(y, tf.tensor2d(logits, [2, 3]), w, w, sw, withMask ? m : undefined).dataSync()[0];
  // the prediction at an ungraded entry does not move the masked loss at all
  assert.equal(loss([2, -9, -1, 0, 3, 9], true), loss([2, 9, -1, 0, 3, -9], true));
  assert.notEqual(loss([2, -9, -1, 0, 3, 9], false), loss([2, 9, -1, 0, 3, -9], false));
  // by hand: mean over 3 classes per example of the graded terms, then over examples
  const sp = (z: number) => Math.log1p(Math.exp(z));
  const expected = ((sp(-2) + sp(-1)) / 3 + (sp(0) + sp(-3)) / 3) / 2;
  assert.ok(Math.abs(loss([2, 5, -1, 0, 3, 5], true) - expected) < 1e-6);
  const ones = tf.ones([2, 3]) as tf.Tensor2D;
  assert.equal(weightedSigmoidCrossEntropy(y, tf.tensor2d([1, 2, 3, 4, 5, 6], [2, 3]), w, w, sw, ones).dataSync()[0], loss([1, 2, 3, 4, 5, 6], false));
});

test('class weights and scores count only graded entries', () => {
  const ex = (t: number[], source = 'a') => ({ path: '', filename: `${source}/x`, target: Float32Array.from(t), weight: 1 });
  const examples = [ex([1, NaN]), ex([0, NaN]), ex([0, 1]), ex([0, 0])];
  const w = balancedClassWeights(examples, 2, 'sigmoid');
  // class 0: 1 positive of 4 graded; class 1: 1 of 2 graded (not 1 of 4)
  assert.deepEqual(Array.from(w.positive), [2, 1]);
  assert.deepEqual(Array.from(w.negative), [Math.fround(4 / 6), 1]);
  const probs = Float32Array.from([0.9, 0.1, 0.2, 0.9, 0.1, 0.8, 0.3, 0.2]);
  const s = scoreProbabilities(Float32Array.from(examples.flatMap((e) => [...e.target])), probs, 2, 0.5);
  assert.equal(s.auc[0], 1);
  assert.equal(s.auc[1], 1, 'the two ungraded rows (whose probabilities would make it 0.5) are left out');
  // balancing sources: each source's total weight is the same, the mean weight kept
  const bal = balanceSources([ex([1, 0], 'a'), ex([0, 0], 'a'), ex([0, 0], 'a'), ex([1, 1], 'b')], (e) => e.filename.split('/')[0]);
  assert.deepEqual(bal.map((e) => e.weight.toFixed(6)), ['0.666667', '0.666667', '0.666667', '2.000000']);
});
