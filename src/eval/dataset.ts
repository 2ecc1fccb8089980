import { access } from 'node:fs/promises';
import { isGraded } from '../data/labels.js';
import type { LabelledImage } from '../data/labels.js';
import type { CsvFormat } from '../data/csv.js';
import { InputError } from '../util/errors.js';

/** Images and ground truth lined up with a model's outputs. */
export interface EvaluationSet {
  images: LabelledImage[];
  /** n×modelClasses.length multi-hot labels in the model's class order (0 for unscored classes). */
  labels: Uint8Array;
  /** Indices into the model's classes that this data scores. */
  scored: number[];
  /** n×modelClasses.length, 1 where graded; absent when every image grades every scored class. */
  graded?: Uint8Array;
  format: CsvFormat;
  notes: string[];
}

export interface LabelSource {
  /** Class names of the dataset's label vectors (CLASSES for csv.ts). */
  classes: string[];
  images: LabelledImage[];
  format: CsvFormat;
  /** For messages: the CSV path. */
  csvPath: string;
}

/**
 * Which images a model can be judged on: `all`; `exactly-one` of its classes (a softmax model must pick one, as the
 * `focus` task is trained); `at-least-one` (the `focus-sigmoid` task's images).
 */
export type EvaluationDomain = 'all' | 'exactly-one' | 'at-least-one';

/** The domain of a model from its metadata, matching the images its task trains on (src/models/tasks.ts). */
export function domainOf(metadata: { task: string; activation: 'sigmoid' | 'softmax' }): EvaluationDomain {
  if (metadata.task === 'focus' || metadata.activation === 'softmax') return 'exactly-one';
  if (metadata.task === 'focus-sigmoid') return 'at-least-one';
  return 'all';
}

/**
 * Lines a labelled dataset up with a model's classes.
 * - Contest (multi-hot) CSV: every class of the model must be a column; all of them are scored.
 * - `filename,label` CSV: only the labels that occur are scored, and an image is positive only for its own label(s)
 *   and negative for the other scored classes. A label the model does not predict is an error, not silently dropped.
 * `part` restricts to the filenames of a split part; each must be in the CSV. `domain` then keeps the images the model
 * is meant for (images left out are counted in `notes`).
 */
