import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { InputError } from '../util/errors.js';
import { seededRandom, shuffleInPlace } from './random.js';
import type { Dataset } from './labels.js';

export const PART_NAMES = ['train', 'validation', 'test'] as const;
export type PartName = (typeof PART_NAMES)[number];

/** The file names (CSV filenames) in each part of a split. */
export type SplitParts = Record<PartName, string[]>;

/** A split file's parts, and the file's exact text and sha256 (training copies it into the model directory). */
export interface SplitFile extends SplitParts {
  text: string;
  sha256: string;
}

/** Images and positives per class of one part. */
export interface PartCounts {
  images: number;
  labels: Record<string, number>;
}

/**
 * A train/validation/test assignment of a dataset's images (by CSV filename). Written once for the real data
 * (splits/vietai.json) so that every model is trained, tuned and tested on the same images.
 */
export interface Split {
  version: 1;
  seed: number;
  ratios: Record<PartName, number>;
  /** What was split, so that a split is never applied to another CSV by mistake. */
  source: { csv: string; csvSha256: string; images: number };
  parts: SplitParts;
  /** Groups of repeat photographs of the same eye (labelled filenames), each kept inside one part. */
  groups: string[][];
  /**
   * Unlabelled images (filenames in the unlabelled folder) that repeat a labelled image, with that image's part:
   * self-learning must not train on those linked to validation or test.
   */
  unlabeledLinks: Record<string, PartName>;
  /** How the groups were found. */
  duplicates: { method: string; similarity: number } | null;
  counts: Record<PartName, PartCounts>;
}

/** One indivisible unit of the split: a group of images (a single image or a near-duplicate group). */
export interface SplitUnit {
  /** Positives per class over the unit's images. */
  labels: number[];
  size: number;
}

/**
 * Iterative stratification for multi-label data (Sechidis, Tsoumakas and Vlahavas, 2011), over units that may hold
 * several images. The rarest remaining label is handled first: each unit carrying it goes to the part that still
 * wants most of that label (ties: the part that wants most images, then the seeded generator). Units without labels
 * fill the parts that want most images. Returns the part index of every unit; deterministic for a given `rng`.
 */
export function iterativeStratification(units: SplitUnit[], ratios: number[], rng: () => number): number[] {
  const C = units[0]?.labels.length ?? 0;
  const P = ratios.length;
  const total = ratios.reduce((a, b) => a + b, 0);
  const r = ratios.map((x) => x / total);
  const nImages = units.reduce((a, u) => a + u.size, 0);
  const wantImages = r.map((x) => x * nImages);
  const wantLabel = r.map((x) => Array.from({ length: C }, (_, k) => x * units.reduce((a, u) => a + u.labels[k], 0)));
  const assigned = new Array<number>(units.length).fill(-1);
  // a seeded order among units, so that ties do not always favour the CSV's first rows
  const order = shuffleInPlace(units.map((_, i) => i), rng);
  const place = (u: number, part: number): void => {
    assigned[u] = part;
    wantImages[part] -= units[u].size;
    for (let k = 0; k < C; k++) wantLabel[part][k] -= units[u].labels[k];
  };
  const pick = (score: (p: number) => number[]): number => {
    let best: number[] = [];
    let bestScore: number[] | undefined;
    for (let p = 0; p < P; p++) {
      if (r[p] === 0) continue;
      const s = score(p);
      const cmp = bestScore === undefined ? 1 : compare(s, bestScore);
      if (cmp > 0) {
        best = [p];
        bestScore = s;
      } else if (cmp === 0) best.push(p);
    }
    return best.length === 1 ? best[0] : best[Math.floor(rng() * best.length)];
  };
  for (;;) {
    // the label with the fewest positives among the units left (labels already used up are skipped)
    const remaining = new Array<number>(C).fill(0);
    for (const u of order) if (assigned[u] < 0) for (let k = 0; k < C; k++) remaining[k] += units[u].labels[k];
    let label = -1;
    for (let k = 0; k < C; k++) if (remaining[k] > 0 && (label < 0 || remaining[k] < remaining[label])) label = k;
    if (label < 0) break;
    for (const u of order) {
      if (assigned[u] >= 0 || units[u].labels[label] === 0) continue;
      place(u, pick((p) => [wantLabel[p][label], wantImages[p]]));
    }
  }
  for (const u of order) if (assigned[u] < 0) place(u, pick((p) => [wantImages[p]]));
  return assigned;
}

function compare(a: number[], b: number[]): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] > b[i] ? 1 : -1;
  return 0;
}

/** Per-part image and label counts. */
export function countParts(ds: Dataset, parts: Split['parts']): Record<PartName, PartCounts> {
  const byName = new Map(ds.images.map((im) => [im.filename, im]));
  const out = {} as Record<PartName, PartCounts>;
  for (const name of PART_NAMES) {
    const labels: Record<string, number> = Object.fromEntries(ds.classes.map((c) => [c, 0]));
    for (const f of parts[name]) {
      const l = byName.get(f)?.labels;
      if (l) ds.classes.forEach((c, k) => (labels[c] += l[k]));
    }
    out[name] = { images: parts[name].length, labels };
  }
  return out;
}

