import { appendFile, mkdir, readFile, readdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { enclosingModelDir, type FundusModel } from '../models/io.js';
import { decodeRgb, type PreprocessedImage } from '../data/preprocess.js';
import { outputStem } from '../data/dicom.js';
import type { CamMethod } from '../explain/cam.js';
import { discMask } from '../explain/disc.js';
import { explainerFor } from '../explain/explainer.js';
import { renderOverlayRgb } from '../explain/overlay.js';
import type { PredictionRecord } from '../models/records.js';
import { writeFileAtomic } from '../util/atomic.js';
import { InputError } from '../util/errors.js';
import { folderEntries, isInside, someNames } from '../util/owned.js';

/**
 * Heatmap overlays as `fundus predict --heatmaps` and the queue's workers write them: a folder of PNGs, one per
 * photograph and explained class, `<stem>.<class>.<method>.png`, marked as fundus's by its index.
 */

/** Which overlays a photograph gets: the method, and `positive` (the classes decided positive, the likeliest when none is), `all`, or named classes. */
export interface HeatmapChoice {
  method: CamMethod;
  classes: 'positive' | 'all' | string[];
}

/** The index of a heatmaps folder: which image got which file-name stem. Its presence marks a folder fundus writes heatmaps into. */
export const HEATMAPS_INDEX = 'fundus-heatmaps.jsonl';
export const HEATMAPS_LOCK = 'fundus-heatmaps.lock';

/** Lock files and their temporaries: never someone's content. */
function isLockLeftover(name: string): boolean {
  return name === HEATMAPS_LOCK || (name.startsWith(`${HEATMAPS_LOCK}.`) && /\.(tmp|stale)$/.test(name));
}

/** Refuses `--heatmap-classes` naming a class the model does not have. */
export function checkHeatmapClasses(which: HeatmapChoice['classes'], classes: readonly string[]): void {
  if (!Array.isArray(which)) return;
  for (const c of which) {
    if (!classes.includes(c)) throw new InputError(`--heatmap-classes: unknown class "${c}" (this model's classes: ${classes.join(', ')})`);
  }
}

/**
 * Checks `--heatmaps` before any work: a new or empty folder, or one fundus wrote heatmaps into (its index), not
 * inside a model folder, and holding none of the inputs.
 */
export async function checkHeatmapsDir(dir: string, images: string[] = []): Promise<void> {
  const entries = ((await folderEntries(resolve(dir), '--heatmaps')) ?? []).filter((n) => !isLockLeftover(n));
  const model = await enclosingModelDir(dir);
  if (model) throw new InputError(`--heatmaps lies inside the model folder ${model}; write heatmaps elsewhere`, { file: dir });
  if (entries.length > 0 && !entries.includes(HEATMAPS_INDEX)) {
    throw new InputError(
      `--heatmaps is a folder fundus did not write heatmaps into (no ${HEATMAPS_INDEX}; it holds ${someNames(entries)}); choose a new or empty folder`,
      { file: dir },
    );
  }
  const inside = images.find((p) => isInside(p, dir));
  if (inside) throw new InputError(`the input ${inside} lies inside --heatmaps: it would be predicted as a photograph; choose another folder`, { file: dir });
}

/**
 * Makes `dir` a heatmaps folder (creates it and its index unless there) and returns the lines of an index that was
 * there already (its header checked), without a torn last line; an index just created has no entries.
 */
export async function openHeatmapsIndex(dir: string): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const index = join(dir, HEATMAPS_INDEX);
  let text: string;
  try {
    text = await readFile(index, 'utf8');
  } catch {
    await writeFileAtomic(index, JSON.stringify({ format: 'fundus-heatmaps', version: 1 }) + '\n');
    return [];
  }
  const lines = text.slice(0, text.lastIndexOf('\n') + 1).split('\n').filter(Boolean);
  const header = (() => {
    try {
      return (JSON.parse(lines[0] ?? '') as { format?: string }).format;
    } catch {
      return undefined;
    }
  })();
  if (header !== 'fundus-heatmaps') throw new InputError('not a fundus heatmaps index; refusing to write heatmaps into this folder', { file: index });
  // A torn last line (a run killed while appending) would glue onto the next entry: end the file with a newline.
  if (!text.endsWith('\n')) await appendFile(index, '\n');
  return lines.slice(1);
}

