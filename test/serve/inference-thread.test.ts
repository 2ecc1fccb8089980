// Issue 20 §1: decoding, inference and heatmaps run on an inference thread, so that the server's event loop answers
// /healthz and /readyz at once, and enforces its timeouts, however much work is in flight.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile, cp } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { FastifyInstance } from 'fastify';
import { startServer } from '../../src/serve/start.js';
import type { ModelService } from '../../src/serve/model-service.js';
import { Predictor } from '../../src/models/predictor.js';
import { explainerFor } from '../../src/explain/explainer.js';
import type { PreprocessedImage } from '../../src/data/preprocess.js';
import { InputError } from '../../src/util/errors.js';
import { tempDir } from '../helpers.js';
import { buildFixtureModel, realImages } from './fixture.js';

let modelDir: string;
let app: FastifyInstance;
let url: string;
let service: ModelService;
let photos: string[];

before(async () => {
  modelDir = await buildFixtureModel();
  photos = realImages(3);
  ({ app, url, service } = await startServer({ modelDir, host: '127.0.0.1', port: 0, interactive: false }));
});
after(async () => {
  await app?.close();
});

const post = (path: string, body: Buffer, base = url) =>
  fetch(base + path, { method: 'POST', body: new Uint8Array(body), headers: { 'content-type': 'image/jpeg' } }).then(async (r) => ({
    status: r.status,
    retryAfter: r.headers.get('retry-after'),
    body: await r.text(),
  }));

interface Answer {
  probabilities: Record<string, number>;
  decisions: Record<string, boolean>;
  positive: string[];
}
const answerOf = (text: string): Answer => {
  const { probabilities, decisions, positive } = JSON.parse(text) as Answer;
  return { probabilities, decisions, positive };
};

/** What the library computes in this thread for the photographs, to hold the server's answers to. */
async function inProcess(): Promise<Answer[]> {
  const predictor = await Predictor.load(modelDir, { gradability: true });
  try {
    return (await predictor.classify(photos)).map(({ probabilities, decisions, positive }) => ({ probabilities, decisions, positive }));
  } finally {
    await predictor.close();
  }
}

/** Latencies of GET `path`s, one after the other, while `busy()` holds. */
async function probe(paths: string[], busy: () => boolean): Promise<{ path: string; ms: number; status: number }[]> {
  const seen: { path: string; ms: number; status: number }[] = [];
  for (let i = 0; busy(); i++) {
    const path = paths[i % paths.length];
    const t0 = performance.now();
    const r = await fetch(url + path);
    await r.arrayBuffer();
    seen.push({ path, ms: performance.now() - t0, status: r.status });
  }
  return seen;
}

test('/healthz and /readyz answer within 500 ms while Score-CAM explanations and predictions run', { timeout: 120_000 }, async (t) => {
  const photo = await readFile(photos[0]);
  await post('v1/predict', photo); // the first request pays for warming the engine up
  let running = true;
  const t0 = performance.now();
  const work = Promise.all([
    ...Array.from({ length: 6 }, () => post('v1/explain?class=glaucoma&method=scorecam&format=json', photo)),
    ...Array.from({ length: 12 }, () => post('v1/predict', photo)),
  ]).finally(() => (running = false));
  const seen = await probe(['readyz', 'healthz'], () => running);
  const answers = await work;
  const workMs = performance.now() - t0;
  assert.deepEqual(
    answers.map((a) => a.status),
    answers.map(() => 200),
  );
  // Meaningful only when the probes ran during the work: several of them, while requests were in flight.
  assert.ok(seen.length >= 5, `only ${seen.length} probes while the work ran (${workMs.toFixed(0)} ms)`);
  const slow = seen.filter((s) => s.ms >= 500);
  const report = seen.map((s) => `${s.path} ${s.status} ${s.ms.toFixed(0)} ms`).join(', ');
  t.diagnostic(`${seen.length} probes during ${workMs.toFixed(0)} ms of work, slowest ${Math.max(...seen.map((s) => s.ms)).toFixed(0)} ms`);
  assert.deepEqual(slow, [], `probes slower than 500 ms while ${answers.length} requests ran for ${workMs.toFixed(0)} ms: ${report}`);
  for (const s of seen) assert.ok(s.status === 200 || (s.path === 'readyz' && s.status === 503), report);
});

