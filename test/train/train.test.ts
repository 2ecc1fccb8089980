import { test } from 'node:test';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initEngine } from '../../src/engine/index.js';
import { loadModel } from '../../src/models/io.js';
import { predictTensor, stackImages } from '../../src/models/predict.js';
import { predictFiles } from '../../src/models/predictor.js';
import { preprocessImage } from '../../src/data/preprocess.js';
import { trainModel } from '../../src/train/train.js';
import type { TrainOptions } from '../../src/train/train.js';
import { readState, saveCheckpoint } from '../../src/train/checkpoint.js';
import { CHECKPOINT_DIR } from '../../src/train/loop.js';
import { tinyDataset, tinyTrainOptions } from './fixtures.js';
import { PROJECT_ROOT } from '../helpers.js';
import { InputError } from '../../src/util/errors.js';
import { readDataset } from '../../src/data/csv.js';
import { SPLIT_DEFAULTS, splitDataset } from '../../src/data/split-dataset.js';

class SimulatedKill extends Error {}

const base = (tag: string): Promise<TrainOptions> => tinyTrainOptions(tag);

async function weightsOf(dir: string): Promise<Float32Array> {
  const b = await readFile(join(dir, 'weights.bin'));
  return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
}

test('a tiny real training run: the loss falls, the model directory is complete and predicts as saved', async () => {
  await initEngine();
  const opts = { ...(await base('fall')), epochs: 6, lr: 1e-2, augment: false as const };
  const r = await trainModel(opts);
  assert.equal(r.history.length, 6);
  assert.ok(r.history[5].loss < r.history[0].loss * 0.9, `loss ${r.history.map((h) => h.loss.toFixed(3)).join(' → ')}`);
  const files = (await readdir(opts.out)).sort();
  assert.ok(files.includes('split.json') && files.includes('history.csv') && files.some((f) => f.startsWith('events.out.tfevents.')));
  const m = await loadModel(opts.out);
  assert.equal(m.metadata.thresholds.length, 7);
  assert.match(m.metadata.thresholdPolicy, /max-f1 on validation/);
  assert.ok(m.metadata.metrics?.test && m.metadata.metrics?.validation);
  assert.equal(m.metadata.trainingData?.imageCount, r.metadata.trainingData?.imageCount);
  assert.deepEqual(m.metadata.training, { optimizer: 'adam', lr: 1e-2, minLr: 2e-4, warmupEpochs: 0, weightDecay: 0, batchSize: 4, epochs: 6, augment: false, seed: 7 });
  // Running the finished command again only finalises: same weights, and the whole run's speed, not this process's.
  const again = await trainModel(opts);
  assert.ok(Number.isFinite(r.imagesPerSecond) && again.imagesPerSecond === r.imagesPerSecond, `${again.imagesPerSecond} vs ${r.imagesPerSecond}`);
  assert.deepEqual(again.history, r.history);
  // predictFiles preprocesses with the stored settings: same as preprocessing by hand and predicting the tensor.
  const split = JSON.parse(await readFile(join(opts.out, 'split.json'), 'utf8'));
  const files2 = split.parts.test.slice(0, 3).map((f: string) => join(opts.images!, f));
  const viaFiles = await predictFiles(m, files2, { batchSize: 2 });
  const x = stackImages(await Promise.all(files2.map(async (f: string) => (await preprocessImage(f, m.metadata.preprocess)).data)), m.metadata.inputShape);
  // Batches of 2 + 1 against one of 3: oneDNN may block a convolution differently for another batch size (it does
  // on AVX2), which moves the last float bits, never more.
  const byHand = predictTensor(m, x);
  viaFiles.forEach((p, i) => assert.ok(Math.abs(p - byHand[i]) <= 1e-6, `${p} vs ${byHand[i]}`));
  x.dispose();
  // The run directory keeps the history (CSV + TensorBoard) and the best checkpoint.
  const runFiles = await readdir(opts.runDir!);
  assert.ok(runFiles.includes('history.csv') && runFiles.includes('best') && runFiles.includes(CHECKPOINT_DIR));
});

test('fine-tuning at a larger input (progressive resizing): same preprocessing but the new side, starting weights copied', async () => {
  await initEngine();
  const opts = { ...(await base('grow')), epochs: 1 };
  await trainModel(opts);
  const grown = { ...opts, out: opts.out + '-32', runDir: opts.runDir + '-32', initFrom: opts.out, imageSize: 32, lr: 1e-12 };
  const r = await trainModel(grown);
  const small = await loadModel(opts.out);
  assert.deepEqual(r.metadata.preprocess, { ...small.metadata.preprocess, size: 32 });
  assert.deepEqual(r.metadata.inputShape, [32, 32, 3]);
  const kernel = (m: typeof small) => m.network.getLayer('conv1').getWeights()[0].dataSync();
  const after = await loadModel(grown.out);
  const a = kernel(small);
  const b = kernel(after);
  assert.ok(a.every((v, i) => Math.abs(v - b[i]) < 1e-6), 'conv1 kernel should be the init model\'s (learning rate ~0)');
});

