import { resolve } from 'node:path';
import { readDataset, readLabelsCsv } from '../data/csv.js';
import { readDatasets } from '../data/datasets.js';
import { PART_NAMES, readSplit } from '../data/split.js';
import type { PartName } from '../data/split.js';
import type { FundusModel } from '../models/io.js';
import type { ModelMetadata } from '../models/metadata.js';
import { InputError } from '../util/errors.js';
import { progress } from '../util/progress.js';
import type { SkippedPhoto } from '../util/skipped.js';
import { alignToModel, checkImagesExist, domainOf } from './dataset.js';
import type { EvaluationSet } from './dataset.js';
import { evaluatePredictions } from './evaluate.js';
import type { BootstrapOptions } from './bootstrap.js';
import type { EvaluationReport } from './schema.js';

/** `predictFiles` of src/models/predictor.ts: n×C probabilities after the model's activation. */
export type PredictFiles = (
  model: FundusModel,
  inputs: (string | Buffer)[],
  opts?: {
    batchSize?: number;
    onProgress?: (done: number) => void;
    /** Given: a photo that cannot be read is reported here (its row left NaN) instead of failing the run. */
    onFailure?: (index: number, failure: { message: string }) => void;
  },
) => Promise<Float32Array>;

/** What `predictSet` predicted: the probabilities of the images that could be read, and the set cut down to them. */
export interface PredictedSet {
  set: EvaluationSet;
  probs: Float32Array;
  /** Photographs that could not be read, left out of the metrics. */
  skipped: SkippedPhoto[];
}

/** Which labelled images to evaluate on. */
export interface DataSelection {
  csv: string;
  images: string;
  split?: string;
  part?: string;
  /** One source of a datasets file (the part is the source's own; an external source is evaluated whole). */
  source?: { name: string; datasets: string; role: 'train' | 'external' };
}

/** One source's evaluation set, read from a datasets file. */
export interface SourceSelection {
  sel: DataSelection;
  set: EvaluationSet;
}

/**
 * Every source of the datasets files lined up with the model: the `part` of each training source and the whole of
 * each external one, each class scored on the images graded for it. All checks before any prediction.
 */
export async function loadSourceSets(
  metadata: ModelMetadata,
  datasetsFiles: string[],
  part: string,
): Promise<{ sets: SourceSelection[]; skipped: { source: string; reason: string }[] }> {
  if (!(PART_NAMES as readonly string[]).includes(part)) throw new InputError(`unknown split part '${part}' (use ${PART_NAMES.join(', ')})`);
  const out: SourceSelection[] = [];
  const skipped: { source: string; reason: string }[] = [];
  for (const file of datasetsFiles) {
    const data = await readDatasets(file);
    for (const src of data.sources) {
      const external = src.role === 'external';
      const filenames = external ? src.parts.test : src.parts[part as PartName];
      if (filenames.length === 0) continue;
      const sel: DataSelection = {
        csv: src.dataset.csvPath!,
        images: src.dataset.imagesDir,
        part: external ? 'all (external)' : part,
        source: { name: src.name, datasets: resolve(file), role: src.role },
      };
      let set: EvaluationSet;
      try {
        set = alignToModel(
          metadata.classes,
          { classes: src.dataset.classes, images: src.dataset.images, format: 'contest', csvPath: src.dataset.csvPath! },
          { name: part, filenames, splitPath: file },
          domainOf(metadata),
        );
      } catch (e) {
        // e.g. a source of positives only (codras): nothing to score there, which is no reason to stop the others
        if (!(e instanceof InputError)) throw e;
        skipped.push({ source: src.name, reason: e.message });
        continue;
      }
      await checkImagesExist(set.images, src.dataset.imagesDir);
      out.push({ sel, set });
    }
  }
  if (out.length === 0) {
    throw new InputError(`no source can be scored in part '${part}'${skipped.map((s) => `; ${s.source}: ${s.reason}`).join('')}`, { file: datasetsFiles[0] });
  }
  return { sets: out, skipped };
}

/** The filenames of one part of a split file (read and checked by src/data/split.ts). */
export async function readSplitPart(path: string, part: string): Promise<string[]> {
  if (!(PART_NAMES as readonly string[]).includes(part)) throw new InputError(`unknown split part '${part}' (use ${PART_NAMES.join(', ')})`);
  const split = await readSplit(path);
  return split.parts[part as PartName];
}

/** Reads the labels of a selection and lines them up with the model's classes (all checks before any prediction). */
export async function loadEvaluationSet(metadata: ModelMetadata, sel: DataSelection): Promise<EvaluationSet> {
  if (sel.split && !sel.part) throw new InputError('--split needs --part (train, validation or test)');
  if (sel.part && !sel.split) throw new InputError('--part needs --split <split.json>');
  const dataset = await readDataset(sel.csv, sel.images);
  const { format } = await readLabelsCsv(sel.csv);
  const part = sel.split && sel.part ? { name: sel.part, filenames: await readSplitPart(sel.split, sel.part), splitPath: sel.split } : undefined;
  const set = alignToModel(metadata.classes, { classes: dataset.classes, images: dataset.images, format, csvPath: sel.csv }, part, domainOf(metadata));
  await checkImagesExist(set.images, dataset.imagesDir);
  return set;
}

