import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { writeFileAtomic } from '../util/atomic.js';
import { progress } from '../util/progress.js';
import { defaultCacheDir, mapLimit } from './cache.js';
import { DETAIL_SIZE, detailSimilarity, fingerprint, hammingDistance, hashToHex, poolDetail } from './phash.js';
import type { Fingerprint } from './phash.js';

/** A set of images that are copies or repeat photographs of the same eye: one unit when splitting. */
export interface DuplicateGroup {
  /** Paths, sorted. */
  members: string[];
  /** Largest pHash Hamming distance (of 64 bits) over the linked pairs of the group. */
  maxDistance: number;
  /** Every member has the same bytes. */
  exact: boolean;
  /** Smallest vessel-detail similarity over the linked pairs (1 for exact copies). */
  minSimilarity: number;
}

/** Two images judged to be the same eye. */
export interface DuplicatePair {
  a: string;
  b: string;
  exact: boolean;
  /** pHash Hamming distance. */
  distance: number;
  /** Vessel-detail similarity (shift-tolerant normalised cross-correlation, see phash.ts). */
  similarity: number;
}

export interface DuplicateOptions {
  /**
   * Pairs whose vessel-detail similarity reaches this are the same eye. On the VietAI data the similarity of candidate
   * pairs is bimodal (different eyes peak at 0.35-0.40, repeats at 0.80-0.85) with its trough at 0.50-0.60; sampled
   * pairs at 0.50-0.60 were all or nearly all the same eye, at 0.45-0.50 mostly the same eye but not all. 0.5 is the
   * trough's lower edge: a false merge costs the split a little balance, a missed repeat leaks an eye across parts.
   */
  similarity?: number;
  concurrency?: number;
  /** Fingerprint cache root (a `fingerprints/` folder is made inside); false turns the cache off. */
  cacheDir?: string | false;
  /** Progress bar label for the fingerprinting; none when absent. */
  progressLabel?: string;
}

export const DEFAULT_SIMILARITY = 0.5;

const FP_VERSION = 2;
const FP_BYTES = 8 + 32 + 4 * DETAIL_SIZE * DETAIL_SIZE;

function encodeFingerprint(f: Fingerprint): Buffer {
  const buf = Buffer.alloc(FP_BYTES);
  buf.writeUInt32LE(f.hash.hi, 0);
  buf.writeUInt32LE(f.hash.lo, 4);
  Buffer.from(f.sha256, 'hex').copy(buf, 8);
  Buffer.from(f.detail.buffer, f.detail.byteOffset, f.detail.byteLength).copy(buf, 40);
  return buf;
}

function decodeFingerprint(buf: Buffer): Fingerprint | undefined {
  if (buf.length !== FP_BYTES) return undefined;
  const copy = (off: number, n: number): Float32Array => new Float32Array(buf.buffer.slice(buf.byteOffset + off, buf.byteOffset + off + 4 * n));
  const d = DETAIL_SIZE * DETAIL_SIZE;
  return {
    hash: { hi: buf.readUInt32LE(0), lo: buf.readUInt32LE(4) },
    sha256: buf.subarray(8, 40).toString('hex'),
    detail: copy(40, d),
  };
}

/** Fingerprints of the images, cached on disk by path, size and modification time (like preprocessed images). */
export async function fingerprintFiles(paths: string[], opts: DuplicateOptions = {}): Promise<Fingerprint[]> {
  const dir = opts.cacheDir === false ? undefined : join(opts.cacheDir ?? defaultCacheDir(), 'fingerprints', `v${FP_VERSION}`);
  const bar = opts.progressLabel ? progress(opts.progressLabel, paths.length) : undefined;
  try {
    return await mapLimit(paths, opts.concurrency ?? availableParallelism(), async (p) => {
      const abs = resolve(p);
      let entry: string | undefined;
      if (dir) {
        const st = await stat(abs).catch(() => undefined);
        if (st) {
          const key = createHash('sha256').update(`${abs}\0${st.size}\0${st.mtimeMs}`).digest('hex');
          entry = join(dir, key.slice(0, 2), `${key}.bin`);
          const cached = await readFile(entry).catch(() => undefined);
          const f = cached && decodeFingerprint(cached);
          if (f) {
            bar?.tick();
            return f;
          }
        }
      }
      const f = await fingerprint(abs);
      if (entry) await writeFileAtomic(entry, encodeFingerprint(f));
      bar?.tick();
      return f;
    });
  } finally {
    bar?.stop();
  }
}

