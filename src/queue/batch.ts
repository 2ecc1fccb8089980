import type { Redis } from 'ioredis';
import { InputError } from '../util/errors.js';
import type { ModelIdentity } from '../serve/output.js';
import type { HeatmapChoice } from '../serve/heatmap-files.js';
import type { PredictionRecord, UngradableRecord } from '../models/records.js';

/**
 * A batch is one named queue of photographs scored by one model. Its jobs live in BullMQ's keys
 * (`fundus:<queue>:...`); what fundus keeps beside them lives under `fundus-batch:<queue>:...`:
 *   meta     hash: the model the batch is bound to (`model` = its fundus.json sha256), its folder, classes, thresholds,
 *            gradability policy, and the heatmaps it makes (HeatmapRequest as JSON; absent: none)
 *   photos   hash: content sha256 → PhotoEntry (the photograph's identity: the same bytes are scored once)
 *   order    list: content hashes in submission order (the order of `fundus queue results`)
 *   results  hash: content sha256 → the prediction record (JSON), written once per photograph whatever the retries
 *   failed   hash: content sha256 → PhotoFailure (unreadable after the job's last attempt)
 *   bytes:<sha> string: a photograph's bytes (bytes-in-Redis mode), dropped once it is scored; bytes-total counts them
 *   stats    hash: scored (network passes, a photograph scored again after a lost worker counts again), firstScoredAt
 *   rate:<t> counters of photographs finished per RATE_BUCKET_S seconds (expire after RATE_WINDOW_S)
 */
export const BULL_PREFIX = 'fundus';
export const BATCH_PREFIX = 'fundus-batch';
export const DEFAULT_QUEUE = 'fundus';
export const RATE_BUCKET_S = 10;
export const RATE_WINDOW_S = 60;

export function checkQueueName(name: string): string {
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name)) throw new InputError(`--queue must be 1–64 letters, digits, '_', '.' or '-' (got "${name}")`);
  return name;
}

export interface BatchKeys {
  meta: string;
  photos: string;
  order: string;
  results: string;
  failed: string;
  stats: string;
  bytesTotal: string;
  bytes(id: string): string;
  rate(bucket: number): string;
  /** SCAN pattern of every key of the batch (BullMQ's excluded). */
  all: string;
}

export function batchKeys(queue: string): BatchKeys {
  const k = `${BATCH_PREFIX}:${queue}`;
  return {
    meta: `${k}:meta`,
    photos: `${k}:photos`,
    order: `${k}:order`,
    results: `${k}:results`,
    failed: `${k}:failed`,
    stats: `${k}:stats`,
    bytesTotal: `${k}:bytes-total`,
    bytes: (id) => `${k}:bytes:${id}`,
    rate: (bucket) => `${k}:rate:${bucket}`,
    all: `${k}:*`,
  };
}

/** The model a batch is scored with, as recorded by the first `submit`: what `results` writes in its header. */
export interface BatchMeta {
  model: ModelIdentity;
  classes: string[];
  thresholds: number[];
  /** Photographs go through the gradability gate first, as in `fundus predict` (false: --no-gradability-check). */
  gradability: boolean;
  /** The heatmap overlays made of its photographs (`submit --heatmaps`), once a submit asked for them. */
  heatmaps?: HeatmapRequest;
  createdAt: string;
}

/**
 * Heatmaps a batch makes: `fundus predict --heatmaps`'s choice of method and classes, and the folder (an absolute
 * path on shared storage, as every worker sees it) the overlays go into, each photograph's under
 * `<stem>.<content hash, 8 hex>.<class>.<method>.png` (queueHeatmapStem).
 */
export interface HeatmapRequest extends HeatmapChoice {
  dir: string;
}

/** The submit options that ask for `r`, as a person would type them. */
export function heatmapFlags(r: HeatmapRequest): string {
  return `--heatmaps ${r.dir} --heatmap-method ${r.method} --heatmap-classes ${Array.isArray(r.classes) ? r.classes.join(',') : r.classes}`;
}

/** A photograph in the batch: its content hash (its identity) and where workers read it. */
export interface PhotoRef {
  id: string;
  /** Absolute path, as the submitting machine saw it (shared storage is mounted at the same path everywhere). */
  file: string;
}

export interface PhotoEntry {
  file: string;
  /** Its bytes are in Redis (bytes:<id>), not read from `file`. */
  bytes?: boolean;
  /** The job (chunk) that scores it; absent while a submit is between registering and enqueueing it. */
  job?: string;
  /** That job makes its heatmaps too. */
  heatmaps?: boolean;
}

