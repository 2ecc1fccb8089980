import { readFile } from 'node:fs/promises';
import { resolve, join } from 'node:path';
import { CLASSES } from './labels.js';
import type { Dataset, LabelledImage } from './labels.js';
import { InputError } from '../util/errors.js';

/** How bad a finding is: `error` makes the dataset unusable, `warning` is worth a look but harmless. */
export type Severity = 'error' | 'warning';

/** One problem found in a CSV or an image folder, located as precisely as possible. */
export interface DataIssue {
  severity: Severity;
  /** Stable machine-readable kind, e.g. `missing-column`, `non-binary-value`, `truncated-image`. */
  code: string;
  message: string;
  file: string;
  /** 1-based line of the CSV, when the issue is about a CSV line. */
  line?: number;
}

/** `contest`: `filename` then one 0/1 column per class; `pairs`: `filename,label` with one class name per row. */
export type CsvFormat = 'contest' | 'pairs';

/** A parsed label CSV: rows in file order (merged per filename for `pairs`), plus everything wrong with it. */
export interface ParsedLabels {
  format: CsvFormat;
  /** Always the project's class order (CLASSES), whatever the CSV's column order. */
  classes: string[];
  rows: { filename: string; labels: Uint8Array; line: number; graded?: Uint8Array; group?: string }[];
  issues: DataIssue[];
}

/**
 * How to read a source whose CSV is not in the contest layout (see datasets.ts). Without options a CSV must have
 * one column per class; an empty cell is always read as "not graded".
 */
export interface ParseOptions {
  /** Class -> the CSV column that holds it, where headers name classes differently (e.g. `has_lesion_boxes`). */
  columns?: Record<string, string>;
  /** Keep only the rows whose column has this exact value (e.g. `{ has_lesion_boxes: '1' }`). */
  where?: Record<string, string>;
  /** The source grades some classes only: other columns are ignored and a class without a column is not graded. */
  partial?: boolean;
  /** Column naming each row's group (e.g. the patient), which a split must keep whole. */
  groupBy?: string;
}

/** Splits CSV text into records of fields (RFC 4180: quotes, doubled quotes, CRLF), remembering each record's line. */
/**
 * One text cell of a CSV fundus writes: quoted when it holds a comma, quote or line break, and, when it starts with
 * `=`, `+`, `-`, `@`, a tab or a carriage return (a formula to a spreadsheet: `=HYPERLINK(...)` in a file name would
 * run when the CSV is opened), or with `'`, prefixed with `'` so that it stays text. `csvCellText` undoes the prefix.
 * Numbers are written as they are, not through this.
 */
export function csvCell(s: string): string {
  const text = /^[=+\-@\t\r']/.test(s) ? `'${s}` : s;
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/** A cell's text as `csvCell` was given it (the unquoted field, less the `'` that guards against formulas). */
export function csvCellText(field: string): string {
  return field.startsWith("'") ? field.slice(1) : field;
}

export function parseCsvRecords(text: string): { fields: string[]; line: number }[] {
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const records: { fields: string[]; line: number }[] = [];
  let fields: string[] = [];
  let field = '';
  let quoted = false;
  let line = 1;
  let recordLine = 1;
  let recordHasContent = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (quoted) {
      if (ch === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i++;
        } else quoted = false;
      } else {
        if (ch === '\n') line++;
        field += ch;
      }
      continue;
    }
    if (ch === '"') {
      quoted = true;
      recordHasContent = true;
    } else if (ch === ',') {
      fields.push(field);
      field = '';
      recordHasContent = true;
    } else if (ch === '\n' || ch === '\r') {
      if (ch === '\r' && text[i + 1] === '\n') i++;
      if (recordHasContent || field.length > 0) {
        fields.push(field);
        records.push({ fields, line: recordLine });
      }
      fields = [];
      field = '';
      recordHasContent = false;
      line++;
      recordLine = line;
    } else {
      field += ch;
      recordHasContent = true;
    }
  }
  if (recordHasContent || field.length > 0) {
    fields.push(field);
    records.push({ fields, line: recordLine });
  }
  return records;
}

/** Maps a label as people write it (`Diabetic_Retinopathy`, ` glaucoma `) to a class name, or undefined. */
export function normaliseLabel(s: string): string | undefined {
  const key = s.trim().toLowerCase().replace(/[_-]+/g, ' ').replace(/\s+/g, ' ');
  return (CLASSES as readonly string[]).includes(key) ? key : undefined;
}

const FILENAME_HEADERS = ['filename', 'file', 'image', 'image_id', 'id'];

function badFilename(name: string): string | undefined {
  if (name.length === 0) return 'empty filename';
  if (name.includes('/') || name.includes('\\') || name === '.' || name === '..') {
    return `filename '${name}' must be a plain file name inside the images folder`;
  }
  return undefined;
}

