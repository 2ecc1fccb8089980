// The gradability gate (issue 20, src/data/gradability.ts) measured on the real photographs and on made-up frames.
// Real: every VietAI photograph (labelled and unlabelled) and every external source's images (../shared/data); the
// gate must reject almost none, and each rejected one is listed with its reasons and measures. Made up: black, white,
// grey and uniform colour frames, noise, gradients, checkerboards, text, synthetic scenes, a flat disc, a 1×1 image,
// and real fundus photographs ruined on purpose (blurred, darkened, blown out, a corner cut out); every one must be
// rejected. Other pictures (e.g. ordinary photographs found on the machine) are judged with `--extra <files...>`.
// Per-measure quantiles of the real photographs are kept beside the counts: they are what the thresholds were set
// from (docs/gradability.md).
//
// Usage: tsx benchmarks/scripts/gradability.ts [--out benchmarks/results/gradability.json] [--limit N]
//          [--save-frames <dir>] [--extra f1 f2 ...]
// `--save-frames` writes the made-up frames there (to look at them); `--limit` takes the first N of each source.
import { readdir, mkdir, writeFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { dirname, join, resolve } from 'node:path';
import sharp, { type Sharp } from 'sharp';
import { mapLimit } from '../../src/data/cache.js';
import {
  assessGradability,
  GRADABILITY_THRESHOLDS,
  type Gradability,
  type GradabilityMeasures,
  measureGradability,
  judgeGradability,
} from '../../src/data/gradability.js';
import { seededRandom } from '../../src/data/random.js';

const args = process.argv.slice(2);
const flag = (name: string): string | undefined => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
};
const extraAt = args.indexOf('--extra');
const extra = extraAt >= 0 ? args.slice(extraAt + 1).filter((a) => !a.startsWith('--')) : [];
const out = flag('out') ?? 'benchmarks/results/gradability.json';
const limit = Number(flag('limit') ?? '0');
const shared = process.env.SHARED_DATA ?? join(import.meta.dirname, '..', '..', '..', 'shared', 'data');

const isImage = (f: string) => /\.(jpe?g|png|tiff?|webp)$/i.test(f);
async function listImages(dir: string): Promise<string[]> {
  const names = (await readdir(dir)).filter(isImage).sort();
  return (limit > 0 ? names.slice(0, limit) : names).map((n) => join(dir, n));
}

const sources: { name: string; dir: string }[] = [
  { name: 'vietai/train', dir: join(shared, 'vietai', 'train') },
  { name: 'vietai/unlabeled', dir: join(shared, 'vietai', 'unlabeled') },
];
for (const e of (await readdir(join(shared, 'external'), { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => d.name).sort()) {
  sources.push({ name: `external/${e}`, dir: join(shared, 'external', e, 'images') });
}

const MEASURES: (keyof GradabilityMeasures)[] = ['interiorLuma', 'cornerLight', 'fill', 'saturated', 'redness', 'chroma', 'structure', 'sharpness'];
function quantiles(values: number[]): Record<string, number> {
  const s = [...values].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.max(0, Math.round(p * (s.length - 1))))];
  return { min: s[0], p001: q(0.001), p01: q(0.01), p05: q(0.05), p50: q(0.5), p95: q(0.95), p99: q(0.99), p999: q(0.999), max: s[s.length - 1] };
}

const t0 = performance.now();
const real = [];
for (const src of sources) {
  const files = await listImages(src.dir);
  const started = performance.now();
  const measures = await mapLimit(files, 4, (f) => measureGradability(f));
  const ms = (performance.now() - started) / files.length;
  const judged = measures.map((m) => judgeGradability(m));
  const rejected = judged.flatMap((g, i) => (g.gradable ? [] : [{ file: files[i].slice(shared.length + 1), reasons: g.reasons, measures: g.measures }]));
  const reasons: Record<string, number> = {};
  for (const r of rejected) for (const why of r.reasons) reasons[why] = (reasons[why] ?? 0) + 1;
  const distributions = Object.fromEntries(MEASURES.map((k) => [k, quantiles(measures.map((m) => m[k] as number))]));
  real.push({ source: src.name, images: files.length, rejected: rejected.length, reasons, msPerImage: Math.round(ms * 100) / 100, distributions, rejectedImages: rejected });
  process.stderr.write(`${src.name}: ${rejected.length} of ${files.length} rejected (${ms.toFixed(2)} ms/image, 4 at a time)\n`);
}

// ---- made-up frames ----
const W = 512;
const raw = (width: number, height: number, px: (x: number, y: number) => [number, number, number]) => {
  const buf = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) buf.set(px(x, y), (y * width + x) * 3);
  }
  return sharp(buf, { raw: { width, height, channels: 3 } });
};
const jpeg = (s: Sharp) => s.jpeg({ quality: 90 }).toBuffer();
const png = (s: Sharp) => s.png().toBuffer();
const uniform = (rgb: [number, number, number]) => jpeg(raw(W, W, () => rgb));
const rand = seededRandom(7);
const svg = (body: string, w = W, h = W) => sharp(Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}">${body}</svg>`));
const inDisc = (x: number, y: number, r = 240) => Math.hypot(x - W / 2, y - W / 2) <= r;
const fundusSample = join(import.meta.dirname, '..', '..', 'samples', 'images', '004f7ec58fad.jpg');
const ruined = (f: (s: Sharp) => Sharp) => jpeg(f(sharp(fundusSample)));