/** What a job carries: a chunk of photographs, and the model they must be scored with. */
export interface ChunkData {
  /** sha256 of the model's fundus.json: a worker with another model hands the job back. */
  model: string;
  photos: PhotoRef[];
  /** Read the bytes from Redis instead of the paths. */
  bytes: boolean;
  /** Check each photograph with the gradability gate first, as `fundus predict` does (absent: true). */
  gradability?: boolean;
  /** Also write each gradable photograph's heatmap overlays (absent: none). */
  heatmaps?: HeatmapRequest;
}

/** Why a photograph has no result, after its job's last attempt. */
export interface PhotoFailure {
  file: string;
  reason: string;
  attempts: number;
}

/**
 * One photograph's fate in a worker. `scored`: a prediction record; `ungradable`: the gradability gate refused it
 * (its record says why, as in `fundus predict`'s output: a result, not a failure); `failed`: it could not be read.
 */
export type PhotoOutcome = { kind: 'scored'; record: PredictionRecord } | { kind: 'ungradable'; record: UngradableRecord } | { kind: 'failed'; reason: string };

export async function readMeta(redis: Redis, keys: BatchKeys): Promise<BatchMeta | undefined> {
  const m = await redis.hgetall(keys.meta);
  if (!m.model) return undefined;
  return {
    model: { dir: m.modelDir, fundusJsonSha256: m.model },
    classes: JSON.parse(m.classes) as string[],
    thresholds: JSON.parse(m.thresholds) as number[],
    gradability: m.gradability !== 'false',
    ...(m.heatmaps ? { heatmaps: JSON.parse(m.heatmaps) as HeatmapRequest } : {}),
    createdAt: m.createdAt,
  };
}

function short(sha: string): string {
  return `${sha.slice(0, 12)}…`;
}

export function describeModel(m: ModelIdentity): string {
  return `${m.dir} (fundus.json sha256 ${short(m.fundusJsonSha256)})`;
}

/**
 * Binds the batch to `meta.model` (and its gradability policy) unless it is bound already; refuses a batch bound to
 * another model or policy (one results file, one model: the predictions header names it).
 */
export async function bindModel(redis: Redis, keys: BatchKeys, queue: string, meta: BatchMeta): Promise<void> {
  const sha = meta.model.fundusJsonSha256;
  const claimed = await redis.hsetnx(keys.meta, 'model', sha);
  if (!claimed) {
    const bound = await readMeta(redis, keys);
    if (bound && bound.model.fundusJsonSha256 !== sha) {
      throw new InputError(
        `queue "${queue}" holds a batch for another model, ${describeModel(bound.model)}, not ${describeModel(meta.model)}: ` +
          `collect its results and empty it with 'fundus queue drain', or use another --queue`,
      );
    }
    if (bound && bound.gradability !== meta.gradability) {
      throw new InputError(
        `queue "${queue}" holds a batch ${bound.gradability ? 'with' : 'without'} the gradability check; submit ${bound.gradability ? 'without' : 'with'} --no-gradability-check, ` +
          `or empty it with 'fundus queue drain' first, or use another --queue`,
      );
    }
    if (bound) return bindHeatmaps(redis, keys, queue, bound.heatmaps, meta.heatmaps);
  }
  await redis.hset(keys.meta, {
    modelDir: meta.model.dir,
    classes: JSON.stringify(meta.classes),
    thresholds: JSON.stringify(meta.thresholds),
    gradability: String(meta.gradability),
    ...(meta.heatmaps ? { heatmaps: JSON.stringify(meta.heatmaps) } : {}),
    createdAt: meta.createdAt,
  });
}

/**
 * A batch makes one kind of heatmaps into one folder, the same for every photograph: a batch that scored without
 * heatmaps takes them on when a submit first asks for them (that submit's photographs, scored before or not, get
 * them); from then on a submit asking for other heatmaps, or for none, is refused.
 */
async function bindHeatmaps(redis: Redis, keys: BatchKeys, queue: string, bound: HeatmapRequest | undefined, wanted: HeatmapRequest | undefined): Promise<void> {
  if (!bound && wanted) {
    if (await redis.hsetnx(keys.meta, 'heatmaps', JSON.stringify(wanted))) return;
    bound = (await readMeta(redis, keys))?.heatmaps; // another submit bound them meanwhile
  }
  if (!bound || (wanted && JSON.stringify(bound) === JSON.stringify(wanted))) return;
  throw new InputError(
    `queue "${queue}" holds a batch that makes heatmaps (${heatmapFlags(bound)}); submit with these same options, ` +
      `or empty it with 'fundus queue drain' first, or use another --queue`,
  );
}

