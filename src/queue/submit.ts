import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { dirname, extname, join, resolve } from 'node:path';
import type { Redis } from 'ioredis';
import type { Queue } from 'bullmq';
import { collectImages } from '../data/image-files.js';
import { photoBytes } from '../data/photo-source.js';
import { mapLimit } from '../data/cache.js';
import { METADATA_JSON, readMetadata } from '../models/io.js';
import { InputError } from '../util/errors.js';
import type { CamMethod } from '../explain/cam.js';
import { defaultExplanation, type DefaultExplanation } from '../explain/explainer.js';
import type { ModelIdentity } from '../serve/output.js';
import { identityOf } from '../serve/predict-cli.js';
import { openHeatmapsIndex, type HeatmapChoice } from '../serve/heatmap-files.js';
import { batchKeys, bindModel, type BatchKeys, type ChunkData, type HeatmapRequest, type PhotoEntry, type PhotoRef } from './batch.js';
import { heatmapRequest, lacksHeatmaps } from './heatmaps.js';
import { CHUNK_JOB, chunkJobId, jobOptions, type RetryPolicy } from './jobs.js';

/** Extensions of list files: one photograph path a line (blank lines and `#` comments skipped). */
const LIST_EXTENSIONS = new Set(['.txt', '.list', '.lst']);
/** Files read (and hashed) at once while submitting. */
const READ_CONCURRENCY = 8;

/** The bytes-in-Redis mode's caps (see docs/queue.md): Redis holds every pending photograph in memory. */
export interface BytesCaps {
  /** Largest photograph sent as bytes. */
  maxPhotoBytes: number;
  /** Most bytes of a batch waiting in Redis at once; submit stops there (run it again once workers caught up). */
  maxTotalBytes: number;
}

export const DEFAULT_BYTES_CAPS: BytesCaps = { maxPhotoBytes: 16 * 1024 * 1024, maxTotalBytes: 1024 * 1024 * 1024 };

export interface SubmitOptions {
  redis: Redis;
  queue: Queue<ChunkData>;
  queueName: string;
  modelDir: string;
  /** Files, folders (walked recursively) and list files. */
  inputs: string[];
  chunk: number;
  retry: RetryPolicy;
  /** Send the photographs' bytes through Redis instead of their paths. */
  bytes?: BytesCaps;
  /** The gradability gate before the network, as in `fundus predict` (default true). */
  gradability?: boolean;
  /**
   * Also write heatmap overlays into this folder (shared storage every worker can write), as `predict --heatmaps`;
   * without a method, the model's own (`defaultExplanation`).
   */
  heatmaps?: { dir: string; choice: Omit<HeatmapChoice, 'method'> & { method?: CamMethod } };
  /** Called after each enqueued chunk with the photographs enqueued so far. */
  onProgress?: (enqueued: number) => void;
}

export interface SubmitSummary {
  /** Photographs found in the inputs. */
  found: number;
  /** Newly enqueued. */
  enqueued: number;
  chunks: number;
  /** Already in the batch (submitted before, or the same bytes twice in the inputs): not scored again. */
  known: number;
  /** Of those enqueued, photographs already in the batch without their heatmaps (scored, or waiting to be, before heatmaps were asked for). */
  forHeatmaps: number;
  /** Files that could not be read here (not enqueued), or too large for bytes mode. */
  unreadable: { file: string; reason: string }[];
}

/**
 * The identity of the model in `dir` as `fundus predict` records it (sha256 of fundus.json, see modelIdentity in
 * predict-cli.ts), without loading its weights: submit only needs to name the model.
 */
export async function modelIdentityOfDir(dir: string): Promise<{ identity: ModelIdentity; classes: string[]; thresholds: number[]; explanation: DefaultExplanation }> {
  const meta = await readMetadata(dir);
  return {
    explanation: defaultExplanation({ dir, metadata: meta }),
    identity: identityOf(dir, await readFile(join(dir, METADATA_JSON), 'utf8')),
    classes: meta.classes,
    thresholds: meta.thresholds,
  };
}

async function readList(file: string): Promise<string[]> {
  const text = await readFile(file, 'utf8');
  const base = dirname(file);
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => resolve(base, l));
}

/** The photographs named by the inputs, as absolute paths: folders walked, list files read (their paths relative to the list). */
export async function expandInputs(inputs: string[]): Promise<string[]> {
  const paths: string[] = [];
  for (const p of inputs) {
    const isList = LIST_EXTENSIONS.has(extname(p).toLowerCase()) && (await stat(p).then((s) => s.isFile(), () => false));
    if (isList) {
      const listed = await readList(p);
      if (listed.length === 0) throw new InputError('the list file names no photograph', { file: p });
      paths.push(...listed);
    } else paths.push(p);
  }
  // Listed paths go through the same walk: a listed folder is walked, a missing file is an error naming it.
  const found = await collectImages(paths);
  return [...new Set(found.map((f) => resolve(f)))];
}

function errorReason(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e.code ? `cannot read it (${e.code})` : (e.message ?? String(err));
}

