import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, readFile, readdir, copyFile, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import sharp from 'sharp';
import { initEngine } from '../../src/engine/index.js';
import { heatmapFromNpy } from '../../src/explain/heatmap.js';
import type { ExplainManifest } from '../../src/explain/run.js';
import { explainCommand, type ExplainCliOptions } from '../../src/explain/commands.js';
import { InputError } from '../../src/util/errors.js';
import { PROJECT_ROOT, VIETAI_DIR, tempDir } from '../helpers.js';
import { fundus, tinyModel } from './tiny-model.js';

const IMAGES = ['c24a1b14d253.jpg', '9ee905a41651.jpg'];

test('fundus explain writes an overlay per image and class, raw heatmaps, explain.json and a gallery', async () => {
  await initEngine();
  const tmp = await tempDir();
  const modelDir = join(tmp, 'model');
  await tinyModel(modelDir);
  const folder = join(tmp, 'photos');
  await mkdir(folder);
  for (const f of IMAGES) await copyFile(join(VIETAI_DIR, 'train', f), join(folder, f));
  await writeFile(join(folder, 'notes.txt'), 'not an image');
  const out = join(tmp, 'out');
  const r = fundus(['explain', modelDir, folder, '--out', out, '--method', 'gradcam,layercam', '--raw', 'npy,png16', '--faithfulness', '--steps', '4']);
  assert.equal(r.status, 0, r.stderr);
  const m = JSON.parse(await readFile(join(out, 'explain.json'), 'utf8')) as ExplainManifest;
  assert.equal(m.layer, 'last_conv');
  assert.equal(m.images.length, 2);
  // 2 images × (opacity, diabetic retinopathy, against normal) × 2 methods.
  assert.equal(m.entries.length, 12);
  assert.deepEqual(
    [...new Set(m.entries.map((e) => `${e.className}/${e.direction}`))].sort(),
    ['diabetic retinopathy/for', 'normal/against', 'opacity/for'],
  );
  const files = await readdir(out);
  for (const e of m.entries) {
    assert.ok(files.includes(e.overlay), e.overlay);
    const meta = await sharp(join(out, e.overlay)).metadata();
    assert.deepEqual([meta.width, meta.height], [m.images[0].geometry.width, m.images[0].geometry.height], 'overlay at photo resolution');
    const npy = heatmapFromNpy(await readFile(join(out, e.raw[0])));
    assert.ok(npy.width > 0 && npy.data.every((v) => v >= 0));
    assert.ok(e.faithfulness && e.faithfulness.score.deletion >= 0 && e.faithfulness.score.deletion <= 1);
  }
  const html = await readFile(join(out, 'index.html'), 'utf8');
  assert.match(html, /against <\/b>|against normal|<b>against normal/);
  // 12 overlays and each photograph without overlay, as decoded at full size; captions name method and layer
  assert.equal((html.match(/<img /g) ?? []).length, 14);
  for (const im of m.images) {
    assert.ok(html.includes(`src="${im.photo}"`), im.photo);
    const meta = await sharp(join(out, im.photo)).metadata();
    assert.deepEqual([meta.format, meta.width, meta.height], ['jpeg', im.geometry.width, im.geometry.height]);
  }
  assert.match(html, /gradcam at <code>last_conv<\/code>/);
  assert.match(r.stdout, /gradcam .*\n.*layercam|deletion/);
  assert.ok(files.includes('faithfulness.txt'));

  // Explicit classes by name; running again over an earlier output replaces it.
  const again = fundus(['explain', modelDir, join(folder, IMAGES[0]), '--out', out, '--classes', 'glaucoma', '--method', 'gradcam++', '--raw', 'none']);
  assert.equal(again.status, 0, again.stderr);
  const m2 = JSON.parse(await readFile(join(out, 'explain.json'), 'utf8')) as ExplainManifest;
  assert.deepEqual(
    m2.entries.map((e) => [e.className, e.method]),
    [['glaucoma', 'gradcam++']],
  );
  assert.equal((await readdir(out)).filter((f) => f.endsWith('.npy')).length, 0);
});

test('fundus explain keeps going past a truncated or ungradable photograph: the others are explained, the bad ones listed, exit 3', async () => {
  const tmp = await tempDir();
  const modelDir = join(tmp, 'model');
  await tinyModel(modelDir);
  const img = join(VIETAI_DIR, 'train', IMAGES[0]);
  const broken = join(tmp, 'broken.jpg');
  await writeFile(broken, (await readFile(img)).subarray(0, 2000));
  const black = join(tmp, 'black.png');
  await sharp({ create: { width: 256, height: 256, channels: 3, background: '#000' } }).png().toFile(black);
  const out = join(tmp, 'out');
  const r = fundus(['explain', modelDir, broken, img, black, '--out', out, '--classes', 'all', '--batch-size', '2']);
  assert.equal(r.status, 3, r.stderr);
  assert.match(r.stderr, /skipped .*broken\.jpg: cannot decode/);
  assert.match(r.stderr, /skipped .*black\.png: ungradable: too dark/);
  const manifest = JSON.parse(await readFile(join(out, 'explain.json'), 'utf8')) as { images: { path: string }[]; skipped: { path: string; reason: string }[] };
  assert.deepEqual(manifest.images.map((i) => i.path), [img]);
  assert.deepEqual(manifest.skipped.map((s) => s.path).sort(), [black, broken].sort());
});

