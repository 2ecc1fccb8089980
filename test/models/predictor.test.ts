import { test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tempDir } from '../helpers.js';
import { realImages } from '../serve/fixture.js';
import { initEngine } from '../../src/engine/index.js';
import { preprocessImage } from '../../src/data/preprocess.js';
import { Predictor } from '../../src/models/predictor.js';
import { InputError } from '../../src/util/errors.js';
import { tinyModel } from '../selflearn/tiny-model.js';
import { writeFakeFundus } from '../data/fixtures.js';
import { stalledPhoto } from './stalled-photo.js';

await initEngine();

test('Predictor: batches in input order with each failure its own, the same numbers as preprocessing by hand', async () => {
  const dir = await tempDir();
  await tinyModel(join(dir, 'model'));
  const photos = realImages(3);
  const broken = join(dir, 'broken.jpg');
  await writeFile(broken, (await readFile(photos[0])).subarray(0, 2000));
  const predictor = await Predictor.load(join(dir, 'model'), { batchSize: 2, decodeWorkers: 'off' });
  try {
    const inputs = [photos[0], broken, photos[1], await readFile(photos[2])];
    const batches = [];
    for await (const b of predictor.batches(inputs)) batches.push(b);
    assert.deepEqual(batches.map((b) => [b.start, b.inputs.length]), [[0, 2], [2, 2]]);
    const outcomes = batches.flatMap((b) => b.outcomes);
    assert.deepEqual(outcomes.map((o) => o.ok), [true, false, true, true]);
    const failed = outcomes[1];
    assert.ok(!failed.ok && failed.error instanceof InputError && failed.error.message.startsWith(broken));
    assert.ok(!failed.ok && !failed.message.includes(broken), 'the message leaves the file name to the report');
    assert.equal(batches[0].images[1], undefined);

    const byHand = await Promise.all(photos.map(async (p) => (await preprocessImage(p, predictor.model.metadata.preprocess)).data));
    const expected = predictor.run(byHand);
    const k = predictor.classes.length;
    const got = [outcomes[0], outcomes[2], outcomes[3]].map((o) => (o.ok ? Array.from(o.probabilities) : []));
    got.forEach((row, i) => row.forEach((v, j) => assert.ok(Math.abs(v - expected[i * k + j]) < 1e-5, `image ${i} class ${j}`)));

    // The whole-list forms: the first failure is thrown (naming the file); records carry decisions at the thresholds.
    await assert.rejects(predictor.predict(inputs), (e: unknown) => e instanceof InputError && e.message.startsWith(broken));
    const records = await predictor.classify([photos[0]]);
    assert.equal(records[0].file, photos[0]);
    assert.deepEqual(Object.keys(records[0].probabilities), predictor.classes);
    assert.deepEqual(records[0].positive, predictor.classes.filter((c) => records[0].decisions[c]));
    const emb = await predictor.embed(photos);
    assert.deepEqual([emb.rows, emb.dim, emb.layer], [3, 64, 'gap']);
  } finally {
    await predictor.close();
  }
});

test('Predictor: an aborted signal stops the run without waiting for the batch being decoded, and leaves no tensor', { timeout: 60_000 }, async () => {
  const dir = await tempDir();
  await tinyModel(join(dir, 'model'));
  const photos = await Promise.all([1, 2, 3].map(async (seed) => {
    const p = join(dir, `fake-${seed}.jpg`);
    await writeFakeFundus(p, 96, 96, seed);
    return p;
  }));
  const stalled = stalledPhoto(dir);
  const predictor = await Predictor.load(join(dir, 'model'), { batchSize: 2, decodeWorkers: 'off' });
  try {
    // The first runs make what the predictor keeps (the inference plan's folded weights, the embedding sub-model).
    const plain = await predictor.predict(photos);
    await predictor.embed(photos);
    const tensors = tf.memory().numTensors;
    // The second batch's first photo never finishes reading: the run is stopped while it decodes.
    const controller = new AbortController();
    const stop = new Error('client gone');
    const seen: number[] = [];
    const started = Date.now();
    await assert.rejects(
      predictor.predict([photos[0], photos[1], stalled.path, photos[2]], {
        signal: controller.signal,
        onProgress: (done) => {
          seen.push(done);
          setTimeout(() => controller.abort(stop), 20);
        },
      }),
      (e: unknown) => e === stop,
    );
    assert.deepEqual(seen, [2], 'the first batch ran, the stalled one was not waited for');
    assert.ok(Date.now() - started < 10_000, `stopped after ${Date.now() - started} ms`);
    assert.equal(tf.memory().numTensors, tensors, 'no tensor left behind');

    // Embedding stops the same way; without a reason of the caller's, an AbortError.
    const second = new AbortController();
    await assert.rejects(
      predictor.embed([photos[0], photos[1], stalled.path], { signal: second.signal, onProgress: () => setTimeout(() => second.abort(), 20) }),
      (e: unknown) => e instanceof DOMException && e.name === 'AbortError',
    );
    assert.equal(tf.memory().numTensors, tensors);

    // Already aborted: nothing runs, not even decoding; the network pass checks it before each batch too.
    const done = AbortSignal.abort(stop);
    await assert.rejects(predictor.predict(photos, { signal: done }), (e: unknown) => e === stop);
    assert.throws(() => predictor.run([new Float32Array(32 * 32 * 3)], { signal: done }), (e: unknown) => e === stop);
    assert.equal(tf.memory().numTensors, tensors);
    // And a signal that never aborts changes nothing.
    assert.deepEqual(await predictor.predict(photos, { signal: new AbortController().signal }), plain);
  } finally {
    await stalled.release();
    await predictor.close();
  }
});