/**
 * Parses a label CSV without throwing on content problems: every problem becomes an issue so that `fundus data
 * check` can report all of them at once. Throws InputError only when the file cannot be read at all.
 */
export function parseLabelsCsv(text: string, csvPath: string, opts: ParseOptions = {}): ParsedLabels {
  const issues: DataIssue[] = [];
  const err = (code: string, message: string, line?: number): void => {
    issues.push({ severity: 'error', code, message, file: csvPath, line });
  };
  const warn = (code: string, message: string, line?: number): void => {
    issues.push({ severity: 'warning', code, message, file: csvPath, line });
  };
  const records = parseCsvRecords(text);
  const classes = [...CLASSES] as string[];
  if (records.length === 0) {
    err('empty-csv', 'the CSV is empty (expected a header line)');
    return { format: 'contest', classes, rows: [], issues };
  }
  const header = records[0].fields.map((h) => h.trim());
  if (!FILENAME_HEADERS.includes(header[0]?.toLowerCase() ?? '')) {
    err('missing-column', `the first column must be 'filename' (found '${header[0] ?? ''}')`, records[0].line);
    return { format: 'contest', classes, rows: [], issues };
  }
  const format: CsvFormat = header.length === 2 && header[1].toLowerCase() === 'label' ? 'pairs' : 'contest';
  const rows: ParsedLabels['rows'] = [];

  if (format === 'pairs') {
    const byName = new Map<string, { labels: Uint8Array; line: number; seen: Set<string> }>();
    for (const { fields, line } of records.slice(1)) {
      if (fields.length !== 2) {
        err('wrong-field-count', `expected 2 fields (filename,label), found ${fields.length}`, line);
        continue;
      }
      const filename = fields[0].trim();
      const fnProblem = badFilename(filename);
      if (fnProblem) {
        err('bad-filename', fnProblem, line);
        continue;
      }
      const label = normaliseLabel(fields[1]);
      if (label === undefined) {
        err('unknown-label', `unknown label '${fields[1].trim()}' (known: ${CLASSES.join(', ')})`, line);
        continue;
      }
      let entry = byName.get(filename);
      if (!entry) {
        entry = { labels: new Uint8Array(classes.length), line, seen: new Set() };
        byName.set(filename, entry);
        rows.push({ filename, labels: entry.labels, line });
      }
      if (entry.seen.has(label)) {
        err('duplicate-row', `duplicate row '${filename},${label}' (first on line ${entry.line})`, line);
        continue;
      }
      entry.seen.add(label);
      entry.labels[classes.indexOf(label)] = 1;
    }
  } else {
    const columnOf = new Map<string, number>(); // class name -> CSV column
    const headerIndex = new Map(header.map((h, i) => [h, i]));
    const mapped = new Map<string, string>(); // CSV header -> class, from opts.columns
    for (const [cls, h] of Object.entries(opts.columns ?? {})) {
      const name = normaliseLabel(cls);
      if (name === undefined) err('unknown-column', `columns maps unknown class '${cls}' (known classes: ${CLASSES.join(', ')})`, records[0].line);
      else if (!headerIndex.has(h)) err('missing-column', `column '${h}' (for '${name}') is not in the CSV`, records[0].line);
      else mapped.set(h, name);
    }
    for (const h of Object.keys(opts.where ?? {})) {
      if (!headerIndex.has(h)) err('missing-column', `column '${h}' (of the row filter) is not in the CSV`, records[0].line);
    }
    if (opts.groupBy !== undefined && !headerIndex.has(opts.groupBy)) err('missing-column', `column '${opts.groupBy}' (the groups) is not in the CSV`, records[0].line);
    header.slice(1).forEach((h, i) => {
      const cls = mapped.get(h) ?? (opts.columns ? undefined : normaliseLabel(h));
      if (cls === undefined) {
        // a partial source's other columns (patient, eye, camera...) are data about the photo, not labels
        if (!opts.partial && !(h in (opts.where ?? {})) && h !== opts.groupBy) {
          err('unknown-column', `unknown column '${h}' (known classes: ${CLASSES.join(', ')})`, records[0].line);
        }
      } else if (columnOf.has(cls)) {
        err('duplicate-column', `column '${h}' appears twice`, records[0].line);
      } else columnOf.set(cls, i + 1);
    });
    const missing = classes.filter((c) => !columnOf.has(c));
    if (missing.length > 0 && !opts.partial) {
      err(
        'missing-column',
        `missing column${missing.length > 1 ? 's' : ''} ${missing.map((m) => `'${m}'`).join(', ')} ` +
          `(the contest format is filename then one 0/1 column per class; a two-column CSV must be 'filename,label')`,
        records[0].line,
      );
      return { format, classes, rows: [], issues };
    }
    if (columnOf.size === 0) {
      err('missing-column', `no label column (known classes: ${CLASSES.join(', ')})`, records[0].line);
      return { format, classes, rows: [], issues };
    }
    const normal = classes.indexOf('normal');
    const firstLine = new Map<string, number>();
    for (const { fields, line } of records.slice(1)) {
      if (fields.length !== header.length) {
        err('wrong-field-count', `expected ${header.length} fields, found ${fields.length}`, line);
        continue;
      }
      if (Object.entries(opts.where ?? {}).some(([h, v]) => fields[headerIndex.get(h)!].trim() !== v)) continue;
      const filename = fields[0].trim();
      const fnProblem = badFilename(filename);
      if (fnProblem) {
        err('bad-filename', fnProblem, line);
        continue;
      }
      const labels = new Uint8Array(classes.length);
      const graded = new Uint8Array(classes.length);
      let ok = true;
      classes.forEach((cls, k) => {
        const col = columnOf.get(cls);
        if (col === undefined) return;
        const raw = fields[col].trim();
        if (raw === '1' || raw === '0') {
          labels[k] = raw === '1' ? 1 : 0;
          graded[k] = 1;
        } else if (raw !== '') {
          err('non-binary-value', `column '${cls}' of '${filename}' is '${raw}', expected 0, 1 or empty (not graded)`, line);
          ok = false;
        }
      });
      if (!ok) continue;
      const first = firstLine.get(filename);
      if (first !== undefined) {
        err('duplicate-row', `'${filename}' appears again (first on line ${first})`, line);
        continue;
      }
      firstLine.set(filename, line);
      // A graded disease rules `normal` out even where the source does not grade it: that much is known.
      if (normal >= 0 && !graded[normal] && labels.some((v, k) => v === 1 && k !== normal)) graded[normal] = 1;
      const allGraded = graded.every((g) => g === 1);
      if (allGraded && labels.every((v) => v === 0)) warn('no-labels', `'${filename}' has no positive label`, line);
      const group = opts.groupBy !== undefined ? fields[headerIndex.get(opts.groupBy)!].trim() : undefined;
      rows.push({ filename, labels, line, ...(allGraded ? {} : { graded }), ...(group ? { group } : {}) });
    }
  }
  if (rows.length === 0 && !issues.some((i) => i.severity === 'error')) err('empty-csv', 'the CSV has no data rows');
  return { format, classes, rows, issues };
}

