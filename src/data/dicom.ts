// DICOM photographs (Ophthalmic Photography, Secondary Capture, Visible Light Photography...): their frames as images
// the decoders read, and the few attributes a result needs. Parsing is dicom-parser's (cornerstone); a JPEG frame is
// handed to the JPEG decoders as it is, so a DICOM file predicts exactly as the JPEG inside it.
import dicomParser from 'dicom-parser';
import { Decoder as LosslessDecoder } from 'jpeg-lossless-decoder-js';
import { basename, extname } from 'node:path';
import sharp from 'sharp';
import { InputError } from '../util/errors.js';

/** File extensions of DICOM files (lower case, with the dot). Files without an extension are recognised by content. */
export const DICOM_EXTENSIONS: readonly string[] = ['.dcm', '.dicom'];

/**
 * How a frame of a multi-frame file is named: `<file>#frame-<n>`, n from 1. A single-frame file is named by its path
 * alone. The suffix is what predict, evaluate, explain, the queue and the reports show and key results by.
 */
const FRAME_SUFFIX = /#frame-([1-9][0-9]*)$/;

export function framePath(file: string, frame: number): string {
  return `${file}#frame-${frame}`;
}

/** `<file>#frame-<n>` split into the file and n (1-based); a plain path is frame undefined. */
export function splitFramePath(path: string): { file: string; frame?: number } {
  const m = FRAME_SUFFIX.exec(path);
  return m ? { file: path.slice(0, m.index), frame: Number(m[1]) } : { file: path };
}

/**
 * The stem of the files made from a photograph in an output folder (heatmaps, overlays): its file name without the
 * extension, `-<n>` for the n-th photograph (n ≥ 2) whose name it shares there, and for a frame of a multi-frame DICOM
 * file `.frame-<k>` (`x.dcm#frame-2` → `x.frame-2`), so that the files say which frame they show. `clean` rewrites
 * the file-name part (explain's slug); an empty name becomes `image`.
 */
export function outputStem(path: string, n = 1, clean: (name: string) => string = (s) => s): string {
  const { file, frame } = splitFramePath(path);
  const name = clean(basename(file, extname(file))) || 'image';
  return `${name}${n > 1 ? `-${n}` : ''}${frame === undefined ? '' : `.frame-${frame}`}`;
}

/** Whether bytes are a DICOM Part 10 file (the `DICM` marker after the 128-byte preamble). */
export function isDicomBytes(bytes: Uint8Array): boolean {
  return bytes.length >= 132 && bytes[128] === 0x44 && bytes[129] === 0x49 && bytes[130] === 0x43 && bytes[131] === 0x4d;
}

/** Transfer syntaxes by UID, with their names as the standard gives them (PS3.6 Annex A). */
const TRANSFER_SYNTAXES: Record<string, string> = {
  '1.2.840.10008.1.2': 'Implicit VR Little Endian',
  '1.2.840.10008.1.2.1': 'Explicit VR Little Endian',
  '1.2.840.10008.1.2.1.99': 'Deflated Explicit VR Little Endian',
  '1.2.840.10008.1.2.2': 'Explicit VR Big Endian',
  '1.2.840.10008.1.2.4.50': 'JPEG Baseline (Process 1)',
  '1.2.840.10008.1.2.4.51': 'JPEG Extended (Process 2 & 4)',
  '1.2.840.10008.1.2.4.57': 'JPEG Lossless, Non-Hierarchical (Process 14)',
  '1.2.840.10008.1.2.4.70': 'JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 [Selection Value 1])',
  '1.2.840.10008.1.2.4.80': 'JPEG-LS Lossless Image Compression',
  '1.2.840.10008.1.2.4.81': 'JPEG-LS Lossy (Near-Lossless) Image Compression',
  '1.2.840.10008.1.2.4.90': 'JPEG 2000 Image Compression (Lossless Only)',
  '1.2.840.10008.1.2.4.91': 'JPEG 2000 Image Compression',
  '1.2.840.10008.1.2.4.92': 'JPEG 2000 Part 2 Multi-component Image Compression (Lossless Only)',
  '1.2.840.10008.1.2.4.93': 'JPEG 2000 Part 2 Multi-component Image Compression',
  '1.2.840.10008.1.2.4.100': 'MPEG2 Main Profile / Main Level',
  '1.2.840.10008.1.2.4.101': 'MPEG2 Main Profile / High Level',
  '1.2.840.10008.1.2.4.102': 'MPEG-4 AVC/H.264 High Profile / Level 4.1',
  '1.2.840.10008.1.2.4.103': 'MPEG-4 AVC/H.264 BD-compatible High Profile / Level 4.1',
  '1.2.840.10008.1.2.4.110': 'JPEG XL Lossless',
  '1.2.840.10008.1.2.4.111': 'JPEG XL JPEG Recompression',
  '1.2.840.10008.1.2.4.112': 'JPEG XL',
  '1.2.840.10008.1.2.4.201': 'High-Throughput JPEG 2000 Image Compression (Lossless Only)',
  '1.2.840.10008.1.2.4.202': 'High-Throughput JPEG 2000 with RPCL Options Image Compression (Lossless Only)',
  '1.2.840.10008.1.2.4.203': 'High-Throughput JPEG 2000 Image Compression',
  '1.2.840.10008.1.2.5': 'RLE Lossless',
};

