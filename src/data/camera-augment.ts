import { blurPlanes } from './gauss.js';
import { simulateJpeg } from './jpeg-sim.js';
import { seededRandom } from './random.js';

/**
 * Camera augmentation (issue #16): what differs between fundus cameras besides the retina (focus and optics,
 * white balance, sensor noise, resolution, JPEG compression), drawn at random during training so that a network
 * cannot tell the classes apart by the camera. Works on interleaved images in [0, 1] pixel space; pixels outside the
 * disc (no channel above `border`) keep their values, so the border stays black.
 */
export interface CameraParams {
  /** σ in pixels: > 0 Gaussian blur, < 0 unsharp-mask sharpening with σ = |blur| (amount 1), 0 none. */
  blur: number;
  /** Colour temperature: red × (1 + t), blue × (1 − t); > 0 warmer, < 0 cooler. No-op on 1-channel images. */
  temperature: number;
  /** Std of Gaussian pixel noise, per pixel and channel, in [0, 1] pixel units. */
  noise: number;
  /** Seed of the noise's own generator, so that the parameters describe the augmentation completely. */
  noiseSeed: number;
  /** Shrink to this fraction of the side (area average) and enlarge back (bilinear); 1 none. */
  resolution: number;
  /** Round trip through JPEG at this quality (1..100, see jpeg-sim.ts); 0 none. */
  jpegQuality: number;
}

export const NO_CAMERA: CameraParams = { blur: 0, temperature: 0, noise: 0, noiseSeed: 0, resolution: 1, jpegQuality: 0 };

export function cameraActive(p: Partial<CameraParams>): boolean {
  return !!p.blur || !!p.temperature || !!p.noise || (p.resolution !== undefined && p.resolution < 1) || !!p.jpegQuality;
}

/** 1 where any channel is above `border`. */
function discOf(px: Float32Array, n: number, channels: number, border: number): Uint8Array {
  const inside = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < channels; c++) {
      if (px[i * channels + c] > border) {
        inside[i] = 1;
        break;
      }
    }
  }
  return inside;
}

/** A 1-D linear resampling as taps: output j = Σ weight[k]·input[index[k]] for k in start[j]..start[j + 1]. */
interface Taps {
  start: Int32Array;
  index: Int32Array;
  weight: Float32Array;
}

/** Area-average footprints of `m` output cells over `n` inputs (cell j covers [j·n/m, (j + 1)·n/m)). */
function areaTaps(n: number, m: number): Taps {
  const s = n / m;
  const start = new Int32Array(m + 1);
  const index: number[] = [];
  const weight: number[] = [];
  for (let j = 0; j < m; j++) {
    start[j] = index.length;
    const a = j * s;
    const b = (j + 1) * s;
    for (let i = Math.floor(a); i < Math.min(n, Math.ceil(b)); i++) {
      const w = Math.min(b, i + 1) - Math.max(a, i);
      if (w > 0) {
        index.push(i);
        weight.push(w / s);
      }
    }
  }
  start[m] = index.length;
  return { start, index: Int32Array.from(index), weight: Float32Array.from(weight) };
}

/** Bilinear taps from `m` inputs to `n` outputs, pixel centres aligned, edges clamped. */
function bilinearTaps(m: number, n: number): Taps {
  const start = new Int32Array(n + 1);
  const index = new Int32Array(2 * n);
  const weight = new Float32Array(2 * n);
  for (let j = 0; j < n; j++) {
    const x = Math.min(m - 1, Math.max(0, ((j + 0.5) * m) / n - 0.5));
    const i0 = Math.min(m - 2, Math.floor(x));
    const f = x - Math.max(0, i0);
    start[j] = 2 * j;
    index[2 * j] = Math.max(0, i0);
    index[2 * j + 1] = Math.min(m - 1, Math.max(0, i0) + 1);
    weight[2 * j] = 1 - f;
    weight[2 * j + 1] = f;
  }
  start[n] = 2 * n;
  return { start, index, weight };
}

/**
 * Applies `ty` along columns, then `tx` along rows, of a w×h image of `planes` interleaved planes. The column pass
 * adds whole rows (contiguous memory); the row pass accumulates each output value in a register.
 */
function resample(src: Float32Array, w: number, h: number, planes: number, tx: Taps, outW: number, ty: Taps, outH: number): Float32Array {
  const rowLen = w * planes;
  const mid = new Float32Array(outH * rowLen);
  for (let j = 0; j < outH; j++) {
    const o = j * rowLen;
    for (let k = ty.start[j]; k < ty.start[j + 1]; k++) {
      const s = ty.index[k] * rowLen;
      const wt = ty.weight[k];
      for (let i = 0; i < rowLen; i++) mid[o + i] += wt * src[s + i];
    }
  }
  const out = new Float32Array(outW * outH * planes);
  for (let y = 0; y < outH; y++) {
    const base = y * rowLen;
    for (let j = 0; j < outW; j++) {
      const o = (y * outW + j) * planes;
      const k0 = tx.start[j];
      const k1 = tx.start[j + 1];
      for (let c = 0; c < planes; c++) {
        let acc = 0;
        for (let k = k0; k < k1; k++) acc += tx.weight[k] * mid[base + tx.index[k] * planes + c];
        out[o + c] = acc;
      }
    }
  }
  return out;
}

