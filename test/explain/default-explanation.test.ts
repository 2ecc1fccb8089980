import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { initEngine } from '../../src/engine/index.js';
import { DEFAULT_CAM_METHOD, type CamInput } from '../../src/explain/cam.js';
import { explainCommand } from '../../src/explain/commands.js';
import { computeHeatmap, defaultExplanation, explainerFor, layerOfClass } from '../../src/explain/explainer.js';
import { bestLocalisingMethod, describeLocalisation, type LocalisationReport, type LocalisationRow } from '../../src/explain/localisation.js';
import type { ExplainManifest } from '../../src/explain/run.js';
import { loadModel } from '../../src/models/io.js';
import type { ExplanationSetting, ModelMetadata } from '../../src/models/metadata.js';
import { InputError } from '../../src/util/errors.js';
import { pathKind } from '../../src/util/owned.js';
import { VIETAI_DIR, tempDir } from '../helpers.js';
import { tinyModel } from './tiny-model.js';

const PHOTO = join(VIETAI_DIR, 'train', 'c24a1b14d253.jpg');

/** The tiny model (automatic layer: last_conv, 8×8) with `explanation` written into its fundus.json. */
async function modelWith(explanation: unknown): Promise<string> {
  const dir = join(await tempDir('fundus-default-explanation-'), 'model');
  await tinyModel(dir);
  const path = join(dir, 'fundus.json');
  const meta = JSON.parse(await readFile(path, 'utf8')) as ModelMetadata;
  await writeFile(path, JSON.stringify({ ...meta, explanation }, null, 2));
  return dir;
}

const RECORDED: ExplanationSetting = { method: 'gradcam', layer: 'conv2', chosenBy: 'test: a layer the automatic rule does not pick' };

/** A deterministic input of the tiny model's shape. */
function input(): CamInput {
  const data = new Float32Array(32 * 32 * 3);
  for (let i = 0; i < data.length; i++) data[i] = Math.sin(i * 0.37) * 1.5;
  return { data, size: 32, channels: 3 };
}

test("without a recorded explanation a model keeps fundus's global default: layercam at the automatic layer", async () => {
  await initEngine();
  const dir = join(await tempDir('fundus-default-explanation-'), 'model');
  await tinyModel(dir);
  const model = await loadModel(dir);
  assert.deepEqual(defaultExplanation(model), { method: DEFAULT_CAM_METHOD });
  assert.equal(explainerFor(model).layerName, 'last_conv');
});

test("a model's recorded method and layer are its default in the library; a named method or layer wins", async () => {
  await initEngine();
  const model = await loadModel(await modelWith(RECORDED));
  assert.deepEqual(defaultExplanation(model), RECORDED);
  const explainer = explainerFor(model);
  assert.equal(explainer.layerName, 'conv2');
  assert.deepEqual(explainer.cells, [16, 16]);
  assert.equal(explainerFor(model, { layer: 'last_conv' }).layerName, 'last_conv');

  const image = input();
  const byDefault = await computeHeatmap(model, image, 1);
  const gradcam = explainer.explain([image], [{ image: 0, classIndex: 1 }], 'gradcam')[0].heatmap;
  const layercam = explainer.explain([image], [{ image: 0, classIndex: 1 }], 'layercam')[0].heatmap;
  assert.deepEqual([byDefault.width, byDefault.height], [16, 16]);
  assert.deepEqual(byDefault.data, gradcam.data, 'the default heatmap is the recorded method at the recorded layer');
  assert.notDeepEqual(gradcam.data, layercam.data, 'the two methods give different maps here, so the check above can fail');
  assert.deepEqual((await computeHeatmap(model, image, 1, 'layercam')).data, layercam.data);
  const named = await computeHeatmap(model, image, 1, 'gradcam', { layer: 'last_conv' });
  assert.deepEqual([named.width, named.height], [8, 8]);
});

test("fundus explain uses the model's recorded method and layer unless --method or --layer names others", async () => {
  await initEngine();
  const modelDir = await modelWith(RECORDED);
  const tmp = await tempDir('fundus-default-explanation-');
  const run = async (name: string, opts: { method?: string; layer?: string }) => {
    const out = join(tmp, name);
    await explainCommand(modelDir, [PHOTO], { out, quiet: true, raw: 'none', classes: '1', ...opts });
    return JSON.parse(await readFile(join(out, 'explain.json'), 'utf8')) as ExplainManifest;
  };
  const byDefault = await run('default', {});
  assert.deepEqual(byDefault.methods, ['gradcam']);
  assert.equal(byDefault.layer, 'conv2');
  assert.deepEqual(byDefault.entries.map((e) => e.method), ['gradcam']);
  const methodNamed = await run('method', { method: 'layercam' });
  assert.deepEqual(methodNamed.methods, ['layercam']);
  assert.equal(methodNamed.layer, 'conv2', 'the recorded layer stays when only the method is named');
  const both = await run('both', { method: 'hirescam', layer: 'last_conv' });
  assert.deepEqual(both.methods, ['hirescam']);
  assert.equal(both.layer, 'last_conv');
});

