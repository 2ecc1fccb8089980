import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BufferPool, defaultPoolBytes } from '../../src/engine/pool.js';

const GiB = 2 ** 30;

test('the default pool limit is a quarter of the memory, between 1 and 8 GiB', () => {
  assert.equal(defaultPoolBytes(2 * GiB), GiB);
  assert.equal(defaultPoolBytes(24 * GiB), 6 * GiB);
  assert.equal(defaultPoolBytes(128 * GiB), 8 * GiB);
});

test('a released buffer is handed out again for the same length, and none is kept past the limit', () => {
  const n = 1 << 16;
  const pool = new BufferPool(4 * n * 1.5);
  const a = pool.alloc(n);
  const b = pool.alloc(n);
  pool.retain(a);
  pool.retain(b);
  pool.release(a);
  pool.release(b); // over the limit of one and a half buffers: dropped
  assert.equal(pool.stats().freeBytes, 4 * n);
  assert.equal(pool.alloc(n), a);
  assert.notEqual(pool.alloc(n), b);
});
