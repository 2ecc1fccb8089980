// Camera-invariant preprocessing (issue #16): the circle mask, Graham's local-mean normalisation, their cache keys,
// validation, and that prediction, training and the cache see the same bytes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { loadPreprocessed, settingsKey } from '../../src/data/cache.js';
import { CIRCLE_MASK_RADIUS, circleMask, localMeanNormalize } from '../../src/data/camera.js';
import { blurDirect, blurRecursive, maskedGaussianBlur } from '../../src/data/gauss.js';
import {
  DEFAULT_PREPROCESS,
  describePreprocess,
  normalizeBytes,
  preprocessImage,
  preprocessToBytes,
  validatePreprocessSettings,
} from '../../src/data/preprocess.js';
import type { PreprocessSettings } from '../../src/data/preprocess.js';
import { InputError } from '../../src/util/errors.js';
import { tempDir, VIETAI_DIR } from '../helpers.js';
import { fakeFundus } from './fixtures.js';

const RGB: PreprocessSettings = { ...DEFAULT_PREPROCESS, size: 64, channels: 'rgb', normalize: { mean: [0.5], std: [0.25] } };
const PHOTO = join(VIETAI_DIR, 'train', 'c24a1b14d253.jpg');

/** A uniform RGB photo (no dark border) as PNG. */
const flatPhoto = (w: number, h: number, r: number, g: number, b: number) =>
  sharp({ create: { width: w, height: h, channels: 3, background: { r, g, b } } }).png().toBuffer();

test('the circle mask blacks out exactly the outside of the standard circle and keeps the inside', async () => {
  const photo = await flatPhoto(80, 80, 200, 150, 100);
  for (const resize of ['area', 'lanczos3'] as const) {
    const s: PreprocessSettings = { ...RGB, crop: false, resize };
    const plain = await preprocessToBytes(photo, s);
    const masked = await preprocessToBytes(photo, { ...s, mask: 'circle' });
    const circle = circleMask(64);
    let inside = 0;
    for (let i = 0; i < 64 * 64; i++) {
      for (let c = 0; c < 3; c++) {
        const v = masked.pixels[3 * i + c];
        if (circle[i]) assert.equal(v, plain.pixels[3 * i + c], `${resize}: pixel ${i} inside the circle changed`);
        else assert.equal(v, 0, `${resize}: pixel ${i} outside the circle is ${v}`);
      }
      inside += circle[i];
    }
    // a circle of radius 0.95 × 32 px, centred in the square
    const area = Math.PI * (CIRCLE_MASK_RADIUS * 32) ** 2;
    assert.ok(Math.abs(inside - area) / area < 0.01, `${inside} pixels inside, expected about ${area.toFixed(0)}`);
    assert.equal(circle[32 * 64 + 32], 1);
    assert.equal(circle[32 * 64 + 1], 0, 'the outer 5 % of the radius is cut');
    assert.equal(circle[32 * 64 + 3], 1);
    // symmetric: a left-right or up-down mirror gives the same mask
    for (let y = 0; y < 64; y++) for (let x = 0; x < 64; x++) assert.equal(circle[y * 64 + x], circle[(63 - y) * 64 + (63 - x)]);
  }
});

test('the circle mask also removes a real photo’s rim, and the green output is the masked green', async () => {
  const s: PreprocessSettings = { ...RGB, mask: 'circle' };
  const rgb = await preprocessToBytes(PHOTO, s);
  const green = await preprocessToBytes(PHOTO, { ...s, channels: 'green' });
  const circle = circleMask(64);
  for (let i = 0; i < 64 * 64; i++) {
    assert.equal(green.pixels[i], rgb.pixels[3 * i + 1]);
    if (!circle[i]) assert.equal(rgb.pixels[3 * i] + rgb.pixels[3 * i + 1] + rgb.pixels[3 * i + 2], 0);
  }
  // the unmasked photo has bright pixels where the mask cuts (its disc reaches the square's sides)
  const plain = await preprocessToBytes(PHOTO, RGB);
  let cut = 0;
  for (let i = 0; i < 64 * 64; i++) if (!circle[i] && plain.pixels[3 * i + 1] > 30) cut++;
  assert.ok(cut > 20, `only ${cut} bright pixels outside the circle`);
});

