/**
 * Area-average resampling of a square window of an interleaved 8-bit image to `size`×`size`: each output pixel is
 * the mean of the input over its footprint, partial pixels weighted by their overlap. Parts of the window outside
 * the image count as black, so a window that overhangs the photo comes out padded, with no seam or shift at the
 * edge. Window coordinates may be fractional; the output pixel u covers [x + u·s, x + (u+1)·s) with s = side/size,
 * the mapping that CropGeometry describes.
 */
export function resampleSquareArea(
  src: Uint8Array,
  width: number,
  height: number,
  channels: number,
  window: { x: number; y: number; side: number },
  size: number,
): Uint8Array {
  const s = window.side / size;
  const cols = footprints(window.x, s, size, width);
  const rows = footprints(window.y, s, size, height);
  // Horizontal pass on the rows any output row touches, then the vertical pass.
  const rowLo = rows.lo;
  const rowCount = rows.hi - rowLo;
  const tmp = new Float32Array(Math.max(0, rowCount) * size * channels);
  for (let r = 0; r < rowCount; r++) {
    const srcRow = (rowLo + r) * width * channels;
    const dstRow = r * size * channels;
    for (let u = 0; u < size; u++) {
      const start = cols.start[u];
      const end = cols.start[u + 1];
      for (let c = 0; c < channels; c++) {
        let sum = 0;
        for (let k = start; k < end; k++) sum += cols.weight[k] * src[srcRow + cols.index[k] * channels + c];
        tmp[dstRow + u * channels + c] = sum;
      }
    }
  }
  const out = new Uint8Array(size * size * channels);
  const line = size * channels;
  const acc = new Float32Array(line);
  for (let v = 0; v < size; v++) {
    const start = rows.start[v];
    const end = rows.start[v + 1];
    const dst = v * line;
    for (let k = start; k < end; k++) {
      const w = rows.weight[k];
      const from = (rows.index[k] - rowLo) * line;
      for (let i = 0; i < line; i++) acc[i] += w * tmp[from + i];
    }
    for (let i = 0; i < line; i++) {
      const val = Math.round(acc[i]);
      out[dst + i] = val < 0 ? 0 : val > 255 ? 255 : val;
      acc[i] = 0;
    }
  }
  return out;
}

/**
 * For each output index u, the input pixels that overlap [origin + u·s, origin + (u+1)·s) and their weights
 * (overlap / s), in CSR form: pixels start[u]..start[u+1]-1 of `index`/`weight`. Out-of-range pixels are dropped,
 * which is what makes them count as black.
 */
function footprints(origin: number, s: number, size: number, limit: number) {
  const start = new Int32Array(size + 1);
  const index: number[] = [];
  const weight: number[] = [];
  let lo = Infinity;
  let hi = -Infinity;
  for (let u = 0; u < size; u++) {
    start[u] = index.length;
    const a = origin + u * s;
    const b = a + s;
    for (let p = Math.max(0, Math.floor(a)); p < Math.min(limit, Math.ceil(b)); p++) {
      const overlap = Math.min(b, p + 1) - Math.max(a, p);
      if (overlap <= 0) continue;
      index.push(p);
      weight.push(overlap / s);
      if (p < lo) lo = p;
      if (p + 1 > hi) hi = p + 1;
    }
  }
  start[size] = index.length;
  if (lo === Infinity) lo = hi = 0;
  return { start, index: Int32Array.from(index), weight: Float32Array.from(weight), lo, hi };
}
