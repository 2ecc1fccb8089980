import { InputError } from '../util/errors.js';
import { BORDER_LEVEL, cropByArea, type CropGeometry, type PreprocessSettings } from './preprocess.js';

/**
 * The gradability gate (issue #20): before a network is shown a picture, is it a fundus photograph at all (a bright,
 * round, textured, red-orange disc on the camera's dark field stop) and can it be graded (enough pixels, exposure,
 * focus)? A network answers every input with confident probabilities, a black frame included; this gate lets the
 * tools answer "ungradable: <reason>" instead.
 *
 * Everything is measured on the disc square that preprocessing finds (findDiscSquare), resampled to ANALYSIS_SIZE,
 * so the measures do not depend on the photograph's resolution or on the model's preprocessing. The thresholds were
 * set from the measures of every VietAI and external photograph and of made-up frames
 * (benchmarks/scripts/gradability.ts, benchmarks/results/gradability.json, docs/gradability.md).
 */

/** Side of the square the gate analyses; the disc square of any photo is resampled (area average) to it. */
export const ANALYSIS_SIZE = 128;

/** Why a picture is not graded. */
export const UNGRADABLE_REASONS = ['too-small', 'too-dark', 'no-disc', 'field-cut', 'overexposed', 'not-fundus-colour', 'no-detail', 'noise'] as const;
export type UngradableReason = (typeof UNGRADABLE_REASONS)[number];

/**
 * What the gate measured, all on the ANALYSIS_SIZE square around the disc (radii in half-sides of the square; luma is
 * Rec. 601, 0..255). A pixel is "light" when brighter than 0.4 × the interior's median luma and the dark-border level.
 */
export interface GradabilityMeasures {
  /** Size of the photograph. */
  width: number;
  height: number;
  /** Median luma of the interior (radius < 0.8): the retina's exposure. */
  interiorLuma: number;
  /**
   * Share of light pixels in the square's corners (radius > 1.25) that lie inside the photograph: ~0 where a dark
   * field stop surrounds the disc. Where the corners are all padding (the square overhangs the photo), 0 when the disc
   * search found a dark border beside the disc (the square is narrower or shorter than the photo), else 1: no field
   * stop was seen.
   */
  cornerLight: number;
  /** Share of the inscribed circle that is light: ~1 for a whole disc, 0.8–0.9 for one clipped at the top and bottom. */
  fill: number;
  /** Share of disc pixels with green ≥ 250: blown-out retina (red saturates on many good photographs, green does not). */
  saturated: number;
  /** (mean red − mean blue) / mean luma of the disc: fundus photographs are red to orange, never blue. */
  redness: number;
  /** Mean (max − min of R, G, B) / mean luma of the disc: 0 for a grey picture. */
  chroma: number;
  /**
   * Mean |green blurred (σ 4 px) − its mean at the same radius| / mean green in the interior: the structure that a
   * radially symmetric shading lacks (optic disc, macula, vessels, uneven illumination). Even the haziest photographs
   * (dense media opacity) keep some; a flat or shaded disc has none.
   */
  structure: number;
  /** Mean |4-neighbour Laplacian| / mean green in the interior: fine detail; far above any photograph for noise and patterns. */
  sharpness: number;
}

export interface Gradability {
  gradable: boolean;
  /** Empty when gradable; otherwise every reason found, most basic first. */
  reasons: UngradableReason[];
  measures: GradabilityMeasures;
}

/** The limits a picture must meet; docs/gradability.md says how each was chosen. */
export interface GradabilityThresholds {
  /** Shorter side, pixels (what `data check` asks of training images). */
  minSide: number;
  minInteriorLuma: number;
  maxCornerLight: number;
  /** Below it: no disc; between it and minFill: too little of the disc in the frame. */
  minDiscFill: number;
  minFill: number;
  maxSaturated: number;
  minRedness: number;
  minChroma: number;
  minStructure: number;
  maxSharpness: number;
}

