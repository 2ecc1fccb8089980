import { Option, type Command } from 'commander';
import { integerIn, NON_NEGATIVE_NUMBER, numberIn, optionalNumber, POSITIVE_INTEGER } from '../util/cli-options.js';
import { readFile, writeFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { IMAGE_EXTENSIONS, collectImages } from '../data/image-files.js';
import { initEngine } from '../engine/index.js';
import { enclosingModelDir, loadModel } from '../models/io.js';
import type { TestTimeAugmentation } from '../models/metadata.js';
import { writeDirAtomic } from '../util/atomic.js';
import { InputError } from '../util/errors.js';
import { folderEntries, isInside, someNames } from '../util/owned.js';
import { progress } from '../util/progress.js';
import { CAM_METHODS, DEFAULT_CAM_METHOD, isCamMethod, type CamMethod } from './cam.js';
import { defaultExplanation } from './explainer.js';
import { formatFaithfulnessTable } from './faithfulness.js';
import { renderGallery } from './gallery.js';
import { DEFAULT_LESION_CLASS, DEFAULT_TOLERANCE_PX, formatLocalisationTable, readLesions, type LocalisationJob } from './localisation.js';
import { COLORMAPS, type Colormap } from './overlay.js';
import { parseClasses, runExplain, type ExplainManifest, type RawFormat } from './run.js';
import { reportSkipped } from '../util/skipped.js';

export interface ExplainCliOptions {
  out: string;
  classes?: string;
  method?: string;
  layer?: string;
  tta?: TestTimeAugmentation;
  colormap?: string;
  alpha?: string;
  raw?: string;
  faithfulness?: boolean;
  steps?: string;
  random?: string;
  batchSize?: string;
  /** Commander's `--no-disc-mask`: false paints the whole crop square. */
  discMask?: boolean;
  lesions?: string;
  lesionClass?: string;
  lesionTypes?: string;
  tolerance?: string;
  resamples?: string;
  quiet?: boolean;
  /** Commander's `--no-gradability-check`: false explains photographs the gradability gate refuses. */
  gradabilityCheck?: boolean;
}

const MANIFEST = 'explain.json';

function parseMethods(spec: string): CamMethod[] {
  if (spec === 'all') return [...CAM_METHODS];
  const methods = spec.split(',').map((s) => s.trim().toLowerCase());
  for (const m of methods) {
    if (!isCamMethod(m)) throw new InputError(`--method: unknown method "${m}" (known: ${CAM_METHODS.join(', ')}, all)`);
  }
  return [...new Set(methods)] as CamMethod[];
}

function parseRaw(spec: string | undefined): RawFormat[] {
  if (spec === undefined) return ['npy'];
  if (spec === 'none') return [];
  const formats = spec.split(',').map((s) => s.trim());
  for (const f of formats) if (f !== 'npy' && f !== 'png16') throw new InputError(`--raw: unknown format "${f}" (npy, png16, none)`);
  return formats as RawFormat[];
}

/** What `explain` writes besides the files its manifest lists (overlays and raw maps). */
const OWN_FILES = new Set([MANIFEST, 'index.html', 'faithfulness.txt', 'localisation.md']);

/** The files an earlier explain output's manifest lists, or undefined when explain.json is not an explain manifest. */
async function manifestFiles(out: string): Promise<Set<string> | undefined> {
  let m: Partial<ExplainManifest>;
  try {
    m = JSON.parse(await readFile(join(out, MANIFEST), 'utf8')) as Partial<ExplainManifest>;
  } catch {
    return undefined;
  }
  if (!m || typeof m !== 'object' || !Array.isArray(m.entries) || !Array.isArray(m.images)) return undefined;
  const files = new Set(OWN_FILES);
  for (const e of m.entries) {
    if (typeof e?.overlay === 'string') files.add(e.overlay);
    if (Array.isArray(e?.raw)) for (const r of e.raw) if (typeof r === 'string') files.add(r);
  }
  for (const im of m.images) if (typeof im?.photo === 'string') files.add(im.photo);
  return files;
}

/**
 * Refuses to replace anything but nothing, an empty folder, or an earlier `fundus explain` output (explain.json)
 * holding only the files that explain wrote: replacing the folder deletes everything in it.
 */
async function checkOutDir(out: string): Promise<void> {
  const entries = await folderEntries(out, '--out');
  if (!entries || entries.length === 0) return;
  if (!entries.includes(MANIFEST)) {
    throw new InputError(`--out is a non-empty folder that is not an earlier explain output (no ${MANIFEST}); refusing to replace it`, {
      file: out,
    });
  }
  const own = await manifestFiles(out);
  if (!own) throw new InputError(`--out holds a ${MANIFEST} that is not an explain manifest; refusing to replace the folder`, { file: out });
  const foreign = entries.filter((n) => !own.has(n));
  if (foreign.length > 0) {
    throw new InputError(
      `--out is an earlier explain output that also holds files explain did not write (${someNames(foreign)}); the folder is replaced as a whole: move them out first`,
      { file: out },
    );
  }
}

/** Refuses an --out inside a model folder, or one that holds an input (explain would read its own output, then replace it). */
async function checkOutPlace(out: string, inputs: string[]): Promise<void> {
  const model = await enclosingModelDir(out);
  if (model) throw new InputError(`--out lies inside the model folder ${model}; write explanations elsewhere`, { file: out });
  for (const input of inputs) {
    if (isInside(input, out)) {
      throw new InputError(`the input ${input} lies inside --out: explain would read its own output, and the folder is replaced; choose another --out`, {
        file: out,
      });
    }
  }
}

export async function explainCommand(modelDir: string, inputs: string[], opts: ExplainCliOptions): Promise<void> {
  if (!opts.out) throw new InputError('--out <dir> is required');
  // Checked before anything is read; without --method, the model's own default (known once it is loaded).
  const namedMethods = opts.method === undefined ? undefined : parseMethods(opts.method);
  const colormap = (opts.colormap ?? 'jet') as Colormap;
  if (!COLORMAPS.includes(colormap)) throw new InputError(`--colormap must be one of ${COLORMAPS.join(', ')} (got '${opts.colormap}')`);
  const alpha = optionalNumber(opts.alpha, '--alpha', numberIn(0, 1), 0.45);
  const steps = optionalNumber(opts.steps, '--steps', integerIn(2, 1000), 20);
  const batchSize = optionalNumber(opts.batchSize, '--batch-size', POSITIVE_INTEGER, 8);
  const raw = parseRaw(opts.raw);
  const random = opts.random ?? 'cells';
  if (random !== 'cells' && random !== 'pixels') throw new InputError(`--random must be cells or pixels (got '${random}')`);
  const out = resolve(opts.out);
  await checkOutPlace(out, inputs);
  await checkOutDir(out);
  const tolerance = optionalNumber(opts.tolerance, '--tolerance', { ...NON_NEGATIVE_NUMBER, what: 'a number of pixels, 0 or more' }, DEFAULT_TOLERANCE_PX);
  const resamples = optionalNumber(opts.resamples, '--resamples', integerIn(0, 100_000), 1000);
  const lesionOnly = ['lesionClass', 'lesionTypes', 'tolerance', 'resamples'] as const;
  if (!opts.lesions) {
    const given = lesionOnly.find((k) => opts[k] !== undefined);
    if (given) throw new InputError(`--${given.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())} needs --lesions <lesions.csv>`);
  }
  const lesions = opts.lesions
    ? await readLesions(opts.lesions, opts.lesionTypes === undefined ? {} : { types: opts.lesionTypes.split(',').map((t) => t.trim()).filter(Boolean) })
    : undefined;
  // Overlays of an earlier run into --out are never explained again (a folder above --out is walked without them).
  const images = (await collectImages(inputs)).map((p) => resolve(p)).filter((p) => !isInside(p, out));
  if (images.length === 0) throw new InputError('every input photograph lies inside --out', { file: out });
  let localisation: LocalisationJob | undefined;
  if (lesions) {
    const withBoxes = images.filter((p) => lesions.byImage.has(basename(p)));
    if (withBoxes.length === 0) {
      const example = [...lesions.byImage.keys()][0];
      throw new InputError(
        `none of the ${images.length} input photographs has ${lesions.kept.join('/') || 'lesion'} boxes in this file (boxes are matched by file name${example ? `, e.g. ${example}` : ''})`,
        { file: lesions.file },
      );
    }
    localisation = { lesions, lesionClass: opts.lesionClass ?? DEFAULT_LESION_CLASS[lesions.format], tolerancePx: tolerance, resamples };
  }
  const engine = await initEngine();
  const model = await loadModel(modelDir);
  const methods = namedMethods ?? [defaultExplanation(model).method];
  if (localisation && !model.metadata.classes.includes(localisation.lesionClass)) {
    throw new InputError(`--lesion-class: the model has no class "${localisation.lesionClass}" (classes: ${model.metadata.classes.join(', ')})`);
  }
  // With boxes and no --classes: the lesion class, on every photograph, whatever the model predicts (so that the
  // score does not depend on the prediction).
  const classes =
    localisation && opts.classes === undefined
      ? parseClasses(localisation.lesionClass, model.metadata.classes)
      : parseClasses(opts.classes, model.metadata.classes);

  const bar = progress(`explain (${engine.backend})`, images.length, { quiet: opts.quiet });
  let manifest: Awaited<ReturnType<typeof runExplain>> | undefined;
  let done = 0;
  try {
    await writeDirAtomic(out, async (tmp) => {
      manifest = await runExplain({
        model,
        images,
        classes,
        methods,
        outDir: tmp,
        layer: opts.layer,
        ...(opts.tta ? { tta: opts.tta } : {}),
        colormap,
        alpha,
        raw,
        faithfulness: opts.faithfulness ? { steps, random } : false,
        batchSize,
        discMask: opts.discMask !== false,
        localisation,
        gradabilityCheck: opts.gradabilityCheck !== false,
        onProgress: (n) => {
          bar.tick(n - done);
          done = n;
        },
      });
      await writeFile(join(tmp, MANIFEST), JSON.stringify(manifest, null, 2) + '\n');
      await writeFile(join(tmp, 'index.html'), renderGallery(manifest));
      if (manifest.faithfulness) await writeFile(join(tmp, 'faithfulness.txt'), formatFaithfulnessTable(manifest.faithfulness) + '\n');
      if (manifest.localisation) await writeFile(join(tmp, 'localisation.md'), formatLocalisationTable(manifest.localisation) + '\n');
      // Again just before the swap: a file put into --out while explain ran would be deleted with the old folder.
      await checkOutDir(out);
    });
  } finally {
    bar.stop();
  }
  const m = manifest as unknown as NonNullable<typeof manifest>;
  reportSkipped('explain', m.skipped);
  if (!opts.quiet) {
    const skipped = m.skipped.length ? `; ${m.skipped.length} skipped (listed above and in explain.json)` : '';
    console.log(`${m.entries.length} heatmaps of ${images.length - m.skipped.length} images (layer ${m.layer}) in ${out}${skipped}; gallery: ${join(out, 'index.html')}`);
    if (m.faithfulness) console.log(formatFaithfulnessTable(m.faithfulness));
    if (m.localisation) console.log('\n' + formatLocalisationTable(m.localisation));
  }
}

export function register(program: Command): void {
  program
    .command('explain')
    .description(
      'Grad-CAM family heatmaps: where in each photograph the model found each class, overlaid on the original photo, ' +
        'with raw heatmaps, an HTML gallery, optional faithfulness scores and, with --lesions, how well the maps point at expert lesion boxes.',
    )
    .argument('<model-dir>', 'a fundus model directory (model.json, weights.bin, fundus.json)')
    .argument('<images...>', `image files or folders (searched recursively for ${IMAGE_EXTENSIONS.join(' ')})`)
    .requiredOption(
      '-o, --out <dir>',
      'output folder: overlays, raw heatmaps, explain.json and index.html (replaced atomically; only a new or empty folder, or an earlier explain output holding nothing else)',
    )
    .option(
      '-c, --classes <list>',
      "'predicted' (default: classes at or above the model's thresholds, plus the evidence against 'normal' where it is predicted absent), 'all', or comma-separated class names/indices",
    )
    .option(
      '-m, --method <list>',
      `comma-separated CAM methods, or 'all': ${CAM_METHODS.join(', ')} (default: the model's own, as its fundus.json "explanation" records it, else ${DEFAULT_CAM_METHOD})`,
    )
    .option(
      '--layer <names>',
      'layer to explain (default: the model\'s own, as its fundus.json "explanation" records it, else the last convolutional block at stride 8 or finer, found automatically, e.g. block_5_add in MobileNetV2); ' +
        'several joined by commas explain at each and fuse the maps (LayerCAM fusion: tanh-scaled, max at the finest grid)',
    )
    .addOption(
      new Option('--tta <kind>', "test-time augmentation to explain through (default: the model's own; hflip averages each photo's map with its mirror image's, mirrored back)").choices(['none', 'hflip']),
    )
    .option('--colormap <name>', `overlay colormap: ${COLORMAPS.join(', ')}`, 'jet')
    .option('--alpha <n>', 'heatmap opacity over the photo, 0..1', '0.45')
    .option('--raw <formats>', "raw heatmaps to write: npy (unnormalised CAM, float32), png16 (normalised, on the photo's pixel grid), both comma-separated, or none", 'npy')
    .option('--faithfulness', 'score every heatmap by deletion/insertion against a random order, and print the table per method')
    .option('--random <kind>', "faithfulness yardstick: 'cells' (random heatmaps at the layer's resolution) or 'pixels' (independent random pixels)", 'cells')
    .option('--steps <n>', 'deletion/insertion steps', '20')
    .option('--batch-size <n>', 'images explained together', '8')
    .option('--no-disc-mask', 'colour the whole crop square, black border included (default: only the fundus disc)')
    .option(
      '--lesions <csv>',
      'lesion boxes in pixels of the given photographs (codras: filename,lesion,x0,y0,x1,y1; heimed: filename,lesion,x,y,x0,y0,x1,y1,area), matched by file name: ' +
        'scores every map by the pointing game and the share of its energy inside the boxes, beside a centre prior and a uniform map over the disc',
    )
    .option('--lesion-class <name>', "the class the boxes are ground truth for, explained on every photograph unless --classes says otherwise (default: 'diabetic retinopathy' for codras, 'macular edema' for heimed)")
    .option('--lesion-types <list>', 'comma-separated lesion types to keep (default: all for codras, Exudate for heimed)')
    .option('--tolerance <px>', `pointing game: a maximum this close to a box (photo pixels) counts as a hit (default ${DEFAULT_TOLERANCE_PX})`)
    .option('--resamples <n>', 'bootstrap resamples over photographs for the localisation intervals (default 1000)')
    .option('-q, --quiet', 'no progress bar or summary')
    .option('--no-gradability-check', 'explain photographs the gradability gate refuses (not a fundus photograph, too dark, ...; docs/gradability.md): for research only')
    .action(async (modelDir: string, images: string[], opts: ExplainCliOptions) => {
      await explainCommand(modelDir, images, opts);
    });
}
