import { test } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { preprocessImage, DEFAULT_PREPROCESS, type CropGeometry } from '../../src/data/preprocess.js';
import { argmax, heatmapFromNpy, heatmapToNpy, resizeHeatmap, sampleHeatmap, type Heatmap } from '../../src/explain/heatmap.js';
import { discMask } from '../../src/explain/disc.js';
import { colormap, heatmapOnPhoto, heatmapToPng16, renderOverlay } from '../../src/explain/overlay.js';

/**
 * A landscape photo whose fundus disc is clipped at the top and bottom (so preprocessing pads the crop square past the
 * photo's edges), with a small white marker at a known place on the disc.
 */
async function photoWithMarker(marker: { x: number; y: number }): Promise<Buffer> {
  const W = 300;
  const H = 200;
  const px = Buffer.alloc(W * H * 3, 5);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const i = (y * W + x) * 3;
      if ((x - 150) ** 2 + (y - 100) ** 2 <= 120 ** 2) px.fill(110, i, i + 3);
      if (x >= marker.x && x < marker.x + 5 && y >= marker.y && y < marker.y + 5) px.fill(255, i, i + 3);
    }
  }
  return sharp(px, { raw: { width: W, height: H, channels: 3 } }).png().toBuffer();
}

const settings = { ...DEFAULT_PREPROCESS, size: 64, channels: 'rgb' as const, normalize: { mean: [0.5], std: [0.25] } };

test('a hot spot on the network input lands on the original pixels it came from (padded, cropped photo)', async () => {
  const marker = { x: 220, y: 60 };
  const photo = await photoWithMarker(marker);
  const pre = await preprocessImage(photo, settings);
  const g = pre.geometry;
  assert.ok(g.y < 0 && g.y + g.side > g.height, `expected a square padded past the top and bottom, got ${JSON.stringify(g)}`);
  // Where the marker ended up in the network input: the brightest input pixel.
  let best = 0;
  for (let i = 0; i < pre.size * pre.size; i++) if (pre.data[i * 3 + 1] > pre.data[best * 3 + 1]) best = i;
  const heat: Heatmap = { width: pre.size, height: pre.size, data: new Float32Array(pre.size * pre.size) };
  heat.data[best] = 1;
  const onPhoto = heatmapOnPhoto(heat, g, 0);
  assert.equal(onPhoto.width, 300);
  assert.equal(onPhoto.height, 200);
  const peak = argmax(onPhoto);
  const tolerance = g.side / pre.size + 1; // one input pixel
  assert.ok(Math.abs(peak.x - (marker.x + 2)) <= tolerance, `peak x ${peak.x}, marker at ${marker.x + 2}`);
  assert.ok(Math.abs(peak.y - (marker.y + 2)) <= tolerance, `peak y ${peak.y}, marker at ${marker.y + 2}`);
});

test('a coarse feature-map cell maps onto its square of the crop, and nothing outside the crop is coloured', () => {
  // A 4x4 heatmap hot in cell (col 3, row 0) over a square that starts left of and above the photo.
  const g: CropGeometry = { width: 100, height: 80, x: -10, y: -30, side: 120 };
  const heat: Heatmap = { width: 4, height: 4, data: new Float32Array(16) };
  heat.data[3] = 1;
  const onPhoto = heatmapOnPhoto(heat, g);
  // Cell (3, 0) is centred at square (105, 15) = photo (95, -15): off the top edge, so the hottest photo row is 0, and
  // the first column at full heat is 95 (beyond the last cell centre the map stays at the border value).
  const peak = argmax(onPhoto);
  assert.equal(peak.x, 95);
  // Photo row 0 lies 15.5 px (about half a cell) below that centre: half the heat.
  assert.ok(Math.abs(peak.value - (1 - 15.5 / 30)) < 1e-6, `peak value ${peak.value}`);
  assert.ok(onPhoto.data[94] < peak.value && onPhoto.data[94] > 0.9 * peak.value);
  assert.ok(onPhoto.data[60] < 0.2, 'the next cell to the left is cold');
  assert.equal(peak.y, 0);
  // A crop smaller than the photo: pixels outside it are NaN ("not seen by the model").
  const inner = heatmapOnPhoto(heat, { width: 100, height: 80, x: 20, y: 10, side: 60 });
  assert.ok(Number.isNaN(inner.data[5 * 100 + 5]));
  assert.ok(!Number.isNaN(inner.data[40 * 100 + 50]));
});

