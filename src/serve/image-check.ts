import sharp, { type Metadata } from 'sharp';
import type { DicomPhotoInfo } from '../data/dicom.js';
import { openPhoto, type OpenedPhoto } from '../data/photo-source.js';
import { InputError } from '../util/errors.js';

/** Photographs larger than this (in pixels) are refused before decoding: a decompression bomb costs nothing then. */
export const MAX_INPUT_PIXELS = 64 * 1024 * 1024;

export const ACCEPTED_FORMATS = ['jpeg', 'png', 'webp', 'tiff'] as const;

export interface ImageInfo {
  /** `dicom` for a DICOM file (its frame's own format is checked as any image's). */
  format: string;
  width: number;
  height: number;
  /** A DICOM photograph's attributes (SOP Instance UID, laterality, acquisition date; no patient identifier). */
  dicom?: DicomPhotoInfo;
}

/**
 * Reads only the header of an encoded image and checks that it is a photograph fundus can decode: a known format,
 * sane dimensions. `name` is used in the error message. An upload opened already (`openPhoto`, whose frame image the
 * caller goes on to decode) is not opened again.
 */
export async function inspectImage(upload: Buffer | OpenedPhoto, name: string): Promise<ImageInfo> {
  // A DICOM file's frame is checked as the image it carries (InputError naming an unsupported transfer syntax).
  const opened = await openPhoto(upload, name);
  const data = opened.source as Buffer;
  if (data.length === 0) throw new InputError('the image is empty', { file: name });
  if (opened.dicom) return { ...(await inspectImage(data, name)), format: 'dicom', dicom: opened.dicom };
  let meta: Metadata;
  try {
    meta = await sharp(data, { limitInputPixels: MAX_INPUT_PIXELS }).metadata();
  } catch (err) {
    const msg = (err as Error).message.split('\n')[0];
    if (/pixel limit/i.test(msg)) throw new InputError(`the image is too large (at most ${MAX_INPUT_PIXELS} pixels)`, { file: name });
    throw new InputError(`not a readable image (${msg})`, { file: name });
  }
  const format = meta.format ?? 'unknown';
  if (!(ACCEPTED_FORMATS as readonly string[]).includes(format)) {
    throw new InputError(`unsupported image format "${format}" (expected JPEG, PNG, WebP, TIFF or DICOM)`, { file: name });
  }
  const { width, height } = meta;
  if (!width || !height) throw new InputError('the image has no dimensions', { file: name });
  if (width * height > MAX_INPUT_PIXELS) {
    throw new InputError(`the image is too large (${width}×${height} pixels; at most ${MAX_INPUT_PIXELS} pixels)`, { file: name });
  }
  return { format, width, height };
}
