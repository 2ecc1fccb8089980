import { createHash } from 'node:crypto';
import { appendFile, mkdir, readFile, readdir } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { enclosingModelDir, METADATA_JSON, type FundusModel } from '../models/io.js';
import { isImageName } from '../data/image-files.js';
import type { PreprocessedImage } from '../data/preprocess.js';
import type { CamMethod } from '../explain/cam.js';
import { explainerFor } from '../explain/explainer.js';
import { renderOverlay } from '../explain/overlay.js';
import { writeFileAtomic } from '../util/atomic.js';
import { InputError } from '../util/errors.js';
import { acquireLock, type Lock } from '../util/lock.js';
import { folderEntries, isInside, pathKind, someNames } from '../util/owned.js';
import { Predictor } from '../models/predictor.js';
import { toRecord, toUngradableRecord, type PhotoRecord, type PredictionRecord } from '../models/records.js';
import { progress } from '../util/progress.js';
import { ResultSink, readPredictionsHeader, type ModelIdentity, type OutputFormat } from './output.js';
import { dicomInfoOf, mayBeDicom } from '../data/photo-source.js';
import { outputStem } from '../data/dicom.js';
import { fhirBundle, isFundusBundle } from './fhir.js';

/** predict's formats: the streamed ones, and `fhir` (one FHIR R4 Bundle of DiagnosticReports, written at the end). */
export type PredictFormat = OutputFormat | 'fhir';

export interface PredictRunOptions {
  model: FundusModel;
  images: string[];
  format: PredictFormat;
  /** Put DICOM photographs' patient identifiers into the results (`--show-identifiers`); default: never. */
  showIdentifiers?: boolean;
  out?: string;
  resume?: boolean;
  /** Folder for heatmap overlays (one PNG per image and explained class). */
  heatmaps?: string;
  heatmapMethod?: CamMethod;
  /** `positive`: the classes decided positive (the likeliest class when none is); `all`; or a list of names. */
  heatmapClasses?: 'positive' | 'all' | string[];
  batchSize?: number;
  quiet?: boolean;
  /**
   * Check each photo with the gradability gate first (default true): one that is not a gradable fundus photograph
   * gets a row saying why (`gradable: false`) and no probabilities. False (`--no-gradability-check`, for research)
   * predicts everything.
   */
  gradabilityCheck?: boolean;
}

export interface PredictRunSummary {
  total: number;
  /** Images already in the output (`--resume`). */
  skipped: number;
  predicted: number;
  /** Photos the gradability gate refused (written with their reasons, not predicted). */
  ungradable: number;
  failed: { file: string; message: string }[];
  heatmaps: number;
  seconds: number;
  /** False when the failures still have to be printed (they were held back under a live progress bar). */
  failuresReported: boolean;
}

function classesToExplain(rec: PredictionRecord, classes: readonly string[], which: PredictRunOptions['heatmapClasses']): number[] {
  if (which === 'all') return classes.map((_, i) => i);
  if (Array.isArray(which)) return which.map((c) => classes.indexOf(c));
  if (rec.positive.length > 0) return rec.positive.map((c) => classes.indexOf(c));
  let best = 0;
  classes.forEach((c, i) => {
    if (rec.probabilities[c] > rec.probabilities[classes[best]]) best = i;
  });
  return [best];
}

export function heatmapFileName(stem: string, cls: string, method: string): string {
  return `${stem}.${cls.replace(/[^a-z0-9]+/gi, '-')}.${method}.png`;
}

/** The model's identity for the predictions header: its folder and the sha256 of its fundus.json. */
export async function modelIdentity(model: Pick<FundusModel, 'dir' | 'metadata'>): Promise<ModelIdentity> {
  let text: string;
  try {
    text = await readFile(join(model.dir, METADATA_JSON), 'utf8');
  } catch {
    text = JSON.stringify(model.metadata); // a model that was never saved (tests)
  }
  let same = false;
  try {
    same = JSON.stringify(JSON.parse(text)) === JSON.stringify(model.metadata);
  } catch {
    // not JSON any more
  }
  // The file is hashed after the model was loaded: it must still be the one loaded (not a model being replaced).
  if (!same) throw new InputError(`${METADATA_JSON} changed after the model was loaded (is it being replaced?); run again`, { file: join(model.dir, METADATA_JSON) });
  return identityOf(model.dir, text);
}

/** The identity of the model in `dir` whose fundus.json reads `fundusJson`. */
export function identityOf(dir: string, fundusJson: string): ModelIdentity {
  return { dir: resolve(dir), fundusJsonSha256: createHash('sha256').update(fundusJson).digest('hex') };
}

