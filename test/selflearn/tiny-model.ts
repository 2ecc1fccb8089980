import { buildNetwork } from '../../src/models/architectures.js';
import { saveModel } from '../../src/models/io.js';
import type { ModelMetadata } from '../../src/models/metadata.js';

/** An untrained 7-class multilabel resnet18-w8 on 32x32 RGB inputs, saved as a model directory. */
export async function tinyModel(dir: string): Promise<void> {
  const network = buildNetwork('resnet18-w8', [32, 32, 3], 7, { seed: 3 });
  const metadata: ModelMetadata = {
    format: 'fundus-model',
    formatVersion: 1,
    architecture: 'resnet18-w8',
    task: 'multilabel',
    classes: ['opacity', 'diabetic retinopathy', 'glaucoma', 'macular edema', 'macular degeneration', 'retinal vascular occlusion', 'normal'],
    activation: 'sigmoid',
    preprocess: { crop: true, size: 32, channels: 'rgb', clahe: false, normalize: { mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] } },
    inputShape: [32, 32, 3],
    thresholds: new Array(7).fill(0.5),
    thresholdPolicy: 'default 0.5',
    createdAt: new Date(0).toISOString(),
    fundusVersion: '0.1.0',
  };
  await saveModel(dir, network, metadata);
}
