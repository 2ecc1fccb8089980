import { readFile } from 'node:fs/promises';
import sharp from 'sharp';
import { InputError } from '../util/errors.js';
import { applyMask, circleMask, CIRCLE_MASK_RADIUS, localMeanNormalize } from './camera.js';
import { claheChannel, claheRgb } from './clahe.js';
import type { CropGeometry } from './geometry.js';
import { decodeRgbScaled, preprocessJpegNative, type Normalization, type ScaledRgb } from './jpeg.js';

// Kept importable from here: every stage that preprocesses also maps heatmaps back onto the photograph.
export { toPhotoCoordinates, type CropGeometry } from './geometry.js';
import { resampleSquareArea } from './resample.js';
import { openPhoto, type OpenedPhoto, type PhotoInput } from './photo-source.js';

/**
 * Preprocessing settings. They are explicit and serialisable because every model stores the settings it was
 * trained with, and prediction must apply exactly the same ones.
 */
export interface PreprocessSettings {
  /** Crop to the fundus disc by thresholding the dark border, centre it and pad it to a square. */
  crop: boolean;
  /** Side of the square network input in pixels, e.g. 227 or 224. */
  size: number;
  /** `green` keeps only the green channel (as the reference AlexNet does); `rgb` keeps all three. */
  channels: 'green' | 'rgb';
  /** Contrast-limited adaptive histogram equalisation (8×8 tiles, clip limit 3; on green, or on the luma of RGB). */
  clahe: boolean;
  /** Per-channel mean and std applied after scaling pixels to [0, 1]. */
  normalize: { mean: number[]; std: number[] };
  /**
   * How the photo is brought down to `size`. `lanczos3` (what a model saved without this field used): decode at
   * full resolution and resize with sharp's Lanczos-3. `area`: decode JPEGs at a reduced scale inside libjpeg's
   * inverse DCT (never below 1.5× the output), then average each output pixel's footprint; about 5× faster, which
   * keeps decoding from dominating prediction. The two give slightly different pixels: a model must be used with
   * the one it was trained with.
   */
  resize?: 'lanczos3' | 'area';
  /**
   * `circle`: after the crop, black out everything outside a standard circle centred in the square (radius 0.95 of
   * half the side, see camera.ts), so that the field stop's rim, notches and halo, which differ between cameras, are
   * gone. It does not remove the flat black bands of a disc clipped at the top and bottom (wide-field cameras, e.g.
   * IDRiD's 4288×2848 photos): those are inside the circle. Absent: no mask (models saved before it).
   */
  mask?: 'circle';
  /**
   * Graham's local-mean normalisation: out = 4·(img − GaussianBlur(img, σ)) + 128 per RGB channel, with σ =
   * `sigma` × size (Graham: 10 px on a 600 px disc, about 1/60). Takes the camera's colour, exposure and vignetting
   * away and keeps local contrast. Pixels outside the disc (the dark border, and outside the circle when `mask` is
   * set) are left out of the blur and come out black. Absent: off (models saved before it).
   */
  localMean?: { sigma: number };
}

export const DEFAULT_PREPROCESS: PreprocessSettings = {
  crop: true,
  size: 227,
  channels: 'green',
  clahe: false,
  normalize: { mean: [0.5], std: [0.25] },
  resize: 'area',
};

/** A preprocessed image, ready for the network. */
export interface PreprocessedImage {
  /** HWC, normalised, size*size*channels values. */
  data: Float32Array;
  size: number;
  channels: number;
  geometry: CropGeometry;
}

/** The same image before normalisation: 0..255 bytes, a quarter of the memory (what the disk cache stores). */
export interface PreprocessedBytes {
  pixels: Uint8Array;
  size: number;
  channels: number;
  geometry: CropGeometry;
}

export function channelCount(settings: Pick<PreprocessSettings, 'channels'>): number {
  return settings.channels === 'green' ? 1 : 3;
}

/**
 * Largest localMean σ, as a fraction of the side. Beyond it the "local" mean is close to the disc's global mean (the
 * method's point is lost) and the blur's cost grows with σ.
 */
export const MAX_LOCAL_MEAN_SIGMA = 0.25;

