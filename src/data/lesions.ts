import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { parseCsvRecords } from './csv.js';
import { InputError } from '../util/errors.js';

/**
 * Expert lesion annotations as tables of boxes: what heatmap localisation is scored against (explain) and what a
 * datasets file can grade a class from (a lesion near the fovea, see lesion-grades.ts).
 */

/** One lesion box, in pixels of the photograph as given (x right, y down; a pixel is in when its centre is). */
export interface LesionBox extends Box {
  lesion: string;
  /** Line of the CSV it came from (for messages). */
  line: number;
}

/** `codras`: filename,lesion,x0,y0,x1,y1. `heimed`: filename,lesion,x,y,x0,y0,x1,y1,area (centroid and area unused). */
export type LesionFormat = 'codras' | 'heimed';

export interface LesionTable {
  file: string;
  format: LesionFormat;
  /** Every lesion type in the file, with its number of rows. */
  types: Record<string, number>;
  /** The types kept (the `--lesion-types` filter, or the format's default). */
  kept: string[];
  /** Kept boxes by the photograph's file name (base name: boxes are matched to inputs by it). */
  byImage: Map<string, LesionBox[]>;
}

/** The lesion types scored by default: all for codras, exudates for heimed (exudate-based macular edema). */
export const DEFAULT_LESION_TYPES: Record<LesionFormat, string[] | 'all'> = { codras: 'all', heimed: ['Exudate'] };

/** The class the boxes are ground truth for, by default (what explain scores maps of, what train guides the map of). */
export const DEFAULT_LESION_CLASS: Record<LesionFormat, string> = { codras: 'diabetic retinopathy', heimed: 'macular edema' };

/** Which lesion types a table keeps: a list (each must be in the file), 'all', or the format's default. */
export interface LesionReadOptions {
  types?: string[] | 'all';
}

