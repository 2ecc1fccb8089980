import { basename, dirname, resolve } from 'node:path';
import { collectImages } from './image-files.js';
import { DEFAULT_SIMILARITY, duplicatePairs, fingerprintFiles, groupPairs, scorePairs } from './duplicates.js';
import type { DuplicateGroup, ScoredPair } from './duplicates.js';
import type { Dataset } from './labels.js';

/** A duplicate group seen from a dataset: which members are labelled, in which folder, with which labels. */
export interface DatasetGroup extends DuplicateGroup {
  /** Members' folders differ (e.g. train/ and unlabeled/). */
  crossFolder: boolean;
  /** Labelled members carry different label sets. */
  labelsDisagree: boolean;
  /** Labelled filenames among the members. */
  labelled: string[];
  /** Each labelled member's positive classes (`[]`: none), so that a disagreement can be read. */
  labels: Record<string, string[]>;
  /** Unlabelled filenames among the members. */
  unlabeled: string[];
}

export interface DuplicateAnalysis {
  images: number;
  similarity: number;
  groups: DatasetGroup[];
  /** Byte-identical pairs (paths), whatever group they ended up in. */
  exactPairs: [string, string][];
  /** Candidate pairs with their scores (for the similarity distribution). */
  scored: ScoredPair[];
  paths: string[];
}

/** The image files directly inside a folder (of unlabelled images), sorted, as absolute paths. */
export async function listImages(dir: string): Promise<string[]> {
  return (await collectImages([dir], { recursive: false })).map((p) => resolve(p));
}

/**
 * Finds near-duplicate groups among a dataset's images and, optionally, an unlabelled folder, and annotates each
 * group with what matters for splitting and self-learning: does it cross folders, do its labels disagree.
 */
export async function analyseDuplicates(
  ds: Dataset,
  unlabeledDir: string | undefined,
  opts: { similarity?: number; progressLabel?: string; cacheDir?: string | false } = {},
): Promise<DuplicateAnalysis> {
  const labelledPaths = ds.images.map((im) => im.path);
  const unlabeledPaths = unlabeledDir ? await listImages(unlabeledDir) : [];
  const paths = [...labelledPaths, ...unlabeledPaths];
  const labelsOf = new Map(ds.images.map((im) => [im.path, im.labels]));
  const nameOf = new Map(ds.images.map((im) => [im.path, im.filename]));
  const fps = await fingerprintFiles(paths, { progressLabel: opts.progressLabel, cacheDir: opts.cacheDir });
  const scored = scorePairs(fps, { progressLabel: opts.progressLabel && 'comparing' });
  const similarity = opts.similarity ?? DEFAULT_SIMILARITY;
  const groups = groupPairs(paths, duplicatePairs(scored, similarity)).map((g): DatasetGroup => {
    const labelled = g.members.filter((p) => labelsOf.has(p));
    const unlabeled = g.members.filter((p) => !labelsOf.has(p));
    const sets = new Set(labelled.map((p) => Array.from(labelsOf.get(p) ?? []).join('')));
    const positives = (p: string) => ds.classes.filter((_, k) => labelsOf.get(p)?.[k]);
    return {
      ...g,
      crossFolder: new Set(g.members.map((p) => dirname(p))).size > 1,
      labelsDisagree: sets.size > 1,
      labelled: labelled.map((p) => nameOf.get(p) ?? basename(p)),
      labels: Object.fromEntries(labelled.map((p) => [nameOf.get(p) ?? basename(p), positives(p)])),
      unlabeled: unlabeled.map((p) => basename(p)),
    };
  });
  const exactPairs = scored.filter((p) => p.exact).map((p): [string, string] => [paths[p.i], paths[p.j]]);
  return { images: paths.length, similarity, groups, exactPairs, scored, paths };
}

/** A text histogram of the fine similarity of the candidate pairs that passed the gate (how the threshold is read). */
export function similarityHistogram(scored: ScoredPair[], threshold: number): string {
  const bins = new Array<number>(20).fill(0);
  for (const p of scored) if (p.similarity >= 0 && !p.exact) bins[Math.min(19, Math.floor(p.similarity * 20))]++;
  const max = Math.max(...bins, 1);
  const lines = ['similarity of candidate pairs (log scale bar):'];
  for (let b = 4; b < 20; b++) {
    const lo = b / 20;
    const bar = '#'.repeat(Math.round((Math.log10(1 + bins[b]) / Math.log10(1 + max)) * 40));
    const mark = threshold > lo - 1e-9 && threshold < lo + 0.05 - 1e-9 ? ' <- threshold' : '';
    lines.push(`  ${lo.toFixed(2)}-${(lo + 0.05).toFixed(2)} ${String(bins[b]).padStart(6)} ${bar}${mark}`);
  }
  return lines.join('\n');
}
