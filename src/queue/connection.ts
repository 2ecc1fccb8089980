import { readFile } from 'node:fs/promises';
import { Redis, type RedisOptions } from 'ioredis';
import { InputError } from '../util/errors.js';

/** Where the queue lives when neither --redis nor $FUNDUS_REDIS_URL names it. */
export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';
/** The environment variable that names the Redis URL: keeps a password out of the process list (argv is public). */
export const REDIS_URL_ENV = 'FUNDUS_REDIS_URL';

/** How to reach Redis: the URL (which may carry a password) and, for `rediss://`, the CA that signed its certificate. */
export interface RedisTarget {
  url: string;
  /** PEM file of the certificate authority that signed the server's certificate (default: the system's CAs). */
  caFile?: string;
}

/**
 * The URL as it may be shown: a password (and a username's secret part, if any) replaced by `***`. Logs, `status`
 * and error messages print only this.
 */
export function redactUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return '<unparsable Redis URL>';
  }
  if (u.password) u.password = '***';
  return u.toString();
}

/** The URL to use: `--redis`, else $FUNDUS_REDIS_URL, else the local default. Checked: redis:// or rediss://. */
export function redisTarget(flag: string | undefined, caFile?: string): RedisTarget {
  const url = flag ?? (process.env[REDIS_URL_ENV] || DEFAULT_REDIS_URL);
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    // Not echoed: a mistyped URL may still hold a password.
    throw new InputError(`--redis (or $${REDIS_URL_ENV}) is not a URL; expected redis://[:password@]host[:port][/db] or rediss://... for TLS`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') {
    throw new InputError(`--redis must be a redis:// or rediss:// (TLS) URL, not ${u.protocol}//... (${redactUrl(url)})`);
  }
  if (u.pathname.length > 1 && !/^\/\d+$/.test(u.pathname)) throw new InputError(`the path of a Redis URL is a database number (${redactUrl(url)})`);
  if (caFile && u.protocol !== 'rediss:') throw new InputError(`--redis-ca is for TLS connections (rediss://); ${redactUrl(url)} is not one`);
  return { url, caFile };
}

/** ioredis options that BullMQ's connection type accepts too (its retryStrategy may not be null). */
export type RedisSettings = Omit<RedisOptions, 'retryStrategy'> & { retryStrategy?: (times: number) => number | null };

/**
 * ioredis options for the target. `maxRetriesPerRequest: null` makes commands wait out a Redis restart instead of
 * failing after a few tries, so that a worker mid-chunk, `status --watch` and `results --wait` carry on once Redis is
 * back (BullMQ requires it for workers).
 */
export async function redisOptions(target: RedisTarget): Promise<RedisSettings> {
  const options: RedisSettings = { maxRetriesPerRequest: null };
  if (target.caFile) {
    let ca: Buffer;
    try {
      ca = await readFile(target.caFile);
    } catch (err) {
      throw new InputError(`cannot read the CA certificate (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { file: target.caFile });
    }
    options.tls = { ca };
  }
  return options;
}

/** How long a command waits for Redis to answer at all before it says it cannot reach it. */
const FIRST_CONNECT_MS = 5000;

/**
 * A client for fundus's own keys (BullMQ makes its own connections from the same options). The first connection must
 * succeed (InputError naming the URL without its password and why, on the first failure or after FIRST_CONNECT_MS);
 * after that the client reconnects on its own.
 */
export async function connectRedis(target: RedisTarget): Promise<Redis> {
  const client = new Redis(target.url, await redisOptions(target));
  let timer: NodeJS.Timeout | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      client.once('ready', resolve);
      // Without a listener, ioredis prints every reconnection error with a stack; the callers report what matters.
      client.once('error', reject);
      timer = setTimeout(() => reject(new Error(`no answer in ${FIRST_CONNECT_MS / 1000} s`)), FIRST_CONNECT_MS);
    });
  } catch (err) {
    client.disconnect();
    throw new InputError(`cannot reach Redis at ${redactUrl(target.url)}: ${describeRedisError(err)}`);
  } finally {
    clearTimeout(timer);
  }
  client.on('error', () => {});
  return client;
}

/** A Redis error's message without anything that could be a secret (ioredis never puts the URL in them; be sure). */
export function describeRedisError(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.replace(/rediss?:\/\/[^\s]*/g, (u) => redactUrl(u));
}