test('heatmapOnPhoto samples every photo pixel as sampleHeatmap does (fractional, padded and inner crops)', () => {
  const heat: Heatmap = { width: 7, height: 5, data: Float32Array.from({ length: 35 }, (_, i) => Math.sin(i * 1.3) ** 2) };
  for (const g of [
    { width: 97, height: 61, x: -10.3, y: -25.7, side: 120.6 },
    { width: 100, height: 80, x: 20.5, y: 10.25, side: 59.5 },
  ]) {
    const onPhoto = heatmapOnPhoto(heat, g, -1);
    for (let py = 0; py < g.height; py++) {
      for (let px = 0; px < g.width; px++) {
        const u = px + 0.5 - g.x;
        const v = py + 0.5 - g.y;
        const inside = u >= 0 && u <= g.side && v >= 0 && v <= g.side;
        const want = inside ? sampleHeatmap(heat, (u * heat.width) / g.side, (v * heat.height) / g.side) : -1;
        const got = onPhoto.data[py * g.width + px];
        assert.ok(Math.abs(got - want) < 1e-5, `pixel (${px}, ${py}): ${got} instead of ${want}`);
      }
    }
  }
});

test('renderOverlay blends the colormap over the full-resolution photo; 16-bit PNG and .npy keep the values', async () => {
  const photo = await photoWithMarker({ x: 100, y: 100 });
  const pre = await preprocessImage(photo, settings);
  const heat: Heatmap = { width: 2, height: 2, data: Float32Array.from([0, 0, 0, 1]) };
  for (const cmap of ['jet', 'turbo'] as const) {
    const png = await renderOverlay(photo, heat, pre.geometry, { colormap: cmap, alpha: 0.6 });
    const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    assert.equal(info.width, 300);
    assert.equal(info.height, 200);
    const at = (x: number, y: number) => [0, 1, 2].map((c) => data[(y * 300 + x) * info.channels + c]);
    const hot = at(230, 170); // bottom-right cell of the crop: hot, red
    const cold = at(70, 30); // top-left: cold, blue
    assert.ok(hot[0] > hot[2] + 40, `${cmap} hot pixel ${hot}`);
    if (cmap === 'jet') assert.ok(cold[2] > cold[0] + 40, `jet cold pixel ${cold}`);
    else assert.ok(cold[0] < hot[0] - 60, `turbo cold pixel ${cold} vs hot ${hot}`);
    const [r, gg, b] = colormap(cmap, 1);
    assert.ok(r > gg && r > b);
  }
  const png16 = await heatmapToPng16(heat, pre.geometry);
  const raw16 = await sharp(png16).toColourspace('grey16').raw({ depth: 'ushort' }).toBuffer({ resolveWithObject: true });
  assert.equal(raw16.info.width, 300);
  const u16 = new Uint16Array(raw16.data.buffer, raw16.data.byteOffset, raw16.data.length / 2);
  assert.ok(u16[180 * 300 + 200] > 60000, `16-bit value ${u16[180 * 300 + 200]}`);
  assert.equal(u16[0], 0);
  // Outside the disc but inside the crop square (the bottom-right corner of the square): 0, unless unmasked.
  assert.equal(u16[199 * 300 + 260], 0);
  const unmasked = await sharp(await heatmapToPng16(heat, pre.geometry, false)).toColourspace('grey16').raw({ depth: 'ushort' }).toBuffer();
  assert.ok(new Uint16Array(unmasked.buffer, unmasked.byteOffset, unmasked.length / 2)[199 * 300 + 260] > 60000);
  const up = resizeHeatmap(heat, 7, 5);
  const back = heatmapFromNpy(heatmapToNpy(up));
  assert.deepEqual([back.width, back.height], [7, 5]);
  assert.deepEqual(Array.from(back.data), Array.from(up.data));
});

test('an overlay for a photo of another size is refused with the file named', async () => {
  const photo = await photoWithMarker({ x: 100, y: 100 });
  const heat: Heatmap = { width: 2, height: 2, data: new Float32Array(4) };
  await assert.rejects(renderOverlay(photo, heat, { width: 640, height: 480, x: 0, y: 0, side: 640 }), /300x200.*640x480/);
});

