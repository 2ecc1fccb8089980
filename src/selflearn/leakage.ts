import { resolve } from 'node:path';
import { findDuplicateGroups } from '../data/duplicates.js';

/** Finds groups of (near-)duplicate images among paths, e.g. `findDuplicateGroups` of src/data/duplicates.ts. */
export type DuplicateFinder = (paths: string[]) => Promise<{ members: string[] }[]>;

export interface LeakageGuardResult {
  kept: string[];
  /** Unlabelled images dropped because they are near-duplicates of held-out test images. */
  excluded: { path: string; duplicateOf: string[] }[];
}

/**
 * Leakage guard: an unlabelled image that is a near-duplicate of a held-out test image would let the test image's
 * appearance into training (through its pseudo-label and pixels), so it is left out. The dataset has repeats across
 * its folders, so this is not hypothetical.
 */
export async function excludeTestDuplicates(unlabelled: string[], test: string[], find: DuplicateFinder): Promise<LeakageGuardResult> {
  const testSet = new Set(test.map((p) => resolve(p)));
  const groups = await find([...unlabelled, ...test]);
  const leaks = new Map<string, string[]>();
  for (const g of groups) {
    const members = g.members.map((p) => resolve(p));
    const testMembers = members.filter((p) => testSet.has(p));
    if (testMembers.length === 0) continue;
    for (const m of members) if (!testSet.has(m)) leaks.set(m, [...(leaks.get(m) ?? []), ...testMembers]);
  }
  const kept: string[] = [];
  const excluded: LeakageGuardResult['excluded'] = [];
  for (const p of unlabelled) {
    const hit = leaks.get(resolve(p));
    if (hit) excluded.push({ path: p, duplicateOf: [...new Set(hit)] });
    else kept.push(p);
  }
  return { kept, excluded };
}

/** The project's duplicate detector (copies and repeat photographs of the same eye, src/data/duplicates.ts). */
export function defaultDuplicateFinder(opts: { cacheDir?: string | false } = {}): DuplicateFinder {
  return (paths) => findDuplicateGroups(paths, { progressLabel: 'leakage guard', cacheDir: opts.cacheDir });
}
