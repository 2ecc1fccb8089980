import sharp from 'sharp';
import { decodeRgb, type CropGeometry } from '../data/preprocess.js';
import { InputError } from '../util/errors.js';
import { discMask, type DiscMask } from './disc.js';
import { type Heatmap } from './heatmap.js';

export const COLORMAPS = ['jet', 'turbo'] as const;
export type Colormap = (typeof COLORMAPS)[number];

export interface OverlayOptions {
  /** `jet` (what most CAM papers and tools show) or `turbo` (Google's perceptually smoother jet). Default jet. */
  colormap?: Colormap;
  /** Opacity of the heatmap over the photo, 0..1. Default 0.45. */
  alpha?: number;
  /** Heat below this stays uncoloured, so that the photo shows through where the model found nothing. Default 0. */
  minHeat?: number;
  /**
   * Where colour may go. Default (undefined): the fundus disc of this photo (`discMask` in disc.ts: the circle of the
   * crop less the dark border), so the black field stop outside it keeps the photo's own pixels. A `DiscMask` of the
   * photo's size: that one (computed once per photo by callers that draw several maps). `false`: the whole crop
   * square, as before masking existed.
   */
  disc?: DiscMask | false;
}

const clamp01 = (v: number) => (v < 0 ? 0 : v > 1 ? 1 : v);

/** RGB in [0, 1] of `t` in [0, 1]. */
export function colormap(name: Colormap, t: number): [number, number, number] {
  const x = clamp01(t);
  if (name === 'jet') {
    return [clamp01(1.5 - Math.abs(4 * x - 3)), clamp01(1.5 - Math.abs(4 * x - 2)), clamp01(1.5 - Math.abs(4 * x - 1))];
  }
  // Turbo, polynomial approximation by A. Mikhailov (Google, 2019), max error below 1/255 of the published table.
  const r = 0.13572138 + x * (4.6153926 + x * (-42.66032258 + x * (132.13108234 + x * (-152.94239396 + x * 59.28637943))));
  const g = 0.09140261 + x * (2.19418839 + x * (4.84296658 + x * (-14.18503333 + x * (4.27729857 + x * 2.82956604))));
  const b = 0.1066733 + x * (12.64194608 + x * (-60.58204836 + x * (110.36276771 + x * (-89.90310912 + x * 27.34824973))));
  return [clamp01(r), clamp01(g), clamp01(b)];
}

/**
 * Maps a heatmap over the network input back onto the original photograph, inverting preprocessing: the input is the
 * square `geometry` (in photo pixels, possibly reaching past the edges where it was padded) resized to the network's
 * size, and the heatmap covers that square at its own resolution. Photo pixels outside the square (cut off by the disc
 * crop) get `outside` (NaN by default: "not seen by the model").
 */
export function heatmapOnPhoto(heatmap: Heatmap, geometry: CropGeometry, outside = Number.NaN): Heatmap {
  const { width, height, x, y, side } = geometry;
  const data = new Float32Array(width * height).fill(outside);
  const gw = heatmap.width;
  const gh = heatmap.height;
  const d = heatmap.data;
  // Separable bilinear sampling (the same half-pixel centres as sampleHeatmap): the columns' grid indices and weights
  // once, then per row one interpolated grid row. Sampling every pixel on its own dominated 12-megapixel overlays.
  const sx = gw / side;
  const sy = gh / side;
  const first = Math.max(0, Math.ceil(x - 0.5));
  const last = Math.min(width - 1, Math.floor(x + side - 0.5));
  const x0s = new Int32Array(width);
  const x1s = new Int32Array(width);
  const axs = new Float32Array(width);
  for (let px = first; px <= last; px++) {
    const fx = Math.min(Math.max((px + 0.5 - x) * sx - 0.5, 0), gw - 1);
    x0s[px] = Math.floor(fx);
    x1s[px] = Math.min(x0s[px] + 1, gw - 1);
    axs[px] = fx - x0s[px];
  }
  const row = new Float64Array(gw);
  for (let py = 0; py < height; py++) {
    const v = py + 0.5 - y; // photo pixel centre, in square coordinates
    if (!(v >= 0 && v <= side)) continue;
    const fy = Math.min(Math.max(v * sy - 0.5, 0), gh - 1);
    const y0 = Math.floor(fy);
    const y1 = Math.min(y0 + 1, gh - 1);
    const ay = fy - y0;
    for (let g = 0; g < gw; g++) row[g] = d[y0 * gw + g] * (1 - ay) + d[y1 * gw + g] * ay;
    const base = py * width;
    for (let px = first; px <= last; px++) {
      const ax = axs[px];
      data[base + px] = row[x0s[px]] * (1 - ax) + row[x1s[px]] * ax;
    }
  }
  return { width, height, data };
}

