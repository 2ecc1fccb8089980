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
  rows: { filename: string; labels: Uint8Array; line: number }[];
  issues: DataIssue[];
}

/** Splits CSV text into records of fields (RFC 4180: quotes, doubled quotes, CRLF), remembering each record's line. */
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
export function parseLabelsCsv(text: string, csvPath: string): ParsedLabels {
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
    header.slice(1).forEach((h, i) => {
      const cls = normaliseLabel(h);
      if (cls === undefined) {
        err('unknown-column', `unknown column '${h}' (known classes: ${CLASSES.join(', ')})`, records[0].line);
      } else if (columnOf.has(cls)) {
        err('duplicate-column', `column '${h}' appears twice`, records[0].line);
      } else columnOf.set(cls, i + 1);
    });
    const missing = classes.filter((c) => !columnOf.has(c));
    if (missing.length > 0) {
      err(
        'missing-column',
        `missing column${missing.length > 1 ? 's' : ''} ${missing.map((m) => `'${m}'`).join(', ')} ` +
          `(the contest format is filename then one 0/1 column per class; a two-column CSV must be 'filename,label')`,
        records[0].line,
      );
      return { format, classes, rows: [], issues };
    }
    const firstLine = new Map<string, number>();
    for (const { fields, line } of records.slice(1)) {
      if (fields.length !== header.length) {
        err('wrong-field-count', `expected ${header.length} fields, found ${fields.length}`, line);
        continue;
      }
      const filename = fields[0].trim();
      const fnProblem = badFilename(filename);
      if (fnProblem) {
        err('bad-filename', fnProblem, line);
        continue;
      }
      const labels = new Uint8Array(classes.length);
      let ok = true;
      classes.forEach((cls, k) => {
        const raw = fields[columnOf.get(cls)!].trim();
        if (raw === '1' || raw === '0') labels[k] = raw === '1' ? 1 : 0;
        else {
          err('non-binary-value', `column '${cls}' of '${filename}' is '${raw}', expected 0 or 1`, line);
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
      if (labels.every((v) => v === 0)) warn('no-labels', `'${filename}' has no positive label`, line);
      rows.push({ filename, labels, line });
    }
  }
  if (rows.length === 0 && !issues.some((i) => i.severity === 'error')) err('empty-csv', 'the CSV has no data rows');
  return { format, classes, rows, issues };
}

/** Reads and parses a label CSV file; InputError when it cannot be read. */
export async function readLabelsCsv(csvPath: string): Promise<ParsedLabels> {
  let text: string;
  try {
    text = await readFile(csvPath, 'utf8');
  } catch (e) {
    throw new InputError(`cannot read the CSV: ${(e as Error).message}`, { file: csvPath });
  }
  return parseLabelsCsv(text, csvPath);
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
export async function readDataset(csvPath: string, imagesDir: string): Promise<Dataset> {
  const parsed = await readLabelsCsv(csvPath);
  const errors = parsed.issues.filter((i) => i.severity === 'error');
  if (errors.length > 0) {
    const first = errors[0];
    throw new InputError(
      errors.length === 1 ? first.message : `${errors.length} problems in the CSV:\n${describeErrors(errors)}`,
      errors.length === 1 ? { file: first.file, line: first.line } : { file: csvPath },
    );
  }
  const dir = resolve(imagesDir);
  const images: LabelledImage[] = parsed.rows.map((r) => ({ filename: r.filename, path: join(dir, r.filename), labels: r.labels }));
  return { classes: parsed.classes, images, csvPath: resolve(csvPath), imagesDir: dir };
}
