import sharp from 'sharp';
import { augment } from './augment.js';
import type { AugmentSettings } from './augment.js';
import { denormalize, preprocessImage } from './preprocess.js';
import { openPhoto } from './photo-source.js';
import type { PreprocessSettings } from './preprocess.js';
import { seededRandom } from './random.js';

export interface PreviewOptions {
  settings: PreprocessSettings;
  augment?: Partial<AugmentSettings>;
  /** Augmented variants per image. */
  augmentations: number;
  seed: number;
}

const GAP = 6;
const HEADER = 24;

/** Pastes an HWC image (1 or 3 channels) into an RGB canvas at (left, top). */
function paste(canvas: Buffer, canvasWidth: number, img: Uint8Array, size: number, channels: number, left: number, top: number): void {
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const o = ((top + y) * canvasWidth + left + x) * 3;
      const i = (y * size + x) * channels;
      canvas[o] = img[i];
      canvas[o + 1] = img[channels === 3 ? i + 1 : i];
      canvas[o + 2] = img[channels === 3 ? i + 2 : i];
    }
  }
}

/** Outlines a rectangle (clipped to the cell) in red: where the crop square lies on the original photo. */
function outline(canvas: Buffer, canvasWidth: number, cell: { left: number; top: number; size: number }, x0: number, y0: number, x1: number, y1: number): void {
  const set = (x: number, y: number): void => {
    if (x < 0 || y < 0 || x >= cell.size || y >= cell.size) return;
    const o = ((cell.top + y) * canvasWidth + cell.left + x) * 3;
    canvas[o] = 255;
    canvas[o + 1] = 40;
    canvas[o + 2] = 40;
  };
  for (let t = 0; t < 2; t++) {
    for (let x = x0; x <= x1; x++) {
      set(x, y0 + t);
      set(x, y1 - t);
    }
    for (let y = y0; y <= y1; y++) {
      set(x0 + t, y);
      set(x1 - t, y);
    }
  }
}

/**
 * A PNG grid: one row per image with the original photo (the crop square outlined in red), the preprocessed network
 * input, and `augmentations` random augmentations of it, so that a person can see what the network sees.
 */
export async function renderPreview(paths: string[], opts: PreviewOptions): Promise<Buffer> {
  const size = opts.settings.size;
  const cols = 2 + opts.augmentations;
  const width = cols * size + (cols + 1) * GAP;
  const height = HEADER + paths.length * size + (paths.length + 1) * GAP;
  const canvas = Buffer.alloc(width * height * 3, 255);
  const rng = seededRandom(opts.seed);
  for (const [row, path] of paths.entries()) {
    const top = HEADER + GAP + row * (size + GAP);
    const pre = await preprocessImage(path, opts.settings);
    const g = pre.geometry;
    // the original, letterboxed into the cell with the same scale for both axes
    const scale = size / Math.max(g.width, g.height);
    const ow = Math.max(1, Math.round(g.width * scale));
    const oh = Math.max(1, Math.round(g.height * scale));
    const ox = Math.floor((size - ow) / 2);
    const oy = Math.floor((size - oh) / 2);
    const orig = await sharp((await openPhoto(path)).source)
      .rotate()
      .removeAlpha()
      .toColourspace('srgb')
      .resize(ow, oh, { fit: 'fill' })
      .extend({ left: ox, top: oy, right: size - ow - ox, bottom: size - oh - oy, background: { r: 255, g: 255, b: 255 } })
      .raw()
      .toBuffer();
    const cell0 = { left: GAP, top, size };
    paste(canvas, width, orig, size, 3, cell0.left, cell0.top);
    outline(canvas, width, cell0, Math.round(ox + g.x * scale), Math.round(oy + g.y * scale), Math.round(ox + (g.x + g.side) * scale) - 1, Math.round(oy + (g.y + g.side) * scale) - 1);
    paste(canvas, width, denormalize(pre.data, pre.channels, opts.settings), size, pre.channels, GAP + (size + GAP), top);
    for (let a = 0; a < opts.augmentations; a++) {
      const aug = augment(pre.data, size, pre.channels, rng, { ...opts.augment, normalize: opts.settings.normalize });
      paste(canvas, width, denormalize(aug, pre.channels, opts.settings), size, pre.channels, GAP + (2 + a) * (size + GAP), top);
    }
  }
  const titles = ['original (crop in red)', 'preprocessed', ...Array.from({ length: opts.augmentations }, (_, i) => `augmented ${i + 1}`)];
  const svg =
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${HEADER}">` +
    titles
      .map((t, c) => `<text x="${GAP + c * (size + GAP) + size / 2}" y="17" font-family="sans-serif" font-size="13" text-anchor="middle">${t}</text>`)
      .join('') +
    '</svg>';
  return sharp(canvas, { raw: { width, height, channels: 3 } })
    .composite([{ input: Buffer.from(svg), left: 0, top: 0 }])
    .png()
    .toBuffer();
}