// `ruined`: a real fundus photograph made ungradable on purpose; the others are not fundus photographs at all.
const madeUp: { name: string; ruined?: boolean; make: () => Promise<Buffer> }[] = [
  { name: 'black 512²', make: () => uniform([0, 0, 0]) },
  { name: 'white 512²', make: () => uniform([255, 255, 255]) },
  { name: 'grey 512²', make: () => uniform([128, 128, 128]) },
  { name: 'dark grey 512² (just above the border level)', make: () => uniform([24, 24, 24]) },
  { name: 'fundus orange 512² (uniform)', make: () => uniform([190, 90, 40]) },
  { name: 'red 512²', make: () => uniform([220, 20, 20]) },
  { name: 'green 512²', make: () => uniform([20, 200, 20]) },
  { name: 'blue 512²', make: () => uniform([20, 20, 220]) },
  { name: 'grey 640×480', make: () => jpeg(raw(640, 480, () => [128, 128, 128])) },
  { name: 'orange noise 640×480', make: () => jpeg(raw(640, 480, () => [150 + rand() * 80, 60 + rand() * 60, 20 + rand() * 30].map(Math.floor) as [number, number, number])) },
  { name: 'uniform noise 512²', make: () => jpeg(raw(W, W, () => [rand() * 256, rand() * 256, rand() * 256].map(Math.floor) as [number, number, number])) },
  {
    name: 'orange noise 512² (fundus colours)',
    make: () => jpeg(raw(W, W, () => [150 + rand() * 80, 60 + rand() * 60, 20 + rand() * 30].map(Math.floor) as [number, number, number])),
  },
  { name: 'noise in a disc on black 512²', make: () => jpeg(raw(W, W, (x, y) => (inDisc(x, y) ? ([rand() * 256, rand() * 256, rand() * 256].map(Math.floor) as [number, number, number]) : [0, 0, 0]))) },
  { name: 'horizontal gradient black→white', make: () => jpeg(raw(W, W, (x) => [x / 2, x / 2, x / 2])) },
  { name: 'radial gradient, orange centre to black', make: () => jpeg(raw(W, W, (x, y) => { const k = Math.max(0, 1 - Math.hypot(x - W / 2, y - W / 2) / 256); return [200 * k, 100 * k, 40 * k]; })) },
  { name: 'checkerboard 32 px', make: () => png(raw(W, W, (x, y) => (((x >> 5) + (y >> 5)) % 2 ? [255, 255, 255] : [0, 0, 0]))) },
  { name: 'checkerboard 4 px in an orange disc', make: () => png(raw(W, W, (x, y) => (!inDisc(x, y) ? [0, 0, 0] : ((x >> 2) + (y >> 2)) % 2 ? [220, 120, 60] : [120, 50, 20]))) },
  { name: 'flat orange disc on black (fundus-shaped, no retina)', make: () => jpeg(raw(W, W, (x, y) => (inDisc(x, y) ? [190, 90, 40] : [0, 0, 0]))) },
  {
    name: 'black text on white',
    make: () => png(svg(`<rect width="100%" height="100%" fill="white"/>${[...Array(12)].map((_, i) => `<text x="10" y="${40 + i * 40}" font-size="28" fill="black">Lorem ipsum dolor sit amet ${i}</text>`).join('')}`)),
  },
  {
    name: 'white text on black',
    make: () => png(svg(`<rect width="100%" height="100%" fill="black"/>${[...Array(12)].map((_, i) => `<text x="10" y="${40 + i * 40}" font-size="28" fill="white">fundus photograph ${i}</text>`).join('')}`)),
  },
  {
    name: 'synthetic landscape (sky, sun, hills, trees)',
    make: async () => {
      const trees = [...Array(30)].map(() => { const x = rand() * W; const y = 330 + rand() * 120; return `<circle cx="${x}" cy="${y}" r="${10 + rand() * 20}" fill="#1f5f2a"/><rect x="${x - 3}" y="${y}" width="6" height="30" fill="#4a3020"/>`; }).join('');
      const base = await png(svg(`<defs><linearGradient id="s" x1="0" y1="0" x2="0" y2="1"><stop offset="0" stop-color="#4a90d9"/><stop offset="1" stop-color="#cfe6f7"/></linearGradient></defs><rect width="100%" height="60%" fill="url(#s)"/><circle cx="400" cy="90" r="40" fill="#ffe680"/><path d="M0 300 Q 120 220 260 290 T 512 270 L 512 512 L 0 512 Z" fill="#5f9e3a"/>${trees}`));
      // Texture, so that it is not flat (a real scene's grass and leaves).
      const { data, info } = await sharp(base).raw().toBuffer({ resolveWithObject: true });
      for (let i = 0; i < data.length; i++) data[i] = Math.max(0, Math.min(255, data[i] + (rand() - 0.5) * 30));
      return jpeg(sharp(data, { raw: { width: info.width, height: info.height, channels: info.channels } }));
    },
  },
  {
    name: 'synthetic portrait (face-coloured oval on a grey wall)',
    make: () => jpeg(raw(W, W, (x, y) => { const inFace = ((x - 256) / 120) ** 2 + ((y - 240) / 160) ** 2 <= 1; const t = (rand() - 0.5) * 20; return inFace ? [225 + t, 170 + t, 140 + t] : [120 + t, 120 + t, 125 + t]; })),
  },
  {
    name: 'synthetic ball on black (orange, shaded, sharp rim)',
    make: () => jpeg(raw(W, W, (x, y) => { const d = Math.hypot(x - 256, y - 256) / 240; if (d > 1) return [0, 0, 0]; const k = 0.4 + 0.6 * Math.sqrt(1 - d * d); return [230 * k, 120 * k, 40 * k]; })),
  },
  { name: '1×1', make: () => png(raw(1, 1, () => [180, 90, 40])) },
  { ruined: true, name: '32×32 crop of a fundus photo', make: () => jpeg(sharp(fundusSample).extract({ left: 240, top: 240, width: 32, height: 32 })) },
  { ruined: true, name: 'fundus photo blurred (Gaussian σ 12 px)', make: () => ruined((s) => s.blur(12)) },
  { ruined: true, name: 'fundus photo darkened to 5 %', make: () => ruined((s) => s.linear(0.05, 0)) },
  { ruined: true, name: 'fundus photo blown out (×4)', make: () => ruined((s) => s.linear(4, 0)) },
  { ruined: true, name: 'fundus photo in grey (red-free)', make: () => ruined((s) => s.grayscale()) },
  { ruined: true, name: 'centre 200² of a fundus photo (no field stop)', make: () => jpeg(sharp(fundusSample).extract({ left: 156, top: 156, width: 200, height: 200 })) },
  { ruined: true, name: 'fundus photo small in a big black frame', make: () => jpeg(sharp(fundusSample).resize(160, 160).extend({ top: 432, bottom: 432, left: 432, right: 432, background: '#000' })) },
];

