// A model directory may carry what the model predicted, when it was saved, on the sample photographs that ship
// with fundus (`reference-predictions.json`). Comparing against it proves that loading and preprocessing still
// reproduce the model's inputs exactly: a change in decoding, cropping or resizing shows up here first.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { collectImages } from '../data/image-files.js';
import { writeFileAtomic } from '../util/atomic.js';
import type { FundusModel } from './io.js';
import { predictFiles } from './predictor.js';

export const REFERENCE_PREDICTIONS = 'reference-predictions.json';

/** Probabilities per image file name, in the model's class order. */
export interface ReferencePredictions {
  classes: string[];
  images: Record<string, number[]>;
}

async function samplePaths(imagesDir: string): Promise<string[]> {
  return collectImages([imagesDir], { recursive: false });
}

export async function computeReferencePredictions(model: FundusModel, imagesDir: string): Promise<ReferencePredictions> {
  const paths = await samplePaths(imagesDir);
  const probs = await predictFiles(model, paths);
  const k = model.metadata.classes.length;
  const images: Record<string, number[]> = {};
  paths.forEach((p, i) => (images[p.slice(imagesDir.length + 1)] = Array.from(probs.subarray(i * k, (i + 1) * k))));
  return { classes: model.metadata.classes, images };
}

export async function writeReferencePredictions(model: FundusModel, imagesDir: string): Promise<void> {
  await writeFileAtomic(join(model.dir, REFERENCE_PREDICTIONS), JSON.stringify(await computeReferencePredictions(model, imagesDir), null, 1) + '\n');
}

export async function readReferencePredictions(modelDir: string): Promise<ReferencePredictions> {
  return JSON.parse(await readFile(join(modelDir, REFERENCE_PREDICTIONS), 'utf8')) as ReferencePredictions;
}
