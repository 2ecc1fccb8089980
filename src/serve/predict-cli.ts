import { createHash } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { enclosingModelDir, METADATA_JSON, type FundusModel } from '../models/io.js';
import { isImageName } from '../data/image-files.js';
import type { PreprocessedImage } from '../data/preprocess.js';
import type { CamMethod } from '../explain/cam.js';
import { defaultExplanation } from '../explain/explainer.js';
import { writeFileAtomic } from '../util/atomic.js';
import { InputError } from '../util/errors.js';
import { acquireLock, type Lock } from '../util/lock.js';
import { pathKind } from '../util/owned.js';
import { Predictor } from '../models/predictor.js';
import { toRecord, toUngradableRecord, type PhotoRecord, type PredictionRecord } from '../models/records.js';
import { progress } from '../util/progress.js';
import { ResultSink, readPredictionsHeader, type ModelIdentity, type OutputFormat } from './output.js';
import { dicomInfoOf, mayBeDicom } from '../data/photo-source.js';
import { HEATMAPS_LOCK, HeatmapNames, checkHeatmapClasses, checkHeatmapsDir, writeOverlays, type HeatmapChoice } from './heatmap-files.js';
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
  /** Absent: the model's own default (`defaultExplanation`). */
  heatmapMethod?: CamMethod;
  /** `positive`: the classes decided positive (the likeliest class when none is); `all`; or a list of names. */
  heatmapClasses?: HeatmapChoice['classes'];
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

/** The `fundus predict` run: streams results into the sink batch by batch, so memory stays bounded. */
export async function runPredict(opts: PredictRunOptions): Promise<PredictRunSummary> {
  const t0 = performance.now();
  const { model } = opts;
  const { classes, thresholds } = model.metadata;
  const choice: HeatmapChoice = { method: opts.heatmapMethod ?? defaultExplanation(model).method, classes: opts.heatmapClasses ?? 'positive' };
  checkHeatmapClasses(choice.classes, classes);
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
      // Overlays first, so that a photograph's row names them (and a row in the output means they are written).
      if (opts.heatmaps) {
        for (const { rec, image } of records) {
          try {
            const stem = await names!.stemFor(resolve(rec.file!));
            rec.heatmaps = await writeOverlays(model, rec.file!, image, rec, choice, opts.heatmaps, stem);
            summary.heatmaps += Object.keys(rec.heatmaps).length;
          } catch (err) {
            process.stderr.write(`fundus predict: no heatmap for ${rec.file}: ${(err as Error).message}\n`);
          }
        }
      }
      if (opts.format === 'fhir') bundled.push(...rows);
      else await sink!.write(rows);
      summary.predicted += records.length;
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
