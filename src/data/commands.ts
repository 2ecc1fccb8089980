import { stat } from 'node:fs/promises';
import { relative } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { writeFileAtomic } from '../util/atomic.js';
import { CAMERA_AUGMENT } from './augment.js';
import { checkDataset, formatCheckReport } from './check.js';
import { readDataset } from './csv.js';
import { analyseDuplicates, similarityHistogram } from './dedup.js';
import type { DatasetGroup } from './dedup.js';
import { DEFAULT_SIMILARITY } from './duplicates.js';
import { collectImages } from './image-files.js';
import { DEFAULT_PREPROCESS, validatePreprocessSettings } from './preprocess.js';
import type { PreprocessSettings } from './preprocess.js';
import { renderPreview } from './preview.js';
import { PART_NAMES } from './split.js';
import { SPLIT_DEFAULTS, splitDataset } from './split-dataset.js';
import type { PartName, Split } from './split.js';
import { addUnlabelledOption, integerIn, numberIn, numberOption, unlabelledOf } from '../util/cli-options.js';

function parseRatios(v: string): Record<PartName, number> {
  const xs = v.split(/[,/:]/).map(Number);
  if (xs.length !== 3 || xs.some((x) => !Number.isFinite(x) || x < 0) || xs.reduce((a, b) => a + b, 0) <= 0) {
    throw new InvalidArgumentError('ratios are three non-negative numbers, e.g. 70,15,15 or 0.7,0.15,0.15');
  }
  const sum = xs.reduce((a, b) => a + b, 0);
  return { train: xs[0] / sum, validation: xs[1] / sum, test: xs[2] / sum };
}

function parseSize(v: string): { width: number; height: number } {
  const m = /^(\d+)x(\d+)$/.exec(v);
  if (!m) throw new InvalidArgumentError('size is WIDTHxHEIGHT, e.g. 512x512');
  return { width: Number(m[1]), height: Number(m[2]) };
}

function countsTable(classes: string[], counts: Split['counts']): string {
  const w = Math.max(10, ...classes.map((c) => c.length));
  const lines = [`  ${''.padEnd(w)}  ${PART_NAMES.map((p) => p.padStart(12)).join('')}`];
  lines.push(`  ${'images'.padEnd(w)}  ${PART_NAMES.map((p) => String(counts[p].images).padStart(12)).join('')}`);
  for (const c of classes) lines.push(`  ${c.padEnd(w)}  ${PART_NAMES.map((p) => String(counts[p].labels[c]).padStart(12)).join('')}`);
  return lines.join('\n');
}

function groupLine(g: DatasetGroup): string {
  const tags = [g.exact ? 'exact copies' : `similarity >= ${g.minSimilarity.toFixed(2)}, pHash <= ${g.maxDistance}`];
  if (g.crossFolder) tags.push('CROSS-FOLDER');
  if (g.labelsDisagree) tags.push('LABELS DISAGREE');
  // where labels disagree, each labelled photograph with its labels: which one is right is for a person to decide
  const labelled = g.labelsDisagree ? g.labelled.map((n) => `${n} [${g.labels[n]?.join(', ') || 'no label'}]`) : g.labelled;
  const names = [...labelled, ...g.unlabeled.map((u) => `unlabeled:${u}`)];
  return `  ${names.join(' ')}  (${tags.join('; ')})`;
}

