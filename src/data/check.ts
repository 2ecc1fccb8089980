import { stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { basename, join, resolve } from 'node:path';
import sharp from 'sharp';
import type { Metadata } from 'sharp';
import { InputError } from '../util/errors.js';
import { progress } from '../util/progress.js';
import { mapLimit } from './cache.js';
import { openPhoto } from './photo-source.js';
import { collectImages, isImageName } from './image-files.js';
import { streamLabelsCsv } from './csv.js';
import { CLASSES } from './labels.js';
import type { CsvFormat, DataIssue, ParseOptions } from './csv.js';

/** Smaller than this on either side is not a usable fundus photograph. */
const MIN_SIDE = 64;

/**
 * Issues of one kind, and missing file names, listed in a report: a CSV of a million rows naming files that are not
 * there is reported with its counts and the first of them, in bounded memory, instead of a million messages.
 */
export const MAX_LISTED = 1000;

/** Everything `fundus data check` finds; `usable` is false when any issue is an error. */
export interface CheckReport {
  csv: string;
  imagesDir: string;
  format: CsvFormat;
  rows: number;
  classes: string[];
  /** Positives per class. */
  labelCounts: Record<string, number>;
  /** Rows whose cell of the class is empty: not graded (neither positive nor negative). */
  notGraded: Record<string, number>;
  /** cooccurrence[a][b]: images carrying both classes a and b (the diagonal repeats labelCounts). */
  cooccurrence: number[][];
  /** Label combinations, most frequent first: `glaucoma+diabetic retinopathy` -> count; `(none)` for no label. */
  combinations: Record<string, number>;
  imagesOnDisk: number;
  /** CSV rows whose image is not on disk: the first MAX_LISTED (`missingOnDiskCount` counts them all). */
  missingOnDisk: string[];
  missingOnDiskCount: number;
  notInCsv: string[];
  unreadable: { file: string; reason: string }[];
  /** `WIDTHxHEIGHT` -> number of readable images. */
  sizes: Record<string, number>;
  unexpectedSize: { file: string; width: number; height: number }[];
  /** The first MAX_LISTED issues of each kind (`errors` and `warnings` count them all; `issuesOmitted` the rest). */
  issues: DataIssue[];
  issuesOmitted: number;
  errors: number;
  warnings: number;
  usable: boolean;
}

export interface CheckOptions {
  /** Expected image size; default: the most common size among the images (anything else is reported). */
  expectSize?: { width: number; height: number };
  concurrency?: number;
  progressLabel?: string;
  /** How to read a CSV that is not in the contest layout (a partial source). */
  parse?: ParseOptions;
}

/** Why an image cannot be used: `unreadable` (not an image at all) or `truncated` (an image whose data is cut or corrupt). */
export class ImageProblem extends Error {
  constructor(
    readonly kind: 'unreadable' | 'truncated',
    message: string,
  ) {
    super(message);
  }
}

/**
 * Decodes an image fully (a truncated JPEG only fails at its last scanline) and returns its size. A 32-pixel
 * thumbnail lets libjpeg skip most of the inverse DCT while still reading every byte. The kind of failure is told by
 * which step fails (header or pixel data), not by libvips's message, whose text is shared between threads.
 */
export async function probeImage(path: string): Promise<{ width: number; height: number; channels: number }> {
  let source: string | Buffer;
  try {
    source = (await openPhoto(path)).source; // a DICOM file's frame, else the path itself
  } catch (e) {
    throw new ImageProblem('unreadable', (e as Error).message.replace(`${path}: `, ''));
  }
  let meta: Metadata;
  try {
    meta = await sharp(source).metadata();
  } catch (e) {
    throw new ImageProblem('unreadable', `not a readable image (${(e as Error).message.split('\n')[0]})`);
  }
  if (!meta.width || !meta.height) throw new ImageProblem('unreadable', 'not a readable image (no size in its header)');
  try {
    await sharp(source, { failOn: 'warning' }).resize(32, 32, { fit: 'fill' }).raw().toBuffer();
  } catch {
    throw new ImageProblem('truncated', `truncated or corrupt ${meta.format ?? 'image'} data (the header reads, the pixels do not decode)`);
  }
  return { width: meta.width, height: meta.height, channels: meta.channels ?? 0 };
}

/** Checks a label CSV against its image folder: see CheckReport for what is reported. */
export async function checkDataset(csvPath: string, imagesDir: string, opts: CheckOptions = {}): Promise<CheckReport> {
  const dir = resolve(imagesDir);
  const dirStat = await stat(dir).catch(() => undefined);
  if (!dirStat?.isDirectory()) throw new InputError('the images folder does not exist or is not a folder', { file: imagesDir });
  const issues: DataIssue[] = [];
  const perCode = new Map<string, number>();
  let errorCount = 0;
  let issuesOmitted = 0;
  const addIssue = (i: DataIssue): void => {
    if (i.severity === 'error') errorCount++;
    const n = (perCode.get(i.code) ?? 0) + 1;
    perCode.set(i.code, n);
    if (n <= MAX_LISTED) issues.push(i);
    else issuesOmitted++;
  };

  // The folder first, so that each CSV row is checked against it as it streams by and only counts are kept.
  const onDisk = (
    await collectImages([dir], {
      recursive: false,
      emptyFolder: 'allow',
      onSkip: (s) => addIssue({ severity: 'warning', code: 'unreadable-entry', message: s.reason, file: s.path }),
    })
  ).map((p) => basename(p));
  const onDiskSet = new Set(onDisk);
  const inCsv = new Set<string>(); // only names on disk: bounded by the folder
  const present: { filename: string; line: number }[] = [];
  const otherNames: { filename: string; line: number }[] = []; // not image names: stat()ed below
  const missingOnDisk: string[] = [];
  let missingOnDiskCount = 0;
  const missing = (r: { filename: string; line: number }): void => {
    if (missingOnDiskCount++ < MAX_LISTED) missingOnDisk.push(r.filename);
    addIssue({ severity: 'error', code: 'missing-image', message: `'${r.filename}' is not in ${imagesDir}`, file: csvPath, line: r.line });
  };

  const classes = [...CLASSES] as string[];
  const C = classes.length;
  const labelCounts: Record<string, number> = Object.fromEntries(classes.map((c) => [c, 0]));
  const cooccurrence = classes.map(() => new Array<number>(C).fill(0));
  const notGraded: Record<string, number> = Object.fromEntries(classes.map((c) => [c, 0]));
  const combos = new Map<string, number>();
  const normal = classes.indexOf('normal');
  const parsed = await streamLabelsCsv(csvPath, opts.parse ?? {}, {
    issue: addIssue,
    row: (r) => {
      r.graded?.forEach((g, k) => g || notGraded[classes[k]]++);
      const on: number[] = [];
      r.labels.forEach((v, k) => v && on.push(k));
      for (const a of on) {
        labelCounts[classes[a]]++;
        for (const b of on) cooccurrence[a][b]++;
      }
      // `normal` means no pathology: together with one it is a labelling slip (or a grader's disagreement) to look at
      if (on.includes(normal) && on.length > 1) {
        const diseases = on.filter((k) => k !== normal).map((k) => classes[k]);
        addIssue({ severity: 'warning', code: 'normal-with-disease', message: `'${r.filename}' is labelled normal and ${diseases.join(', ')} at once`, file: csvPath, line: r.line });
      }
      const key = on.length ? on.map((k) => classes[k]).join('+') : '(none)';
      combos.set(key, (combos.get(key) ?? 0) + 1);
      const where = { filename: r.filename, line: r.line };
      if (onDiskSet.has(r.filename)) {
        present.push(where);
        inCsv.add(r.filename);
      } else if (isImageName(r.filename)) missing(where);
      else otherNames.push(where);
    },
  });
  const combinations = Object.fromEntries([...combos].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)));
  // a file with an extension not in IMAGE_EXTENSIONS (e.g. `.txt`) may exist: still a problem (reported when it is
  // probed), but not a missing one
  const exists = await mapLimit(otherNames, 16, (r) => stat(join(dir, r.filename)).then((s) => s.isFile(), () => false));
  otherNames.forEach((r, i) => (exists[i] ? present.push(r) : missing(r)));
  const notInCsv = onDisk.filter((f) => !inCsv.has(f));
  for (const f of notInCsv) {
    addIssue({ severity: 'warning', code: 'not-in-csv', message: 'image on disk has no row in the CSV', file: join(imagesDir, f) });
  }

  const bar = opts.progressLabel ? progress(opts.progressLabel, present.length) : undefined;
  const probed = await mapLimit(present, opts.concurrency ?? availableParallelism(), async (r) => {
    try {
      return { ...r, size: await probeImage(join(dir, r.filename)) };
    } catch (e) {
      return { ...r, error: e instanceof ImageProblem ? e : new ImageProblem('unreadable', (e as Error).message) };
    } finally {
      bar?.tick();
    }
  });
  bar?.stop();

  const unreadable: CheckReport['unreadable'] = [];
  const sizes = new Map<string, number>();
  for (const p of probed) {
    if ('error' in p && p.error !== undefined) {
      unreadable.push({ file: p.filename, reason: p.error.message });
      addIssue({
        severity: 'error',
        code: p.error.kind === 'truncated' ? 'truncated-image' : 'unreadable-image',
        message: p.error.message,
        file: join(imagesDir, p.filename),
      });
    } else if ('size' in p && p.size) {
      const key = `${p.size.width}x${p.size.height}`;
      sizes.set(key, (sizes.get(key) ?? 0) + 1);
    }
  }
  let expected = opts.expectSize;
  if (!expected && sizes.size > 0) {
    const [w, h] = [...sizes].sort((a, b) => b[1] - a[1])[0][0].split('x').map(Number);
    expected = { width: w, height: h };
  }
  const unexpectedSize: CheckReport['unexpectedSize'] = [];
  for (const p of probed) {
    if (!('size' in p) || !p.size) continue;
    const { width, height } = p.size;
    const file = join(imagesDir, p.filename);
    if (Math.min(width, height) < MIN_SIDE) {
      unexpectedSize.push({ file: p.filename, width, height });
      addIssue({ severity: 'error', code: 'too-small', message: `${width}x${height} is too small for a fundus photograph (min ${MIN_SIDE} px)`, file });
    } else if (expected && (width !== expected.width || height !== expected.height)) {
      unexpectedSize.push({ file: p.filename, width, height });
      addIssue({
        severity: 'warning',
        code: 'unexpected-size',
        message: `${width}x${height} differs from the ${opts.expectSize ? 'expected' : 'usual'} ${expected.width}x${expected.height} (preprocessing resizes it)`,
        file,
      });
    }
  }

  const errors = errorCount;
  const warnings = issues.length + issuesOmitted - errors;
  return {
    csv: csvPath,
    imagesDir,
    format: parsed.format,
    rows: parsed.rows,
    classes,
    labelCounts,
    notGraded,
    cooccurrence,
    combinations,
    imagesOnDisk: onDisk.length,
    missingOnDisk,
    missingOnDiskCount,
    notInCsv,
    unreadable,
    sizes: Object.fromEntries([...sizes].sort((a, b) => b[1] - a[1])),
    unexpectedSize,
    issues,
    issuesOmitted,
    errors,
    warnings,
    usable: errors === 0,
  };
}