const NATIVE = new Set(['1.2.840.10008.1.2', '1.2.840.10008.1.2.1', '1.2.840.10008.1.2.1.99', '1.2.840.10008.1.2.2']);
const JPEG_LOSSY = new Set(['1.2.840.10008.1.2.4.50', '1.2.840.10008.1.2.4.51']);
const JPEG_LOSSLESS = new Set(['1.2.840.10008.1.2.4.57', '1.2.840.10008.1.2.4.70']);

const SUPPORTED_IN_WORDS =
  'uncompressed pixel data (Implicit or Explicit VR Little Endian, Explicit VR Big Endian, Deflated), JPEG Baseline, JPEG Extended (8-bit) and JPEG Lossless (Process 14)';

/** The transfer syntaxes whose pixel data fundus reads, for docs and messages. */
export const SUPPORTED_TRANSFER_SYNTAXES: readonly string[] = [...NATIVE, ...JPEG_LOSSY, ...JPEG_LOSSLESS];

export function transferSyntaxName(uid: string): string {
  return TRANSFER_SYNTAXES[uid] ?? 'an unknown transfer syntax';
}

/** SOP classes of photographs, for messages and the FHIR output (others are read when their pixels are). */
const SOP_CLASSES: Record<string, string> = {
  '1.2.840.10008.5.1.4.1.1.77.1.5.1': 'Ophthalmic Photography 8 Bit Image Storage',
  '1.2.840.10008.5.1.4.1.1.77.1.5.2': 'Ophthalmic Photography 16 Bit Image Storage',
  '1.2.840.10008.5.1.4.1.1.77.1.4': 'VL Photographic Image Storage',
  '1.2.840.10008.5.1.4.1.1.7': 'Secondary Capture Image Storage',
  '1.2.840.10008.5.1.4.1.1.7.4': 'Multi-frame True Color Secondary Capture Image Storage',
  '1.2.840.10008.5.1.4.1.1.77.1.5.4': 'Ophthalmic Tomography Image Storage',
};

/** Patient identifiers: kept out of every output unless asked for (`--show-identifiers`). */
export interface DicomIdentifiers {
  patientName?: string;
  patientId?: string;
  birthDate?: string;
  sex?: string;
  accessionNumber?: string;
}

/**
 * What a result carries about a DICOM photograph. No patient identifier: the photograph is keyed by its SOP Instance
 * UID, and the study and series UIDs let a record system file the result beside it.
 */
export interface DicomPhotoInfo {
  sopInstanceUid?: string;
  sopClassUid?: string;
  studyInstanceUid?: string;
  seriesInstanceUid?: string;
  /** 1-based, for a multi-frame file's frame; absent for a single-frame file. */
  frame?: number;
  /** `R` or `L` (ImageLaterality, else Laterality), when the file says. */
  laterality?: string;
  /** AcquisitionDate as ISO 8601 (`2024-03-01`), else the ContentDate or the StudyDate. */
  acquisitionDate?: string;
  modality?: string;
}

/** A parsed DICOM file: its frames and attributes. The bytes stay where they are (dicom-parser keeps offsets). */
export interface DicomFile {
  /** The name errors give (the path, or the upload's name). */
  name: string;
  transferSyntax: string;
  frames: number;
  info: Omit<DicomPhotoInfo, 'frame'>;
  identifiers: DicomIdentifiers;
  dataSet: dicomParser.DataSet;
}

function fail(name: string, message: string): never {
  throw new InputError(message, { file: name });
}

