import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { parseCsvRecords } from './csv.js';
import { InputError } from '../util/errors.js';

/**
 * Expert lesion annotations as tables of boxes: what heatmap localisation is scored against (explain) and what a
 * datasets file can grade a class from (a lesion near the fovea, see lesion-grades.ts).
 */

/** One lesion box, in pixels of the photograph as given (x right, y down; a pixel is in when its centre is). */
export interface LesionBox {
  lesion: string;
  x0: number;
  y0: number;
  x1: number;
  y1: number;
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

/** Which lesion types a table keeps: a list (each must be in the file), 'all', or the format's default. */
export interface LesionReadOptions {
  types?: string[] | 'all';
}

/**
 * Parses a lesions CSV (codras or heimed layout, told apart by the header; columns by name, in any order). Rows of
 * other types than `types` (default: DEFAULT_LESION_TYPES of the format; 'all': every type) are skipped. InputError
 * naming the file and line for missing columns, empty file names, non-numeric or inverted coordinates, or a `types`
 * entry the file lacks.
 */
export function parseLesions(text: string, file: string, opts: LesionReadOptions = {}): LesionTable {
  const records = parseCsvRecords(text);
  if (records.length === 0) throw new InputError('the lesions file is empty', { file });
  const header = records[0].fields.map((h) => h.trim());
  const col = (name: string) => header.indexOf(name);
  const need = ['filename', 'lesion', 'x0', 'y0', 'x1', 'y1'];
  const missing = need.filter((n) => col(n) < 0);
  if (missing.length > 0) {
    throw new InputError(
      `not a lesions file: missing column${missing.length > 1 ? 's' : ''} ${missing.join(', ')} (expected filename,lesion,x0,y0,x1,y1 or filename,lesion,x,y,x0,y0,x1,y1,area; got ${header.join(',')})`,
      { file, line: records[0].line },
    );
  }
  const format: LesionFormat = col('x') >= 0 && col('y') >= 0 && col('area') >= 0 ? 'heimed' : 'codras';
  const [fi, li, x0i, y0i, x1i, y1i] = need.map(col);
  const types: Record<string, number> = {};
  const rows: { name: string; box: LesionBox }[] = [];
  for (const { fields, line } of records.slice(1)) {
    if (fields.length !== header.length) {
      throw new InputError(`expected ${header.length} fields, got ${fields.length}`, { file, line });
    }
    const name = basename(fields[fi].trim().replace(/\\/g, '/'));
    if (!name) throw new InputError('empty filename', { file, line });
    const lesion = fields[li].trim();
    if (!lesion) throw new InputError('empty lesion type', { file, line });
    const num = (i: number) => {
      const s = fields[i].trim();
      const v = s === '' ? NaN : Number(s);
      if (!Number.isFinite(v)) throw new InputError(`${header[i]} is not a number (got '${fields[i]}')`, { file, line });
      return v;
    };
    const box: LesionBox = { lesion, x0: num(x0i), y0: num(y0i), x1: num(x1i), y1: num(y1i), line };
    if (box.x1 < box.x0 || box.y1 < box.y0) {
      throw new InputError(`inverted box (x0 ${box.x0}, y0 ${box.y0}, x1 ${box.x1}, y1 ${box.y1}): x1 must be at least x0 and y1 at least y0`, { file, line });
    }
    types[lesion] = (types[lesion] ?? 0) + 1;
    rows.push({ name, box });
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
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new InputError(`cannot read the lesions file: ${(e as Error).message}`, { file });
  }
  return parseLesions(text, file, opts);
}
