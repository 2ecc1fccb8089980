import type { ExplainResponse } from './api.js';
import { turbo } from './colormap.js';

/**
 * The heatmap as an image of its own resolution: turbo colours, and an alpha that grows with the value so that
 * regions the model ignored keep the photograph visible underneath.
 */
export function heatmapImage(h: ExplainResponse['heatmap']): HTMLCanvasElement {
  const c = document.createElement('canvas');
  c.width = h.width;
  c.height = h.height;
  const ctx = c.getContext('2d')!;
  const img = ctx.createImageData(h.width, h.height);
  for (let i = 0; i < h.data.length; i++) {
    const v = h.data[i];
    const [r, g, b] = turbo(v);
    img.data[4 * i] = r;
    img.data[4 * i + 1] = g;
    img.data[4 * i + 2] = b;
    img.data[4 * i + 3] = Math.round(255 * Math.min(1, 0.15 + 1.1 * v));
  }
  ctx.putImageData(img, 0, 0);
  return c;
}

/**
 * Draws the photograph and, over it, the heatmap stretched onto the square crop the network saw (which may reach
 * past the photo's edges), at `opacity`. The canvas keeps the photograph's full resolution so that a downloaded
 * overlay is as sharp as the original.
 */
export function drawOverlay(
  canvas: HTMLCanvasElement,
  photo: CanvasImageSource & { width: number; height: number },
  heat: { image: HTMLCanvasElement; crop: ExplainResponse['crop'] } | undefined,
  opacity: number,
): void {
  canvas.width = photo.width;
  canvas.height = photo.height;
  const ctx = canvas.getContext('2d')!;
  ctx.globalAlpha = 1;
  ctx.drawImage(photo, 0, 0);
  if (!heat || opacity <= 0) return;
  // The crop is in the coordinates of the photo as the server decoded it; scale in case the browser's differs.
  const sx = photo.width / heat.crop.width;
  const sy = photo.height / heat.crop.height;
  const x = heat.crop.x * sx;
  const y = heat.crop.y * sy;
  const w = heat.crop.side * sx;
  const h = heat.crop.side * sy;
  ctx.save();
  // The crop square is fitted to the fundus disc: colour only the disc, not the black camera border around it.
  ctx.beginPath();
  ctx.ellipse(x + w / 2, y + h / 2, (w / 2) * 1.02, (h / 2) * 1.02, 0, 0, 2 * Math.PI);
  ctx.clip();
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = 'high';
  ctx.globalAlpha = opacity;
  ctx.drawImage(heat.image, x, y, w, h);
  ctx.restore();
}
