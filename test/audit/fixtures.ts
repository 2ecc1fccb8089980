// Synthetic "cameras" for the audit tests: fundus-like photos whose size, colour, exposure and sharpness depend on
// the camera, with per-photo variation, and small datasets files that list them as sources.
import sharp from 'sharp';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { seededRandom } from '../../src/data/random.js';

export interface Camera {
  width: number;
  height: number;
  /** Disc radius as a fraction of the shorter side's half. */
  radius: number;
  /** Base RGB of the disc. */
  rgb: [number, number, number];
  /** Gaussian blur sigma (0: none). */
  blur: number;
}

/** Bright, bluish, sharp, 4:3. */
export const CAMERA_A: Camera = { width: 240, height: 180, radius: 0.95, rgb: [150, 135, 160], blur: 0 };
/** Dark, reddish, soft, square. */
export const CAMERA_B: Camera = { width: 200, height: 200, radius: 0.8, rgb: [130, 55, 20], blur: 1.5 };

/**
 * One photo of `camera`: a disc with vessels and pixel noise on a black border; exposure (±15%), colour balance
 * (±8% per channel) and vessel layout vary with `seed`.
 */
export async function cameraPhoto(camera: Camera, seed: number): Promise<Buffer> {
  const rng = seededRandom(seed * 7919 + 17);
  const { width, height } = camera;
  const exposure = 0.85 + 0.3 * rng();
  const tint = camera.rgb.map((v) => v * exposure * (0.92 + 0.16 * rng()));
  const phase = rng() * 20;
  const cx = width / 2;
  const cy = height / 2;
  const r = (camera.radius * Math.min(width, height)) / 2;
  const raw = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const d = Math.hypot(x - cx, y - cy);
      if (d > r) continue;
      const vessel = Math.abs(Math.sin((x + phase) / 11) * 18 - (y - cy) / 3) < 2.5 ? 0.55 : 1;
      const shade = 1 - 0.35 * (d / r) ** 2;
      const o = (y * width + x) * 3;
      for (let c = 0; c < 3; c++) raw[o + c] = Math.max(0, Math.min(255, Math.round(tint[c] * vessel * shade + (rng() - 0.5) * 16)));
    }
  }
  let img = sharp(raw, { raw: { width, height, channels: 3 } });
  if (camera.blur > 0) img = img.blur(camera.blur);
  return img.jpeg({ quality: 90 }).toBuffer();
}

/** Writes `count` photos of `camera` as `<prefix>NN.jpg` into `dir`; returns the file names. */
export async function writeCameraPhotos(dir: string, camera: Camera, count: number, prefix: string, seed0 = 0): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const names: string[] = [];
  for (let i = 0; i < count; i++) {
    const name = `${prefix}${String(i).padStart(2, '0')}.jpg`;
    await writeFile(join(dir, name), await cameraPhoto(camera, seed0 + i));
    names.push(name);
  }
  return names;
}

/**
 * A datasets file in `dir` with two sources of `count` photos each: `clinic-a` (training source, camera A, grades
 * diabetic retinopathy and normal, two photos per patient) and `clinic-b` (external, camera B or A, grades diabetic
 * retinopathy only, every photo positive except the first three). Returns its path.
 */
export async function twoSourceDatasets(dir: string, opts: { count?: number; cameraB?: Camera } = {}): Promise<string> {
  const count = opts.count ?? 12;
  const a = await writeCameraPhotos(join(dir, 'a'), CAMERA_A, count, 'a', 0);
  const b = await writeCameraPhotos(join(dir, 'b'), opts.cameraB ?? CAMERA_B, count, 'b', 1000);
  await writeFile(
    join(dir, 'a.csv'),
    'filename,patient,diabetic retinopathy,normal\n' + a.map((f, i) => `${f},p${Math.floor(i / 2)},${i % 3 === 0 ? 1 : 0},${i % 3 === 0 ? 0 : 1}`).join('\n') + '\n',
  );
  await writeFile(join(dir, 'b.csv'), 'filename,diabetic retinopathy\n' + b.map((f, i) => `${f},${i < 3 ? 0 : 1}`).join('\n') + '\n');
  const path = join(dir, 'datasets.json');
  await writeFile(
    path,
    JSON.stringify({
      sources: [
        { name: 'clinic-a', csv: 'a.csv', images: 'a', groupBy: 'patient' },
        { name: 'clinic-b', csv: 'b.csv', images: 'b', role: 'external' },
      ],
    }),
  );
  return path;
}