export function heatmapFileName(stem: string, cls: string, method: string): string {
  return `${stem}.${cls.replace(/[^a-z0-9]+/gi, '-')}.${method}.png`;
}

function classesToExplain(rec: PredictionRecord, classes: readonly string[], which: HeatmapChoice['classes']): number[] {
  if (which === 'all') return classes.map((_, i) => i);
  if (Array.isArray(which)) return which.map((c) => classes.indexOf(c));
  if (rec.positive.length > 0) return rec.positive.map((c) => classes.indexOf(c));
  let best = 0;
  classes.forEach((c, i) => {
    if (rec.probabilities[c] > rec.probabilities[classes[best]]) best = i;
  });
  return [best];
}

/**
 * Explains one photograph's classes as `choice` asks and writes each overlay (the heatmap over the full-resolution
 * photograph) into `dir` as `<stem>.<class>.<method>.png`, atomically (a temporary file renamed: a reader or a writer
 * killed midway never leaves a torn PNG). Returns class → the path written, as records name them.
 */
export async function writeOverlays(
  model: FundusModel,
  photo: string | Buffer,
  pre: PreprocessedImage,
  rec: PredictionRecord,
  choice: HeatmapChoice,
  dir: string,
  stem: string,
): Promise<Record<string, string>> {
  const classes = model.metadata.classes;
  const targets = classesToExplain(rec, classes, choice.classes);
  // Several classes of one image share one forward and one backward pass, and one decoding of the photograph.
  const results = explainerFor(model).explain([pre], targets.map((classIndex) => ({ image: 0, classIndex })), choice.method);
  const decoded = await decodeRgb(photo);
  const disc = discMask(decoded.data, decoded.width, decoded.height, pre.geometry);
  const written: Record<string, string> = {};
  for (const r of results) {
    const png = await renderOverlayRgb(decoded, r.heatmap, pre.geometry, { disc });
    const path = join(dir, heatmapFileName(stem, classes[r.classIndex], choice.method));
    await writeFileAtomic(path, png);
    written[classes[r.classIndex]] = path;
  }
  return written;
}

/**
 * Unique file names in a heatmaps folder: each image gets a stem (its file name without extension; a DICOM frame's
 * says its frame, see outputStem) for its overlays `<stem>.<class>.<method>.png`; when another image has that stem
 * already (d1/x.jpg and d2/x.jpg, x.jpg and x.png), or overlays fundus has no record of use it, the next free
 * `<stem>-2`, `<stem>-3`, ... An image keeps its stem from
 * run to run (the index records it first), so a resumed run writes each image's overlays under the same names.
 */
export class HeatmapNames {
  private readonly stemOf = new Map<string, string>();
  private readonly owner = new Map<string, string>();
  private readonly onDisk = new Set<string>();

  private constructor(readonly dir: string) {}

  static async open(dir: string): Promise<HeatmapNames> {
    const names = new HeatmapNames(dir);
    for (const l of await openHeatmapsIndex(dir)) {
      try {
        const e = JSON.parse(l) as { image?: unknown; stem?: unknown };
        if (typeof e.image === 'string' && typeof e.stem === 'string') names.claim(e.image, e.stem);
      } catch {
        // a torn line: that image simply gets a stem again
      }
    }
    // Overlays fundus has no record of (written before a crash, by the queue's workers, or by someone else) keep their names.
    for (const f of await readdir(dir)) {
      const m = /^(.+)\.[^.]+\.[^.]+\.png$/.exec(f);
      if (m) names.onDisk.add(m[1].toLowerCase());
    }
    return names;
  }

  private taken(stem: string): boolean {
    return this.owner.has(stem.toLowerCase()) || this.onDisk.has(stem.toLowerCase());
  }

  private claim(image: string, stem: string): void {
    this.stemOf.set(image, stem);
    this.owner.set(stem.toLowerCase(), image);
  }

  /** The stem of `image` (resolved path), claimed in the index before any of its overlays is written. */
  async stemFor(image: string): Promise<string> {
    const known = this.stemOf.get(image);
    if (known) return known;
    let n = 1;
    let stem = outputStem(image, n);
    while (this.taken(stem)) stem = outputStem(image, ++n);
    this.claim(image, stem);
    await appendFile(join(this.dir, HEATMAPS_INDEX), JSON.stringify({ image, stem }) + '\n');
    return stem;
  }
}
