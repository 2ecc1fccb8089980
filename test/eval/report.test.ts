import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tempDir } from '../helpers.js';
import { readMetadata } from '../../src/models/io.js';
import { buildReport, loadEvaluationSet } from '../../src/eval/run.js';
import { writeReport } from '../../src/eval/report.js';
import { noisyOracle, tinyModelDir, vietaiSlice } from './fixtures.js';

test('the HTML report is one self-contained file with Vega SVG charts, tables and thumbnails', async () => {
  const dir = await tempDir();
  const modelDir = await tinyModelDir(join(dir, 'model'));
  const slice = await vietaiSlice(dir, 3);
  const metadata = await readMetadata(modelDir);
  const sel = { csv: slice.csv, images: slice.images };
  const set = await loadEvaluationSet(metadata, sel);
  const truth = new Map(set.images.map((im, i) => [im.path, set.labels.subarray(i * 7, i * 7 + 7)]));
  const probs = await noisyOracle(truth)({ dir: modelDir, metadata, network: undefined as never }, set.images.map((im) => im.path));
  const report = buildReport(modelDir, metadata, sel, set, probs, { resamples: 100 });
  const out = join(dir, 'report.html');
  await writeReport(out, { report, probs, labels: set.labels, images: set.images, modelDir, galleryPerKind: 2, thumbnailSize: 64 });
  const html = await readFile(out, 'utf8');

  const svgs = html.match(/<svg[\s>]/g) ?? [];
  // 7 ROC + 7 PR + reliability + 3 training-curve charts (loss, metrics, learning rate)
  assert.equal(svgs.length, 7 + 7 + 1 + 3, 'one SVG per chart');
  assert.match(html, /class="marks"/, 'charts are Vega renderings');
  for (const name of ['opacity', 'diabetic retinopathy', 'retinal vascular occlusion', 'Mean F1 @ 0.5', 'Macro ROC AUC', 'Training curves', 'val_loss']) {
    assert.ok(html.includes(name), name);
  }
  assert.ok(html.includes('val_auc') && !html.includes('images_per_second') && !html.includes('wall_time'), 'bookkeeping columns are not plotted');
  const thumbs = html.match(/src="data:image\/jpeg;base64,[A-Za-z0-9+/=]+"/g) ?? [];
  assert.ok(thumbs.length >= 7, `${thumbs.length} thumbnails`);
  // nothing to fetch: no external scripts, styles, images or fonts (SVG namespace declarations are not fetches)
  const withoutNamespaces = html.replace(/xmlns(:\w+)?="http:\/\/www\.w3\.org\/[^"]*"/g, '');
  // (plain assert.ok: a failing match would print 300 kB of HTML)
  const text = withoutNamespaces.replace(/data:image\/jpeg;base64,[A-Za-z0-9+/=]+/g, 'data:');
  for (const bad of [/(src|href)\s*=\s*["']?(https?:)?\/\//i, /url\(\s*["']?(https?:)?\/\//i, /<link|<script|@import/i, /https?:\/\//, /\bNaN\b|\bundefined\b(?! on this data)/]) {
    const m = bad.exec(text);
    assert.ok(!m, `found ${m?.[0]} near: ${m ? text.slice(Math.max(0, m.index - 80), m.index + 80) : ''}`);
  }
  // the numbers of the table are the report's numbers
  assert.ok(html.includes(report.overall.meanF1At05.value!.toFixed(3)));
});
