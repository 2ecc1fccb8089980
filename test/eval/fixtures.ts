// Shared helpers of the eval tests: a tiny real model directory and a slice of the real data.
import * as tfl from '@tensorflow/tfjs-layers';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { saveModel } from '../../src/models/io.js';
import type { ModelMetadata } from '../../src/models/metadata.js';
import { DEFAULT_PREPROCESS } from '../../src/data/preprocess.js';
import { CLASSES } from '../../src/data/labels.js';
import { initEngine } from '../../src/engine/index.js';
import { readDataset } from '../../src/data/csv.js';
import { seededRandom } from '../../src/data/random.js';
import { spawnSync } from 'node:child_process';
import { PROJECT_ROOT, VIETAI_DIR } from '../helpers.js';
import type { PredictFiles } from '../../src/eval/run.js';

/** Saves a small but real tfjs model with fundus.json for the given classes (the glue loads it like any model). */
export async function tinyModelDir(dir: string, classes: string[] = [...CLASSES], activation: 'sigmoid' | 'softmax' = 'sigmoid'): Promise<string> {
  await initEngine();
  const net = tfl.sequential({
    layers: [tfl.layers.flatten({ inputShape: [8, 8, 1] }), tfl.layers.dense({ units: classes.length, activation })],
  });
  const metadata: ModelMetadata = {
    format: 'fundus-model',
    formatVersion: 1,
    architecture: 'tiny-test',
    task: 'multilabel',
    classes,
    activation,
    preprocess: { ...DEFAULT_PREPROCESS, size: 8 },
    inputShape: [8, 8, 1],
    thresholds: classes.map(() => 0.5),
    thresholdPolicy: 'default 0.5',
    createdAt: new Date(0).toISOString(),
    fundusVersion: '0.1.0',
  };
  await saveModel(dir, net, metadata, {
    // the columns src/train/history.ts writes
    'history.csv':
      'epoch,loss,val_loss,val_auc,val_f1,lr,images_per_second,wall_time\n' +
      '1,0.62,0.58,0.71,0.31,0.001,40.5,1700000000\n2,0.45,0.47,0.78,0.44,0.001,41.2,1700000100\n' +
      '3,0.38,0.44,0.81,0.52,0.0005,40.9,1700000200\n4,0.33,0.45,0.82,0.55,0.0005,41.0,1700000300\n',
  });
  return dir;
}

/** The first `n` labelled images of the real data set that carry each of the classes (a small, varied slice). */
export async function vietaiSlice(dir: string, perClass = 3): Promise<{ csv: string; images: string; filenames: string[] }> {
  const ds = await readDataset(join(VIETAI_DIR, 'train.csv'), join(VIETAI_DIR, 'train'));
  const chosen = new Set<string>();
  CLASSES.forEach((_, k) => ds.images.filter((im) => im.labels![k]).slice(0, perClass).forEach((im) => chosen.add(im.filename)));
  const rows = ds.images.filter((im) => chosen.has(im.filename));
  const csv = join(dir, 'slice.csv');
  await writeFile(csv, `filename,${CLASSES.join(',')}\n` + rows.map((im) => `${im.filename},${Array.from(im.labels!).join(',')}`).join('\n') + '\n');
  return { csv, images: join(VIETAI_DIR, 'train'), filenames: rows.map((r) => r.filename) };
}

/**
 * A stand-in for predictFiles with known, informative probabilities: the label plus seeded noise, so that the
 * metrics are non-trivial yet reproducible. `truth` maps a path to its multi-hot labels in model order.
 */
export function noisyOracle(truth: Map<string, Uint8Array>, seed = 1): PredictFiles {
  return async (model, inputs, opts) => {
    const C = model.metadata.classes.length;
    const rng = seededRandom(seed);
    const out = new Float32Array(inputs.length * C);
    inputs.forEach((p, i) => {
      const y = truth.get(p as string)!;
      for (let k = 0; k < C; k++) out[i * C + k] = Math.min(1, Math.max(0, 0.25 + 0.4 * y[k] + (rng() - 0.5) * 0.6));
    });
    opts?.onProgress?.(inputs.length);
    return out;
  };
}

/** The real CLI (bin/fundus.js) in a child process, without progress bars. */
export function fundus(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [join(PROJECT_ROOT, 'bin', 'fundus.js'), ...args], { encoding: 'utf8', env: { ...process.env, FUNDUS_NO_PROGRESS: '1' } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
