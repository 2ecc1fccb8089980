import { basename } from 'node:path';
import type { CropGeometry } from '../data/preprocess.js';
import { bootstrapIntervals, type Interval } from '../eval/bootstrap.js';
import { InputError } from '../util/errors.js';
import type { LesionBox, LesionFormat, LesionTable } from '../data/lesions.js';
import { resampleDisc, type DiscMask } from './disc.js';
import type { Heatmap } from './heatmap.js';
import { heatmapOnPhoto } from './overlay.js';

/**
 * Localisation of heatmaps against expert lesion boxes (issue 17): does a map point at the lesions a specialist
 * marked? Two scores per map, both on the photograph's pixel grid and restricted to the fundus disc:
 *
 * - the **pointing game** (Zhang et al. 2016): 1 when the map's maximum lies inside a lesion box or within
 *   `tolerance` photo pixels of one, else 0. Where several pixels share the maximum (a flat map, a plateau of the
 *   upsampled map), the score is the share of those pixels that hit: the expected score of picking one at random;
 * - the **energy share** (Wang et al. 2020, "energy-based pointing game"): the map's sum inside the boxes over its sum
 *   over the disc.
 *
 * The same two are computed for two maps that know nothing of the image: a **centre prior** (a Gaussian at the disc's
 * centre, σ = CENTRE_PRIOR_SIGMA of the crop's side) and a **uniform map over the disc** (whose energy share is the
 * boxes' share of the disc's area and whose pointing score is the share of the disc within tolerance of a box: the
 * chance levels). A method localises when it beats both.
 */

export { DEFAULT_LESION_CLASS, DEFAULT_LESION_TYPES, parseLesions, readLesions } from '../data/lesions.js';
export type { LesionBox, LesionFormat, LesionTable } from '../data/lesions.js';

/** The method names of the two baseline rows of a report. */
const CENTRE_PRIOR = 'centre prior';
const UNIFORM_DISC = 'uniform disc';

/** Default pointing-game tolerance in photo pixels: 15 px is 2.3 % of a shipped 640 px IDRiD photo (about 100 px of the 4288 px original), a sixth of one stride-32 cell of a 224 px model there. */
export const DEFAULT_TOLERANCE_PX = 15;
/** The centre prior's σ as a fraction of the crop square's side (half the disc's radius). */
export const CENTRE_PRIOR_SIGMA = 0.25;
/** Scoring runs on the photo's own grid up to this long side, on a proportionally scaled grid beyond it. */
export const MAX_GRID_SIDE = 1024;

/**
 * Checks the boxes against the photo they belong to: a box reaching well past the photo (more than 1 % of its size,
 * plus a pixel) means the boxes were drawn on another resolution of the photo (the original 4288 px IDRiD instead of
 * the shipped 640 px one, or the other way round), and scores would silently be wrong.
 */
export function checkBoxes(boxes: LesionBox[], width: number, height: number, lesionsFile: string, photo: string): void {
  const slackX = 1 + 0.01 * width;
  const slackY = 1 + 0.01 * height;
  for (const b of boxes) {
    if (b.x0 < -slackX || b.y0 < -slackY || b.x1 > width + slackX || b.y1 > height + slackY) {
      throw new InputError(
        `the box (${b.x0}, ${b.y0})–(${b.x1}, ${b.y1}) lies outside ${basename(photo)}, which is ${width}x${height}: are the boxes for another resolution of this photograph?`,
        { file: lesionsFile, line: b.line },
      );
    }
  }
}

/** Everything about one photograph that scoring its maps needs: the disc and the boxes on the scoring grid. */
export interface LocalisationGrid {
  /** The grid: the photo scaled by `scale` (1 up to MAX_GRID_SIDE). */
  width: number;
  height: number;
  scale: number;
  /** The crop geometry scaled onto the grid (maps are upsampled onto it exactly as overlays are). */
  geometry: CropGeometry;
  disc: DiscMask;
  /** 1 where the pixel centre lies in a box (any kept lesion type). */
  inBox: Uint8Array;
  /** 1 where the pixel centre lies within the tolerance of a box (inBox included). */
  nearBox: Uint8Array;
  /** Shares of the disc's pixels in and near the boxes: the uniform map's energy share and pointing score. */
  boxShare: number;
  nearShare: number;
  tolerancePx: number;
}

/**
 * The scoring grid of one photo: `disc` is its disc mask at full resolution (disc.ts), boxes in photo pixels,
 * `tolerancePx` in photo pixels.
 */