export const GRADABILITY_THRESHOLDS: GradabilityThresholds = {
  minSide: 64,
  minInteriorLuma: 20,
  maxCornerLight: 0.1,
  minDiscFill: 0.25,
  minFill: 0.6,
  maxSaturated: 0.4,
  minRedness: -0.1,
  minChroma: 0.06,
  minStructure: 0.01,
  maxSharpness: 0.3,
};

/** The disc square at ANALYSIS_SIZE, by the same disc search and area resampling as preprocessing. */
const ANALYSIS_SETTINGS: PreprocessSettings = {
  crop: true,
  size: ANALYSIS_SIZE,
  channels: 'rgb',
  clahe: false,
  normalize: { mean: [0], std: [1] },
  resize: 'area',
};

/** Measures a picture (a path or encoded bytes). InputError when it cannot be read or decoded, as preprocessing. */
export async function measureGradability(input: string | Buffer): Promise<GradabilityMeasures> {
  const { rgb, geometry } = await cropByArea(input, ANALYSIS_SETTINGS);
  return measureSquare(rgb, ANALYSIS_SIZE, geometry);
}

/** Measures and judges a picture. */
export async function assessGradability(input: string | Buffer, thresholds = GRADABILITY_THRESHOLDS): Promise<Gradability> {
  return judgeGradability(await measureGradability(input), thresholds);
}

const luma = (r: number, g: number, b: number) => 0.299 * r + 0.587 * g + 0.114 * b;

/** Median of a 0..255 histogram with `count` entries. */
function histogramMedian(hist: Uint32Array, count: number): number {
  let seen = 0;
  for (let v = 0; v < hist.length; v++) {
    seen += hist[v];
    if (2 * seen > count) return v;
  }
  return 0;
}

/** Radius (in half-sides of the square) beyond which a pixel is a corner of the square: the field stop of a fundus photograph. */
const CORNER_RADIUS = 1.25;
/** The interior: well inside the circle, away from the field stop's rim and halo. */
const INTERIOR_RADIUS = 0.8;
/** Pixels brighter than this share of the interior's median luma (and than the dark-border level) are disc. */
const DISC_LEVEL = 0.4;
/** Half-width (analysis pixels) of the box blur before the radial profile is taken: vessel- and disc-scale structure, not noise. */
const STRUCTURE_RADIUS = 3;

/**
 * Mean of `values` over the `inside` pixels of the (2r+1)² box around each pixel (0 where none is inside), by running
 * sums: a normalised convolution like maskedGaussianBlur's, at a fraction of its cost, which matters because the gate
 * runs on every photograph before prediction.
 */
function maskedBoxBlur(values: Float32Array, inside: Uint8Array, size: number, r: number): Float32Array {
  const n = size * size;
  // Horizontal running sums of value × inside and of inside, then vertical running sums of those.
  const rowV = new Float32Array(n);
  const rowW = new Float32Array(n);
  for (let v = 0; v < size; v++) {
    const o = v * size;
    let sv = 0;
    let sw = 0;
    for (let u = -r; u < size; u++) {
      const add = u + r;
      if (add < size && inside[o + add]) {
        sv += values[o + add];
        sw++;
      }
      const drop = u - r - 1;
      if (drop >= 0 && inside[o + drop]) {
        sv -= values[o + drop];
        sw--;
      }
      if (u >= 0) {
        rowV[o + u] = sv;
        rowW[o + u] = sw;
      }
    }
  }
  const out = new Float32Array(n);
  for (let u = 0; u < size; u++) {
    let sv = 0;
    let sw = 0;
    for (let v = -r; v < size; v++) {
      const add = v + r;
      if (add < size) {
        sv += rowV[add * size + u];
        sw += rowW[add * size + u];
      }
      const drop = v - r - 1;
      if (drop >= 0) {
        sv -= rowV[drop * size + u];
        sw -= rowW[drop * size + u];
      }
      if (v >= 0) out[v * size + u] = sw > 0 ? sv / sw : 0;
    }
  }
  return out;
}

const RINGS = 64;
const radii = new Map<number, { radius: Float32Array; ring: Uint8Array }>();

