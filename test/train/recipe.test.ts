import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ModelMetadata } from '../../src/models/metadata.js';
import { RUN_DEFAULTS, fineTuneFor, loopSettingsFor, modelFor, preprocessFor, trainingRecord, ttaFor } from '../../src/train/recipe.js';
import type { RunOptions } from '../../src/train/recipe.js';
import { PROJECT_ROOT } from '../helpers.js';
import { SHIPPED_FIRST_STAGE } from './shipped-recipe.js';

const shipped = JSON.parse(await readFile(join(PROJECT_ROOT, 'models', 'default', 'fundus.json'), 'utf8')) as ModelMetadata;

/** The settings of a run given only its data and output, as trainModel resolves them. */
function resolved(extra: Partial<RunOptions> = {}, init?: ModelMetadata) {
  const task = extra.task ?? 'multilabel';
  const opts: RunOptions = { out: 'x', ...extra, task, model: modelFor(task, extra.model, init) };
  const settings = loopSettingsFor(opts, undefined, () => undefined);
  return {
    model: opts.model,
    settings,
    record: trainingRecord(settings, opts, fineTuneFor(opts)),
    preprocess: preprocessFor(opts, init),
    tta: ttaFor(opts, init),
  };
}

test("a run that names no model or recipe trains as the shipped model's first stage was", () => {
  const r = resolved();
  assert.equal(r.model, shipped.architecture);
  assert.deepEqual(r.record, SHIPPED_FIRST_STAGE);
  assert.equal(r.tta, shipped.inference?.tta);
  // the normalisation is the backbone's (set when its weights load); the rest is the shipped preprocessing at 224 px
  assert.deepEqual({ ...r.preprocess, normalize: undefined }, { ...shipped.preprocess, size: 224, normalize: undefined });
  assert.equal(r.settings.patience, 5);
});

test('explicit settings override the recipe; networks from scratch keep their own defaults (the reference AlexNet: green, 227 px, no mask)', () => {
  const r = resolved({ epochs: 2, weightDecay: 0, augment: {}, mask: 'none', tta: 'none', recipe: 'partial', batchSize: 4 });
  assert.deepEqual([r.settings.epochs, r.settings.weightDecay, r.settings.augment, r.preprocess.mask, r.tta, r.record.fineTune?.recipe, r.settings.batchSize], [2, 0, {}, undefined, 'none', 'partial', 4]);
  assert.equal(r.record.optimizer, 'adam');
  const alexnet = resolved({ model: 'alexnet' });
  assert.deepEqual([alexnet.preprocess.channels, alexnet.preprocess.size, alexnet.preprocess.mask, alexnet.tta], ['green', 227, undefined, 'none']);
  assert.deepEqual({ ...alexnet.record, seed: undefined }, { optimizer: 'adam', lr: 1e-3, minLr: 2e-5, warmupEpochs: 1, weightDecay: 0, batchSize: 16, epochs: 30, augment: true, seed: undefined });
  assert.equal(alexnet.record.fineTune, undefined);
  assert.equal(resolved({ task: 'one-vs-normal' }).model, 'resnet18-narrow', 'one-vs-normal members train from scratch');
});

test('--init-from: its architecture, preprocessing and test-time augmentation unless told otherwise', () => {
  const base = { ...shipped, inference: undefined };
  const r = resolved({ task: 'focus' }, base);
  assert.equal(r.model, 'mobilenetv2');
  assert.deepEqual(r.preprocess, shipped.preprocess);
  assert.equal(r.tta, 'none', 'a model without TTA stays without');
  assert.equal(resolved({ task: 'focus' }, shipped).tta, 'hflip');
  assert.throws(() => resolved({ mask: 'circle' }, shipped), /cannot be combined with --init-from/);
});

test("train's run defaults (seed, monitor, checkpoint interval) are the recipe's, and --help shows them from there", () => {
  const { settings } = resolved();
  assert.deepEqual([settings.seed, settings.monitor, settings.checkpointSeconds], [RUN_DEFAULTS.seed, RUN_DEFAULTS.monitor, RUN_DEFAULTS.checkpointSeconds]);
  const help = spawnSync(process.execPath, [join(PROJECT_ROOT, 'bin', 'fundus.js'), 'train', '--help'], { encoding: 'utf8' });
  assert.equal(help.status, 0, help.stderr);
  const text = help.stdout.replace(/\s+/g, ' ');
  assert.match(text, new RegExp(`--seed <n> random seed: .*?\\(default ${RUN_DEFAULTS.seed}\\)`));
  assert.match(text, new RegExp(`--monitor <metric> .*?\\(default ${RUN_DEFAULTS.monitor}\\)`));
  assert.match(text, new RegExp(`--checkpoint-seconds <s> .*?\\(default ${RUN_DEFAULTS.checkpointSeconds}\\)`));
});
