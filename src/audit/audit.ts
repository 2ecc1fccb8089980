import { resolve } from 'node:path';
import { loadPreprocessedBytes } from '../data/cache.js';
import { readDatasets } from '../data/datasets.js';
import type { LabelledImage } from '../data/labels.js';
import { describePreprocess } from '../data/preprocess.js';
import { seededRandom, shuffleInPlace } from '../data/random.js';
import { PART_NAMES } from '../data/split.js';
import type { PartName } from '../data/split.js';
import type { FundusModel } from '../models/io.js';
import type { Embeddings, EmbedOptions } from '../selflearn/embed.js';
import { InputError } from '../util/errors.js';
import { progress } from '../util/progress.js';
import { AUDIT_PREPROCESS, IMAGE_STATISTICS, PIXEL_STATISTICS, imageStatistics } from './features.js';
import { groupedStratifiedFolds } from './folds.js';
import { selectColumns } from './logistic.js';
import type { FeatureMatrix } from './logistic.js';
import { auditVerdict, classAucs, classShares, sourceIndex, sourcePredictability, statisticsBySource } from './report.js';
import type { AuditReport, AuditSource, ModelAudit } from './report.js';

export type AuditPart = PartName | 'all';

/** The network runs the audit needs; injectable so that tests can stand in for them. */
export interface AuditNetwork {
  /** N×C probabilities in input order (default: predictFiles, the model's own preprocessing and TTA). */
  predict?: (model: FundusModel, paths: string[], opts: { batchSize?: number; onProgress?: (done: number) => void }) => Promise<Float32Array>;
  /** Penultimate-layer embeddings (default: embedFiles). */
  embed?: (model: FundusModel, paths: string[], opts: EmbedOptions) => Promise<Embeddings>;
}

export interface AuditOptions {
  /** Datasets files (see src/data/datasets.ts); source names must be unique over all of them. */
  datasets: string[];
  /** The part of each training source (default `test`); external sources always contribute all their images. */
  part?: AuditPart;
  /** Cross-validation folds (default 5; fewer when there are fewer groups). */
  folds?: number;
  /** Seed of the image subsample and the fold assignment (default 0). */
  seed?: number;
  /** At most this many images per source, a seeded random subset (default: all). */
  limitPerSource?: number;
  /** A model directory: also audit its embedding and its per-source metrics. */
  model?: string;
  /** L2 strength of the logistic regressions (default 1/n, see logistic.ts). */
  l2?: number;
  /** Use the preprocessing cache (default true). */
  cache?: boolean;
  /** Images per forward pass (default 16). */
  batchSize?: number;
  /** No progress bars. */
  quiet?: boolean;
  network?: AuditNetwork;
}

/** The images of one source that the audit looks at. */
export interface SelectedSource {
  source: AuditSource;
  images: LabelledImage[];
}

/** Images whose preprocessed bytes are held in memory at once while computing statistics. */
const CHUNK = 64;

/**
 * Reads the datasets files and picks each source's images: the chosen part of a training source, all of an external
 * one, then at most `limitPerSource` of them (a seeded random subset, in file order). Sources with no image in the
 * part are left out with a note. InputError naming the file for a source with a single image, for a source name used
 * twice, and when fewer than two sources remain.
 */
