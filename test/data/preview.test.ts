import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import sharp from 'sharp';
import { PROJECT_ROOT, tempDir } from '../helpers.js';

test('fundus data preview writes a PNG grid: a row per image, original + preprocessed + augmentations', async () => {
  const out = join(await tempDir(), 'preview.png');
  const r = spawnSync(
    process.execPath,
    [join(PROJECT_ROOT, 'bin', 'fundus.js'), 'data', 'preview', join(PROJECT_ROOT, 'samples', 'images'), '--count', '2', '--size', '64', '--augmentations', '2', '-o', out],
    { encoding: 'utf8' },
  );
  assert.equal(r.status, 0, r.stderr);
  const meta = await sharp(out).metadata();
  assert.equal(meta.format, 'png');
  assert.equal(meta.width, 4 * 64 + 5 * 6);
  assert.equal(meta.height, 24 + 2 * 64 + 3 * 6);
  const bad = spawnSync(process.execPath, [join(PROJECT_ROOT, 'bin', 'fundus.js'), 'data', 'preview', join(PROJECT_ROOT, 'README.md'), '-o', out], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /README\.md: cannot decode the image/);
});
