// Camera augmentation (issue #16): blur/sharpening, colour temperature, noise, low resolution and JPEG
// re-compression; off by default without disturbing the seeded augmentation stream.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import sharp from 'sharp';
import { applyAugment, augment, CAMERA_AUGMENT, DEFAULT_AUGMENT, drawAugmentParams, validateAugmentSettings } from '../../src/data/augment.js';
import type { AugmentParams } from '../../src/data/augment.js';
import { quantTable, simulateJpeg } from '../../src/data/jpeg-sim.js';
import { DEFAULT_PREPROCESS, preprocessToBytes } from '../../src/data/preprocess.js';
import { seededRandom } from '../../src/data/random.js';
import { InputError } from '../../src/util/errors.js';
import { VIETAI_DIR } from '../helpers.js';

/** A synthetic normalised disc (mean 0.5, std 0.25): textured inside radius size/2 − 2, black (−2) outside. */
function disc(size: number, channels: number): Float32Array {
  const img = new Float32Array(size * size * channels);
  const c0 = (size - 1) / 2;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      for (let c = 0; c < channels; c++) {
        img[(y * size + x) * channels + c] =
          Math.hypot(x - c0, y - c0) > size / 2 - 2 ? -2 : Math.sin(x * 0.3 + c) * Math.cos(y * 0.2) * 0.8 + c * 0.1;
      }
    }
  }
  return img;
}

const NORM = { mean: [0.5], std: [0.25] };
const BLACK = -2; // (0 - 0.5) / 0.25
const NONE: AugmentParams = { hflip: false, vflip: false, angle: 0, zoom: 1, dx: 0, dy: 0, brightness: 0, contrast: 1, gamma: 1 };

test('camera augmentation off: the seeded default stream gives the same images as before it existed', () => {
  // sha256 prefixes of three default augmentations and the generator's next value, recorded before camera
  // augmentation was added (green and RGB)
  const expected: Record<number, string> = { 1: '98fabf5b1b415738', 3: '7de9d853d51161b9' };
  for (const settings of [{}, { blur: 0, temperature: 0, noise: 0, downscale: 0, jpeg: 0 }]) {
    for (const ch of [1, 3]) {
      const rng = seededRandom(11);
      const h = createHash('sha256');
      for (let i = 0; i < 3; i++) h.update(Buffer.from(augment(disc(32, ch), 32, ch, rng, settings).buffer));
      h.update(String(rng()));
      assert.equal(h.digest('hex').slice(0, 16), expected[ch], `${ch} channel(s), ${JSON.stringify(settings)}`);
    }
  }
  // the defaults draw exactly the 9 numbers they always drew
  const a = seededRandom(5);
  drawAugmentParams(a, DEFAULT_AUGMENT);
  const b = seededRandom(5);
  for (let i = 0; i < 9; i++) b();
  assert.equal(a(), b());
});

test('camera fields draw after the old ones: the geometry and photometry of a seed do not change when they are on', () => {
  const off = drawAugmentParams(seededRandom(3), DEFAULT_AUGMENT);
  const on = drawAugmentParams(seededRandom(3), { ...DEFAULT_AUGMENT, ...CAMERA_AUGMENT });
  for (const k of ['hflip', 'vflip', 'angle', 'zoom', 'dx', 'dy', 'brightness', 'contrast', 'gamma'] as const) assert.equal(on[k], off[k]);
  const rng = seededRandom(9);
  for (let i = 0; i < 300; i++) {
    const p = drawAugmentParams(rng, { ...DEFAULT_AUGMENT, ...CAMERA_AUGMENT });
    assert.ok(Math.abs(p.blur!) <= CAMERA_AUGMENT.blur!);
    assert.ok(Math.abs(p.temperature!) <= CAMERA_AUGMENT.temperature!);
    assert.ok(p.noise! >= 0 && p.noise! <= CAMERA_AUGMENT.noise!);
    assert.ok(p.resolution! >= 1 - CAMERA_AUGMENT.downscale! && p.resolution! <= 1);
    assert.ok(Number.isInteger(p.jpegQuality) && p.jpegQuality! >= CAMERA_AUGMENT.jpeg! && p.jpegQuality! <= 95);
  }
});

