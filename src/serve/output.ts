import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat, truncate } from 'node:fs/promises';
import { dirname, extname, resolve } from 'node:path';
import { once } from 'node:events';
import { InputError } from '../util/errors.js';
import { csvCell, csvCellText } from '../data/csv.js';
import { isUngradable, type PhotoRecord } from '../models/records.js';

/** `table`: readable blocks for a person; `json`: JSON Lines (one object per image); `csv`: one row per image. */
export type OutputFormat = 'table' | 'json' | 'csv';

export function formatFromPath(path: string): OutputFormat | undefined {
  const ext = extname(path).toLowerCase();
  if (ext === '.csv') return 'csv';
  if (ext === '.json' || ext === '.jsonl' || ext === '.ndjson') return 'json';
  if (ext === '.txt') return 'table';
  return undefined;
}

/** The first field of a CSV line (the file column), honouring quotes and the formula guard (see csvCell). */
function firstCsvField(line: string): string {
  return csvCellText(firstCsvFieldRaw(line));
}

function firstCsvFieldRaw(line: string): string {
  if (!line.startsWith('"')) {
    const i = line.indexOf(',');
    return i < 0 ? line : line.slice(0, i);
  }
  let out = '';
  for (let i = 1; i < line.length; i++) {
    if (line[i] === '"') {
      if (line[i + 1] === '"') {
        out += '"';
        i++;
      } else break;
    } else out += line[i];
  }
  return out;
}

/** Which model wrote a predictions file: where it was, and the sha256 of its fundus.json (what identifies it). */
export interface ModelIdentity {
  dir: string;
  fundusJsonSha256: string;
}

/**
 * The first line of every predictions file that `fundus predict --out` writes: the marker that fundus wrote it (a
 * file without it is never overwritten) and the model that did (`--resume` with another model is refused). In JSON
 * Lines it is a JSON object of its own (no `file`); in CSV and text files, the same object after `# `.
 */
export interface PredictionsHeader {
  format: 'fundus-predictions';
  version: 1;
  model: ModelIdentity;
  classes: string[];
}

export function predictionsHeader(model: ModelIdentity, classes: readonly string[]): PredictionsHeader {
  return { format: 'fundus-predictions', version: 1, model, classes: [...classes] };
}

export function headerLine(format: OutputFormat, header: PredictionsHeader): string {
  return (format === 'json' ? '' : '# ') + JSON.stringify(header) + '\n';
}

/** The header in a file's first line (either form), or undefined when the line is not one. */
export function parseHeaderLine(line: string): PredictionsHeader | undefined {
  const text = line.startsWith('# ') ? line.slice(2) : line;
  try {
    const h = JSON.parse(text) as Partial<PredictionsHeader> | null;
    if (!h || typeof h !== 'object' || h.format !== 'fundus-predictions' || !h.model || typeof h.model.fundusJsonSha256 !== 'string') return undefined;
    return h as PredictionsHeader;
  } catch {
    return undefined;
  }
}

/** The header of the predictions file at `path` (read from its first line only), or undefined when it has none. */
export async function readPredictionsHeader(path: string): Promise<PredictionsHeader | undefined> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch {
    return undefined;
  }
  try {
    const buf = Buffer.alloc(64 * 1024);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    const text = buf.subarray(0, bytesRead).toString('utf8');
    const nl = text.indexOf('\n');
    return nl < 0 ? undefined : parseHeaderLine(text.slice(0, nl));
  } finally {
    await fh.close();
  }
}

function short(sha: string): string {
  return sha.slice(0, 12);
}

/** The CSV columns a run with DICOM photographs adds at the end (empty cells for other files). */
export const DICOM_CSV_COLUMNS = ['sop instance uid', 'laterality', 'acquisition date'] as const;

/**
 * The CSV columns: the file, a probability per class, the classes decided positive (`;`-separated), then whether the
 * gradability gate passed the photo (`true`, `false`, or empty when not checked) and, when it did not, why. An
 * ungradable photo's probability and `predicted` cells are empty. With `dicom`, three more: the SOP Instance UID,
 * laterality (R or L) and acquisition date (YYYY-MM-DD) of DICOM photographs.
 */
export function csvHeader(classes: readonly string[], dicom = false): string {
  return ['file', ...classes, 'predicted', 'gradable', 'ungradable reason', ...(dicom ? DICOM_CSV_COLUMNS : [])].map(csvCell).join(',') + '\n';
}