/** Each pixel's distance from the centre of a `size`² square in half-sides, and its ring of the interior (cached per size). */
function radiusTable(size: number): { radius: Float32Array; ring: Uint8Array } {
  let t = radii.get(size);
  if (t) return t;
  const c = size / 2;
  const radius = new Float32Array(size * size);
  const ring = new Uint8Array(size * size);
  for (let v = 0; v < size; v++) {
    for (let u = 0; u < size; u++) {
      const d = Math.hypot(u + 0.5 - c, v + 0.5 - c) / c;
      radius[v * size + u] = d;
      ring[v * size + u] = Math.min(RINGS - 1, Math.floor((d / INTERIOR_RADIUS) * RINGS));
    }
  }
  t = { radius, ring };
  radii.set(size, t);
  return t;
}

/** The measures of a disc square (`size`² interleaved RGB, the crop `geometry` describes). */
export function measureSquare(rgb: Uint8Array, size: number, geometry: CropGeometry): GradabilityMeasures {
  const n = size * size;
  const { radius, ring } = radiusTable(size);
  const L = new Uint8Array(n);
  const interiorHist = new Uint32Array(256);
  let interiorCount = 0;
  for (let i = 0; i < n; i++) {
    const l = Math.round(luma(rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2]));
    L[i] = l;
    if (radius[i] < INTERIOR_RADIUS) {
      interiorHist[l]++;
      interiorCount++;
    }
  }
  const interiorLuma = histogramMedian(interiorHist, interiorCount);
  const level = Math.max(BORDER_LEVEL, DISC_LEVEL * interiorLuma);
  const disc = new Uint8Array(n);
  let circle = 0;
  let inDisc = 0;
  // Which columns and rows of the square lie inside the photograph (the rest is padding).
  const step = geometry.side / size;
  const inPhotoX = new Uint8Array(size);
  const inPhotoY = new Uint8Array(size);
  for (let k = 0; k < size; k++) {
    const x = geometry.x + (k + 0.5) * step;
    const y = geometry.y + (k + 0.5) * step;
    inPhotoX[k] = x >= 0 && x < geometry.width ? 1 : 0;
    inPhotoY[k] = y >= 0 && y < geometry.height ? 1 : 0;
  }
  let corners = 0;
  let cornersLight = 0;
  let sumR = 0;
  let sumG = 0;
  let sumB = 0;
  let chroma = 0;
  let sat = 0;
  for (let i = 0; i < n; i++) {
    const d = radius[i];
    const light = L[i] > level;
    if (d > CORNER_RADIUS && inPhotoX[i % size] && inPhotoY[(i / size) | 0]) {
      corners++;
      if (light) cornersLight++;
    }
    if (d > 1) continue;
    circle++;
    if (!light) continue;
    disc[i] = 1;
    inDisc++;
    const R = rgb[3 * i];
    const G = rgb[3 * i + 1];
    const B = rgb[3 * i + 2];
    sumR += R;
    sumG += G;
    sumB += B;
    chroma += Math.max(R, G, B) - Math.min(R, G, B);
    if (G >= 250) sat++;
  }
  const meanR = inDisc ? sumR / inDisc : 0;
  const meanG = inDisc ? sumG / inDisc : 0;
  const meanB = inDisc ? sumB / inDisc : 0;
  const discLuma = luma(meanR, meanG, meanB);

  // Green, where the retina's contrast is, on the interior's disc pixels whose 4-neighbours are disc too.
  const green = new Float32Array(n);
  for (let i = 0; i < n; i++) green[i] = rgb[3 * i + 1];
  const smooth = maskedBoxBlur(green, disc, size, STRUCTURE_RADIUS);
  const ringSum = new Float64Array(RINGS);
  const ringCount = new Float64Array(RINGS);
  const interior = new Uint8Array(n);
  let m = 0;
  let gSum = 0;
  let lap = 0;
  for (let i = size; i < n - size; i++) {
    if (!(radius[i] < INTERIOR_RADIUS && disc[i] && disc[i - 1] && disc[i + 1] && disc[i - size] && disc[i + size])) continue;
    interior[i] = 1;
    const g = green[i];
    m++;
    gSum += g;
    lap += Math.abs(4 * g - green[i - 1] - green[i + 1] - green[i - size] - green[i + size]);
    ringSum[ring[i]] += smooth[i];
    ringCount[ring[i]]++;
  }
  let asym = 0;
  for (let i = 0; i < n; i++) if (interior[i]) asym += Math.abs(smooth[i] - ringSum[ring[i]] / ringCount[ring[i]]);
  const gMean = m ? gSum / m : 0;
  const relative = (x: number) => (m && gMean > 0 ? x / m / gMean : 0);
  const round = (x: number, d = 4) => Math.round(x * 10 ** d) / 10 ** d;
  return {
    width: geometry.width,
    height: geometry.height,
    interiorLuma,
    cornerLight: round(corners ? cornersLight / corners : geometry.side < geometry.width || geometry.side < geometry.height ? 0 : 1),
    fill: round(circle ? inDisc / circle : 0),
    saturated: round(inDisc ? sat / inDisc : 0),
    redness: round(discLuma > 0 ? (meanR - meanB) / discLuma : 0),
    chroma: round(discLuma > 0 ? chroma / inDisc / discLuma : 0),
    structure: round(relative(asym)),
    sharpness: round(relative(lap)),
  };
}

