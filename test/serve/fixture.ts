import { join } from 'node:path';
import { readdirSync } from 'node:fs';
import { buildNetwork } from '../../src/models/architectures.js';
import { saveModel } from '../../src/models/io.js';
import type { ModelMetadata } from '../../src/models/metadata.js';
import { CLASSES } from '../../src/data/labels.js';
import { initEngine } from '../../src/engine/index.js';
import { tempDir, VIETAI_DIR, PROJECT_ROOT } from '../helpers.js';

export const FIXTURE_SIZE = 96;

/**
 * A small real fundus model (untrained narrow ResNet-18, 96 px RGB, all seven classes) saved with saveModel: the
 * serving code runs exactly as on the bundled model, in a fraction of the time.
 */
export async function buildFixtureModel(): Promise<string> {
  await initEngine();
  const dir = join(await tempDir('fundus-serve-'), 'model');
  const network = buildNetwork('resnet18-w8', [FIXTURE_SIZE, FIXTURE_SIZE, 3], CLASSES.length, { activation: 'sigmoid', seed: 11 });
  const metadata: ModelMetadata = {
    format: 'fundus-model',
    formatVersion: 1,
    architecture: 'resnet18-w8',
    task: 'multilabel',
    classes: [...CLASSES],
    activation: 'sigmoid',
    preprocess: { crop: true, size: FIXTURE_SIZE, channels: 'rgb', clahe: false, normalize: { mean: [0.5], std: [0.25] } },
    inputShape: [FIXTURE_SIZE, FIXTURE_SIZE, 3],
    thresholds: [0.5, 0.45, 0.55, 0.5, 0.4, 0.6, 0.5],
    thresholdPolicy: 'test fixture',
    createdAt: new Date(0).toISOString(),
    fundusVersion: '0.1.0',
  };
  await saveModel(dir, network, metadata);
  return dir;
}

/** A few real fundus photographs: the committed samples when present, else the first VietAI training images. */
export function realImages(n: number): string[] {
  for (const dir of [join(PROJECT_ROOT, 'samples', 'images'), join(PROJECT_ROOT, 'samples'), join(VIETAI_DIR, 'train')]) {
    try {
      const files = readdirSync(dir)
        .filter((f) => /\.(jpe?g|png)$/i.test(f))
        .sort()
        .slice(0, n)
        .map((f) => join(dir, f));
      if (files.length >= n) return files;
    } catch {
      // try the next place
    }
  }
  throw new Error('no fundus photographs found (samples/ or ../shared/data/vietai/train)');
}
