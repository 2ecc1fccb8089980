import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { deflateSync, crc32 } from 'node:zlib';
import type { FastifyInstance } from 'fastify';
import { startServer } from '../../src/serve/start.js';
import { buildFixtureModel, realImages } from './fixture.js';
import { seededRandom } from '../../src/data/random.js';

let app: FastifyInstance;
let url: string;
let photo: Buffer;
const unhandled: unknown[] = [];
const onUnhandled = (e: unknown) => unhandled.push(e);

before(async () => {
  process.on('unhandledRejection', onUnhandled);
  const modelDir = await buildFixtureModel();
  ({ app, url } = await startServer({ modelDir, host: '127.0.0.1', port: 0, interactive: false, bodyLimit: 1024 * 1024 }));
  photo = await readFile(realImages(1)[0]);
});
after(async () => {
  process.off('unhandledRejection', onUnhandled);
  await app?.close();
});


function pngChunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}

/** A valid, tiny PNG that declares `width`×`height` pixels: a decompression bomb if decoded blindly. */
function hugePng(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', deflateSync(Buffer.alloc(1024))),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

/** The real JPEG with its frame header (SOF0/SOF2) rewritten to claim `width`×`height`. */
function hugeJpeg(width: number, height: number): Buffer {
  const b = Buffer.from(photo);
  for (let i = 2; i < b.length - 9; i++) {
    if (b[i] === 0xff && (b[i + 1] === 0xc0 || b[i + 1] === 0xc2)) {
      b.writeUInt16BE(height, i + 5);
      b.writeUInt16BE(width, i + 7);
      return b;
    }
  }
  throw new Error('no SOF marker in the test photo');
}

interface Case {
  name: string;
  path: string;
  body?: Uint8Array<ArrayBuffer> | string;
  type?: string;
}

function cases(next: () => number): Case[] {
  const int = (n: number) => Math.floor(next() * n);
  const bytes = (n: number) => new Uint8Array(Array.from({ length: n }, () => int(256)));
  const u8 = (b: Buffer) => new Uint8Array(b);
  const paths = ['v1/predict', 'v1/explain?class=glaucoma', 'v1/explain?class=0&method=gradcam%2B%2B&format=json'];
  const types = ['image/jpeg', 'image/png', 'application/octet-stream', 'text/plain', 'application/json', 'multipart/form-data',
    'multipart/form-data; boundary=xyz', 'application/x-www-form-urlencoded', 'image/gif', ''];
  const out: Case[] = [];
  for (let i = 0; i < 30; i++) out.push({ name: `random bytes #${i}`, path: paths[i % 3], body: bytes(int(4000)), type: types[int(types.length)] });
  for (let i = 0; i < 20; i++) {
    const cut = 2 + int(photo.length - 2);
    out.push({ name: `JPEG truncated at ${cut}`, path: paths[i % 3], body: u8(photo.subarray(0, cut)), type: 'image/jpeg' });
  }
  for (let i = 0; i < 15; i++) {
    const b = Buffer.from(photo);
    for (let k = 0; k < 1 + int(20); k++) b[int(b.length)] = int(256);
    out.push({ name: `JPEG with flipped bytes #${i}`, path: paths[i % 3], body: u8(b), type: 'image/jpeg' });
  }
  for (const [w, h] of [[100000, 100000], [65535, 65535], [1, 2 ** 31 - 1], [0, 10]] as const) {
    out.push({ name: `PNG declaring ${w}x${h}`, path: 'v1/predict', body: u8(hugePng(w, h)), type: 'image/png' });
  }
  for (const [w, h] of [[65000, 65000], [60000, 2]] as const) {
    out.push({ name: `JPEG declaring ${w}x${h}`, path: 'v1/explain?class=glaucoma', body: u8(hugeJpeg(w, h)), type: 'image/jpeg' });
  }
  for (const t of types) out.push({ name: `real photo as "${t}"`, path: 'v1/predict', body: u8(photo), type: t });
  out.push({ name: 'multipart with broken boundary', path: 'v1/predict', body: '--xyz\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\nnot an image', type: 'multipart/form-data; boundary=xyz' });
  out.push({ name: 'multipart with a text field only', path: 'v1/predict', body: '--xyz\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n--xyz--\r\n', type: 'multipart/form-data; boundary=xyz' });
  out.push({ name: 'empty image body', path: 'v1/predict', body: '', type: 'image/jpeg' });
  out.push({ name: 'body over the limit', path: 'v1/predict', body: new Uint8Array(1024 * 1024 + 10), type: 'image/jpeg' });
  const weird = ['', '%00', '..%2F..%2Fetc%2Fpasswd', 'x'.repeat(300), '-1', '7', '1e9', '%F0%9F%91%81'];
  for (const w of weird) {
    out.push({ name: `class=${w.slice(0, 20)}`, path: `v1/explain?class=${w}`, body: u8(photo), type: 'image/jpeg' });
    out.push({ name: `method=${w.slice(0, 20)}`, path: `v1/explain?class=glaucoma&method=${w}`, body: u8(photo), type: 'image/jpeg' });
    out.push({ name: `opacity=${w.slice(0, 20)}`, path: `v1/explain?class=glaucoma&opacity=${w}`, body: u8(photo), type: 'image/jpeg' });
  }
  return out;
}

test('no input crashes the server or makes it answer 5xx', { timeout: 180_000 }, async () => {
  const all = cases(seededRandom(20260101));
  const t0 = Date.now();
  const statuses = new Map<number, number>();
  for (const c of all) {
    const headers: Record<string, string> = {};
    if (c.type) headers['content-type'] = c.type;
    const t = Date.now();
    let r: Response;
    try {
      r = await fetch(url + c.path, { method: 'POST', body: c.body, headers });
    } catch (err) {
      // An oversized upload may be cut off by the server (413 then close) before the client finishes sending it.
      if (c.name === 'body over the limit') continue;
      throw err;
    }
    const text = await r.text();
    if (process.env.FUNDUS_FUZZ_VERBOSE) console.log(c.name, r.status, Date.now() - t, 'ms', text.slice(0, 100));
    statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
    assert.ok(r.status < 500, `${c.name}: ${r.status} ${text.slice(0, 200)}`);
    if (r.status >= 400) {
      const body = JSON.parse(text) as { statusCode: number; message: string };
      assert.equal(body.statusCode, r.status, c.name);
      assert.ok(body.message.length > 5, `${c.name}: the error says what is wrong`);
    }
    if (Date.now() - t0 > 150_000) break;
  }
  // The decompression bombs were refused by their header, before any decoding.
  const bomb = await fetch(url + 'v1/predict', { method: 'POST', body: new Uint8Array(hugePng(100000, 100000)), headers: { 'content-type': 'image/png' } });
  assert.equal(bomb.status, 422);
  assert.match(((await bomb.json()) as { message: string }).message, /too large/);
  // And the server still works.
  assert.equal((await fetch(url + 'healthz')).status, 200);
  const ok = await fetch(url + 'v1/predict', { method: 'POST', body: new Uint8Array(photo), headers: { 'content-type': 'image/jpeg' } });
  assert.equal(ok.status, 200);
  assert.deepEqual(unhandled, []);
  assert.ok((statuses.get(200) ?? 0) > 0 && (statuses.get(422) ?? 0) > 0, JSON.stringify([...statuses]));
});

type Way = 'whole' | 'reset-after-send' | 'reset-mid-upload' | 'trickle' | 'stall';
const WAYS: Way[] = ['whole', 'reset-after-send', 'reset-mid-upload', 'trickle', 'stall'];

/**
 * One raw request with a fuzz body, ended the way `way` says: sent whole and read; sent whole and reset (SO_LINGER 0)
 * a few milliseconds later; reset half-way through the upload; trickled in pieces with pauses shorter than the idle
 * timeout; or stalled after a few bytes (only the server's upload timeouts end it). Resolves with what the server
 * sent, once the connection is closed; a connection still open after 8 s is reported as such.
 */
function rawRequest(port: number, c: Case, way: Way, next: () => number): Promise<{ way: Way; received: string }> {
  const body = Buffer.from(typeof c.body === 'string' ? c.body : (c.body ?? new Uint8Array()));
  const head = [`POST /${c.path} HTTP/1.1`, `Host: 127.0.0.1:${port}`, `Content-Length: ${body.length}`, 'Connection: close'];
  if (c.type) head.push(`Content-Type: ${c.type}`);
  const start = Buffer.from(head.join('\r\n') + '\r\n\r\n', 'latin1');
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    let received = '';
    const stuck = setTimeout(() => {
      received = `STILL OPEN after 8 s; got: ${received.slice(0, 80)}`;
      s.destroy();
    }, 8000);
    s.on('error', () => {});
    s.on('data', (d) => (received += d.toString('latin1')));
    s.on('close', () => {
      clearTimeout(stuck);
      resolve({ way, received });
    });
    s.on('connect', () => {
      if (way === 'whole') s.write(Buffer.concat([start, body]));
      else if (way === 'reset-after-send') s.write(Buffer.concat([start, body]), () => setTimeout(() => s.resetAndDestroy(), 2 + Math.floor(next() * 40)));
      else if (way === 'reset-mid-upload') s.write(Buffer.concat([start, body.subarray(0, body.length >> 1)]), () => setTimeout(() => s.resetAndDestroy(), 5));
      else if (way === 'stall') s.write(Buffer.concat([start, body.subarray(0, Math.min(2, body.length - 1))]));
      else {
        // four pieces 150 ms apart: slow, but never idle for the server's 500 ms
        const all = Buffer.concat([start, body]);
        const step = Math.ceil(all.length / 4);
        let at = 0;
        const send = () => {
          if (s.destroyed) return;
          s.write(all.subarray(at, at + step));
          at += step;
          if (at < all.length) setTimeout(send, 150);
        };
        send();
      }
    });
  });
}

