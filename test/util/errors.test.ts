import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InputError, MAX_QUOTED, truncateForMessage } from '../../src/util/errors.js';
import { collectImages } from '../../src/data/image-files.js';

test('a 50 MB file name is shortened in the message, kept whole in .file', () => {
  const name = `/photos/${'x'.repeat(50 * 1024 * 1024)}/eye.jpg`;
  const err = new InputError('no such file or folder', { file: name });
  assert.ok(err.message.length < MAX_QUOTED + 100, `message is ${err.message.length} characters`);
  assert.match(err.message, /^\/photos\/x+…\[\d+ characters\]…x+\/eye\.jpg: no such file or folder$/);
  assert.equal(err.file, name);
});

test('short names and messages are left alone', () => {
  assert.equal(new InputError('bad', { file: 'a.jpg', line: 3 }).message, 'a.jpg:3: bad');
  assert.equal(truncateForMessage('abc'), 'abc');
  const long = 'y'.repeat(10_000);
  assert.ok(truncateForMessage(long).length <= MAX_QUOTED + 40);
});

test('a command given a very long missing path answers a short error', async () => {
  const name = `/nonexistent-${'z'.repeat(200_000)}.jpg`;
  await assert.rejects(collectImages([name]), (e: unknown) => e instanceof InputError && e.message.length < 2 * MAX_QUOTED);
});