export function localisationGrid(
  disc: DiscMask,
  geometry: CropGeometry,
  boxes: LesionBox[],
  tolerancePx: number,
  maxSide = MAX_GRID_SIDE,
): LocalisationGrid {
  const W = geometry.width;
  const H = geometry.height;
  const scale = Math.min(1, maxSide / Math.max(W, H));
  const width = scale === 1 ? W : Math.max(1, Math.round(W * scale));
  const height = scale === 1 ? H : Math.max(1, Math.round(H * scale));
  const g: CropGeometry =
    scale === 1 ? geometry : { width, height, x: geometry.x * scale, y: geometry.y * scale, side: geometry.side * scale };
  const d = resampleDisc(disc, width, height);
  const inBox = new Uint8Array(width * height);
  const nearBox = new Uint8Array(width * height);
  const tol = tolerancePx;
  for (const b of boxes) {
    // Grid pixel (gx, gy) has its centre at photo ((gx + 0.5) / scale, (gy + 0.5) / scale).
    const gx0 = Math.max(0, Math.floor((b.x0 - tol) * scale - 0.5));
    const gx1 = Math.min(width - 1, Math.ceil((b.x1 + tol) * scale - 0.5));
    const gy0 = Math.max(0, Math.floor((b.y0 - tol) * scale - 0.5));
    const gy1 = Math.min(height - 1, Math.ceil((b.y1 + tol) * scale - 0.5));
    for (let gy = gy0; gy <= gy1; gy++) {
      const Y = (gy + 0.5) / scale;
      const dy = Y < b.y0 ? b.y0 - Y : Y > b.y1 ? Y - b.y1 : 0;
      for (let gx = gx0; gx <= gx1; gx++) {
        const X = (gx + 0.5) / scale;
        const dx = X < b.x0 ? b.x0 - X : X > b.x1 ? X - b.x1 : 0;
        const i = gy * width + gx;
        if (dx === 0 && dy === 0) inBox[i] = 1;
        if (dx * dx + dy * dy <= tol * tol) nearBox[i] = 1;
      }
    }
  }
  let inside = 0;
  let near = 0;
  for (let i = 0; i < inBox.length; i++) {
    if (!d.inside[i]) continue;
    inside += inBox[i];
    near += nearBox[i];
  }
  const n = Math.max(1, d.count);
  return { width, height, scale, geometry: g, disc: d, inBox, nearBox, boxShare: inside / n, nearShare: near / n, tolerancePx };
}

/** The scores of one map on one photo. */
export interface MapScore {
  /** Pointing game: 1 hit, 0 miss; between when the maximum is shared by several pixels (the share that hit). */
  pointing: number;
  /** The map's share of its energy (sum) over the disc that lies inside the boxes. */
  energy: number;
  /** Where the maximum is (the first such pixel, in photo pixels, its centre). */
  peak: [number, number];
  /** The map's maximum over the photo lies outside the disc (in the black border): the masked overlay hides it. */
  peakOffDisc: boolean;
  /** The map is zero over the whole disc: scored as the uniform map (it says nothing). */
  empty: boolean;
}

/** Relative tolerance under which two map values count as the same maximum. */
const TIE = 1e-6;

/**
 * Scores a map given on the grid (`grid.width` × `grid.height`, NaN where the model saw nothing): both scores over the
 * disc only. An empty map (zero on the whole disc) scores as the uniform map does.
 */
export function scoreGridMap(map: Float32Array, grid: LocalisationGrid): MapScore {
  const { inside } = grid.disc;
  let max = -Infinity;
  let maxOff = -Infinity;
  let total = 0;
  let inBoxes = 0;
  for (let i = 0; i < map.length; i++) {
    const v = map[i];
    if (!(v >= 0)) continue; // NaN: outside the crop square
    if (!inside[i]) {
      if (v > maxOff) maxOff = v;
      continue;
    }
    if (v > max) max = v;
    total += v;
    if (grid.inBox[i]) inBoxes += v;
  }
  const empty = !(total > 0);
  const floor = empty ? -Infinity : max - TIE * Math.abs(max);
  let ties = 0;
  let hits = 0;
  let first = -1;
  for (let i = 0; i < map.length; i++) {
    if (!inside[i]) continue;
    const v = empty ? 0 : map[i];
    if (!(v >= floor)) continue;
    if (first < 0) first = i;
    ties++;
    hits += grid.nearBox[i];
  }
  const peakX = first < 0 ? NaN : ((first % grid.width) + 0.5) / grid.scale;
  const peakY = first < 0 ? NaN : (Math.floor(first / grid.width) + 0.5) / grid.scale;
  return {
    pointing: ties > 0 ? hits / ties : grid.nearShare,
    energy: empty ? grid.boxShare : inBoxes / total,
    peak: [peakX, peakY],
    peakOffDisc: !empty && maxOff > max,
    empty,
  };
}

