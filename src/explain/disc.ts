import { BORDER_LEVEL } from '../data/preprocess.js';
import type { CropGeometry } from '../data/preprocess.js';

/**
 * The fundus disc on a photograph's pixel grid: where a heatmap may be painted and where localisation is scored.
 * Everything outside it is the camera's black field stop (or padding the network saw as black), which holds no
 * retina: colour painted there is noise a specialist has to look past, and energy there can never hit a lesion.
 */
export interface DiscMask {
  width: number;
  height: number;
  /** 1 inside the disc, 0 outside; row-major, `width` × `height`. */
  inside: Uint8Array;
  /** Number of pixels inside. */
  count: number;
  /** The circle the disc was cut from, in this grid's pixels (centre and radius). */
  cx: number;
  cy: number;
  r: number;
}


export interface DiscOptions {
  /** The circle's radius as a fraction of half the crop square's side. Default 1: the circle the square was drawn around. */
  radius?: number;
  /** The grid is the photo scaled by this factor (1: the photo's own pixels). Default 1. */
  scale?: number;
  /** Dark-border level; pixels at or below it that touch the outside are not disc. Default BORDER_LEVEL, the level preprocessing's disc detector uses. */
  darkLevel?: number;
}

/**
 * The fundus disc of a photograph: the pixels whose centre lies inside the circle of the crop square (centred in the
 * square that preprocessing found around the bright disc, radius half its side), less the dark border that reaches
 * into that circle, i.e. pixels at or below the dark-border level connected to the outside of the circle or to the
 * photo's edge through other dark pixels. Dark pixels enclosed by the retina (a haemorrhage, a vessel) stay inside.
 * The circle alone is used when no pixels are given, or when the dark test would leave less than a quarter of it
 * (an underexposed photo, whose retina is itself below the level).
 *
 * `rgb` is interleaved 3-channel, `width` × `height`, the photo scaled by `opts.scale`; `geometry` is in photo pixels.
 */
export function discMask(rgb: Uint8Array | undefined, width: number, height: number, geometry: CropGeometry, opts: DiscOptions = {}): DiscMask {
  const scale = opts.scale ?? 1;
  const radius = opts.radius ?? 1;
  const dark = opts.darkLevel ?? BORDER_LEVEL;
  const cx = (geometry.x + geometry.side / 2) * scale;
  const cy = (geometry.y + geometry.side / 2) * scale;
  const r = (radius * geometry.side * scale) / 2;
  const inside = new Uint8Array(width * height);
  const r2 = r * r;
  let circleCount = 0;
  for (let py = 0; py < height; py++) {
    const dy = py + 0.5 - cy;
    const rest = r2 - dy * dy;
    if (rest < 0) continue;
    const half = Math.sqrt(rest);
    // pixel centres px + 0.5 in [cx - half, cx + half]
    const a = Math.max(0, Math.ceil(cx - half - 0.5));
    const b = Math.min(width - 1, Math.floor(cx + half - 0.5));
    if (b < a) continue;
    inside.fill(1, py * width + a, py * width + b + 1);
    circleCount += b - a + 1;
  }
  if (!rgb || circleCount === 0) return { width, height, inside, count: circleCount, cx, cy, r };
  if (rgb.length < width * height * 3) throw new RangeError(`discMask: ${rgb.length} bytes for a ${width}x${height} RGB image`);

  const isDark = (i: number) => rgb[3 * i] <= dark && rgb[3 * i + 1] <= dark && rgb[3 * i + 2] <= dark;
  const flooded = inside.slice(); // 1 = still disc
  const stack = new Int32Array(width * height);
  let top = 0;
  const seed = (i: number) => {
    if (flooded[i] && isDark(i)) {
      flooded[i] = 0;
      stack[top++] = i;
    }
  };
  // Seeds: dark disc-circle pixels on the photo's edge or next to a pixel outside the circle.
  for (let py = 0; py < height; py++) {
    for (let px = 0; px < width; px++) {
      const i = py * width + px;
      if (!inside[i]) continue;
      const edge =
        px === 0 || py === 0 || px === width - 1 || py === height - 1 || !inside[i - 1] || !inside[i + 1] || !inside[i - width] || !inside[i + width];
      if (edge) seed(i);
    }
  }
  while (top > 0) {
    const i = stack[--top];
    const px = i % width;
    if (px > 0) seed(i - 1);
    if (px < width - 1) seed(i + 1);
    if (i >= width) seed(i - width);
    if (i + width < width * height) seed(i + width);
  }
  let count = 0;
  for (let i = 0; i < flooded.length; i++) count += flooded[i];
  if (count < 0.25 * circleCount) return { width, height, inside, count: circleCount, cx, cy, r };
  return { width, height, inside: flooded, count, cx, cy, r };
}

/** The mask resampled (nearest pixel centre) onto a grid of `width` × `height` covering the same photo. */
export function resampleDisc(d: DiscMask, width: number, height: number): DiscMask {
  if (width === d.width && height === d.height) return d;
  const inside = new Uint8Array(width * height);
  const sx = d.width / width;
  const sy = d.height / height;
  let count = 0;
  for (let y = 0; y < height; y++) {
    const row = Math.min(d.height - 1, Math.floor((y + 0.5) * sy)) * d.width;
    for (let x = 0; x < width; x++) {
      const v = d.inside[row + Math.min(d.width - 1, Math.floor((x + 0.5) * sx))];
      inside[y * width + x] = v;
      count += v;
    }
  }
  return { width, height, inside, count, cx: d.cx / sx, cy: d.cy / sy, r: d.r / sx };
}
