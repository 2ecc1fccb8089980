import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import sharp from 'sharp';
import type { FastifyInstance } from 'fastify';
import { startServer } from '../../src/serve/start.js';
import type { ExplainResponse, ModelCard, GradedResponse, PredictResponse } from '../../src/serve/api-types.js';
import { CLASSES } from '../../src/data/labels.js';
import { buildFixtureModel, realImages, FIXTURE_SIZE } from './fixture.js';

let modelDir: string;
let app: FastifyInstance;
let url: string;
let photo: Buffer;

before(async () => {
  modelDir = await buildFixtureModel();
  ({ app, url } = await startServer({ modelDir, host: '127.0.0.1', port: 0, interactive: false, bodyLimit: 2 * 1024 * 1024 }));
  photo = await readFile(realImages(1)[0]);
});
after(async () => {
  await app?.close();
});

/** Node's Buffer is not a BodyInit for TypeScript; a plain Uint8Array copy is. */
const bytes = (b: Buffer): Uint8Array<ArrayBuffer> => new Uint8Array(b);

const post = (path: string, body: Buffer | string, type: string, headers: Record<string, string> = {}) =>
  fetch(url + path, { method: 'POST', body: typeof body === 'string' ? body : bytes(body), headers: { 'content-type': type, ...headers } });

test('GET /healthz, /v1/model and /openapi.json describe the running model', async () => {
  const h = await fetch(url + 'healthz');
  assert.equal(h.status, 200);
  const health = (await h.json()) as { status: string; model: string };
  assert.equal(health.status, 'ok');
  assert.match(health.model, /^[0-9a-f]{12}$/);
  const card = (await (await fetch(url + 'v1/model')).json()) as ModelCard;
  assert.deepEqual(card.classes, [...CLASSES]);
  assert.equal(card.version, health.model);
  assert.equal(card.architecture, 'resnet18-w8');
  assert.deepEqual(card.inputShape, [FIXTURE_SIZE, FIXTURE_SIZE, 3]);
  assert.ok(card.explainMethods.includes('gradcam'));
  assert.equal(card.defaultExplainMethod, 'layercam');
  const doc = (await (await fetch(url + 'openapi.json')).json()) as { openapi: string; paths: Record<string, unknown> };
  assert.equal(doc.openapi, '3.1.0');
  assert.deepEqual(Object.keys(doc.paths).sort(), ['/healthz', '/readyz', '/v1/explain', '/v1/model', '/v1/photo', '/v1/predict']);
  const readyz = doc.paths['/readyz'] as { get: { responses: Record<string, unknown> } };
  assert.ok(readyz.get.responses['200'] && readyz.get.responses['503'], 'readiness documents 200 and 503');
  const ready = await fetch(url + 'readyz');
  assert.equal(ready.status, 200);
  assert.deepEqual(((await ready.json()) as { slots: unknown }).slots, { max: 32, inUse: 0, free: 32 });
});

test('POST /v1/predict with a raw JPEG and with multipart gives the same probabilities and decisions', async () => {
  const r = await post('v1/predict?filename=eye.jpg', photo, 'image/jpeg');
  assert.equal(r.status, 200);
  const a = (await r.json()) as GradedResponse;
  assert.equal(a.gradable, true);
  assert.equal(a.file, 'eye.jpg');
  assert.deepEqual(Object.keys(a.probabilities), [...CLASSES]);
  for (const [i, c] of a.classes.entries()) {
    const p = a.probabilities[c];
    assert.ok(p >= 0 && p <= 1, `${c}: ${p}`);
    assert.equal(a.decisions[c], p >= a.thresholds[i]);
  }
  assert.deepEqual(a.positive, a.classes.filter((c) => a.decisions[c]));
  assert.equal(a.image.width, 512);
  assert.equal(a.image.format, 'jpeg');
  assert.match(a.model.version, /^[0-9a-f]{12}$/);

  const form = new FormData();
  form.append('image', new Blob([bytes(photo)], { type: 'image/jpeg' }), 'upload.jpg');
  const m = await fetch(url + 'v1/predict', { method: 'POST', body: form });
  assert.equal(m.status, 200);
  const b = (await m.json()) as GradedResponse;
  assert.equal(b.file, 'upload.jpg');
  assert.deepEqual(b.probabilities, a.probabilities);

  // The same photograph as PNG predicts (nearly) the same: decoding is format-independent.
  const png = await sharp(photo).png().toBuffer();
  const c = (await (await post('v1/predict', png, 'image/png')).json()) as GradedResponse;
  for (const k of CLASSES) assert.ok(Math.abs(c.probabilities[k] - a.probabilities[k]) < 0.02, k);
});

