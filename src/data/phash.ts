import sharp from 'sharp';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { InputError } from '../util/errors.js';
import { openPhoto } from './photo-source.js';

/** A 64-bit perceptual hash as two 32-bit halves (BigInt popcounts are far slower in the all-pairs loop). */
export interface Hash64 {
  hi: number;
  lo: number;
}

const N = 32; // the image is reduced to N×N before the DCT
const K = 8; // and the K×K lowest frequencies make the 64 bits

const COS: Float64Array = (() => {
  const t = new Float64Array(K * N);
  for (let u = 0; u < K; u++) for (let x = 0; x < N; x++) t[u * N + x] = Math.cos(((2 * x + 1) * u * Math.PI) / (2 * N));
  return t;
})();

/**
 * DCT perceptual hash (pHash) of an N×N greyscale image: the signs of its 8×8 lowest DCT frequencies against their
 * median. Robust to recompression, resizing and mild brightness/contrast changes. The DC term is always above the
 * median and exactly 31 of the other 63 are, so distances between two hashes are always even.
 */
export function dctHash(pixels: ArrayLike<number>): Hash64 {
  if (pixels.length !== N * N) throw new Error(`dctHash needs ${N}x${N} pixels`);
  // separable 2-D DCT-II: rows first (N×K), then columns (K×K)
  const rows = new Float64Array(N * K);
  for (let y = 0; y < N; y++) {
    for (let u = 0; u < K; u++) {
      let s = 0;
      for (let x = 0; x < N; x++) s += pixels[y * N + x] * COS[u * N + x];
      rows[y * K + u] = s;
    }
  }
  const coef = new Float64Array(K * K);
  for (let v = 0; v < K; v++) {
    for (let u = 0; u < K; u++) {
      let s = 0;
      for (let y = 0; y < N; y++) s += rows[y * K + u] * COS[v * N + y];
      coef[v * K + u] = s;
    }
  }
  // The DC term (overall brightness) would dominate the median, so it is left out of it.
  const sorted = Array.from(coef.subarray(1)).sort((a, b) => a - b);
  const median = sorted[31];
  let hi = 0;
  let lo = 0;
  for (let i = 0; i < 64; i++) {
    if (coef[i] > median) {
      if (i < 32) lo |= 1 << i;
      else hi |= 1 << (i - 32);
    }
  }
  return { hi: hi >>> 0, lo: lo >>> 0 };
}

