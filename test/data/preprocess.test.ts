import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readdir, utimes, writeFile, copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { applyAugment, augment, drawAugmentParams, DEFAULT_AUGMENT } from '../../src/data/augment.js';
import { loadPreprocessed } from '../../src/data/cache.js';
import {
  DEFAULT_PREPROCESS,
  denormalize,
  findDiscSquare,
  preprocessImage,
  toPhotoCoordinates,
  validatePreprocessSettings,
} from '../../src/data/preprocess.js';
import type { PreprocessSettings } from '../../src/data/preprocess.js';
import { seededRandom } from '../../src/data/random.js';
import { InputError } from '../../src/util/errors.js';
import { tempDir, VIETAI_DIR } from '../helpers.js';
import { fakeFundus } from './fixtures.js';

const S: PreprocessSettings = { ...DEFAULT_PREPROCESS, size: 64 };

test('the crop finds an off-centre disc and pads it to a square', async () => {
  // a 300x200 photo with a disc of radius 60 centred at (110, 90)
  const photo = await fakeFundus(300, 200, 110, 90, 60);
  const p = await preprocessImage(photo, S);
  const g = p.geometry;
  assert.equal(g.width, 300);
  assert.equal(g.height, 200);
  assert.ok(Math.abs(g.side - 121) <= 3, `side ${g.side}`);
  assert.ok(Math.abs(g.x + g.side / 2 - 110) <= 2 && Math.abs(g.y + g.side / 2 - 90) <= 2, JSON.stringify(g));
  // the disc's centre maps back to the photo's disc centre
  const [cx, cy] = toPhotoCoordinates(g, p.size, p.size / 2, p.size / 2);
  assert.ok(Math.abs(cx - 110) <= 2 && Math.abs(cy - 90) <= 2);
  // corners of the square input are border (black), the centre is bright
  const px = denormalize(p.data, 1, S);
  assert.ok(px[0] < 20 && px[px.length - 1] < 20);
  assert.ok(px[(32 * 64 + 32)] > 60);
});

test('a disc clipped at the top and bottom keeps its width and is padded, not stretched', () => {
  const W = 200;
  const H = 120;
  const raw = new Uint8Array(W * H * 3);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) if (Math.hypot(x - 100, y - 60) < 90) raw[(y * W + x) * 3] = 150;
  const g = findDiscSquare(raw, W, H, 3);
  assert.ok(Math.abs(g.side - 180) <= 2, JSON.stringify(g));
  assert.ok(g.y < 0 && g.y + g.side > H, 'the square extends past the top and bottom');
});

test('an all-black photo falls back to the whole frame', () => {
  const g = findDiscSquare(new Uint8Array(50 * 40 * 3), 50, 40, 3);
  assert.deepEqual(g, { width: 50, height: 40, x: 0, y: -5, side: 50 });
});

test('green and RGB outputs, normalisation and CLAHE on a real photo', async () => {
  const file = join(VIETAI_DIR, 'train', 'c24a1b14d253.jpg');
  const g = await preprocessImage(file, S);
  assert.equal(g.channels, 1);
  assert.equal(g.data.length, 64 * 64);
  const rgbSettings: PreprocessSettings = { ...S, channels: 'rgb', normalize: { mean: [0.4, 0.3, 0.2], std: [0.2, 0.2, 0.2] } };
  const rgb = await preprocessImage(file, rgbSettings);
  assert.equal(rgb.channels, 3);
  assert.equal(rgb.data.length, 64 * 64 * 3);
  // the green channel of the RGB output is the green output, up to normalisation
  const gp = denormalize(g.data, 1, S);
  const rp = denormalize(rgb.data, 3, rgbSettings);
  let maxDiff = 0;
  for (let i = 0; i < gp.length; i++) maxDiff = Math.max(maxDiff, Math.abs(gp[i] - rp[i * 3 + 1]));
  assert.ok(maxDiff <= 1, `max diff ${maxDiff}`);
  const mean = g.data.reduce((a, b) => a + b, 0) / g.data.length;
  assert.ok(mean > -2 && mean < 2);
  const c = await preprocessImage(file, { ...S, clahe: true });
  assert.notDeepEqual(Array.from(c.data.slice(2000, 2100)), Array.from(g.data.slice(2000, 2100)));
});

