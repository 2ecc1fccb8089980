// Where a photograph's encoded image comes from: the file itself, or a frame of a DICOM file. Every decoder (the
// preprocessing, the gradability gate, data checks, previews, reports, the HTTP API) asks here first, so DICOM is
// read the same way by every command.
import { open, readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { InputError } from '../util/errors.js';
import { DICOM_EXTENSIONS, frameImage, isDicomBytes, parseDicom, photoInfo, splitFramePath, type DicomFile, type DicomIdentifiers, type DicomPhotoInfo } from './dicom.js';

/** A photograph: a path (`<file>.dcm#frame-<n>` for a frame of a multi-frame DICOM file), or encoded bytes. */
export type PhotoInput = string | Buffer;

/** A photograph ready for the image decoders. */
export interface OpenedPhoto {
  /** What the decoders read: the path of a plain image file, or encoded bytes. */
  source: string | Buffer;
  /** The name errors give: the path (with its frame), or `<buffer>`. */
  name: string;
  /** Set for a DICOM photograph: its attributes (no patient identifier). */
  dicom?: DicomPhotoInfo;
}

const BUFFER_NAME = '<buffer>';

/** Extensions whose files are never DICOM: they go to the decoders by path, unread here. */
const PLAIN_IMAGE = new Set(['.jpg', '.jpeg', '.png', '.tif', '.tiff', '.webp', '.bmp', '.gif']);

/** Whether a path may be a DICOM file: a DICOM extension, a frame suffix, or no known image extension (PACS exports often have none). */
export function mayBeDicom(path: string): boolean {
  const { file, frame } = splitFramePath(path);
  if (frame !== undefined) return true;
  const ext = extname(file).toLowerCase();
  return DICOM_EXTENSIONS.includes(ext) || !PLAIN_IMAGE.has(ext);
}

async function readPhoto(path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new InputError(`cannot read the image: ${code === 'ENOENT' ? 'no such file' : (code ?? (e as Error).message)}`, { file: path });
  }
}

/** The DICOM file at `path` (without a frame suffix), parsed; undefined when the file is not DICOM. */
export async function readDicomFile(path: string): Promise<DicomFile | undefined> {
  const bytes = await readPhoto(path);
  return isDicomBytes(bytes) ? parseDicom(bytes, path) : undefined;
}

/**
 * The bytes that stand for a photograph on their own (a queue hashes and ships them): a file's bytes, or, for one
 * frame of a multi-frame DICOM file, that frame's encoded image (so that each frame has its own content hash).
 */
export async function photoBytes(path: string): Promise<Buffer> {
  if (splitFramePath(path).frame === undefined) return readPhoto(path);
  return (await openPhoto(path)).source as Buffer;
}

/**
 * The number of frames in the file at `path` when it is a DICOM file, else undefined. Reads only the file's start
 * when it is not DICOM.
 */
export async function dicomFrameCount(path: string): Promise<number | undefined> {
  const head = Buffer.alloc(132);
  let fh;
  try {
    fh = await open(path, 'r');
    await fh.read(head, 0, 132, 0);
  } catch {
    return undefined; // whoever reads the photograph reports it
  } finally {
    await fh?.close();
  }
  if (!isDicomBytes(head)) return undefined;
  try {
    return (await readDicomFile(path))!.frames;
  } catch {
    return undefined; // an unreadable DICOM file is one photograph, reported by whoever reads it
  }
}

/**
 * Opens a photograph for decoding: a plain image path or bytes pass through; a DICOM file (by path, frame suffix
 * included, or by bytes) becomes its frame's encoded image. InputError naming the photograph for a missing file, a
 * frame that does not exist, a DICOM file that cannot be read or whose pixel data is not supported.
 */
export async function openPhoto(input: PhotoInput | OpenedPhoto, name?: string): Promise<OpenedPhoto> {
  if (typeof input !== 'string' && !Buffer.isBuffer(input)) return input; // opened already, by the caller's caller
  if (typeof input !== 'string') {
    const label = name ?? BUFFER_NAME;
    // Not DICOM: the bytes are the photograph (or a frame taken out of a DICOM file already, still under its name).
    if (!isDicomBytes(input)) return { source: input, name: label };
    // Bytes name a frame as paths do (`upload.dcm#frame-2`, the API's ?frame=2).
    const { frame } = splitFramePath(label);
    const file = parseDicom(input, label);
    if (frame === undefined && file.frames > 1) {
      throw new InputError(`a multi-frame DICOM file (${file.frames} frames): ask for one frame (the API's ?frame=1 … ${file.frames}), or give the file by path (its frames are read one by one)`, { file: label });
    }
    return { source: await frameImage(file, frame ?? 1), name: label, dicom: photoInfo(file, frame) };
  }
  if (!mayBeDicom(input)) return { source: input, name: input };
  const { file: path, frame } = splitFramePath(input);
  const bytes = await readPhoto(path);
  if (!isDicomBytes(bytes)) {
    if (frame !== undefined) throw new InputError('a frame was asked for, but the file is not a DICOM file', { file: input });
    return { source: bytes, name: input };
  }
  const file = parseDicom(bytes, input);
  if (frame === undefined && file.frames > 1) {
    throw new InputError(`a multi-frame DICOM file (${file.frames} frames): name a frame as ${path}#frame-1 … #frame-${file.frames}, or give the file's folder`, { file: input });
  }
  return { source: await frameImage(file, frame ?? 1), name: input, dicom: photoInfo(file, frame) };
}

/**
 * The DICOM attributes of a photograph (undefined for a plain image file), for its result record; the patient's
 * identifiers only with `identifiers` (`--show-identifiers`).
 */
export async function dicomInfoOf(input: PhotoInput, opts: { identifiers?: boolean } = {}): Promise<(DicomPhotoInfo & { patient?: DicomIdentifiers }) | undefined> {
  let file: DicomFile;
  let frame: number | undefined;
  if (typeof input !== 'string') {
    if (!isDicomBytes(input)) return undefined;
    file = parseDicom(input, BUFFER_NAME);
  } else {
    if (!mayBeDicom(input)) return undefined;
    const split = splitFramePath(input);
    frame = split.frame;
    const bytes = await readPhoto(split.file);
    if (!isDicomBytes(bytes)) return undefined;
    file = parseDicom(bytes, input);
  }
  const info = photoInfo(file, frame);
  return opts.identifiers ? { ...info, patient: file.identifiers } : info;
}
