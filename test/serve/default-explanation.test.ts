import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { startServer } from '../../src/serve/start.js';
import type { ExplainResponse, ModelCard } from '../../src/serve/api-types.js';
import type { ExplanationSetting, ModelMetadata } from '../../src/models/metadata.js';
import { buildFixtureModel, realImages } from './fixture.js';

// The fixture's automatic layer is s2b2_out (12×12 at 96 px); the recorded one is a stage deeper (6×6), except for
// diabetic retinopathy, recorded at s2b2_out (as a lesion map head's class is at lesion_map).
const RECORDED: ExplanationSetting = {
  method: 'gradcam',
  layer: 's3b2_out',
  chosenBy: 'test: pointing 0.5 on nothing',
  classes: { 'diabetic retinopathy': { layer: 's2b2_out', chosenBy: 'test: a class of its own' } },
};

async function recordExplanation(dir: string, explanation: unknown): Promise<void> {
  const path = join(dir, 'fundus.json');
  const meta = JSON.parse(await readFile(path, 'utf8')) as ModelMetadata;
  await writeFile(path, JSON.stringify({ ...meta, explanation }, null, 2));
}

let app: FastifyInstance;
let url: string;
let photo: Buffer;

before(async () => {
  const modelDir = await buildFixtureModel();
  await recordExplanation(modelDir, RECORDED);
  ({ app, url } = await startServer({ modelDir, host: '127.0.0.1', port: 0, interactive: false, bodyLimit: 2 * 1024 * 1024 }));
  photo = await readFile(realImages(1)[0]);
});
after(async () => {
  await app?.close();
});

const explain = async (query: string, cls = 'glaucoma'): Promise<ExplainResponse> => {
  const r = await fetch(`${url}v1/explain?class=${encodeURIComponent(cls)}&format=json${query}`, { method: 'POST', body: new Uint8Array(photo), headers: { 'content-type': 'image/jpeg' } });
  assert.equal(r.status, 200, await r.clone().text());
  return (await r.json()) as ExplainResponse;
};

test("the API describes the model's own default heatmap: model info (read by the viewer) and OpenAPI", async () => {
  const card = (await (await fetch(url + 'v1/model')).json()) as ModelCard;
  assert.equal(card.defaultExplainMethod, 'gradcam');
  assert.equal(card.defaultExplainLayer, 's3b2_out');
  assert.equal(card.defaultExplainChosenBy, RECORDED.chosenBy);
  assert.deepEqual(card.defaultExplainLayerByClass, { 'diabetic retinopathy': 's2b2_out' });
  const doc = (await (await fetch(url + 'openapi.json')).json()) as { paths: Record<string, { post: { parameters: { name: string; schema: { default?: string } }[] } }> };
  const method = doc.paths['/v1/explain'].post.parameters.find((p) => p.name === 'method');
  assert.equal(method?.schema.default, 'gradcam');
});

test('/v1/explain without a method makes the recorded method at the recorded layer; a method asked for wins', async () => {
  const byDefault = await explain('');
  assert.equal(byDefault.method, 'gradcam');
  assert.equal(byDefault.layer, 's3b2_out');
  assert.deepEqual([byDefault.heatmap.width, byDefault.heatmap.height], [6, 6]);
  const asked = await explain('&method=layercam');
  assert.equal(asked.method, 'layercam');
  assert.equal(asked.layer, 's3b2_out', 'the layer stays the model\'s own');
  assert.notDeepEqual(asked.heatmap.data, byDefault.heatmap.data);
  const own = await explain('', 'diabetic retinopathy');
  assert.equal(own.layer, 's2b2_out', 'a class with a layer of its own is explained there');
  assert.deepEqual([own.heatmap.width, own.heatmap.height], [12, 12]);
});

test('a recorded layer the network does not have stops the server from starting, naming fundus.json', async () => {
  const modelDir = await buildFixtureModel();
  await recordExplanation(modelDir, { ...RECORDED, layer: 'nope' });
  await assert.rejects(
    startServer({ modelDir, host: '127.0.0.1', port: 0, interactive: false }),
    (e: unknown) => e instanceof Error && e.message.includes(join(modelDir, 'fundus.json')) && /"explanation\.layer": the model has no layer named "nope"/.test(e.message),
  );
});