/** The ISO form of a DICOM DA value (YYYYMMDD), or undefined for an empty or malformed one. */
function isoDate(da: string | undefined): string | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})$/.exec((da ?? '').trim());
  return m ? `${m[1]}-${m[2]}-${m[3]}` : undefined;
}

function text(ds: dicomParser.DataSet, tag: string): string | undefined {
  const v = ds.string(tag)?.trim();
  return v ? v : undefined;
}

/**
 * Parses a DICOM Part 10 file. InputError naming the file (never a patient identifier) when it is not one, is cut
 * short, or holds no pixel data.
 */
export function parseDicom(bytes: Uint8Array, name: string): DicomFile {
  if (!isDicomBytes(bytes)) fail(name, 'not a DICOM file (no DICM marker at byte 128)');
  let ds: dicomParser.DataSet;
  try {
    ds = dicomParser.parseDicom(bytes);
  } catch (e) {
    // dicom-parser throws strings, Errors, or { exception, dataSet }; none of them quotes element values.
    const err = e as { exception?: unknown; message?: unknown };
    const why = typeof e === 'string' ? e : typeof err.exception === 'string' ? err.exception : typeof err.message === 'string' ? err.message : 'unreadable';
    fail(name, `cannot read the DICOM file (truncated or corrupt): ${why.replace(/^dicomParser[.:]\w+: /, '')}`);
  }
  const transferSyntax = text(ds, 'x00020010') ?? '1.2.840.10008.1.2';
  const pixel = ds.elements.x7fe00010;
  if (!pixel) {
    const cls = text(ds, 'x00080016');
    fail(name, `a DICOM file without pixel data (${cls ? (SOP_CLASSES[cls] ?? `SOP class ${cls}`) : 'no SOP class'}): not a photograph`);
  }
  const frames = Math.max(1, Number.parseInt(text(ds, 'x00280008') ?? '1', 10) || 1);
  const laterality = text(ds, 'x00200062') ?? text(ds, 'x00200060');
  const info: DicomFile['info'] = {
    sopInstanceUid: text(ds, 'x00080018'),
    sopClassUid: text(ds, 'x00080016'),
    studyInstanceUid: text(ds, 'x0020000d'),
    seriesInstanceUid: text(ds, 'x0020000e'),
    laterality: laterality === 'R' || laterality === 'L' ? laterality : laterality ? laterality.toUpperCase() : undefined,
    acquisitionDate: isoDate(text(ds, 'x00080022')) ?? isoDate(text(ds, 'x00080023')) ?? isoDate(text(ds, 'x00080020')),
    modality: text(ds, 'x00080060'),
  };
  const identifiers: DicomIdentifiers = {
    patientName: text(ds, 'x00100010'),
    patientId: text(ds, 'x00100020'),
    birthDate: isoDate(text(ds, 'x00100030')),
    sex: text(ds, 'x00100040'),
    accessionNumber: text(ds, 'x00080050'),
  };
  return { name, transferSyntax, frames, info, identifiers, dataSet: ds };
}

/** The SOP class's name, for reports. */
export function sopClassName(uid: string | undefined): string | undefined {
  return uid ? SOP_CLASSES[uid] : undefined;
}

/** The attributes of frame `frame` (1-based) for a result, with the frame number only for a multi-frame file. */
export function photoInfo(file: DicomFile, frame?: number): DicomPhotoInfo {
  return file.frames > 1 && frame !== undefined ? { ...file.info, frame } : { ...file.info };
}

interface PixelModule {
  rows: number;
  columns: number;
  samples: number;
  bitsAllocated: number;
  bitsStored: number;
  pixelRepresentation: number;
  planar: number;
  photometric: string;
}

function pixelModule(file: DicomFile): PixelModule {
  const ds = file.dataSet;
  const m: PixelModule = {
    rows: ds.uint16('x00280010') ?? 0,
    columns: ds.uint16('x00280011') ?? 0,
    samples: ds.uint16('x00280002') ?? 1,
    bitsAllocated: ds.uint16('x00280100') ?? 8,
    bitsStored: ds.uint16('x00280101') ?? ds.uint16('x00280100') ?? 8,
    pixelRepresentation: ds.uint16('x00280103') ?? 0,
    planar: ds.uint16('x00280006') ?? 0,
    photometric: (text(ds, 'x00280004') ?? (ds.uint16('x00280002') === 3 ? 'RGB' : 'MONOCHROME2')).toUpperCase(),
  };
  if (m.rows < 1 || m.columns < 1) fail(file.name, `the DICOM file gives no image size (Rows ${m.rows}, Columns ${m.columns})`);
  return m;
}

