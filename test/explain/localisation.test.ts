import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { decodeRgb, DEFAULT_PREPROCESS, preprocessImage, toPhotoCoordinates, type CropGeometry } from '../../src/data/preprocess.js';
import { explainCommand, type ExplainCliOptions } from '../../src/explain/commands.js';
import { discMask } from '../../src/explain/disc.js';
import type { Heatmap } from '../../src/explain/heatmap.js';
import {
  baselineScores,
  centrePriorMap,
  checkBoxes,
  formatLocalisationTable,
  localisationGrid,
  parseLesions,
  scoreGridMap,
  scoreHeatmap,
  summarizeLocalisation,
  type BaselineScores,
  type LesionBox,
  type ScoredMap,
} from '../../src/explain/localisation.js';
import type { ExplainManifest } from '../../src/explain/run.js';
import { InputError } from '../../src/util/errors.js';
import { tempDir } from '../helpers.js';
import { fundus, tinyModel } from './tiny-model.js';

// A 200x100 photo whose crop square is x 50..150 (a disc of radius 50 centred at (100, 50), touching top and bottom).
const G: CropGeometry = { width: 200, height: 100, x: 50, y: 0, side: 100 };
const box = (x0: number, y0: number, x1: number, y1: number, lesion = 'haemorrhage'): LesionBox => ({ lesion, x0, y0, x1, y1, line: 2 });
const circleDisc = () => discMask(undefined, G.width, G.height, G);

/** A map on the grid, zero except `value` at photo pixel (x, y). */
function spike(x: number, y: number, value = 1): Float32Array {
  const m = new Float32Array(G.width * G.height);
  m[y * G.width + x] = value;
  return m;
}

test('pointing game: a map peaked inside a box scores 1, outside 0; energy inside the boxes over the disc', () => {
  const grid = localisationGrid(circleDisc(), G, [box(90, 40, 110, 60)], 0);
  const hit = scoreGridMap(spike(100, 50), grid);
  assert.equal(hit.pointing, 1);
  assert.equal(hit.energy, 1);
  assert.deepEqual(hit.peak, [100.5, 50.5]);
  const miss = scoreGridMap(spike(70, 50), grid);
  assert.equal(miss.pointing, 0);
  assert.equal(miss.energy, 0);
  // Two spikes: the higher one decides the pointing game, the energy splits 3:1.
  const both = spike(70, 50, 3);
  both[50 * G.width + 100] = 1;
  const s = scoreGridMap(both, grid);
  assert.equal(s.pointing, 0);
  assert.ok(Math.abs(s.energy - 0.25) < 1e-12, `energy ${s.energy}`);
  both[50 * G.width + 100] = 4;
  assert.equal(scoreGridMap(both, grid).pointing, 1);
});

test("a uniform map's energy share is the boxes' share of the disc; a flat map points at random", () => {
  // A 20x20 box well inside the disc: 400 pixel centres in it.
  const disc = circleDisc();
  assert.ok(Math.abs(disc.count - Math.PI * 50 * 50) < 60, `disc of ${disc.count} px`);
  const grid = localisationGrid(disc, G, [box(90, 40, 110, 60)], 0);
  assert.equal(grid.boxShare, 400 / disc.count);
  const uniform = new Float32Array(G.width * G.height).fill(0.7);
  const u = scoreGridMap(uniform, grid);
  assert.ok(Math.abs(u.energy - 400 / disc.count) < 1e-9, `uniform energy ${u.energy}`);
  // Every disc pixel ties for the maximum: the expected score of a random pick is the share near a box.
  assert.ok(Math.abs(u.pointing - grid.nearShare) < 1e-12);
  assert.equal(grid.nearShare, grid.boxShare); // tolerance 0
  // The part of the box outside the disc does not count: a box over the black corner has no share.
  const corner = localisationGrid(disc, G, [box(0, 0, 40, 40)], 0);
  assert.equal(corner.boxShare, 0);
  // A map that is zero on the disc says nothing: scored as the uniform map, and flagged.
  const empty = scoreGridMap(new Float32Array(G.width * G.height), grid);
  assert.equal(empty.empty, true);
  assert.equal(empty.energy, grid.boxShare);
  assert.equal(empty.pointing, grid.nearShare);
  const b = baselineScores(grid);
  assert.deepEqual(b.uniform, { pointing: grid.nearShare, energy: grid.boxShare });
  // The centre prior peaks at the disc centre (100, 50), inside the box.
  assert.equal(b.centre.pointing, 1);
  assert.ok(b.centre.energy > 2 * grid.boxShare, `centre prior energy ${b.centre.energy}`);
  const cp = centrePriorMap(grid);
  assert.ok(cp[50 * G.width + 100] > 0.99 && cp[50 * G.width + 60] < cp[50 * G.width + 80]);
});