/**
 * Lua: drops the bytes keys KEYS[first..] whose photograph's entry (in the photos hash) names the job, and takes them
 * off bytes-total. Lua expressions for the job's id and the two keys. (An entry is JSON written by fundus: `"job":"…"`
 * cannot occur inside one of its strings, where quotes are escaped.)
 */
const dropOwnBytes = (o: { first: number; job: string; total: string; photos: string }) => `
local mine = '"job":"' .. ${o.job} .. '"'
for i = ${o.first}, #KEYS do
  local entry = redis.call('HGET', ${o.photos}, string.match(KEYS[i], ':bytes:([^:]+)$'))
  local len = redis.call('STRLEN', KEYS[i])
  if len > 0 and entry and string.find(entry, mine, 1, true) then
    redis.call('DECRBY', ${o.total}, len)
    redis.call('DEL', KEYS[i])
  end
end
`;

/**
 * Records outcomes for a batch atomically, and only while the batch is still bound to the model that computed them
 * (a batch drained, or re-bound to another model, mid-chunk gets nothing written into it). Scored photographs drop
 * their bytes (bytes-in-Redis mode) when their entry names the job that scored them (a photograph enqueued again
 * meanwhile, for its heatmaps, keeps them for that job); failed ones keep them for `retry-failed`.
 * KEYS: meta, target hash, stats, rate bucket, bytes-total, photos, bytes keys to drop...; ARGV: model sha, now (ms),
 * 'scored'|'failed', rate ttl, how many of the records are ungradable, the job's id, then id/value pairs. Returns the
 * number recorded, or -1 when the batch is gone. (`scored` counts network passes: a record written again after a
 * lost reply counts again.)
 */
const RECORD_SCRIPT = `
if redis.call('HGET', KEYS[1], 'model') ~= ARGV[1] then return -1 end
local n = 0
for i = 7, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  n = n + 1
end
if ARGV[3] == 'scored' then
  redis.call('HINCRBY', KEYS[3], 'scored', n)
  redis.call('HINCRBY', KEYS[3], 'ungradable', ARGV[5])
  redis.call('HSETNX', KEYS[3], 'firstScoredAt', ARGV[2])
end
redis.call('INCRBY', KEYS[4], n)
redis.call('EXPIRE', KEYS[4], ARGV[4])
${dropOwnBytes({ first: 7, job: 'ARGV[6]', total: 'KEYS[5]', photos: 'KEYS[6]' })}
return n
`;

/** KEYS: bytes-total, photos, bytes keys...; ARGV: the job's id. */
const DROP_SCRIPT = dropOwnBytes({ first: 3, job: 'ARGV[1]', total: 'KEYS[1]', photos: 'KEYS[2]' });

export function rateBucket(nowMs: number): number {
  return Math.floor(nowMs / 1000 / RATE_BUCKET_S);
}

/**
 * Writes records (scored or ungradable, `ungradable` of them the latter) or failures (id → JSON); false when the
 * batch is gone or bound to another model. `drop`: the photographs whose bytes job `job` may drop now.
 */
export async function recordOutcomes(
  redis: Redis,
  keys: BatchKeys,
  model: string,
  kind: 'scored' | 'failed',
  entries: [string, string][],
  drop: { job: string; ids: string[] } = { job: '', ids: [] },
  ungradable = 0,
): Promise<boolean> {
  if (entries.length === 0) return true;
  const now = Date.now();
  const target = kind === 'scored' ? keys.results : keys.failed;
  const keyList = [keys.meta, target, keys.stats, keys.rate(rateBucket(now)), keys.bytesTotal, keys.photos, ...drop.ids.map((id) => keys.bytes(id))];
  const args = [model, String(now), kind, String(RATE_WINDOW_S + RATE_BUCKET_S), String(ungradable), drop.job, ...entries.flat()];
  const n = (await redis.eval(RECORD_SCRIPT, keyList.length, ...keyList, ...args)) as number;
  return n >= 0;
}

/**
 * Drops the bytes of photographs a job found done already (scored by a job that left their bytes to this one: see
 * recordOutcomes).
 */
export async function dropBytes(redis: Redis, keys: BatchKeys, job: string, ids: string[]): Promise<void> {
  if (ids.length === 0) return;
  const keyList = [keys.bytesTotal, keys.photos, ...ids.map((id) => keys.bytes(id))];
  await redis.eval(DROP_SCRIPT, keyList.length, ...keyList, job);
}

/** Deletes every key of the batch (not BullMQ's); returns how many. */
export async function deleteBatchKeys(redis: Redis, keys: BatchKeys): Promise<number> {
  let removed = 0;
  let cursor = '0';
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', keys.all, 'COUNT', 1000);
    cursor = next;
    if (found.length > 0) removed += await redis.unlink(...found);
  } while (cursor !== '0');
  return removed;
}
