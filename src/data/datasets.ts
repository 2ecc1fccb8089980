import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { dirname, relative, resolve } from 'node:path';
import { InputError } from '../util/errors.js';
import { readDataset } from './csv.js';
import type { Dataset, LabelledImage } from './labels.js';
import { applyLesionGrades, type LesionGradesSpec } from './lesion-grades.js';
import { PART_NAMES, makeSplit, readSplit } from './split.js';
import type { PartName, Split } from './split.js';

/**
 * One labelled source of a multi-source dataset, as a datasets file lists it. Paths are relative to the datasets
 * file. A source grades the classes it has a column for (by class name, or through `columns`); other columns are
 * data about the photo (patient, eye, camera) and are ignored, and an empty cell is "not graded".
 */
export interface SourceSpec {
  /** Short name, unique in the file: it prefixes the source's filenames (`mexico-b/1221_OD_f_1.jpg`). */
  name: string;
  csv: string;
  images: string;
  /** A split file made for this CSV (`fundus data split`); without one a split is made from `groupBy`. */
  split?: string;
  /** Column naming the unit a split keeps whole, e.g. `patient`: photos of one person never straddle two parts. */
  groupBy?: string;
  /** Class -> CSV column, where the CSV names a class differently (codras: diabetic retinopathy <- has_lesion_boxes). */
  columns?: Record<string, string>;
  /** Keep only rows whose column has this value (codras: only photos with lesion boxes are known positives). */
  where?: Record<string, string>;
  /** `external`: for validation only, never trained on; it is evaluated whole (it has no split). Default `train`. */
  role?: 'train' | 'external';
  /**
   * Classes graded from expert lesion boxes rather than a CSV column (codras: macular edema from hard exudates near
   * the fovea; see lesion-grades.ts).
   */
  lesionGrades?: LesionGradesSpec;
}

/** A datasets file: the sources, and how sources without a split file are split. */
export interface DatasetsSpec {
  sources: SourceSpec[];
  /** Seed and ratios of the splits made here (default 42 and 0.7 / 0.15 / 0.15). */
  seed?: number;
  ratios?: Record<PartName, number>;
}

/** A source as read: its images (filenames prefixed with the source name) and its split. */
export interface Source {
  name: string;
  role: 'train' | 'external';
  dataset: Dataset;
  /** Graded classes: those with a column in the CSV. */
  graded: string[];
  /** Parts of the prefixed filenames; external sources have everything in `test`. */
  parts: Record<PartName, string[]>;
  /** How the split was made: a file, or made here by groups. */
  splitFrom: string;
  csvSha256: string;
}

/** Several sources read from a datasets file, joined into one dataset with one split. */
export interface MultiSourceData {
  path: string;
  sha256: string;
  sources: Source[];
  /** Every image of every source, filenames prefixed, `source` and `graded` set. */
  dataset: Dataset;
  /** The training sources' parts joined (external sources are in no part). */
  parts: Record<PartName, string[]>;
  /** The joined split as a split file's text (what a model directory keeps as split.json). */
  splitText: string;
}

const DEFAULT_RATIOS: Record<PartName, number> = { train: 0.7, validation: 0.15, test: 0.15 };