/** Checks settings read from a model or a flag; InputError on anything that would silently give wrong inputs. */
export function validatePreprocessSettings(s: PreprocessSettings, where = 'preprocess settings'): PreprocessSettings {
  const fail = (msg: string): never => {
    throw new InputError(`${where}: ${msg}`);
  };
  if (typeof s !== 'object' || s === null) fail('missing');
  if (typeof s.crop !== 'boolean') fail('crop must be true or false');
  if (!Number.isInteger(s.size) || s.size < 8 || s.size > 4096) fail(`size must be an integer in 8..4096 (got ${s.size})`);
  if (s.channels !== 'green' && s.channels !== 'rgb') fail(`channels must be 'green' or 'rgb' (got ${String(s.channels)})`);
  if (typeof s.clahe !== 'boolean') fail('clahe must be true or false');
  if (s.resize !== undefined && s.resize !== 'lanczos3' && s.resize !== 'area') fail(`resize must be 'lanczos3' or 'area' (got ${String(s.resize)})`);
  if (s.mask !== undefined && s.mask !== 'circle') fail(`mask must be 'circle' or absent (got ${JSON.stringify(s.mask)})`);
  if (s.localMean !== undefined) {
    const lm = s.localMean as unknown;
    if (typeof lm !== 'object' || lm === null) fail(`localMean must be an object like { "sigma": 0.0167 } or absent (got ${JSON.stringify(lm)})`);
    const sigma = (lm as { sigma?: unknown }).sigma;
    if (typeof sigma !== 'number' || !Number.isFinite(sigma) || sigma <= 0 || sigma > MAX_LOCAL_MEAN_SIGMA) {
      fail(`localMean.sigma is a fraction of the input side in (0, ${MAX_LOCAL_MEAN_SIGMA}] (e.g. 1/60 ≈ 0.0167; got ${JSON.stringify(sigma)})`);
    }
  }
  const c = channelCount(s);
  const { mean, std } = s.normalize ?? ({} as PreprocessSettings['normalize']);
  if (!Array.isArray(mean) || !Array.isArray(std)) fail('normalize needs mean and std arrays');
  for (const [name, arr] of [['mean', mean], ['std', std]] as const) {
    if (arr.length !== 1 && arr.length !== c) fail(`normalize.${name} needs 1 or ${c} values for ${s.channels} (got ${arr.length})`);
    if (arr.some((v) => typeof v !== 'number' || !Number.isFinite(v))) fail(`normalize.${name} must be finite numbers`);
  }
  if (std.some((v) => v <= 0)) fail('normalize.std must be positive');
  return s;
}

/** The mean and std of channel `c`, with 1-value arrays applying to every channel. */
function channelStats(settings: PreprocessSettings, c: number): [number, number] {
  const { mean, std } = settings.normalize;
  return [mean.length === 1 ? mean[0] : mean[c], std.length === 1 ? std[0] : std[c]];
}

/** The settings' mean/std as byte × scale − shift per channel: the one place normalisation's arithmetic is set. */
function normalization(settings: PreprocessSettings, channels: number): Normalization {
  const norm: Normalization = { scale: [], shift: [] };
  for (let c = 0; c < channels; c++) {
    const [m, s] = channelStats(settings, c);
    norm.scale.push(1 / (255 * s));
    norm.shift.push(m / s);
  }
  return norm;
}

/**
 * Scales bytes to [0, 1] and applies the per-channel mean/std. Through a 256-entry table per channel (the same
 * float32 values as computing each pixel): this runs on every photo at prediction time, where the arithmetic per
 * element cost a quarter of the photo's decoding.
 */
export function normalizeBytes(pixels: Uint8Array, channels: number, settings: PreprocessSettings): Float32Array {
  const { scale, shift } = normalization(settings, channels);
  const lut = new Float32Array(channels * 256);
  for (let c = 0; c < channels; c++) {
    for (let v = 0; v < 256; v++) lut[c * 256 + v] = v * scale[c] - shift[c];
  }
  const out = new Float32Array(pixels.length);
  if (channels === 3) {
    for (let i = 0; i + 2 < pixels.length; i += 3) {
      out[i] = lut[pixels[i]];
      out[i + 1] = lut[256 + pixels[i + 1]];
      out[i + 2] = lut[512 + pixels[i + 2]];
    }
  } else if (channels === 1) {
    for (let i = 0; i < pixels.length; i++) out[i] = lut[pixels[i]];
  } else {
    for (let i = 0; i < pixels.length; i++) out[i] = lut[(i % channels) * 256 + pixels[i]];
  }
  return out;
}