function dicomCells(rec: PhotoRecord): string[] {
  const d = rec.dicom;
  return [csvCell(d?.sopInstanceUid ?? ''), csvCell(d?.laterality ?? ''), csvCell(d?.acquisitionDate ?? '')];
}

/** A table line's name for a photograph: its file, with a DICOM photograph's laterality and date. */
function tableName(rec: PhotoRecord): string {
  const d = rec.dicom;
  const extra = d ? [d.laterality && `eye ${d.laterality}`, d.acquisitionDate].filter(Boolean).join(', ') : '';
  return `${rec.file ?? ''}${extra ? ` (${extra})` : ''}`;
}

export function formatRecord(format: OutputFormat, rec: PhotoRecord, classes: readonly string[], thresholds: readonly number[], dicomColumns = false): string {
  if (format === 'json') return JSON.stringify(rec) + '\n';
  if (format === 'csv') {
    const tail = dicomColumns ? dicomCells(rec) : [];
    if (isUngradable(rec)) return [csvCell(rec.file ?? ''), ...classes.map(() => ''), '', 'false', csvCell(rec.ungradable.message), ...tail].join(',') + '\n';
    const probs = classes.map((c) => rec.probabilities[c].toFixed(6));
    return [csvCell(rec.file ?? ''), ...probs, csvCell(rec.positive.join(';')), rec.gradable ? 'true' : '', '', ...tail].join(',') + '\n';
  }
  if (isUngradable(rec)) return `${tableName(rec)}  →  ungradable: ${rec.ungradable.message}\n\n`;
  const width = Math.max(...classes.map((c) => c.length));
  const lines = [`${tableName(rec)}  →  ${rec.positive.length ? rec.positive.join(', ') : 'no class above its threshold'}`];
  classes.forEach((c, i) => {
    const p = rec.probabilities[c];
    const filled = Math.round(p * 20);
    const cells = ('█'.repeat(filled) + '·'.repeat(20 - filled)).split('');
    // The threshold is drawn into the bar, as in the viewer, so a near miss is visible at a glance.
    cells.splice(Math.min(20, Math.round(thresholds[i] * 20)), 0, '|');
    const bar = cells.join('');
    const mark = rec.decisions[c] ? 'positive' : '';
    lines.push(`  ${c.padEnd(width)}  ${bar} ${p.toFixed(3)}  (threshold ${thresholds[i].toFixed(2)}) ${mark}`.trimEnd());
  });
  return lines.join('\n') + '\n\n';
}

/**
 * Where predictions go. With a file, results stream into `<out>.partial` as they are computed (bounded memory for
 * any number of images), and the finished file is renamed to `<out>` only at the end, so `<out>` is never a partial
 * result. A file starts with the predictions header (the model's identity). `--resume` picks up from `<out>.partial`
 * (an interrupted run) or `<out>` (a finished run the folder has since grown past) and reports which files are
 * already done; it refuses a file without the header or with another model's. Whether `<out>` may be written at all
 * (not a photograph, not someone else's file) is the caller's check (see predict-cli.ts).
 */
export class ResultSink {
  private stream?: WriteStream;
  readonly partialPath?: string;

  private constructor(
    readonly format: OutputFormat,
    private readonly classes: readonly string[],
    private readonly thresholds: readonly number[],
    readonly outPath?: string,
    private dicomColumns = false,
  ) {
    this.partialPath = outPath ? `${outPath}.partial` : undefined;
  }