/** A flat disc of `value` (all channels) on black, with an exact 0/1 mask: size×size RGB. */
function flatDisc(size: number, radius: number, value: number): { rgb: Uint8Array; inside: Uint8Array } {
  const rgb = new Uint8Array(size * size * 3);
  const inside = new Uint8Array(size * size);
  const c = size / 2;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      if (Math.hypot(x + 0.5 - c, y + 0.5 - c) > radius) continue;
      inside[y * size + x] = 1;
      rgb.fill(value, (y * size + x) * 3, (y * size + x) * 3 + 3);
    }
  }
  return { rgb, inside };
}

test('local mean: a flat disc becomes 128 up to its rim (normalised convolution), a small lesion stands out, the border stays 0', () => {
  const size = 96;
  const { rgb, inside } = flatDisc(size, 44, 150);
  const sigma = size / 60;
  const out = localMeanNormalize(rgb, size, 3, inside, sigma);
  for (let i = 0; i < size * size; i++) {
    for (let c = 0; c < 3; c++) {
      const v = out[3 * i + c];
      if (inside[i]) assert.ok(Math.abs(v - 128) <= 1, `disc pixel ${i} is ${v}, not 128`);
      else assert.equal(v, 0);
    }
  }
  // Without the normalisation the border's black pulls the rim's local mean down and lights the rim up: the test
  // above would fail on it. Check that it really would (the rim pixel at the disc's right edge).
  const rim = 48 * size + 48 + 43;
  assert.equal(inside[rim], 1);
  const ones = new Uint8Array(size * size).fill(1);
  const naive = maskedGaussianBlur(rgb, size, size, 3, ones, sigma); // blur over everything, border included
  assert.ok(4 * (150 - naive[3 * rim]) + 128 > 200, `naive rim value ${4 * (150 - naive[3 * rim]) + 128}`);

  // a 3×3 bright lesion (200 on 120) at the centre: a strong local contrast, gone a few σ away
  const lesion = flatDisc(size, 44, 120);
  for (let y = 47; y < 50; y++) for (let x = 47; x < 50; x++) lesion.rgb.fill(200, (y * size + x) * 3, (y * size + x) * 3 + 3);
  const l = localMeanNormalize(lesion.rgb, size, 3, lesion.inside, sigma);
  const at = (x: number, y: number) => l[(y * size + x) * 3 + 1];
  assert.ok(at(48, 48) > 240, `lesion centre ${at(48, 48)}`);
  assert.ok(Math.abs(at(48 + 12, 48) - 128) <= 2, `12 px away: ${at(48 + 12, 48)}`);
  assert.ok(at(48 + 3, 48) < 128, 'the lesion’s surround is darker than neutral (the local mean includes the lesion)');
});

test('local mean removes a colour cast and an exposure difference: two cameras’ flat discs give the same bytes', () => {
  const size = 64;
  const a = flatDisc(size, 30, 90);
  const b = flatDisc(size, 30, 0);
  for (let i = 0; i < size * size; i++) if (b.inside[i]) b.rgb.set([210, 120, 40], 3 * i); // warmer and brighter
  const sigma = size / 60;
  assert.deepEqual(localMeanNormalize(a.rgb, size, 3, a.inside, sigma), localMeanNormalize(b.rgb, size, 3, b.inside, sigma));
});