test('pointing tolerance: a maximum near a box is a hit within the tolerance and a miss beyond it', () => {
  const boxes = [box(90, 40, 110, 60)];
  const at = (x: number, y: number, tol: number) => scoreGridMap(spike(x, y), localisationGrid(circleDisc(), G, boxes, tol)).pointing;
  // Pixel 119's centre is 9.5 px right of the box's edge at x = 110.
  assert.equal(at(119, 50, 10), 1);
  assert.equal(at(119, 50, 9), 0);
  assert.equal(at(119, 50, 0), 0);
  // Diagonal: pixel (117, 67) has its centre 7.5 px right and 7.5 px below the corner (110, 60): 10.6 px away.
  assert.equal(at(117, 67, 11), 1);
  assert.equal(at(117, 67, 10.5), 0);
  // Energy ignores the tolerance.
  const grid = localisationGrid(circleDisc(), G, boxes, 30);
  assert.equal(scoreGridMap(spike(119, 50), grid).energy, 0);
  assert.ok(grid.nearShare > grid.boxShare);
});

test('only the disc counts: a maximum in the black border is reported, and the pointing game uses the disc maximum', () => {
  const grid = localisationGrid(circleDisc(), G, [box(90, 40, 110, 60)], 0);
  const m = spike(5, 5, 10); // photo corner, outside the disc
  m[50 * G.width + 100] = 1;
  const s = scoreGridMap(m, grid);
  assert.equal(s.peakOffDisc, true);
  assert.equal(s.pointing, 1);
  assert.equal(s.energy, 1);
  assert.equal(scoreGridMap(spike(100, 50), grid).peakOffDisc, false);
});

test('a heatmap over the network input is mapped to photo pixels through a padded crop, also on a reduced grid', () => {
  // A 300x200 photo whose crop square starts 20 px above it (padded): side 240 from (30, -20). An 8x8 map hot in
  // cell (col 6, row 2), whose centre is input (6.5, 2.5) cells = square (195, 75) = photo (225, 55).
  const g: CropGeometry = { width: 300, height: 200, x: 30, y: -20, side: 240 };
  const heat: Heatmap = { width: 8, height: 8, data: new Float32Array(64) };
  heat.data[2 * 8 + 6] = 1;
  const [px, py] = toPhotoCoordinates(g, 8, 6.5, 2.5);
  assert.deepEqual([px, py], [225, 55]);
  const disc = discMask(undefined, 300, 200, g);
  for (const maxSide of [1024, 150]) {
    const on = localisationGrid(disc, g, [box(px - 5, py - 5, px + 5, py + 5)], 0, maxSide);
    assert.equal(on.scale, maxSide === 150 ? 0.5 : 1);
    const s = scoreHeatmap(heat, on);
    assert.equal(s.pointing, 1, `grid ${maxSide}: peak at ${s.peak}`);
    assert.ok(Math.abs(s.peak[0] - px) <= 1 / on.scale && Math.abs(s.peak[1] - py) <= 1 / on.scale, `peak ${s.peak}`);
    // The same box mirrored to the other side of the disc: a miss, and almost no energy (one cell's bilinear spread).
    const off = localisationGrid(disc, g, [box(300 - px - 5, py - 5, 300 - px + 5, py + 5)], 0, maxSide);
    assert.equal(scoreHeatmap(heat, off).pointing, 0);
    assert.equal(scoreHeatmap(heat, off).energy, 0);
  }
});