test('killed mid-epoch, a resumed run continues where it stopped and ends with the same weights', async () => {
  await initEngine();
  const opts = { ...(await base('resume')), checkpointBatches: 1 };
  let fullSteps = 0;
  const full = await trainModel({ ...opts, out: opts.out + '-full', runDir: opts.runDir + '-full', onBatch: () => void fullSteps++ });

  // Kill during the second epoch, after batch 2 (batches are 0-based; 4-image batches of ~14 images).
  let steps = 0;
  await assert.rejects(
    trainModel({
      ...opts,
      onBatch: ({ epoch, batch }) => {
        steps++;
        if (epoch === 1 && batch === 1) throw new SimulatedKill('killed');
      },
    }),
    SimulatedKill,
  );
  const state = await readState(join(opts.runDir!, CHECKPOINT_DIR));
  assert.ok(state && state.epoch === 1 && state.batch === 1, `checkpoint at epoch ${state?.epoch} batch ${state?.batch}`);
  await assert.rejects(stat(opts.out)); // nothing written to the model directory yet

  const seen: string[] = [];
  const resumed = await trainModel({ ...opts, onBatch: ({ epoch, batch }) => void seen.push(`${epoch}:${batch}`) });
  assert.equal(seen[0], '1:1', 'resumed at the batch after the last checkpoint, not at the start');
  // The step that was killed before its checkpoint is the only one done twice.
  assert.equal(steps + seen.length, fullSteps + 1);
  assert.deepEqual(resumed.history.map((h) => h.loss), full.history.map((h) => h.loss));
  assert.deepEqual(await weightsOf(opts.out), await weightsOf(opts.out + '-full'));
});

test('a crash while writing a checkpoint leaves the previous one intact', async () => {
  await initEngine();
  const opts = await base('atomic');
  await trainModel({ ...opts, epochs: 1 });
  const dir = join(opts.runDir!, CHECKPOINT_DIR);
  const before = await readdir(dir);
  const state = (await readState(dir))!;
  const weights = await weightsOf(dir);
  const m = await loadModel(dir);
  // An optimiser whose state cannot be read part-way through the save.
  const broken = { getWeights: async () => [{ name: 'iter', tensor: tf.scalar(1) }, { name: 'm', get tensor(): tf.Tensor { throw new Error('disk full'); } }], getClassName: () => 'Adam' } as unknown as tf.Optimizer;
  await assert.rejects(saveCheckpoint(dir, m.network, m.metadata, broken, { ...state, epoch: 99 }), /disk full/);
  const failingNetwork = { save: async () => { throw new Error('disk full'); } } as unknown as typeof m.network;
  await assert.rejects(saveCheckpoint(dir, failingNetwork, m.metadata, tf.train.adam(), { ...state, epoch: 99 }), /disk full/);
  assert.deepEqual(await readdir(dir), before);
  assert.equal((await readState(dir))!.epoch, state.epoch);
  assert.deepEqual(await weightsOf(dir), weights);
  assert.deepEqual((await readdir(opts.runDir!)).filter((f) => f.endsWith('.tmp')), []);
});

test('resuming with a different configuration is refused', async () => {
  await initEngine();
  const opts = await base('config');
  await trainModel({ ...opts, epochs: 1 });
  await assert.rejects(trainModel({ ...opts, epochs: 1, lr: 1e-4 }), /different training configuration/);
});

