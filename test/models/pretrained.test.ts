import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFile, mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initEngine } from '../../src/engine/index.js';
import {
  backboneNames,
  fetchBackboneWeights,
  installVerified,
  loadBackboneModel,
  locateBackboneWeights,
  verifyFiles,
} from '../../src/models/pretrained.js';
import type { BackboneName } from '../../src/models/pretrained.js';
import { InputError } from '../../src/util/errors.js';
import { PROJECT_ROOT, tempDir } from '../helpers.js';

const SHIPPED = join(PROJECT_ROOT, 'pretrained', 'mobilenetv2-1.0');

function sha256(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** A copy of the shipped MobileNetV2 in a temporary folder. */
async function mobilenetCopy(): Promise<string> {
  const dir = join(await tempDir(), 'mobilenetv2');
  await mkdir(dir);
  for (const f of ['model.json', 'weights.bin']) await copyFile(join(SHIPPED, f), join(dir, f));
  return dir;
}

async function flipByte(path: string, at: number): Promise<void> {
  const b = await readFile(path);
  b[at] ^= 0x01;
  await writeFile(path, b);
}

test('the backbones are resnet50 and mobilenetv2', async () => {
  assert.deepEqual(backboneNames().sort(), ['mobilenetv2', 'resnet50']);
  await assert.rejects(
    locateBackboneWeights('vgg16' as BackboneName),
    (e: unknown) => e instanceof InputError && /unknown backbone "vgg16" \(known: resnet50, mobilenetv2\)/.test(e.message),
  );
});

test('the shipped MobileNetV2 locates, verifies and loads at 96 px with 1280 features', async () => {
  await initEngine();
  const w = await locateBackboneWeights('mobilenetv2');
  assert.equal(w.dir, SHIPPED);
  assert.equal(w.backbone, 'mobilenetv2');
  assert.equal(w.weights, 'imagenet');
  assert.equal(w.licence, 'Apache-2.0');
  assert.equal(w.channelOrder, 'rgb');
  assert.deepEqual(w.normalize, { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] });
  assert.match(w.source, /mobilenet_v2_1\.0_224/);
  const whole = Buffer.concat([await readFile(join(SHIPPED, 'model.json')), await readFile(join(SHIPPED, 'weights.bin'))]);
  assert.equal(w.sha256, sha256(whole));
  for (const f of ['LICENSE', 'NOTICE', 'README.md']) assert.ok((await readFile(join(SHIPPED, f), 'utf8')).length > 0, f);
  assert.match(await readFile(join(SHIPPED, 'LICENSE'), 'utf8'), /Apache License\s+Version 2\.0, January 2004/);

  const model = await loadBackboneModel(w, 96);
  assert.deepEqual(model.inputs[0].shape, [null, 96, 96, 3]);
  const x = tf.randomUniform([2, 96, 96, 3], -1, 1, 'float32', 5);
  const y = model.predict(x) as tf.Tensor;
  assert.deepEqual(y.shape, [2, 1280]);
  const v = await y.data();
  assert.ok(v.every(Number.isFinite));
  // ReLU6 then average pooling: features in [0, 6], and not all zero.
  assert.ok(v.every((a) => a >= 0 && a <= 6));
  assert.ok(v.some((a) => a > 0));
  tf.dispose([x, y]);
  model.dispose();
  await assert.rejects(loadBackboneModel(w, 16), (e: unknown) => e instanceof InputError && /at least 32 px/.test(e.message));
});

test('fetching MobileNetV2 only checks the shipped files (no download)', async () => {
  const lines: string[] = [];
  const w = await fetchBackboneWeights('mobilenetv2', { log: (s) => lines.push(s) });
  assert.equal(w.dir, SHIPPED);
  assert.match(lines.join('\n'), /ships with fundus/);
});

test('a damaged copy is refused, naming the file', async () => {
  const dir = await mobilenetCopy();
  const good = await locateBackboneWeights('mobilenetv2', { dir });
  assert.equal(good.dir, dir);

  await flipByte(join(dir, 'weights.bin'), 123_456);
  await assert.rejects(
    locateBackboneWeights('mobilenetv2', { dir }),
    (e: unknown) => e instanceof InputError && e.file === join(dir, 'weights.bin') && /sha256 .* differs/.test(e.message),
  );
  // Damaged after it was located: loading checks the bytes again.
  await assert.rejects(loadBackboneModel(good, 96), (e: unknown) => e instanceof InputError && e.file === dir && /sha256/.test(e.message));

  const other = await mobilenetCopy();
  await flipByte(join(other, 'model.json'), 10);
  await assert.rejects(
    locateBackboneWeights('mobilenetv2', { dir: other }),
    (e: unknown) => e instanceof InputError && e.file === join(other, 'model.json'),
  );
});