/** `set` without the images at `drop` (indices into set.images). */
function withoutImages(set: EvaluationSet, drop: ReadonlySet<number>, classes: number): EvaluationSet {
  if (drop.size === 0) return set;
  const keep = set.images.flatMap((_, i) => (drop.has(i) ? [] : [i]));
  const rows = (m: Uint8Array) => {
    const out = new Uint8Array(keep.length * classes);
    keep.forEach((i, r) => out.set(m.subarray(i * classes, (i + 1) * classes), r * classes));
    return out;
  };
  return { ...set, images: keep.map((i) => set.images[i]), labels: rows(set.labels), ...(set.graded ? { graded: rows(set.graded) } : {}) };
}

/**
 * Runs the model over the images with a progress bar. A photograph that cannot be read is left out (listed in
 * `skipped`) and the others are evaluated; a model whose outputs are not finite numbers is refused with an
 * InputError naming it, since no metric means anything then.
 */
export async function predictSet(model: FundusModel, set: EvaluationSet, predict: PredictFiles, opts: { batchSize?: number; quiet?: boolean } = {}): Promise<PredictedSet> {
  const bar = progress('predict', set.images.length, { quiet: opts.quiet });
  const k = model.metadata.classes.length;
  let last = 0;
  const failed = new Map<number, string>();
  let probs: Float32Array;
  try {
    probs = await predict(
      model,
      set.images.map((im) => im.path),
      {
        batchSize: opts.batchSize,
        onProgress: (done) => {
          bar.tick(done - last);
          last = done;
        },
        onFailure: (i, f) => void failed.set(i, f.message),
      },
    );
  } finally {
    bar.stop();
  }
  if (probs.length !== set.images.length * k) {
    throw new Error(`predictFiles returned ${probs.length} values for ${set.images.length} images × ${k} classes`);
  }
  const skipped = [...failed].sort(([a], [b]) => a - b).map(([i, reason]) => ({ path: set.images[i].path, reason }));
  if (failed.size === set.images.length) {
    throw new InputError(`none of the ${set.images.length} images could be read (${skipped[0].path}: ${skipped[0].reason}${skipped.length > 1 ? ', ...' : ''})`);
  }
  const kept = withoutImages(set, new Set(failed.keys()), k);
  const keptProbs = failed.size === 0 ? probs : new Float32Array(kept.images.length * k);
  if (failed.size > 0) {
    let r = 0;
    set.images.forEach((_, i) => !failed.has(i) && keptProbs.set(probs.subarray(i * k, (i + 1) * k), k * r++));
  }
  const bad = kept.images.flatMap((im, i) => (keptProbs.subarray(i * k, (i + 1) * k).every(Number.isFinite) ? [] : [im.path]));
  if (bad.length > 0) {
    throw new InputError(
      `the model's outputs are not finite numbers (NaN or infinite) for ${bad.length} of ${kept.images.length} photographs ` +
        `(the first: ${bad[0]}): its weights overflow or are broken, so it cannot be evaluated; retrain it or use another model`,
      { file: model.dir },
    );
  }
  return { set: kept, probs: keptProbs, skipped };
}

/** The default prediction function, loaded lazily so that metric-only code paths never load tfjs. */
export async function defaultPredictFiles(): Promise<PredictFiles> {
  const { predictFiles } = await import('../models/predictor.js');
  return predictFiles;
}

/** Assembles the `--json` document from a model, a selection and predictions. */
export function buildReport(
  modelDir: string,
  metadata: ModelMetadata,
  sel: DataSelection,
  set: EvaluationSet,
  probs: Float32Array,
  bootstrap: BootstrapOptions = {},
  skipped: SkippedPhoto[] = [],
): EvaluationReport {
  const metrics = evaluatePredictions({
    classes: metadata.classes,
    activation: metadata.activation,
    probs,
    labels: set.labels,
    scored: set.scored,
    ...(set.graded ? { graded: set.graded } : {}),
    thresholds: metadata.thresholds,
    bootstrap,
  });
  return {
    schemaVersion: 1,
    model: {
      dir: resolve(modelDir),
      architecture: metadata.architecture,
      task: metadata.task,
      activation: metadata.activation,
      classes: metadata.classes,
      thresholds: metadata.thresholds,
      thresholdPolicy: metadata.thresholdPolicy,
    },
    data: {
      csv: resolve(sel.csv),
      images: resolve(sel.images),
      format: set.format,
      ...(sel.split ? { split: resolve(sel.split), part: sel.part } : {}),
      ...(sel.source ? { source: sel.source.name, datasets: sel.source.datasets, role: sel.source.role, part: sel.part } : {}),
    },
    notes: set.notes,
    ...(skipped.length ? { skipped } : {}),
    ...metrics,
    createdAt: new Date().toISOString(),
    fundusVersion: '0.1.0',
  };
}
