/** A relevance map over the network input, row-major, `height` rows of `width` values. */
export interface Heatmap {
  width: number;
  height: number;
  /** In [0, 1] for a normalised heatmap; any non-negative scale for a raw CAM. */
  data: Float32Array;
}

/**
 * Min-max scales a raw map into [0, 1], as pytorch-grad-cam does. A flat map (no evidence anywhere, e.g. every
 * gradient rectified away) becomes all zeros rather than noise amplified to full scale.
 */
export function normalizeHeatmap(raw: Heatmap): Heatmap {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of raw.data) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const data = new Float32Array(raw.data.length);
  const range = hi - lo;
  if (Number.isFinite(range) && range > 1e-12 * Math.max(1, Math.abs(hi))) {
    for (let i = 0; i < data.length; i++) data[i] = (raw.data[i] - lo) / range;
  }
  return { width: raw.width, height: raw.height, data };
}

/**
 * Samples a heatmap at continuous coordinates given in heatmap cells (cell centres at i + 0.5), bilinearly, clamping
 * at the border: the same convention as `tf.image.resizeBilinear` with half-pixel centres, so that cell (i, j) of a
 * feature map covers the same part of the input as the receptive-field centre grid.
 */
export function sampleHeatmap(h: Heatmap, x: number, y: number): number {
  const fx = Math.min(Math.max(x - 0.5, 0), h.width - 1);
  const fy = Math.min(Math.max(y - 0.5, 0), h.height - 1);
  const x0 = Math.floor(fx);
  const y0 = Math.floor(fy);
  const x1 = Math.min(x0 + 1, h.width - 1);
  const y1 = Math.min(y0 + 1, h.height - 1);
  const ax = fx - x0;
  const ay = fy - y0;
  const d = h.data;
  const top = d[y0 * h.width + x0] * (1 - ax) + d[y0 * h.width + x1] * ax;
  const bottom = d[y1 * h.width + x0] * (1 - ax) + d[y1 * h.width + x1] * ax;
  return top * (1 - ay) + bottom * ay;
}

/** Bilinear resize (half-pixel centres) of a heatmap to `width` × `height`. */
export function resizeHeatmap(h: Heatmap, width: number, height: number): Heatmap {
  const data = new Float32Array(width * height);
  const sx = h.width / width;
  const sy = h.height / height;
  for (let r = 0; r < height; r++) {
    for (let c = 0; c < width; c++) data[r * width + c] = sampleHeatmap(h, (c + 0.5) * sx, (r + 0.5) * sy);
  }
  return { width, height, data };
}

/** The heatmap mirrored left to right: a mirror image's map, brought back to the photograph's orientation. */
export function mirrorHeatmap(h: Heatmap): Heatmap {
  const data = new Float32Array(h.data.length);
  for (let r = 0; r < h.height; r++) {
    const row = r * h.width;
    for (let c = 0; c < h.width; c++) data[row + c] = h.data[row + h.width - 1 - c];
  }
  return { width: h.width, height: h.height, data };
}

/** Index of the largest value (first one on ties). */
export function argmax(h: Heatmap): { x: number; y: number; value: number } {
  let best = 0;
  for (let i = 1; i < h.data.length; i++) if (h.data[i] > h.data[best]) best = i;
  return { x: best % h.width, y: Math.floor(best / h.width), value: h.data[best] };
}

/**
 * Serialises a heatmap as a NumPy `.npy` file (format 1.0, little-endian float32, shape (height, width)), readable
 * with `numpy.load` for further analysis.
 */
export function heatmapToNpy(h: Heatmap): Buffer {
  const magic = Buffer.from([0x93, ...Buffer.from('NUMPY'), 1, 0]);
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${h.height}, ${h.width}), }`;
  // The header (magic + 2-byte length + dict + newline) is padded with spaces to a multiple of 64 bytes.
  const total = Math.ceil((magic.length + 2 + header.length + 1) / 64) * 64;
  header = header.padEnd(total - magic.length - 2 - 1, ' ') + '\n';
  const len = Buffer.alloc(2);
  len.writeUInt16LE(header.length);
  const body = Buffer.alloc(h.data.length * 4);
  for (let i = 0; i < h.data.length; i++) body.writeFloatLE(h.data[i], i * 4);
  return Buffer.concat([magic, len, Buffer.from(header, 'latin1'), body]);
}

/** Reads back a float32 2-D `.npy` written by `heatmapToNpy` (or numpy), for tests and tools. */
export function heatmapFromNpy(buf: Buffer): Heatmap {
  if (buf.length < 10 || buf[0] !== 0x93 || buf.subarray(1, 6).toString('latin1') !== 'NUMPY') {
    throw new Error('not a .npy file');
  }
  const headerLen = buf.readUInt16LE(8);
  const header = buf.subarray(10, 10 + headerLen).toString('latin1');
  if (!header.includes("'<f4'") || header.includes("'fortran_order': True")) throw new Error('expected C-order float32');
  const m = /'shape': \((\d+), (\d+)\)/.exec(header);
  if (!m) throw new Error('expected a 2-D array');
  const height = Number(m[1]);
  const width = Number(m[2]);
  const off = 10 + headerLen;
  const data = new Float32Array(width * height);
  for (let i = 0; i < data.length; i++) data[i] = buf.readFloatLE(off + i * 4);
  return { width, height, data };
}
