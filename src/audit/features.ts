import { BORDER_LEVEL, DEFAULT_PREPROCESS } from '../data/preprocess.js';
import type { PreprocessSettings, PreprocessedBytes } from '../data/preprocess.js';

/**
 * Plain image statistics: a small feature vector per photo computed without any model, from the preprocessed disc
 * crop (RGB, 224 px, the cache's bytes) and its crop geometry (the original photo's size). They describe the camera
 * and the way it was used (resolution, framing, exposure, colour balance, sharpness), not the eye's disease, so a
 * classifier that predicts the source from them measures how recognisable each source is.
 */

/**
 * The preprocessing the statistics are computed on: the default disc crop at 224 px in RGB, without CLAHE, masks or
 * local-mean normalisation (those remove exactly the cues the audit looks for). The same cache key as an RGB 224 px
 * model's inputs (normalisation is not part of the key), so a model's embedding run shares the cache.
 */
export const AUDIT_PREPROCESS: PreprocessSettings = { ...DEFAULT_PREPROCESS, channels: 'rgb', size: 224 };


/** The features, in the order of `imageStatistics`' output. */
export const IMAGE_STATISTICS = [
  'photo width',
  'photo height',
  'aspect ratio',
  'disc share of crop',
  'disc share of photo',
  'border brightness',
  'R mean',
  'G mean',
  'B mean',
  'R std',
  'G std',
  'B std',
  'R p10',
  'R p50',
  'R p90',
  'G p10',
  'G p50',
  'G p90',
  'B p10',
  'B p50',
  'B p90',
  'G sharpness',
  'R/G',
  'B/G',
  'saturation',
] as const;

export type ImageStatistic = (typeof IMAGE_STATISTICS)[number];

/**
 * The statistics that describe the photo file rather than the crop the network sees: its size and how much of it the
 * disc covers. They often tell how a data set was exported (vietai's photos were resized to 512×512) more than the
 * camera; the audit also reports the source's predictability without them (`pixelStatistics`).
 */
export const PHOTO_GEOMETRY_STATISTICS: readonly ImageStatistic[] = ['photo width', 'photo height', 'aspect ratio', 'disc share of photo'];

/** The columns of IMAGE_STATISTICS computed from the crop's pixels alone. */
export const PIXEL_STATISTICS: readonly ImageStatistic[] = IMAGE_STATISTICS.filter((s) => !PHOTO_GEOMETRY_STATISTICS.includes(s));

/** The value below which `q` of the histogram's mass lies (nearest rank on a 256-bin histogram). */
function histogramQuantile(hist: Uint32Array, total: number, q: number): number {
  if (total === 0) return 0;
  const rank = Math.max(1, Math.ceil(q * total));
  let seen = 0;
  for (let v = 0; v < 256; v++) {
    seen += hist[v];
    if (seen >= rank) return v;
  }
  return 255;
}

/**
 * The statistics of one preprocessed RGB crop (see IMAGE_STATISTICS), as a Float64Array:
 * - photo width, height (original pixels) and aspect ratio (width / height), from the crop geometry;
 * - disc share of crop: the fraction of the square crop brighter than the border (the field of view's size after
 *   cropping: a disc clipped at the top and bottom covers less); disc share of photo: the disc's area in original
 *   pixels over the photo's (how the camera frames the eye);
 * - border brightness: the mean brightest channel of the non-disc pixels (the border's black level and noise);
 * - per channel over the disc: mean, std and the 10th, 50th and 90th percentiles, in 0..255;
 * - G sharpness: the variance of the 4-neighbour Laplacian of the green channel over the disc's interior pixels;
 * - R/G and B/G: the ratios of the channel means over the disc (colour balance); saturation: the mean of
 *   (max − min) / max over the disc.
 * A crop with no disc pixel gives zeros for the disc statistics.
 */
export function imageStatistics(img: PreprocessedBytes): Float64Array {
  if (img.channels !== 3) throw new Error(`image statistics need RGB bytes (got ${img.channels} channels)`);
  const { pixels, size, geometry } = img;
  const n = size * size;
  const disc = new Uint8Array(n);
  const hist = [new Uint32Array(256), new Uint32Array(256), new Uint32Array(256)];
  const sum = [0, 0, 0];
  const sumSq = [0, 0, 0];
  let discCount = 0;
  let borderSum = 0;
  let satSum = 0;
  for (let i = 0; i < n; i++) {
    const r = pixels[3 * i];
    const g = pixels[3 * i + 1];
    const b = pixels[3 * i + 2];
    const max = r > g ? (r > b ? r : b) : g > b ? g : b;
    if (max <= BORDER_LEVEL) {
      borderSum += max;
      continue;
    }
    const min = r < g ? (r < b ? r : b) : g < b ? g : b;
    disc[i] = 1;
    discCount++;
    satSum += (max - min) / max;
    hist[0][r]++;
    hist[1][g]++;
    hist[2][b]++;
    sum[0] += r;
    sum[1] += g;
    sum[2] += b;
    sumSq[0] += r * r;
    sumSq[1] += g * g;
    sumSq[2] += b * b;
  }
  // Laplacian of green where the pixel and its four neighbours are all disc (the rim's step would dominate otherwise).
  let lapSum = 0;
  let lapSq = 0;
  let lapCount = 0;
  for (let y = 1; y < size - 1; y++) {
    for (let x = 1; x < size - 1; x++) {
      const i = y * size + x;
      if (!disc[i] || !disc[i - 1] || !disc[i + 1] || !disc[i - size] || !disc[i + size]) continue;
      const lap = pixels[3 * (i - 1) + 1] + pixels[3 * (i + 1) + 1] + pixels[3 * (i - size) + 1] + pixels[3 * (i + size) + 1] - 4 * pixels[3 * i + 1];
      lapSum += lap;
      lapSq += lap * lap;
      lapCount++;
    }
  }
  const mean = sum.map((s) => (discCount > 0 ? s / discCount : 0));
  const std = sumSq.map((s, c) => (discCount > 0 ? Math.sqrt(Math.max(0, s / discCount - mean[c] * mean[c])) : 0));
  const q = (c: number, p: number) => histogramQuantile(hist[c], discCount, p);
  const lapMean = lapCount > 0 ? lapSum / lapCount : 0;
  const scale = geometry.side / size;
  const out = new Float64Array(IMAGE_STATISTICS.length);
  let k = 0;
  out[k++] = geometry.width;
  out[k++] = geometry.height;
  out[k++] = geometry.height > 0 ? geometry.width / geometry.height : 0;
  out[k++] = discCount / n;
  out[k++] = geometry.width * geometry.height > 0 ? (discCount * scale * scale) / (geometry.width * geometry.height) : 0;
  out[k++] = n > discCount ? borderSum / (n - discCount) : 0;
  for (let c = 0; c < 3; c++) out[k++] = mean[c];
  for (let c = 0; c < 3; c++) out[k++] = std[c];
  for (let c = 0; c < 3; c++) for (const p of [0.1, 0.5, 0.9]) out[k++] = q(c, p);
  out[k++] = lapCount > 0 ? lapSq / lapCount - lapMean * lapMean : 0;
  // +1 keeps the ratios finite on a (nearly) black green channel
  out[k++] = (mean[0] + 1) / (mean[1] + 1);
  out[k++] = (mean[2] + 1) / (mean[1] + 1);
  out[k++] = discCount > 0 ? satSum / discCount : 0;
  return out;
}