test('a hot spot at a marker of a real preprocessed photo scores a hit on a box around the marker', async () => {
  // A landscape photo with a disc clipped at top and bottom (so the crop is padded) and a white marker.
  const W = 300;
  const H = 200;
  const marker = { x: 215, y: 62 };
  const raw = Buffer.alloc(W * H * 3, 4);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const i = (y * W + x) * 3;
      if ((x - 150) ** 2 + (y - 100) ** 2 <= 120 ** 2) raw.fill(110, i, i + 3);
      if (x >= marker.x && x < marker.x + 5 && y >= marker.y && y < marker.y + 5) raw.fill(255, i, i + 3);
    }
  }
  const photo = await sharp(raw, { raw: { width: W, height: H, channels: 3 } }).png().toBuffer();
  const pre = await preprocessImage(photo, { ...DEFAULT_PREPROCESS, size: 64, channels: 'rgb', normalize: { mean: [0.5], std: [0.25] } });
  assert.ok(pre.geometry.y < 0, 'padded');
  let best = 0;
  for (let i = 0; i < 64 * 64; i++) if (pre.data[i * 3 + 1] > pre.data[best * 3 + 1]) best = i;
  const heat: Heatmap = { width: 64, height: 64, data: new Float32Array(64 * 64) };
  heat.data[best] = 1;
  const decoded = await decodeRgb(photo);
  const disc = discMask(decoded.data, W, H, pre.geometry);
  const pixel = pre.geometry.side / 64; // one input pixel in photo pixels
  const around = localisationGrid(disc, pre.geometry, [box(marker.x, marker.y, marker.x + 5, marker.y + 5)], pixel);
  assert.equal(scoreHeatmap(heat, around).pointing, 1);
  const elsewhere = localisationGrid(disc, pre.geometry, [box(marker.x - 60, marker.y + 40, marker.x - 55, marker.y + 45)], pixel);
  assert.equal(scoreHeatmap(heat, elsewhere).pointing, 0);
});