/** The reasons a picture with these measures is not graded (none: gradable). */
export function judgeGradability(measures: GradabilityMeasures, t: GradabilityThresholds = GRADABILITY_THRESHOLDS): Gradability {
  const reasons: UngradableReason[] = [];
  const m = measures;
  if (Math.min(m.width, m.height) < t.minSide) reasons.push('too-small');
  if (m.interiorLuma < t.minInteriorLuma) reasons.push('too-dark');
  if (m.cornerLight > t.maxCornerLight || m.fill < t.minDiscFill) reasons.push('no-disc');
  else if (m.fill < t.minFill) reasons.push('field-cut');
  if (m.saturated > t.maxSaturated) reasons.push('overexposed');
  if (m.chroma < t.minChroma || m.redness < t.minRedness) reasons.push('not-fundus-colour');
  if (m.structure < t.minStructure) reasons.push('no-detail');
  if (m.sharpness > t.maxSharpness) reasons.push('noise');
  return { gradable: reasons.length === 0, reasons, measures };
}

/** A reason in words, for CLI output, API messages and the viewer. */
export function describeReason(r: UngradableReason, t: GradabilityThresholds = GRADABILITY_THRESHOLDS): string {
  switch (r) {
    case 'too-small':
      return `too small (the shorter side is under ${t.minSide} px)`;
    case 'too-dark':
      return 'too dark';
    case 'no-disc':
      return 'no fundus disc found (a round retina on a dark field stop)';
    case 'field-cut':
      return 'too little of the fundus disc is in the frame';
    case 'overexposed':
      return 'overexposed (the retina is blown out)';
    case 'not-fundus-colour':
      return 'not the colour of a fundus photograph';
    case 'no-detail':
      return 'no retinal detail (a flat or evenly shaded picture)';
    case 'noise':
      return 'noise or a pattern, not a photograph of the retina';
  }
}

/** All reasons in words, e.g. "too dark; no fundus disc found (…)". */
export function describeReasons(reasons: readonly UngradableReason[], t: GradabilityThresholds = GRADABILITY_THRESHOLDS): string {
  return reasons.map((r) => describeReason(r, t)).join('; ');
}

/**
 * A photograph the gate refused: an InputError (the user's input, reported without a stack trace) whose message is
 * "ungradable: <reasons>", carrying what was measured.
 */
export class UngradableError extends InputError {
  constructor(
    readonly gradability: Gradability,
    file?: string,
  ) {
    super(`ungradable: ${describeReasons(gradability.reasons)}`, { file });
    this.name = 'UngradableError';
  }
}
