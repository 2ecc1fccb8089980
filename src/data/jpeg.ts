// Fast JPEG decoding through the libjpeg-turbo addon (native/src/jpeg.cc), with sharp as the fallback for
// everything that addon leaves alone: other formats, rotated or colour-managed JPEGs, and machines without the addon.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import type { CropGeometry } from './geometry.js';

/** 8-bit RGB pixels of a photo decoded at a reduced scale, with the size of the photo as stored. */
export interface ScaledRgb {
  data: Uint8Array;
  width: number;
  height: number;
  fullWidth: number;
  fullHeight: number;
}

/** Per output channel (1: the green channel only; 3: RGB): input = byte × scale − shift. */
export interface Normalization {
  scale: number[];
  shift: number[];
}

interface JpegAddon {
  decodeJpeg(bytes: Uint8Array, minShortSide: number): Promise<ScaledRgb | { unsupported: true }>;
  preprocessJpeg(
    bytesOrPath: Uint8Array | string,
    minShortSide: number,
    size: number,
    crop: boolean,
    norm?: Normalization,
  ): Promise<{ data: Uint8Array | Float32Array; geometry: CropGeometry } | { unsupported: true }>;
  setDecodeNice(nice: number): number;
}

const ADDON_PATH = fileURLToPath(new URL('../../native/build/Release/fundus_jpeg.node', import.meta.url));
let addon: JpegAddon | null | undefined;

function loadJpegAddon(): JpegAddon | null {
  if (addon === undefined) {
    addon = null;
    if (process.env.FUNDUS_NATIVE !== '0' && existsSync(ADDON_PATH)) {
      try {
        addon = createRequire(import.meta.url)(ADDON_PATH) as JpegAddon;
      } catch {
        addon = null;
      }
    }
  }
  return addon;
}

/** Whether JPEGs are decoded by libjpeg-turbo directly (else by sharp, about 5x slower, same pixels to ±1). */
export function nativeJpegAvailable(): boolean {
  return loadJpegAddon() !== null;
}

/**
 * Runs later JPEG decoding at a lower priority than the engine's threads (Linux; elsewhere a no-op): while a network
 * runs on every core, decoding the next photos then only takes the time the engine leaves idle, instead of
 * preempting one thread of a parallel kernel that the others then wait for.
 */
export function decodeBesideInference(): void {
  loadJpegAddon()?.setDecodeNice(19);
}

const isJpeg = (b: Uint8Array) => b.length > 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff;

/**
 * Decodes `bytes` to RGB at the smallest of the scales 1, 1/2, 1/4, 1/8 whose shorter side is at least
 * `minShortSide` (the full size when the photo is smaller). JPEGs shrink inside the inverse DCT, which is both the
 * fast and the clean way down: each 8×8 block is transformed straight to 4×4 (or 2×2, 1×1) pixels. Throws a plain
 * Error with the decoder's message when the data is not a readable image; callers name the file.
 */
export async function decodeRgbScaled(bytes: Uint8Array, minShortSide: number, forceSharp = false): Promise<ScaledRgb> {
  const native = forceSharp ? null : loadJpegAddon();
  if (native && isJpeg(bytes)) {
    const r = await native.decodeJpeg(bytes, minShortSide);
    if (!('unsupported' in r)) return r;
  }
  return decodeWithSharp(bytes, minShortSide);
}

/**
 * The whole of `area` preprocessing in one call on the thread pool, for the JPEGs the addon handles: reading a path,
 * scaled decode, disc search and area resample, giving the RGB square as bytes; with `norm`, carried on to the
 * network's float32 input (channel choice and normalisation), so that the thread running the network does no
 * per-pixel work for the photo. Undefined for anything else, which the caller then prepares in JavaScript with the
 * same arithmetic (src/data/preprocess.ts, src/data/resample.ts). Rejects with "cannot read the image: …" when a
 * path cannot be read, and with libjpeg's message when the data is corrupt.
 */
export async function preprocessJpegNative(
  input: Uint8Array | string,
  minShortSide: number,
  size: number,
  crop: boolean,
  norm?: Normalization,
): Promise<{ data: Uint8Array | Float32Array; geometry: CropGeometry } | undefined> {
  const native = loadJpegAddon();
  if (!native || (typeof input !== 'string' && !isJpeg(input))) return undefined;
  const r = await native.preprocessJpeg(input, minShortSide, size, crop, norm);
  return 'unsupported' in r ? undefined : r;
}

/** The same scales through sharp: a resize by exactly 1/2, 1/4 or 1/8 makes libvips shrink JPEGs on load too. */
async function decodeWithSharp(bytes: Uint8Array, minShortSide: number): Promise<ScaledRgb> {
  const image = sharp(bytes, { failOn: 'warning' }).rotate().removeAlpha().toColourspace('srgb');
  const meta = await image.metadata();
  const swap = (meta.orientation ?? 1) >= 5; // EXIF orientations 5–8 turn the photo a quarter
  const fullWidth = (swap ? meta.height : meta.width) ?? 0;
  const fullHeight = (swap ? meta.width : meta.height) ?? 0;
  const shortSide = Math.min(fullWidth, fullHeight);
  let denom = 1;
  while (denom < 8 && Math.ceil(shortSide / (2 * denom)) >= minShortSide) denom *= 2;
  const scaled = denom === 1 ? image : image.resize(Math.ceil(fullWidth / denom), Math.ceil(fullHeight / denom), { fit: 'fill' });
  const { data, info } = await scaled.raw().toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) throw new Error(`unexpected ${info.channels} channels after decoding`);
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height, fullWidth, fullHeight };
}