/** Extensions of photographs and other pictures that `--out` must never name. */
const PICTURE = /\.(bmp|gif|heic|heif|jp2|dcm)$/i;

/**
 * Checks `--out` before any work (InputError naming the path): not a photograph or a folder, not inside a model
 * folder, not one of the inputs, and, where `<out>` or `<out>.partial` exists, a predictions file fundus wrote (its
 * header). Its own earlier output is replaced (or, with --resume, continued).
 */
export async function checkPredictOut(out: string, images: string[] = []): Promise<void> {
  const abs = resolve(out);
  if (isImageName(out) || PICTURE.test(out)) {
    throw new InputError('--out names a picture; predictions are written as CSV (.csv), JSON Lines (.jsonl) or text (.txt)', { file: out });
  }
  const kind = await pathKind(abs);
  if (kind === 'folder') throw new InputError(`--out is a folder; give the predictions file a name, e.g. ${join(out, 'predictions.csv')}`, { file: out });
  if (kind === 'other') throw new InputError('--out exists and is not a regular file', { file: out });
  const model = await enclosingModelDir(dirname(abs));
  if (model) throw new InputError(`--out lies inside the model folder ${model}; write predictions elsewhere`, { file: out });
  if (images.some((p) => resolve(p) === abs)) throw new InputError('--out is one of the input images', { file: out });
  for (const p of [out, `${out}.partial`]) {
    const k = await pathKind(p);
    if (k === 'missing') continue;
    if (k !== 'file') throw new InputError('exists and is not a regular file', { file: p });
    if (!(await readPredictionsHeader(p)) && !(await isFundusBundleFile(p))) {
      throw new InputError('refusing to overwrite or resume a file fundus did not write (its first line is not a fundus-predictions header, nor is it a FHIR Bundle fundus wrote); choose another --out', {
        file: p,
      });
    }
  }
}

async function isFundusBundleFile(path: string): Promise<boolean> {
  try {
    return isFundusBundle(JSON.parse(await readFile(path, 'utf8')));
  } catch {
    return false;
  }
}

/** The index of a heatmaps folder: which image got which file-name stem. Its presence marks a folder fundus writes heatmaps into. */
export const HEATMAPS_INDEX = 'fundus-heatmaps.jsonl';
const HEATMAPS_LOCK = 'fundus-heatmaps.lock';

/** Lock files and their temporaries: never someone's content. */
function isLockLeftover(name: string): boolean {
  return name === HEATMAPS_LOCK || (name.startsWith(`${HEATMAPS_LOCK}.`) && /\.(tmp|stale)$/.test(name));
}

/**
 * Checks `--heatmaps` before any work: a new or empty folder, or one fundus wrote heatmaps into (its index), not
 * inside a model folder, and holding none of the inputs.
 */
export async function checkHeatmapsDir(dir: string, images: string[] = []): Promise<void> {
  const entries = ((await folderEntries(resolve(dir), '--heatmaps')) ?? []).filter((n) => !isLockLeftover(n));
  const model = await enclosingModelDir(dir);
  if (model) throw new InputError(`--heatmaps lies inside the model folder ${model}; write heatmaps elsewhere`, { file: dir });
  if (entries.length > 0 && !entries.includes(HEATMAPS_INDEX)) {
    throw new InputError(
      `--heatmaps is a folder fundus did not write heatmaps into (no ${HEATMAPS_INDEX}; it holds ${someNames(entries)}); choose a new or empty folder`,
      { file: dir },
    );
  }
  const inside = images.find((p) => isInside(p, dir));
  if (inside) throw new InputError(`the input ${inside} lies inside --heatmaps: it would be predicted as a photograph; choose another folder`, { file: dir });
}

/**
 * Unique file names in a heatmaps folder: each image gets a stem (its file name without extension; a DICOM frame's
 * says its frame, see outputStem) for its overlays `<stem>.<class>.<method>.png`; when another image has that stem
 * already (d1/x.jpg and d2/x.jpg, x.jpg and x.png), or overlays fundus has no record of use it, the next free
 * `<stem>-2`, `<stem>-3`, ... An image keeps its stem from
 * run to run (the index records it first), so a resumed run writes each image's overlays under the same names.
 */
class HeatmapNames {
  private readonly stemOf = new Map<string, string>();
  private readonly owner = new Map<string, string>();
  private readonly onDisk = new Set<string>();

  private constructor(readonly dir: string) {}