test('fundus explain: clear errors for bad input, and no partial output', async () => {
  const tmp = await tempDir();
  const modelDir = join(tmp, 'model');
  await tinyModel(modelDir);
  const img = join(VIETAI_DIR, 'train', IMAGES[0]);
  const cases: [string[], RegExp][] = [
    [[modelDir, join(tmp, 'missing.jpg'), '--out', join(tmp, 'o1')], /missing\.jpg: no such file/],
    [[modelDir, img, '--out', join(tmp, 'o2'), '--method', 'gradkam'], /unknown method "gradkam"/],
    [[modelDir, img, '--out', join(tmp, 'o3'), '--classes', 'cataract'], /no class "cataract"/],
    [[modelDir, img, '--out', join(tmp, 'o4'), '--layer', 'nope'], /no layer named "nope"/],
    [[join(tmp, 'nomodel'), img, '--out', join(tmp, 'o5')], /fundus\.json is missing/],
  ];
  const busy = join(tmp, 'busy');
  await mkdir(busy);
  await writeFile(join(busy, 'keep.txt'), 'x');
  cases.push([[modelDir, img, '--out', busy], /not an earlier explain output/]);
  // In process (each CLI start costs seconds); the exit status and message of the real CLI are checked once.
  for (const [args, re] of cases) {
    const [model, ...rest] = args;
    const outIdx = rest.indexOf('--out');
    const opts: Record<string, string> = {};
    for (let i = 0; i < rest.length; i++) {
      if (rest[i].startsWith('--')) opts[rest[i].slice(2)] = rest[++i];
    }
    const inputs = rest.slice(0, outIdx);
    await assert.rejects(explainCommand(model, inputs, { ...opts, out: opts.out, quiet: true } as ExplainCliOptions), (err: Error) => {
      assert.ok(err instanceof InputError, `${args.join(' ')}: ${err.stack}`);
      assert.match(err.message, re);
      return true;
    });
  }
  const r = fundus(['explain', modelDir, join(tmp, 'missing.jpg'), '--out', join(tmp, 'o1')]);
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /^fundus: .*missing\.jpg: no such file or folder/m);
  const left = await readdir(tmp);
  for (const o of ['o1', 'o2', 'o3', 'o4', 'o5']) assert.ok(!left.includes(o), `${o} left behind`);
  assert.deepEqual(await readdir(busy), ['keep.txt']);
  const help = execFileSync(process.execPath, [join(PROJECT_ROOT, 'bin', 'fundus.js'), 'explain', '--help'], { encoding: 'utf8' });
  assert.match(help, /--method/);
  assert.match(help, /scorecam/);
});

test('fundus explain -o never deletes a file it did not write, nor explains its own earlier overlays', async () => {
  await initEngine();
  const tmp = await tempDir();
  const modelDir = join(tmp, 'model');
  await tinyModel(modelDir);
  const photos = join(tmp, 'photos');
  await mkdir(photos);
  for (const f of IMAGES) await copyFile(join(VIETAI_DIR, 'train', f), join(photos, f));
  // --out inside the folder explained: the second run walks past the first run's overlays.
  const out = join(photos, 'explained');
  const opts: ExplainCliOptions = { out, raw: 'none', quiet: true };
  await explainCommand(modelDir, [photos], opts);
  await explainCommand(modelDir, [photos], opts);
  const m = JSON.parse(await readFile(join(out, 'explain.json'), 'utf8')) as ExplainManifest;
  assert.deepEqual(m.images.map((i) => basename(i.path)).sort(), [...IMAGES].sort());

  // A photo of the user's own put into the earlier output: never deleted, never explained as an input of its own output.
  await copyFile(join(VIETAI_DIR, 'train', IMAGES[0]), join(out, 'mine.jpg'));
  await assert.rejects(explainCommand(modelDir, [out], opts), (e: Error) => e instanceof InputError && /the input .*explained lies inside --out/.test(e.message));
  await assert.rejects(
    explainCommand(modelDir, [photos], opts),
    (e: Error) => e instanceof InputError && /explained: --out is an earlier explain output that also holds files explain did not write \(mine\.jpg\)/.test(e.message),
  );
  assert.ok((await readdir(out)).includes('mine.jpg'));
  await assert.rejects(
    explainCommand(modelDir, [join(photos, IMAGES[0])], { ...opts, out: join(modelDir, 'maps') }),
    (e: Error) => e instanceof InputError && /--out lies inside the model folder/.test(e.message),
  );
  assert.deepEqual((await readdir(modelDir)).sort(), ['fundus.json', 'model.json', 'weights.bin']);
});