/** A heatmap over the network input (normalised, as overlays show it), upsampled onto the grid as overlays do. */
export function heatmapOnGrid(heatmap: Heatmap, grid: LocalisationGrid): Float32Array {
  return heatmapOnPhoto(heatmap, grid.geometry).data;
}

/** Scores a heatmap over the network input on one photo's grid. */
export function scoreHeatmap(heatmap: Heatmap, grid: LocalisationGrid): MapScore {
  return scoreGridMap(heatmapOnGrid(heatmap, grid), grid);
}

/** The centre prior on the grid: a Gaussian at the crop square's centre (the disc's), σ = CENTRE_PRIOR_SIGMA × side. */
export function centrePriorMap(grid: LocalisationGrid): Float32Array {
  const g = grid.geometry;
  const cx = g.x + g.side / 2;
  const cy = g.y + g.side / 2;
  const s2 = 2 * (CENTRE_PRIOR_SIGMA * g.side) ** 2;
  const map = new Float32Array(grid.width * grid.height);
  for (let y = 0; y < grid.height; y++) {
    const dy = y + 0.5 - cy;
    for (let x = 0; x < grid.width; x++) {
      const dx = x + 0.5 - cx;
      map[y * grid.width + x] = Math.exp(-(dx * dx + dy * dy) / s2);
    }
  }
  return map;
}

/** The baselines' scores on one photo. */
export interface BaselineScores {
  centre: { pointing: number; energy: number };
  uniform: { pointing: number; energy: number };
}

export function baselineScores(grid: LocalisationGrid): BaselineScores {
  const c = scoreGridMap(centrePriorMap(grid), grid);
  return { centre: { pointing: c.pointing, energy: c.energy }, uniform: { pointing: grid.nearShare, energy: grid.boxShare } };
}

/** What `fundus explain --lesions` scores: the boxes, the class they are ground truth for, and the tolerance. */
export interface LocalisationJob {
  lesions: LesionTable;
  lesionClass: string;
  tolerancePx: number;
  resamples?: number;
  seed?: number;
  level?: number;
}

/** One map's scores as the manifest lists it (on its entry). */
export interface EntryLocalisation {
  pointing: number;
  energy: number;
  /** The map's maximum in photo pixels. */
  peak: [number, number];
  peakOffDisc: boolean;
  empty: boolean;
}

/** One photo's ground truth and baselines as the manifest lists them (on its image). */
export interface ImageLocalisation {
  boxes: { lesion: string; x0: number; y0: number; x1: number; y1: number }[];
  /** Share of the disc inside the boxes / within the tolerance of a box: the uniform map's two scores. */
  boxShare: number;
  nearShare: number;
  centre: { pointing: number; energy: number };
  discPixels: number;
  /** The scoring grid's scale relative to the photo (1: the photo's own pixels). */
  gridScale: number;
}

/** A summary row: a method's (or baseline's) mean scores over the photographs with boxes, with bootstrap intervals. */
export interface LocalisationRow {
  /** A CAM method, or `centre prior` / `uniform disc`. */
  method: string;
  className: string;
  direction: 'for' | 'against';
  /** Photographs (with boxes) scored. */
  n: number;
  pointing: number;
  pointingCi: Interval;
  energy: number;
  energyCi: Interval;
  /** Mean energy share over the uniform map's mean energy share (the boxes' mean share of the disc). */
  energyRatio: number;
  energyRatioCi: Interval;
  /** Maps whose maximum over the photo lies in the black border (hidden by the masked overlay). Methods only. */
  peakOffDisc?: number;
  /** Maps that were zero over the whole disc (scored as uniform). Methods only. */
  empty?: number;
  /** Photographs the model calls positive for the class (probability at or above its threshold). Methods only. */
  predictedPositive?: number;
}

export interface LocalisationReport {
  lesions: string;
  format: LesionFormat;
  lesionTypes: string[];
  lesionClass: string;
  tolerancePx: number;
  centrePriorSigma: number;
  /** Input photographs that had boxes (scored) and that had none (not scored). */
  imagesWithBoxes: number;
  imagesWithoutBoxes: number;
  boxes: number;
  bootstrap: { resamples: number; level: number; seed: number; unit: 'photograph' };
  rows: LocalisationRow[];
}