/** The human-readable report. */
export function formatCheckReport(r: CheckReport, maxIssues = 50): string {
  const out: string[] = [];
  out.push(`${r.csv}: ${r.rows} rows (${r.format} format); ${r.imagesDir}: ${r.imagesOnDisk} images`);
  out.push('');
  const w = Math.max(...r.classes.map((c) => c.length));
  const partial = r.classes.some((c) => r.notGraded[c] > 0);
  out.push(partial ? 'label counts (positives; rows left empty = not graded):' : 'label counts (positives):');
  for (const c of r.classes) {
    out.push(`  ${c.padEnd(w)}  ${String(r.labelCounts[c]).padStart(6)}${partial ? `  ${String(r.notGraded[c]).padStart(6)} not graded` : ''}`);
  }
  out.push('');
  out.push('co-occurrences (images with both labels):');
  const abbr = r.classes.map((c) => c.split(' ').map((s) => s[0]).join('').toUpperCase());
  out.push(`  ${''.padEnd(w)}  ${abbr.map((a) => a.padStart(5)).join('')}`);
  r.classes.forEach((c, a) => out.push(`  ${c.padEnd(w)}  ${r.cooccurrence[a].map((v) => String(v).padStart(5)).join('')}`));
  out.push('');
  out.push('most frequent label combinations:');
  for (const [k, v] of Object.entries(r.combinations).slice(0, 10)) out.push(`  ${String(v).padStart(6)}  ${k}`);
  out.push('');
  out.push(`image sizes: ${Object.entries(r.sizes).map(([k, v]) => `${k} (${v})`).join(', ') || 'none readable'}`);
  out.push(
    `missing on disk: ${r.missingOnDiskCount}; on disk but not in the CSV: ${r.notInCsv.length}; ` +
      `unreadable or truncated: ${r.unreadable.length}; unexpected size: ${r.unexpectedSize.length}`,
  );
  if (r.issues.length > 0) {
    out.push('');
    const sorted = [...r.issues].sort((a, b) => (a.severity === b.severity ? 0 : a.severity === 'error' ? -1 : 1));
    for (const i of sorted.slice(0, maxIssues)) {
      out.push(`${i.severity}: ${i.file}${i.line !== undefined ? `:${i.line}` : ''}: ${i.message}`);
    }
    const more = sorted.length + r.issuesOmitted - maxIssues;
    if (more > 0) out.push(`... and ${more} more (${r.issuesOmitted ? `the first ${MAX_LISTED} of each kind` : 'all of them'} with --json)`);
  }
  out.push('');
  out.push(
    r.usable
      ? `usable: ${r.errors} errors, ${r.warnings} warnings`
      : `NOT usable: ${r.errors} error${r.errors === 1 ? '' : 's'}, ${r.warnings} warning${r.warnings === 1 ? '' : 's'}`,
  );
  return out.join('\n');
}