export interface MakeSplitOptions {
  seed: number;
  ratios: Record<PartName, number>;
  /** Groups of labelled filenames that must stay together (near-duplicates); other images are their own unit. */
  groups: string[][];
  source: Split['source'];
  unlabeledLinks?: Record<string, string[]>;
  duplicates: Split['duplicates'];
}

/** Splits a labelled dataset with iterative stratification over near-duplicate groups. */
export function makeSplit(ds: Dataset, opts: MakeSplitOptions): Split {
  const index = new Map(ds.images.map((im, i) => [im.filename, i]));
  const unitOf = new Array<number>(ds.images.length).fill(-1);
  const members: number[][] = [];
  for (const g of opts.groups) {
    const idx = [...new Set(g)].map((f) => index.get(f)).filter((i): i is number => i !== undefined);
    if (idx.length === 0) continue;
    // groups sharing an image are one unit
    const joined = [...new Set(idx.map((i) => unitOf[i]).filter((u) => u >= 0))];
    const unit = joined.length > 0 ? joined[0] : members.push([]) - 1;
    for (const other of joined.slice(1)) {
      for (const i of members[other]) unitOf[i] = unit;
      members[unit].push(...members[other]);
      members[other] = [];
    }
    for (const i of idx) {
      if (unitOf[i] === unit) continue;
      unitOf[i] = unit;
      members[unit].push(i);
    }
  }
  ds.images.forEach((_, i) => {
    if (unitOf[i] < 0) unitOf[i] = members.push([i]) - 1;
  });
  const live = members.filter((m) => m.length > 0).map((m) => m.sort((a, b) => a - b));
  live.sort((a, b) => a[0] - b[0]);
  const units: SplitUnit[] = live.map((m) => {
    const labels = new Array<number>(ds.classes.length).fill(0);
    for (const i of m) ds.images[i].labels?.forEach((v, k) => (labels[k] += v));
    return { labels, size: m.length };
  });
  const ratios = PART_NAMES.map((p) => opts.ratios[p]);
  const assigned = iterativeStratification(units, ratios, seededRandom(opts.seed));
  const parts: Split['parts'] = { train: [], validation: [], test: [] };
  live.forEach((m, u) => {
    for (const i of m) parts[PART_NAMES[assigned[u]]].push(ds.images[i].filename);
  });
  for (const p of PART_NAMES) parts[p].sort();
  const partOf = new Map<string, PartName>();
  for (const p of PART_NAMES) for (const f of parts[p]) partOf.set(f, p);
  const unlabeledLinks: Record<string, PartName> = {};
  for (const [u, linked] of Object.entries(opts.unlabeledLinks ?? {}).sort(([a], [b]) => (a < b ? -1 : 1))) {
    // an unlabelled image linked to several parts takes the strictest (test, then validation)
    const ps = linked.map((f) => partOf.get(f)).filter((p): p is PartName => p !== undefined);
    if (ps.length > 0) unlabeledLinks[u] = ps.includes('test') ? 'test' : ps.includes('validation') ? 'validation' : 'train';
  }
  const groups = live.filter((m) => m.length > 1).map((m) => m.map((i) => ds.images[i].filename).sort());
  return {
    version: 1,
    seed: opts.seed,
    ratios: opts.ratios,
    source: opts.source,
    parts,
    groups,
    unlabeledLinks,
    duplicates: opts.duplicates,
    counts: countParts(ds, parts),
  };
}

/** Reads and checks a split file; InputError naming the file on anything malformed. */
export async function readSplit(path: string): Promise<Split> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, 'utf8'));
  } catch (e) {
    throw new InputError(`cannot read the split: ${(e as Error).message}`, { file: path });
  }
  const s = raw as Split;
  const fail = (msg: string): never => {
    throw new InputError(msg, { file: path });
  };
  if (typeof s !== 'object' || s === null || s.version !== 1) fail('not a fundus split file (version 1 expected)');
  if (typeof s.parts !== 'object' || s.parts === null) fail('missing "parts"');
  const seen = new Map<string, PartName>();
  for (const p of PART_NAMES) {
    const list = s.parts[p];
    if (!Array.isArray(list) || list.some((f) => typeof f !== 'string')) fail(`"parts.${p}" must be a list of filenames`);
    for (const f of list) {
      const prev = seen.get(f);
      if (prev) fail(`'${f}' is in both ${prev} and ${p}`);
      seen.set(f, p);
    }
  }
  s.groups ??= [];
  s.unlabeledLinks ??= {};
  return s;
}

/** Reads a split file with `readSplit`'s checks (InputError naming it when malformed), keeping its exact text. */
export async function readSplitParts(path: string): Promise<SplitFile> {
  const split = await readSplit(path);
  const text = await readFile(path, 'utf8');
  const { train, validation, test } = split.parts;
  return { train, validation, test, text, sha256: createHash('sha256').update(text).digest('hex') };
}

/** The part of every filename of a split. */
export function partOf(split: Split): Map<string, PartName> {
  const m = new Map<string, PartName>();
  for (const p of PART_NAMES) for (const f of split.parts[p]) m.set(f, p);
  return m;
}