  static async open(dir: string): Promise<HeatmapNames> {
    const names = new HeatmapNames(dir);
    await mkdir(dir, { recursive: true });
    const index = join(dir, HEATMAPS_INDEX);
    let text: string | undefined;
    try {
      text = await readFile(index, 'utf8');
    } catch {
      await writeFileAtomic(index, JSON.stringify({ format: 'fundus-heatmaps', version: 1 }) + '\n');
    }
    if (text !== undefined) {
      const lines = text.slice(0, text.lastIndexOf('\n') + 1).split('\n').filter(Boolean);
      const header = (() => {
        try {
          return (JSON.parse(lines[0] ?? '') as { format?: string }).format;
        } catch {
          return undefined;
        }
      })();
      if (header !== 'fundus-heatmaps') throw new InputError('not a fundus heatmaps index; refusing to write heatmaps into this folder', { file: index });
      for (const l of lines.slice(1)) {
        try {
          const e = JSON.parse(l) as { image?: unknown; stem?: unknown };
          if (typeof e.image === 'string' && typeof e.stem === 'string') names.claim(e.image, e.stem);
        } catch {
          // a torn line: that image simply gets a stem again
        }
      }
      // A torn last line (a run killed while appending) would glue onto the next entry: end the file with a newline.
      if (!text.endsWith('\n')) await appendFile(index, '\n');
    }
    // Overlays fundus has no record of (written before a crash, or by someone else) keep their names.
    for (const f of await readdir(dir)) {
      const m = /^(.+)\.[^.]+\.[^.]+\.png$/.exec(f);
      if (m) names.onDisk.add(m[1].toLowerCase());
    }
    return names;
  }

  private taken(stem: string): boolean {
    return this.owner.has(stem.toLowerCase()) || this.onDisk.has(stem.toLowerCase());
  }

  private claim(image: string, stem: string): void {
    this.stemOf.set(image, stem);
    this.owner.set(stem.toLowerCase(), image);
  }

  /** The stem of `image` (resolved path), claimed in the index before any of its overlays is written. */
  async stemFor(image: string): Promise<string> {
    const known = this.stemOf.get(image);
    if (known) return known;
    let n = 1;
    while (this.taken(outputStem(image, n))) n++;
    const stem = outputStem(image, n);
    this.claim(image, stem);
    await appendFile(join(this.dir, HEATMAPS_INDEX), JSON.stringify({ image, stem }) + '\n');
    return stem;
  }
}

async function writeHeatmaps(opts: PredictRunOptions, names: HeatmapNames, image: string, pre: PreprocessedImage, rec: PredictionRecord): Promise<number> {
  const { model } = opts;
  const method = opts.heatmapMethod ?? 'gradcam';
  const classes = model.metadata.classes;
  const targets = classesToExplain(rec, classes, opts.heatmapClasses);
  // Several classes of one image share one forward and one backward pass.
  const results = explainerFor(model).explain([pre], targets.map((classIndex) => ({ image: 0, classIndex })), method);
  const stem = await names.stemFor(resolve(image));
  for (const r of results) {
    const png = await renderOverlay(image, r.heatmap, pre.geometry);
    await writeFileAtomic(join(names.dir, heatmapFileName(stem, classes[r.classIndex], method)), png);
  }
  return results.length;
}

