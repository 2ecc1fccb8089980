// Makes the DICOM test fixtures (test/fixtures/dicom/) from the project's sample photographs with dcmjs, the way a
// fundus camera or a PACS export stores them. Run: npx tsx scripts/make-dicom-fixtures.ts. The patient identifiers
// are made up; tests check that they never reach an output.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import dcmjs from 'dcmjs';
import sharp from 'sharp';

const OUT = 'test/fixtures/dicom';
const SAMPLES = ['samples/images/004f7ec58fad.jpg', 'samples/images/01cd56fe2454.jpg'];
/** Small enough to commit, large enough that the disc crop and the gradability gate work as on real photographs. */
const SIDE = 256;

export const FAKE_PATIENT = { PatientName: 'Testpatient^Erika^Marie', PatientID: 'PID-0815-4711', PatientBirthDate: '19510704', PatientSex: 'F', AccessionNumber: 'ACC-98765' };

const OP_8BIT = '1.2.840.10008.5.1.4.1.1.77.1.5.1';
const SECONDARY_CAPTURE = '1.2.840.10008.5.1.4.1.1.7';
const MF_TRUE_COLOR_SC = '1.2.840.10008.5.1.4.1.1.7.4';
const JPEG_BASELINE = '1.2.840.10008.1.2.4.50';
const EXPLICIT_LE = '1.2.840.10008.1.2.1';
const JPEG_2000 = '1.2.840.10008.1.2.4.90';
const ROOT = '1.2.826.0.1.3680043.10.1234.21';

async function sampleJpeg(path: string): Promise<{ jpeg: Buffer; rgb: Buffer; width: number; height: number }> {
  const resized = sharp(readFileSync(path)).rotate().resize(SIDE, SIDE, { fit: 'inside' });
  // subsampled chroma, as cameras write JPEG baseline into DICOM (PhotometricInterpretation YBR_FULL_422)
  const jpeg = await resized.clone().jpeg({ quality: 90, chromaSubsampling: '4:2:0' }).toBuffer();
  const { data, info } = await sharp(jpeg).raw().toBuffer({ resolveWithObject: true });
  return { jpeg, rgb: data, width: info.width, height: info.height };
}

function write(name: string, transferSyntax: string, dataset: Record<string, unknown>): void {
  const meta = {
    FileMetaInformationVersion: new Uint8Array([0, 1]).buffer,
    MediaStorageSOPClassUID: dataset.SOPClassUID,
    MediaStorageSOPInstanceUID: dataset.SOPInstanceUID,
    TransferSyntaxUID: transferSyntax,
    ImplementationClassUID: `${ROOT}.0`,
    ImplementationVersionName: 'FUNDUS_FIXTURES',
  };
  const dict = new dcmjs.data.DicomDict(dcmjs.data.DicomMetaDictionary.denaturalizeDataset(meta));
  dict.dict = dcmjs.data.DicomMetaDictionary.denaturalizeDataset(dataset);
  // dcmjs leaves Pixel Data's VR open ("OB or OW"); encapsulated (JPEG...) pixel data is OB, 8-bit native data OB too.
  (dict.dict as Record<string, { vr: string }>)['7FE00010'].vr = 'OB';
  const path = join(OUT, name);
  writeFileSync(path, Buffer.from(dict.write({ fragmentMultiframe: false })));
  console.log(`wrote ${path}`);
}

function common(n: number, sopClass: string, extra: Record<string, unknown>): Record<string, unknown> {
  return {
    SOPClassUID: sopClass,
    SOPInstanceUID: `${ROOT}.${n}.1`,
    StudyInstanceUID: `${ROOT}.${n}.2`,
    SeriesInstanceUID: `${ROOT}.${n}.3`,
    StudyDate: '20240301',
    ContentDate: '20240301',
    AcquisitionDate: '20240301',
    StudyID: '1',
    SeriesNumber: '1',
    InstanceNumber: '1',
    ...FAKE_PATIENT,
    ...extra,
  };
}

function bufferOf(b: Buffer): ArrayBuffer {
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
}

async function main(): Promise<void> {
  mkdirSync(OUT, { recursive: true });
  const [a, b] = await Promise.all(SAMPLES.map(sampleJpeg));
  // the JPEG inside the Ophthalmic Photography file, for the test that the two predict alike
  writeFileSync(join(OUT, 'op-jpeg-inside.jpg'), a.jpeg);
  const image = (s: typeof a, photometric: string, extra: Record<string, unknown> = {}) => ({
    Rows: s.height,
    Columns: s.width,
    SamplesPerPixel: 3,
    PhotometricInterpretation: photometric,
    PlanarConfiguration: 0,
    BitsAllocated: 8,
    BitsStored: 8,
    HighBit: 7,
    PixelRepresentation: 0,
    ...extra,
  });
  write(
    'op-jpeg-baseline.dcm',
    JPEG_BASELINE,
    common(1, OP_8BIT, {
      Modality: 'OP',
      ImageLaterality: 'R',
      ...image(a, 'YBR_FULL_422', { LossyImageCompression: '01', LossyImageCompressionMethod: 'ISO_10918_1' }),
      PixelData: [bufferOf(a.jpeg)],
    }),
  );
  write(
    'sc-rgb-uncompressed.dcm',
    EXPLICIT_LE,
    common(2, SECONDARY_CAPTURE, { Modality: 'OT', Laterality: 'L', ConversionType: 'WSD', ...image(b, 'RGB'), PixelData: [bufferOf(b.rgb)] }),
  );
  // Two frames, the first sample then the second at the same size, planar (RRR…GGG…BBB…) as some exporters write.
  const bSame = await sharp(b.rgb, { raw: { width: b.width, height: b.height, channels: 3 } }).resize(a.width, a.height, { fit: 'fill' }).raw().toBuffer();
  const planar = (rgb: Buffer) => {
    const n = rgb.length / 3;
    const out = Buffer.alloc(rgb.length);
    for (let i = 0; i < n; i++) for (let c = 0; c < 3; c++) out[c * n + i] = rgb[3 * i + c];
    return out;
  };
  write(
    'sc-multiframe-planar.dcm',
    EXPLICIT_LE,
    common(3, MF_TRUE_COLOR_SC, {
      Modality: 'OT',
      ImageLaterality: 'L',
      NumberOfFrames: '2',
      ...image(a, 'RGB', { PlanarConfiguration: 1 }),
      PixelData: [bufferOf(Buffer.concat([planar(a.rgb), planar(bSame)]))],
    }),
  );
  write(
    'op-jpeg2000-unsupported.dcm',
    JPEG_2000,
    common(4, OP_8BIT, { Modality: 'OP', ImageLaterality: 'R', ...image(a, 'YBR_RCT'), PixelData: [bufferOf(Buffer.from('not really JPEG 2000 codestream data'.padEnd(64, '.')))] }),
  );
}

await main();