test('an invalid checkpoint state.json is refused (naming it, suggesting --restart), never a silent restart; stale checkpoint temp folders are removed', async () => {
  await initEngine();
  const opts = { ...(await base('badstate')), epochs: 1, checkpointBatches: 1 };
  await assert.rejects(trainModel({ ...opts, onBatch: ({ batch }) => { if (batch === 1) throw new SimulatedKill('killed'); } }), SimulatedKill);
  const ckpt = join(opts.runDir!, CHECKPOINT_DIR);
  const stateFile = join(ckpt, 'state.json');
  const good = await readFile(stateFile, 'utf8');
  // what killed runs leave behind (a whole model each), and one of a process that still runs
  const dead = spawnSync(process.execPath, ['-e', '']).pid!;
  const stale = [`.checkpoint.${dead}.0123abcd.tmp`, `.best.${dead}.89abcdef.tmp`];
  const alive = `.checkpoint.${process.ppid}.00000000.tmp`;
  for (const name of [...stale, alive]) {
    await mkdir(join(opts.runDir!, name));
    await writeFile(join(opts.runDir!, name, 'weights.bin'), Buffer.alloc(1024));
  }
  for (const [text, why] of [
    ['{"version":1,', /state\.json: is not valid JSON .*pass --restart to discard it/],
    ['{"version":1,"configHash":"x","history":[],"epoch":-1,"batch":0,"step":0,"rngState":1,"badEpochs":0}', /state\.json: has an invalid epoch \(-1\).*--restart/],
    ['[]', /state\.json: is not a training state/],
  ] as const) {
    await writeFile(stateFile, text);
    await assert.rejects(trainModel(opts), (e: unknown) => e instanceof InputError && why.test(e.message), text);
  }
  await rm(stateFile);
  await assert.rejects(trainModel(opts), /state\.json: is missing: this checkpoint cannot be resumed; pass --restart/);
  const left = await readdir(opts.runDir!);
  assert.deepEqual(stale.filter((n) => left.includes(n)), [], 'stale temp folders removed');
  assert.ok(left.includes(alive), 'the temp folder of a running process is kept');
  // the checkpoint restored, the run resumes where it was
  await writeFile(stateFile, good);
  const seen: number[] = [];
  await trainModel({ ...opts, onBatch: ({ batch }) => void seen.push(batch) });
  assert.equal(seen[0], 1);
});

test('decoupled weight decay shrinks every trainable weight by (1 - lr x decay) per step, on top of Adam', async () => {
  await initEngine();
  // A constant, tiny rate: Adam moves a weight by about 1e-7 per step, so the decay is what separates the two runs.
  const opts = { ...(await base('decay')), epochs: 1, lr: 1e-7, minLr: 1e-7, augment: false as const };
  const decay = 2e5; // lr x decay = 2 % per step
  await trainModel(opts);
  await trainModel({ ...opts, out: `${opts.out}-wd`, runDir: `${opts.runDir}-wd`, weightDecay: decay });
  const split = JSON.parse(await readFile(opts.split!, 'utf8')) as { parts: { train: string[] } };
  const steps = Math.ceil(split.parts.train.length / (opts.batchSize ?? 0));
  const kernel = async (dir: string) => (await loadModel(dir)).network.getLayer('conv1').getWeights()[0].dataSync();
  const [plain, decayed] = [await kernel(opts.out), await kernel(`${opts.out}-wd`)];
  const expected = (1 - opts.lr * decay) ** steps;
  for (let i = 0; i < plain.length; i += 7) {
    assert.ok(Math.abs(decayed[i] - plain[i] * expected) < 1e-5, `weight ${i}: ${decayed[i]} vs ${plain[i]} x ${expected.toFixed(4)}`);
  }
  // and a different decay is a different run: no resuming across it
  await assert.rejects(trainModel({ ...opts, out: `${opts.out}-wd`, runDir: `${opts.runDir}-wd`, weightDecay: decay / 2 }), /different training configuration/);
});

test('a time budget stops mid-epoch and still validates, selects and writes the model', async () => {
  await initEngine();
  const opts = await base('budget');
  const r = await trainModel({ ...opts, epochs: 5, maxMinutes: 1e-6 });
  assert.equal(r.history.length, 1);
  assert.ok(r.history[0].epoch_fraction > 0 && r.history[0].epoch_fraction < 1);
  assert.equal(r.bestEpoch, 1);
  assert.ok((await loadModel(opts.out)).metadata.metrics);
});

test('one-vs-normal trains one member per pathology and saves one combined, loadable predictor', async () => {
  await initEngine();
  const opts = { ...(await base('ovn')), task: 'one-vs-normal' as const, epochs: 1 };
  const r = await trainModel(opts);
  const m = await loadModel(opts.out);
  assert.deepEqual(m.metadata.classes.at(-1), 'normal');
  assert.equal(m.metadata.classes.length, 7);
  assert.equal(m.metadata.members?.length, 6);
  assert.equal(r.history.length, 6); // one epoch per member
  const x = tf.randomNormal([2, 24, 24, 3], 0, 1, 'float32', 3) as tf.Tensor4D;
  const p = predictTensor(m, x);
  for (let i = 0; i < 2; i++) {
    const row = Array.from(p.subarray(i * 7, i * 7 + 7));
    assert.ok(Math.abs(row[6] - (1 - Math.max(...row.slice(0, 6)))) < 1e-6);
  }
  assert.ok((await readdir(join(opts.runDir!, 'members'))).length === 6);
});