test('lesions CSV: codras and heimed layouts, type filters, and errors naming the file and line', () => {
  const codras = parseLesions('filename,lesion,x0,y0,x1,y1\n0001.jpg,haemorrhage,1,2,3,4\n0001.jpg,hard_exudates,5,6,7.5,8\nsub/0002.jpg,haemorrhage,0,0,1,1\n', 'c.csv');
  assert.equal(codras.format, 'codras');
  assert.deepEqual(codras.kept.sort(), ['haemorrhage', 'hard_exudates']);
  assert.equal(codras.byImage.get('0001.jpg')?.length, 2);
  assert.deepEqual(codras.byImage.get('0001.jpg')?.[1], { lesion: 'hard_exudates', x0: 5, y0: 6, x1: 7.5, y1: 8, line: 3 });
  assert.ok(codras.byImage.has('0002.jpg'), 'matched by base name');
  const exOnly = parseLesions('filename,lesion,x0,y0,x1,y1\n0001.jpg,haemorrhage,1,2,3,4\n0001.jpg,hard_exudates,5,6,7,8\n', 'c.csv', { types: ['hard_exudates'] });
  assert.deepEqual(exOnly.byImage.get('0001.jpg')?.map((b) => b.lesion), ['hard_exudates']);

  const heimedText =
    'filename,lesion,x,y,x0,y0,x1,y1,area\n"(00000003).jpg",Exudate,351.6,73.2,349.7,71.3,353.5,75.1,13.9\n(00000003).jpg,Other Bright Lesion,10,10,5,5,15,15,80\n(00000060).jpg,MicroAneurysm,1,1,0,0,2,2,3\n';
  const heimed = parseLesions(heimedText, 'h.csv');
  assert.equal(heimed.format, 'heimed');
  assert.deepEqual(heimed.kept, ['Exudate']);
  assert.deepEqual(heimed.byImage.get('(00000003).jpg')?.map((b) => [b.x0, b.y0, b.x1, b.y1]), [[349.7, 71.3, 353.5, 75.1]]);
  assert.equal(heimed.byImage.has('(00000060).jpg'), false, 'no exudate: no boxes by default');
  assert.equal(parseLesions(heimedText, 'h.csv', { types: ['MicroAneurysm'] }).byImage.has('(00000060).jpg'), true);

  const bad: [string, RegExp, number | undefined][] = [
    ['filename,lesion,x0,y0,x1\n0001.jpg,haemorrhage,1,2,3\n', /missing column y1/, 1],
    ['file,kind,x0,y0,x1,y1\n', /missing columns filename, lesion/, 1],
    ['filename,lesion,x0,y0,x1,y1\n0001.jpg,haemorrhage,1,2,3,4\n0002.jpg,haemorrhage,1,two,3,4\n', /y0 is not a number \(got 'two'\)/, 3],
    ['filename,lesion,x0,y0,x1,y1\n0001.jpg,haemorrhage,1,2,,4\n', /x1 is not a number/, 2],
    ['filename,lesion,x0,y0,x1,y1\n0001.jpg,haemorrhage,5,2,3,4\n', /inverted box/, 2],
    ['filename,lesion,x0,y0,x1,y1\n0001.jpg,haemorrhage,1,2,3\n', /expected 6 fields, got 5/, 2],
    ['filename,lesion,x0,y0,x1,y1\n,haemorrhage,1,2,3,4\n', /empty filename/, 2],
    ['', /empty/, undefined],
  ];
  for (const [text, re, line] of bad) {
    assert.throws(
      () => parseLesions(text, 'bad.csv'),
      (err: Error) => {
        assert.ok(err instanceof InputError, err.stack);
        assert.match(err.message, re);
        assert.match(err.message, line === undefined ? /^bad\.csv: / : new RegExp(`^bad\\.csv:${line}: `));
        assert.equal(err.line, line);
        return true;
      },
    );
  }
  assert.throws(() => parseLesions(heimedText, 'h.csv', { types: ['Exudates'] }), /no 'Exudates' rows in this file \(types: Exudate, Other Bright Lesion, MicroAneurysm\)/);
  // Boxes drawn on another resolution of the photo are refused, naming the line.
  const big = parseLesions('filename,lesion,x0,y0,x1,y1\na.jpg,haemorrhage,1,2,3,4\na.jpg,haemorrhage,2000,1000,2100,1100\n', 'big.csv');
  assert.throws(() => checkBoxes(big.byImage.get('a.jpg')!, 640, 425, 'big.csv', '/x/a.jpg'), /^InputError: big\.csv:3: .*outside a\.jpg, which is 640x425/);
  checkBoxes([box(-1, 0, 641, 425)], 640, 425, 'ok.csv', 'a.jpg'); // clipped boxes a pixel past the edge are fine
});