/** The encoded bytes of one frame of encapsulated pixel data (JPEG...). */
function encapsulatedFrame(file: DicomFile, index: number): Uint8Array {
  const ds = file.dataSet;
  const el = ds.elements.x7fe00010;
  if (!el.encapsulatedPixelData) fail(file.name, `the transfer syntax ${file.transferSyntax} (${transferSyntaxName(file.transferSyntax)}) needs encapsulated pixel data, and this file's is not`);
  try {
    const fragments = el.fragments ?? [];
    if (file.frames === 1 && (el.basicOffsetTable?.length ?? 0) === 0) {
      return dicomParser.readEncapsulatedPixelDataFromFragments(ds, el, 0, fragments.length) as Uint8Array;
    }
    const table = (el.basicOffsetTable?.length ?? 0) > 0 ? el.basicOffsetTable : dicomParser.createJPEGBasicOffsetTable(ds, el);
    return dicomParser.readEncapsulatedImageFrame(ds, el, index, table) as Uint8Array;
  } catch (e) {
    return fail(file.name, `cannot read frame ${index + 1} of the pixel data: ${typeof e === 'string' ? e : (e as Error).message}`);
  }
}

/** 8-bit samples from 16-bit ones: the stored bits scaled to 0..255 (signed values offset to unsigned first). */
function to8Bit(values: ArrayLike<number>, m: PixelModule): Uint8Array {
  const out = new Uint8Array(values.length);
  const offset = m.pixelRepresentation === 1 ? 1 << (m.bitsStored - 1) : 0;
  const shift = Math.max(0, m.bitsStored - 8);
  const max = (1 << m.bitsStored) - 1;
  for (let i = 0; i < values.length; i++) {
    let v = values[i];
    if (m.pixelRepresentation === 1 && v >= 1 << (m.bitsAllocated - 1)) v -= 1 << m.bitsAllocated; // two's complement
    v = Math.min(max, Math.max(0, v + offset));
    out[i] = v >> shift;
  }
  return out;
}

/** Interleaved 8-bit RGB from a frame's samples (interleaved or planar; RGB, YBR_FULL, MONOCHROME1/2). */
function toRgb(samples: Uint8Array, m: PixelModule, name: string, planar: boolean): Uint8Array {
  const n = m.rows * m.columns;
  const rgb = new Uint8Array(n * 3);
  if (m.samples === 1) {
    if (m.photometric !== 'MONOCHROME2' && m.photometric !== 'MONOCHROME1') fail(name, `photometric interpretation ${m.photometric} is not supported (MONOCHROME1, MONOCHROME2, RGB or YBR_FULL are)`);
    const invert = m.photometric === 'MONOCHROME1' ? 255 : 0;
    for (let i = 0; i < n; i++) rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = Math.abs(invert - samples[i]);
    return rgb;
  }
  if (m.samples !== 3) fail(name, `${m.samples} samples per pixel; a photograph has 1 or 3`);
  for (let i = 0; i < n; i++) {
    const [a, b, c] = planar ? [samples[i], samples[n + i], samples[2 * n + i]] : [samples[3 * i], samples[3 * i + 1], samples[3 * i + 2]];
    rgb[3 * i] = a;
    rgb[3 * i + 1] = b;
    rgb[3 * i + 2] = c;
  }
  if (m.photometric === 'YBR_FULL') {
    for (let i = 0; i < rgb.length; i += 3) {
      const y = rgb[i];
      const cb = rgb[i + 1] - 128;
      const cr = rgb[i + 2] - 128;
      rgb[i] = clamp(y + 1.402 * cr);
      rgb[i + 1] = clamp(y - 0.344136 * cb - 0.714136 * cr);
      rgb[i + 2] = clamp(y + 1.772 * cb);
    }
  } else if (m.photometric !== 'RGB') {
    fail(name, `photometric interpretation ${m.photometric} is not supported for uncompressed colour pixels (RGB or YBR_FULL are)`);
  }
  return rgb;
}

const clamp = (v: number) => (v < 0 ? 0 : v > 255 ? 255 : Math.round(v));

