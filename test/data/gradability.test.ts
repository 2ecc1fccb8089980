import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import sharp, { type Sharp } from 'sharp';
import { PROJECT_ROOT } from '../helpers.js';
import { assessGradability, describeReasons, judgeGradability, measureGradability, UngradableError, type GradabilityMeasures } from '../../src/data/gradability.js';
import { InputError } from '../../src/util/errors.js';
import { seededRandom } from '../../src/data/random.js';

const frame = (width: number, height: number, px: (i: number) => [number, number, number]) => {
  const buf = Buffer.alloc(width * height * 3);
  for (let i = 0; i < width * height; i++) buf.set(px(i), 3 * i);
  return sharp(buf, { raw: { width, height, channels: 3 } }).png().toBuffer();
};
const uniform = (rgb: [number, number, number], side = 512) => frame(side, side, () => rgb);
const samples = join(PROJECT_ROOT, 'samples', 'images');

test('black, white, grey, noise and 1×1 frames are ungradable, each for its own reason', async () => {
  const rand = seededRandom(3);
  const cases: [string, Buffer, string[]][] = [
    ['black', await uniform([0, 0, 0]), ['too-dark', 'no-disc']],
    ['white', await uniform([255, 255, 255]), ['no-disc', 'overexposed', 'not-fundus-colour']],
    ['grey', await uniform([128, 128, 128]), ['no-disc', 'not-fundus-colour', 'no-detail']],
    ['fundus-orange', await uniform([190, 90, 40]), ['no-disc', 'no-detail']],
    ['noise', await frame(512, 512, () => [rand() * 256, rand() * 256, rand() * 256].map(Math.floor) as [number, number, number]), ['no-disc', 'noise']],
    ['1×1', await uniform([180, 90, 40], 1), ['too-small']],
  ];
  for (const [name, bytes, expected] of cases) {
    const g = await assessGradability(bytes);
    assert.equal(g.gradable, false, `${name}: ${JSON.stringify(g.measures)}`);
    for (const r of expected) assert.ok(g.reasons.includes(r as never), `${name}: ${g.reasons.join(', ')} lacks ${r}`);
  }
});

test('a flat or evenly shaded disc on black has the shape of a fundus but no retina: no-detail', async () => {
  const c = 256;
  const disc = await frame(512, 512, (i) => {
    const d = Math.hypot((i % 512) - c, Math.floor(i / 512) - c) / 240;
    if (d > 1) return [0, 0, 0];
    const k = 0.4 + 0.6 * Math.sqrt(1 - d * d);
    return [Math.round(230 * k), Math.round(120 * k), Math.round(40 * k)];
  });
  const g = await assessGradability(disc);
  assert.deepEqual(g.reasons, ['no-detail'], JSON.stringify(g.measures));
});

test('every sample fundus photograph is gradable', async () => {
  const files = (await readdir(samples)).filter((f) => f.endsWith('.jpg'));
  assert.ok(files.length >= 10);
  for (const f of files) {
    const g = await assessGradability(join(samples, f));
    assert.equal(g.gradable, true, `${f}: ${g.reasons.join(', ')} ${JSON.stringify(g.measures)}`);
  }
});

test('a sample photograph ruined on purpose: darkened, blown out, grey, cropped inside the disc', async () => {
  const photo = join(samples, '004f7ec58fad.jpg');
  const ruined: [string, Sharp, string][] = [
    ['darkened', sharp(photo).linear(0.05, 0), 'too-dark'],
    ['blown out', sharp(photo).linear(4, 0), 'overexposed'],
    ['grey', sharp(photo).grayscale(), 'not-fundus-colour'],
    ['centre crop', sharp(photo).extract({ left: 156, top: 156, width: 200, height: 200 }), 'no-disc'],
  ];
  for (const [name, s, reason] of ruined) {
    const g = await assessGradability(await s.jpeg().toBuffer());
    assert.ok(g.reasons.includes(reason as never), `${name}: ${g.reasons.join(', ')}`);
  }
});

test('each threshold decides its reason alone', async () => {
  const base: GradabilityMeasures = await measureGradability(join(samples, '004f7ec58fad.jpg'));
  assert.deepEqual(judgeGradability(base).reasons, []);
  const only = (change: Partial<GradabilityMeasures>) => judgeGradability({ ...base, ...change }).reasons;
  assert.deepEqual(only({ width: 63 }), ['too-small']);
  assert.deepEqual(only({ interiorLuma: 10 }), ['too-dark']);
  assert.deepEqual(only({ cornerLight: 0.5 }), ['no-disc']);
  assert.deepEqual(only({ fill: 0.1 }), ['no-disc']);
  assert.deepEqual(only({ fill: 0.5 }), ['field-cut']);
  assert.deepEqual(only({ saturated: 0.6 }), ['overexposed']);
  assert.deepEqual(only({ chroma: 0.01 }), ['not-fundus-colour']);
  assert.deepEqual(only({ redness: -0.5 }), ['not-fundus-colour']);
  assert.deepEqual(only({ structure: 0.001 }), ['no-detail']);
  assert.deepEqual(only({ sharpness: 0.9 }), ['noise']);
});

test('UngradableError is an InputError naming the file and the reasons in words', async () => {
  const g = await assessGradability(await uniform([0, 0, 0]));
  const e = new UngradableError(g, 'black.png');
  assert.ok(e instanceof InputError);
  assert.equal(e.message, `black.png: ungradable: ${describeReasons(g.reasons)}`);
  assert.match(e.message, /too dark/);
});

test('an unreadable file is an InputError, not a verdict', async () => {
  await assert.rejects(assessGradability(Buffer.from('not an image')), InputError);
});