/** Reads and parses a label CSV file; InputError when it cannot be read. */
export async function readLabelsCsv(csvPath: string, opts: ParseOptions = {}): Promise<ParsedLabels> {
  let text: string;
  try {
    text = await readFile(csvPath, 'utf8');
  } catch (e) {
    throw new InputError(`cannot read the CSV: ${(e as Error).message}`, { file: csvPath });
  }
  return parseLabelsCsv(text, csvPath, opts);
}

/** Formats the errors of a parse as one message: every bad line, so that a user can fix them in one go. */
export function describeErrors(issues: DataIssue[], max = 20): string {
  const errors = issues.filter((i) => i.severity === 'error');
  const lines = errors.slice(0, max).map((i) => `${i.file}${i.line !== undefined ? `:${i.line}` : ''}: ${i.message}`);
  if (errors.length > max) lines.push(`... and ${errors.length - max} more`);
  return lines.join('\n');
}

/**
 * Reads a dataset: the contest multi-hot CSV or a two-column `filename,label` CSV, with image paths resolved in
 * `imagesDir`. Throws InputError naming the file and line on any CSV error. It does not open the images; `fundus data
 * check` (check.ts) does.
 */
export async function readDataset(csvPath: string, imagesDir: string, opts: ParseOptions = {}): Promise<Dataset> {
  const parsed = await readLabelsCsv(csvPath, opts);
  const errors = parsed.issues.filter((i) => i.severity === 'error');
  if (errors.length > 0) {
    const first = errors[0];
    throw new InputError(
      errors.length === 1 ? first.message : `${errors.length} problems in the CSV:\n${describeErrors(errors)}`,
      errors.length === 1 ? { file: first.file, line: first.line } : { file: csvPath },
    );
  }
  const dir = resolve(imagesDir);
  const images: LabelledImage[] = parsed.rows.map((r) => ({
    filename: r.filename,
    path: join(dir, r.filename),
    labels: r.labels,
    ...(r.graded ? { graded: r.graded } : {}),
    ...(r.group !== undefined ? { group: r.group } : {}),
  }));
  return { classes: parsed.classes, images, csvPath: resolve(csvPath), imagesDir: dir };
}
