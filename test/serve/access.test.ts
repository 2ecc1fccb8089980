// Who may talk to the server: the Host-header check without a token (DNS rebinding), the token from a file, and a
// second server on a port in use.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmod, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { readTokenFile, hostAllowed } from '../../src/serve/auth.js';
import { startServer } from '../../src/serve/start.js';
import { InputError } from '../../src/util/errors.js';
import { PROJECT_ROOT, tempDir } from '../helpers.js';
import { buildFixtureModel } from './fixture.js';

let modelDir: string;
let app: FastifyInstance;
let port: number;

before(async () => {
  modelDir = await buildFixtureModel();
  const started = await startServer({ modelDir, host: '127.0.0.1', port: 0, interactive: false, allowedHosts: ['fundus.lab.example'] });
  app = started.app;
  port = Number(new URL(started.url).port);
});
after(async () => {
  await app?.close();
});

/** GET with a chosen Host header (fetch does not let one set it). */
function get(path: string, host: string | undefined, headers: Record<string, string> = {}, to = port): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: to, path, headers: { ...(host === undefined ? {} : { host }), ...headers }, setHost: host !== undefined }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('without a token, a Host header naming another site is refused (421): DNS rebinding', async () => {
  for (const host of ['127.0.0.1', `127.0.0.1:${port}`, `localhost:${port}`, 'app.localhost', `[::1]:${port}`, '10.0.0.5:8080', 'fundus.lab.example', 'FUNDUS.lab.example.:80']) {
    assert.equal((await get('/v1/model', host)).status, 200, String(host));
  }
  for (const host of ['evil.example', `evil.example:${port}`, 'localhost.evil.example', '127.0.0.1.nip.io', 'fundus.lab.example.evil.example']) {
    for (const path of ['/v1/model', '/', '/healthz']) {
      const r = await get(path, host);
      assert.equal(r.status, 421, `${host} ${path}`);
      assert.match(JSON.parse(r.body).message, /does not answer to the host name .*DNS rebinding.*--allowed-host/);
    }
  }
  assert.equal(hostAllowed('evil.example', new Set(['evil.example'])), true);
});

test('with a token the Host header is not checked (the page cannot know the token)', async () => {
  const secure = await startServer({ modelDir, host: '127.0.0.1', port: 0, interactive: false, token: 's3cret' });
  try {
    const p = Number(new URL(secure.url).port);
    assert.equal((await get('/v1/model', 'evil.example', { authorization: 'Bearer s3cret' }, p)).status, 200);
    assert.equal((await get('/v1/model', 'evil.example', {}, p)).status, 401);
  } finally {
    await secure.app.close();
  }
});

test('the token from a file: its first line; refused when others may read it or it is empty', async () => {
  const dir = await tempDir();
  const file = join(dir, 'token');
  await writeFile(file, '  s3cret-token \nsecond line\n');
  await chmod(file, 0o600);
  assert.equal(await readTokenFile(file), 's3cret-token');
  await chmod(file, 0o644);
  await assert.rejects(readTokenFile(file), (e: unknown) => e instanceof InputError && /can be read by other users \(mode 644\); make it private with chmod 600/.test(e.message));
  const empty = join(dir, 'empty');
  await writeFile(empty, '\n', { mode: 0o600 });
  await assert.rejects(readTokenFile(empty), /the token file is empty/);
  await assert.rejects(readTokenFile(join(dir, 'missing')), /missing: no such file/);
  // the CLI: a clear error, exit 2, before loading anything
  await chmod(file, 0o640);
  const r = spawnSync(process.execPath, [join(PROJECT_ROOT, 'bin', 'fundus.js'), 'serve', modelDir, '--port', '0', '--token-file', file], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /token: the token file can be read by other users/);
});

test('a second fundus serve on a port in use: one clear line, exit 2, no stack trace', async () => {
  const r = spawnSync(process.execPath, [join(PROJECT_ROOT, 'bin', 'fundus.js'), 'serve', modelDir, '--port', String(port)], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, new RegExp(`^fundus: cannot listen on 127\\.0\\.0\\.1:${port}: the port is already in use .*--port 0 for a free one\\n$`, 'm'));
  assert.doesNotMatch(r.stderr, /EADDRINUSE|\n\s+at /);
});
