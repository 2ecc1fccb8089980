import type { Command } from 'commander';
import { NON_NEGATIVE_INTEGER, optionalNumber } from '../util/cli-options.js';
import { smallClassWarnings } from './evaluate.js';
import { resolve } from 'node:path';
import { InputError } from '../util/errors.js';
import { reportSkipped } from '../util/skipped.js';
import { METADATA_JSON, writeMetadata } from '../models/io.js';
import type { FundusModel } from '../models/io.js';
import { initEngine } from '../engine/index.js';
import { CLASSES } from '../data/labels.js';
import { confoundingBySource, confoundingWarnings } from './confounding.js';
import { buildReport, defaultPredictFiles, loadEvaluationSet, loadSourceSets, predictSet } from './run.js';
import type { DataSelection, PredictFiles } from './run.js';
import { formatReport } from './text.js';
import { writeReport } from './report.js';
import { parsePolicy, tuneThresholds } from '../metrics/thresholds.js';

/** Options shared by `fundus evaluate` and `fundus thresholds`. */
interface DataOptions {
  data?: string[];
  split?: string;
  part?: string;
  batchSize?: string;
  quiet?: boolean;
}

function selection(opts: DataOptions, defaultPart?: string): DataSelection {
  if (!opts.data || opts.data.length !== 2) {
    throw new InputError(`--data takes two values, the label CSV and the image folder (got ${opts.data?.length ?? 0})`);
  }
  return { csv: opts.data[0], images: opts.data[1], split: opts.split, part: opts.part ?? (opts.split ? defaultPart : undefined) };
}

async function loadForEvaluation(modelDir: string): Promise<FundusModel> {
  await initEngine();
  const { loadModel } = await import('../models/io.js');
  return loadModel(modelDir);
}

/** `predict` is injectable so that tests can run the commands' logic on known probabilities. */
export async function evaluateCommand(
  modelDir: string,
  opts: DataOptions & { json?: boolean; report?: string; resamples?: string; seed?: string; datasets?: string[] },
  predict?: PredictFiles,
): Promise<void> {
  const resamples = optionalNumber(opts.resamples, '--resamples', NON_NEGATIVE_INTEGER, 1000);
  const seed = optionalNumber(opts.seed, '--seed', NON_NEGATIVE_INTEGER, 0);
  if (opts.datasets?.length) {
    if (opts.data || opts.split) throw new InputError('give either --datasets or --data (and --split), not both');
    if (opts.report) throw new InputError('--report writes one set; with --datasets use --json');
    return evaluateSources(modelDir, { ...opts, datasets: opts.datasets }, { resamples, seed }, predict);
  }
  const sel = selection(opts, 'test');
  const model = await loadForEvaluation(modelDir);
  const { set, probs, skipped } = await predictSet(model, await loadEvaluationSet(model.metadata, sel), predict ?? (await defaultPredictFiles()), {
    batchSize: optionalNumber(opts.batchSize, '--batch-size', NON_NEGATIVE_INTEGER, 16) || undefined,
    quiet: opts.quiet || opts.json,
  });
  const report = buildReport(modelDir, model.metadata, sel, set, probs, { resamples, seed }, skipped);
  if (opts.report) {
    await writeReport(resolve(opts.report), { report, probs, labels: set.labels, images: set.images, modelDir });
  }
  if (opts.json) process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  else {
    console.log(formatReport(report));
    if (opts.report) console.log(`\nreport: ${resolve(opts.report)}`);
  }
  for (const w of smallClassWarnings(report)) console.error(`fundus: warning: ${w}`);
  reportSkipped('evaluate', skipped);
}

/**
 * Evaluates on every source of one or more datasets files: one report per source (the part of a training source,
 * the whole of an external one), each class on the images graded for it, and a warning for each class whose
 * positives the source alone predicts.
 */
