/** A small untrained fundus model directory and a runner for the real CLI, shared by the explain CLI tests. */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { CLASSES } from '../../src/data/labels.js';
import { DEFAULT_PREPROCESS } from '../../src/data/preprocess.js';
import { buildNetwork } from '../../src/models/architectures.js';
import { saveModel } from '../../src/models/io.js';
import type { ModelMetadata } from '../../src/models/metadata.js';
import { PROJECT_ROOT } from '../helpers.js';

/** A small untrained multi-label model saved as a fundus model directory, with thresholds that make some classes positive. */
export async function tinyModel(dir: string): Promise<void> {
  const net = buildNetwork('small-cnn', [32, 32, 3], CLASSES.length, { seed: 3, activation: 'sigmoid' });
  const metadata: ModelMetadata = {
    format: 'fundus-model',
    formatVersion: 1,
    architecture: 'small-cnn',
    task: 'multilabel',
    classes: [...CLASSES],
    activation: 'sigmoid',
    preprocess: { ...DEFAULT_PREPROCESS, size: 32, channels: 'rgb', normalize: { mean: [0.5], std: [0.25] } },
    inputShape: [32, 32, 3],
    // Classes 0 and 1 always positive, the rest (normal included) never (a small random network's sigmoid stays far
    // below 1): exercises "predicted" and "against normal".
    thresholds: [0, 0, 1, 1, 1, 1, 1],
    thresholdPolicy: 'test',
    createdAt: new Date(0).toISOString(),
    fundusVersion: '0.1.0',
  };
  await saveModel(dir, net, metadata);
}

/** Runs `bin/fundus.js` with the arguments, without a progress bar. */
export function fundus(args: string[]) {
  return spawnSync(process.execPath, [join(PROJECT_ROOT, 'bin', 'fundus.js'), ...args], {
    encoding: 'utf8',
    env: { ...process.env, FUNDUS_NO_PROGRESS: '1' },
  });
}