test('SIGKILL of the train command mid-epoch: running it again resumes from the checkpoint and finishes', async () => {
  const d = await tinyDataset(4);
  const out = join(d.dir, 'killed-model');
  const runDir = join(d.dir, 'killed-run');
  const args = [
    join(PROJECT_ROOT, 'bin', 'fundus.js'), 'train', '--task', 'multilabel', '--model', 'small-cnn', '--image-size', '24',
    '--data', d.csv, d.images, '--split', d.split, '--out', out, '--run-dir', runDir,
    '--epochs', '6', '--batch-size', '2', '--warmup', '0', '--checkpoint-seconds', '0.001',
  ];
  const env = { ...process.env, FUNDUS_CACHE_DIR: join(d.dir, 'cache'), FUNDUS_NO_PROGRESS: '1' };
  const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr.on('data', (b: Buffer) => (log += b.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  // Wait for a checkpoint inside the second epoch or later, then kill without warning.
  const ckpt = join(runDir, CHECKPOINT_DIR);
  const midEpoch = (s: Awaited<ReturnType<typeof readState>> | undefined) => !!s && s.epoch >= 1 && s.batch >= 1 && !s.done;
  let state = await readState(ckpt).catch(() => undefined);
  for (let i = 0; i < 2400 && !midEpoch(state); i++) {
    await new Promise((r) => setTimeout(r, 25));
    state = await readState(ckpt).catch(() => undefined);
  }
  assert.ok(midEpoch(state), `no mid-epoch checkpoint appeared; log:\n${log}`);
  child.kill('SIGKILL');
  await exited;
  await assert.rejects(stat(out), 'a killed run writes no model');
  // The run may have checkpointed again between the poll and the kill: resuming must start from the last one.
  const killedAt = (await readState(ckpt))!;
  assert.ok(killedAt.epoch >= 1 && !killedAt.done);

  const again = spawnSync(process.execPath, args, { env, encoding: 'utf8' });
  assert.equal(again.status, 0, again.stderr);
  const m = again.stderr.match(/resuming from .*: epoch (\d+), batch (\d+)\//);
  assert.ok(m, `no resume line in:\n${again.stderr}`);
  assert.deepEqual([Number(m[1]) - 1, Number(m[2])], [killedAt.epoch, killedAt.batch], 'resumed at the last checkpoint, not from the start');
  const history = (await readFile(join(out, 'history.csv'), 'utf8')).trim().split('\n').slice(1);
  assert.deepEqual(history.map((r) => r.split(',')[0]), ['1', '2', '3', '4', '5', '6']);
  await loadModel(out);
});

test('without a split file, train splits the CSV as `fundus data split` does, into the run directory, and the model records it', async () => {
  await initEngine();
  const { split: _given, ...opts } = await tinyTrainOptions('made-split', 3, { epochs: 1 });
  const log: string[] = [];
  const r = await trainModel({ ...opts, log: (l) => log.push(l) });
  const made = join(opts.runDir!, 'split.json');
  assert.match(log.join('\n'), /split: no --split given, so made one as `fundus data split` does \(seed 42, \d+ train \/ \d+ validation \/ \d+ test images, \d+ groups/);
  // The same split as `fundus data split` makes with its defaults (its function, seed and ratios).
  const expected = await splitDataset(await readDataset(opts.csv!, opts.images!), opts.csv!);
  const written = JSON.parse(await readFile(made, 'utf8'));
  assert.deepEqual(written.parts, expected.parts);
  assert.deepEqual([written.seed, written.ratios], [SPLIT_DEFAULTS.seed, SPLIT_DEFAULTS.ratios]);
  // The model keeps it, its fingerprint and where it came from.
  const text = await readFile(made, 'utf8');
  assert.equal(await readFile(join(opts.out, 'split.json'), 'utf8'), text);
  assert.equal(r.metadata.trainingData?.splitSha256, createHash('sha256').update(text).digest('hex'));
  assert.match(await readFile(join(opts.out, 'MODEL_CARD.md'), 'utf8'), /split\.json` \(seed 42, ratios 0\.7 \/ 0\.15 \/ 0\.15/);
  // Running the command again (resuming) uses the split it made instead of fingerprinting every photograph again.
  log.length = 0;
  await trainModel({ ...opts, log: (l) => log.push(l) });
  assert.match(log.join('\n'), /split: .*split\.json, made by an earlier try of this run/);
  assert.equal(await readFile(made, 'utf8'), text);
});
