import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PROJECT_ROOT, tempDir } from '../helpers.js';
import { collectImages } from '../../src/data/image-files.js';
import { dicomInfoOf, openPhoto } from '../../src/data/photo-source.js';
import { decodeRgb, DEFAULT_PREPROCESS, preprocessImage, type PreprocessSettings } from '../../src/data/preprocess.js';
import { InputError } from '../../src/util/errors.js';

const DIR = join(PROJECT_ROOT, 'test', 'fixtures', 'dicom');
const fx = (name: string) => join(DIR, name);
/** The made-up identifiers scripts/make-dicom-fixtures.ts writes into every fixture. */
const IDENTIFIERS = ['Testpatient', 'Erika', 'PID-0815-4711', '19510704', '1951-07-04', 'ACC-98765'];

function assertNoIdentifiers(text: string): void {
  for (const id of IDENTIFIERS) assert.ok(!text.includes(id), `a patient identifier (${id}) leaked into: ${text.slice(0, 300)}`);
}

function dcmdump(path: string): string {
  const r = spawnSync('dcmdump', ['+P', '0002,0010', '+P', '0008,0016', '+P', '0028,0008', '+P', '0020,0062', '+P', '0020,0060', path], { encoding: 'utf8' });
  assert.equal(r.status, 0, `dcmdump rejects ${path}: ${r.stderr}`);
  assert.ok(!/^E:/m.test(r.stderr), `dcmdump reports errors in ${path}: ${r.stderr}`);
  return r.stdout;
}

/** DCMTK's own decoding of a frame (dcmj2pnm, PNG): the reference pixels fundus must reproduce. */
async function dcmtkPixels(path: string, frame = 1): Promise<Buffer> {
  const out = join(await tempDir('fundus-dcmtk-'), 'frame.png');
  execFileSync('dcmj2pnm', ['+on', '+F', String(frame), path, out]);
  return (await decodeRgb(out)).data;
}