test('predictions and heatmaps through the inference threads equal those computed in this thread', { timeout: 120_000 }, async () => {
  const expected = await inProcess();
  const bytes = await Promise.all(photos.map((p) => readFile(p)));
  for (let i = 0; i < photos.length; i++) {
    const r = await post('v1/predict', bytes[i]);
    assert.equal(r.status, 200, r.body);
    assert.deepEqual(answerOf(r.body), expected[i], photos[i]);
  }
  // Grad-CAM of one class against the explainer run here on the same preprocessed photograph.
  const predictor = await Predictor.load(modelDir, { gradability: true });
  const [pre] = await predictor.preprocess([bytes[0]]);
  await predictor.close();
  assert.equal(pre.status, 'fulfilled');
  const image = (pre as PromiseFulfilledResult<PreprocessedImage>).value;
  const classIndex = predictor.classes.indexOf('glaucoma');
  const [mine] = explainerFor(predictor.model).explain([image], [{ image: 0, classIndex }], 'gradcam');
  const r = await post('v1/explain?class=glaucoma&method=gradcam&format=json', bytes[0]);
  assert.equal(r.status, 200, r.body);
  const theirs = JSON.parse(r.body) as { probability: number; heatmap: { width: number; height: number; data: number[] }; crop: Record<string, number> };
  assert.equal(theirs.probability, Math.round(mine.probability * 1e6) / 1e6);
  assert.deepEqual([theirs.heatmap.width, theirs.heatmap.height], [mine.heatmap.width, mine.heatmap.height]);
  theirs.heatmap.data.forEach((v, k) => assert.ok(Math.abs(v - mine.heatmap.data[k]) <= 5e-5, `heatmap value ${k}: ${v} against ${mine.heatmap.data[k]}`));
  assert.deepEqual(theirs.crop, { ...image.geometry });

  // Two threads (--inference-threads 2): concurrent requests spread over both, the same answers.
  const two = await startServer({ modelDir, host: '127.0.0.1', port: 0, interactive: false, inferenceThreads: 2 });
  try {
    assert.equal(two.service.threads.length, 2);
    const answers = await Promise.all(Array.from({ length: 12 }, (_, k) => post('v1/predict', bytes[k % photos.length], two.url)));
    answers.forEach((a, k) => {
      assert.equal(a.status, 200, a.body);
      assert.deepEqual(answerOf(a.body), expected[k % photos.length]);
    });
  } finally {
    const exited = two.service.threads.map((w) => new Promise((resolve) => w.once('exit', resolve)));
    await two.app.close();
    // Shutting down terminates the inference threads.
    await Promise.all(exited);
    assert.equal(two.service.threads.length, 0);
  }
});

test('a killed inference thread is started again: its requests answer 503 with the reason, then the server serves as before', { timeout: 120_000 }, async () => {
  const photo = await readFile(photos[0]);
  const before = await post('v1/predict', photo);
  assert.equal(before.status, 200, before.body);
  const [thread] = service.threads;
  // The thread dies as soon as the first request's photograph reaches it: on a fast machine four small Score-CAMs
  // finish within any fixed wait, so the test watches the hand-over itself (the pool posts each job to the thread).
  const handedOver = new Promise<void>((resolve) => {
    const post = thread.postMessage.bind(thread);
    thread.postMessage = (...args: Parameters<typeof thread.postMessage>) => {
      post(...args);
      resolve();
    };
  });
  const inFlight = Promise.all(Array.from({ length: 4 }, () => post('v1/explain?class=glaucoma&method=scorecam&format=json', photo)));
  await handedOver;
  await thread.terminate();
  const restarting = await fetch(url + 'readyz');
  assert.equal(restarting.status, 503);
  assert.equal(((await restarting.json()) as { status: string }).status, 'restarting');
  assert.equal((await fetch(url + 'healthz')).status, 200, 'the process is alive while its inference thread restarts');
  const lost = await inFlight;
  assert.ok(lost.some((a) => a.status === 503), lost.map((a) => a.status).join(','));
  for (const a of lost) {
    if (a.status === 200) continue; // reached the new thread
    assert.equal(a.status, 503, a.body);
    assert.equal(a.retryAfter, '1');
    assert.match(JSON.parse(a.body).message, /^the inference thread stopped \(.*\) while this request ran; it is being restarted: retry shortly$/);
  }
  // Ready again with every slot free, on a new thread, with the same answers.
  let ready: { status: string; slots: { inUse: number } } | undefined;
  for (let k = 0; k < 600 && ready?.status !== 'ready'; k++) {
    ready = (await (await fetch(url + 'readyz')).json()) as typeof ready;
    if (ready?.status !== 'ready') await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(ready?.status, 'ready');
  assert.equal(ready?.slots.inUse, 0);
  assert.notEqual(service.threads[0], thread);
  const after = await post('v1/predict', photo);
  assert.equal(after.status, 200, after.body);
  assert.deepEqual(answerOf(after.body), answerOf(before.body));
});

test('a model the inference thread cannot load fails the start with its InputError, naming the file', { timeout: 60_000 }, async () => {
  const broken = join(await tempDir('fundus-serve-broken-'), 'model');
  await cp(modelDir, broken, { recursive: true });
  await writeFile(join(broken, 'fundus.json'), '{"format": "fundus-model", ');
  await assert.rejects(startServer({ modelDir: broken, host: '127.0.0.1', port: 0, interactive: false }), (err: unknown) => {
    assert.ok(err instanceof InputError, String(err));
    assert.equal(err.file, join(broken, 'fundus.json'));
    assert.ok(err.message.startsWith(join(broken, 'fundus.json')), err.message);
    return true;
  });
});