/** The `fundus predict` run: streams results into the sink batch by batch, so memory stays bounded. */
export async function runPredict(opts: PredictRunOptions): Promise<PredictRunSummary> {
  const t0 = performance.now();
  const { model } = opts;
  const { classes, thresholds } = model.metadata;
  if (Array.isArray(opts.heatmapClasses)) {
    for (const c of opts.heatmapClasses) {
      if (!classes.includes(c)) throw new InputError(`--heatmap-classes: unknown class "${c}" (this model's classes: ${classes.join(', ')})`);
    }
  }
  const batchSize = opts.batchSize ?? 16;
  // Everything that could refuse, before any image is read.
  if (opts.out) await checkPredictOut(opts.out, opts.images);
  if (opts.heatmaps) await checkHeatmapsDir(opts.heatmaps, opts.images);
  const locks: Lock[] = [];
  const stale = (path: string) => (h: { pid: number }) => process.stderr.write(`fundus predict: taking over ${path} from pid ${h.pid}, which is no longer running\n`);
  let sink: ResultSink | undefined;
  let done: Set<string>;
  let names: HeatmapNames | undefined;
  let identity: ModelIdentity | undefined;
  const bundled: PhotoRecord[] = [];
  try {
    // One writer per output: a second `predict --out same.csv` (with --resume or not) is refused while this one runs.
    if (opts.out) {
      await mkdir(dirname(resolve(opts.out)), { recursive: true });
      const lockPath = `${opts.out}.lock`;
      locks.push(await acquireLock(lockPath, 'predict', stale(lockPath)));
    }
    if (opts.heatmaps) {
      await mkdir(opts.heatmaps, { recursive: true });
      const lockPath = join(opts.heatmaps, HEATMAPS_LOCK);
      locks.push(await acquireLock(lockPath, 'predict', stale(lockPath)));
      names = await HeatmapNames.open(opts.heatmaps);
    }
    if (opts.format === 'fhir') {
      if (opts.resume) throw new InputError('--resume is for the json and csv formats; a FHIR Bundle is written whole at the end');
      identity = await modelIdentity(model);
      // the Bundle is written whole at the end: nothing streams, nothing is done already
      done = new Set();
    } else {
      identity = opts.out ? await modelIdentity(model) : undefined;
      const dicomColumns = opts.images.some(mayBeDicom);
      ({ sink, done } = await ResultSink.open({ format: opts.format, classes, thresholds, out: opts.out, resume: opts.resume, model: identity, dicomColumns }));
    }
  } catch (err) {
    for (const l of locks) await l.release();
    throw err;
  }
  const todo = done.size > 0 ? opts.images.filter((p) => !done.has(resolve(p))) : opts.images;
  const summary: PredictRunSummary = { total: opts.images.length, skipped: opts.images.length - todo.length, predicted: 0, ungradable: 0, failed: [], heatmaps: 0, seconds: 0, failuresReported: true };
  // Results printed to a terminal are their own progress display; a bar would tear them.
  const quiet = opts.quiet || (!opts.out && process.stdout.isTTY === true);
  const bar = progress('predict', todo.length, { quiet });
  const barShown = !quiet && process.stderr.isTTY === true && !process.env.FUNDUS_NO_PROGRESS;
  summary.failuresReported = !barShown;
  let success = false;
  const gate = opts.gradabilityCheck ?? true;
  const predictor = new Predictor(model, { batchSize, gradability: gate });
  const onInterrupt = () => {
    bar.stop();
    process.stderr.write(`\nfundus predict: interrupted${opts.out ? `; rerun with --resume to continue ${opts.out}` : ''}\n`);
    process.exit(130);
  };
  process.once('SIGINT', onInterrupt);
  try {
    for await (const { start, outcomes, images } of predictor.batches(todo)) {
      const chunk = todo.slice(start, start + outcomes.length);
      const records: { rec: PredictionRecord; image: PreprocessedImage }[] = [];
      const rows: PhotoRecord[] = [];
      for (let i = 0; i < chunk.length; i++) {
        const o = outcomes[i];
        if (o.ok) {
          const rec = toRecord(o.probabilities, 0, classes, thresholds, chunk[i], gate);
          records.push({ rec, image: images[i]! });
          rows.push(rec);
        } else if (o.ungradable) {
          rows.push(toUngradableRecord(o.ungradable, chunk[i]));
          summary.ungradable++;
        } else {
          summary.failed.push({ file: chunk[i], message: o.message });
          // Under a live progress bar the report waits for the end of the run (see the command's summary).
          if (!barShown) process.stderr.write(`fundus predict: skipped ${chunk[i]}: ${o.message}\n`);
        }
      }
      // DICOM photographs carry their SOP Instance UID, laterality and acquisition date into the results.
      for (const row of rows) {
        if (row.file !== undefined && mayBeDicom(row.file)) {
          const dicom = await dicomInfoOf(row.file, { identifiers: opts.showIdentifiers });
          if (dicom) row.dicom = dicom;
        }
      }
      if (opts.format === 'fhir') bundled.push(...rows);
      else await sink!.write(rows);
      summary.predicted += records.length;
      if (opts.heatmaps) {
        for (const { rec, image } of records) {
          try {
            summary.heatmaps += await writeHeatmaps(opts, names!, rec.file!, image, rec);
          } catch (err) {
            process.stderr.write(`fundus predict: no heatmap for ${rec.file}: ${(err as Error).message}\n`);
          }
        }
      }
      bar.tick(chunk.length);
    }
    if (opts.format === 'fhir') {
      const text = JSON.stringify(fhirBundle(bundled, { identity: identity!, classes, thresholds }), null, 1) + '\n';
      if (opts.out) await writeFileAtomic(opts.out, text);
      else process.stdout.write(text);
    }
    success = true;
  } finally {
    process.removeListener('SIGINT', onInterrupt);
    bar.stop();
    await predictor.close();
    try {
      await sink?.close(success);
    } finally {
      for (const l of locks) await l.release();
    }
  }
  summary.seconds = (performance.now() - t0) / 1000;
  return summary;
}