const frames: { name: string; kind: string; gradable: boolean; reasons: string[]; measures: GradabilityMeasures }[] = [];
const saveTo = flag('save-frames');
if (saveTo) await mkdir(saveTo, { recursive: true });
for (const [i, f] of madeUp.entries()) {
  const bytes = await f.make();
  if (saveTo) await writeFile(join(saveTo, `${String(i).padStart(2, '0')}-${f.name.replace(/[^a-z0-9]+/gi, '-').replace(/-$/, '')}.${bytes[0] === 0x89 ? 'png' : 'jpg'}`), bytes);
  const g: Gradability = await assessGradability(bytes);
  frames.push({ name: f.name, kind: f.ruined ? 'ruined fundus photograph' : 'not a fundus photograph', gradable: g.gradable, reasons: g.reasons, measures: g.measures });
  process.stderr.write(`${g.gradable ? 'ACCEPTED' : 'rejected'}  ${f.name}: ${g.reasons.join(', ')}\n`);
}
const others = [];
for (const f of extra) {
  try {
    const g = await assessGradability(f);
    others.push({ file: f, gradable: g.gradable, reasons: g.reasons, measures: g.measures });
    process.stderr.write(`${g.gradable ? 'ACCEPTED' : 'rejected'}  ${f}: ${g.reasons.join(', ')}\n`);
  } catch (e) {
    others.push({ file: f, error: (e as Error).message });
  }
}

const total = real.reduce((s, r) => s + r.images, 0);
const rejected = real.reduce((s, r) => s + r.rejected, 0);
const result = {
  what: 'gradability gate (src/data/gradability.ts) on the real photographs and on made-up frames',
  date: new Date().toISOString(),
  thresholds: GRADABILITY_THRESHOLDS,
  real: { images: total, rejected, sources: real },
  madeUp: {
    frames: frames.length,
    accepted: frames.filter((f) => f.gradable).length,
    notFundusAccepted: frames.filter((f) => f.gradable && f.kind === 'not a fundus photograph').map((f) => f.name),
    ruinedAccepted: frames.filter((f) => f.gradable && f.kind !== 'not a fundus photograph').map((f) => f.name),
    results: frames,
  },
  other: others,
  seconds: Math.round((performance.now() - t0) / 100) / 10,
};
await mkdir(dirname(resolve(out)), { recursive: true });
await writeFile(out, JSON.stringify(result, null, 1) + '\n');
process.stderr.write(`real: ${rejected} of ${total} rejected; made up: ${result.madeUp.accepted} of ${frames.length} accepted → ${out}\n`);