function checkSpec(raw: unknown, path: string): DatasetsSpec {
  const fail = (msg: string): never => {
    throw new InputError(`not a datasets file: ${msg}`, { file: path });
  };
  const spec = raw as DatasetsSpec;
  if (typeof spec !== 'object' || spec === null || !Array.isArray(spec.sources) || spec.sources.length === 0) fail('expected { "sources": [ ... ] }');
  const names = new Set<string>();
  spec.sources.forEach((s, i) => {
    const where = `sources[${i}]`;
    if (typeof s !== 'object' || s === null) fail(`${where} must be an object`);
    if (typeof s.name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(s.name)) fail(`${where}.name must be a short name (letters, digits, . _ -)`);
    if (names.has(s.name)) fail(`source '${s.name}' appears twice`);
    names.add(s.name);
    for (const key of ['csv', 'images'] as const) if (typeof s[key] !== 'string') fail(`${where}.${key} must be a path`);
    for (const key of ['split', 'groupBy'] as const) if (s[key] !== undefined && typeof s[key] !== 'string') fail(`${where}.${key} must be a string`);
    for (const key of ['columns', 'where'] as const) {
      const m = s[key];
      if (m !== undefined && (typeof m !== 'object' || m === null || Object.values(m).some((v) => typeof v !== 'string'))) fail(`${where}.${key} must map names to strings`);
    }
    if (s.role !== undefined && s.role !== 'train' && s.role !== 'external') fail(`${where}.role must be 'train' or 'external'`);
    if (s.role === 'external' && s.split !== undefined) fail(`${where}: an external source is evaluated whole and takes no split`);
    const lg = s.lesionGrades;
    if (lg !== undefined) {
      const rules = lg === null || typeof lg !== 'object' ? undefined : lg.classes;
      if (typeof lg?.lesions !== 'string' || (lg.opticDiscs !== undefined && typeof lg.opticDiscs !== 'string')) fail(`${where}.lesionGrades needs a lesions path (and opticDiscs, when given, a path)`);
      if (typeof rules !== 'object' || rules === null || Object.keys(rules).length === 0) fail(`${where}.lesionGrades.classes must map class names to rules`);
      for (const [cls, r] of Object.entries(rules!)) {
        if (typeof r !== 'object' || r === null || typeof r.lesion !== 'string') fail(`${where}.lesionGrades.classes['${cls}'] needs { "lesion": "<type>" }`);
        if (r.withinDiscDiameters !== undefined && !(typeof r.withinDiscDiameters === 'number' && r.withinDiscDiameters > 0)) fail(`${where}.lesionGrades.classes['${cls}'].withinDiscDiameters must be a positive number`);
      }
    }
  });
  if (spec.ratios !== undefined && PART_NAMES.some((p) => !(spec.ratios![p] >= 0))) fail('ratios needs train, validation and test');
  return spec;
}

/** The patient groups of a source: images sharing the `groupBy` value. */
function groupsOf(images: LabelledImage[]): string[][] {
  const by = new Map<string, string[]>();
  for (const im of images) if (im.group !== undefined) by.set(im.group, [...(by.get(im.group) ?? []), im.filename]);
  return [...by.values()].filter((g) => g.length > 1);
}

async function readSource(spec: SourceSpec, datasetsFile: string, seed: number, ratios: Record<PartName, number>): Promise<Source> {
  const base = dirname(resolve(datasetsFile));
  const csv = resolve(base, spec.csv);
  const dataset = await readDataset(csv, resolve(base, spec.images), {
    partial: true,
    ...(spec.columns ? { columns: spec.columns } : {}),
    ...(spec.where ? { where: spec.where } : {}),
    ...(spec.groupBy ? { groupBy: spec.groupBy } : {}),
  });
  const bytes = await readFile(csv);
  const tagged: LabelledImage[] = dataset.images.map((im) => ({ ...im, source: spec.name }));
  if (spec.lesionGrades) await applyLesionGrades(tagged, dataset.classes, spec.lesionGrades, { resolve: (p) => resolve(base, p), datasetsFile, source: spec.name });
  const gradedMask = new Uint8Array(dataset.classes.length);
  for (const im of tagged) dataset.classes.forEach((_, k) => (gradedMask[k] ||= im.graded ? im.graded[k] : 1));
  const graded = dataset.classes.filter((_, k) => gradedMask[k]);
  const local = { ...dataset, images: tagged };

  let parts: Record<PartName, string[]>;
  let splitFrom: string;
  if ((spec.role ?? 'train') === 'external') {
    parts = { train: [], validation: [], test: tagged.map((im) => im.filename) };
    splitFrom = 'external: evaluated whole';
  } else if (spec.split) {
    const splitPath = resolve(base, spec.split);
    const split = await readSplit(splitPath);
    const names = new Set(tagged.map((im) => im.filename));
    for (const p of PART_NAMES) {
      const unknown = split.parts[p].filter((f) => !names.has(f));
      if (unknown.length > 0) throw new InputError(`source '${spec.name}': part ${p} lists ${unknown.length} images not in ${spec.csv} (e.g. ${unknown[0]})`, { file: splitPath });
    }
    parts = split.parts;
    splitFrom = relative(base, splitPath);
  } else {
    const split: Split = makeSplit(local, {
      seed,
      ratios,
      groups: groupsOf(tagged),
      source: { csv: spec.csv, csvSha256: '', images: tagged.length },
      duplicates: null,
    });
    parts = split.parts;
    splitFrom = spec.groupBy ? `made here: seed ${seed}, grouped by '${spec.groupBy}'` : `made here: seed ${seed}, by image`;
  }
  const prefix = (f: string) => `${spec.name}/${f}`;
  const images = tagged.map((im) => ({ ...im, filename: prefix(im.filename) }));
  return {
    name: spec.name,
    role: spec.role ?? 'train',
    dataset: { classes: dataset.classes, images, csvPath: csv, imagesDir: dataset.imagesDir },
    graded,
    parts: { train: parts.train.map(prefix), validation: parts.validation.map(prefix), test: parts.test.map(prefix) },
    splitFrom,
    csvSha256: createHash('sha256').update(bytes).digest('hex'),
  };
}

