import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { cropByArea, DEFAULT_PREPROCESS, normalizeBytes, preprocessImage, preprocessToBytes } from '../../src/data/preprocess.js';
import type { PreprocessSettings } from '../../src/data/preprocess.js';
import { decodeBesideInference, decodeRgbScaled, nativeJpegAvailable } from '../../src/data/jpeg.js';
import { resampleSquareArea } from '../../src/data/resample.js';
import { InputError } from '../../src/util/errors.js';
import { VIETAI_DIR } from '../helpers.js';
import { fakeFundus } from './fixtures.js';

const PHOTOS = ['c24a1b14d253.jpg', '0007e7645554.jpg', '001e39f3c4e7.jpg'];
const photo = (name: string) => readFile(join(VIETAI_DIR, 'train', name));
const AREA: PreprocessSettings = { ...DEFAULT_PREPROCESS, channels: 'rgb', resize: 'area' };

test('the JPEG addon is built (setup installs libjpeg-turbo)', { skip: process.env.FUNDUS_NATIVE === '0' }, () => {
  assert.ok(nativeJpegAvailable(), 'native/build/Release/fundus_jpeg.node missing: run npm run build:native');
});

test('native crop + area resample gives the same bytes and geometry as the JavaScript one', async () => {
  const inputs = [...(await Promise.all(PHOTOS.map(photo))), await fakeFundus(300, 200, 110, 90, 60), await fakeFundus(97, 131, 50, 60, 40)];
  for (const input of inputs) {
    // Sizes that take each path of the native horizontal pass: 2, 3, 4 and other fixed tap counts (upsampling,
    // the usual downsampling) and the general walk (5 px: over 8 source pixels per output pixel).
    for (const size of [128, 224, 227, 61, 400, 9, 5]) {
      for (const crop of [true, false]) {
        const s = { ...AREA, size, crop };
        const native = await cropByArea(input, s);
        const js = await cropByArea(input, s, true);
        assert.deepEqual(native.geometry, js.geometry, `size ${size} crop ${crop}`);
        assert.equal(Buffer.compare(Buffer.from(native.rgb), Buffer.from(js.rgb)), 0, `pixels differ at size ${size} crop ${crop}`);
      }
    }
  }
});

test('native fundus search counts bright pixels exactly: sparse dots near the 2 % line threshold', async () => {
  // Rows and columns with a few bright dots sit right at the threshold that decides where the fundus begins, so a
  // miscounted pixel moves the crop; widths cover the vector loop, its scalar tail, and images too narrow for it.
  let state = 7;
  const random = () => ((state = (Math.imul(state, 1103515245) + 12345) >>> 0) / 2 ** 32);
  for (const [width, height, density] of [[150, 100, 0.01], [211, 64, 0.012], [16, 40, 0.05], [97, 131, 0.015]] as const) {
    const raw = Buffer.alloc(width * height * 3);
    for (let i = 0; i < width * height; i++) if (random() < density) raw.fill(230, 3 * i, 3 * i + 3);
    const jpeg = await sharp(raw, { raw: { width, height, channels: 3 } }).jpeg({ quality: 100, chromaSubsampling: '4:4:4' }).toBuffer();
    const s = { ...AREA, size: 32, crop: true };
    const native = await cropByArea(jpeg, s);
    const js = await cropByArea(jpeg, s, true);
    assert.deepEqual(native.geometry, js.geometry, `${width}x${height}`);
  }
});

test('scaled decoding: the smallest DCT scale that keeps the short side, close to what sharp decodes', async () => {
  const bytes = await photo(PHOTOS[0]);
  for (const [min, side] of [[192, 256], [128, 128], [300, 512], [1000, 512], [1, 64]] as const) {
    const im = await decodeRgbScaled(bytes, min);
    assert.equal(im.width, side, `minShortSide ${min}`);
    assert.equal(im.fullWidth, 512);
    const viaSharp = await decodeRgbScaled(bytes, min, true);
    assert.equal(viaSharp.width, side);
    let sum = 0;
    for (let i = 0; i < im.data.length; i++) sum += Math.abs(im.data[i] - viaSharp.data[i]);
    // mozjpeg inside sharp and libjpeg-turbo round their scaled IDCTs differently: close, not equal
    assert.ok(sum / im.data.length < 1.5, `mean difference ${sum / im.data.length}`);
  }
});

