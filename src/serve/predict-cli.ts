import { basename, extname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { FundusModel } from '../models/io.js';
import { preprocessImage } from '../data/preprocess.js';
import { explainerFor, type CamMethod } from '../explain/cam.js';
import { renderOverlay } from '../explain/overlay.js';
import { writeFileAtomic } from '../util/atomic.js';
import { InputError } from '../util/errors.js';
import { predictBatches, decodePoolIfNeeded } from './pipeline.js';
import { progress } from '../util/progress.js';
import type { PredictionRecord } from './api-types.js';
import { ResultSink, type OutputFormat } from './output.js';
import { toRecord } from './records.js';

export interface PredictRunOptions {
  model: FundusModel;
  images: string[];
  format: OutputFormat;
  out?: string;
  resume?: boolean;
  /** Folder for heatmap overlays (one PNG per image and explained class). */
  heatmaps?: string;
  heatmapMethod?: CamMethod;
  /** `positive`: the classes decided positive (the likeliest class when none is); `all`; or a list of names. */
  heatmapClasses?: 'positive' | 'all' | string[];
  batchSize?: number;
  quiet?: boolean;
}

export interface PredictRunSummary {
  total: number;
  /** Images already in the output (`--resume`). */
  skipped: number;
  predicted: number;
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

export function heatmapFileName(image: string, cls: string, method: string): string {
  const stem = basename(image, extname(image));
  return `${stem}.${cls.replace(/[^a-z0-9]+/gi, '-')}.${method}.png`;
}

async function writeHeatmaps(opts: PredictRunOptions, image: string, rec: PredictionRecord): Promise<number> {
  const { model } = opts;
  const method = opts.heatmapMethod ?? 'gradcam';
  const classes = model.metadata.classes;
  const targets = classesToExplain(rec, classes, opts.heatmapClasses);
  const pre = await preprocessImage(image, model.metadata.preprocess);
  // Several classes of one image share one forward and one backward pass.
  const results = explainerFor(model).explain([pre], targets.map((classIndex) => ({ image: 0, classIndex })), method);
  for (const r of results) {
    const png = await renderOverlay(image, r.heatmap, pre.geometry);
    await writeFileAtomic(join(opts.heatmaps!, heatmapFileName(image, classes[r.classIndex], method)), png);
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
  const { sink, done } = await ResultSink.open({ format: opts.format, classes, thresholds, out: opts.out, resume: opts.resume });
  const todo = done.size > 0 ? opts.images.filter((p) => !done.has(resolve(p))) : opts.images;
  const summary: PredictRunSummary = { total: opts.images.length, skipped: opts.images.length - todo.length, predicted: 0, failed: [], heatmaps: 0, seconds: 0, failuresReported: true };
  // Results printed to a terminal are their own progress display; a bar would tear them.
  const quiet = opts.quiet || (!opts.out && process.stdout.isTTY === true);
  const bar = progress('predict', todo.length, { quiet });
  const barShown = !quiet && process.stderr.isTTY === true && !process.env.FUNDUS_NO_PROGRESS;
  summary.failuresReported = !barShown;
  let success = false;
  const pool = decodePoolIfNeeded();
  const onInterrupt = () => {
    bar.stop();
    process.stderr.write(`\nfundus predict: interrupted${opts.out ? `; rerun with --resume to continue ${opts.out}` : ''}\n`);
    process.exit(130);
  };
  process.once('SIGINT', onInterrupt);
  try {
    for await (const { start, outcomes } of predictBatches(model, todo, batchSize, pool)) {
      const chunk = todo.slice(start, start + outcomes.length);
      const records: PredictionRecord[] = [];
      for (let i = 0; i < chunk.length; i++) {
        const o = outcomes[i];
        if (o.ok) records.push(toRecord(o.probs, 0, classes, thresholds, chunk[i]));
        else {
          summary.failed.push({ file: chunk[i], message: o.message });
          // Under a live progress bar the report waits for the end of the run (see the command's summary).
          if (!barShown) process.stderr.write(`fundus predict: skipped ${chunk[i]}: ${o.message}\n`);
        }
      }
      await sink.write(records);
      summary.predicted += records.length;
      if (opts.heatmaps) {
        for (const rec of records) {
          try {
            summary.heatmaps += await writeHeatmaps(opts, rec.file!, rec);
          } catch (err) {
            process.stderr.write(`fundus predict: no heatmap for ${rec.file}: ${(err as Error).message}\n`);
          }
        }
      }
      bar.tick(chunk.length);
    }
    success = true;
  } finally {
    process.removeListener('SIGINT', onInterrupt);
    bar.stop();
    await pool?.close();
    await sink.close(success);
  }
  summary.seconds = (performance.now() - t0) / 1000;
  return summary;
}
