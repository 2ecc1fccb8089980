/**
 * JPEG re-compression, simulated synchronously in JavaScript for the camera augmentation: baseline JPEG's lossy
 * steps as libjpeg does them. RGB → YCbCr (JFIF), 4:2:0 chroma subsampling (2×2 averages; sharp's default), 8×8
 * block DCT, quantisation with the standard IJG tables scaled by quality exactly as libjpeg's jpeg_set_quality,
 * dequantisation, inverse DCT, libjpeg's "fancy" (triangle) chroma upsampling, YCbCr → RGB rounded to bytes. The
 * entropy coding (Huffman) that follows quantisation is lossless, so it is skipped: the decoded pixels are the same
 * without it. Float DCTs where libjpeg uses integer ones, so pixels may differ by one level from a real round trip.
 */

/** The standard luminance quantisation table (ITU T.81 Annex K.1), row-major. */
const LUMA = [
  16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109,
  103, 77, 24, 35, 55, 64, 81, 104, 113, 92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
];
/** The standard chrominance table (Annex K.2), row-major. */
const CHROMA = [
  17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99, ...new Array<number>(32).fill(99),
];

/**
 * A sample rounded to a byte. Math.floor(v + 0.5) and min/max rather than Math.round and comparisons: V8's
 * Math.round branches on the fraction, which image data mispredicts half the time (9 ns a call against 1 ns here).
 */
const toByte = (v: number) => Math.floor(Math.min(255, Math.max(0, v)) + 0.5);

/** libjpeg's jpeg_quality_scaling and jpeg_add_quant_table (baseline: entries capped at 255). */
export function quantTable(base: readonly number[], quality: number): Float64Array {
  const q = Math.min(100, Math.max(1, Math.round(quality)));
  const scale = q < 50 ? Math.trunc(5000 / q) : 200 - 2 * q;
  return Float64Array.from(base, (b) => Math.min(255, Math.max(1, Math.trunc((b * scale + 50) / 100))));
}

/** cos(kπ/16) / 2, the DCT's coefficients; A = 1/(2√2) for the DC and k = 4 terms. */
const A = 1 / (2 * Math.SQRT2);
const [C1, C2, C3, C5, C6, C7] = [1, 2, 3, 5, 6, 7].map((k) => Math.cos((k * Math.PI) / 16) / 2);

/**
 * Orthonormal 8-point DCT-II (the scaling JPEG quantises, F(u) = c(u)/2 · Σ f(x) cos((2x + 1)uπ/16)) of 8 values of
 * `b` from `o` with `step`, in place. Folded by the cosines' symmetry (f(x) ± f(7 − x)): 32 multiplies, not 64.
 */
function fdct8(b: Float64Array, o: number, step: number): void {
  const f0 = b[o], f1 = b[o + step], f2 = b[o + 2 * step], f3 = b[o + 3 * step];
  const f4 = b[o + 4 * step], f5 = b[o + 5 * step], f6 = b[o + 6 * step], f7 = b[o + 7 * step];
  const s0 = f0 + f7, s1 = f1 + f6, s2 = f2 + f5, s3 = f3 + f4;
  const d0 = f0 - f7, d1 = f1 - f6, d2 = f2 - f5, d3 = f3 - f4;
  b[o] = A * (s0 + s1 + s2 + s3);
  b[o + 4 * step] = A * (s0 - s1 - s2 + s3);
  b[o + 2 * step] = C2 * (s0 - s3) + C6 * (s1 - s2);
  b[o + 6 * step] = C6 * (s0 - s3) - C2 * (s1 - s2);
  b[o + step] = C1 * d0 + C3 * d1 + C5 * d2 + C7 * d3;
  b[o + 3 * step] = C3 * d0 - C7 * d1 - C1 * d2 - C5 * d3;
  b[o + 5 * step] = C5 * d0 - C1 * d1 + C7 * d2 + C3 * d3;
  b[o + 7 * step] = C7 * d0 - C5 * d1 + C3 * d2 - C1 * d3;
}