test('a black frame is answered ungradable with the reasons and no probabilities; explain refuses it', async () => {
  const black = await sharp({ create: { width: 512, height: 512, channels: 3, background: '#000' } }).png().toBuffer();
  const r = await post('v1/predict?filename=black.png', black, 'image/png');
  assert.equal(r.status, 200);
  const body = (await r.json()) as PredictResponse;
  assert.equal(body.gradable, false);
  if (body.gradable !== false) return;
  assert.ok(body.ungradable.reasons.includes('too-dark'), body.ungradable.reasons.join(', '));
  assert.match(body.ungradable.message, /too dark/);
  assert.equal((body as unknown as { probabilities?: unknown }).probabilities, undefined);
  assert.deepEqual(body.classes, [...CLASSES]);
  const e = await post('v1/explain?class=glaucoma&format=json', black, 'image/png');
  assert.equal(e.status, 422);
  assert.match(((await e.json()) as { message: string }).message, /ungradable: too dark/);
});

test('concurrent predictions are batched and each gets its own answer', async () => {
  const small = await sharp(photo).resize(256).jpeg().toBuffer();
  const inputs = [photo, small, photo, small, photo, small];
  const results = await Promise.all(inputs.map((b) => post('v1/predict', b, 'image/jpeg').then((r) => r.json() as Promise<GradedResponse>)));
  for (let i = 2; i < inputs.length; i++) assert.deepEqual(results[i].probabilities, results[i % 2].probabilities);
  assert.equal(results[1].image.width, 256);
});

test('POST /v1/explain returns an overlay PNG of the photo, or the heatmap as JSON', async () => {
  const r = await post('v1/explain?class=glaucoma&method=gradcam', photo, 'image/jpeg');
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('content-type'), 'image/png');
  const meta = await sharp(Buffer.from(await r.arrayBuffer())).metadata();
  assert.equal(meta.format, 'png');
  assert.equal(meta.width, 512);

  const j = await post('v1/explain?class=glaucoma&method=gradcam%2B%2B', photo, 'image/jpeg', { accept: 'application/json' });
  assert.equal(j.status, 200);
  const e = (await j.json()) as ExplainResponse;
  assert.equal(e.class, 'glaucoma');
  assert.equal(e.method, 'gradcam++');
  // The layer that made the map: the fixture ResNet's last block at stride 8 (12×12 of 96 px).
  assert.equal(e.layer, 's2b2_out');
  assert.deepEqual([e.heatmap.width, e.heatmap.height], [12, 12]);
  assert.equal(e.heatmap.data.length, e.heatmap.width * e.heatmap.height);
  assert.ok(e.heatmap.data.every((v) => v >= 0 && v <= 1));
  assert.equal(e.crop.width, 512);
  assert.ok(e.crop.side > 100, 'the crop covers the fundus disc');
  const byIndex = (await (await post('v1/explain?class=2&format=json', photo, 'image/jpeg')).json()) as ExplainResponse;
  assert.equal(byIndex.class, 'glaucoma');
  assert.equal(byIndex.method, 'layercam', 'the default method');
});