test('the fixtures are valid DICOM as DCMTK reads them, with the SOP classes and transfer syntaxes they stand for', () => {
  const op = dcmdump(fx('op-jpeg-baseline.dcm'));
  assert.match(op, /JPEGBaseline/);
  assert.match(op, /OphthalmicPhotography8BitImageStorage/);
  assert.match(op, /ImageLaterality\s*$/m);
  assert.match(dcmdump(fx('sc-rgb-uncompressed.dcm')), /SecondaryCaptureImageStorage/);
  const mf = dcmdump(fx('sc-multiframe-planar.dcm'));
  assert.match(mf, /MultiframeTrueColorSecondaryCaptureImageStorage/);
  assert.match(mf, /\[2\]\s+#\s+2, 1 NumberOfFrames/);
  assert.match(dcmdump(fx('op-jpeg2000-unsupported.dcm')), /JPEG2000LosslessOnly/);
});

test('a JPEG Baseline DICOM photograph is the JPEG inside it: the same bytes to the decoder, the same network input', async () => {
  const opened = await openPhoto(fx('op-jpeg-baseline.dcm'));
  assert.ok(Buffer.isBuffer(opened.source));
  const jpeg = await readFile(fx('op-jpeg-inside.jpg'));
  // DICOM pads a value to an even length: one zero byte after the JPEG's end of image at most
  assert.deepEqual(opened.source.subarray(0, jpeg.length), jpeg);
  assert.ok(opened.source.length - jpeg.length <= 1 && opened.source.subarray(jpeg.length).every((b) => b === 0));
  const lanczos: PreprocessSettings = { ...DEFAULT_PREPROCESS, channels: 'rgb', size: 96, resize: 'lanczos3' };
  for (const settings of [DEFAULT_PREPROCESS, lanczos]) {
    const a = await preprocessImage(fx('op-jpeg-baseline.dcm'), settings);
    const b = await preprocessImage(fx('op-jpeg-inside.jpg'), settings);
    assert.deepEqual(a.geometry, b.geometry);
    assert.deepEqual(a.data, b.data, `${settings.resize}: the network input differs`);
  }
});

test('uncompressed RGB, planar multi-frame and JPEG Lossless (made by DCMTK) decode to DCMTK\'s own pixels', async () => {
  assert.deepEqual((await decodeRgb(fx('sc-rgb-uncompressed.dcm'))).data, await dcmtkPixels(fx('sc-rgb-uncompressed.dcm')));
  for (const frame of [1, 2]) {
    const ours = await decodeRgb(`${fx('sc-multiframe-planar.dcm')}#frame-${frame}`);
    assert.deepEqual(ours.data, await dcmtkPixels(fx('sc-multiframe-planar.dcm'), frame), `frame ${frame}`);
  }
  const work = await tempDir('fundus-lossless-');
  for (const [flag, uid] of [['+e1', '1.2.840.10008.1.2.4.70'], ['+el', '1.2.840.10008.1.2.4.57']]) {
    const lossless = join(work, `lossless${flag}.dcm`);
    execFileSync('dcmcjpeg', [flag, fx('sc-rgb-uncompressed.dcm'), lossless]);
    assert.ok(dcmdump(lossless).includes(uid) || (await readFile(lossless)).includes(uid));
    assert.deepEqual((await decodeRgb(lossless)).data, (await decodeRgb(fx('sc-rgb-uncompressed.dcm'))).data, `JPEG Lossless ${uid}`);
  }
});

test('folders give DICOM files, one photograph per frame of a multi-frame file; a frame that does not exist is an error naming it', async () => {
  const found = await collectImages([DIR]);
  assert.deepEqual(
    found.map((p) => p.slice(DIR.length + 1)),
    ['op-jpeg-baseline.dcm', 'op-jpeg-inside.jpg', 'op-jpeg2000-unsupported.dcm', 'sc-multiframe-planar.dcm#frame-1', 'sc-multiframe-planar.dcm#frame-2', 'sc-rgb-uncompressed.dcm'],
  );
  // a frame named by hand is kept as given
  assert.deepEqual(await collectImages([`${fx('sc-multiframe-planar.dcm')}#frame-2`]), [`${fx('sc-multiframe-planar.dcm')}#frame-2`]);
  await assert.rejects(decodeRgb(`${fx('sc-multiframe-planar.dcm')}#frame-3`), (e: Error) => e instanceof InputError && /frame 3 does not exist: the file has 2 frames/.test(e.message));
  await assert.rejects(decodeRgb(fx('sc-multiframe-planar.dcm')), (e: Error) => e instanceof InputError && /#frame-1 … #frame-2/.test(e.message));
});

test('an unsupported transfer syntax is an InputError naming the file, the UID and its name, and no patient identifier', async () => {
  const err = await decodeRgb(fx('op-jpeg2000-unsupported.dcm')).then(
    () => assert.fail('decoded a JPEG 2000 file'),
    (e: Error) => e,
  );
  assert.ok(err instanceof InputError);
  assert.equal(err.file, fx('op-jpeg2000-unsupported.dcm'));
  assert.match(err.message, /1\.2\.840\.10008\.1\.2\.4\.90 \(JPEG 2000 Image Compression \(Lossless Only\)\) is not supported/);
  assertNoIdentifiers(err.message);
});

test('a truncated DICOM file is an InputError that names the file and quotes no patient identifier', async () => {
  const work = await tempDir('fundus-dicom-bad-');
  const whole = await readFile(fx('sc-rgb-uncompressed.dcm'));
  for (const [name, bytes] of [
    ['cut-in-pixels.dcm', whole.subarray(0, whole.length - 5000)],
    ['cut-in-header.dcm', whole.subarray(0, 400)],
  ] as const) {
    const path = join(work, name);
    await writeFile(path, bytes);
    const err = await decodeRgb(path).then(
      () => assert.fail(`decoded ${name}`),
      (e: Error) => e,
    );
    assert.ok(err instanceof InputError, `${name}: ${err.message}`);
    assert.ok(err.message.startsWith(path), err.message);
    assertNoIdentifiers(err.message);
  }
});

test('laterality, acquisition date and the SOP Instance UID are read; patient identifiers only when asked for', async () => {
  const op = await dicomInfoOf(fx('op-jpeg-baseline.dcm'));
  assert.deepEqual(
    { laterality: op?.laterality, date: op?.acquisitionDate, sop: op?.sopInstanceUid, cls: op?.sopClassUid },
    { laterality: 'R', date: '2024-03-01', sop: '1.2.826.0.1.3680043.10.1234.21.1.1', cls: '1.2.840.10008.5.1.4.1.1.77.1.5.1' },
  );
  assertNoIdentifiers(JSON.stringify(op));
  assert.equal((await dicomInfoOf(fx('sc-rgb-uncompressed.dcm')))?.laterality, 'L'); // (0020,0060) Laterality when ImageLaterality is absent
  assert.equal((await dicomInfoOf(`${fx('sc-multiframe-planar.dcm')}#frame-2`))?.frame, 2);
  assert.equal(await dicomInfoOf(fx('op-jpeg-inside.jpg')), undefined);
  const shown = await dicomInfoOf(fx('op-jpeg-baseline.dcm'), { identifiers: true });
  assert.deepEqual(shown?.patient, { patientName: 'Testpatient^Erika^Marie', patientId: 'PID-0815-4711', birthDate: '1951-07-04', sex: 'F', accessionNumber: 'ACC-98765' });
});