/** The inverse of normalizeBytes, for previews and overlays: back to 0..255 (clamped). */
export function denormalize(data: Float32Array, channels: number, settings: PreprocessSettings): Uint8Array {
  const out = new Uint8Array(data.length);
  for (let c = 0; c < channels; c++) {
    const [m, s] = channelStats(settings, c);
    for (let i = c; i < data.length; i += channels) {
      const v = Math.round((data[i] * s + m) * 255);
      out[i] = v < 0 ? 0 : v > 255 ? 255 : v;
    }
  }
  return out;
}

/** Pixels at most this bright (max over R, G, B, out of 255) count as the dark border around the fundus disc. */
export const BORDER_LEVEL = 18;
/** A row or column belongs to the disc when more than this fraction of it is brighter than the border. */
const LINE_FRACTION = 0.02;

/**
 * Finds the square around the fundus disc: the bounding box of the rows and columns that are mostly brighter than the
 * dark border, centred, with the longer side as the square's side (so a disc clipped at the top and bottom of the
 * photo is padded back to a square rather than stretched). Falls back to the centred square of the whole photo when
 * no disc is found (a photo without a dark border, or an almost black one).
 */
export function findDiscSquare(raw: Uint8Array, width: number, height: number, channels: number): CropGeometry {
  const rowCount = new Uint32Array(height);
  const colCount = new Uint32Array(width);
  const step = width * height > 1_000_000 ? 2 : 1; // subsampling keeps big photos cheap; the box stays accurate to 2 px
  for (let y = 0; y < height; y += step) {
    let p = y * width * channels;
    for (let x = 0; x < width; x += step, p += channels * step) {
      let v = raw[p];
      if (channels >= 3) {
        if (raw[p + 1] > v) v = raw[p + 1];
        if (raw[p + 2] > v) v = raw[p + 2];
      }
      if (v > BORDER_LEVEL) {
        rowCount[y]++;
        colCount[x]++;
      }
    }
  }
  const span = (counts: Uint32Array, n: number, lineLen: number): [number, number] | undefined => {
    const min = Math.max(1, (LINE_FRACTION * lineLen) / step);
    let a = 0;
    while (a < n && counts[a] < min) a++;
    let b = n - 1;
    while (b > a && counts[b] < min) b--;
    return a < b ? [a, b + step] : undefined;
  };
  const ys = span(rowCount, height, width);
  const xs = span(colCount, width, height);
  const whole = (): CropGeometry => {
    const side = Math.max(width, height);
    return { width, height, x: Math.floor((width - side) / 2), y: Math.floor((height - side) / 2), side };
  };
  if (!ys || !xs) return whole();
  const [x0, x1] = xs;
  const [y0, y1] = ys;
  const w = Math.min(x1, width) - x0;
  const h = Math.min(y1, height) - y0;
  // A "disc" much smaller than the photo is more likely a bright artefact on a dark photo than the fundus.
  if (Math.max(w, h) < 0.25 * Math.min(width, height)) return whole();
  const side = Math.max(w, h);
  return { width, height, x: Math.round(x0 + (w - side) / 2), y: Math.round(y0 + (h - side) / 2), side };
}

/**
 * Decodes any image sharp reads, or a DICOM photograph, to raw 8-bit RGB; InputError naming the file when it is
 * unreadable or truncated.
 */
export async function decodeRgb(input: PhotoInput | OpenedPhoto): Promise<{ data: Buffer; width: number; height: number }> {
  const { source, name } = await openPhoto(input);
  try {
    const { data, info } = await sharp(source, { failOn: 'warning' })
      .rotate() // honour EXIF orientation so heatmaps line up with what viewers show
      .removeAlpha()
      .toColourspace('srgb')
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`unexpected ${info.channels} channels after decoding`);
    return { data, width: info.width, height: info.height };
  } catch (e) {
    throw new InputError(`cannot decode the image: ${(e as Error).message.split('\n')[0]}`, { file: name });
  }
}

/** The centred square of the whole photo: the crop when cropping is off or no disc is found. */
function wholeSquare(width: number, height: number): CropGeometry {
  const side = Math.max(width, height);
  return { width, height, x: Math.floor((width - side) / 2), y: Math.floor((height - side) / 2), side };
}

/** The photo's square crop at `size`×`size` RGB, by the settings' resize method. */
async function cropToSquare(input: PhotoInput | OpenedPhoto, settings: PreprocessSettings): Promise<{ rgb: Uint8Array; geometry: CropGeometry }> {
  return settings.resize === 'area' ? cropByArea(input, settings) : cropByLanczos(input, settings);
}

