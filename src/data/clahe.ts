/**
 * Contrast-limited adaptive histogram equalisation (Zuiderveld 1994): per-tile histograms clipped at `clipLimit` times
 * the mean bin height, the excess spread over all bins, and each pixel mapped by bilinear interpolation between the
 * four nearest tiles' mappings. Pixels outside `mask` (the dark border around the fundus disc) are left out of the
 * histograms and left unchanged, so the border stays black and does not wash out the disc's edge tiles. O(pixels), a
 * few milliseconds for a 227×227 image, where libvips's sliding-window hist_local took about 100.
 */
export function claheChannel(
  src: Uint8Array,
  width: number,
  height: number,
  mask: Uint8Array | undefined,
  opts: { tiles?: number; clipLimit?: number } = {},
): Uint8Array {
  const tiles = opts.tiles ?? 8;
  const clipLimit = opts.clipLimit ?? 3;
  const tw = width / tiles;
  const th = height / tiles;
  const maps = new Float32Array(tiles * tiles * 256);
  const hist = new Float64Array(256);
  for (let ty = 0; ty < tiles; ty++) {
    for (let tx = 0; tx < tiles; tx++) {
      hist.fill(0);
      let n = 0;
      const x0 = Math.floor(tx * tw);
      const x1 = Math.floor((tx + 1) * tw);
      const y0 = Math.floor(ty * th);
      const y1 = Math.floor((ty + 1) * th);
      for (let y = y0; y < y1; y++) {
        for (let x = x0; x < x1; x++) {
          const i = y * width + x;
          if (mask && !mask[i]) continue;
          hist[src[i]]++;
          n++;
        }
      }
      const map = maps.subarray((ty * tiles + tx) * 256, (ty * tiles + tx + 1) * 256);
      if (n === 0) {
        for (let v = 0; v < 256; v++) map[v] = v;
        continue;
      }
      const limit = Math.max(1, (clipLimit * n) / 256);
      let excess = 0;
      for (let v = 0; v < 256; v++) {
        if (hist[v] > limit) {
          excess += hist[v] - limit;
          hist[v] = limit;
        }
      }
      const add = excess / 256;
      let cdf = 0;
      for (let v = 0; v < 256; v++) {
        const h = hist[v] + add;
        // the midpoint of the bin's cumulative range, so that a flat tile maps onto itself rather than brightening
        map[v] = (255 * (cdf + h / 2)) / n;
        cdf += h;
      }
    }
  }
  const out = new Uint8Array(src.length);
  for (let y = 0; y < height; y++) {
    const gy = (y + 0.5) / th - 0.5;
    const ty0 = Math.max(0, Math.min(tiles - 1, Math.floor(gy)));
    const ty1 = Math.min(tiles - 1, ty0 + 1);
    const fy = Math.max(0, Math.min(1, gy - ty0));
    for (let x = 0; x < width; x++) {
      const i = y * width + x;
      if (mask && !mask[i]) {
        out[i] = src[i];
        continue;
      }
      const gx = (x + 0.5) / tw - 0.5;
      const tx0 = Math.max(0, Math.min(tiles - 1, Math.floor(gx)));
      const tx1 = Math.min(tiles - 1, tx0 + 1);
      const fx = Math.max(0, Math.min(1, gx - tx0));
      const v = src[i];
      const a = maps[(ty0 * tiles + tx0) * 256 + v];
      const b = maps[(ty0 * tiles + tx1) * 256 + v];
      const c = maps[(ty1 * tiles + tx0) * 256 + v];
      const d = maps[(ty1 * tiles + tx1) * 256 + v];
      const r = (1 - fy) * ((1 - fx) * a + fx * b) + fy * ((1 - fx) * c + fx * d);
      out[i] = r < 0 ? 0 : r > 255 ? 255 : Math.round(r);
    }
  }
  return out;
}

/**
 * CLAHE of an RGB image through its luminance: the luma is equalised and every pixel's R, G and B are scaled by the
 * same factor, which keeps hues (lesion colours matter to graders) where per-channel equalisation would shift them.
 */
export function claheRgb(rgb: Uint8Array, width: number, height: number, mask: Uint8Array | undefined, opts: { tiles?: number; clipLimit?: number } = {}): Uint8Array {
  const n = width * height;
  const luma = new Uint8Array(n);
  for (let i = 0; i < n; i++) luma[i] = Math.round(0.299 * rgb[3 * i] + 0.587 * rgb[3 * i + 1] + 0.114 * rgb[3 * i + 2]);
  const eq = claheChannel(luma, width, height, mask, opts);
  const out = new Uint8Array(rgb.length);
  for (let i = 0; i < n; i++) {
    const k = luma[i] > 0 ? eq[i] / luma[i] : 1;
    for (let c = 0; c < 3; c++) {
      const v = Math.round(rgb[3 * i + c] * k);
      out[3 * i + c] = v > 255 ? 255 : v;
    }
  }
  return out;
}