test('ResNet-50 absent from an empty cache says how to fetch it', async () => {
  const cacheDir = await tempDir();
  await assert.rejects(
    locateBackboneWeights('resnet50', { cacheDir }),
    (e: unknown) =>
      e instanceof InputError &&
      e.file === join(cacheDir, 'resnet50-imagenet') &&
      e.message.includes(`fundus weights fetch resnet50 --cache-dir ${cacheDir}`),
  );
  const before = process.env.FUNDUS_PRETRAINED_CACHE;
  process.env.FUNDUS_PRETRAINED_CACHE = cacheDir;
  try {
    await assert.rejects(
      locateBackboneWeights('resnet50'),
      (e: unknown) => e instanceof InputError && e.file === join(cacheDir, 'resnet50-imagenet') && /`fundus weights fetch resnet50`/.test(e.message),
    );
  } finally {
    if (before === undefined) delete process.env.FUNDUS_PRETRAINED_CACHE;
    else process.env.FUNDUS_PRETRAINED_CACHE = before;
  }
  assert.deepEqual(await readdir(cacheDir), []);
});

test('installing verified files: a wrong hash fails clearly and leaves nothing behind', async () => {
  const root = await tempDir();
  const src = join(root, 'download');
  await mkdir(src);
  await writeFile(join(src, 'model.json'), '{"a": 1}');
  await writeFile(join(src, 'group1-shard1of1.bin'), new Uint8Array([1, 2, 3, 4]));
  const right = [
    { file: 'model.json', sha256: sha256('{"a": 1}') },
    { file: 'group1-shard1of1.bin', sha256: sha256(new Uint8Array([1, 2, 3, 4])) },
  ];
  const wrong = [right[0], { ...right[1], sha256: '0'.repeat(64) }];
  const cache = join(root, 'cache');
  await mkdir(cache);
  const dest = join(cache, 'resnet50-imagenet');

  await assert.rejects(
    installVerified(src, dest, wrong, { fix: 'nothing was installed' }),
    (e: unknown) =>
      e instanceof InputError &&
      e.file === join(src, 'group1-shard1of1.bin') &&
      /differs from the expected 0{64}/.test(e.message) &&
      /nothing was installed/.test(e.message),
  );
  assert.deepEqual(await readdir(cache), [], 'no folder and no temporary sibling left in the cache');
  await assert.rejects(verifyFiles(src, wrong), (e: unknown) => e instanceof InputError && e.file === join(src, 'group1-shard1of1.bin'));
  await assert.rejects(
    verifyFiles(src, [...right, { file: 'group1-shard2of2.bin', sha256: '0'.repeat(64) }]),
    (e: unknown) => e instanceof InputError && e.file === join(src, 'group1-shard2of2.bin') && /missing/.test(e.message),
  );

  // Right hashes: installed, and the digest covers the files in order.
  await installVerified(src, dest, right);
  assert.deepEqual((await readdir(cache)).sort(), ['resnet50-imagenet']);
  assert.equal(await verifyFiles(dest, right), sha256(Buffer.concat([Buffer.from('{"a": 1}'), Buffer.from([1, 2, 3, 4])])));

  // A failed re-install keeps the installed folder as it was.
  await writeFile(join(src, 'group1-shard1of1.bin'), new Uint8Array([9, 9]));
  await assert.rejects(installVerified(src, dest, right), InputError);
  assert.deepEqual((await readdir(cache)).sort(), ['resnet50-imagenet']);
  assert.deepEqual([...(await readFile(join(dest, 'group1-shard1of1.bin')))], [1, 2, 3, 4]);
});

test('fundus weights list on the command line', async () => {
  const cacheDir = await tempDir();
  const cli = (...args: string[]) =>
    spawnSync(process.execPath, [join(PROJECT_ROOT, 'bin', 'fundus.js'), 'weights', ...args], { encoding: 'utf8' });
  const list = cli('list', '--json', '--cache-dir', cacheDir);
  assert.equal(list.status, 0, list.stderr);
  const rows = JSON.parse(list.stdout) as { name: string; status: string; licence: string; where: string }[];
  const byName = Object.fromEntries(rows.map((r) => [r.name, r]));
  assert.equal(byName.mobilenetv2.status, 'present');
  assert.equal(byName.mobilenetv2.licence, 'Apache-2.0');
  assert.equal(byName.resnet50.status, 'absent');
  assert.equal(byName.resnet50.where, join(cacheDir, 'resnet50-imagenet'));
});