async function cropByLanczos(input: PhotoInput | OpenedPhoto, settings: PreprocessSettings): Promise<{ rgb: Uint8Array; geometry: CropGeometry }> {
  const { data, width, height } = await decodeRgb(input);
  const geometry = settings.crop ? findDiscSquare(data, width, height, 3) : wholeSquare(width, height);
  const { size } = settings;
  // The part of the square inside the photo is extracted and resized by size/side; the rest becomes black padding.
  const ix0 = Math.max(0, geometry.x);
  const iy0 = Math.max(0, geometry.y);
  const ix1 = Math.min(width, geometry.x + geometry.side);
  const iy1 = Math.min(height, geometry.y + geometry.side);
  const scale = size / geometry.side;
  const left = Math.round((ix0 - geometry.x) * scale);
  const top = Math.round((iy0 - geometry.y) * scale);
  const rw = Math.max(1, Math.min(size - left, Math.round((ix1 - ix0) * scale)));
  const rh = Math.max(1, Math.min(size - top, Math.round((iy1 - iy0) * scale)));
  const { data: out, info } = await sharp(data, { raw: { width, height, channels: 3 } })
    .extract({ left: ix0, top: iy0, width: ix1 - ix0, height: iy1 - iy0 })
    .resize(rw, rh, { fit: 'fill', kernel: 'lanczos3' })
    .extend({ left, top, right: size - left - rw, bottom: size - top - rh, background: { r: 0, g: 0, b: 0 } })
    .raw()
    .toBuffer({ resolveWithObject: true });
  if (info.width !== size || info.height !== size || info.channels !== 3) {
    throw new Error(`preprocess produced ${info.width}x${info.height}x${info.channels}, expected ${size}x${size}x3`);
  }
  return { rgb: new Uint8Array(out.buffer, out.byteOffset, out.length), geometry };
}

/** What `area` decodes at least: 1.5× the output side keeps the area average free of aliasing. */
const areaDecodeSide = (size: number) => Math.ceil(1.5 * size);

const firstLine = (e: unknown) => (e as Error).message.split('\n')[0];

/**
 * `area` preprocessing by the JPEG addon (undefined where it does not apply), its failures as InputErrors naming the
 * file: the addon says "cannot read the image: …" itself, or gives libjpeg's message.
 */
async function areaByAddon(input: string | Buffer, settings: PreprocessSettings, norm: Normalization | undefined, name: string): ReturnType<typeof preprocessJpegNative> {
  try {
    return await preprocessJpegNative(input, areaDecodeSide(settings.size), settings.size, settings.crop, norm);
  } catch (e) {
    const msg = firstLine(e);
    throw new InputError(msg.startsWith('cannot read') ? msg : `cannot decode the image: ${msg}`, { file: name });
  }
}

/** `forceJs` crops and resamples in JavaScript even where the addon could (tests compare the two). */
export async function cropByArea(photo: PhotoInput | OpenedPhoto, settings: PreprocessSettings, forceJs = false): Promise<{ rgb: Uint8Array; geometry: CropGeometry }> {
  const { source: input, name } = await openPhoto(photo);
  const fast = forceJs ? undefined : await areaByAddon(input, settings, undefined, name);
  if (fast) return { rgb: fast.data as Uint8Array, geometry: fast.geometry };
  let bytes: Uint8Array;
  try {
    bytes = typeof input === 'string' ? await readFile(input) : input;
  } catch (e) {
    throw new InputError(`cannot read the image: ${firstLine(e)}`, { file: name });
  }
  let im: ScaledRgb;
  try {
    im = await decodeRgbScaled(bytes, areaDecodeSide(settings.size));
  } catch (e) {
    throw new InputError(`cannot decode the image: ${firstLine(e)}`, { file: name });
  }
  const { fullWidth, fullHeight } = im;
  // The disc is found on the decoded pixels and its square expressed in the photo's own pixels (whole ones, as
  // lanczos3 gives), which the resampler maps back to decoded pixels.
  const fx = fullWidth / im.width;
  const fy = fullHeight / im.height;
  let geometry: CropGeometry;
  if (settings.crop) {
    const g = findDiscSquare(im.data, im.width, im.height, 3);
    geometry = { width: fullWidth, height: fullHeight, x: Math.round(g.x * fx), y: Math.round(g.y * fy), side: Math.round(g.side * Math.max(fx, fy)) };
  } else {
    geometry = wholeSquare(fullWidth, fullHeight);
  }
  const rgb = resampleSquareArea(im.data, im.width, im.height, 3, { x: geometry.x / fx, y: geometry.y / fy, side: geometry.side / fx }, settings.size);
  return { rgb, geometry };
}

