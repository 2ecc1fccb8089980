import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CLASSES } from '../../src/data/labels.js';
import { modelLimitations } from '../../src/models/card.js';
import type { ModelMetadata } from '../../src/models/metadata.js';
import { CONTEST_HEADER, writeFakeFundus } from '../data/fixtures.js';
import { PROJECT_ROOT, tempDir } from '../helpers.js';
import { SHIPPED_FIRST_STAGE } from './shipped-recipe.js';

test('a plain `fundus train` on generated photographs trains the shipped recipe and writes a model card about its own data only', async () => {
  const dir = await tempDir('fundus-card-');
  const images = join(dir, 'photos');
  await mkdir(images);
  // 21 photographs: image i is positive for class i mod 7 (so every class has 3), split 12 / 5 / 4 by hand.
  const names = Array.from({ length: 21 }, (_, i) => `eye${String(i).padStart(2, '0')}.jpg`);
  for (const [i, n] of names.entries()) await writeFakeFundus(join(images, n), 64, 64, i + 1);
  const rows = names.map((n, i) => [n, ...CLASSES.map((_, k) => (k === i % 7 ? 1 : 0))].join(','));
  await writeFile(join(dir, 'clinic.csv'), [CONTEST_HEADER, ...rows].join('\n') + '\n');
  const parts = { train: names.slice(0, 12), validation: names.slice(12, 17), test: names.slice(17) };
  await writeFile(join(dir, 'split.json'), JSON.stringify({ version: 1, parts }));
  const out = join(dir, 'clinic-model');
  const r = spawnSync(
    process.execPath,
    [join(PROJECT_ROOT, 'bin', 'fundus.js'), 'train', '--data', 'clinic.csv', 'photos', '--split', 'split.json', '--out', out, '--run-dir', join(dir, 'run'),
      '--epochs', '1', '--image-size', '32', '--batch-size', '4', '--quiet'],
    { cwd: dir, encoding: 'utf8', env: { ...process.env, FUNDUS_CACHE_DIR: join(dir, 'cache'), FUNDUS_NO_PROGRESS: '1' } },
  );
  assert.equal(r.status, 0, r.stderr);

  // The recipe of models/default's first stage, but for the epochs, size and batch given.
  const meta = JSON.parse(await readFile(join(out, 'fundus.json'), 'utf8')) as ModelMetadata;
  assert.equal(meta.architecture, 'mobilenetv2');
  assert.equal(meta.task, 'multilabel');
  assert.deepEqual(meta.training, { ...SHIPPED_FIRST_STAGE, epochs: 1, batchSize: 4 });
  assert.deepEqual(meta.inference, { tta: 'hflip' });
  assert.equal(meta.preprocess.mask, 'circle');

  const card = await readFile(join(out, 'MODEL_CARD.md'), 'utf8');
  assert.match(card, /^# Model card: clinic-model\n/);
  // its data: the CSV as given, its sha256, the split file, and the counts per class per part (positives / graded)
  assert.ok(card.includes(`**clinic.csv**: labels \`clinic.csv\` (sha256 \`${meta.trainingData!.csvSha256}\`)`), card);
  assert.ok(card.includes('split: the split file `split.json`'));
  assert.ok(card.includes('| | train | validation | test |\n| --- | --- | --- | --- |\n| images | 12 | 5 | 4 |'));
  // opacity: images 0, 7, 14 -> two in train, one in validation; glaucoma: 2, 9 (train), 16 (validation)
  assert.ok(card.includes('| opacity | 2 / 12 | 1 / 5 | 0 / 4 |'), card);
  assert.ok(card.includes('| glaucoma | 2 / 12 | 1 / 5 | 0 / 4 |'));
  assert.ok(card.includes('| normal | 1 / 12 | 1 / 5 | 1 / 4 |'));
  // its recipe and metrics, as fundus.json records them
  assert.match(card, /AdamW \(decoupled weight decay 0\.05\), batch 4, .* camera augmentation .*; full fine-tuning, backbone at 0\.1× the head's learning rate/);
  assert.match(card, /flip test-time augmentation/);
  const test = meta.metrics!.test as { macroAuc: number | null };
  assert.ok(card.includes(`Macro ROC AUC **${test.macroAuc === null ? 'n/a' : test.macroAuc.toFixed(3)}**`));
  assert.ok(card.includes('`fundus evaluate '));
  // nothing about data it was not trained on
  for (const other of ['VietAI', 'Messidor', 'EyePACS', 'Cao Thang', 'mexico', 'codras', 'IDRiD', 'Kaggle']) assert.ok(!card.includes(other), `the card mentions ${other}`);
  // generic limitations, read back as the viewer shows them
  const limits = await modelLimitations(out);
  assert.ok(limits[0].startsWith('Only the data above. The held-out parts come from the same source as the training part (clinic.csv)'), limits[0]);
  assert.ok(limits.some((l) => /^Few positives\. opacity: 1 in validation, 0 in test/.test(l)), limits.join('\n'));
  assert.ok(limits.some((l) => l.startsWith('Thresholds. Tuned on the validation part (5 images)')));
});