test('each camera augmentation changes the disc when on, keeps the border exactly black, and is deterministic', () => {
  const size = 48;
  const cases: [string, Partial<AugmentParams>][] = [
    ['blur', { blur: 0.8 }],
    ['sharpen', { blur: -0.8 }],
    ['temperature', { temperature: 0.1 }],
    ['noise', { noise: 0.02, noiseSeed: 12345 }],
    ['low resolution', { resolution: 0.5 }],
    ['jpeg', { jpegQuality: 30 }],
  ];
  for (const ch of [1, 3]) {
    const img = disc(size, ch);
    const base = applyAugment(img, size, ch, NONE, NORM);
    assert.deepEqual(base, img);
    for (const [name, cam] of cases) {
      const out = applyAugment(img, size, ch, { ...NONE, ...cam }, NORM);
      assert.deepEqual(applyAugment(img, size, ch, { ...NONE, ...cam }, NORM), out, `${name} is deterministic`);
      let changed = 0;
      for (let i = 0; i < img.length; i++) {
        if (img[i] === BLACK) assert.equal(out[i], BLACK, `${name}: border value ${i} became ${out[i]}`);
        else if (Math.abs(out[i] - img[i]) > 1e-3) changed++;
        assert.ok(out[i] >= BLACK - 1e-6 && out[i] <= 2 + 1e-6, `${name}: value ${out[i]} outside [0, 1] in pixel space`);
      }
      if (name === 'temperature' && ch === 1) assert.equal(changed, 0, 'white balance is a no-op on one channel');
      else assert.ok(changed > img.length / 10, `${name} (${ch} ch) changed only ${changed} values`);
    }
  }
});

test('camera augmentation does what it says: blur smooths, sharpening and noise roughen, temperature warms, low resolution loses detail', () => {
  const size = 48;
  const img = disc(size, 3);
  // add fine detail (a period of about 5 px) for blur and sharpening to act on
  for (let i = 0; i < img.length; i++) if (img[i] !== BLACK) img[i] += 0.4 * Math.sin(i * 0.41);
  const px = (a: Float32Array, i: number) => a[i] * 0.25 + 0.5;
  /** Mean squared difference between horizontal neighbours inside the disc: a measure of fine detail. */
  const detail = (a: Float32Array) => {
    let s = 0;
    for (let y = 12; y < 36; y++) for (let x = 12; x < 36; x++) s += (px(a, (y * size + x + 1) * 3 + 1) - px(a, (y * size + x) * 3 + 1)) ** 2;
    return s;
  };
  const base = detail(img);
  const run = (cam: Partial<AugmentParams>) => applyAugment(img, size, 3, { ...NONE, ...cam }, NORM);
  assert.ok(detail(run({ blur: 1 })) < 0.8 * base);
  assert.ok(detail(run({ blur: -1 })) > 1.2 * base);
  assert.ok(detail(run({ noise: 0.05, noiseSeed: 1 })) > 1.2 * base);
  const warm = run({ temperature: 0.1 });
  const i = (24 * size + 24) * 3;
  assert.ok(px(warm, i) > px(img, i) && px(warm, i + 2) < px(img, i + 2) && warm[i + 1] === img[i + 1]);
  // a fine checkerboard disappears at half resolution
  const checker = disc(size, 1);
  for (let y = 10; y < 38; y++) for (let x = 10; x < 38; x++) checker[y * size + x] = (x + y) % 2 ? 1.5 : -1.5;
  const low = applyAugment(checker, size, 1, { ...NONE, resolution: 0.5 }, NORM);
  for (let y = 14; y < 34; y++) for (let x = 14; x < 34; x++) assert.ok(Math.abs(low[y * size + x]) < 0.3, `(${x}, ${y}) = ${low[y * size + x]}`);
  // noise has the std it was given
  const flat = disc(size, 1).fill(0);
  const noisy = applyAugment(flat, size, 1, { ...NONE, noise: 0.03, noiseSeed: 7 }, NORM);
  let s2 = 0;
  for (const v of noisy) s2 += (v * 0.25) ** 2;
  const std = Math.sqrt(s2 / noisy.length);
  assert.ok(Math.abs(std - 0.03) < 0.002, `noise std ${std}`);
});

test('augment with the camera preset is deterministic per seed and changes the image', () => {
  const img = disc(40, 3);
  const a = augment(img, 40, 3, seededRandom(1), { ...CAMERA_AUGMENT, normalize: NORM });
  const b = augment(img, 40, 3, seededRandom(1), { ...CAMERA_AUGMENT, normalize: NORM });
  const plain = augment(img, 40, 3, seededRandom(1), { normalize: NORM });
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, plain);
});

test('bad camera settings are InputErrors', () => {
  const bad: Record<string, number>[] = [{ noise: -0.1 }, { noise: 1 }, { blur: Number.NaN }, { downscale: 0.95 }, { jpeg: 2.5 }, { jpeg: 96 }, { temperature: 0.9 }];
  for (const s of bad) {
    assert.throws(() => validateAugmentSettings(s), InputError, JSON.stringify(s));
    assert.throws(() => augment(disc(16, 1), 16, 1, seededRandom(1), s), InputError);
  }
  validateAugmentSettings(CAMERA_AUGMENT);
  validateAugmentSettings(DEFAULT_AUGMENT);
});

