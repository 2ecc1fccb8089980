import { timingSafeEqual, createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
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

/** The host name of a Host header, without its port and brackets, lower-cased; undefined when it has none. */
export function hostHeaderName(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const h = header.trim().toLowerCase();
  if (h.startsWith('[')) return h.slice(1, h.indexOf(']') > 0 ? h.indexOf(']') : undefined);
  return h.replace(/:\d*$/, '').replace(/\.$/, '');
}

/**
 * Whether a request's Host header may reach a server without a token. DNS rebinding makes a browser send a page's
 * requests, under the attacker's own host name, to a server on this machine; the Host header then names the
 * attacker's site. Accepted: no Host (not a browser), an IP address (a page served from that address is the server
 * itself), `localhost` and its subdomains, the address the server was bound to, and the names given with
 * `--allowed-host`.
 */
export function hostAllowed(header: string | undefined, allowed: ReadonlySet<string>): boolean {
  const name = hostHeaderName(header);
  if (name === undefined) return true;
  if (isIP(name) !== 0 || name === 'localhost' || name.endsWith('.localhost')) return true;
  return allowed.has(name);
}

/**
 * Reads the API token from a file (`--token-file`): its first line, surrounding blanks removed. A file that other
 * users may read is refused, since the token is then theirs too; so is an empty one.
 */
export async function readTokenFile(path: string): Promise<string> {
  const st = await stat(path).catch((e: NodeJS.ErrnoException) => {
    throw new InputError(e.code === 'ENOENT' ? 'no such file' : `cannot read the token file (${e.code ?? e.message})`, { file: path });
  });
  if (!st.isFile()) throw new InputError('the token file is not a regular file', { file: path });
  if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
    throw new InputError(`the token file can be read by other users (mode ${(st.mode & 0o777).toString(8)}); make it private with chmod 600`, { file: path });
  }
  const token = (await readFile(path, 'utf8')).split(/\r?\n/)[0].trim();
  if (!token) throw new InputError('the token file is empty', { file: path });
  return token;
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
