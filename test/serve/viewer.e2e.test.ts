import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, copyFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import type { FastifyInstance } from 'fastify';
import { startServer } from '../../src/serve/start.js';
import { buildWeb } from '../../web/build.js';
import type { GradedResponse, ModelCard } from '../../src/serve/api-types.js';
import { buildFixtureModel, realImages } from './fixture.js';
import { PROJECT_ROOT, tempDir } from '../helpers.js';

const CHROMIUM = process.env.FUNDUS_CHROMIUM ?? '/usr/bin/chromium';

let app: FastifyInstance;
let url: string;
let browser: Browser;
let page: Page;
let shots: string;
const external: string[] = [];

before(async () => {
  const fixture = process.env.FUNDUS_E2E_MODEL === undefined;
  const modelDir = process.env.FUNDUS_E2E_MODEL ?? (await buildFixtureModel());
  // A model card whose limitations the viewer's "About this model" must show.
  if (fixture) await writeFile(join(modelDir, 'MODEL_CARD.md'), '# Model card\n\n## Limitations\n\n- **Test fixture:** random\n  weights, never trained.\n\n## Training\n\n- not listed\n');
  // The viewer as its sources stand now (the bundle under web/dist may predate an edit).
  const webRoot = join(await tempDir('fundus-web-'), 'dist');
  await buildWeb({ outDir: webRoot });
  ({ app, url } = await startServer({ modelDir, webRoot, host: '127.0.0.1', port: 0, interactive: false }));
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  page = await browser.newPage({ viewport: { width: 1360, height: 900 }, acceptDownloads: true });
  page.on('request', (r) => {
    const u = r.url();
    if (!u.startsWith(url) && !u.startsWith('data:') && !u.startsWith('blob:')) external.push(u);
  });
  shots = process.env.FUNDUS_SCREENSHOTS ?? (await tempDir('fundus-viewer-'));
  await mkdir(shots, { recursive: true });
});

after(async () => {
  await browser?.close();
  await app?.close();
});

/** The probabilities and thresholds the page shows, read from its bars. */
async function shownBars(): Promise<{ cls: string; value: string; positive: boolean; markLeft: string }[]> {
  return page.$$eval('#bars li', (rows) =>
    rows.map((r) => ({
      cls: (r as HTMLElement).dataset.class ?? '',
      value: r.querySelector('.bar-value')?.textContent ?? '',
      positive: r.classList.contains('positive'),
      markLeft: (r.querySelector('.bar-threshold') as HTMLElement).style.left,
    })),
  );
}

async function canvasDigest(id: string): Promise<number[]> {
  // A coarse sample of the canvas pixels: enough to tell whether the overlay changed.
  return page.$eval(`#${id}`, (c) => {
    const canvas = c as HTMLCanvasElement;
    const d = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height).data;
    const out: number[] = [];
    for (let i = 0; i < d.length; i += 4 * 997) out.push(d[i], d[i + 1], d[i + 2]);
    return out;
  });
}

