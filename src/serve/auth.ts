import { timingSafeEqual, createHash } from 'node:crypto';
import { isIP } from 'node:net';
import { InputError } from '../util/errors.js';

/** True for addresses only this machine can reach. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (h.startsWith('::ffff:')) return h.slice(7).startsWith('127.');
  return false;
}

/** Refuses to expose patient images to the network by accident: a non-loopback address needs `--allow-remote`. */
export function checkBindAddress(host: string, allowRemote: boolean): void {
  if (!isLoopbackHost(host) && !allowRemote) {
    throw new InputError(
      `refusing to listen on ${host}: it is reachable from other machines. Pass --allow-remote to do so on purpose ` +
        '(and set --token or FUNDUS_TOKEN so that only your users can call the API)',
    );
  }
}

/** Constant-time comparison through digests, so that neither the content nor the length of the token leaks. */
export function tokenMatches(given: string | undefined, expected: string): boolean {
  if (given === undefined) return false;
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

export const TOKEN_COOKIE = 'fundus_token';

/** The token a request carries: `Authorization: Bearer …`, `X-API-Key`, the viewer's cookie, or `?token=`. */
export function requestToken(headers: Record<string, string | string[] | undefined>, query: unknown): string | undefined {
  const auth = headers['authorization'];
  if (typeof auth === 'string' && /^bearer\s+/i.test(auth)) return auth.replace(/^bearer\s+/i, '').trim();
  const key = headers['x-api-key'];
  if (typeof key === 'string') return key;
  const cookie = headers['cookie'];
  if (typeof cookie === 'string') {
    for (const part of cookie.split(';')) {
      const [k, ...v] = part.trim().split('=');
      if (k === TOKEN_COOKIE) return decodeURIComponent(v.join('='));
    }
  }
  if (query && typeof query === 'object' && typeof (query as Record<string, unknown>).token === 'string') {
    return (query as Record<string, string>).token;
  }
  return undefined;
}