test('the recursive Gaussian matches the direct one closely, and both keep a flat image flat', () => {
  for (const sigma of [2, 3.73, 8.5]) {
    const n = 121;
    const direct = new Float32Array(n * n);
    direct[60 * n + 60] = 1;
    const recursive = direct.slice();
    blurDirect(direct, n, n, 1, sigma);
    blurRecursive(recursive, n, n, 1, sigma);
    const peak = direct[60 * n + 60];
    let maxDiff = 0;
    let sum = 0;
    for (let i = 0; i < n * n; i++) {
      maxDiff = Math.max(maxDiff, Math.abs(direct[i] - recursive[i]));
      sum += recursive[i];
    }
    assert.ok(maxDiff / peak < 0.045, `σ ${sigma}: largest difference ${(maxDiff / peak).toFixed(3)} of the peak`);
    assert.ok(Math.abs(sum - 1) < 1e-3, `σ ${sigma}: gain ${sum}`);
    // the same weights over a masked flat image: exactly flat
    const { rgb, inside } = flatDisc(n, 55, 77);
    const m = maskedGaussianBlur(rgb, n, n, 3, inside, sigma);
    for (let i = 0; i < n * n; i++) if (inside[i]) assert.ok(Math.abs(m[3 * i] - 77) < 1e-3);
  }
});

test('preprocessImage equals normalizeBytes(preprocessToBytes) and the cache for mask and local mean (the addon fast path is not taken)', async () => {
  const dir = await tempDir();
  const file = join(dir, 'photo.jpg');
  await copyFile(PHOTO, file);
  const variants: PreprocessSettings[] = [
    { ...RGB, mask: 'circle' },
    { ...RGB, localMean: { sigma: 1 / 60 } },
    { ...RGB, mask: 'circle', localMean: { sigma: 1 / 60 } },
    { ...RGB, channels: 'green', normalize: { mean: [0.5], std: [0.25] }, mask: 'circle', localMean: { sigma: 1 / 30 } },
    { ...RGB, resize: 'lanczos3', mask: 'circle', localMean: { sigma: 1 / 60 } },
    { ...RGB, clahe: true, mask: 'circle' },
  ];
  for (const s of variants) {
    const bytes = await preprocessToBytes(file, s);
    const direct = await preprocessImage(file, s);
    assert.deepEqual(direct.data, normalizeBytes(bytes.pixels, bytes.channels, s), JSON.stringify(s));
    const [cached] = await loadPreprocessed([file], s, { cacheDir: join(dir, 'cache') });
    const [again] = await loadPreprocessed([file], s, { cacheDir: join(dir, 'cache') }); // read back from disk
    assert.deepEqual(cached, direct.data);
    assert.deepEqual(again, direct.data);
  }
  // local mean changes the bytes, and centres the disc near 128
  const lm = await preprocessToBytes(file, { ...RGB, mask: 'circle', localMean: { sigma: 1 / 60 } });
  const circle = circleMask(64);
  let sum = 0;
  let n = 0;
  for (let i = 0; i < 64 * 64; i++) {
    if (!circle[i] || lm.pixels[3 * i + 1] === 0) continue;
    sum += lm.pixels[3 * i + 1];
    n++;
  }
  assert.ok(Math.abs(sum / n - 128) < 12, `mean of the disc ${sum / n}`);
});

test('a disc clipped at the top and bottom keeps its padded black bands under the mask, and local mean does not light their edges up', async () => {
  // a wide photo whose disc (radius 70) is clipped by the frame (height 110): the crop pads it back to a square
  const photo = await fakeFundus(200, 110, 100, 55, 70);
  const s: PreprocessSettings = { ...RGB, mask: 'circle', localMean: { sigma: 1 / 60 } };
  const b = await preprocessToBytes(photo, s);
  const circle = circleMask(64);
  // inside the circle but above the clipped edge: black (the mask does not remove the bands; they stay black)
  const topCentre = 4 * 64 + 32;
  assert.equal(circle[topCentre], 1);
  assert.equal(b.pixels[3 * topCentre + 1], 0);
  // just below the clipped edge the disc is near neutral, not a bright line (the bands are left out of the mean)
  let row = 0;
  while (b.pixels[3 * (row * 64 + 32) + 1] === 0) row++;
  const edgeRow = Array.from({ length: 20 }, (_, k) => b.pixels[3 * ((row + 1) * 64 + 22 + k) + 1]);
  const mean = edgeRow.reduce((a, v) => a + v, 0) / edgeRow.length;
  assert.ok(mean < 170, `row below the clipped edge averages ${mean}`);
});