/**
 * Reads a datasets file: every source's CSV (partial grading allowed), its images and its split (a split file, or
 * one made here by patient groups, deterministic for the file's seed), joined into one dataset. InputError naming
 * the file on anything malformed.
 */
export async function readDatasets(path: string): Promise<MultiSourceData> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new InputError(`cannot read the datasets file: ${(e as Error).message}`, { file: path });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new InputError(`the datasets file is not JSON: ${(e as Error).message}`, { file: path });
  }
  const spec = checkSpec(raw, path);
  const base = dirname(resolve(path));
  const seed = spec.seed ?? 42;
  const ratios = spec.ratios ?? DEFAULT_RATIOS;
  const sources: Source[] = [];
  for (const s of spec.sources) sources.push(await readSource(s, path, seed, ratios));
  const parts: Record<PartName, string[]> = { train: [], validation: [], test: [] };
  for (const s of sources) if (s.role === 'train') for (const p of PART_NAMES) parts[p].push(...s.parts[p]);
  const images = sources.flatMap((s) => s.dataset.images);
  const splitText =
    JSON.stringify(
      {
        version: 1,
        seed,
        ratios,
        source: { datasets: relative(process.cwd(), resolve(path)), sources: sources.map((s) => ({ name: s.name, role: s.role, csvSha256: s.csvSha256, splitFrom: s.splitFrom, graded: s.graded })) },
        parts,
      },
      null,
      2,
    ) + '\n';
  return {
    path: resolve(path),
    sha256: createHash('sha256').update(text).digest('hex'),
    sources,
    dataset: { classes: sources[0].dataset.classes, images, csvPath: resolve(path), imagesDir: base },
    parts,
    splitText,
  };
}

/** Each source's counts: images, per graded class positives / negatives, per part. For logs and model cards. */
export function describeSources(data: MultiSourceData): string[] {
  return data.sources.map((s) => {
    const n = (p: PartName) => s.parts[p].length;
    const pos = s.graded.map((c) => {
      const k = s.dataset.classes.indexOf(c);
      const graded = s.dataset.images.filter((im) => !im.graded || im.graded[k]);
      return `${c} ${graded.filter((im) => im.labels![k]).length}/${graded.length}`;
    });
    return `${s.name} (${s.role}): ${s.dataset.images.length} images, ${s.role === 'train' ? `${n('train')}/${n('validation')}/${n('test')} train/validation/test, ` : ''}` +
      `graded: ${pos.join(', ')} (positives/graded)`;
  });
}