export async function selectAuditImages(
  datasets: string[],
  part: AuditPart,
  opts: { limitPerSource?: number; seed?: number } = {},
): Promise<{ selected: SelectedSource[]; datasetClasses: string[]; notes: string[] }> {
  if (datasets.length === 0) throw new InputError('give at least one datasets file (--datasets)');
  if (part !== 'all' && !(PART_NAMES as readonly string[]).includes(part)) {
    throw new InputError(`unknown part '${part}' (use ${[...PART_NAMES, 'all'].join(', ')})`);
  }
  const limit = opts.limitPerSource;
  if (limit !== undefined && (!Number.isInteger(limit) || limit < 2)) throw new InputError(`--limit-per-source must be an integer >= 2 (got ${limit})`);
  const selected: SelectedSource[] = [];
  const notes: string[] = [];
  const seen = new Map<string, string>();
  let datasetClasses: string[] | undefined;
  for (const file of datasets) {
    const data = await readDatasets(file);
    for (const src of data.sources) {
      if (seen.has(src.name)) throw new InputError(`source '${src.name}' is also in ${seen.get(src.name)}: source names must be unique`, { file });
      seen.set(src.name, file);
      datasetClasses ??= src.dataset.classes;
      if (src.dataset.classes.join('\n') !== datasetClasses.join('\n')) {
        throw new InputError(`source '${src.name}' has other classes than the first source`, { file });
      }
      const external = src.role === 'external';
      const names = external ? src.parts.test : part === 'all' ? PART_NAMES.flatMap((p) => src.parts[p]) : src.parts[part];
      const wanted = new Set(names);
      const inPart = src.dataset.images.filter((im) => wanted.has(im.filename));
      const where = external ? 'at all' : part === 'all' ? 'in any part' : `in part '${part}'`;
      if (inPart.length === 0) {
        notes.push(`source '${src.name}' (${file}) has no images ${where}: left out`);
        continue;
      }
      if (inPart.length === 1) {
        throw new InputError(`source '${src.name}' has a single image ${where}: the audit needs at least two per source`, { file });
      }
      let images = inPart;
      if (limit !== undefined && inPart.length > limit) {
        const order = shuffleInPlace(inPart.map((_, i) => i), seededRandom((opts.seed ?? 0) + 7919 * (selected.length + 1)));
        const keep = new Set(order.slice(0, limit));
        images = inPart.filter((_, i) => keep.has(i));
      }
      const groups = new Set(images.map((im, i) => (im.group !== undefined ? `g ${im.group}` : `i ${i}`)));
      selected.push({
        source: {
          name: src.name,
          role: src.role,
          datasets: resolve(file),
          images: images.length,
          available: inPart.length,
          groups: groups.size,
          grouped: images.some((im) => im.group !== undefined),
        },
        images: images.map((im) => ({ ...im, source: src.name })),
      });
    }
  }
  if (selected.length < 2) {
    const which = selected.length === 1 ? `only source '${selected[0].source.name}' has images` : 'no source has images';
    throw new InputError(`the audit compares sources, and ${which} ${part === 'all' ? '' : `in part '${part}' `}(external sources count whole)`, {
      file: datasets.join(', '),
    });
  }
  return { selected, datasetClasses: datasetClasses!, notes };
}

/** The image statistics of each photo, as an n × IMAGE_STATISTICS.length matrix (rows in `paths` order). */
export async function statisticsMatrix(paths: string[], opts: { cache?: boolean; quiet?: boolean } = {}): Promise<FeatureMatrix & { data: Float64Array }> {
  const d = IMAGE_STATISTICS.length;
  const data = new Float64Array(paths.length * d);
  const bar = progress('image statistics', paths.length, { quiet: opts.quiet });
  try {
    for (let c0 = 0; c0 < paths.length; c0 += CHUNK) {
      const part = paths.slice(c0, c0 + CHUNK);
      const bytes = await loadPreprocessedBytes(part, AUDIT_PREPROCESS, { cache: opts.cache });
      bytes.forEach((b, i) => data.set(imageStatistics(b), (c0 + i) * d));
      bar.tick(part.length);
    }
  } finally {
    bar.stop();
  }
  return { data, rows: paths.length, cols: d };
}

/**
 * The shortcut audit of labelled multi-source data (see docs/audit.md): how well plain image statistics (and, with
 * a model, its embedding) predict the source, each class's share per source, and with a model each class's AUC
 * within each source. Returns the report; prints nothing but progress bars on stderr.
 */
