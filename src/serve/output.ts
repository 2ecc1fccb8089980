import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, truncate } from 'node:fs/promises';
import { dirname, extname, resolve } from 'node:path';
import { once } from 'node:events';
import { InputError } from '../util/errors.js';
import type { PredictionRecord } from './api-types.js';

/** `table`: readable blocks for a person; `json`: JSON Lines (one object per image); `csv`: one row per image. */
export type OutputFormat = 'table' | 'json' | 'csv';

export function formatFromPath(path: string): OutputFormat | undefined {
  const ext = extname(path).toLowerCase();
  if (ext === '.csv') return 'csv';
  if (ext === '.json' || ext === '.jsonl' || ext === '.ndjson') return 'json';
  if (ext === '.txt') return 'table';
  return undefined;
}

function csvField(s: string): string {
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** The first field of a CSV line (the file column), honouring quotes. */
function firstCsvField(line: string): string {
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

export function csvHeader(classes: readonly string[]): string {
  return ['file', ...classes, 'predicted'].map(csvField).join(',') + '\n';
}

export function formatRecord(format: OutputFormat, rec: PredictionRecord, classes: readonly string[], thresholds: readonly number[]): string {
  if (format === 'json') return JSON.stringify(rec) + '\n';
  if (format === 'csv') {
    const probs = classes.map((c) => rec.probabilities[c].toFixed(6));
    return [csvField(rec.file ?? ''), ...probs, csvField(rec.positive.join(';'))].join(',') + '\n';
  }
  const width = Math.max(...classes.map((c) => c.length));
  const lines = [`${rec.file ?? ''}  →  ${rec.positive.length ? rec.positive.join(', ') : 'no class above its threshold'}`];
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
 * result. `--resume` picks up from `<out>.partial` (an interrupted run) or `<out>` (a finished run the folder has
 * since grown past) and reports which files are already done.
 */
export class ResultSink {
  private stream?: WriteStream;
  readonly partialPath?: string;

  private constructor(
    readonly format: OutputFormat,
    private readonly classes: readonly string[],
    private readonly thresholds: readonly number[],
    readonly outPath?: string,
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
  }): Promise<{ sink: ResultSink; done: Set<string> }> {
    const sink = new ResultSink(opts.format, opts.classes, opts.thresholds, opts.out);
    const done = new Set<string>();
    if (!opts.out) {
      if (opts.format === 'csv') process.stdout.write(csvHeader(opts.classes));
      return { sink, done };
    }
    if (opts.resume && opts.format === 'table') throw new InputError('--resume needs --format json or csv');
    const partial = sink.partialPath!;
    await mkdir(dirname(resolve(opts.out)), { recursive: true });
    let appending = false;
    if (opts.resume) {
      const source = (await exists(partial)) ? partial : (await exists(opts.out)) ? opts.out : undefined;
      if (source) {
        const text = await readFile(source, 'utf8');
        // A run killed mid-write leaves a torn last line: drop it, the image is simply predicted again.
        const end = text.lastIndexOf('\n') + 1;
        const lines = text.slice(0, end).split('\n').filter((l) => l.length > 0);
        if (opts.format === 'csv') {
          if (lines.length > 0 && lines[0] + '\n' !== csvHeader(opts.classes)) {
            throw new InputError(`cannot resume: the header does not match this model's classes`, { file: source });
          }
          for (const l of lines.slice(1)) done.add(resolve(firstCsvField(l)));
        } else {
          lines.forEach((l, i) => {
            let rec: PredictionRecord;
            try {
              rec = JSON.parse(l) as PredictionRecord;
            } catch {
              throw new InputError('cannot resume: not a JSON Lines file', { file: source, line: i + 1 });
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
    if (!appending && opts.format === 'csv') await sink.writeRaw(csvHeader(opts.classes));
    return { sink, done };
  }

  async write(records: PredictionRecord[]): Promise<void> {
    const text = records.map((r) => formatRecord(this.format, r, this.classes, this.thresholds)).join('');
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
