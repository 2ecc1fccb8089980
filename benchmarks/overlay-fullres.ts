// Full-resolution overlays (#17): the time to turn one heatmap into what a specialist opens — the map upsampled
// smoothly onto a 4288×2848 photograph (IDRiD's camera), masked to the fundus disc, blended in a colormap and encoded
// as PNG, plus the 16-bit map — per map, beyond the network's own pass (the CAM itself is computed on the layer's grid
// and costs the same at any photograph size). Target: under a second per method.
// Peer: PyTorch doing what pytorch-grad-cam's show_cam_on_image does (bilinear upsampling, colormap, blend) on the same
// sizes, without PNG encoding (no image library in the peer's environment); the ratio line compares that part only.
// Run: npx tsx benchmarks/overlay-fullres.ts [--width 4288 --height 2848 --grid 28 --repeats 5]
import { spawnSync } from 'node:child_process';
import { decodeRgb, findDiscSquare } from '../src/data/preprocess.js';
import { discMask } from '../src/explain/disc.js';
import { heatmapOnPhoto, heatmapToPng16, renderOverlayRgb } from '../src/explain/overlay.js';
import type { Heatmap } from '../src/explain/heatmap.js';
import sharp from 'sharp';
import { arg, medianSecondsAsync } from './timing.js';

// pytorch-grad-cam's show_cam_on_image without OpenCV: resize the map bilinearly to the photograph, a jet-like
// colormap, alpha blend. Median seconds over the repeats, as ours.
const PEER = `
import sys, time, torch
torch.set_num_threads(2)
w, h, g, reps = map(int, sys.argv[1:5])
photo = torch.randint(0, 255, (h, w, 3), dtype=torch.uint8)
cam = torch.rand(1, 1, g, g)
def once():
    m = torch.nn.functional.interpolate(cam, size=(h, w), mode='bilinear', align_corners=False)[0, 0]
    r = (1.5 - (4 * m - 3).abs()).clamp(0, 1); gg = (1.5 - (4 * m - 2).abs()).clamp(0, 1); b = (1.5 - (4 * m - 1).abs()).clamp(0, 1)
    heat = torch.stack([r, gg, b], -1) * 255
    return (0.55 * photo.float() + 0.45 * heat).round().to(torch.uint8)
once()
ts = []
for _ in range(reps):
    t = time.perf_counter(); once(); ts.append(time.perf_counter() - t)
ts.sort()
print('peer_seconds', ts[(len(ts) - 1) // 2])
`;

const width = arg('--width', 4288);
const height = arg('--height', 2848);
const grid = arg('--grid', 28); // MobileNetV2's stride-8 layer at 224 px; 7 for its last layer
const repeats = arg('--repeats', 5);

/** A made-up fundus photograph: a bright disc with texture on black, JPEG-encoded as a camera would deliver it. */
async function syntheticPhoto(): Promise<Buffer> {
  const rgb = Buffer.alloc(width * height * 3);
  const cx = width / 2;
  const cy = height / 2;
  const r = 0.46 * height;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const d = Math.hypot(x - cx, y - cy) / r;
      if (d > 1) continue;
      const t = 0.5 + 0.25 * Math.sin(x / 37) * Math.cos(y / 53);
      const i = (y * width + x) * 3;
      rgb[i] = 200 * (1 - 0.4 * d) * t + 40;
      rgb[i + 1] = 90 * (1 - 0.5 * d) * t + 20;
      rgb[i + 2] = 30 * t + 10;
    }
  }
  return sharp(rgb, { raw: { width, height, channels: 3 } }).jpeg({ quality: 90 }).toBuffer();
}

const medianOf = (fn: () => Promise<unknown>): Promise<number> => medianSecondsAsync(fn, repeats, true);

const jpeg = await syntheticPhoto();
const photo = await decodeRgb(jpeg);
const geometry = findDiscSquare(photo.data, photo.width, photo.height, 3);
const heatmap: Heatmap = { width: grid, height: grid, data: Float32Array.from({ length: grid * grid }, (_, i) => 0.5 + 0.5 * Math.sin(i * 0.7)) };

const rows: [string, number][] = [];
rows.push(['decode the photograph (once per photograph)', await medianOf(() => decodeRgb(jpeg))]);
rows.push(['disc mask (once per photograph)', await medianOf(async () => discMask(photo.data, width, height, geometry))]);
const disc = discMask(photo.data, width, height, geometry);
rows.push(['upsample onto the photograph', await medianOf(async () => heatmapOnPhoto(heatmap, geometry))]);
const overlay = await medianOf(() => renderOverlayRgb(photo, heatmap, geometry, { disc }));
rows.push(['overlay PNG (upsample, mask, blend, encode)', overlay]);
const png16 = await medianOf(() => heatmapToPng16(heatmap, geometry, disc));
rows.push(['16-bit map PNG (upsample, mask, encode)', png16]);
const blendOnly = await medianOf(async () => {
  const heat = heatmapOnPhoto(heatmap, geometry);
  const out = Buffer.from(photo.data);
  for (let i = 0; i < width * height; i++) {
    const h = heat.data[i];
    if (!disc.inside[i] || !(h >= 0)) continue;
    out[i * 3] = Math.round(0.55 * photo.data[i * 3] + 0.45 * 255 * h);
  }
  return out;
});

console.log(`full-resolution heatmaps on a ${width}×${height} photograph, a ${grid}×${grid} map, median of ${repeats}:`);
for (const [what, s] of rows) console.log(`  ${what.padEnd(46)} ${s.toFixed(3)} s`);
const perMethod = overlay;
console.log(`per method (overlay PNG): ${perMethod.toFixed(3)} s — target < 1 s: ${perMethod < 1 ? 'met' : 'NOT met'}`);
console.log(`per method with the 16-bit map too: ${(overlay + png16).toFixed(3)} s`);

const peer = spawnSync('/usr/bin/python3', ['-c', PEER, String(width), String(height), String(grid), String(repeats)], { encoding: 'utf8' });
if (peer.status === 0) {
  const peerSeconds = Number(/peer_seconds (\S+)/.exec(peer.stdout)?.[1]);
  console.log(`peer (PyTorch: bilinear upsample, colormap, blend; no encoding): ${peerSeconds.toFixed(3)} s`);
  console.log(`ratio upsample+blend pytorch/fundus: ${(peerSeconds / blendOnly).toFixed(2)}`);
} else {
  console.log(`peer skipped: ${(peer.stderr || peer.error?.message || '').trim().split('\n').pop()}`);
}