/**
 * Crop, resize, channel choice and CLAHE, stopping before normalisation: 0..255 bytes. This is what the disk cache
 * stores; normalisation is cheap and applied on load.
 */
export async function preprocessToBytes(photo: PhotoInput | OpenedPhoto, settings: PreprocessSettings): Promise<PreprocessedBytes> {
  validatePreprocessSettings(settings);
  const { size } = settings;
  const square = await cropToSquare(photo, settings);
  const { geometry } = square;
  let rgb = square.rgb;
  const n = size * size;
  if (settings.mask === 'circle') applyMask(rgb, 3, circleMask(size)); // the crop's buffer is ours to change
  // The disc, which local-mean normalisation and CLAHE work on (the border stays black and out of the blur and of the
  // tiles' histograms): brighter than the border, after the circle mask, so inside the circle when masking. The black
  // bands of a disc clipped at the top and bottom are inside the circle but not the disc, so they do not darken the
  // local mean along the clipped edges.
  let mask: Uint8Array | undefined;
  if (settings.localMean || settings.clahe) {
    mask = new Uint8Array(n);
    for (let i = 0; i < n; i++) mask[i] = Math.max(rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2]) > BORDER_LEVEL ? 1 : 0;
  }
  if (settings.localMean) rgb = localMeanNormalize(rgb, size, 3, mask!, settings.localMean.sigma * size);
  if (!settings.clahe) mask = undefined;
  if (settings.channels === 'rgb') {
    if (mask) rgb = claheRgb(rgb, size, size, mask);
    return { pixels: rgb, size, channels: 3, geometry };
  }
  let green: Uint8Array = new Uint8Array(n);
  for (let i = 0; i < n; i++) green[i] = rgb[3 * i + 1];
  if (mask) green = claheChannel(green, size, size, mask);
  return { pixels: green, size, channels: 1, geometry };
}

/** Decodes a photo and prepares it for the network with `settings`. InputError when the image cannot be decoded. */
export async function preprocessImage(photo: PhotoInput, settings: PreprocessSettings): Promise<PreprocessedImage> {
  // A DICOM photograph is opened once here; below, its frame's image passes through openPhoto untouched.
  const opened = await openPhoto(photo);
  const input = opened.source;
  if (settings.resize === 'area' && !settings.clahe && !settings.mask && !settings.localMean) {
    // the whole way to the network's input on the thread pool (JPEGs with the addon; the same values as below); the
    // mask and local-mean steps run in JavaScript on the bytes, so they take the path below
    validatePreprocessSettings(settings);
    const channels = channelCount(settings);
    const fast = await areaByAddon(input, settings, normalization(settings, channels), opened.name);
    if (fast) return { data: fast.data as Float32Array, size: settings.size, channels, geometry: fast.geometry };
  }
  const b = await preprocessToBytes(opened, settings);
  return { data: normalizeBytes(b.pixels, b.channels, settings), size: b.size, channels: b.channels, geometry: b.geometry };
}

/**
 * The settings in words, for model cards and logs, e.g. "disc crop, 224 px RGB, area resize, circle mask (r = 0.95 of
 * half the side), Graham local-mean subtraction (σ = 1/60 of the side, 3.7 px), normalised with mean [0.5] and std
 * [0.25]".
 */
export function describePreprocess(s: PreprocessSettings): string {
  const parts = [s.crop ? 'disc crop' : 'whole photo', `${s.size} px ${s.channels === 'rgb' ? 'RGB' : 'green channel'}`];
  parts.push(`${s.resize ?? 'lanczos3'} resize`);
  if (s.mask === 'circle') parts.push(`circle mask (r = ${CIRCLE_MASK_RADIUS} of half the side)`);
  if (s.localMean) {
    const inv = 1 / s.localMean.sigma;
    const frac = Math.abs(inv - Math.round(inv)) < 0.01 ? `1/${Math.round(inv)}` : String(s.localMean.sigma);
    parts.push(`Graham local-mean subtraction (σ = ${frac} of the side, ${(s.localMean.sigma * s.size).toFixed(1)} px)`);
  }
  if (s.clahe) parts.push('CLAHE');
  parts.push(`normalised with mean [${s.normalize.mean.join(', ')}] and std [${s.normalize.std.join(', ')}]`);
  return parts.join(', ');
}