/** The inverse of fdct8 (its transpose), in place: even and odd halves give f(x) and f(7 − x) together. */
function idct8(b: Float64Array, o: number, step: number): void {
  const F0 = b[o], F1 = b[o + step], F2 = b[o + 2 * step], F3 = b[o + 3 * step];
  const F4 = b[o + 4 * step], F5 = b[o + 5 * step], F6 = b[o + 6 * step], F7 = b[o + 7 * step];
  const p = A * (F0 + F4), m = A * (F0 - F4);
  const e0 = p + C2 * F2 + C6 * F6;
  const e3 = p - C2 * F2 - C6 * F6;
  const e1 = m + C6 * F2 - C2 * F6;
  const e2 = m - C6 * F2 + C2 * F6;
  const o0 = C1 * F1 + C3 * F3 + C5 * F5 + C7 * F7;
  const o1 = C3 * F1 - C7 * F3 - C1 * F5 - C5 * F7;
  const o2 = C5 * F1 - C1 * F3 + C7 * F5 + C3 * F7;
  const o3 = C7 * F1 - C5 * F3 + C3 * F5 - C1 * F7;
  b[o] = e0 + o0;
  b[o + 7 * step] = e0 - o0;
  b[o + step] = e1 + o1;
  b[o + 6 * step] = e1 - o1;
  b[o + 2 * step] = e2 + o2;
  b[o + 5 * step] = e2 - o2;
  b[o + 3 * step] = e3 + o3;
  b[o + 4 * step] = e3 - o3;
}

/**
 * DCT, quantisation, dequantisation and inverse DCT of every 8×8 block of a plane of 0..255 samples, in place. The
 * plane is padded to whole blocks by repeating its last row and column, as libjpeg pads.
 */
function codePlane(plane: Float32Array, width: number, height: number, table: Float64Array): void {
  const blk = new Float64Array(64);
  const inv = table.map((q) => 1 / q);
  for (let by = 0; by < height; by += 8) {
    for (let bx = 0; bx < width; bx += 8) {
      for (let y = 0; y < 8; y++) {
        const row = Math.min(by + y, height - 1) * width;
        for (let x = 0; x < 8; x++) blk[y * 8 + x] = plane[row + Math.min(bx + x, width - 1)] - 128;
      }
      for (let i = 0; i < 8; i++) fdct8(blk, i * 8, 1);
      for (let i = 0; i < 8; i++) fdct8(blk, i, 8);
      // quantise (to the nearest step, halves away from zero as libjpeg) and dequantise; the sign is applied without
      // a branch, which the coefficients' random signs would mispredict (Math.round alone costs 9 ns here)
      for (let k = 0; k < 64; k++) {
        const r = blk[k] * inv[k];
        const m = Math.floor(Math.abs(r) + 0.5);
        blk[k] = (m - 2 * m * +(r < 0)) * table[k];
      }
      for (let i = 0; i < 8; i++) idct8(blk, i, 8);
      for (let i = 0; i < 8; i++) idct8(blk, i * 8, 1);
      for (let y = 0; y < 8 && by + y < height; y++) {
        for (let x = 0; x < 8 && bx + x < width; x++) {
          plane[(by + y) * width + bx + x] = toByte(blk[y * 8 + x] + 128); // the decoder's samples are bytes
        }
      }
    }
  }
}

/** 2×2 box averages (libjpeg's h2v2 downsampling), odd sides padded by repetition. */
function downsample(plane: Float32Array, w: number, h: number): { data: Float32Array; w: number; h: number } {
  const w2 = (w + 1) >> 1;
  const h2 = (h + 1) >> 1;
  const out = new Float32Array(w2 * h2);
  for (let y = 0; y < h2; y++) {
    const r0 = 2 * y * w;
    const r1 = Math.min(2 * y + 1, h - 1) * w;
    for (let x = 0; x < w2; x++) {
      const x0 = 2 * x;
      const x1 = Math.min(2 * x + 1, w - 1);
      out[y * w2 + x] = Math.floor((plane[r0 + x0] + plane[r0 + x1] + plane[r1 + x0] + plane[r1 + x1]) / 4 + 0.5);
    }
  }
  return { data: out, w: w2, h: h2 };
}