  /** Opens the sink; returns the resolved paths of the images already in the output when resuming. */
  static async open(opts: {
    format: OutputFormat;
    classes: readonly string[];
    thresholds: readonly number[];
    out?: string;
    resume?: boolean;
    /** The model writing: required with `out` (recorded in the header, checked on resume). */
    model?: ModelIdentity;
    /** CSV: add the DICOM columns (DICOM_CSV_COLUMNS); a resumed file keeps the columns it has. */
    dicomColumns?: boolean;
  }): Promise<{ sink: ResultSink; done: Set<string> }> {
    const sink = new ResultSink(opts.format, opts.classes, opts.thresholds, opts.out, opts.dicomColumns ?? false);
    const done = new Set<string>();
    if (!opts.out) {
      if (opts.format === 'csv') process.stdout.write(csvHeader(opts.classes, sink.dicomColumns));
      return { sink, done };
    }
    if (opts.resume && opts.format === 'table') throw new InputError('--resume needs --format json or csv');
    if (!opts.model) throw new Error('ResultSink.open: writing a file needs the model identity');
    const header = predictionsHeader(opts.model, opts.classes);
    const partial = sink.partialPath!;
    await mkdir(dirname(resolve(opts.out)), { recursive: true });
    let appending = false;
    let needsColumns = opts.format === 'csv';
    if (opts.resume) {
      const source = (await exists(partial)) ? partial : (await exists(opts.out)) ? opts.out : undefined;
      if (source) {
        const text = await readFile(source, 'utf8');
        // A run killed mid-write leaves a torn last line: drop it, the image is simply predicted again.
        let end = text.lastIndexOf('\n') + 1;
        const lines = text.slice(0, end).split('\n').filter((l) => l.length > 0);
        if (lines.length > 0) {
          const found = parseHeaderLine(lines[0]);
          if (!found) {
            throw new InputError(
              'cannot resume: not a predictions file fundus wrote (its first line is not a fundus-predictions header); predict into a new --out',
              { file: source },
            );
          }
          if (found.model.fundusJsonSha256 !== opts.model.fundusJsonSha256) {
            throw new InputError(
              `cannot resume: another model wrote these predictions (${found.model.dir}, fundus.json sha256 ${short(found.model.fundusJsonSha256)}...), ` +
                `not ${opts.model.dir} (${short(opts.model.fundusJsonSha256)}...); the two must not be mixed in one file: use that model or another --out`,
              { file: source },
            );
          }
          const isJsonHeader = !lines[0].startsWith('# ');
          if ((opts.format === 'json') !== isJsonHeader) {
            throw new InputError(`cannot resume: the file is not in ${opts.format} format`, { file: source });
          }
        } else end = 0; // nothing whole in it (a run killed as it started): begin again
        const rows = lines.slice(1);
        if (opts.format === 'csv') {
          if (rows.length > 0) {
            if (rows[0] + '\n' === csvHeader(opts.classes, true)) sink.dicomColumns = true;
            else if (rows[0] + '\n' !== csvHeader(opts.classes)) {
              throw new InputError(`cannot resume: its columns are not this model's classes (or it was written by an older fundus, without the gradable column)`, { file: source });
            } else if (sink.dicomColumns) {
              throw new InputError(
                `cannot resume: the file has no DICOM columns (${DICOM_CSV_COLUMNS.join(', ')}) and DICOM photographs are among the inputs; predict into a new --out`,
                { file: source },
              );
            }
          }
          for (const l of rows.slice(1)) done.add(resolve(firstCsvField(l)));
          needsColumns = rows.length === 0;
        } else {
          rows.forEach((l, i) => {
            let rec: PhotoRecord;
            try {
              rec = JSON.parse(l) as PhotoRecord;
            } catch {
              throw new InputError('cannot resume: not a JSON Lines file', { file: source, line: i + 2 });
            }
            if (typeof rec.file === 'string') done.add(resolve(rec.file));
          });
        }
        if (source !== partial) await rm(partial, { force: true });
        if (source === opts.out) {
          await writeWhole(partial, text.slice(0, end));
        } else {
          await truncate(partial, Buffer.byteLength(text.slice(0, end)));
        }
        appending = end > 0;
      }
    }
    sink.stream = createWriteStream(partial, { flags: appending ? 'a' : 'w' });
    await once(sink.stream, 'open');
    await sink.writeRaw((appending ? '' : headerLine(opts.format, header)) + (needsColumns ? csvHeader(opts.classes, sink.dicomColumns) : ''));
    return { sink, done };
  }

  async write(records: PhotoRecord[]): Promise<void> {
    const text = records.map((r) => formatRecord(this.format, r, this.classes, this.thresholds, this.dicomColumns)).join('');
    await this.writeRaw(text);
  }

  private async writeRaw(text: string): Promise<void> {
    if (!text) return;
    const stream = this.stream ?? process.stdout;
    if (!stream.write(text)) await once(stream, 'drain');
  }

  /** Finishes the output: on success the partial file becomes `<out>`; otherwise it stays for `--resume`. */
  async close(success: boolean): Promise<void> {
    if (!this.stream) return;
    const s = this.stream;
    this.stream = undefined;
    await new Promise<void>((res, rej) => s.end((err?: Error | null) => (err ? rej(err) : res())));
    if (success) await rename(this.partialPath!, this.outPath!);
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}

async function writeWhole(path: string, text: string): Promise<void> {
  const s = createWriteStream(path);
  s.end(text);
  await once(s, 'finish');
}