/** Per-map scores collected while explaining, for `summarizeLocalisation`. */
export interface ScoredMap {
  image: number;
  method: string;
  className: string;
  direction: 'for' | 'against';
  score: MapScore;
  positive: boolean;
}

/**
 * One row per (class, direction) and method, then the two baselines over the same photographs; the lesion class
 * first. Intervals are percentile bootstrap intervals over photographs, all rows of a group resampled together (so
 * that a method and its baselines are compared on the same resamples).
 */
export function summarizeLocalisation(
  maps: ScoredMap[],
  baselines: Map<number, BaselineScores>,
  job: LocalisationJob,
  counts: { withBoxes: number; withoutBoxes: number; boxes: number },
): LocalisationReport {
  const resamples = job.resamples ?? 1000;
  const level = job.level ?? 0.95;
  const seed = job.seed ?? 0;
  const groups = new Map<string, ScoredMap[]>();
  for (const m of maps) {
    const key = `${m.className}\u0000${m.direction}`;
    let g = groups.get(key);
    if (!g) groups.set(key, (g = []));
    g.push(m);
  }
  const keys = [...groups.keys()].sort((a, b) => {
    const rank = (k: string) => (k === `${job.lesionClass}\u0000for` ? 0 : 1);
    return rank(a) - rank(b);
  });
  const rows: LocalisationRow[] = [];
  for (const key of keys) {
    const group = groups.get(key)!;
    const [className, direction] = key.split('\u0000') as [string, 'for' | 'against'];
    const images = [...new Set(group.map((m) => m.image))].sort((a, b) => a - b);
    const index = new Map(images.map((im, i) => [im, i]));
    const methods = [...new Set(group.map((m) => m.method))];
    const n = images.length;
    // series[s] = per-photo [pointing, energy]; methods first, then centre and uniform.
    const series: { name: string; pointing: Float64Array; energy: Float64Array; maps?: ScoredMap[] }[] = methods.map((method) => {
      const ms = group.filter((m) => m.method === method);
      const pointing = new Float64Array(n).fill(NaN);
      const energy = new Float64Array(n).fill(NaN);
      for (const m of ms) {
        pointing[index.get(m.image)!] = m.score.pointing;
        energy[index.get(m.image)!] = m.score.energy;
      }
      return { name: method, pointing, energy, maps: ms };
    });
    for (const [name, pick] of [
      [CENTRE_PRIOR, (b: BaselineScores) => b.centre],
      [UNIFORM_DISC, (b: BaselineScores) => b.uniform],
    ] as const) {
      const pointing = new Float64Array(n);
      const energy = new Float64Array(n);
      images.forEach((im, i) => {
        const b = pick(baselines.get(im)!);
        pointing[i] = b.pointing;
        energy[i] = b.energy;
      });
      series.push({ name, pointing, energy });
    }
    const uniform = series[series.length - 1].energy;
    const mean = (x: Float64Array, w?: Float64Array) => {
      let s = 0;
      let sw = 0;
      for (let i = 0; i < x.length; i++) {
        const wi = w ? w[i] : 1;
        if (wi === 0 || Number.isNaN(x[i])) continue;
        s += wi * x[i];
        sw += wi;
      }
      return sw > 0 ? s / sw : NaN;
    };
    const stats = (w: Float64Array | undefined, out: Float64Array | number[]) => {
      const u = mean(uniform, w);
      series.forEach((s, k) => {
        const e = mean(s.energy, w);
        out[3 * k] = mean(s.pointing, w);
        out[3 * k + 1] = e;
        out[3 * k + 2] = u > 0 ? e / u : NaN;
      });
    };
    const point: number[] = new Array(3 * series.length).fill(NaN);
    stats(undefined, point);
    const ci = bootstrapIntervals(new Int32Array(n), 3 * series.length, (w, out) => stats(w, out), { resamples, seed, level });
    series.forEach((s, k) => {
      const row: LocalisationRow = {
        method: s.name,
        className,
        direction,
        n,
        pointing: point[3 * k],
        pointingCi: ci[3 * k],
        energy: point[3 * k + 1],
        energyCi: ci[3 * k + 1],
        energyRatio: point[3 * k + 2],
        energyRatioCi: ci[3 * k + 2],
      };
      if (s.maps) {
        row.peakOffDisc = s.maps.filter((m) => m.score.peakOffDisc).length;
        row.empty = s.maps.filter((m) => m.score.empty).length;
        row.predictedPositive = s.maps.filter((m) => m.positive).length;
      }
      rows.push(row);
    });
  }
  return {
    lesions: job.lesions.file,
    format: job.lesions.format,
    lesionTypes: job.lesions.kept,
    lesionClass: job.lesionClass,
    tolerancePx: job.tolerancePx,
    centrePriorSigma: CENTRE_PRIOR_SIGMA,
    imagesWithBoxes: counts.withBoxes,
    imagesWithoutBoxes: counts.withoutBoxes,
    boxes: counts.boxes,
    bootstrap: { resamples, level, seed, unit: 'photograph' },
    rows,
  };
}