test('cache keys: unchanged for settings without the new fields, distinct with them', () => {
  // values computed by settingsKey before mask and localMean existed
  assert.equal(settingsKey({ ...DEFAULT_PREPROCESS }), 'ce59c70e8374b7f0');
  assert.equal(
    settingsKey({ crop: true, size: 224, channels: 'rgb', clahe: false, normalize: { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] }, resize: 'area' }),
    'cfac496ced8bd2f1',
  );
  assert.equal(settingsKey({ ...DEFAULT_PREPROCESS, clahe: true, resize: undefined }), 'ff80b8303cfaaf64');
  // explicit undefined is the same as absent (a model read from JSON never has it, an object spread may)
  assert.equal(settingsKey({ ...DEFAULT_PREPROCESS, mask: undefined, localMean: undefined }), 'ce59c70e8374b7f0');
  const keys = new Set([
    settingsKey(DEFAULT_PREPROCESS),
    settingsKey({ ...DEFAULT_PREPROCESS, mask: 'circle' }),
    settingsKey({ ...DEFAULT_PREPROCESS, localMean: { sigma: 1 / 60 } }),
    settingsKey({ ...DEFAULT_PREPROCESS, localMean: { sigma: 1 / 30 } }),
    settingsKey({ ...DEFAULT_PREPROCESS, mask: 'circle', localMean: { sigma: 1 / 60 } }),
  ]);
  assert.equal(keys.size, 5);
  // normalisation still does not matter (applied on load)
  assert.equal(
    settingsKey({ ...DEFAULT_PREPROCESS, mask: 'circle', normalize: { mean: [0.3], std: [0.2] } }),
    settingsKey({ ...DEFAULT_PREPROCESS, mask: 'circle' }),
  );
});

test('validation: bad mask and localMean values are InputErrors, old settings stay valid', () => {
  const bad: [unknown, RegExp][] = [
    [{ mask: 'square' }, /mask must be 'circle'/],
    [{ mask: true }, /mask must be 'circle'/],
    [{ localMean: 0.02 }, /localMean must be an object/],
    [{ localMean: null }, /localMean must be an object/],
    [{ localMean: {} }, /localMean.sigma is a fraction of the input side/],
    [{ localMean: { sigma: 0 } }, /localMean.sigma/],
    [{ localMean: { sigma: -0.1 } }, /localMean.sigma/],
    [{ localMean: { sigma: 0.5 } }, /in \(0, 0.25\]/],
    [{ localMean: { sigma: Number.NaN } }, /localMean.sigma/],
    [{ localMean: { sigma: '1/60' } }, /localMean.sigma/],
  ];
  for (const [extra, msg] of bad) {
    assert.throws(
      () => validatePreprocessSettings({ ...DEFAULT_PREPROCESS, ...(extra as object) } as PreprocessSettings, 'model x'),
      (e: unknown) => e instanceof InputError && msg.test(e.message) && e.message.startsWith('model x:'),
      JSON.stringify(extra),
    );
  }
  validatePreprocessSettings({ ...DEFAULT_PREPROCESS });
  validatePreprocessSettings({ crop: true, size: 227, channels: 'green', clahe: false, normalize: { mean: [0.5], std: [0.25] } });
  validatePreprocessSettings({ ...DEFAULT_PREPROCESS, mask: 'circle', localMean: { sigma: 0.25 } });
});

test('describePreprocess says what the settings do', () => {
  assert.equal(
    describePreprocess({ ...RGB, size: 224, mask: 'circle', localMean: { sigma: 1 / 60 } }),
    'disc crop, 224 px RGB, area resize, circle mask (r = 0.95 of half the side), Graham local-mean subtraction (σ = 1/60 of the side, 3.7 px), normalised with mean [0.5] and std [0.25]',
  );
  assert.match(describePreprocess(DEFAULT_PREPROCESS), /^disc crop, 227 px green channel, area resize, normalised/);
});
