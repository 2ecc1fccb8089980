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

test('fundus data preview shows the camera-invariant preprocessing and camera augmentation, and rejects bad values', async () => {
  const out = join(await tempDir(), 'preview.png');
  const run = (...extra: string[]) =>
    spawnSync(process.execPath, [join(PROJECT_ROOT, 'bin', 'fundus.js'), 'data', 'preview', join(PROJECT_ROOT, 'samples', 'images'), '--count', '1', '--size', '64', '--channels', 'rgb', '-o', out, ...extra], {
      encoding: 'utf8',
    });
  const r = run('--mask', 'circle', '--local-mean', '--camera-augment', '--augmentations', '1');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /"mask":"circle","localMean":\{"sigma":0\.0166/);
  // the middle of the preprocessed tile's left edge: the disc touches it after the crop, the circle mask blacks it out
  const edge = async (): Promise<number[]> => {
    const { data, info } = await sharp(out).raw().toBuffer({ resolveWithObject: true });
    const o = ((24 + 6 + 32) * info.width + (6 + 70 + 1)) * info.channels;
    return [data[o], data[o + 1], data[o + 2]];
  };
  assert.deepEqual(await edge(), [0, 0, 0]);
  assert.equal(run().status, 0);
  assert.ok(Math.max(...(await edge())) > 30, 'without the mask the disc reaches the edge');
  const bad = run('--mask', 'square');
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /mask must be 'circle'/);
  assert.equal(run('--local-mean', '0.9').status, 2);
});