export function alignToModel(
  modelClasses: string[],
  source: LabelSource,
  part?: { name: string; filenames: string[]; splitPath: string },
  domain: EvaluationDomain = 'all',
): EvaluationSet {
  const notes: string[] = [];
  const index = new Map(source.classes.map((c, k) => [c, k]));
  let images = source.images;
  if (part) {
    const byName = new Map(images.map((im) => [im.filename, im]));
    const missing = part.filenames.filter((f) => !byName.has(f));
    if (missing.length > 0) {
      throw new InputError(
        `${missing.length} of the ${part.filenames.length} images of part '${part.name}' are not in ${source.csvPath} ` +
          `(e.g. ${missing.slice(0, 3).join(', ')}): is this split made for this CSV?`,
        { file: part.splitPath },
      );
    }
    if (part.filenames.length === 0) throw new InputError(`part '${part.name}' of the split is empty`, { file: part.splitPath });
    images = part.filenames.map((f) => byName.get(f)!);
  }
  if (images.length === 0) throw new InputError('no labelled images to evaluate', { file: source.csvPath });
  for (const im of images) {
    if (!im.labels) throw new InputError(`'${im.filename}' has no labels`, { file: source.csvPath });
  }

  const unknownModelClasses = modelClasses.filter((c) => !index.has(c));
  let scored: number[];
  const partial = images.some((im) => im.graded !== undefined);
  const gradedAnywhere = (c: string): boolean => images.some((im) => isGraded(im, index.get(c)!));
  if (source.format === 'contest' && partial) {
    // A source that grades some classes only: each class is scored on the images graded for it.
    scored = modelClasses.map((c, k) => (index.has(c) && gradedAnywhere(c) ? k : -1)).filter((k) => k >= 0);
    if (scored.length === 0) throw new InputError(`the data grades none of the model's classes (${modelClasses.join(', ')})`, { file: source.csvPath });
    const unscored = modelClasses.filter((_, k) => !scored.includes(k));
    if (unscored.length > 0) notes.push(`not graded in this data, so not scored: ${unscored.join(', ')}`);
    // A class graded one way only (e.g. \`normal\`, known to be 0 wherever a disease is graded present) has no AUC.
    const oneSided = scored.filter((k) => {
      const j = index.get(modelClasses[k])!;
      const values = new Set(images.filter((im) => isGraded(im, j)).map((im) => im.labels![j]));
      return values.size < 2;
    });
    if (oneSided.length > 0) {
      notes.push(`graded with only positives or only negatives, so not scored: ${oneSided.map((k) => modelClasses[k]).join(', ')}`);
      scored = scored.filter((k) => !oneSided.includes(k));
      if (scored.length === 0) throw new InputError('no class of the model has both positive and negative graded images here', { file: source.csvPath });
    }
  } else if (source.format === 'contest') {
    if (unknownModelClasses.length > 0) {
      throw new InputError(
        `the model is trained for class${unknownModelClasses.length > 1 ? 'es' : ''} ` +
          `${unknownModelClasses.map((c) => `'${c}'`).join(', ')} that the CSV does not label (CSV classes: ${source.classes.join(', ')})`,
        { file: source.csvPath },
      );
    }
    scored = modelClasses.map((_, k) => k);
  } else {
    const present = source.classes.filter((_, k) => images.some((im) => im.labels![k]));
    const foreign = present.filter((c) => !modelClasses.includes(c));
    if (foreign.length > 0) {
      const examples = foreign.map((c) => {
        const k = index.get(c)!;
        const n = images.filter((im) => im.labels![k]).length;
        return `'${c}' (${n} image${n > 1 ? 's' : ''}, e.g. ${images.find((im) => im.labels![k])!.filename})`;
      });
      throw new InputError(
        `label${foreign.length > 1 ? 's' : ''} ${examples.join(', ')} ${foreign.length > 1 ? 'are' : 'is'} not among the ` +
          `model's classes (${modelClasses.join(', ')}): this model was trained for other classes`,
        { file: source.csvPath },
      );
    }
    scored = modelClasses.map((c, k) => (present.includes(c) ? k : -1)).filter((k) => k >= 0);
    const unscored = modelClasses.filter((c) => !present.includes(c));
    if (unscored.length > 0) notes.push(`filename,label CSV: only ${present.join(', ')} scored; no image is labelled ${unscored.join(', ')}`);
  }

  if (domain !== 'all') {
    const cols = modelClasses.map((c) => index.get(c)).filter((j): j is number => j !== undefined);
    const count = (im: LabelledImage): number => cols.reduce((a, j) => a + (im.labels![j] ? 1 : 0), 0);
    // A photograph of a partial source that grades a class 0 is that class's negative whatever the task's domain
    // (a DR-free eye tests the DR output of a focus model), so those are kept.
    const partlyGraded = (im: LabelledImage): boolean => cols.some((j) => !isGraded(im, j));
    const kept = images.filter((im) => partlyGraded(im) || (domain === 'exactly-one' ? count(im) === 1 : count(im) >= 1));
    if (kept.length < images.length) {
      notes.push(
        `${images.length - kept.length} of ${images.length} images left out: they do not have ` +
          `${domain === 'exactly-one' ? 'exactly one' : 'any'} of the model's classes (${modelClasses.join(', ')}), the images its task is trained on`,
      );
    }
    if (kept.length === 0) throw new InputError(`no image has ${domain === 'exactly-one' ? 'exactly one' : 'any'} of the model's classes (${modelClasses.join(', ')})`, { file: source.csvPath });
    images = kept;
  }

  const C = modelClasses.length;
  const labels = new Uint8Array(images.length * C);
  const graded = partial ? new Uint8Array(images.length * C) : undefined;
  images.forEach((im, i) => {
    modelClasses.forEach((c, k) => {
      const j = index.get(c);
      if (j !== undefined) labels[i * C + k] = im.labels![j] ? 1 : 0;
      if (graded && j !== undefined) graded[i * C + k] = isGraded(im, j) ? 1 : 0;
    });
  });
  return { images, labels, scored, format: source.format, notes, ...(graded ? { graded } : {}) };
}

/** InputError naming the missing image files (the first few), before any prediction starts. */
export async function checkImagesExist(images: LabelledImage[], imagesDir: string): Promise<void> {
  const missing: string[] = [];
  await Promise.all(
    images.map(async (im) => {
      try {
        await access(im.path);
      } catch {
        missing.push(im.filename);
      }
    }),
  );
  if (missing.length > 0) {
    missing.sort();
    throw new InputError(
      `${missing.length} image${missing.length > 1 ? 's' : ''} listed in the CSV ${missing.length > 1 ? 'are' : 'is'} missing: ` +
        `${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', ...' : ''}`,
      { file: imagesDir },
    );
  }
}