function popcount32(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return (((x + (x >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}

export function hammingDistance(a: Hash64, b: Hash64): number {
  return popcount32((a.hi ^ b.hi) >>> 0) + popcount32((a.lo ^ b.lo) >>> 0);
}

export function hashToHex(h: Hash64): string {
  return h.hi.toString(16).padStart(8, '0') + h.lo.toString(16).padStart(8, '0');
}

/** Side of the vessel-detail descriptor. */
export const DETAIL_SIZE = 64;

/**
 * What duplicate detection knows about one image: its bytes' SHA-256 (exact copies), a pHash (cheap candidate
 * search over all pairs) and a vessel-detail descriptor (the decision).
 */
export interface Fingerprint {
  sha256: string;
  hash: Hash64;
  /** High-passed green channel of the disc's centre, DETAIL_SIZE², zero mean and unit norm. */
  detail: Float32Array;
}

/** Subtracts the mean and scales to unit length, in place, so that dot products are correlations. */
export function unitNorm(v: Float32Array): Float32Array {
  let mean = 0;
  for (let i = 0; i < v.length; i++) mean += v[i];
  mean /= v.length;
  let norm = 0;
  for (let i = 0; i < v.length; i++) norm += (v[i] -= mean) ** 2;
  norm = Math.sqrt(norm) || 1;
  for (let i = 0; i < v.length; i++) v[i] /= norm;
  return v;
}

/** Fraction of the disc's square (centred) that fingerprints look at: the round outline is the same in every photo. */
const INNER = 0.7;

/**
 * Fingerprints a fundus photograph. Both the hash and the descriptor look at the centre of the disc only, found on a
 * thumbnail by the dark-border threshold: the round outline (and, for the small-disc screening photos, the wide black
 * border) is shared by unrelated photographs and would make them look alike. The green channel carries the vessels,
 * the optic disc and the lesions; the descriptor is high-passed so that exposure and colour cast do not matter, only
 * the vessel pattern that identifies an eye.
 */
export async function fingerprint(path: string): Promise<Fingerprint> {
  // A DICOM photograph is its frame's image: a DICOM file and the JPEG inside it are exact duplicates, and the frames
  // of one file are not.
  const { source } = await openPhoto(path);
  let bytes: Buffer;
  try {
    bytes = Buffer.isBuffer(source) ? source : await readFile(source);
  } catch (e) {
    throw new InputError(`cannot read the image: ${(e as Error).message}`, { file: path });
  }
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const T = 256;
  let thumb: Buffer;
  try {
    thumb = await sharp(bytes, { failOn: 'error' }).rotate().extractChannel('green').resize(T, T, { fit: 'fill' }).raw().toBuffer();
  } catch (e) {
    throw new InputError(`cannot decode the image: ${(e as Error).message.split('\n')[0]}`, { file: path });
  }
  const line = (count: (i: number) => number): [number, number] | undefined => {
    let a = 0;
    while (a < T && count(a) <= 4) a++;
    let b = T - 1;
    while (b > a && count(b) <= 4) b--;
    return a < b ? [a, b + 1] : undefined;
  };
  const rowCount = new Uint16Array(T);
  const colCount = new Uint16Array(T);
  for (let y = 0; y < T; y++) {
    for (let x = 0; x < T; x++) {
      if (thumb[y * T + x] > 12) {
        rowCount[y]++;
        colCount[x]++;
      }
    }
  }
  const [y0, y1] = line((i) => rowCount[i]) ?? [0, T];
  const [x0, x1] = line((i) => colCount[i]) ?? [0, T];
  const side = Math.max(x1 - x0, y1 - y0) * INNER;
  const left = Math.max(0, Math.round((x0 + x1 - side) / 2));
  const top = Math.max(0, Math.round((y0 + y1 - side) / 2));
  const region = {
    left,
    top,
    width: Math.max(8, Math.min(T - left, Math.round(side))),
    height: Math.max(8, Math.min(T - top, Math.round(side))),
  };
  const inner = sharp(thumb, { raw: { width: T, height: T, channels: 1 } }).extract(region);
  // toColourspace('b-w'): sharp otherwise writes one-band raw input back out as three-band sRGB
  const small = await inner.clone().resize(N, N, { fit: 'fill' }).toColourspace('b-w').raw().toBuffer();
  const D = DETAIL_SIZE;
  const sharpDetail = await inner.clone().resize(D, D, { fit: 'fill' }).toColourspace('b-w').raw().toBuffer();
  const blurred = await sharp(sharpDetail, { raw: { width: D, height: D, channels: 1 } }).blur(3).toColourspace('b-w').raw().toBuffer();
  const detail = new Float32Array(D * D);
  for (let i = 0; i < D * D; i++) detail[i] = sharpDetail[i] - blurred[i];
  // Clipping at twice the RMS keeps the optic disc's rim, the strongest edge of every photo, from dominating the
  // correlation: without it, blurry photos of different eyes with the disc at the same place matched, and chained
  // unrelated groups together.
  unitNorm(detail);
  const limit = 2 / D;
  for (let i = 0; i < D * D; i++) detail[i] = Math.max(-limit, Math.min(limit, detail[i]));
  return { sha256, hash: dctHash(small), detail: unitNorm(detail) };
}

/**
 * The detail averaged over 2×2 blocks (32², unit norm): different eyes correlate near 0 at this scale while repeats
 * mostly stay above 0.2, and it is four times cheaper, so it drives the all-pairs candidate search.
 */
export function poolDetail(detail: Float32Array): Float32Array {
  const D = DETAIL_SIZE;
  const P = D / 2;
  const out = new Float32Array(P * P);
  for (let y = 0; y < D; y++) for (let x = 0; x < D; x++) out[(y >> 1) * P + (x >> 1)] += detail[y * D + x];
  return unitNorm(out);
}

/**
 * Similarity of two vessel-detail descriptors: the best normalised cross-correlation over shifts of up to `maxShift`
 * pixels each way (a repeat photograph is rarely aimed at exactly the same spot). 1 for identical images, about 0.2
 * for different eyes.
 */
export function detailSimilarity(a: Float32Array, b: Float32Array, maxShift = 2, side = DETAIL_SIZE): number {
  const D = side;
  let best = -1;
  for (let dy = -maxShift; dy <= maxShift; dy++) {
    for (let dx = -maxShift; dx <= maxShift; dx++) {
      let s = 0;
      const yEnd = Math.min(D, D - dy);
      const xStart = Math.max(0, -dx);
      const xEnd = Math.min(D, D - dx);
      for (let y = Math.max(0, -dy); y < yEnd; y++) {
        const ra = y * D;
        const rb = (y + dy) * D + dx;
        for (let x = xStart; x < xEnd; x++) s += a[ra + x] * b[rb + x];
      }
      if (s > best) best = s;
    }
  }
  return best;
}
