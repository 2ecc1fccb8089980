import { createHash } from 'node:crypto';
import { basename, join, relative, resolve } from 'node:path';
import { readDataset } from '../data/csv.js';
import { readDatasets } from '../data/datasets.js';
import type { MultiSourceData } from '../data/datasets.js';
import type { Dataset, LabelledImage } from '../data/labels.js';
import { PART_NAMES, readSplit, readSplitParts } from '../data/split.js';
import type { PartName, Split, SplitFile } from '../data/split.js';
import { SPLIT_DEFAULTS, splitDataset } from '../data/split-dataset.js';
import type { Example } from '../models/tasks.js';
import { writeFileAtomic } from '../util/atomic.js';
import { sha256File } from '../util/sha256.js';
import { InputError } from '../util/errors.js';
import { RUN_SPLIT_JSON } from './out-guard.js';
import type { ExtraExample, TrainOptions } from './train-options.js';

/** The labelled data of a run: one CSV with its split file, or the sources of a datasets file; each part's images. */
export interface TrainingData {
  dataset: Dataset;
  split: SplitFile;
  /** The split file (given, or made in the run directory), or the datasets file that made the split. */
  splitPath: string;
  sources?: MultiSourceData;
  /** The images of each split part, in the split's order (or `partsUsed`'s; at most `limit` of each). */
  parts: Record<PartName, LabelledImage[]>;
}

/**
 * The images of a split part, in the split's order, or those of `used` (which must all be in the part); InputError
 * for names the CSV does not have.
 */
function partImages(dataset: Dataset, names: string[], part: string, splitPath: string, limit?: number, used?: string[]): LabelledImage[] {
  const byName = new Map(dataset.images.map((im) => [im.filename, im]));
  if (used) {
    const inPart = new Set(names);
    const stray = used.find((n) => !inPart.has(n));
    if (stray !== undefined) throw new InputError(`${stray} was asked to be used as a ${part} image, but the split's ${part} part does not list it`, { file: splitPath });
  }
  const out: LabelledImage[] = [];
  for (const n of used ?? names) {
    const im = byName.get(n);
    if (!im) throw new InputError(`split part "${part}" lists ${n}, which is not in the CSV`, { file: splitPath });
    out.push(im);
  }
  return limit !== undefined ? out.slice(0, limit) : out;
}

/** Where a run keeps the split it made, and what it says about it. */
export interface SplitMaking {
  runDir: string;
  log: (line: string) => void;
  /** No progress bar while fingerprinting. */
  quiet?: boolean;
}

/** Whether a split file was made by `splitDataset` with the defaults from this very CSV (a run resumed). */
function madeWithDefaults(split: Split, csvSha256: string, images: number): boolean {
  return (
    split.source?.csvSha256 === csvSha256 &&
    split.source.images === images &&
    split.seed === SPLIT_DEFAULTS.seed &&
    PART_NAMES.every((p) => split.ratios?.[p] === SPLIT_DEFAULTS.ratios[p]) &&
    split.duplicates?.similarity === SPLIT_DEFAULTS.similarity
  );
}

/**
 * The split of a CSV given without a split file: made as `fundus data split` makes it with its defaults (repeat
 * photographs of one eye kept in one part, stratified, seed 42, 70/15/15) and written to `<runDir>/split.json`, or
 * that file as an earlier try of the run made it (fingerprinting every photograph is not redone on resuming).
 */
async function splitOfRun(dataset: Dataset, csv: string, make: SplitMaking): Promise<{ split: SplitFile; splitPath: string }> {
  // As the model card shows it: relative to the working folder when inside it, as a --split given would be.
  const inRun = join(make.runDir, RUN_SPLIT_JSON);
  const fromCwd = relative(process.cwd(), inRun);
  const splitPath = fromCwd.startsWith('..') ? inRun : fromCwd;
  const csvSha256 = await sha256File(csv);
  const earlier = await readSplit(splitPath).catch(() => undefined);
  if (earlier && madeWithDefaults(earlier, csvSha256, dataset.images.length)) {
    make.log(`split: ${splitPath}, made by an earlier try of this run`);
  } else {
    const split = await splitDataset(dataset, csv, { progressLabel: make.quiet ? undefined : 'fingerprinting' });
    await writeFileAtomic(splitPath, JSON.stringify(split, null, 2) + '\n');
    make.log(
      `split: no --split given, so made one as \`fundus data split\` does (seed ${split.seed}, ` +
        `${PART_NAMES.map((p) => `${split.counts[p].images} ${p}`).join(' / ')} images, ${split.groups.length} groups of repeat photographs kept whole): ${splitPath}`,
    );
  }
  return { split: await readSplitParts(splitPath), splitPath };
}

/**
 * Reads the run's labelled data (`csv` and `images` with `split`, or `datasets`) and its split parts. A CSV without
 * a split file is split here (see splitOfRun), into `make.runDir`.
 */
export async function readTrainingData(opts: Pick<TrainOptions, 'csv' | 'images' | 'split' | 'datasets' | 'limit' | 'partsUsed'>, make: SplitMaking): Promise<TrainingData> {
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
    if (opts.csv === undefined || opts.images === undefined) throw new InputError('training needs a labels CSV and its image folder (or a datasets file)');
    const dataset = await readDataset(opts.csv, opts.images);
    read = { dataset, ...(opts.split !== undefined ? { split: await readSplitParts(opts.split), splitPath: opts.split } : await splitOfRun(dataset, opts.csv, make)) };
  }
  const used: Partial<Record<PartName, string[]>> = opts.partsUsed ?? {};
  const parts = Object.fromEntries(PART_NAMES.map((p) => [p, partImages(read.dataset, read.split[p], p, read.splitPath, opts.limit, used[p])])) as Record<PartName, LabelledImage[]>;
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
