// What the model card says about the data of a run, gathered from the data as it was given (see models/card.ts).
import { basename, join, relative } from 'node:path';
import { isGraded } from '../data/labels.js';
import type { Dataset, LabelledImage } from '../data/labels.js';
import { PART_NAMES } from '../data/split.js';
import type { PartName } from '../data/split.js';
import type { CardSource, ClassCount } from '../models/card.js';
import type { RunOptions } from './recipe.js';
import type { TrainingData } from './train-data.js';

/** Positives and graded photographs of each class in `images` (only the classes in `classes`). */
function classCounts(dataset: Dataset, images: LabelledImage[], classes: string[]): Record<string, ClassCount> {
  return Object.fromEntries(
    classes.map((c) => {
      const k = dataset.classes.indexOf(c);
      const graded = images.filter((im) => im.labels && isGraded(im, k));
      return [c, { positives: graded.filter((im) => im.labels![k] === 1).length, graded: graded.length }];
    }),
  );
}

function partCounts(dataset: Dataset, parts: Record<PartName, LabelledImage[]>, classes: string[]): CardSource['parts'] {
  return Object.fromEntries(PART_NAMES.map((p) => [p, { images: parts[p].length, classes: classCounts(dataset, parts[p], classes) }])) as CardSource['parts'];
}

/** How a split file was made, from what `fundus data split` records in it (a hand-made file records less). */
export function splitOrigin(path: string, text: string): string {
  let made: { seed?: unknown; ratios?: Record<string, number>; groups?: unknown[]; duplicates?: { method?: string; similarity?: number } | null } = {};
  try {
    made = JSON.parse(text) as typeof made;
  } catch {
    // the split was read already; a file that is not JSON here is described by its name alone
  }
  const how: string[] = [];
  if (typeof made.seed === 'number' && made.ratios) how.push(`seed ${made.seed}, ratios ${PART_NAMES.map((p) => made.ratios![p]).join(' / ')}`);
  if (Array.isArray(made.groups) && made.groups.length > 0) {
    const found = made.duplicates?.method ? ` (found by ${made.duplicates.method}${made.duplicates.similarity !== undefined ? ` at similarity ${made.duplicates.similarity}` : ''})` : '';
    how.push(`${made.groups.length} groups of repeat photographs${found} each kept inside one part`);
  }
  return `the split file \`${path}\`${how.length ? ` (${how.join('; ')})` : ''}`;
}

/** The sources of a run as the model card describes them: one per CSV, counted on the parts the run used. */
export function cardSources(data: TrainingData, opts: Pick<RunOptions, 'csv'>, csvSha256: string): CardSource[] {
  const { dataset, sources } = data;
  if (!sources) {
    const graded = dataset.classes.filter((c, k) => dataset.images.some((im) => im.labels && isGraded(im, k)));
    return [
      {
        name: basename(opts.csv!),
        csv: opts.csv!,
        csvSha256,
        role: 'train',
        graded,
        splitFrom: splitOrigin(data.splitPath, data.split.text),
        parts: partCounts(dataset, data.parts, graded),
      },
    ];
  }
  const byName = new Map(dataset.images.map((im) => [im.filename, im]));
  return sources.sources.map((s) => {
    // a training source as the run used it (--limit applies); an external one whole
    const parts = Object.fromEntries(
      PART_NAMES.map((p) => [
        p,
        s.role === 'train' ? data.parts[p].filter((im) => im.source === s.name) : s.parts[p].map((n) => byName.get(n)).filter((im): im is LabelledImage => im !== undefined),
      ]),
    ) as Record<PartName, LabelledImage[]>;
    return {
      name: s.name,
      csv: s.dataset.csvPath ? relative(process.cwd(), s.dataset.csvPath) : s.name,
      csvSha256: s.csvSha256,
      role: s.role,
      graded: s.graded,
      splitFrom: s.splitFrom,
      parts: partCounts(dataset, parts, s.graded),
    };
  });
}

/** The command that re-runs a model's held-out evaluation on the data the run was given. */
export function evaluateCommand(out: string, opts: Pick<RunOptions, 'csv' | 'images' | 'datasets'>): string {
  return opts.datasets !== undefined
    ? `fundus evaluate ${out} --datasets ${opts.datasets} --part test`
    : `fundus evaluate ${out} --data ${opts.csv} ${opts.images} --split ${join(out, 'split.json')} --part test`;
}
