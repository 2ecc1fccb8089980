// Small fixtures the data tests build: synthetic fundus-like photos and broken files.
import sharp from 'sharp';
import { writeFile } from 'node:fs/promises';
import { CLASSES } from '../../src/data/labels.js';
import type { LabelledImage } from '../../src/data/labels.js';

/**
 * A synthetic fundus photo: a bright textured disc of radius r centred at (cx, cy) on a black background, with a
 * few dark "vessels" so that it is not flat.
 */
export async function fakeFundus(width: number, height: number, cx: number, cy: number, r: number, seed = 1): Promise<Buffer> {
  const raw = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const d = Math.hypot(x - cx, y - cy);
      if (d > r) continue;
      const vessel = Math.abs(Math.sin((x + seed * 7) / 9) * 20 - (y - cy) / 3) < 2 ? 60 : 0;
      const o = (y * width + x) * 3;
      raw[o] = 200 - vessel;
      raw[o + 1] = 120 - vessel / 2 + ((x * seed) % 17);
      raw[o + 2] = 60;
    }
  }
  return sharp(raw, { raw: { width, height, channels: 3 } }).jpeg({ quality: 92 }).toBuffer();
}

export async function writeFakeFundus(path: string, width = 128, height = 128, seed = 1): Promise<void> {
  await writeFile(path, await fakeFundus(width, height, width / 2, height / 2, Math.min(width, height) / 2 - 2, seed));
}

export const CONTEST_HEADER = 'filename,opacity,diabetic retinopathy,glaucoma,macular edema,macular degeneration,retinal vascular occlusion,normal';

/** A labelled image in CLASSES order: its positives, and the classes graded (absent: all of them). */
export function labelledImage(name: string, positives: string[], graded?: string[], source?: string): LabelledImage {
  const labels = Uint8Array.from(CLASSES, (c) => (positives.includes(c) ? 1 : 0));
  const mask = graded ? Uint8Array.from(CLASSES, (c) => (graded.includes(c) ? 1 : 0)) : undefined;
  return { filename: name, path: `/x/${name}`, labels, ...(mask ? { graded: mask } : {}), ...(source ? { source } : {}) };
}