export async function auditSources(opts: AuditOptions): Promise<AuditReport> {
  const part = opts.part ?? 'test';
  const k = opts.folds ?? 5;
  if (!Number.isInteger(k) || k < 2) throw new InputError(`--folds must be an integer >= 2 (got ${k})`);
  if (opts.l2 !== undefined && !(opts.l2 > 0 && Number.isFinite(opts.l2))) throw new InputError(`--l2 must be a positive number (got ${opts.l2})`);
  const seed = opts.seed ?? 0;
  const { selected, datasetClasses, notes } = await selectAuditImages(opts.datasets, part, { limitPerSource: opts.limitPerSource, seed });

  // The model is loaded (and its metadata checked) before the long statistics pass.
  let model: FundusModel | undefined;
  if (opts.model) {
    const { initEngine } = await import('../engine/index.js');
    await initEngine();
    const { loadModel } = await import('../models/io.js');
    model = await loadModel(opts.model);
  }

  const sources = selected.map((s) => s.source.name);
  const images = selected.flatMap((s) => s.images);
  const paths = images.map((im) => im.path);
  const y = sourceIndex(images, sources);
  const groupKeys = images.map((im) => (im.group !== undefined ? `${im.source}/${im.group}` : undefined));
  const fold = groupedStratifiedFolds(y, groupKeys, k, seed);
  if (fold.folds < k) notes.push(`${fold.folds} folds instead of ${k}: there are only ${fold.folds} groups`);
  const groupedFolds = groupKeys.some((g) => g !== undefined);
  const lr = opts.l2 !== undefined ? { l2: opts.l2 } : {};

  const stats = await statisticsMatrix(paths, { cache: opts.cache, quiet: opts.quiet });
  const statistics = {
    preprocess: `${describePreprocess(AUDIT_PREPROCESS).replace(/, normalised with .*$/, '')}; 0..255 bytes, before normalisation`,
    names: [...IMAGE_STATISTICS],
    predictability: sourcePredictability(stats, y, sources, fold, { features: `${IMAGE_STATISTICS.length} image statistics`, groupedFolds }, lr),
    pixelPredictability: sourcePredictability(
      selectColumns(stats, PIXEL_STATISTICS.map((name) => IMAGE_STATISTICS.indexOf(name))),
      y,
      sources,
      fold,
      { features: `${PIXEL_STATISTICS.length} statistics of the crop's pixels (no photo size or framing)`, groupedFolds },
      lr,
    ),
    bySource: statisticsBySource(stats, IMAGE_STATISTICS, y, sources),
  };
  const { confounding, warnings } = classShares(images, datasetClasses);

  let modelAudit: ModelAudit | null = null;
  if (model && opts.model) {
    const predict = opts.network?.predict ?? (await import('../models/predictor.js')).predictFiles;
    const embed = opts.network?.embed ?? (await import('../selflearn/embed.js')).embedFiles;
    const batchSize = opts.batchSize ?? 16;
    const bar = progress('predictions', paths.length, { quiet: opts.quiet });
    let probs: Float32Array;
    try {
      let done = 0;
      probs = await predict(model, paths, { batchSize, onProgress: (n) => (bar.tick(n - done), (done = n)) });
    } finally {
      bar.stop();
    }
    const emb = await embed(model, paths, { batchSize, cache: opts.cache, ...(opts.quiet ? {} : { progressLabel: 'embedding' }) });
    const classes = model.metadata.classes;
    const rowsOf = (s: number) => images.flatMap((_, i) => (y[i] === s ? [i] : []));
    modelAudit = {
      dir: resolve(opts.model),
      architecture: model.metadata.architecture,
      layer: emb.layer,
      dim: emb.matrix.cols,
      embedding: sourcePredictability(emb.matrix, y, sources, fold, { features: `${emb.matrix.cols}-d embedding (layer ${emb.layer})`, groupedFolds }, lr),
      perSource: sources.map((source, s) => ({ source, classes: classAucs(images, rowsOf(s), probs, classes, datasetClasses) })),
      pooled: classAucs(images, images.map((_, i) => i), probs, classes, datasetClasses),
    };
  }
  for (const [name, p] of [['image statistics', statistics.predictability], ['embedding', modelAudit?.embedding]] as const) {
    if (p && !p.converged) notes.push(`the logistic regression on the ${name} stopped at its iteration limit in some fold (AUCs are still valid scores)`);
  }

  const report: Omit<AuditReport, 'verdict'> = {
    format: 'fundus-audit',
    formatVersion: 1,
    datasets: opts.datasets.map((f) => resolve(f)),
    part,
    limitPerSource: opts.limitPerSource ?? null,
    seed,
    sources: selected.map((s) => s.source),
    statistics,
    confounding,
    warnings,
    model: modelAudit,
    notes,
  };
  return { ...report, verdict: auditVerdict(report) };
}
