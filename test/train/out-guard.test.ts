// `train --out` never deletes what fundus did not write, and replaces another run's model only with --force (#20).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { initEngine } from '../../src/engine/index.js';
import { trainModel } from '../../src/train/train.js';
import type { TrainOptions } from '../../src/train/train.js';
import { InputError } from '../../src/util/errors.js';
import { tinyDataset, tinyTrainOptions } from './fixtures.js';
import { PROJECT_ROOT, tempDir } from '../helpers.js';

const base = (tag: string): Promise<TrainOptions> => tinyTrainOptions(tag, 2, { epochs: 1, lr: undefined, augment: false });

const refused = (re: RegExp) => (err: unknown) => {
  assert.ok(err instanceof InputError, String((err as Error).stack));
  assert.match(err.message, re);
  return true;
};

test('train --out: a folder of photos and notes, or a file, is refused before any training, --force or not', async () => {
  const opts = await base('photos');
  await mkdir(opts.out);
  await writeFile(join(opts.out, 'eye.jpg'), 'a photograph');
  await writeFile(join(opts.out, 'notes.txt'), 'my notes');
  for (const force of [false, true]) {
    await assert.rejects(trainModel({ ...opts, force }), refused(/photos-model: --out is a folder that is not a fundus model \(it holds eye\.jpg, notes\.txt\); refusing to delete it/));
  }
  assert.deepEqual((await readdir(opts.out)).sort(), ['eye.jpg', 'notes.txt']);
  assert.equal(await readFile(join(opts.out, 'notes.txt'), 'utf8'), 'my notes');
  const file = `${opts.out}.txt`;
  await writeFile(file, 'keep me');
  await assert.rejects(trainModel({ ...opts, out: file, force: true }), refused(/--out exists and is not a folder/));
  assert.equal(await readFile(file, 'utf8'), 'keep me');
  // --out and the run directory may not nest (the model folder is replaced as a whole at the end)
  await assert.rejects(trainModel({ ...opts, out: join(opts.runDir!, 'model') }), refused(/must be separate folders/));
  // a run directory with someone's files in it is not cleared by --restart, nor written into
  const runDir = `${opts.runDir}-busy`;
  await mkdir(runDir);
  await writeFile(join(runDir, 'thesis.docx'), 'x');
  await assert.rejects(trainModel({ ...opts, out: `${opts.out}-2`, runDir, restart: true }), refused(/run directory holds files fundus did not write \(thesis\.docx\)/));
  assert.deepEqual(await readdir(runDir), ['thesis.docx']);
});

test('train --out: another run\'s model is replaced only with --force; the same run replaces its own; foreign files in it are refused', async () => {
  await initEngine();
  const a = await base('a');
  await trainModel(a);
  const fundusJson = () => readFile(join(a.out, 'fundus.json'), 'utf8');
  const first = await fundusJson();

  // Another run (another run directory) writing the same --out: refused before anything, model untouched.
  const b = { ...a, runDir: `${a.runDir}-b`, lr: 5e-3 };
  await assert.rejects(trainModel(b), refused(/a-model: --out already holds a fundus model \(small-cnn, multilabel, written .*\) that this run .* did not write; pass --force/));
  assert.equal(await fundusJson(), first);
  assert.deepEqual(await readdir(b.runDir!).catch(() => 'absent'), 'absent', 'nothing trained');
  // What tells this run's model from another's: the run directory's run.json (--out and its fundus.json's sha256).
  const record = JSON.parse(await readFile(join(a.runDir!, 'run.json'), 'utf8'));
  assert.equal(record.format, 'fundus-run');
  assert.equal(record.out, a.out);
  assert.match(record.fundusJsonSha256, /^[0-9a-f]{64}$/);
  // With --force it is replaced; re-running the same command after that needs no --force (it is that run's model now).
  await trainModel({ ...b, force: true });
  const second = await fundusJson();
  assert.notEqual(second, first);
  await trainModel(b);
  // ... while the first run may no longer replace it without --force: its model is gone.
  await assert.rejects(trainModel(a), refused(/did not write; pass --force/));
  // --restart of the run that wrote it is still that run: allowed.
  await trainModel({ ...b, restart: true });
  // The run writes its model card and replaces it on a re-run; a card edited since (someone's work) goes only with --force.
  const card = join(a.out, 'MODEL_CARD.md');
  assert.match(await readFile(card, 'utf8'), /^# Model card: a-model/);
  await trainModel(b);
  await writeFile(card, '# card, edited');
  await assert.rejects(trainModel(b), refused(/holds this run's model and files added to it or edited since \(MODEL_CARD\.md\); pass --force/));
  assert.equal(await readFile(card, 'utf8'), '# card, edited');
  // so does a file added since (an evaluation)
  await trainModel({ ...b, force: true });
  await writeFile(join(a.out, 'external-validation.json'), '{}');
  await assert.rejects(trainModel(b), refused(/files added to it or edited since \(external-validation\.json\)/));
  await trainModel({ ...b, force: true });
  assert.match(await readFile(card, 'utf8'), /^# Model card: a-model/);
  assert.ok(!(await readdir(a.out)).includes('external-validation.json'));

  // A model folder with a file fundus did not write: refused even with --force, and the file stays.
  await writeFile(join(a.out, 'my-notes.md'), 'notes');
  await assert.rejects(trainModel({ ...b, force: true }), refused(/holds a fundus model and files fundus did not write \(my-notes\.md\)/));
  assert.equal(await readFile(join(a.out, 'my-notes.md'), 'utf8'), 'notes');
});

test('fundus train: a refusal exits 2 naming the path, and --force is documented', async () => {
  const bin = join(PROJECT_ROOT, 'bin', 'fundus.js');
  const env = { ...process.env, FUNDUS_NO_PROGRESS: '1' };
  const tmp = await tempDir();
  const out = join(tmp, 'holiday');
  await mkdir(out);
  await writeFile(join(out, 'beach.jpg'), 'a photograph');
  const d = await tinyDataset(1);
  const r = spawnSync(process.execPath, [bin, 'train', '--task', 'multilabel', '--model', 'small-cnn', '--image-size', '24', '--epochs', '1', '--data', d.csv, d.images, '--split', d.split, '--out', out, '--run-dir', join(tmp, 'run')], {
    encoding: 'utf8',
    env: { ...env, FUNDUS_CACHE_DIR: join(tmp, 'cache') },
  });
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, new RegExp(`^fundus: ${out}: --out is a folder that is not a fundus model \\(it holds beach\\.jpg\\)`, 'm'));
  assert.deepEqual(await readdir(out), ['beach.jpg']);
  const help = spawnSync(process.execPath, [bin, 'train', '--help'], { encoding: 'utf8', env });
  assert.match(help.stdout, /--force/);
});
