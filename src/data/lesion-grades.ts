import sharp from 'sharp';
import { isGraded, type LabelledImage } from './labels.js';
import { parseBoxCsv, readBoxCsvText, readLesions, type Box, type LesionBox } from './lesions.js';
import { InputError } from '../util/errors.js';

/**
 * Grading a class from expert lesion boxes, for sources that annotate lesions but give no grade for the class.
 *
 * The rule follows the clinical definition of macular edema that photographs can show (ETDRS "clinically
 * significant", IDRiD's risk-of-DME grade 2, HEI-MED's label): hard exudates within about one disc diameter of the
 * fovea. A photograph is graded
 * - 1 when a box of the lesion reaches within `withinDiscDiameters` disc diameters of the fovea,
 * - 0 when it has no box of the lesion at all,
 * - not graded when the lesion lies only farther out (IDRiD's grade 1: neither answer is known).
 * Without `withinDiscDiameters` any box of the lesion grades 1. The fovea is taken at the photograph's centre, which
 * holds for macula-centred photographs (IDRiD's protocol); the disc diameter is the optic-disc box's mean side.
 */
export interface LesionGradeRule {
  /** Lesion type as written in the lesions CSV, e.g. `hard_exudates`. */
  lesion: string;
  /** Radius around the fovea in disc diameters (needs `opticDiscs`). */
  withinDiscDiameters?: number;
}

/** A datasets-file source's `lesionGrades`: the tables (paths relative to the datasets file) and a rule per class. */
export interface LesionGradesSpec {
  lesions: string;
  /** Optic-disc boxes, `filename,x0,y0,x1,y1`: the scale of `withinDiscDiameters`. */
  opticDiscs?: string;
  classes: Record<string, LesionGradeRule>;
}

/** An optic-disc box in pixels of the photograph. */
export type DiscBox = Box;

/** Reads `filename,x0,y0,x1,y1` optic-disc boxes by file name; InputError naming the file and line otherwise. */
export async function readOpticDiscs(file: string): Promise<Map<string, DiscBox>> {
  const text = await readBoxCsvText(file, 'optic-disc');
  const { rows } = parseBoxCsv(text, file, { kind: 'optic-disc', expected: 'filename,x0,y0,x1,y1', nonEmpty: true });
  return new Map(rows.map((r) => [r.filename, r.box]));
}

/** Distance from a point to the nearest pixel of a box (0 inside it). */
function distanceToBox(x: number, y: number, b: LesionBox): number {
  return Math.hypot(Math.max(b.x0 - x, 0, x - b.x1), Math.max(b.y0 - y, 0, y - b.y1));
}

/**
 * One photograph's grade by `rule` (see LesionGradeRule): 1, 0, or undefined for not graded (the lesion only away
 * from the fovea, or no disc box to measure by).
 */
export function gradeFromLesions(
  boxes: LesionBox[],
  rule: LesionGradeRule,
  photo: { width: number; height: number },
  disc: DiscBox | undefined,
): 0 | 1 | undefined {
  const own = boxes.filter((b) => b.lesion === rule.lesion);
  if (own.length === 0) return 0;
  if (rule.withinDiscDiameters === undefined) return 1;
  if (!disc) return undefined;
  const radius = rule.withinDiscDiameters * ((disc.x1 - disc.x0 + disc.y1 - disc.y0) / 2);
  const near = own.some((b) => distanceToBox(photo.width / 2, photo.height / 2, b) <= radius);
  return near ? 1 : undefined;
}

/**
 * Grades `spec`'s classes on `images` from the lesion tables (files resolved against `base`), in place: sets
 * `labels` and `graded` for each rule's class. A class the CSV grades too is an error (two sources of truth), as is a
 * rule for an unknown class or lesion type. A graded positive rules `normal` out, as a CSV's would.
 */
export async function applyLesionGrades(
  images: LabelledImage[],
  classes: string[],
  spec: LesionGradesSpec,
  context: { resolve: (p: string) => string; datasetsFile: string; source: string },
): Promise<void> {
  const fail = (msg: string): never => {
    throw new InputError(`source '${context.source}', lesionGrades: ${msg}`, { file: context.datasetsFile });
  };
  const lesionsFile = context.resolve(spec.lesions);
  const rules = Object.entries(spec.classes);
  const lesionTypes = [...new Set(rules.map(([, r]) => r.lesion))];
  // every type is kept (gradeFromLesions picks each rule's own), so that a missing one gets this message, not --lesion-types'
  const table = await readLesions(lesionsFile, { types: 'all' });
  const missing = lesionTypes.filter((t) => !(t in table.types));
  if (missing.length > 0) fail(`names lesion type '${missing.join("', '")}', which ${spec.lesions} does not have (types: ${Object.keys(table.types).join(', ')})`);
  const needsDiscs = rules.some(([, r]) => r.withinDiscDiameters !== undefined);
  if (needsDiscs && spec.opticDiscs === undefined) fail(`withinDiscDiameters needs opticDiscs (a file of optic-disc boxes)`);
  const discs = needsDiscs ? await readOpticDiscs(context.resolve(spec.opticDiscs!)) : new Map<string, DiscBox>();
  const normal = classes.indexOf('normal');
  for (const [cls] of rules) {
    const k = classes.indexOf(cls);
    if (k < 0) fail(`grades unknown class '${cls}' (known: ${classes.join(', ')})`);
    const gradedByCsv = images.find((im) => isGraded(im, k));
    if (gradedByCsv) fail(`'${cls}' is graded by the CSV already (e.g. ${gradedByCsv.filename}) and by lesionGrades: keep one`);
  }
  for (const im of images) {
    const size = needsDiscs ? await photoSize(im.path) : { width: 0, height: 0 };
    const boxes = table.byImage.get(im.filename) ?? [];
    for (const [cls, rule] of rules) {
      const grade = gradeFromLesions(boxes, rule, size, discs.get(im.filename));
      if (grade === undefined) continue;
      const k = classes.indexOf(cls);
      im.labels ??= new Uint8Array(classes.length);
      im.graded ??= new Uint8Array(classes.length).fill(1);
      im.labels[k] = grade;
      im.graded[k] = 1;
      if (grade === 1 && normal >= 0) {
        im.labels[normal] = 0;
        im.graded[normal] = 1;
      }
    }
  }
}

async function photoSize(path: string): Promise<{ width: number; height: number }> {
  try {
    const meta = await sharp(path).metadata();
    if (meta.width && meta.height) return { width: meta.width, height: meta.height };
  } catch (e) {
    throw new InputError(`cannot read the photograph's size: ${(e as Error).message}`, { file: path });
  }
  throw new InputError("cannot read the photograph's size", { file: path });
}
