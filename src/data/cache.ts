import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeFileAtomic } from '../util/atomic.js';
import { InputError } from '../util/errors.js';
import { progress } from '../util/progress.js';
import { normalizeBytes, preprocessToBytes, validatePreprocessSettings } from './preprocess.js';
import { photoBytes } from './photo-source.js';
import type { PreprocessSettings, PreprocessedBytes } from './preprocess.js';

/** Bump when preprocessing changes its output for the same settings, so that stale cache entries are never read. */
export const PREPROCESS_VERSION = 2;

/** The project's git-ignored cache folder; FUNDUS_CACHE_DIR overrides it. */
export function defaultCacheDir(): string {
  if (process.env.FUNDUS_CACHE_DIR) return resolve(process.env.FUNDUS_CACHE_DIR);
  return join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'cache');
}

export interface LoadOptions {
  /** Cache root (a `preprocess/` folder is made inside); default: the project's `cache/`. */
  cacheDir?: string;
  /** false: neither read nor write the cache (benchmarks, one-off predictions). */
  cache?: boolean;
  /** Images decoded at once; sharp decodes on libuv's thread pool. Default: the number of cores. */
  concurrency?: number;
  /** Called after each image with the number done so far. */
  onProgress?: (done: number) => void;
  /** Label of a progress bar on stderr (shown only when stderr is a terminal); none when absent. */
  progressLabel?: string;
}

/** What the cached bytes depend on: everything but normalisation, which is applied on load. */
export function settingsKey(settings: PreprocessSettings): string {
  const { crop, size, channels, clahe, resize, mask, localMean } = settings;
  // CLAHE moved from libvips's sliding window to tiled CLAHE in version 2; the other settings give the same bytes in both
  // versions, so their entries stay valid. Lanczos entries keep their old keys (no `resize` in the JSON), and so do
  // settings without the camera-invariant steps (`mask`, `localMean` appear only when set).
  const json = JSON.stringify({
    v: clahe ? PREPROCESS_VERSION : 1,
    crop,
    size,
    channels,
    clahe,
    ...(resize === 'area' ? { resize } : {}),
    ...(mask ? { mask } : {}),
    ...(localMean ? { localMean: { sigma: localMean.sigma } } : {}),
  });
  return createHash('sha256').update(json).digest('hex').slice(0, 16);
}

const MAGIC = 0x31435046; // "FPC1"
const HEADER = 36;

function encode(b: PreprocessedBytes): Buffer {
  const buf = Buffer.alloc(HEADER + b.pixels.length);
  const g = b.geometry;
  [MAGIC, b.size, b.channels].forEach((v, i) => buf.writeUInt32LE(v, i * 4));
  [g.width, g.height, g.x, g.y, g.side].forEach((v, i) => buf.writeInt32LE(v, 12 + i * 4));
  buf.writeUInt32LE(b.pixels.length, 32);
  buf.set(b.pixels, HEADER);
  return buf;
}

function decode(buf: Buffer, settings: PreprocessSettings): PreprocessedBytes | undefined {
  if (buf.length < HEADER || buf.readUInt32LE(0) !== MAGIC) return undefined;
  const size = buf.readUInt32LE(4);
  const channels = buf.readUInt32LE(8);
  const n = buf.readUInt32LE(32);
  if (size !== settings.size || n !== size * size * channels || buf.length !== HEADER + n) return undefined;
  const [width, height, x, y, side] = [0, 1, 2, 3, 4].map((i) => buf.readInt32LE(12 + i * 4));
  return { pixels: new Uint8Array(buf.buffer, buf.byteOffset + HEADER, n), size, channels, geometry: { width, height, x, y, side } };
}

/** Preprocesses the bytes already read (the path when they could not be read); errors name the file either way. */
async function preprocessBytesOf(path: string, bytes: Buffer | undefined, settings: PreprocessSettings): Promise<PreprocessedBytes> {
  if (!bytes) return preprocessToBytes(path, settings);
  try {
    return await preprocessToBytes(bytes, settings);
  } catch (err) {
    if (err instanceof InputError && err.file === '<buffer>') throw new InputError(err.message.replace(/^<buffer>: /, ''), { file: path });
    throw err;
  }
}

/** Runs `fn` over `items` with at most `limit` in flight, keeping result order. */
export async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return out;
}

/**
 * Preprocessed bytes (before normalisation) of each image, from the on-disk cache when an entry exists for the same
 * content (a SHA-256 of the file's bytes) and the same settings, else decoded and then cached. Entries are
 * written atomically, so an interrupted run never leaves a corrupt entry; a corrupt one is recomputed.
 */
export async function loadPreprocessedBytes(
  paths: string[],
  settings: PreprocessSettings,
  opts: LoadOptions = {},
): Promise<PreprocessedBytes[]> {
  validatePreprocessSettings(settings);
  const useCache = opts.cache !== false;
  const dir = join(opts.cacheDir ?? defaultCacheDir(), 'preprocess', settingsKey(settings));
  const bar = opts.progressLabel ? progress(opts.progressLabel, paths.length) : undefined;
  let done = 0;
  try {
    return await mapLimit(paths, opts.concurrency ?? availableParallelism(), async (p) => {
      const abs = resolve(p);
      let result: PreprocessedBytes | undefined;
      let entry: string | undefined;
      // Keyed on the photo's content, not its name, size and modification time: a photo replaced by another of the
      // same size and time (a copy with -p, a restored backup) must not get the old one's pixels. Hashing is cheap
      // beside decoding, and the bytes read here are the ones decoded (a multi-frame DICOM file's frame: its own image).
      const bytes = useCache ? await photoBytes(abs).catch(() => undefined) : undefined;
      if (bytes) {
        const key = createHash('sha256').update(bytes).digest('hex');
        entry = join(dir, key.slice(0, 2), `${key}.bin`);
        const cached = await readFile(entry).catch(() => undefined);
        if (cached) result = decode(cached, settings);
      }
      if (!result) {
        result = await preprocessBytesOf(abs, bytes, settings);
        if (entry) await writeFileAtomic(entry, encode(result));
      }
      done++;
      bar?.tick();
      opts.onProgress?.(done);
      return result;
    });
  } finally {
    bar?.stop();
  }
}

/** Preprocessed, normalised HWC arrays of each image (see loadPreprocessedBytes for the cache). */
export async function loadPreprocessed(paths: string[], settings: PreprocessSettings, opts: LoadOptions = {}): Promise<Float32Array[]> {
  const bytes = await loadPreprocessedBytes(paths, settings, opts);
  return bytes.map((b) => normalizeBytes(b.pixels, b.channels, settings));
}