test('summary rows: method means, the baselines over the same photos, ratios to uniform, intervals around them', () => {
  const baselines = new Map<number, BaselineScores>([
    [0, { centre: { pointing: 1, energy: 0.3 }, uniform: { pointing: 0.2, energy: 0.1 } }],
    [1, { centre: { pointing: 0, energy: 0.1 }, uniform: { pointing: 0.3, energy: 0.3 } }],
    [2, { centre: { pointing: 0, energy: 0.2 }, uniform: { pointing: 0.1, energy: 0.2 } }],
  ]);
  const m = (image: number, method: string, pointing: number, energy: number, className = 'diabetic retinopathy'): ScoredMap => ({
    image,
    method,
    className,
    direction: 'for',
    positive: image !== 2,
    score: { pointing, energy, peak: [0, 0], peakOffDisc: image === 1 && method === 'gradcam', empty: false },
  });
  const maps = [
    m(0, 'glaucoma-map', 0, 0.1, 'glaucoma'),
    m(0, 'gradcam', 1, 0.6),
    m(1, 'gradcam', 1, 0.3),
    m(2, 'gradcam', 0, 0.3),
    m(0, 'layercam', 0, 0.2),
    m(1, 'layercam', 1, 0.2),
    m(2, 'layercam', 0, 0.2),
  ];
  const lesions = parseLesions('filename,lesion,x0,y0,x1,y1\na.jpg,haemorrhage,1,2,3,4\n', 'l.csv');
  const r = summarizeLocalisation(maps, baselines, { lesions, lesionClass: 'diabetic retinopathy', tolerancePx: 15, resamples: 200 }, { withBoxes: 3, withoutBoxes: 1, boxes: 9 });
  assert.deepEqual(
    r.rows.map((x) => `${x.className}/${x.method}/${x.n}`),
    [
      'diabetic retinopathy/gradcam/3',
      'diabetic retinopathy/layercam/3',
      'diabetic retinopathy/centre prior/3',
      'diabetic retinopathy/uniform disc/3',
      'glaucoma/glaucoma-map/1',
      'glaucoma/centre prior/1',
      'glaucoma/uniform disc/1',
    ],
  );
  const [gc, lc, centre, uniform] = r.rows;
  const close = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-12, `${a} vs ${b}`);
  close(gc.pointing, 2 / 3);
  close(gc.energy, 0.4);
  close(uniform.energy, 0.2);
  close(gc.energyRatio, 2);
  close(lc.energyRatio, 1);
  close(centre.pointing, 1 / 3);
  close(centre.energy, 0.2);
  close(uniform.pointing, 0.2);
  close(uniform.energyRatio, 1);
  assert.equal(gc.peakOffDisc, 1);
  assert.equal(gc.predictedPositive, 2);
  assert.equal(centre.peakOffDisc, undefined);
  for (const row of r.rows.slice(0, 4)) {
    for (const [v, ci] of [
      [row.pointing, row.pointingCi],
      [row.energy, row.energyCi],
      [row.energyRatio, row.energyRatioCi],
    ] as const) {
      assert.ok(ci && ci[0] <= v + 1e-12 && v <= ci[1] + 1e-12, `${row.method}: ${v} in ${ci}`);
    }
  }
  assert.ok(gc.energyCi![1] > gc.energyCi![0], 'the interval has width');
  // layercam's energy is 0.2 on every photo: a degenerate interval.
  close(lc.energyCi![0], 0.2);
  close(lc.energyCi![1], 0.2);
  const table = formatLocalisationTable(r);
  assert.match(table, /\| diabetic retinopathy \| gradcam +\| 3 \| +0\.67 \[/);
  assert.match(table, /9 boxes on 3 photographs, 1 without boxes not scored/);
  assert.match(table, /\| uniform disc .*1\.00 \[1\.00, 1\.00\]/);
});

/** A synthetic fundus photo: a textured disc on black, with a bright spot at (sx, sy). */
async function syntheticFundus(path: string, sx: number, sy: number): Promise<void> {
  const W = 160;
  const H = 120;
  const raw = Buffer.alloc(W * H * 3, 0);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const i = (y * W + x) * 3;
      if ((x - 80) ** 2 + (y - 60) ** 2 > 56 ** 2) continue;
      const v = 90 + ((x * 7 + y * 13) % 23);
      raw[i] = v + 60;
      raw[i + 1] = v;
      raw[i + 2] = 40;
      if ((x - sx) ** 2 + (y - sy) ** 2 <= 16) raw.fill(250, i, i + 3);
    }
  }
  await sharp(raw, { raw: { width: W, height: H, channels: 3 } }).png().toFile(path);
}

