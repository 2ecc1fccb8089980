import { createHash } from 'node:crypto';
import { basename, resolve } from 'node:path';
import { readDataset } from '../data/csv.js';
import { readDatasets } from '../data/datasets.js';
import type { MultiSourceData } from '../data/datasets.js';
import type { Dataset, LabelledImage } from '../data/labels.js';
import { PART_NAMES, readSplitParts } from '../data/split.js';
import type { PartName, SplitFile } from '../data/split.js';
import type { Example } from '../models/tasks.js';
import { InputError } from '../util/errors.js';
import type { ExtraExample, TrainOptions } from './train-options.js';

/** The labelled data of a run: one CSV with its split file, or the sources of a datasets file; each part's images. */
export interface TrainingData {
  dataset: Dataset;
  split: SplitFile;
  /** The split file, or the datasets file that made the split. */
  splitPath: string;
  sources?: MultiSourceData;
  /** The images of each split part, in the split's order (at most `limit` of each). */
  parts: Record<PartName, LabelledImage[]>;
}

/** The images of a split part, in the split's order; InputError for names the CSV does not have. */
function partImages(dataset: Dataset, names: string[], part: string, splitPath: string, limit?: number): LabelledImage[] {
  const byName = new Map(dataset.images.map((im) => [im.filename, im]));
  const out: LabelledImage[] = [];
  for (const n of names) {
    const im = byName.get(n);
    if (!im) throw new InputError(`split part "${part}" lists ${n}, which is not in the CSV`, { file: splitPath });
    out.push(im);
  }
  return limit !== undefined ? out.slice(0, limit) : out;
}

/** Reads the run's labelled data (`csv`, `images` and `split`, or `datasets`) and its split parts. */
export async function readTrainingData(opts: Pick<TrainOptions, 'csv' | 'images' | 'split' | 'datasets' | 'limit'>): Promise<TrainingData> {
  let read: Omit<TrainingData, 'parts'>;
  if (opts.datasets !== undefined) {
    if (opts.csv !== undefined || opts.images !== undefined || opts.split !== undefined) {
      throw new InputError('give either --datasets or --csv, --images and --split, not both');
    }
    const sources = await readDatasets(opts.datasets);
    const { train, validation, test } = sources.parts;
    const sha256 = createHash('sha256').update(sources.splitText).digest('hex');
    read = { dataset: sources.dataset, split: { train, validation, test, text: sources.splitText, sha256 }, splitPath: opts.datasets, sources };
  } else {
    if (opts.csv === undefined || opts.images === undefined || opts.split === undefined) {
      throw new InputError('training needs --csv, --images and --split (or --datasets)');
    }
    read = { dataset: await readDataset(opts.csv, opts.images), split: await readSplitParts(opts.split), splitPath: opts.split };
  }
  const parts = Object.fromEntries(PART_NAMES.map((p) => [p, partImages(read.dataset, read.split[p], p, read.splitPath, opts.limit)])) as Record<PartName, LabelledImage[]>;
  return { ...read, parts };
}

/** Pseudo-labelled examples (self-learning) as training examples of a task with `numTargets` targets. */
export function extraExamples(extra: ExtraExample[] | undefined, numTargets: number): Example[] {
  return (extra ?? []).map((e, i) => {
    if (e.target.length !== numTargets) throw new InputError(`extra example ${i} (${e.path}) has ${e.target.length} targets, the task has ${numTargets}`);
    if (!(e.weight >= 0)) throw new InputError(`extra example ${i} (${e.path}) has weight ${e.weight}`);
    return { path: resolve(e.path), filename: basename(e.path), target: Float32Array.from(e.target), weight: e.weight };
  });
}
