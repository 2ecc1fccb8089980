import { seededRandom } from '../data/random.js';

/** How bootstrap confidence intervals are drawn. */
export interface BootstrapOptions {
  /** Number of resamples (default 1000). */
  resamples?: number;
  /** Seed of the resampling, so that the same evaluation gives the same intervals (default 0). */
  seed?: number;
  /** Confidence level (default 0.95: the 2.5th and 97.5th percentiles). */
  level?: number;
}

export const DEFAULT_BOOTSTRAP: Required<BootstrapOptions> = { resamples: 1000, seed: 0, level: 0.95 };

/**
 * Strata for a stratified bootstrap of multi-hot labels: one stratum per distinct label combination (the row of an
 * n×numClasses 0/1 matrix). Resampling within strata keeps every class's number of positives fixed, so rare classes
 * keep their size. A stratum of one image never varies, though, which would make intervals too narrow: combinations
 * with fewer than `minSize` images are pooled into one stratum (where counts may vary).
 */
export function labelCombinationStrata(labels: ArrayLike<number>, numClasses: number, minSize = 5): Int32Array {
  const n = labels.length / numClasses;
  const ids = new Map<string, number>();
  const strata = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let key = '';
    for (let k = 0; k < numClasses; k++) key += labels[i * numClasses + k] ? '1' : '0';
    let id = ids.get(key);
    if (id === undefined) {
      id = ids.size;
      ids.set(key, id);
    }
    strata[i] = id;
  }
  const sizes = new Int32Array(ids.size);
  for (const s of strata) sizes[s]++;
  const pooled = ids.size;
  for (let i = 0; i < n; i++) if (sizes[strata[i]] < minSize) strata[i] = pooled;
  return strata;
}

/**
 * Draws one stratified resample as multiplicities: counts[i] is how often sample i was drawn. Each stratum of size m
 * gets m draws with replacement from its own members.
 */
export function resampleCounts(members: Uint32Array[], n: number, rng: () => number, out?: Float64Array): Float64Array {
  const counts = out ?? new Float64Array(n);
  counts.fill(0);
  for (const m of members) {
    const size = m.length;
    for (let j = 0; j < size; j++) counts[m[Math.floor(rng() * size)]]++;
  }
  return counts;
}

function membersOf(strata: ArrayLike<number>): Uint32Array[] {
  const lists = new Map<number, number[]>();
  for (let i = 0; i < strata.length; i++) {
    const s = strata[i];
    let l = lists.get(s);
    if (!l) lists.set(s, (l = []));
    l.push(i);
  }
  return [...lists.values()].map((l) => Uint32Array.from(l));
}

/** The q-quantile (0..1) of sorted values with linear interpolation, as numpy's default `percentile`. */
export function quantileSorted(sorted: ArrayLike<number>, q: number): number {
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

/** A percentile interval, or null when no resample gave a defined value. */
export type Interval = [number, number] | null;

/**
 * Percentile bootstrap intervals of several statistics at once. `statistics(weights, out)` evaluates every statistic
 * on the resample given by the multiplicities `weights` and writes them into `out` (NaN where a statistic is
 * undefined on that resample: such resamples are left out of that statistic's interval). Returns one interval per
 * statistic.
 */
export function bootstrapIntervals(
  strata: ArrayLike<number>,
  numStatistics: number,
  statistics: (weights: Float64Array, out: Float64Array) => void,
  opts: BootstrapOptions = {},
): Interval[] {
  const { resamples, seed, level } = { ...DEFAULT_BOOTSTRAP, ...opts };
  const n = strata.length;
  if (n === 0 || resamples <= 0) return new Array<Interval>(numStatistics).fill(null);
  const members = membersOf(strata);
  const rng = seededRandom(seed);
  const values = Array.from({ length: numStatistics }, () => new Float64Array(resamples));
  const weights = new Float64Array(n);
  const out = new Float64Array(numStatistics);
  for (let r = 0; r < resamples; r++) {
    resampleCounts(members, n, rng, weights);
    out.fill(NaN);
    statistics(weights, out);
    for (let s = 0; s < numStatistics; s++) values[s][r] = out[s];
  }
  const alpha = (1 - level) / 2;
  return values.map((v) => {
    const defined = v.filter((x) => !Number.isNaN(x)).sort();
    if (defined.length === 0) return null;
    return [quantileSorted(defined, alpha), quantileSorted(defined, 1 - alpha)];
  });
}