test('overlays leave the black corners outside the fundus disc untouched; disc: false colours the whole crop square', async () => {
  const photo = await photoWithMarker({ x: 100, y: 100 });
  const pre = await preprocessImage(photo, settings);
  const g = pre.geometry;
  const original = await sharp(photo).removeAlpha().raw().toBuffer();
  const hot: Heatmap = { width: 2, height: 2, data: Float32Array.from([1, 1, 1, 1]) };
  const pixels = async (opts: Parameters<typeof renderOverlay>[3]) => {
    const { data, info } = await sharp(await renderOverlay(photo, hot, g, opts)).raw().toBuffer({ resolveWithObject: true });
    assert.equal(info.channels, 3);
    return data;
  };
  const masked = await pixels({ alpha: 0.6 });
  const whole = await pixels({ alpha: 0.6, disc: false });
  // Pixels of the crop square outside the disc of radius 120 around (150, 100): the square's corners.
  let corners = 0;
  let disc = 0;
  for (let y = 0; y < 200; y++) {
    for (let x = Math.ceil(g.x); x < g.x + g.side && x < 300; x++) {
      const i = (y * 300 + x) * 3;
      const same = (d: Buffer) => d[i] === original[i] && d[i + 1] === original[i + 1] && d[i + 2] === original[i + 2];
      const r = Math.hypot(x + 0.5 - 150, y + 0.5 - 100);
      if (r > 121) {
        corners++;
        assert.ok(same(masked), `corner pixel (${x}, ${y}) painted`);
        assert.ok(!same(whole), `unmasked corner pixel (${x}, ${y}) not painted`);
      } else if (r < 118) {
        disc++;
        assert.ok(!same(masked), `disc pixel (${x}, ${y}) not painted`);
      }
    }
  }
  assert.ok(corners > 1000 && disc > 40000, `${corners} corner and ${disc} disc pixels checked`);
  // A mask made once for the photo gives the same overlay.
  const decoded = await sharp(photo).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const d = discMask(decoded.data, 300, 200, g);
  assert.deepEqual(await pixels({ alpha: 0.6, disc: d }), masked);
  // The dark-border test keeps dark retina enclosed by the disc and drops dark border reaching into the circle.
  assert.equal(discMask(undefined, 300, 200, g).count > d.count, true);
});

test('discMask: a dark spot inside the disc stays in, a dark notch from the border stays out, an all-dark photo falls back to the circle', () => {
  const W = 100;
  const H = 100;
  const g: CropGeometry = { width: W, height: H, x: 0, y: 0, side: 100 };
  const rgb = new Uint8Array(W * H * 3);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const i = (y * W + x) * 3;
      const r = Math.hypot(x + 0.5 - 50, y + 0.5 - 50);
      const spot = Math.hypot(x + 0.5 - 50, y + 0.5 - 50) < 5; // a dark lesion at the centre
      const notch = x >= 45 && x < 55 && y < 10; // the field stop's notch at the top, reaching into the circle
      if (r < 48 && !spot && !notch) rgb.fill(100, i, i + 3);
    }
  }
  const d = discMask(rgb, W, H, g);
  assert.equal(d.inside[50 * W + 50], 1, 'the enclosed dark spot stays in');
  assert.equal(d.inside[5 * W + 50], 0, 'the notch is out');
  assert.equal(d.inside[49 * W + 1], 0, 'the dark ring between the disc (r 48) and the circle (r 50) is out');
  assert.equal(d.inside[50 * W + 20], 1);
  assert.equal(d.inside[0], 0, 'the corner is out');
  const dark = discMask(new Uint8Array(W * H * 3), W, H, g);
  assert.equal(dark.count, discMask(undefined, W, H, g).count);
  const small = new Uint8Array(50 * 50 * 3);
  for (let y = 0; y < 50; y++) for (let x = 0; x < 50; x++) small.set(rgb.subarray(((2 * y + 1) * W + 2 * x + 1) * 3, ((2 * y + 1) * W + 2 * x + 1) * 3 + 3), (y * 50 + x) * 3);
  const half = discMask(small, 50, 50, g, { scale: 0.5 });
  assert.equal(half.inside[25 * 50 + 25], 1);
  assert.ok(Math.abs(half.count - d.count / 4) < 0.05 * d.count, `${half.count} vs ${d.count / 4}`);
});