test('undecodable input is an InputError naming the file; bad settings are refused', async () => {
  const dir = await tempDir();
  const bytes = await readFile(join(VIETAI_DIR, 'train', 'c24a1b14d253.jpg'));
  const truncated = join(dir, 'cut.jpg');
  await writeFile(truncated, bytes.subarray(0, 3000));
  await assert.rejects(preprocessImage(truncated, S), (e: unknown) => e instanceof InputError && e.file === truncated);
  await assert.rejects(preprocessImage(Buffer.from('hello'), S), InputError);
  assert.throws(() => validatePreprocessSettings({ ...S, channels: 'rgb', normalize: { mean: [0, 0], std: [1, 1] } }), /normalize.mean needs 1 or 3 values/);
  assert.throws(() => validatePreprocessSettings({ ...S, size: 3 }), /size/);
});

test('greyscale and PNG inputs work', async () => {
  const grey = await sharp({ create: { width: 80, height: 80, channels: 3, background: '#777' } }).greyscale().png().toBuffer();
  const p = await preprocessImage(grey, { ...S, channels: 'rgb', normalize: { mean: [0], std: [1] } });
  assert.equal(p.channels, 3);
  assert.ok(Math.abs(p.data[0] - 0x77 / 255) < 0.02);
});

test('augment is deterministic per seed, keeps shape, and changes the image', async () => {
  const p = await preprocessImage(join(VIETAI_DIR, 'train', 'c24a1b14d253.jpg'), S);
  const a = augment(p.data, 64, 1, seededRandom(7));
  const b = augment(p.data, 64, 1, seededRandom(7));
  const c = augment(p.data, 64, 1, seededRandom(8));
  assert.equal(a.length, p.data.length);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  assert.notDeepEqual(a, p.data);
});

test('augment: identity parameters change nothing, a flip mirrors exactly, the border stays black', () => {
  const size = 8;
  const img = Float32Array.from({ length: size * size }, (_, i) => (i % 7) / 7);
  const none = { hflip: false, vflip: false, angle: 0, zoom: 1, dx: 0, dy: 0, brightness: 0, contrast: 1, gamma: 1 };
  const norm = { mean: [0], std: [1] };
  assert.deepEqual(applyAugment(img, size, 1, none, norm), img);
  const flipped = applyAugment(img, size, 1, { ...none, hflip: true }, norm);
  for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) assert.ok(Math.abs(flipped[y * size + x] - img[y * size + size - 1 - x]) < 1e-6);
  const black = new Float32Array(size * size); // a black image stays black under photometric jitter
  const jittered = applyAugment(black, size, 1, { ...none, brightness: 0.2, contrast: 1.3, gamma: 0.7 }, norm);
  assert.ok(jittered.every((v) => v === 0));
  // rotation fills uncovered corners with black in normalised units: (0 - 0.5) / 0.25 = -2
  const ones = new Float32Array(size * size).fill(2);
  const rotated = applyAugment(ones, size, 1, { ...none, angle: Math.PI / 4 }, { mean: [0.5], std: [0.25] });
  assert.ok(Math.abs(rotated[0] + 2) < 1e-6);
  assert.ok(Math.abs(rotated[(size / 2) * size + size / 2] - 2) < 1e-6);
});

test('augmentation parameters stay inside their ranges', () => {
  const rng = seededRandom(3);
  for (let i = 0; i < 200; i++) {
    const p = drawAugmentParams(rng, DEFAULT_AUGMENT);
    assert.ok(Math.abs(p.angle) <= (DEFAULT_AUGMENT.rotation * Math.PI) / 180 + 1e-9);
    assert.ok(p.zoom >= 1 - DEFAULT_AUGMENT.scale && p.zoom <= 1 + DEFAULT_AUGMENT.scale);
    assert.ok(p.gamma >= 1 / (1 + DEFAULT_AUGMENT.gamma) - 1e-9 && p.gamma <= 1 + DEFAULT_AUGMENT.gamma + 1e-9);
  }
});