test('JPEG quantisation tables scale with quality as libjpeg scales them', () => {
  const q50 = quantTable([16, 11, 99, 1], 50);
  assert.deepEqual(Array.from(q50), [16, 11, 99, 1]);
  assert.deepEqual(Array.from(quantTable([16, 11, 99, 1], 100)), [1, 1, 1, 1]);
  assert.deepEqual(Array.from(quantTable([16, 11, 99, 1], 10)), [80, 55, 255, 5]); // scale 500 %, capped at 255
  assert.deepEqual(Array.from(quantTable([16, 11, 99, 1], 90)), [3, 2, 20, 1]); // scale 20 %
});

/** Peak signal-to-noise ratio of two [0, 1] images, dB. */
function psnr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] - b[i]) ** 2;
  return 10 * Math.log10(1 / (s / a.length));
}

/** A smooth image: gentle gradients, no 8×8 structure of its own. */
function smooth(size: number, channels: number): Float32Array {
  const a = new Float32Array(size * size * channels);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      for (let c = 0; c < channels; c++) a[(y * size + x) * channels + c] = 0.5 + 0.3 * Math.sin(x / 11 + c) * Math.cos(y / 13 - c);
    }
  }
  return a;
}

/** Mean |difference| between horizontal neighbours across 8×8 block edges over that within blocks (≈ 1: no blocking). */
function blockiness(a: Float32Array, size: number, channels: number): number {
  let across = 0;
  let within = 0;
  let na = 0;
  let nw = 0;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x + 1 < size; x++) {
      const d = Math.abs(a[(y * size + x + 1) * channels] - a[(y * size + x) * channels]);
      if (x % 8 === 7) {
        across += d;
        na++;
      } else {
        within += d;
        nw++;
      }
    }
  }
  return across / na / (within / nw);
}

test('JPEG simulation: near identity at quality 95, 8×8 blocking at quality 10, RGB and luminance only', () => {
  for (const ch of [1, 3]) {
    const img = smooth(64, ch);
    const q95 = simulateJpeg(img, 64, 64, ch, 95);
    assert.ok(psnr(img, q95) > 40, `${ch} ch q95 PSNR ${psnr(img, q95).toFixed(1)}`);
    assert.ok(blockiness(q95, 64, ch) < 1.5, `${ch} ch q95 blockiness ${blockiness(q95, 64, ch)}`);
    const q10 = simulateJpeg(img, 64, 64, ch, 10);
    assert.ok(psnr(img, q10) < psnr(img, q95) - 5);
    assert.ok(blockiness(q10, 64, ch) > 2, `${ch} ch q10 blockiness ${blockiness(q10, 64, ch).toFixed(2)}`);
    assert.ok(blockiness(img, 64, ch) < 1.2);
  }
  // odd sizes are padded as libjpeg pads
  const odd = simulateJpeg(smooth(37, 3), 37, 37, 3, 80);
  assert.equal(odd.length, 37 * 37 * 3);
  assert.ok(psnr(smooth(37, 3), odd) > 30);
});

test('JPEG simulation matches sharp’s real JPEG round trip at the same quality', async () => {
  const size = 128;
  const b = await preprocessToBytes(join(VIETAI_DIR, 'train', 'c24a1b14d253.jpg'), { ...DEFAULT_PREPROCESS, size, channels: 'rgb' });
  const img = Float32Array.from(b.pixels, (v) => v / 255);
  for (const q of [10, 40, 75, 95]) {
    const jpeg = await sharp(Buffer.from(b.pixels), { raw: { width: size, height: size, channels: 3 } }).jpeg({ quality: q }).toBuffer();
    const real = Float32Array.from(await sharp(jpeg).raw().toBuffer(), (v) => v / 255);
    const sim = simulateJpeg(img, size, size, 3, q);
    const [pr, ps] = [psnr(img, real), psnr(img, sim)];
    assert.ok(Math.abs(pr - ps) < 1, `quality ${q}: sharp ${pr.toFixed(2)} dB, simulated ${ps.toFixed(2)} dB`);
    // and pixel by pixel, not just on average: well under a level apart
    let diff = 0;
    for (let i = 0; i < img.length; i++) diff += Math.abs(real[i] - sim[i]);
    assert.ok((diff / img.length) * 255 < 1, `quality ${q}: mean difference ${((diff / img.length) * 255).toFixed(2)} levels`);
  }
});