/** Registers a photograph (id → entry) unless known, and appends a new one to the submission order, atomically. */
const REGISTER_SCRIPT = `
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('RPUSH', KEYS[2], ARGV[1])
  return 1
end
return 0
`;

async function registerPhotos(redis: Redis, keys: BatchKeys, entries: [string, PhotoEntry][]): Promise<boolean[]> {
  if (entries.length === 0) return [];
  const p = redis.pipeline();
  for (const [id, entry] of entries) p.eval(REGISTER_SCRIPT, 2, keys.photos, keys.order, id, JSON.stringify(entry));
  return ((await p.exec()) ?? []).map(([err, n]) => {
    if (err) throw err;
    return n === 1;
  });
}

/**
 * Of photographs registered before, those this submit must enqueue, each with its entry and why: `orphan`, nobody
 * takes care of it (not scored, not failed, and in no job that exists: a submit stopped between registering and
 * enqueueing it); `heatmaps`, the submit asks for heatmaps and it has none yet nor is in a job that makes them (it
 * was scored, or is waiting to be, without them). A failed photograph is `retry-failed`'s.
 */
async function needingWork(
  redis: Redis,
  keys: BatchKeys,
  queue: Queue<ChunkData>,
  ids: string[],
  jobExists: Map<string, boolean>,
  heatmaps: boolean,
): Promise<Map<string, { entry: PhotoEntry; why: 'orphan' | 'heatmaps' }>> {
  const out = new Map<string, { entry: PhotoEntry; why: 'orphan' | 'heatmaps' }>();
  if (ids.length === 0) return out;
  const p = redis.pipeline();
  for (const id of ids) p.hget(keys.photos, id).hget(keys.results, id).hexists(keys.failed, id);
  const replies = ((await p.exec()) ?? []).map(([err, v]) => {
    if (err) throw err;
    return v;
  });
  const exists = async (job: string) => {
    if (!jobExists.has(job)) jobExists.set(job, (await queue.getJob(job)) !== undefined);
    return jobExists.get(job)!;
  };
  for (const [i, id] of ids.entries()) {
    const [raw, result, failed] = replies.slice(3 * i, 3 * i + 3);
    if (failed || typeof raw !== 'string') continue;
    const scored = typeof result === 'string';
    if (scored && (!heatmaps || !lacksHeatmaps(result))) continue;
    const entry = JSON.parse(raw) as PhotoEntry;
    // In a job that does what this submit asks: taken care of.
    if (entry.job && (!heatmaps || entry.heatmaps) && (await exists(entry.job))) continue;
    const inPlainJob = !!entry.job && !entry.heatmaps && (await exists(entry.job));
    out.set(id, { entry, why: scored || inPlainJob ? 'heatmaps' : 'orphan' });
  }
  return out;
}

/**
 * Enqueues the photographs not yet in the batch, in chunks. A photograph's identity is the sha256 of its bytes: one
 * already registered (submitted before, from any path, or twice in these inputs) is not enqueued again, so
 * submitting a folder twice scores nothing twice. Registration is atomic (HSETNX), so two submits at once cannot both
 * claim a photograph. A submit killed between registering photographs and enqueueing their chunk leaves them
 * registered without a job; the next submit of the same photographs finds them so and enqueues them. With heatmaps,
 * a photograph already in the batch without them (scored before they were asked for) is enqueued again, for them.
 */
