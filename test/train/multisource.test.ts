import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initEngine } from '../../src/engine/index.js';
import { loadModel } from '../../src/models/io.js';
import { adversaryLambda, reverseGradient } from '../../src/train/adversary.js';
import { trainModel } from '../../src/train/train.js';
import type { TrainOptions } from '../../src/train/train.js';
import { InputError } from '../../src/util/errors.js';
import { tinyDataset } from './fixtures.js';

class SimulatedKill extends Error {}

test('the gradient-reversal layer is the identity forward and flips (and scales) the gradient', async () => {
  await initEngine();
  const x = tf.tensor2d([[1, -2], [3, 4]]);
  const y = reverseGradient(x, 0.3);
  assert.deepEqual(Array.from(y.dataSync()), [1, -2, 3, 4]);
  const g = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(reverseGradient(t as tf.Tensor2D, 0.3), tf.tensor2d([[1, 2], [3, 4]]))))(x);
  assert.deepEqual(Array.from(g.dataSync()).map((v) => +v.toFixed(6)), [-0.3, -0.6, -0.9, -1.2]);
  assert.equal(adversaryLambda(0.5, 0), 0);
  assert.ok(Math.abs(adversaryLambda(0.5, 1) - 0.5 * (2 / (1 + Math.exp(-10)) - 1)) < 1e-12);
  assert.ok(adversaryLambda(0.5, 0.2) < adversaryLambda(0.5, 0.5));
});

/** Two sources made from a VietAI slice: the contest CSV, and a second CSV grading diabetic retinopathy only. */
async function twoSources(): Promise<{ dir: string; datasets: string }> {
  const d = await tinyDataset(4);
  const rows = (await readFile(d.csv, 'utf8')).trim().split('\n').slice(1);
  const a = rows.filter((_, i) => i % 2 === 0);
  const b = rows.filter((_, i) => i % 2 === 1).map((r, i) => {
    const f = r.split(',');
    return `${f[0]},p${Math.floor(i / 2)},${i % 5 === 0 ? '' : f[2]}`;
  });
  const header = (await readFile(d.csv, 'utf8')).split('\n')[0];
  await writeFile(join(d.dir, 'a.csv'), [header, ...a].join('\n') + '\n');
  await writeFile(join(d.dir, 'b.csv'), ['filename,patient,diabetic retinopathy', ...b].join('\n') + '\n');
  const datasets = join(d.dir, 'datasets.json');
  await writeFile(
    datasets,
    JSON.stringify({
      sources: [
        { name: 'a', csv: 'a.csv', images: d.images },
        { name: 'b', csv: 'b.csv', images: d.images, groupBy: 'patient' },
      ],
    }),
  );
  return { dir: d.dir, datasets };
}

test('multi-source training with partial labels and a source adversary resumes bit-identically after a kill', async () => {
  await initEngine();
  const { dir, datasets } = await twoSources();
  const opts = (tag: string): TrainOptions => ({
    task: 'multilabel',
    model: 'small-cnn',
    datasets,
    sourceAdversarial: 0.5,
    adversaryLrScale: 5,
    balanceSources: true,
    out: join(dir, `${tag}-model`),
    runDir: join(dir, `${tag}-run`),
    imageSize: 24,
    epochs: 2,
    batchSize: 4,
    lr: 3e-3,
    warmupEpochs: 0,
    seed: 3,
    quiet: true,
    cacheDir: join(dir, 'cache'),
    checkpointBatches: 2,
  });
  const whole = await trainModel(opts('whole'));
  assert.ok(whole.history.every((h) => Number.isFinite(h.loss) && Number.isFinite(h.adv_loss)), JSON.stringify(whole.history));
  const meta = whole.metadata;
  assert.deepEqual(meta.trainingData?.sources?.map((s) => [s.name, s.graded.join('|')]), [
    ['a', 'opacity|diabetic retinopathy|glaucoma|macular edema|macular degeneration|retinal vascular occlusion|normal'],
    ['b', 'diabetic retinopathy|normal'],
  ]);
  assert.deepEqual(meta.training?.sourceAdversarial, { sources: ['a', 'b'], weight: 0.5, lrScale: 5 });
  assert.equal(meta.trainingData?.balanceSources, true);
  const split = JSON.parse(await readFile(join(whole.modelDir, 'split.json'), 'utf8'));
  assert.ok(split.parts.train.some((f: string) => f.startsWith('b/')) && split.parts.train.some((f: string) => f.startsWith('a/')));

  let batches = 0;
  await assert.rejects(
    trainModel({
      ...opts('killed'),
      onBatch: () => {
        if (++batches === 5) throw new SimulatedKill();
      },
    }),
    SimulatedKill,
  );
  const resumed = await trainModel(opts('killed'));
  const weights = async (d: string) => (await loadModel(d)).network.getWeights().map((w) => Array.from(w.dataSync()));
  assert.deepEqual(await weights(resumed.modelDir), await weights(whole.modelDir));
  assert.deepEqual(resumed.history.map((h) => h.adv_loss), whole.history.map((h) => h.adv_loss));
});

test('source-adversarial training needs two training sources', async () => {
  const d = await tinyDataset(1);
  await assert.rejects(
    trainModel({ task: 'multilabel', model: 'small-cnn', csv: d.csv, images: d.images, split: d.split, out: join(d.dir, 'm'), sourceAdversarial: 0.1, quiet: true }),
    (e: unknown) => e instanceof InputError && /at least two training sources/.test(e.message),
  );
  await assert.rejects(
    trainModel({ task: 'multilabel', model: 'small-cnn', csv: d.csv, images: d.images, split: d.split, out: join(d.dir, 'm'), adversaryLrScale: 10, quiet: true }),
    (e: unknown) => e instanceof InputError && /--adversary-lr-scale needs --source-adversarial/.test(e.message),
  );
});
