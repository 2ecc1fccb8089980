/**
 * Packs the VietAI photos, preprocessed exactly as fundus does (fundus crop, area resize, RGB), into JPEG files small
 * enough to travel to a GPU machine for the PyTorch peer study (benchmarks/gpu/recipe_study.py).
 *   npx tsx benchmarks/gpu/pack.ts <out-dir> <size> <quality> [data-dir] [split.json]
 */
import { mkdir, writeFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { preprocessToBytes, DEFAULT_PREPROCESS } from '../../src/data/preprocess.js';
import { readDataset } from '../../src/data/csv.js';
import { mapLimit } from '../../src/data/cache.js';

const [out, sizeArg, qualityArg, dataDir = '../shared/data/vietai', splitPath = 'splits/vietai.json'] = process.argv.slice(2);
if (!out || !sizeArg || !qualityArg) throw new Error('usage: pack.ts <out-dir> <size> <quality> [data-dir] [split.json]');
const size = Number(sizeArg);
const quality = Number(qualityArg);
const dataset = await readDataset(join(dataDir, 'train.csv'), join(dataDir, 'train'));
const split = JSON.parse(await readFile(splitPath, 'utf8')) as { parts: Record<string, string[]> };
const partOf = new Map<string, string>();
for (const [part, files] of Object.entries(split.parts)) for (const f of files) partOf.set(f, part);
await mkdir(join(out, 'images'), { recursive: true });
const settings = { ...DEFAULT_PREPROCESS, size, channels: 'rgb' as const, resize: 'area' as const, crop: true, clahe: false };
let bytes = 0;
const rows = await mapLimit(dataset.images, 4, async (im) => {
  const { pixels } = await preprocessToBytes(im.path, settings);
  const jpeg = await sharp(Buffer.from(pixels), { raw: { width: size, height: size, channels: 3 } })
    .jpeg({ quality, chromaSubsampling: process.env.SUBSAMPLE ?? '4:4:4' })
    .toBuffer();
  bytes += jpeg.length;
  await writeFile(join(out, 'images', im.filename), jpeg);
  return { file: im.filename, part: partOf.get(im.filename) ?? 'none', labels: Array.from(im.labels ?? []) };
});
await writeFile(join(out, 'index.json'), JSON.stringify({ size, quality, classes: dataset.classes, images: rows }));
console.log(`${rows.length} images, ${(bytes / 2 ** 20).toFixed(1)} MiB`);