test('a recorded method or layer the model cannot use is refused naming its fundus.json, and explain writes nothing', async () => {
  await initEngine();
  const refused = (re: RegExp) => (e: unknown) => e instanceof InputError && /fundus\.json: "explanation\./.test(e.message) && re.test(e.message);

  const badMethod = await modelWith({ ...RECORDED, method: 'gradcamm' });
  const m = await loadModel(badMethod);
  assert.throws(() => defaultExplanation(m), refused(/unknown method "gradcamm" \(known: gradcam, /));
  assert.throws(() => explainerFor(m), refused(/unknown method/), 'a bad method refuses the model even where only its layer is read');
  const out = join(await tempDir('fundus-default-explanation-'), 'out');
  await assert.rejects(explainCommand(badMethod, [PHOTO], { out, quiet: true }), refused(/unknown method "gradcamm"/));
  assert.equal(await pathKind(out), 'missing');
  // with only --method named, the recorded layer is still read: the broken record is refused all the same
  await assert.rejects(explainCommand(badMethod, [PHOTO], { out, quiet: true, method: 'gradcam' }), refused(/unknown method/));

  const noLayer = await loadModel(await modelWith({ ...RECORDED, layer: 'nope' }));
  assert.throws(() => defaultExplanation(noLayer), refused(/the model has no layer named "nope"/));
  assert.throws(() => explainerFor(noLayer), refused(/no layer named "nope"/));
  // without the network (the server's event loop) only the method can be checked
  assert.deepEqual(defaultExplanation({ dir: noLayer.dir, metadata: noLayer.metadata }).layer, 'nope');
  const flat = await loadModel(await modelWith({ ...RECORDED, layer: 'gap' }));
  assert.throws(() => defaultExplanation(flat), refused(/layer "gap" outputs shape \[,32\], not a spatial feature map/));
  const twice = await loadModel(await modelWith({ ...RECORDED, layer: 'conv2,conv2' }));
  assert.throws(() => defaultExplanation(twice), refused(/named twice/));
});

test('a class with a layer of its own is explained there, the others at the default layer, in one call', async () => {
  await initEngine();
  const dr = 'diabetic retinopathy';
  const own = { ...RECORDED, classes: { [dr]: { layer: 'last_conv', chosenBy: 'test: the class a lesion map head would feed' } } };
  const modelDir = await modelWith(own);
  const model = await loadModel(modelDir);
  const k = model.metadata.classes.indexOf(dr);
  assert.deepEqual(defaultExplanation(model, k), { method: 'gradcam', layer: 'last_conv', chosenBy: own.classes[dr].chosenBy });
  assert.deepEqual(defaultExplanation(model, 0), { method: 'gradcam', layer: 'conv2', chosenBy: RECORDED.chosenBy });
  const explainer = explainerFor(model);
  assert.equal(explainer.layerName, `conv2; ${dr}: last_conv`);
  assert.deepEqual([layerOfClass(explainer, 0), layerOfClass(explainer, k)], ['conv2', 'last_conv']);
  assert.deepEqual(explainer.cells, [16, 16]);
  assert.equal(explainerFor(model, { layer: 'conv2' }).layerName, 'conv2', 'a named layer is every class\'s');

  const image = input();
  const targets = [0, k, 2].map((classIndex) => ({ image: 0, classIndex }));
  const routed = explainer.explain([image], targets, 'gradcam');
  const atDefault = explainerFor(model, { layer: 'conv2' }).explain([image], targets, 'gradcam');
  const atOwn = explainerFor(model, { layer: 'last_conv' }).explain([image], targets, 'gradcam');
  assert.deepEqual(routed.map((r) => r.classIndex), [0, k, 2]);
  assert.deepEqual(routed[1].heatmap, atOwn[1].heatmap);
  for (const i of [0, 2]) assert.deepEqual(routed[i].heatmap, atDefault[i].heatmap);
  assert.deepEqual([(await computeHeatmap(model, image, k)).width, (await computeHeatmap(model, image, 0)).width], [8, 16]);

  // fundus explain says which layer made each map
  const out = join(await tempDir('fundus-default-explanation-'), 'out');
  await explainCommand(modelDir, [PHOTO], { out, quiet: true, raw: 'none', classes: `0,${k}` });
  const manifest = JSON.parse(await readFile(join(out, 'explain.json'), 'utf8')) as ExplainManifest;
  assert.deepEqual(manifest.entries.map((e) => [e.className, e.layer]), [[model.metadata.classes[0], 'conv2'], [dr, 'last_conv']]);
  assert.match(await readFile(join(out, 'index.html'), 'utf8'), new RegExp(`${dr}</b> — gradcam at <code>last_conv</code>`));

  const refused = (re: RegExp) => (e: unknown) => e instanceof InputError && /fundus\.json: "explanation\./.test(e.message) && re.test(e.message);
  const noClass = await loadModel(await modelWith({ ...RECORDED, classes: { cataract: { layer: 'conv2', chosenBy: 'x' } } }));
  assert.throws(() => explainerFor(noClass), refused(/no class "cataract"/));
  const noLayer = await loadModel(await modelWith({ ...RECORDED, classes: { [dr]: { layer: 'nope', chosenBy: 'x' } } }));
  assert.throws(() => defaultExplanation(noLayer, 0), refused(/"explanation\.classes\.diabetic retinopathy\.layer": the model has no layer named "nope"/));
  await assert.rejects(loadModel(await modelWith({ ...RECORDED, classes: { [dr]: { layer: 'conv2' } } })), (e: unknown) => e instanceof InputError && /explanation\.classes\.diabetic retinopathy\.chosenBy/.test(e.message));
});

test('the localisation benchmark records the method with the highest energy ratio whose interval clears the centre prior', () => {
  const row = (method: string, pointing: number, ratio: number, ci: [number, number] | null, className = 'diabetic retinopathy'): LocalisationRow => ({
    method,
    className,
    direction: 'for',
    n: 43,
    pointing,
    pointingCi: ci && [pointing - 0.14, pointing + 0.14],
    energy: ratio * 0.08,
    energyCi: ci && [ci[0] * 0.08, ci[1] * 0.08],
    energyRatio: ratio,
    energyRatioCi: ci,
  });
  const report = (rows: LocalisationRow[]): LocalisationReport => ({
    lesions: 'lesions.csv',
    format: 'codras',
    lesionTypes: [],
    lesionClass: 'diabetic retinopathy',
    tolerancePx: 15,
    centrePriorSigma: 0.25,
    imagesWithBoxes: 43,
    imagesWithoutBoxes: 0,
    boxes: 400,
    bootstrap: { resamples: 500, level: 0.95, seed: 1, unit: 'photograph' },
    rows,
  });
  const baselines = [row('centre prior', 0.37, 1.22, [1.14, 1.3]), row('uniform disc', 0.18, 1, [1, 1])];
  // models/default at block_5_add (benchmarks/results/localisation-layers.md): gradcam, though it points less often than the centre prior
  const measured = report([row('layercam', 0.16, 1.13, [1.04, 1.27]), row('gradcam', 0.35, 1.76, [1.46, 2.16]), ...baselines]);
  assert.equal(bestLocalisingMethod(measured)?.method, 'gradcam');
  assert.equal(
    describeLocalisation(bestLocalisingMethod(measured)!, measured),
    'pointing 0.35 [0.21, 0.49], energy in boxes 1.76× [1.46, 2.16] the uniform disc (centre prior 0.37, 1.22×) on 43 photographs, diabetic retinopathy',
  );
  // a higher mean whose interval reaches below the centre prior's ratio does not qualify; the steadier one does
  assert.equal(bestLocalisingMethod(report([row('hirescam', 0.3, 1.9, [1.1, 2.8]), row('gradcam', 0.3, 1.5, [1.3, 1.7]), ...baselines]))?.method, 'gradcam');
  // nothing clears it (the 224 px model), no intervals, or rows of another class only: nothing to record
  assert.equal(bestLocalisingMethod(report([row('gradcam', 0.26, 1.25, [1.04, 1.56]), row('layercam', 0.28, 1.05, [0.93, 1.24]), ...baselines])), undefined);
  assert.equal(bestLocalisingMethod(report([row('gradcam', 0.35, 1.76, null), row('centre prior', 0.37, 1.22, null)])), undefined);
  assert.equal(bestLocalisingMethod(report([row('gradcam', 0.35, 1.76, [1.46, 2.16], 'glaucoma'), row('centre prior', 0.37, 1.22, [1.14, 1.3], 'glaucoma')])), undefined);
});