function checkGeometry(g: CropGeometry, photoW: number, photoH: number, file: string | undefined): void {
  if (g.width !== photoW || g.height !== photoH) {
    throw new InputError(
      `the photo is ${photoW}x${photoH} but the heatmap was computed for a ${g.width}x${g.height} photo`,
      { file: file ?? '<buffer>' },
    );
  }
  if (!(g.side > 0)) throw new Error(`invalid crop geometry (side ${g.side})`);
}

/** A photo decoded to interleaved 8-bit RGB (what `decodeRgb` returns). */
export interface DecodedPhoto {
  data: Uint8Array;
  width: number;
  height: number;
}

/** Checks that a disc mask was made for a photo of this size. */
function checkDisc(disc: DiscMask, width: number, height: number): void {
  if (disc.width !== width || disc.height !== height) {
    throw new Error(`the disc mask is ${disc.width}x${disc.height} but the photo is ${width}x${height}`);
  }
}

/**
 * The heatmap in a colormap, alpha-blended over the full-resolution original photograph (not the preprocessed crop),
 * as a PNG. EXIF orientation is applied exactly as preprocessing applies it, so hot spots land on the pixels they came
 * from. Outside the fundus disc the photo is left as it is (see `OverlayOptions.disc`).
 */
export async function renderOverlay(
  photo: string | Buffer,
  heatmap: Heatmap,
  geometry: CropGeometry,
  opts: OverlayOptions = {},
): Promise<Buffer> {
  const decoded = await decodeRgb(photo);
  checkGeometry(geometry, decoded.width, decoded.height, typeof photo === 'string' ? photo : undefined);
  return renderOverlayRgb(decoded, heatmap, geometry, opts);
}

/** `renderOverlay` on an already decoded photo (callers drawing several maps on one photo decode it once). */
export async function renderOverlayRgb(photo: DecodedPhoto, heatmap: Heatmap, geometry: CropGeometry, opts: OverlayOptions = {}): Promise<Buffer> {
  const { data, width, height } = photo;
  checkGeometry(geometry, width, height, undefined);
  const alpha = opts.alpha ?? 0.45;
  if (!(alpha >= 0 && alpha <= 1)) throw new InputError(`alpha must be in 0..1 (got ${alpha})`);
  const minHeat = opts.minHeat ?? 0;
  const cmap = opts.colormap ?? 'jet';
  const disc = opts.disc === undefined ? discMask(data, width, height, geometry) : opts.disc;
  if (disc) checkDisc(disc, width, height);
  // Both terms of the blend as 256-entry tables (the colour's share per heat level, the photo's per pixel value):
  // per-pixel colormap evaluation would dominate on 12-megapixel photos. The colours are rounded to float32, as the
  // table they replace held them, so overlays stay byte for byte what they were.
  const paint = new Float64Array(256 * 3);
  for (let i = 0; i < 256; i++) {
    const rgb = colormap(cmap, i / 255);
    for (let c = 0; c < 3; c++) paint[i * 3 + c] = alpha * 255 * Math.fround(rgb[c]);
  }
  const keep = new Float64Array(256);
  for (let v = 0; v < 256; v++) keep[v] = (1 - alpha) * v;
  const heat = heatmapOnPhoto(heatmap, geometry);
  const px = Buffer.from(data); // a copy: the photo's own pixels stay untouched for the next map
  for (let i = 0; i < width * height; i++) {
    if (disc && !disc.inside[i]) continue; // the black field stop: never painted
    const h = heat.data[i];
    if (!(h >= minHeat)) continue; // NaN (outside the model's view) or below the threshold
    const k = Math.round(clamp01(h) * 255) * 3;
    const j = i * 3;
    px[j] = Math.round(keep[data[j]] + paint[k]);
    px[j + 1] = Math.round(keep[data[j + 1]] + paint[k + 1]);
    px[j + 2] = Math.round(keep[data[j + 2]] + paint[k + 2]);
  }
  return sharp(px, { raw: { width, height, channels: 3 } }).png().toBuffer();
}

/**
 * The heatmap on the photo's pixel grid as a 16-bit greyscale PNG (0..65535 = heat 0..1; outside the crop and outside
 * the fundus disc: 0). `disc`: the photo's disc mask; by default the circle of the crop (no pixels are read here), and
 * `false` keeps the whole crop square. The unmasked map at the layer's own resolution is the `.npy` raw output.
 */
export async function heatmapToPng16(heatmap: Heatmap, geometry: CropGeometry, disc?: DiscMask | false): Promise<Buffer> {
  const heat = heatmapOnPhoto(heatmap, geometry, 0);
  const mask = disc === undefined ? discMask(undefined, geometry.width, geometry.height, geometry) : disc;
  if (mask) checkDisc(mask, heat.width, heat.height);
  const px = new Uint16Array(heat.data.length);
  for (let i = 0; i < px.length; i++) px[i] = mask && !mask.inside[i] ? 0 : Math.round(clamp01(heat.data[i]) * 65535);
  return sharp(px, { raw: { width: heat.width, height: heat.height, channels: 1 } })
    .toColourspace('grey16')
    .png()
    .toBuffer();
}