/** One frame of native (uncompressed) pixel data as 8-bit RGB. */
function nativeFrame(file: DicomFile, index: number, m: PixelModule): Uint8Array {
  const ds = file.dataSet;
  const el = ds.elements.x7fe00010;
  if (m.bitsAllocated !== 8 && m.bitsAllocated !== 16) fail(file.name, `${m.bitsAllocated} bits allocated per sample; 8 or 16 are read`);
  const bytesPerSample = m.bitsAllocated / 8;
  const frameBytes = m.rows * m.columns * m.samples * bytesPerSample;
  const start = el.dataOffset + index * frameBytes;
  if (el.encapsulatedPixelData || start + frameBytes > el.dataOffset + el.length || start + frameBytes > ds.byteArray.length) {
    fail(file.name, `the pixel data is shorter than ${file.frames} frame(s) of ${m.columns}×${m.rows}×${m.samples} samples (truncated?)`);
  }
  let samples: Uint8Array;
  if (bytesPerSample === 1) samples = ds.byteArray.subarray(start, start + frameBytes);
  else {
    const view = new DataView(ds.byteArray.buffer, ds.byteArray.byteOffset + start, frameBytes);
    const little = file.transferSyntax !== '1.2.840.10008.1.2.2';
    const values = new Uint16Array(frameBytes / 2);
    for (let i = 0; i < values.length; i++) values[i] = view.getUint16(2 * i, little);
    samples = to8Bit(values, m);
  }
  return toRgb(samples, m, file.name, m.planar === 1);
}

/** One frame of JPEG Lossless pixel data as 8-bit RGB (jpeg-lossless-decoder-js). */
function losslessFrame(file: DicomFile, index: number, m: PixelModule): Uint8Array {
  const encoded = encapsulatedFrame(file, index);
  let decoded: ArrayBuffer;
  try {
    const copy = new Uint8Array(encoded); // a copy: the decoder takes an ArrayBuffer holding the JPEG stream alone
    decoded = new LosslessDecoder().decompress(copy.buffer, 0, copy.byteLength) as ArrayBuffer;
  } catch (e) {
    return fail(file.name, `cannot decode the JPEG Lossless frame ${index + 1} (jpeg-lossless-decoder-js): ${(e as Error).message ?? String(e)}`);
  }
  const samples = m.bitsAllocated > 8 || m.bitsStored > 8 ? to8Bit(new Uint16Array(decoded), m) : new Uint8Array(decoded);
  if (samples.length < m.rows * m.columns * m.samples) fail(file.name, `the JPEG Lossless frame ${index + 1} decodes to fewer pixels than ${m.columns}×${m.rows}`);
  // JPEG Lossless keeps the samples as the encoder had them: interleaved, in the file's photometric interpretation.
  return toRgb(samples, { ...m, photometric: m.photometric.startsWith('YBR') ? 'YBR_FULL' : m.photometric }, file.name, false);
}

/**
 * Frame `frame` (1-based; default the first) as an encoded image the decoders read: a JPEG frame's own bytes (so its
 * pixels are exactly the JPEG's), other frames as a lossless PNG of their 8-bit RGB pixels. InputError naming the
 * file and the transfer syntax (UID and name) for pixel data fundus cannot read.
 */
export async function frameImage(file: DicomFile, frame = 1): Promise<Buffer> {
  if (!Number.isInteger(frame) || frame < 1 || frame > file.frames) {
    fail(file.name, `frame ${frame} does not exist: the file has ${file.frames} frame${file.frames === 1 ? '' : 's'}`);
  }
  const ts = file.transferSyntax;
  const index = frame - 1;
  if (JPEG_LOSSY.has(ts)) return Buffer.from(encapsulatedFrame(file, index));
  let rgb: Uint8Array;
  const m = pixelModule(file);
  if (NATIVE.has(ts)) rgb = nativeFrame(file, index, m);
  else if (JPEG_LOSSLESS.has(ts)) rgb = losslessFrame(file, index, m);
  else {
    return fail(
      file.name,
      `the pixel data's transfer syntax ${ts} (${transferSyntaxName(ts)}) is not supported; fundus reads ${SUPPORTED_IN_WORDS}: ` +
        `convert the file first (e.g. gdcmconv --raw, or DCMTK's dcmdjpeg, dcmdjpls or dcmdrle)`,
    );
  }
  // Level 1: the PNG exists only to carry the pixels to the decoders, which read it at once.
  return sharp(rgb, { raw: { width: m.columns, height: m.rows, channels: 3 } }).png({ compressionLevel: 1 }).toBuffer();
}