test('bad requests get clear 4xx errors', async () => {
  const cases: [Promise<Response>, number, RegExp][] = [
    [post('v1/explain?class=cataract', photo, 'image/jpeg'), 400, /unknown class "cataract"/],
    [post('v1/explain?class=glaucoma&method=magic', photo, 'image/jpeg'), 400, /method/],
    [post('v1/explain?method=gradcam', photo, 'image/jpeg'), 400, /class/],
    [post('v1/predict', '{"image": "x"}', 'application/json'), 415, /expected an image body/],
    [fetch(url + 'v1/predict', { method: 'POST' }), 400, /no body/],
    [post('v1/predict', Buffer.from('definitely not an image'), 'image/jpeg'), 422, /not a readable image/],
    [post('v1/predict', Buffer.alloc(3 * 1024 * 1024), 'image/jpeg'), 413, /larger than the limit/],
    [fetch(url + 'v1/nothing'), 404, /no route/],
    [fetch(url + 'v1/predict'), 404, /no route GET/],
  ];
  for (const [p, status, message] of cases) {
    const r = await p;
    const body = (await r.json()) as { statusCode: number; message: string };
    assert.equal(r.status, status, body.message);
    assert.equal(body.statusCode, status);
    assert.match(body.message, message);
  }
  const gif = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#800' } }).gif().toBuffer();
  const g = await post('v1/predict', gif, 'application/octet-stream');
  assert.equal(g.status, 422);
  assert.match(((await g.json()) as { message: string }).message, /unsupported image format "gif"/);
});

test('a saturated server answers 503 with Retry-After instead of queueing without bound', async () => {
  const busy = await startServer({ modelDir, host: '127.0.0.1', port: 0, interactive: false, maxInFlight: 1 });
  try {
    const results = await Promise.all(
      Array.from({ length: 8 }, () => fetch(busy.url + 'v1/predict', { method: 'POST', body: bytes(photo), headers: { 'content-type': 'image/jpeg' } })),
    );
    const statuses = results.map((r) => r.status);
    assert.ok(statuses.every((s) => s === 200 || s === 503), statuses.join(','));
    assert.ok(statuses.includes(200), statuses.join(','));
    assert.ok(statuses.includes(503), statuses.join(','));
    const rejected = results[statuses.indexOf(503)];
    assert.equal(rejected.headers.get('retry-after'), '1');
    assert.match(((await rejected.json()) as { message: string }).message, /busy/);
    // Once the burst is over the server serves again.
    assert.equal((await fetch(busy.url + 'v1/predict', { method: 'POST', body: bytes(photo), headers: { 'content-type': 'image/jpeg' } })).status, 200);
  } finally {
    await busy.app.close();
  }
});

test('with a token every route needs it; the viewer gets it once through ?token= and a cookie', async () => {
  const secure = await startServer({ modelDir, host: '127.0.0.1', port: 0, interactive: false, token: 's3cret' });
  try {
    for (const path of ['healthz', 'v1/model', 'openapi.json', '', 'assets/app.js']) {
      const r = await fetch(secure.url + path);
      assert.equal(r.status, 401, path);
      assert.match(r.headers.get('www-authenticate') ?? '', /Bearer/);
    }
    assert.equal((await fetch(secure.url + 'v1/predict', { method: 'POST', body: bytes(photo), headers: { 'content-type': 'image/jpeg' } })).status, 401);
    assert.equal((await fetch(secure.url + 'v1/model', { headers: { authorization: 'Bearer wrong' } })).status, 401);
    assert.equal((await fetch(secure.url + 'v1/model', { headers: { authorization: 'Bearer s3cret' } })).status, 200);
    assert.equal((await fetch(secure.url + 'v1/model', { headers: { 'x-api-key': 's3cret' } })).status, 200);
    const page = await fetch(secure.url + '?token=s3cret');
    assert.equal(page.status, 200);
    const cookie = (page.headers.get('set-cookie') ?? '').split(';')[0];
    assert.match(cookie, /^fundus_token=/);
    assert.equal((await fetch(secure.url + 'assets/app.js', { headers: { cookie } })).status, 200);
  } finally {
    await secure.app.close();
  }
});

test('the viewer is served at / with a strict content security policy and no external references', async () => {
  const r = await fetch(url);
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type') ?? '', /text\/html/);
  assert.match(r.headers.get('content-security-policy') ?? '', /default-src 'self'/);
  const html = await r.text();
  assert.match(html, /assets\/app\.js/);
  const js = await (await fetch(url + 'assets/app.js')).text();
  for (const text of [html, js]) assert.doesNotMatch(text, /https?:\/\/(?!www\.w3\.org)/);
});
