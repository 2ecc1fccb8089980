import type { ModelMetadata } from '../../src/models/metadata.js';

/**
 * The training record of models/default's first stage (`default-224` in scripts/train-bundled.sh), as its fundus.json
 * recorded it: what a plain `fundus train` defaults to. The shipped model continues from it at 320 and 448 px
 * (progressive resizing), which a single run cannot default to.
 */
export const SHIPPED_FIRST_STAGE: ModelMetadata['training'] = {
  optimizer: 'adamw',
  lr: 0.001,
  minLr: 2e-5,
  warmupEpochs: 1,
  weightDecay: 0.05,
  batchSize: 16,
  epochs: 12,
  augment: true,
  cameraAugment: true,
  seed: 42,
  fineTune: { recipe: 'full', backboneLrScale: 0.1, batchNorm: 'train' },
};