/** Down-and-up resampling of an interleaved image: area average to m×m, bilinear back to size×size (a new array). */
function lowResolution(buf: Float32Array, size: number, planes: number, factor: number): Float32Array {
  const m = Math.max(2, Math.round(size * factor));
  if (m >= size) return buf;
  const down = areaTaps(size, m);
  const up = bilinearTaps(m, size);
  return resample(resample(buf, size, size, planes, down, m, down, m), m, m, planes, up, size, up, size);
}

let normals: Float32Array | undefined;

/**
 * The standard normal's quantiles at (k + 0.5) / 65536, k = 0..65535 (Acklam's rational approximation, relative
 * error under 1.2e-9): a uniform 16-bit index gives a normal value (up to ±4.3σ) for the price of a table read, where
 * Box–Muller's logarithm, root and sine made the noise the augmentation's slowest step.
 */
function normalTable(): Float32Array {
  if (normals) return normals;
  const a = [-39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716, 2.506628277459239];
  const b = [-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572];
  const c = [-0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  const tail = (q: number) => (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  normals = new Float32Array(65536);
  for (let k = 0; k < 65536; k++) {
    const pr = (k + 0.5) / 65536;
    if (pr < 0.02425) {
      normals[k] = tail(Math.sqrt(-2 * Math.log(pr)));
    } else if (pr > 1 - 0.02425) {
      normals[k] = -tail(Math.sqrt(-2 * Math.log(1 - pr)));
    } else {
      const q = pr - 0.5;
      const r = q * q;
      normals[k] = ((((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q) / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
    }
  }
  return normals;
}

const clamp01 = (v: number) => (v < 0 ? 0 : v > 1 ? 1 : v);

/**
 * Applies camera parameters to an interleaved `size`×`size` image in [0, 1], in the order a camera works: optical
 * blur, the sensor's resolution, the processing's sharpening, white balance and noise (one pass), JPEG compression
 * of the file. Blur and resampling run over the whole square, so the rim softens against the black border as it does
 * in a blurred or low-resolution photo (and sharpening gives it the usual halo); afterwards every pixel with no
 * channel above `border` in the input gets its input value back, so the border stays black. Returns a new array.
 */
export function applyCamera(image: Float32Array, size: number, channels: number, p: CameraParams, border: number): Float32Array {
  const n = size * size;
  const inside = discOf(image, n, channels, border);
  let px: Float32Array = image.slice();
  const blur = p.blur || 0;
  if (blur > 0) blurPlanes(px, size, size, channels, blur);
  if (p.resolution < 1) px = lowResolution(px, size, channels, p.resolution);
  if (blur < 0) {
    // unsharp masking, amount 1: px + (px − blur(px))
    const blurred = px.slice();
    blurPlanes(blurred, size, size, channels, -blur);
    for (let i = 0; i < px.length; i++) px[i] = clamp01(2 * px[i] - blurred[i]);
  }
  const gr = channels === 3 && p.temperature ? 1 + p.temperature : 1;
  const gb = channels === 3 && p.temperature ? 1 - p.temperature : 1;
  const noise = p.noise > 0 ? p.noise : 0;
  if (gr !== 1 || noise > 0) {
    // Noise: two standard normals per draw of the noise's own generator, each from 16 of its 32 bits.
    const rng = seededRandom(p.noiseSeed);
    const table = normalTable();
    let spare = -1;
    const normal = (): number => {
      if (spare >= 0) {
        const z = table[spare];
        spare = -1;
        return z;
      }
      const u = rng() * 65536; // exact: the generator's 32 bits over 2^32
      const hi = Math.floor(u);
      spare = Math.floor((u - hi) * 65536);
      return table[hi];
    };
    for (let i = 0; i < n; i++) {
      if (!inside[i]) continue;
      const o = i * channels;
      if (channels === 3) {
        px[o] *= gr;
        px[o + 2] *= gb;
      }
      for (let c = 0; c < channels; c++) px[o + c] = clamp01(noise > 0 ? px[o + c] + noise * normal() : px[o + c]);
    }
  }
  if (p.jpegQuality > 0) px = simulateJpeg(px, size, size, channels, p.jpegQuality);
  for (let i = 0; i < n; i++) {
    if (inside[i]) continue;
    for (let c = 0; c < channels; c++) px[i * channels + c] = image[i * channels + c];
  }
  return px;
}
