import { seededRandom, shuffleInPlace } from '../data/random.js';

/**
 * Grouped, stratified k-fold assignment: every image of a group (a patient) lands in the same fold, so no patient is
 * both trained on and held out, and each stratum (here: the source) is spread over the folds as evenly as its groups
 * allow. Images without a group are groups of one.
 *
 * Per stratum, its groups are shuffled (seeded) and then taken largest first, each into the fold that holds the
 * fewest images of that stratum so far (ties: the fewest images overall, then a seeded rotation). A group whose
 * members carry different strata goes with its first member's stratum.
 *
 * Returns the fold (0..k'−1) of each image and k', which is `k` or the number of groups when there are fewer.
 */
export function groupedStratifiedFolds(
  strata: ArrayLike<number>,
  groups: ArrayLike<string | undefined>,
  k: number,
  seed = 0,
): { fold: Int32Array; folds: number } {
  const n = strata.length;
  if (groups.length !== n) throw new RangeError(`strata (${n}) and groups (${groups.length}) differ in length`);
  if (!Number.isInteger(k) || k < 2) throw new RangeError(`k must be an integer >= 2 (got ${k})`);
  const units = new Map<string, { stratum: number; members: number[] }>();
  for (let i = 0; i < n; i++) {
    const g = groups[i];
    const key = g === undefined ? `\u0000image ${i}` : `group ${g}`;
    const u = units.get(key);
    if (u) u.members.push(i);
    else units.set(key, { stratum: strata[i], members: [i] });
  }
  const folds = Math.min(k, units.size);
  const fold = new Int32Array(n).fill(-1);
  if (folds < 2) {
    fold.fill(0);
    return { fold, folds: 1 };
  }
  const rng = seededRandom(seed ^ 0x5eed);
  const byStratum = new Map<number, { stratum: number; members: number[] }[]>();
  for (const u of units.values()) byStratum.set(u.stratum, [...(byStratum.get(u.stratum) ?? []), u]);
  const total = new Float64Array(folds);
  for (const stratum of [...byStratum.keys()].sort((a, b) => a - b)) {
    const list = shuffleInPlace(byStratum.get(stratum)!, rng);
    list.sort((a, b) => b.members.length - a.members.length); // stable: equal sizes keep the shuffled order
    const here = new Float64Array(folds);
    const offset = Math.floor(rng() * folds);
    for (const u of list) {
      let best = -1;
      for (let j = 0; j < folds; j++) {
        const f = (j + offset) % folds;
        if (best < 0 || here[f] < here[best] || (here[f] === here[best] && total[f] < total[best])) best = f;
      }
      for (const i of u.members) fold[i] = best;
      here[best] += u.members.length;
      total[best] += u.members.length;
    }
  }
  return { fold, folds };
}