export function register(program: Command): void {
  const data = program.command('data').description('check, deduplicate, split and preview a fundus dataset');

  data
    .command('check')
    .description('check a label CSV (contest multi-hot or filename,label) against its image folder')
    .argument('<csv>', 'label CSV: filename then one 0/1 column per class, or filename,label')
    .argument('<images-dir>', 'folder with the images named in the CSV')
    .option('--json', 'print the full report as JSON')
    .option('--expect-size <WxH>', 'expected image size (default: the most common size)', parseSize)
    .option('--strict', 'treat warnings (images not in the CSV, unexpected sizes, rows without labels) as errors')
    .option('--partial', 'the source grades some classes only: other columns are ignored, a class without a column is not graded')
    .addHelpText(
      'after',
      '\nAn empty label cell means "not graded" (counted per class), never "absent".\n' +
        'Exit codes: 0 usable, 1 problems found (each named with its file and line), 2 bad arguments or unreadable CSV.',
    )
    .action(async (csv: string, imagesDir: string, o: { json?: boolean; expectSize?: { width: number; height: number }; strict?: boolean; partial?: boolean }) => {
      const report = await checkDataset(csv, imagesDir, { expectSize: o.expectSize, progressLabel: 'checking images', parse: { partial: o.partial } });
      const usable = report.usable && !(o.strict && report.warnings > 0);
      if (o.json) console.log(JSON.stringify({ ...report, usable }, null, 2));
      else console.log(formatCheckReport(report));
      if (!usable) process.exitCode = 1;
    });

  addUnlabelledOption(
    data
      .command('duplicates')
      .description('find copies and repeat photographs of the same eye (also across the labelled and unlabelled folders)')
      .argument('<csv>', 'label CSV (labels tell which groups disagree)')
      .argument('<images-dir>', 'folder of the labelled images'),
    '<dir>',
    'also search this folder of unlabelled images',
  )
    .option('--similarity <s>', `vessel-detail similarity that makes two photos the same eye`, numberOption('--similarity', numberIn(0, 1, true)), DEFAULT_SIMILARITY)
    .option('--histogram', 'print the similarity distribution of candidate pairs (how the threshold was chosen)')
    .option('--json', 'print the groups as JSON')
    .option('-o, --out <file>', 'also write the JSON report to this file')
    .action(async (csv: string, imagesDir: string, o: { unlabelled?: string; unlabeled?: string; similarity: number; histogram?: boolean; json?: boolean; out?: string }) => {
      const ds = await readDataset(csv, imagesDir);
      const a = await analyseDuplicates(ds, unlabelledOf(o), { similarity: o.similarity, progressLabel: 'fingerprinting' });
      const report = {
        images: a.images,
        similarity: a.similarity,
        groups: a.groups.length,
        imagesInGroups: a.groups.reduce((s, g) => s + g.members.length, 0),
        exactPairs: a.exactPairs.map(([x, y]) => [relative(process.cwd(), x), relative(process.cwd(), y)]),
        crossFolderGroups: a.groups.filter((g) => g.crossFolder).length,
        labelDisagreementGroups: a.groups.filter((g) => g.labelsDisagree).length,
        largestGroup: Math.max(0, ...a.groups.map((g) => g.members.length)),
        list: a.groups.map((g) => ({ ...g, members: g.members.map((m) => relative(process.cwd(), m)) })),
      };
      if (o.out) await writeFileAtomic(o.out, JSON.stringify(report, null, 2) + '\n');
      if (o.json) {
        console.log(JSON.stringify(report, null, 2));
        return;
      }
      if (o.histogram) console.log(similarityHistogram(a.scored, a.similarity) + '\n');
      console.log(
        `${a.images} images: ${report.groups} groups of the same eye holding ${report.imagesInGroups} images ` +
          `(largest ${report.largestGroup}); ${report.crossFolderGroups} across folders, ` +
          `${report.labelDisagreementGroups} with disagreeing labels (similarity threshold ${a.similarity})`,
      );
      const show = (title: string, gs: DatasetGroup[]): void => {
        if (gs.length === 0) return;
        console.log(`\n${title} (${gs.length}):`);
        for (const g of gs) console.log(groupLine(g));
      };
      if (report.exactPairs.length > 0) {
        console.log(`\nbyte-identical copies (${report.exactPairs.length} pairs):`);
        for (const [x, y] of report.exactPairs) console.log(`  ${x} = ${y}`);
      }
      show('groups across folders', a.groups.filter((g) => g.crossFolder));
      show('groups whose labels disagree', a.groups.filter((g) => g.labelsDisagree));
      show('other groups', a.groups.filter((g) => !g.crossFolder && !g.labelsDisagree));
    });

  addUnlabelledOption(
    data
      .command('split')
      .description('write a train/validation/test split: iterative stratification over near-duplicate groups')
      .argument('<csv>', 'label CSV')
      .argument('<images-dir>', 'folder of the labelled images')
      .requiredOption('-o, --out <file>', 'split file to write (JSON)'),
    '<dir>',
    'unlabelled folder: its repeats of labelled images are recorded (self-learning must skip those of validation/test)',
  )
    .option('--seed <n>', 'random seed', numberOption('--seed', integerIn(0, 2 ** 31 - 1)), SPLIT_DEFAULTS.seed)
    .addOption(
      new Option('--ratios <r>', 'train,validation,test proportions')
        .argParser(parseRatios)
        .default({ ...SPLIT_DEFAULTS.ratios }, PART_NAMES.map((p) => Math.round(100 * SPLIT_DEFAULTS.ratios[p])).join(',')),
    )
    .option('--similarity <s>', 'near-duplicate threshold (see `fundus data duplicates`)', numberOption('--similarity', numberIn(0, 1, true)), SPLIT_DEFAULTS.similarity)
    .option('--no-dedup', 'split images independently (not recommended: repeats of one eye leak across parts)')
    .option('--json', 'print the split counts as JSON')
    .action(
      async (
        csv: string,
        imagesDir: string,
        o: { out: string; unlabelled?: string; unlabeled?: string; seed: number; ratios: Record<PartName, number>; similarity: number; dedup: boolean; json?: boolean },
      ) => {
        const ds = await readDataset(csv, imagesDir);
        const split = await splitDataset(ds, csv, {
          seed: o.seed,
          ratios: o.ratios,
          similarity: o.similarity,
          dedup: o.dedup,
          unlabelled: unlabelledOf(o),
          progressLabel: 'fingerprinting',
        });
        await writeFileAtomic(o.out, JSON.stringify(split, null, 2) + '\n');
        if (o.json) {
          console.log(JSON.stringify({ out: o.out, counts: split.counts, groups: split.groups.length, unlabeledLinks: Object.keys(split.unlabeledLinks).length }, null, 2));
          return;
        }
        console.log(`wrote ${o.out}: seed ${o.seed}, ${split.groups.length} near-duplicate groups kept whole`);
        console.log(countsTable(ds.classes, split.counts));
        const linkParts = Object.values(split.unlabeledLinks);
        if (linkParts.length > 0) {
          console.log(
            `unlabelled images repeating a labelled one: ${linkParts.length} ` +
              `(${PART_NAMES.map((p) => `${linkParts.filter((x) => x === p).length} ${p}`).join(', ')})`,
          );
        }
      },
    );

  data
    .command('preview')
    .description('write a PNG grid of images before and after preprocessing and augmentation')
    .argument('<images...>', 'image files, or one folder (its first --count images)')
    .requiredOption('-o, --out <file>', 'PNG to write')
    .option('--count <n>', 'images taken from a folder', numberOption('--count', integerIn(1, 64)), 4)
    .option('--size <n>', 'network input side', numberOption('--size', integerIn(16, 1024)), DEFAULT_PREPROCESS.size)
    .addOption(new Option('--channels <c>', 'green or rgb').choices(['green', 'rgb']).default(DEFAULT_PREPROCESS.channels))
    .option('--clahe', 'contrast-limited adaptive histogram equalisation')
    .option('--no-crop', 'do not crop to the fundus disc')
    .option('--augmentations <n>', 'augmented variants per image', numberOption('--augmentations', integerIn(0, 8)), 3)
    .option('--seed <n>', 'augmentation seed', numberOption('--seed', integerIn(0, 2 ** 31 - 1)), 1)
    .option('--mask <shape>', "camera-invariant preprocessing: 'circle' blacks out everything outside a standard circle")
    .option('--local-mean [sigma]', "camera-invariant preprocessing: Graham's local mean subtraction (sigma as a fraction of the side, default 1/60)")
    .option('--camera-augment', 'show the augmented variants with camera augmentation too (blur, colour temperature, noise, resampling, JPEG)')
    .action(
      async (
        images: string[],
        o: {
          out: string;
          count: number;
          size: number;
          channels: 'green' | 'rgb';
          clahe?: boolean;
          crop: boolean;
          augmentations: number;
          seed: number;
          mask?: string;
          localMean?: string | true;
          cameraAugment?: boolean;
        },
      ) => {
        let paths = images;
        if (images.length === 1 && (await stat(images[0]).catch(() => undefined))?.isDirectory()) {
          paths = (await collectImages(images)).slice(0, o.count);
        }
        const settings: PreprocessSettings = validatePreprocessSettings({
          ...DEFAULT_PREPROCESS,
          size: o.size,
          channels: o.channels,
          clahe: Boolean(o.clahe),
          crop: o.crop,
          ...(o.mask !== undefined ? { mask: o.mask as PreprocessSettings['mask'] } : {}),
          ...(o.localMean !== undefined ? { localMean: { sigma: o.localMean === true ? 1 / 60 : Number(o.localMean) } } : {}),
        });
        const png = await renderPreview(paths, {
          settings,
          augmentations: o.augmentations,
          seed: o.seed,
          ...(o.cameraAugment ? { augment: { ...CAMERA_AUGMENT } } : {}),
        });
        await writeFileAtomic(o.out, png);
        console.log(`wrote ${o.out} (${paths.length} images; settings ${JSON.stringify(settings)})`);
      },
    );
}
