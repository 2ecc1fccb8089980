import { stat } from 'node:fs/promises';
import { relative, resolve } from 'node:path';
import { InputError } from '../util/errors.js';
import { sha256File } from '../util/sha256.js';
import { analyseDuplicates, listImages } from './dedup.js';
import { DEFAULT_SIMILARITY } from './duplicates.js';
import type { Dataset } from './labels.js';
import { makeSplit } from './split.js';
import type { PartName, Split } from './split.js';

/** How `fundus data split` splits by default, and `fundus train --data` when it is given no split file. */
export const SPLIT_DEFAULTS = {
  seed: 42,
  ratios: { train: 0.7, validation: 0.15, test: 0.15 } as Readonly<Record<PartName, number>>,
  similarity: DEFAULT_SIMILARITY,
} as const;

export interface SplitDatasetOptions {
  seed?: number;
  /** Proportions of the parts (they need not sum to 1). */
  ratios?: Record<PartName, number>;
  /** Near-duplicate threshold (see `fundus data duplicates`). */
  similarity?: number;
  /** Keep near-duplicate groups inside one part (default true; false splits images independently). */
  dedup?: boolean;
  /** An unlabelled folder whose repeats of labelled images are recorded (`Split.unlabeledLinks`). */
  unlabelled?: string;
  /** Label of the fingerprinting progress bar on stderr (none when absent). */
  progressLabel?: string;
}

/**
 * A train/validation/test split of a labelled dataset read from `csvPath` (readDataset): every image must be on disk
 * (InputError naming the folder otherwise), repeat photographs of one eye are found and kept inside one part, and
 * the parts are stratified over the classes (makeSplit). Deterministic for a given CSV, folder and options.
 */
export async function splitDataset(ds: Dataset, csvPath: string, opts: SplitDatasetOptions = {}): Promise<Split> {
  const seed = opts.seed ?? SPLIT_DEFAULTS.seed;
  const similarity = opts.similarity ?? SPLIT_DEFAULTS.similarity;
  const dedup = opts.dedup ?? true;
  const missing: string[] = [];
  for (const im of ds.images) if (!(await stat(im.path).catch(() => undefined))) missing.push(im.filename);
  if (missing.length > 0) throw new InputError(`${missing.length} images of the CSV are missing (e.g. ${missing[0]}); run \`fundus data check\``, { file: ds.imagesDir });
  let groups: string[][] = [];
  const links: Record<string, string[]> = {};
  if (dedup) {
    const a = await analyseDuplicates(ds, opts.unlabelled, { similarity, progressLabel: opts.progressLabel });
    groups = a.groups.filter((g) => g.labelled.length > 1).map((g) => g.labelled);
    for (const g of a.groups) for (const u of g.unlabeled) if (g.labelled.length > 0) links[u] = g.labelled;
  } else if (opts.unlabelled) await listImages(opts.unlabelled);
  return makeSplit(ds, {
    seed,
    ratios: opts.ratios ?? { ...SPLIT_DEFAULTS.ratios },
    groups,
    unlabeledLinks: links,
    source: { csv: relative(process.cwd(), resolve(csvPath)), csvSha256: await sha256File(csvPath), images: ds.images.length },
    duplicates: dedup ? { method: 'vessel-detail similarity (src/data/duplicates.ts)', similarity } : null,
  });
}
