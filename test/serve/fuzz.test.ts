import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
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