test('the disk cache returns what preprocessing returns, and notices a changed file', async () => {
  const dir = await tempDir();
  const cacheDir = join(dir, 'cache');
  const files = ['c24a1b14d253.jpg', '9ee905a41651.jpg'];
  const paths = files.map((f) => join(dir, f));
  for (const f of files) await copyFile(join(VIETAI_DIR, 'train', f), join(dir, f));
  const settings = { ...S, normalize: { mean: [0.3], std: [0.2] } };
  const direct = await Promise.all(paths.map((p) => preprocessImage(p, settings)));
  const first = await loadPreprocessed(paths, settings, { cacheDir });
  const second = await loadPreprocessed(paths, settings, { cacheDir });
  assert.deepEqual(first, direct.map((d) => d.data));
  assert.deepEqual(second, first);
  const keyDirs = await readdir(join(cacheDir, 'preprocess'));
  assert.equal(keyDirs.length, 1);
  // other normalisation, same cached bytes; other size, another cache folder
  await loadPreprocessed(paths, { ...settings, normalize: { mean: [0.5], std: [0.25] } }, { cacheDir });
  await loadPreprocessed(paths, { ...settings, size: 32 }, { cacheDir });
  assert.equal((await readdir(join(cacheDir, 'preprocess'))).length, 2);
  // replace the first file by the second one: the cache must not serve the old pixels
  await copyFile(paths[1], paths[0]);
  await utimes(paths[0], new Date(), new Date(Date.now() + 5000));
  const third = await loadPreprocessed(paths, settings, { cacheDir });
  assert.deepEqual(third[0], first[1]);
});

test('the disk cache is keyed on content: a photo replaced by another of the same size and time is not served stale', async () => {
  const dir = await tempDir();
  const cacheDir = join(dir, 'cache');
  const [a, b] = await Promise.all(['c24a1b14d253.jpg', '9ee905a41651.jpg'].map((f) => readFile(join(VIETAI_DIR, 'train', f))));
  // the same length: a JPEG decoder ignores bytes after the end-of-image marker
  const size = Math.max(a.length, b.length);
  const pad = (buf: Buffer) => Buffer.concat([buf, Buffer.alloc(size - buf.length)]);
  const photo = join(dir, 'eye.jpg');
  await writeFile(photo, pad(a));
  const when = new Date('2024-01-02T03:04:05Z');
  await utimes(photo, when, when);
  const settings = { ...S, normalize: { mean: [0.3], std: [0.2] } };
  const [before] = await loadPreprocessed([photo], settings, { cacheDir });
  await writeFile(photo, pad(b));
  await utimes(photo, when, when);
  const [after] = await loadPreprocessed([photo], settings, { cacheDir });
  const direct = await preprocessImage(photo, settings);
  assert.notDeepEqual(after, before);
  assert.deepEqual(after, direct.data);
});

test('CLAHE stretches a low-contrast disc, leaves the border black and a flat image almost unchanged', async () => {
  const { claheChannel } = await import('../../src/data/clahe.js');
  const W = 64;
  const src = new Uint8Array(W * W);
  const mask = new Uint8Array(W * W);
  for (let y = 0; y < W; y++) {
    for (let x = 0; x < W; x++) {
      if (Math.hypot(x - 32, y - 32) > 28) continue;
      mask[y * W + x] = 1;
      src[y * W + x] = 100 + ((x + y) % 10); // values 100..109
    }
  }
  const out = claheChannel(src, W, W, mask);
  const inside = Array.from(out).filter((_, i) => mask[i]);
  assert.ok(Math.max(...inside) - Math.min(...inside) > 60, `range ${Math.min(...inside)}..${Math.max(...inside)}`);
  assert.ok(Array.from(out).every((v, i) => mask[i] || v === 0));
  const flat = claheChannel(new Uint8Array(W * W).fill(128), W, W, undefined);
  assert.ok(flat.every((v) => Math.abs(v - 128) <= 1));
});