/** A box in pixels of a photograph (x right, y down). */
export interface Box {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

/** One row of a CSV of boxes: the photograph's file name as written, its box, the row's fields and its line. */
export interface BoxRow {
  filename: string;
  box: Box;
  fields: string[];
  line: number;
}

/** How to read a CSV of boxes (parseBoxCsv). */
export interface BoxCsvLayout {
  /** What the file holds, for messages: `lesions`, `optic-disc`. */
  kind: string;
  /** Columns wanted besides filename, x0, y0, x1 and y1. */
  also?: string[];
  /** The layouts the file may have, for the message about a missing column. */
  expected: string;
  /** Refuse an empty box (x1 = x0 or y1 = y0) too, not only an inverted one. */
  nonEmpty?: boolean;
}

/**
 * The rows of a CSV of boxes in pixels of photographs (expert lesions, optic discs): the columns `filename`, `x0`,
 * `y0`, `x1`, `y1` and `layout.also`, by name, in any order; the header, and each column's index. InputError naming
 * the file and line for an empty file, a missing column, a row of another length than the header, an empty file name,
 * a coordinate that is not a number, or an inverted box (an empty one too with `nonEmpty`).
 */
export function parseBoxCsv(text: string, file: string, layout: BoxCsvLayout): { header: string[]; col: (name: string) => number; rows: BoxRow[] } {
  const records = parseCsvRecords(text);
  if (records.length === 0) throw new InputError(`the ${layout.kind} file is empty`, { file });
  const header = records[0].fields.map((h) => h.trim());
  const col = (name: string) => header.indexOf(name);
  const need = ['filename', ...(layout.also ?? []), 'x0', 'y0', 'x1', 'y1'];
  const missing = need.filter((n) => col(n) < 0);
  if (missing.length > 0) {
    throw new InputError(
      `not ${/^[aeiou]/.test(layout.kind) ? 'an' : 'a'} ${layout.kind} file: missing column${missing.length > 1 ? 's' : ''} ${missing.join(', ')} (expected ${layout.expected}; got ${header.join(',')})`,
      { file, line: records[0].line },
    );
  }
  const [fi, x0i, y0i, x1i, y1i] = ['filename', 'x0', 'y0', 'x1', 'y1'].map(col);
  const rows = records.slice(1).map(({ fields, line }): BoxRow => {
    if (fields.length !== header.length) throw new InputError(`expected ${header.length} fields, got ${fields.length}`, { file, line });
    const filename = fields[fi].trim();
    if (!filename) throw new InputError('empty filename', { file, line });
    const num = (i: number) => {
      const s = fields[i].trim();
      const v = s === '' ? NaN : Number(s);
      if (!Number.isFinite(v)) throw new InputError(`${header[i]} is not a number (got '${fields[i]}')`, { file, line });
      return v;
    };
    const box = { x0: num(x0i), y0: num(y0i), x1: num(x1i), y1: num(y1i) };
    const corners = `(x0 ${box.x0}, y0 ${box.y0}, x1 ${box.x1}, y1 ${box.y1})`;
    if (layout.nonEmpty && (box.x1 <= box.x0 || box.y1 <= box.y0)) {
      throw new InputError(`not a box ${corners}: x1 must be greater than x0 and y1 greater than y0`, { file, line });
    }
    if (box.x1 < box.x0 || box.y1 < box.y0) throw new InputError(`inverted box ${corners}: x1 must be at least x0 and y1 at least y0`, { file, line });
    return { filename, box, fields, line };
  });
  return { header, col, rows };
}

/** The text of a table of boxes; InputError naming it when it cannot be read. */
export async function readBoxCsvText(file: string, kind: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (e) {
    throw new InputError(`cannot read the ${kind} file: ${(e as Error).message}`, { file });
  }
}

/**
 * Parses a lesions CSV (codras or heimed layout, told apart by the header; columns by name, in any order). Rows of
 * other types than `types` (default: DEFAULT_LESION_TYPES of the format; 'all': every type) are skipped. InputError
 * naming the file and line for missing columns, empty file names, non-numeric or inverted coordinates, or a `types`
 * entry the file lacks.
 */
export function parseLesions(text: string, file: string, opts: LesionReadOptions = {}): LesionTable {
  const table = parseBoxCsv(text, file, {
    kind: 'lesions',
    also: ['lesion'],
    expected: 'filename,lesion,x0,y0,x1,y1 or filename,lesion,x,y,x0,y0,x1,y1,area',
  });
  const { col } = table;
  const format: LesionFormat = col('x') >= 0 && col('y') >= 0 && col('area') >= 0 ? 'heimed' : 'codras';
  const li = col('lesion');
  const types: Record<string, number> = {};
  const rows: { name: string; box: LesionBox }[] = [];
  for (const { filename, box, fields, line } of table.rows) {
    const name = basename(filename.replace(/\\/g, '/'));
    if (!name) throw new InputError('empty filename', { file, line });
    const lesion = fields[li].trim();
    if (!lesion) throw new InputError('empty lesion type', { file, line });
    types[lesion] = (types[lesion] ?? 0) + 1;
    rows.push({ name, box: { lesion, ...box, line } });
  }
  const wanted = opts.types ?? DEFAULT_LESION_TYPES[format];
  const kept = wanted === 'all' ? Object.keys(types) : wanted;
  const unknown = kept.filter((t) => !(t in types));
  if (Array.isArray(opts.types) && unknown.length > 0) {
    throw new InputError(`--lesion-types: no '${unknown.join("', '")}' rows in this file (types: ${Object.keys(types).join(', ') || 'none'})`, { file });
  }
  const keep = new Set(kept);
  const byImage = new Map<string, LesionBox[]>();
  for (const { name, box } of rows) {
    if (!keep.has(box.lesion)) continue;
    let list = byImage.get(name);
    if (!list) byImage.set(name, (list = []));
    list.push(box);
  }
  return { file, format, types, kept: kept.filter((t) => t in types), byImage };
}

export async function readLesions(file: string, opts: LesionReadOptions = {}): Promise<LesionTable> {
  return parseLesions(await readBoxCsvText(file, 'lesions'), file, opts);
}