/**
 * Every pair (i < j) of rows of `m` (n rows of d values, unit length) whose dot product reaches `threshold`. Four
 * rows at a time share each load of row i, which doubles the speed of this O(n²·d) loop in V8.
 */
export function pairsAbove(m: Float32Array, n: number, d: number, threshold: number, onRow?: () => void): [number, number, number][] {
  const out: [number, number, number][] = [];
  for (let i = 0; i < n; i++) {
    onRow?.();
    const oi = i * d;
    let j = i + 1;
    for (; j + 3 < n; j += 4) {
      const o0 = j * d;
      const o1 = o0 + d;
      const o2 = o1 + d;
      const o3 = o2 + d;
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      for (let k = 0; k < d; k++) {
        const a = m[oi + k];
        s0 += a * m[o0 + k];
        s1 += a * m[o1 + k];
        s2 += a * m[o2 + k];
        s3 += a * m[o3 + k];
      }
      if (s0 >= threshold) out.push([i, j, s0]);
      if (s1 >= threshold) out.push([i, j + 1, s1]);
      if (s2 >= threshold) out.push([i, j + 2, s2]);
      if (s3 >= threshold) out.push([i, j + 3, s3]);
    }
    for (; j < n; j++) {
      const oj = j * d;
      let s = 0;
      for (let k = 0; k < d; k++) s += m[oi + k] * m[oj + k];
      if (s >= threshold) out.push([i, j, s]);
    }
  }
  return out;
}

/** A scored pair of indices into the fingerprint list, before thresholding (for distributions). */
export interface ScoredPair {
  i: number;
  j: number;
  exact: boolean;
  /** pHash Hamming distance. */
  distance: number;
  /** Correlation of the pooled details without shift (the all-pairs search). */
  pooled: number;
  /** Fine similarity with shifts; -1 where the pooled gate already ruled the pair out. */
  similarity: number;
}

/** Candidate search and gate thresholds of the cascade (see scorePairs); tuned on the VietAI data. */
const POOLED_CANDIDATE = 0.25;
const PHASH_CANDIDATE = 12;
const POOLED_GATE = 0.45;

/**
 * Scores pairs through a cascade, each stage cheaper per pair than the next and run on fewer pairs: (1) every pair:
 * pHash distance and the pooled detail correlation; a pair is a candidate when it is an exact copy, its pHash
 * distance is at most 12 or its pooled correlation at least 0.25 (no repeat photograph of the VietAI data lies
 * outside, transitively). (2) candidates: the pooled correlation over ±1 px shifts must reach 0.45 (every repeat does,
 * most different eyes do not). (3) the fine similarity over ±2 px shifts, which the threshold then decides on.
 */