test('area resampling: a flat image stays flat, overhanging windows are padded black, exact halving averages 2x2', () => {
  const flat = new Uint8Array(10 * 10 * 3).fill(200);
  const out = resampleSquareArea(flat, 10, 10, 3, { x: 0, y: 0, side: 10 }, 7);
  assert.ok(out.every((v) => v === 200));
  const padded = resampleSquareArea(flat, 10, 10, 3, { x: -5, y: 0, side: 10 }, 2);
  assert.deepEqual([...padded.subarray(0, 6)], [0, 0, 0, 200, 200, 200]);
  const ramp = Uint8Array.from({ length: 4 * 4 }, (_, i) => i * 10);
  const half = resampleSquareArea(ramp, 4, 4, 1, { x: 0, y: 0, side: 4 }, 2);
  assert.deepEqual([...half], [25, 45, 105, 125]);
});

test('rotated JPEGs go through sharp and come out upright; bad data is an InputError naming the file', async () => {
  const upright = await fakeFundus(200, 120, 100, 60, 55);
  // stored rotated a quarter turn with orientation 6 (rotate 90° clockwise to view): the viewer sees 200x120
  const stored = await sharp(upright).rotate(-90).withMetadata({ orientation: 6 }).jpeg().toBuffer();
  const p = await preprocessImage(stored, { ...AREA, size: 64 });
  assert.equal(p.geometry.width, 200);
  assert.equal(p.geometry.height, 120);
  const bytes = await photo(PHOTOS[0]);
  await assert.rejects(preprocessImage(bytes.subarray(0, 3000), AREA), InputError);
  await assert.rejects(preprocessImage(Buffer.from([0xff, 0xd8, 0xff, 0x00, 1, 2, 3]), AREA), InputError);
  await assert.rejects(preprocessImage('/nonexistent/photo.jpg', AREA), (e: unknown) => e instanceof InputError && e.file === '/nonexistent/photo.jpg');
});

test('the float32 network input made on the thread pool equals normalising the preprocessed bytes', async () => {
  const bytes = await photo(PHOTOS[1]);
  for (const s of [
    { ...AREA, size: 128 },
    { ...AREA, size: 96, channels: 'green' as const, normalize: { mean: [0.45], std: [0.2] } },
    { ...AREA, size: 64, normalize: { mean: [0.4, 0.5, 0.6], std: [0.2, 0.25, 0.3] }, crop: false },
  ]) {
    const direct = await preprocessImage(bytes, s);
    const b = await preprocessToBytes(bytes, s);
    assert.equal(direct.channels, b.channels);
    assert.deepEqual(direct.geometry, b.geometry);
    assert.deepEqual(direct.data, normalizeBytes(b.pixels, b.channels, s));
  }
});

test('decoding beside inference: the thread-pool threads that decoded run at nice 19 afterwards', { skip: process.platform !== 'linux' || !nativeJpegAvailable() }, async () => {
  // /proc/self/task/<tid>/stat: field 19 is the nice value (fields counted after the parenthesised name).
  const niceOfThreads = async () =>
    Promise.all(
      (await readdir('/proc/self/task')).map(async (tid) => {
        const stat = await readFile(`/proc/self/task/${tid}/stat`, 'utf8');
        return { tid: Number(tid), nice: Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]) };
      }),
    );
  const bytes = await photo(PHOTOS[2]);
  assert.ok((await niceOfThreads()).every((t) => t.nice !== 19));
  decodeBesideInference();
  await Promise.all(Array.from({ length: 8 }, () => preprocessImage(bytes, AREA)));
  const threads = await niceOfThreads();
  assert.ok(threads.some((t) => t.nice === 19), `thread nice values: ${threads.map((t) => t.nice).join(' ')}`);
  assert.equal(threads.find((t) => t.tid === process.pid)?.nice, 0, 'the main thread keeps its priority');
});