test('fundus explain --lesions: per-map scores, a summary with baselines in explain.json, the text output and the gallery', async () => {
  const tmp = await tempDir();
  const modelDir = join(tmp, 'model');
  await tinyModel(modelDir);
  const photos = join(tmp, 'photos');
  await mkdir(photos);
  await syntheticFundus(join(photos, 'a.png'), 60, 50);
  await syntheticFundus(join(photos, 'b.png'), 100, 70);
  await syntheticFundus(join(photos, 'c.png'), 80, 30);
  const csv = join(tmp, 'lesions.csv');
  await writeFile(
    csv,
    'filename,lesion,x0,y0,x1,y1\na.png,haemorrhage,54,44,66,56\na.png,hard_exudates,90,80,100,90\nb.png,hard_exudates,94,64,106,76\nzzz.png,haemorrhage,1,1,2,2\n',
  );
  const out = join(tmp, 'out');
  const r = fundus(['explain', modelDir, photos, '--out', out, '--method', 'gradcam,layercam', '--lesions', csv, '--tolerance', '5', '--resamples', '100']);
  assert.equal(r.status, 0, r.stderr);
  const m = JSON.parse(await readFile(join(out, 'explain.json'), 'utf8')) as ExplainManifest;
  // No --classes: the lesion class on every photograph, whatever the model predicts.
  assert.deepEqual([...new Set(m.entries.map((e) => e.className))], ['diabetic retinopathy']);
  assert.equal(m.entries.length, 6);
  assert.equal(m.discMask, true);
  const scored = m.entries.filter((e) => e.localisation);
  assert.deepEqual(scored.map((e) => `${e.image.endsWith('a.png') ? 'a' : 'b'}/${e.method}`).sort(), ['a/gradcam', 'a/layercam', 'b/gradcam', 'b/layercam']);
  for (const e of scored) {
    const l = e.localisation!;
    assert.ok(l.pointing >= 0 && l.pointing <= 1 && l.energy >= 0 && l.energy <= 1, JSON.stringify(l));
    assert.ok(l.peak[0] >= 0 && l.peak[0] <= 160 && l.peak[1] >= 0 && l.peak[1] <= 120);
  }
  const imA = m.images.find((im) => im.path.endsWith('a.png'))!;
  assert.equal(imA.localisation?.boxes.length, 2);
  assert.ok(!m.images.find((im) => im.path.endsWith('c.png'))!.localisation, 'no boxes, not scored');
  // The uniform share by hand: a's two boxes hold 12*12 + 10*10 pixel centres, all inside the disc.
  assert.ok(Math.abs(imA.localisation!.boxShare - 244 / imA.localisation!.discPixels) < 1e-9, `box share ${imA.localisation!.boxShare}`);
  assert.ok(Math.abs(imA.localisation!.discPixels - Math.PI * 56 * 56) < 0.02 * Math.PI * 56 * 56, `disc ${imA.localisation!.discPixels}`);
  const L = m.localisation!;
  assert.equal(L.lesionClass, 'diabetic retinopathy');
  assert.equal(L.format, 'codras');
  assert.equal(L.tolerancePx, 5);
  assert.deepEqual([L.imagesWithBoxes, L.imagesWithoutBoxes, L.boxes], [2, 1, 3]);
  assert.equal(L.bootstrap.resamples, 100);
  assert.deepEqual(L.rows.map((x) => x.method), ['gradcam', 'layercam', 'centre prior', 'uniform disc']);
  const uniform = L.rows[3];
  const shares = m.images.filter((im) => im.localisation).map((im) => im.localisation!.boxShare);
  assert.ok(Math.abs(uniform.energy - (shares[0] + shares[1]) / 2) < 1e-12);
  for (const row of L.rows.slice(0, 2)) {
    const mine = scored.filter((e) => e.method === row.method);
    assert.ok(Math.abs(row.pointing - (mine[0].localisation!.pointing + mine[1].localisation!.pointing) / 2) < 1e-12);
    assert.equal(row.n, 2);
  }
  assert.match(r.stdout, /Localisation against lesions\.csv/);
  assert.match(r.stdout, /\| diabetic retinopathy \| layercam/);
  assert.match(await readFile(join(out, 'localisation.md'), 'utf8'), /\| uniform disc/);
  const html = await readFile(join(out, 'index.html'), 'utf8');
  assert.match(html, /<h2>Localisation against lesion boxes<\/h2>/);
  // over every scored overlay and over each photograph without overlay (2 boxes on one photograph, 1 on the other)
  assert.equal((html.match(/<rect class="box"/g) ?? []).length, 2 * 2 + 1 * 2 + (2 + 1), 'boxes drawn over every scored overlay and photograph');
  assert.match(html, /energy in boxes 0\.\d\d \(uniform 0\.\d\d\)/);
  assert.equal((html.match(/<img /g) ?? []).length, 6 + m.images.length);
  // Overlays leave the black corners of the photo as they were, also where the crop square covers them; the disc is coloured.
  const g = imA.geometry;
  const corner = [Math.ceil(g.x) + 2, Math.max(0, Math.ceil(g.y)) + 2];
  assert.ok((corner[0] - 80) ** 2 + (corner[1] - 60) ** 2 > 56 ** 2, `corner ${corner} is outside the disc`);
  for (const e of m.entries) {
    const original = await decodeRgb(e.image);
    const { data, info } = await sharp(join(out, e.overlay)).raw().toBuffer({ resolveWithObject: true });
    assert.deepEqual([info.width, info.height], [160, 120]);
    const at = (d: Uint8Array, ch: number, x: number, y: number) => [...d.subarray((y * 160 + x) * ch, (y * 160 + x) * ch + 3)];
    assert.deepEqual(at(data, info.channels, corner[0], corner[1]), [0, 0, 0], `${e.overlay} corner`);
    assert.notDeepEqual(at(data, info.channels, 80, 60), at(original.data, 3, 80, 60), `${e.overlay} centre is coloured`);
  }
  // --no-disc-mask (commander's discMask: false): the crop square's corner is painted, as before masking existed.
  const unmasked = join(tmp, 'unmasked');
  await explainCommand(modelDir, [join(photos, 'a.png')], { out: unmasked, quiet: true, method: 'gradcam', discMask: false });
  const mu = JSON.parse(await readFile(join(unmasked, 'explain.json'), 'utf8')) as ExplainManifest;
  assert.equal(mu.discMask, false);
  const { data: painted, info: pi } = await sharp(join(unmasked, mu.entries[0].overlay)).raw().toBuffer({ resolveWithObject: true });
  const ci = (corner[1] * 160 + corner[0]) * pi.channels;
  assert.notDeepEqual([...painted.subarray(ci, ci + 3)], [0, 0, 0], 'unmasked corner painted');
});

