import { PART_NAMES } from '../data/split.js';
import type { PartName } from '../data/split.js';
import type { PreprocessSettings } from '../data/preprocess.js';
import type { BackboneProvenance } from '../models/backbones.js';
import type { ModelMetadata, TrainingRecipe } from '../models/metadata.js';
import type { TrainingData } from './train-data.js';
import type { RunOptions } from './recipe.js';
import { sha256File } from '../util/sha256.js';

const FUNDUS_VERSION = '0.1.0';

/** What every network of a run records in fundus.json, before its classes, thresholds and metrics are known. */
export type RunRecord = Omit<ModelMetadata, 'classes' | 'activation' | 'thresholds'>;

/**
 * The model's record of its run: architecture, task, preprocessing, the fingerprints of its data (and, for a
 * datasets file, each source's counts, graded classes and split origin), how it was trained, its backbone and its
 * test-time augmentation.
 */
export async function runRecord(
  opts: RunOptions,
  data: TrainingData,
  input: { preprocess: PreprocessSettings; inputShape: [number, number, number] },
  trainingImages: number,
  training: TrainingRecipe,
  backbone: BackboneProvenance | undefined,
): Promise<RunRecord> {
  const { sources, split } = data;
  return {
    format: 'fundus-model' as const,
    formatVersion: 1 as const,
    architecture: opts.model,
    task: opts.task,
    preprocess: input.preprocess,
    inputShape: input.inputShape,
    thresholdPolicy: 'default 0.5',
    trainingData: {
      csvSha256: await sha256File(sources ? sources.path : opts.csv!),
      imageCount: trainingImages,
      splitSha256: split.sha256,
      splitFile: 'split.json',
      ...(sources
        ? {
            sources: sources.sources.map((s) => ({
              name: s.name,
              role: s.role,
              csvSha256: s.csvSha256,
              graded: s.graded,
              images: Object.fromEntries(PART_NAMES.map((p) => [p, s.parts[p].length])) as Record<PartName, number>,
              splitFrom: s.splitFrom,
            })),
            ...(opts.balanceSources ? { balanceSources: true } : {}),
          }
        : {}),
    },
    training,
    ...(backbone ? { backbone } : {}),
    ...(opts.tta && opts.tta !== 'none' ? { inference: { tta: opts.tta } } : {}),
    createdAt: new Date().toISOString(),
    fundusVersion: FUNDUS_VERSION,
  };
}