/**
 * libjpeg's h2v2 "fancy" upsampling: each output sample is 3/4 of its nearest input sample and 1/4 of the next one
 * away from it, in each direction (a triangle filter), edges repeated.
 */
function upsample(small: Float32Array, w2: number, h2: number, w: number, h: number): Float32Array {
  const out = new Float32Array(w * h);
  // nearest input sample (a) and the next one away from the output sample (b), per output column
  const xa = new Int32Array(w);
  const xb = new Int32Array(w);
  for (let x = 0; x < w; x++) {
    xa[x] = x >> 1;
    xb[x] = x & 1 ? Math.min(w2 - 1, (x >> 1) + 1) : Math.max(0, (x >> 1) - 1);
  }
  const col = new Float32Array(w2);
  for (let y = 0; y < h; y++) {
    const ya = (y >> 1) * w2;
    const yb = (y & 1 ? Math.min(h2 - 1, (y >> 1) + 1) : Math.max(0, (y >> 1) - 1)) * w2;
    for (let x = 0; x < w2; x++) col[x] = 0.75 * small[ya + x] + 0.25 * small[yb + x];
    for (let x = 0; x < w; x++) out[y * w + x] = 0.75 * col[xa[x]] + 0.25 * col[xb[x]];
  }
  return out;
}

/**
 * Round trip of an interleaved image in [0, 1] (1 or 3 channels) through JPEG at `quality` (1..100); a 1-channel
 * image is coded as luminance only (a greyscale JPEG). Returns a new array of whole levels / 255.
 */
export function simulateJpeg(pixels: Float32Array, width: number, height: number, channels: number, quality: number): Float32Array {
  const n = width * height;
  if (pixels.length !== n * channels || (channels !== 1 && channels !== 3)) {
    throw new Error(`simulateJpeg: expected ${width}x${height} with 1 or 3 channels, got ${pixels.length} values`);
  }
  const byte = (v: number) => toByte(v * 255); // the encoder reads bytes
  const luma = quantTable(LUMA, quality);
  const out = new Float32Array(pixels.length);
  if (channels === 1) {
    const y = new Float32Array(n);
    for (let i = 0; i < n; i++) y[i] = byte(pixels[i]);
    codePlane(y, width, height, luma);
    for (let i = 0; i < n; i++) out[i] = y[i] / 255;
    return out;
  }
  const chroma = quantTable(CHROMA, quality);
  const Y = new Float32Array(n);
  const Cb = new Float32Array(n);
  const Cr = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const r = byte(pixels[3 * i]);
    const g = byte(pixels[3 * i + 1]);
    const b = byte(pixels[3 * i + 2]);
    Y[i] = Math.floor(0.299 * r + 0.587 * g + 0.114 * b + 0.5);
    Cb[i] = Math.floor(-0.168736 * r - 0.331264 * g + 0.5 * b + 128.5);
    Cr[i] = Math.floor(0.5 * r - 0.418688 * g - 0.081312 * b + 128.5);
  }
  codePlane(Y, width, height, luma);
  const planes = [Cb, Cr].map((p) => {
    const s = downsample(p, width, height);
    codePlane(s.data, s.w, s.h, chroma);
    return upsample(s.data, s.w, s.h, width, height);
  });
  const [cb, cr] = planes;
  const clamp = (v: number) => toByte(v) / 255;
  for (let i = 0; i < n; i++) {
    const y = Y[i];
    const u = cb[i] - 128;
    const v = cr[i] - 128;
    out[3 * i] = clamp(y + 1.402 * v);
    out[3 * i + 1] = clamp(y - 0.344136 * u - 0.714136 * v);
    out[3 * i + 2] = clamp(y + 1.772 * u);
  }
  return out;
}