test('a specialist uploads a photograph and reads the findings, heatmaps and downloads', { timeout: 120_000 }, async () => {
  const image = realImages(1)[0];
  await page.goto(url);
  await page.waitForFunction(() => document.querySelectorAll('#method option').length > 0);
  assert.match(await page.textContent('#model-info') ?? '', /version [0-9a-f]{12}/);
  if (!process.env.FUNDUS_E2E_MODEL) assert.deepEqual(await page.$$eval('#about-limits li', (li) => li.map((x) => x.textContent)), ['Test fixture: random weights, never trained.']);
  // The model's default heatmap (its own when its fundus.json records one, else fundus's), and what chose it.
  const card = (await (await fetch(url + 'v1/model')).json()) as ModelCard;
  const method = card.defaultExplainMethod;
  const about = await page.$$eval('#about-list dt, #about-list dd', (els) => els.map((x) => x.textContent));
  const heatmaps = about[about.indexOf('Heatmaps') + 1] ?? '';
  if (!process.env.FUNDUS_E2E_MODEL) assert.equal(heatmaps, "layercam at the automatically chosen layer by default (fundus's global default)");
  else assert.ok(heatmaps.startsWith(`${method} at ${card.defaultExplainLayer ?? 'the automatically chosen layer'} by default`), heatmaps);

  // What the API says about this photograph, to compare with what the page shows.
  const api = (await (
    await fetch(url + 'v1/predict', { method: 'POST', body: new Uint8Array(await readFile(image)), headers: { 'content-type': 'image/jpeg' } })
  ).json()) as GradedResponse;

  await page.setInputFiles('#file', image);
  await page.waitForSelector('body[data-state="ready"]');
  await page.waitForSelector('#canvas-a[data-class]:not([aria-busy])');
  const bars = await shownBars();
  assert.deepEqual(bars.map((b) => b.cls), api.classes);
  bars.forEach((b, i) => {
    const p = api.probabilities[b.cls];
    assert.equal(b.value, `${(p * 100).toFixed(p >= 0.995 || p < 0.005 ? 0 : 1)}%`, b.cls);
    assert.equal(b.positive, api.decisions[b.cls], b.cls);
    assert.ok(Math.abs(parseFloat(b.markLeft) - api.thresholds[i] * 100) < 0.01, `${b.cls} threshold mark at ${b.markLeft}`);
  });
  assert.match(await page.textContent('#status') ?? '', /512×512, analysed in \d+ ms/);
  assert.equal(await page.$eval('#canvas-a', (c) => (c as HTMLCanvasElement).width), 512);
  // Beside the map, the photograph without overlay; under it, the method and layer that made the map.
  assert.equal(await page.$eval('#canvas-photo', (c) => (c as HTMLCanvasElement).width), 512);
  assert.notDeepEqual(await canvasDigest('canvas-photo'), await canvasDigest('canvas-a'), 'the heatmap panel is coloured, the photograph is not');
  const source = (await page.textContent('#source-a')) ?? '';
  assert.ok(source.startsWith(`${method} at `), source);
  assert.match(source, / at \S+, a \d+×\d+ map$/);
  assert.equal(await page.getAttribute('#canvas-a', 'data-layer'), source.split(' ')[2].replace(/,$/, ''));
  // The fixture ResNet's default layer: its last block at stride 8, 12×12 of 96 px.
  if (!process.env.FUNDUS_E2E_MODEL) assert.equal(source, 'layercam at s2b2_out, a 12×12 map');
  await page.screenshot({ path: join(shots, '1-result.png'), fullPage: true });

  // Another class, chosen with the keyboard from the list of bars.
  await page.focus('#bars li[data-class="glaucoma"] button');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#canvas-a[data-class="glaucoma"]:not([aria-busy])');
  assert.equal(await page.$eval('#class-a', (s) => (s as HTMLSelectElement).value), 'glaucoma');
  assert.equal(await page.getAttribute('#bars li[data-class="glaucoma"] button', 'aria-pressed'), 'true');
  assert.match(await page.textContent('#prob-a') ?? '', new RegExp(`^${(api.probabilities.glaucoma * 100).toFixed(1)}%`));

  // The default method (the model card's) first, then another: the heatmap changes.
  assert.equal(await page.$eval('#method', (s) => (s as HTMLSelectElement).value), method);
  assert.equal(await page.getAttribute('#canvas-a', 'data-method'), method);
  const byDefault = await canvasDigest('canvas-a');
  const other = method === 'gradcam' ? 'layercam' : 'gradcam';
  await page.selectOption('#method', 'gradcam++');
  await page.waitForSelector('#canvas-a[data-method="gradcam++"]:not([aria-busy])');
  await page.selectOption('#method', other);
  await page.waitForSelector(`#canvas-a[data-method="${other}"]:not([aria-busy])`);
  assert.notDeepEqual(await canvasDigest('canvas-a'), byDefault);
  assert.equal(await page.textContent('#source-a'), source.replace(method, other));

  // The opacity slider: at 0 the canvas is the bare photograph; the keyboard moves it back up.
  const before = await canvasDigest('canvas-a');
  await page.fill('#opacity', '0');
  assert.equal(await page.textContent('#opacity-value'), '0%');
  const bare = await canvasDigest('canvas-a');
  assert.notDeepEqual(bare, before);
  await page.focus('#opacity');
  for (let i = 0; i < 16; i++) await page.keyboard.press('ArrowRight');
  assert.equal(await page.textContent('#opacity-value'), '80%');
  assert.notDeepEqual(await canvasDigest('canvas-a'), bare);

  // Two classes side by side.
  await page.check('#compare');
  await page.waitForSelector('#panel-b:not([hidden])');
  await page.selectOption('#class-b', 'diabetic retinopathy');
  await page.waitForSelector('#canvas-b[data-class="diabetic retinopathy"]:not([aria-busy])');
  assert.notDeepEqual(await canvasDigest('canvas-b'), await canvasDigest('canvas-a'));
  await page.screenshot({ path: join(shots, '2-compare.png'), fullPage: true });

  // Downloads: the result JSON matches the API; the overlay is a PNG at the photograph's resolution.
  const [json] = await Promise.all([page.waitForEvent('download'), page.click('#download-json')]);
  const saved = JSON.parse(await readFile((await json.path())!, 'utf8')) as GradedResponse;
  assert.deepEqual(saved.probabilities, api.probabilities);
  assert.deepEqual(saved.positive, api.positive);
  const [png] = await Promise.all([page.waitForEvent('download'), page.click('#download-b')]);
  assert.match(png.suggestedFilename(), /\.diabetic-retinopathy\.gradcam\.png$/);
  const head = (await readFile((await png.path())!)).subarray(0, 8);
  assert.deepEqual([...head], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

  // A narrow (tablet portrait) window keeps everything reachable.
  await page.setViewportSize({ width: 760, height: 1000 });
  await page.screenshot({ path: join(shots, '3-narrow.png'), fullPage: true });
  assert.deepEqual(external, [], 'the page made no request outside the fundus server');
});

test('a DICOM photograph dropped into the viewer is shown as the server decodes it, with no patient identifier on the page', { timeout: 60_000 }, async () => {
  const dcm = join(PROJECT_ROOT, 'test', 'fixtures', 'dicom', 'op-jpeg-baseline.dcm');
  await page.setViewportSize({ width: 1360, height: 900 });
  await page.setInputFiles('#file', dcm);
  // The page is still "ready" with the previous test's photograph until this one is analysed: wait for its status
  // (the heatmap request starts, marking the canvas busy, as it is set).
  await page.waitForSelector('#status:has-text("op-jpeg-baseline.dcm: 256×256, analysed in")');
  await page.waitForSelector('#canvas-a[data-class]:not([aria-busy])');
  assert.match(await page.textContent('#status') ?? '', /op-jpeg-baseline\.dcm: 256×256, analysed in \d+ ms/);
  assert.equal(await page.$eval('#canvas-a', (c) => (c as HTMLCanvasElement).width), 256);
  const text = await page.evaluate(() => document.body.innerText + document.documentElement.outerHTML);
  for (const id of ['Testpatient', 'PID-0815-4711', '19510704']) assert.ok(!text.includes(id), `${id} on the page`);
});

test('a file that is not a photograph gives a readable error, not a broken page', async () => {
  const dir = await tempDir();
  const bogus = join(dir, 'notes.jpg');
  await copyFile(new URL(import.meta.url), bogus);
  await page.setViewportSize({ width: 1360, height: 900 });
  await page.setInputFiles('#file', bogus);
  await page.waitForSelector('#status[data-kind="error"]');
  assert.match(await page.textContent('#status') ?? '', /Could not analyse notes\.jpg/);
});
