import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TrainOptions } from '../../src/train/train.js';
import { VIETAI_DIR, tempDir } from '../helpers.js';

/**
 * A tiny slice of the real VietAI data for training tests: `perClass` images of each class (first in CSV order),
 * written as a contest CSV plus a split file (train / validation / test) in a fresh temp dir.
 */
export async function tinyDataset(perClass = 4): Promise<{ dir: string; csv: string; images: string; split: string; names: string[] }> {
  const text = await readFile(join(VIETAI_DIR, 'train.csv'), 'utf8');
  const [header, ...rows] = text.trim().split('\n');
  const picked: string[] = [];
  for (let k = 1; k <= 7; k++) {
    picked.push(...rows.filter((r) => r.split(',')[k] === '1' && !picked.includes(r)).slice(0, perClass));
  }
  const dir = await tempDir('fundus-train-');
  const csv = join(dir, 'labels.csv');
  await writeFile(csv, [header, ...picked].join('\n') + '\n');
  const names = picked.map((r) => r.split(',')[0]);
  // Round-robin so that every part gets images of every class.
  const parts = { train: [] as string[], validation: [] as string[], test: [] as string[] };
  names.forEach((n, i) => (i % 4 === 1 ? parts.validation : i % 4 === 3 ? parts.test : parts.train).push(n));
  const split = join(dir, 'split.json');
  await writeFile(split, JSON.stringify({ version: 1, seed: 0, parts }));
  return { dir, csv, images: join(VIETAI_DIR, 'train'), split, names };
}

/** Options of a seconds-long training run of the small CNN on a tinyDataset: 24 px, batch 4, quiet, its own cache. */
export async function tinyTrainOptions(tag: string, perClass = 4, overrides: Partial<TrainOptions> = {}): Promise<TrainOptions> {
  const d = await tinyDataset(perClass);
  return {
    task: 'multilabel',
    model: 'small-cnn',
    csv: d.csv,
    images: d.images,
    split: d.split,
    out: join(d.dir, `${tag}-model`),
    runDir: join(d.dir, `${tag}-run`),
    imageSize: 24,
    epochs: 2,
    batchSize: 4,
    lr: 3e-3,
    warmupEpochs: 0,
    seed: 7,
    quiet: true,
    cacheDir: join(d.dir, 'cache'),
    ...overrides,
  };
}
