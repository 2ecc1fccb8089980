import { createReadStream } from 'node:fs';
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

/** One CSV record: its fields and the line it starts on (1-based). */
export interface CsvRecord {
  fields: string[];
  line: number;
}

const SPECIAL = /[",\r\n]/g;

/**
 * Splits CSV text into records of fields (RFC 4180: quotes, doubled quotes, CRLF), remembering each record's line,
 * chunk by chunk: `push` takes the text as it is read and hands over the records complete so far, `end` the last
 * one, so that a large file is never held whole. Blank lines are skipped; a byte-order mark is dropped.
 */
export class CsvRecordReader {
  private fields: string[] = [];
  private field = '';
  private quoted = false;
  /** A quote ended the last chunk inside a quoted field: a doubled quote or the field's end, as the next chunk says. */
  private quoteAtEnd = false;
  /** A carriage return ended the last chunk: a line feed starting the next one belongs to it. */
  private crAtEnd = false;
  private line = 1;
  private recordLine = 1;
  private hasContent = false;
  private started = false;

  push(text: string, out: CsvRecord[] = []): CsvRecord[] {
    let i = 0;
    if (!this.started && text.length > 0) {
      this.started = true;
      if (text.charCodeAt(0) === 0xfeff) i = 1;
    }
    if (this.crAtEnd && i < text.length) {
      this.crAtEnd = false;
      if (text[i] === '\n') i++;
    }
    if (this.quoteAtEnd && i < text.length) {
      this.quoteAtEnd = false;
      if (text[i] === '"') {
        this.field += '"';
        i++;
      } else this.quoted = false;
    }
    const n = text.length;
    while (i < n) {
      if (this.quoted) {
        const q = text.indexOf('"', i);
        const stop = q < 0 ? n : q;
        const part = text.slice(i, stop);
        for (let k = part.indexOf('\n'); k >= 0; k = part.indexOf('\n', k + 1)) this.line++;
        this.field += part;
        if (q < 0) return out;
        if (q + 1 >= n) {
          this.quoteAtEnd = true;
          return out;
        }
        if (text[q + 1] === '"') {
          this.field += '"';
          i = q + 2;
        } else {
          this.quoted = false;
          i = q + 1;
        }
        continue;
      }
      SPECIAL.lastIndex = i;
      const m = SPECIAL.exec(text);
      const stop = m ? m.index : n;
      if (stop > i) {
        this.field += text.slice(i, stop);
        this.hasContent = true;
      }
      if (!m) return out;
      const ch = text[stop];
      i = stop + 1;
      if (ch === '"') {
        this.quoted = true;
        this.hasContent = true;
      } else if (ch === ',') {
        this.fields.push(this.field);
        this.field = '';
        this.hasContent = true;
      } else {
        if (ch === '\r') {
          if (i >= n) this.crAtEnd = true;
          else if (text[i] === '\n') i++;
        }
        this.endRecord(out);
        this.line++;
        this.recordLine = this.line;
      }
    }
    return out;
  }

  end(out: CsvRecord[] = []): CsvRecord[] {
    this.quoted = false;
    this.quoteAtEnd = false;
    this.endRecord(out);
    return out;
  }

  private endRecord(out: CsvRecord[]): void {
    if (this.hasContent || this.field.length > 0) {
      this.fields.push(this.field);
      out.push({ fields: this.fields, line: this.recordLine });
    }
    this.fields = [];
    this.field = '';
    this.hasContent = false;
  }
}

/** Every record of CSV text (see CsvRecordReader). */
export function parseCsvRecords(text: string): CsvRecord[] {
  const reader = new CsvRecordReader();
  return reader.end(reader.push(text));
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

type LabelRow = ParsedLabels['rows'][number];

/** Where a row-at-a-time parse puts what it finds. */
export interface LabelsSink {
  row(r: LabelRow): void;
  issue(i: DataIssue): void;
}

/**
 * A label CSV parsed record by record (see parseLabelsCsv for what is checked): rows and issues go to `sink` as they
 * are found, so that a large CSV is checked without holding its rows (a `pairs` CSV merges its lines per file name,
 * so its rows come at `finish`). Only the file names seen so far are kept, to find duplicates.
 */
export function labelsCsvParser(csvPath: string, opts: ParseOptions, sink: LabelsSink): { record(r: CsvRecord): void; finish(): { format: CsvFormat; classes: string[]; rows: number } } {
  let errors = 0;
  let rowCount = 0;
  const err = (code: string, message: string, line?: number): void => {
    errors++;
    sink.issue({ severity: 'error', code, message, file: csvPath, line });
  };
  const warn = (code: string, message: string, line?: number): void => {
    sink.issue({ severity: 'warning', code, message, file: csvPath, line });
  };
  const emit = (r: LabelRow): void => {
    rowCount++;
    sink.row(r);
  };
  const classes = [...CLASSES] as string[];
  let format: CsvFormat = 'contest';
  /** No more rows: the header is unusable. */
  let dead = false;
  let header: string[] | undefined;
  let headerLine = 1;
  // pairs
  const byName = new Map<string, { labels: Uint8Array; line: number; seen: Set<string> }>();
  const pairRows: LabelRow[] = [];
  // contest
  const columnOf = new Map<string, number>(); // class name -> CSV column
  let headerIndex = new Map<string, number>();
  const normal = classes.indexOf('normal');
  const firstLine = new Map<string, number>();

  const readHeader = (rec: CsvRecord): void => {
    header = rec.fields.map((h) => h.trim());
    headerLine = rec.line;
    if (!FILENAME_HEADERS.includes(header[0]?.toLowerCase() ?? '')) {
      err('missing-column', `the first column must be 'filename' (found '${header[0] ?? ''}')`, headerLine);
      dead = true;
      return;
    }
    format = header.length === 2 && header[1].toLowerCase() === 'label' ? 'pairs' : 'contest';
    if (format === 'pairs') return;
    headerIndex = new Map(header.map((h, i) => [h, i]));
    const mapped = new Map<string, string>(); // CSV header -> class, from opts.columns
    for (const [cls, h] of Object.entries(opts.columns ?? {})) {
      const name = normaliseLabel(cls);
      if (name === undefined) err('unknown-column', `columns maps unknown class '${cls}' (known classes: ${CLASSES.join(', ')})`, headerLine);
      else if (!headerIndex.has(h)) err('missing-column', `column '${h}' (for '${name}') is not in the CSV`, headerLine);
      else mapped.set(h, name);
    }
    for (const h of Object.keys(opts.where ?? {})) {
      if (!headerIndex.has(h)) err('missing-column', `column '${h}' (of the row filter) is not in the CSV`, headerLine);
    }
    if (opts.groupBy !== undefined && !headerIndex.has(opts.groupBy)) err('missing-column', `column '${opts.groupBy}' (the groups) is not in the CSV`, headerLine);
    header.slice(1).forEach((h, i) => {
      const cls = mapped.get(h) ?? (opts.columns ? undefined : normaliseLabel(h));
      if (cls === undefined) {
        // a partial source's other columns (patient, eye, camera...) are data about the photo, not labels
        if (!opts.partial && !(h in (opts.where ?? {})) && h !== opts.groupBy) {
          err('unknown-column', `unknown column '${h}' (known classes: ${CLASSES.join(', ')})`, headerLine);
        }
      } else if (columnOf.has(cls)) {
        err('duplicate-column', `column '${h}' appears twice`, headerLine);
      } else columnOf.set(cls, i + 1);
    });
    const missing = classes.filter((c) => !columnOf.has(c));
    if (missing.length > 0 && !opts.partial) {
      err(
        'missing-column',
        `missing column${missing.length > 1 ? 's' : ''} ${missing.map((m) => `'${m}'`).join(', ')} ` +
          `(the contest format is filename then one 0/1 column per class; a two-column CSV must be 'filename,label')`,
        headerLine,
      );
      dead = true;
    } else if (columnOf.size === 0) {
      err('missing-column', `no label column (known classes: ${CLASSES.join(', ')})`, headerLine);
      dead = true;
    }
  };

  const pairRow = ({ fields, line }: CsvRecord): void => {
    if (fields.length !== 2) return err('wrong-field-count', `expected 2 fields (filename,label), found ${fields.length}`, line);
    const filename = fields[0].trim();
    const fnProblem = badFilename(filename);
    if (fnProblem) return err('bad-filename', fnProblem, line);
    const label = normaliseLabel(fields[1]);
    if (label === undefined) return err('unknown-label', `unknown label '${fields[1].trim()}' (known: ${CLASSES.join(', ')})`, line);
    let entry = byName.get(filename);
    if (!entry) {
      entry = { labels: new Uint8Array(classes.length), line, seen: new Set() };
      byName.set(filename, entry);
      pairRows.push({ filename, labels: entry.labels, line });
    }
    if (entry.seen.has(label)) return err('duplicate-row', `duplicate row '${filename},${label}' (first on line ${entry.line})`, line);
    entry.seen.add(label);
    entry.labels[classes.indexOf(label)] = 1;
  };

  const contestRow = ({ fields, line }: CsvRecord): void => {
    if (fields.length !== header!.length) return err('wrong-field-count', `expected ${header!.length} fields, found ${fields.length}`, line);
    if (Object.entries(opts.where ?? {}).some(([h, v]) => fields[headerIndex.get(h)!].trim() !== v)) return;
    const filename = fields[0].trim();
    const fnProblem = badFilename(filename);
    if (fnProblem) return err('bad-filename', fnProblem, line);
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
    if (!ok) return;
    const first = firstLine.get(filename);
    if (first !== undefined) return err('duplicate-row', `'${filename}' appears again (first on line ${first})`, line);
    firstLine.set(filename, line);
    // A graded disease rules `normal` out even where the source does not grade it: that much is known.
    if (normal >= 0 && !graded[normal] && labels.some((v, k) => v === 1 && k !== normal)) graded[normal] = 1;
    const allGraded = graded.every((g) => g === 1);
    if (allGraded && labels.every((v) => v === 0)) warn('no-labels', `'${filename}' has no positive label`, line);
    const group = opts.groupBy !== undefined ? fields[headerIndex.get(opts.groupBy)!].trim() : undefined;
    emit({ filename, labels, line, ...(allGraded ? {} : { graded }), ...(group ? { group } : {}) });
  };

  return {
    record(rec) {
      if (dead) return;
      if (!header) readHeader(rec);
      else if (format === 'pairs') pairRow(rec);
      else contestRow(rec);
    },
    finish() {
      if (!header) err('empty-csv', 'the CSV is empty (expected a header line)');
      pairRows.forEach(emit);
      if (header && !dead && rowCount === 0 && errors === 0) err('empty-csv', 'the CSV has no data rows');
      return { format, classes, rows: rowCount };
    },
  };
}

/**
 * Parses a label CSV without throwing on content problems: every problem becomes an issue so that `fundus data
 * check` can report all of them at once. Throws InputError only when the file cannot be read at all.
 */
export function parseLabelsCsv(text: string, csvPath: string, opts: ParseOptions = {}): ParsedLabels {
  const rows: LabelRow[] = [];
  const issues: DataIssue[] = [];
  const parser = labelsCsvParser(csvPath, opts, { row: (r) => rows.push(r), issue: (i) => issues.push(i) });
  for (const rec of parseCsvRecords(text)) parser.record(rec);
  const { format, classes } = parser.finish();
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

/**
 * Streams a label CSV file through `labelsCsvParser`, a chunk at a time: memory stays bounded by what `sink` keeps
 * (and the file names, for duplicates), whatever the file's size. InputError when it cannot be read.
 */
export async function streamLabelsCsv(csvPath: string, opts: ParseOptions, sink: LabelsSink): Promise<{ format: CsvFormat; classes: string[]; rows: number }> {
  const parser = labelsCsvParser(csvPath, opts, sink);
  const reader = new CsvRecordReader();
  const batch: CsvRecord[] = [];
  try {
    for await (const chunk of createReadStream(csvPath, { encoding: 'utf8', highWaterMark: 1 << 20 })) {
      reader.push(chunk as string, batch);
      for (const rec of batch) parser.record(rec);
      batch.length = 0;
    }
  } catch (e) {
    throw new InputError(`cannot read the CSV: ${(e as Error).message}`, { file: csvPath });
  }
  for (const rec of reader.end()) parser.record(rec);
  return parser.finish();
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