async function evaluateSources(
  modelDir: string,
  opts: DataOptions & { datasets: string[]; json?: boolean; batchSize?: string },
  bootstrap: { resamples: number; seed: number },
  predict?: PredictFiles,
): Promise<void> {
  const model = await loadForEvaluation(modelDir);
  const { sets, skipped } = await loadSourceSets(model.metadata, opts.datasets, opts.part ?? 'test');
  const predictFn = predict ?? (await defaultPredictFiles());
  const reports = [];
  const used = [];
  const unreadable = [];
  for (const { sel, set: whole } of sets) {
    const { set, probs, skipped: lost } = await predictSet(model, whole, predictFn, { batchSize: optionalNumber(opts.batchSize, '--batch-size', NON_NEGATIVE_INTEGER, 16) || undefined, quiet: opts.quiet || opts.json });
    reports.push(buildReport(modelDir, model.metadata, sel, set, probs, bootstrap, lost));
    used.push(set);
    unreadable.push(...lost);
  }
  const images = used.flatMap((s) => s.images);
  const confounding = confoundingBySource(images, model.metadata.classes, CLASSES);
  const small = reports.flatMap((r) => smallClassWarnings(r, `${r.data.source}: `));
  const warnings = [...confoundingWarnings(confounding).map((w) => `${w}; pooled metrics over these sources reward recognising the source`), ...small];
  if (opts.json) {
    process.stdout.write(JSON.stringify({ sets: reports, skipped, confounding, warnings }, null, 2) + '\n');
    reportSkipped('evaluate', unreadable);
    return;
  }
  for (const r of reports) {
    console.log(`== ${r.data.source} (${r.data.role === 'external' ? 'external, never trained on: all images' : `part '${r.data.part}'`}) ==`);
    console.log(formatReport(r));
    console.log('');
  }
  for (const s of skipped) console.log(`== ${s.source}: not scored (${s.reason}) ==`);
  for (const w of warnings) console.error(`fundus: warning: ${w}`);
  reportSkipped('evaluate', unreadable);
}

export async function thresholdsCommand(modelDir: string, opts: DataOptions & { policy?: string; dryRun?: boolean }, predict?: PredictFiles): Promise<void> {
  const policy = parsePolicy(opts.policy ?? 'max-f1');
  const sel = selection(opts, 'validation');
  if (sel.part === 'test') {
    console.error('fundus: warning: tuning thresholds on the test part makes its evaluation optimistic; use the validation part');
  }
  const model = await loadForEvaluation(modelDir);
  const m = model.metadata;
  const { set, probs, skipped } = await predictSet(model, await loadEvaluationSet(m, sel), predict ?? (await defaultPredictFiles()), {
    batchSize: optionalNumber(opts.batchSize, '--batch-size', NON_NEGATIVE_INTEGER, 16) || undefined,
    quiet: opts.quiet,
  });
  reportSkipped('thresholds', skipped);
  const C = m.classes.length;
  // Only scored classes are tuned; the others keep their thresholds.
  const tuned = tuneThresholds(
    scoredLabels(set.labels, C, set.scored),
    scoredProbs(probs, C, set.scored),
    set.scored.length,
    policy,
    set.scored.map((k) => m.thresholds[k]),
    // a partial CSV: each class on the images graded for it
    set.graded ? scoredLabels(set.graded, C, set.scored) : undefined,
  );
  const thresholds = [...m.thresholds];
  set.scored.forEach((k, j) => (thresholds[k] = tuned.thresholds[j]));
  const where = sel.split ? `${sel.part} part of ${sel.split}` : sel.csv;
  const untuned = set.scored.filter((_, j) => !tuned.perClass[j].tuned).map((k) => m.classes[k]);
  const thresholdPolicy = `${tuned.policy} on ${where} (${set.images.length} images)${untuned.length ? `; kept for ${untuned.join(', ')}` : ''}`;
  for (const [j, k] of set.scored.entries()) {
    const c = tuned.perClass[j];
    const f = (v: number | null): string => (v === null ? '—' : v.toFixed(3));
    console.log(
      `${m.classes[k].padEnd(28)} threshold ${m.thresholds[k].toFixed(3)} -> ${c.threshold.toFixed(3)}  ` +
        `F1 ${f(c.f1)}  sensitivity ${f(c.sensitivity)}  specificity ${f(c.specificity)}  (${c.positives} positives)${c.note ? `  ${c.note}` : ''}`,
    );
  }
  if (opts.dryRun) return;
  const updated = { ...m, thresholds, thresholdPolicy };
  await writeMetadata(resolve(modelDir), updated);
  console.log(`wrote thresholds (${thresholdPolicy}) to ${resolve(modelDir, METADATA_JSON)}`);
}