test('fuzz bodies sent whole, abandoned, trickled and stalled: no 5xx, no connection left open, every slot back, a normal prediction succeeds', { timeout: 30_000 }, async () => {
  const maxInFlight = 8;
  const modelDir = await buildFixtureModel();
  const srv = await startServer({ modelDir, host: '127.0.0.1', port: 0, interactive: false, bodyLimit: 1024 * 1024, maxInFlight, uploadTimeout: 2000, uploadIdleTimeout: 500 });
  try {
    const port = Number(new URL(srv.url).port);
    const next = seededRandom(20260102);
    const all = cases(next).filter((c) => c.name !== 'body over the limit');
    const t0 = Date.now();
    const ended: { way: Way; received: string; name: string }[] = [];
    // waves of 16 concurrent connections, twice the slots: some are refused with 503, which is fine
    for (let i = 0; i < all.length && Date.now() - t0 < 15_000; i += 16) {
      const wave = all.slice(i, i + 16).map((c, j) => {
        const way = WAYS[(i + j) % WAYS.length];
        return rawRequest(port, c, way, next).then((e) => ({ ...e, name: c.name }));
      });
      ended.push(...(await Promise.all(wave)));
    }
    assert.deepEqual(ended.filter((e) => e.received.startsWith('STILL OPEN')).map((e) => `${e.way} ${e.name}`), [], 'connections the server left open');
    for (const e of ended) {
      const status = /^HTTP\/1\.1 (\d{3}) /.exec(e.received)?.[1];
      if (status) assert.ok(Number(status) < 500 || status === '503', `${e.way} ${e.name}: ${e.received.slice(0, 200)}`);
    }
    // a stalled upload that was admitted is cut off with 408; a whole or trickled request gets an answer
    assert.ok(ended.some((e) => e.way === 'stall' && e.received.startsWith('HTTP/1.1 408 ')), 'a stalled upload timed out with 408');
    for (const e of ended.filter((x) => x.way === 'whole' || x.way === 'trickle')) assert.match(e.received, /^HTTP\/1\.1 \d{3} /, `${e.way} ${e.name}: no answer`);
    // every slot comes back
    let ready: { slots?: { inUse: number; free: number } } = {};
    for (const deadline = Date.now() + 5000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 50))) {
      ready = (await (await fetch(srv.url + 'readyz')).json()) as typeof ready;
      if (ready.slots?.inUse === 0) break;
    }
    assert.deepEqual(ready.slots && { inUse: ready.slots.inUse, free: ready.slots.free }, { inUse: 0, free: maxInFlight }, JSON.stringify(ready));
    const ok = await fetch(srv.url + 'v1/predict', { method: 'POST', body: new Uint8Array(photo), headers: { 'content-type': 'image/jpeg' } });
    assert.equal(ok.status, 200, await ok.text());
    assert.deepEqual(unhandled, []);
    assert.ok(Date.now() - t0 < 20_000, `bounded: ${Date.now() - t0} ms`);
  } finally {
    await srv.app.close();
  }
});
