// evaluate on good photographs plus a truncated one, and with a model whose outputs are NaN: the real CLI, a tiny
// real model, real preprocessing, a slice of the real data.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { tempDir } from '../helpers.js';
import type { EvaluationReport } from '../../src/eval/schema.js';
import { loadModel, saveModel } from '../../src/models/io.js';
import { fundus, tinyModelDir, vietaiSlice } from './fixtures.js';

let dir: string;
let model: string;
let images: string;
let csv: string;
let broken: string;

before(async () => {
  dir = await tempDir();
  model = await tinyModelDir(join(dir, 'model'));
  const slice = await vietaiSlice(dir, 2);
  images = join(dir, 'images');
  await mkdir(images);
  for (const f of slice.filenames) await copyFile(join(slice.images, f), join(images, f));
  // the last photograph cut short, as a copy interrupted half-way leaves it
  broken = slice.filenames[slice.filenames.length - 1];
  await writeFile(join(images, broken), (await readFile(join(images, broken))).subarray(0, 3000));
  csv = slice.csv;
});

test('fundus evaluate keeps going past a truncated photograph: the others evaluated, the bad one listed, exit 3', async () => {
  const all = (await readFile(csv, 'utf8')).trim().split('\n').length - 1;
  const r = fundus('evaluate', model, '--data', csv, images, '--json', '--resamples', '20');
  assert.equal(r.status, 3, r.stderr);
  assert.match(r.stderr, new RegExp(`fundus evaluate: skipped .*${broken}: cannot decode`));
  const doc = JSON.parse(r.stdout) as EvaluationReport;
  assert.equal(doc.imageCount, all - 1);
  assert.deepEqual(doc.skipped?.map((s) => s.path), [join(images, broken)]);
  assert.match(doc.skipped![0].reason, /cannot decode/);
});

test('fundus evaluate refuses a model whose outputs are NaN with a clear error, no stack trace', async () => {
  // Finite weights (the loader refuses NaN and infinity) that overflow inside the network whatever order a kernel adds
  // in: every unit of the second layer is 3e38 x 3e38 summed (+inf), and each output takes one minus the other (NaN).
  // (Random signs of 3e38 gave finite outputs on an AVX-512 machine: whether partial sums overflow to both infinities
  // depends on the kernel's order of addition.)
  const nanModel = join(dir, 'nan-model');
  const m = await loadModel(model);
  const classes = m.metadata.classes.length;
  const dense = (units: number, kernel: number, bias: number, activation?: 'sigmoid') =>
    tfl.layers.dense({ units, activation, kernelInitializer: tfl.initializers.constant({ value: kernel }), biasInitializer: tfl.initializers.constant({ value: bias }) });
  const net = tfl.sequential({ layers: [tfl.layers.flatten({ inputShape: m.metadata.inputShape }), dense(2, 0, 3e38), dense(2, 3e38, 0)] });
  const out = dense(classes, 0, 0, 'sigmoid');
  net.add(out);
  out.setWeights([tf.tensor2d([Array(classes).fill(1), Array(classes).fill(-1)]), tf.zeros([classes])]);
  await saveModel(nanModel, net, m.metadata);
  const r = fundus('evaluate', nanModel, '--data', csv, images, '--resamples', '20');
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /nan-model: the model's outputs are not finite numbers \(NaN or infinite\) for \d+ of \d+ photographs/);
  assert.doesNotMatch(r.stderr, /RangeError|\n\s+at /);
});