function scoredLabels(labels: Uint8Array, C: number, scored: number[]): Uint8Array {
  const n = labels.length / C;
  const out = new Uint8Array(n * scored.length);
  for (let i = 0; i < n; i++) scored.forEach((k, j) => (out[i * scored.length + j] = labels[i * C + k]));
  return out;
}

function scoredProbs(probs: Float32Array, C: number, scored: number[]): Float32Array {
  const n = probs.length / C;
  const out = new Float32Array(n * scored.length);
  for (let i = 0; i < n; i++) scored.forEach((k, j) => (out[i * scored.length + j] = probs[i * C + k]));
  return out;
}

export function register(program: Command): void {
  program
    .command('evaluate')
    .description(
      'Evaluate a model on labelled images: per-class ROC AUC, average precision, F1, sensitivity, specificity, ' +
        'precision with 95% bootstrap intervals, the contest metric (mean F1 at 0.5), confusion matrices and calibration.',
    )
    .argument('<model-dir>', 'model directory (model.json, weights.bin, fundus.json)')
    .option('--data <csv-and-images...>', 'label CSV (contest multi-hot or filename,label) and image folder')
    .option('--split <split.json>', 'evaluate only one part of this split')
    .option('--datasets <file...>', 'instead of --data: datasets files; one table per source (external sources whole)')
    .option('--part <part>', 'train, validation or test (default test with --split or --datasets)')
    .option('--json', 'print every number as JSON (schema: docs/evaluation.md)')
    .option('--report <file.html>', 'also write a self-contained HTML report')
    .option('--resamples <n>', 'bootstrap resamples (0: no intervals)', '1000')
    .option('--seed <n>', 'bootstrap seed', '0')
    .option('--batch-size <n>', 'images per prediction batch', '16')
    .option('--quiet', 'no progress bar')
    .addHelpText(
      'after',
      '\nExamples:\n  fundus evaluate models/default --data ../shared/data/vietai/train.csv ../shared/data/vietai/train \\\n    --split splits/vietai.json --part test --report report.html\n' +
        '  fundus evaluate models/default --datasets datasets/train.json datasets/external.json --part test',
    )
    .action((modelDir: string, opts) => evaluateCommand(modelDir, opts));

  program
    .command('thresholds')
    .description("Tune per-class decision thresholds on labelled data (the validation part) and write them into the model's fundus.json.")
    .argument('<model-dir>', 'model directory')
    .requiredOption('--data <csv-and-images...>', 'label CSV and image folder')
    .option('--split <split.json>', 'use one part of this split')
    .option('--part <part>', 'train, validation or test (default validation with --split)')
    .option('--policy <policy>', "'max-f1' (best F1 per class) or 'sensitivity=<x>', e.g. sensitivity=0.9 for screening", 'max-f1')
    .option('--dry-run', 'print the thresholds without writing them')
    .option('--batch-size <n>', 'images per prediction batch', '16')
    .option('--quiet', 'no progress bar')
    .addHelpText('after', '\nExample:\n  fundus thresholds models/default --data ../shared/data/vietai/train.csv ../shared/data/vietai/train \\\n    --split splits/vietai.json --part validation --policy sensitivity=0.9')
    .action((modelDir: string, opts) => thresholdsCommand(modelDir, opts));
}
