import { test } from 'node:test';
import assert from 'node:assert/strict';
import { auc, blurImage, randomOrder, relevanceOrder } from '../../src/explain/faithfulness.js';
import { seededRandom } from '../../src/data/random.js';

test('auc is the trapezoidal area over [0, 1]', () => {
  assert.equal(auc([1, 1, 1]), 1);
  assert.equal(auc([1, 0]), 0.5);
  assert.ok(Math.abs(auc([1, 0.5, 0.25, 0]) - (0.75 + 0.375 + 0.125) / 3) < 1e-12);
});

test('relevance order: hottest pixels first (upsampled from the feature map), ties in random order', () => {
  const rand = seededRandom(1);
  // 2x2 map, hot in the bottom-right cell, over a 4x4 image: the 4 bottom-right pixels come first.
  const order = relevanceOrder({ width: 2, height: 2, data: Float32Array.from([0, 0, 0, 1]) }, 4, rand);
  assert.equal(order[0], 15);
  assert.deepEqual([...order.slice(0, 4)].sort((a, b) => a - b), [10, 11, 14, 15]);
  // All-zero map: a permutation, and not the scan order.
  const flat = relevanceOrder({ width: 4, height: 4, data: new Float32Array(16) }, 4, rand);
  assert.deepEqual([...flat].sort((a, b) => a - b), Array.from({ length: 16 }, (_, i) => i));
  assert.notDeepEqual([...flat], Array.from({ length: 16 }, (_, i) => i));
  const r = randomOrder(4, rand);
  assert.deepEqual([...r].sort((a, b) => a - b), Array.from({ length: 16 }, (_, i) => i));
});

test('the insertion baseline blur keeps the mean and flattens detail', () => {
  const size = 32;
  const data = Float32Array.from({ length: size * size }, (_, i) => ((i + Math.floor(i / size)) % 2 ? 1 : -1));
  const b = blurImage({ data, size, channels: 1 });
  const mean = (a: Float32Array) => a.reduce((s, v) => s + v, 0) / a.length;
  assert.ok(Math.abs(mean(b) - mean(data)) < 0.05);
  assert.ok(Math.max(...b.map(Math.abs)) < 0.2, 'a checkerboard blurs to almost flat');
});