test('fundus explain --lesions: clear errors, and no partial output', async () => {
  const tmp = await tempDir();
  const modelDir = join(tmp, 'model');
  await tinyModel(modelDir);
  const photo = join(tmp, 'a.png');
  await syntheticFundus(photo, 60, 50);
  const csv = async (name: string, text: string) => {
    const p = join(tmp, name);
    await writeFile(p, text);
    return p;
  };
  const good = await csv('good.csv', 'filename,lesion,x0,y0,x1,y1\na.png,haemorrhage,54,44,66,56\n');
  const cases: [Partial<ExplainCliOptions>, RegExp][] = [
    [{ lesions: await csv('cols.csv', 'filename,lesion,x0,y0\na.png,haemorrhage,1,2\n') }, /cols\.csv:1: not a lesions file: missing columns x1, y1/],
    [{ lesions: await csv('num.csv', 'filename,lesion,x0,y0,x1,y1\na.png,haemorrhage,1,2,3,4\na.png,haemorrhage,1,2,3,x\n') }, /num\.csv:3: y1 is not a number/],
    [{ lesions: await csv('other.csv', 'filename,lesion,x0,y0,x1,y1\nb.png,haemorrhage,1,2,3,4\n') }, /other\.csv: none of the 1 input photographs has .* boxes .*e\.g\. b\.png/],
    [{ lesions: await csv('res.csv', 'filename,lesion,x0,y0,x1,y1\na.png,haemorrhage,1,2,3,4\na.png,haemorrhage,600,300,700,400\n') }, /res\.csv:3: .*outside a\.png, which is 160x120/],
    [{ lesions: good, lesionClass: 'cataract' }, /--lesion-class: the model has no class "cataract"/],
    [{ lesions: good, lesionTypes: 'Exudate' }, /--lesion-types: no 'Exudate' rows/],
    [{ lesions: good, tolerance: '-3' }, /--tolerance must be a number of pixels/],
    [{ tolerance: '10' }, /--tolerance needs --lesions/],
    [{ lesions: join(tmp, 'missing.csv') }, /missing\.csv: cannot read the lesions file/],
  ];
  let k = 0;
  for (const [opts, re] of cases) {
    const out = join(tmp, `o${k++}`);
    await assert.rejects(explainCommand(modelDir, [photo], { out, quiet: true, ...opts }), (err: Error) => {
      assert.ok(err instanceof InputError, `${JSON.stringify(opts)}: ${err.stack}`);
      assert.match(err.message, re);
      return true;
    });
  }
  const left = await readdir(tmp);
  for (let i = 0; i < k; i++) assert.ok(!left.includes(`o${i}`), `o${i} left behind`);
});