export function scorePairs(fps: Fingerprint[], opts: { progressLabel?: string } = {}): ScoredPair[] {
  const n = fps.length;
  const P = DETAIL_SIZE / 2;
  const pooled = fps.map((f) => poolDetail(f.detail));
  const m = new Float32Array(n * P * P);
  pooled.forEach((v, i) => m.set(v, i * P * P));
  const cand = new Map<number, number>(); // i * n + j -> pooled correlation
  const bar1 = opts.progressLabel ? progress(`${opts.progressLabel}: all pairs`, n) : undefined;
  for (const [i, j, c] of pairsAbove(m, n, P * P, POOLED_CANDIDATE, () => bar1?.tick())) cand.set(i * n + j, c);
  bar1?.stop();
  const dot = (i: number, j: number): number => {
    let s = 0;
    for (let k = 0; k < P * P; k++) s += m[i * P * P + k] * m[j * P * P + k];
    return s;
  };
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      if (fps[i].sha256 === fps[j].sha256 || hammingDistance(fps[i].hash, fps[j].hash) <= PHASH_CANDIDATE) {
        if (!cand.has(i * n + j)) cand.set(i * n + j, dot(i, j));
      }
    }
  }
  const bar2 = opts.progressLabel ? progress(`${opts.progressLabel}: ${cand.size} candidates`, cand.size) : undefined;
  const out: ScoredPair[] = [];
  let done = 0;
  for (const [key, c] of cand) {
    if (++done % 1000 === 0) bar2?.tick(1000);
    const i = Math.floor(key / n);
    const j = key % n;
    const exact = fps[i].sha256 === fps[j].sha256;
    let similarity = -1;
    if (exact) similarity = 1;
    else if (detailSimilarity(pooled[i], pooled[j], 1, P) >= POOLED_GATE) similarity = detailSimilarity(fps[i].detail, fps[j].detail, 2);
    out.push({ i, j, exact, distance: hammingDistance(fps[i].hash, fps[j].hash), pooled: c, similarity });
  }
  bar2?.stop();
  return out.sort((a, b) => a.i - b.i || a.j - b.j);
}

/** Groups linked pairs into connected components (union-find); singletons are left out. */
export function groupPairs(paths: string[], pairs: { i: number; j: number; exact: boolean; distance: number; similarity: number }[]): DuplicateGroup[] {
  const parent = paths.map((_, i) => i);
  const find = (x: number): number => {
    while (parent[x] !== x) x = parent[x] = parent[parent[x]];
    return x;
  };
  for (const p of pairs) {
    const a = find(p.i);
    const b = find(p.j);
    if (a !== b) parent[Math.max(a, b)] = Math.min(a, b);
  }
  const groups = new Map<number, { members: number[]; maxDistance: number; exact: boolean; minSimilarity: number }>();
  for (let i = 0; i < paths.length; i++) {
    const r = find(i);
    const g = groups.get(r) ?? { members: [], maxDistance: 0, exact: true, minSimilarity: 1 };
    g.members.push(i);
    groups.set(r, g);
  }
  for (const p of pairs) {
    const g = groups.get(find(p.i))!;
    g.maxDistance = Math.max(g.maxDistance, p.distance);
    g.minSimilarity = Math.min(g.minSimilarity, p.similarity);
    if (!p.exact) g.exact = false;
  }
  return [...groups.values()]
    .filter((g) => g.members.length > 1)
    .map((g) => ({ members: g.members.map((i) => paths[i]).sort(), maxDistance: g.maxDistance, exact: g.exact, minSimilarity: g.minSimilarity }))
    .sort((a, b) => (a.members[0] < b.members[0] ? -1 : 1));
}

/** The pairs judged the same eye: exact copies, and candidates whose similarity reaches the threshold. */
export function duplicatePairs(scored: ScoredPair[], similarity = DEFAULT_SIMILARITY): ScoredPair[] {
  return scored.filter((p) => p.exact || p.similarity >= similarity);
}

/**
 * Finds groups of copies and repeat photographs of the same eye among the images (all folders at once, so that
 * groups across the labelled and unlabelled folders are found).
 */
export async function findDuplicateGroups(paths: string[], opts: DuplicateOptions = {}): Promise<DuplicateGroup[]> {
  const fps = await fingerprintFiles(paths, opts);
  const scored = scorePairs(fps, { progressLabel: opts.progressLabel && 'comparing' });
  return groupPairs(paths, duplicatePairs(scored, opts.similarity ?? DEFAULT_SIMILARITY));
}

export { hashToHex };