export async function submitPhotos(opts: SubmitOptions): Promise<SubmitSummary> {
  const { redis, queue } = opts;
  const keys = batchKeys(opts.queueName);
  const model = await modelIdentityOfDir(opts.modelDir);
  const files = await expandInputs(opts.inputs);
  const gradability = opts.gradability ?? true;
  const heatmaps: HeatmapRequest | undefined = opts.heatmaps && (await heatmapRequest(opts.heatmaps.dir, { ...opts.heatmaps.choice, method: opts.heatmaps.choice.method ?? model.explanation.method }, model.classes, files));
  await bindModel(redis, keys, opts.queueName, { model: model.identity, classes: model.classes, thresholds: model.thresholds, gradability, heatmaps, createdAt: new Date().toISOString() });
  // The folder's index marks it as fundus's, and tells a worker that the folder it writes into is the shared one.
  if (heatmaps) await openHeatmapsIndex(heatmaps.dir);
  const summary: SubmitSummary = { found: files.length, enqueued: 0, chunks: 0, known: 0, forHeatmaps: 0, unreadable: [] };
  const sha = model.identity.fundusJsonSha256;
  const jobExists = new Map<string, boolean>();
  const seenHere = new Set<string>();
  let pending: (PhotoRef & { bytes: boolean })[] = [];

  const flush = async (all: boolean) => {
    while (pending.length >= opts.chunk || (all && pending.length > 0)) {
      const part = pending.slice(0, opts.chunk);
      pending = pending.slice(opts.chunk);
      for (const mode of [false, true]) {
        const photos = part.filter((p) => p.bytes === mode).map(({ id, file }) => ({ id, file }));
        if (photos.length === 0) continue;
        // A chunk that makes heatmaps is another job than one that scores the same photographs without.
        const jobId = chunkJobId(photos, heatmaps ? 'heatmaps' : '');
        // The entries name their job before it exists: a worker finishing it at once finds them its own (and drops
        // their bytes); a submit stopped in between leaves a job name that does not exist, which the next one mends.
        const tx = redis.multi();
        for (const p of photos) tx.hset(keys.photos, p.id, JSON.stringify({ file: p.file, bytes: mode || undefined, job: jobId, heatmaps: heatmaps ? true : undefined } satisfies PhotoEntry));
        await tx.exec();
        await queue.add(CHUNK_JOB, { model: sha, photos, bytes: mode, gradability, ...(heatmaps ? { heatmaps } : {}) }, jobOptions(jobId, opts.retry));
        jobExists.set(jobId, true);
        summary.chunks++;
        summary.enqueued += photos.length;
      }
      opts.onProgress?.(summary.enqueued);
    }
  };

  try {
    for (let start = 0; start < files.length; start += opts.chunk) {
      const read = await mapLimit(files.slice(start, start + opts.chunk), READ_CONCURRENCY, async (file) => {
        try {
          const data = await photoBytes(file); // a multi-frame DICOM file's frame: its own image, its own hash
          return { file, data, id: createHash('sha256').update(data).digest('hex') };
        } catch (err) {
          summary.unreadable.push({ file, reason: errorReason(err) });
          return undefined;
        }
      });
      const fresh: { file: string; data: Buffer; id: string }[] = [];
      for (const r of read) {
        if (!r) continue;
        if (opts.bytes && r.data.length > opts.bytes.maxPhotoBytes) {
          summary.unreadable.push({ file: r.file, reason: `${r.data.length} bytes, more than the bytes-in-Redis cap of ${opts.bytes.maxPhotoBytes} per photograph` });
        } else if (seenHere.has(r.id)) summary.known++;
        else {
          seenHere.add(r.id);
          fresh.push(r);
        }
      }
      const claims = await registerPhotos(redis, keys, fresh.map((r) => [r.id, { file: r.file, bytes: opts.bytes ? true : undefined }]));
      const before = await needingWork(redis, keys, queue, fresh.filter((_, i) => !claims[i]).map((r) => r.id), jobExists, !!heatmaps);
      // A photograph enqueued again for its heatmaps leaves the job that scored it (or will) without them, before its
      // bytes are stored again: that job's worker no longer drops them (see recordOutcomes).
      const again = [...before].filter(([, b]) => b.why === 'heatmaps');
      if (again.length > 0) {
        const tx = redis.multi();
        for (const [id, { entry }] of again) tx.hset(keys.photos, id, JSON.stringify({ file: entry.file, bytes: entry.bytes, heatmaps: true } satisfies PhotoEntry));
        await tx.exec();
      }
      for (const [i, r] of fresh.entries()) {
        const known = before.get(r.id);
        if (!claims[i] && !known) {
          summary.known++;
          continue;
        }
        // A photograph registered before is enqueued the way it was registered (its path, its bytes or not).
        const inRedis = known ? !!known.entry.bytes : !!opts.bytes;
        if (inRedis) await storeBytes(redis, keys, r.id, r.data, opts.bytes ?? DEFAULT_BYTES_CAPS);
        if (known?.why === 'heatmaps') summary.forHeatmaps++;
        pending.push({ id: r.id, file: known?.entry.file ?? r.file, bytes: inRedis });
      }
      await flush(false);
    }
  } finally {
    // What was claimed is enqueued, also when the bytes cap (or an error) stops the submit.
    await flush(true);
  }
  return summary;
}

/**
 * Stores a photograph's bytes unless stored, within the batch's total cap, atomically: a command resent after a
 * Redis restart cannot count the bytes twice. KEYS: bytes key, bytes-total; ARGV: bytes, length, cap.
 * Returns 1 (stored), 0 (there already) or -1 (over the cap).
 */
const STORE_SCRIPT = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local total = tonumber(redis.call('GET', KEYS[2]) or '0')
if total + tonumber(ARGV[2]) > tonumber(ARGV[3]) then return -1 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('INCRBY', KEYS[2], ARGV[2])
return 1
`;

/** Stores a photograph's bytes for the workers, within the batch's total cap. */
async function storeBytes(redis: Redis, keys: BatchKeys, id: string, data: Buffer, caps: BytesCaps): Promise<void> {
  const cap = Number.isFinite(caps.maxTotalBytes) ? caps.maxTotalBytes : Number.MAX_SAFE_INTEGER;
  const stored = (await redis.eval(STORE_SCRIPT, 2, keys.bytes(id), keys.bytesTotal, data, String(data.length), String(cap))) as number;
  if (stored >= 0) return;
  const total = Number((await redis.get(keys.bytesTotal)) ?? 0);
  // What was enqueued stays enqueued; the rest is picked up by the same submit run again later.
  throw new InputError(
    `the batch's photographs in Redis would exceed the bytes-in-Redis cap (${total} + ${data.length} > ${caps.maxTotalBytes} bytes); ` +
      `the photographs enqueued so far are being scored (each one's bytes are dropped once it is scored): run the same submit again later, ` +
      `or use shared paths (without --bytes)`,
  );
}