const fmt = (v: number, digits: number) => (Number.isFinite(v) ? v.toFixed(digits) : 'n/a');
const withCi = (v: number, ci: Interval, digits: number, suffix = '') =>
  `${fmt(v, digits)}${suffix}${ci ? ` [${fmt(ci[0], digits)}, ${fmt(ci[1], digits)}]` : ''}`;

/**
 * The method that localises the report's lesion class best, as the localisation benchmark records it for a model
 * (fundus.json `explanation`): the highest energy-in-boxes ratio to the uniform disc among the methods whose ratio's
 * whole interval lies above the centre prior's ratio, i.e. maps that put reliably more of their energy on the lesions
 * than a blob in the middle of the disc. The pointing game is reported but not part of the rule: on the 43 codras test
 * photographs its intervals (about ±0.14) overlap the centre prior's for every method measured, so it cannot tell
 * them apart. Undefined when no method qualifies (or the report has no intervals: a run with no resamples).
 */
export function bestLocalisingMethod(report: LocalisationReport): LocalisationRow | undefined {
  const ofClass = report.rows.filter((r) => r.className === report.lesionClass && r.direction === 'for');
  const centre = ofClass.find((r) => r.method === CENTRE_PRIOR);
  if (!centre) return undefined;
  const qualified = ofClass.filter((r) => r.method !== CENTRE_PRIOR && r.method !== UNIFORM_DISC && r.energyRatioCi !== null && r.energyRatioCi[0] > centre.energyRatio);
  return qualified.reduce<LocalisationRow | undefined>((best, r) => (best && best.energyRatio >= r.energyRatio ? best : r), undefined);
}

/** One line for fundus.json's `explanation.chosenBy`: the row's scores beside the centre prior's, with intervals. */
export function describeLocalisation(row: LocalisationRow, report: LocalisationReport): string {
  const centre = report.rows.find((r) => r.className === row.className && r.direction === row.direction && r.method === CENTRE_PRIOR);
  return (
    `pointing ${withCi(row.pointing, row.pointingCi, 2)}, energy in boxes ${withCi(row.energyRatio, row.energyRatioCi, 2, '×')} the uniform disc` +
    (centre ? ` (centre prior ${fmt(centre.pointing, 2)}, ${fmt(centre.energyRatio, 2)}×)` : '') +
    ` on ${row.n} photographs, ${row.className}`
  );
}

/**
 * The report as a Markdown table (readable as plain text too): one line per method and baseline, grouped by class.
 */
export function formatLocalisationTable(r: LocalisationReport): string {
  const head = ['class', 'method', 'n', 'pointing game', 'energy in boxes', '× uniform', 'peak off disc', 'positive'];
  const body = r.rows.map((row) => [
    `${row.direction === 'against' ? 'against ' : ''}${row.className}`,
    row.method,
    String(row.n),
    withCi(row.pointing, row.pointingCi, 2),
    withCi(row.energy, row.energyCi, 3),
    withCi(row.energyRatio, row.energyRatioCi, 2),
    row.peakOffDisc === undefined ? '' : String(row.peakOffDisc),
    row.predictedPositive === undefined ? '' : `${row.predictedPositive}/${row.n}`,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => (i < 2 ? ':' + '-'.repeat(w + 1) : '-'.repeat(w + 1) + ':')).join('|')}|`;
  const pct = Math.round(100 * r.bootstrap.level);
  return [
    `Localisation against ${basename(r.lesions)} (${r.lesionTypes.join(', ')}; ${r.boxes} boxes on ${r.imagesWithBoxes} photographs` +
      `${r.imagesWithoutBoxes ? `, ${r.imagesWithoutBoxes} without boxes not scored` : ''}); pointing tolerance ${r.tolerancePx} px; ` +
      `${pct} % bootstrap intervals over photographs (${r.bootstrap.resamples} resamples).`,
    '',
    line(head),
    rule,
    ...body.map(line),
  ].join('\n');
}
