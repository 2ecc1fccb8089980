import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { preprocessImage } from '../../src/data/preprocess.js';
import { DecodePool } from '../../src/data/decode-pool.js';
import { InputError } from '../../src/util/errors.js';
import { realImages } from '../serve/fixture.js';

const settings = { crop: true, size: 64, channels: 'rgb' as const, clahe: false, normalize: { mean: [0.5], std: [0.25] } };

test('worker threads preprocess exactly like the calling thread, and report unreadable photos as input errors', async () => {
  const pool = new DecodePool(2);
  try {
    const [path] = realImages(1);
    const bytes = await readFile(path);
    const [fromPath, fromBuffer, local] = await Promise.all([pool.preprocess(path, settings), pool.preprocess(bytes, settings), preprocessImage(path, settings)]);
    assert.deepEqual(fromPath.geometry, local.geometry);
    assert.deepEqual(Array.from(fromPath.data), Array.from(local.data));
    assert.deepEqual(Array.from(fromBuffer.data), Array.from(local.data));
    await assert.rejects(pool.preprocess(bytes.subarray(0, 3000), settings), (e: unknown) => e instanceof InputError && /decode/.test(e.message));
  } finally {
    await pool.close();
  }
});
