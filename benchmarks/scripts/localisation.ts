// How well a model's heatmaps point at expert lesion boxes (issue 17): the codras photographs with lesion boxes
// (IDRiD, diabetic retinopathy; ../shared/data/external/codras), scored for the diabetic retinopathy class by the
// pointing game and the share of the map's energy inside the boxes, beside a centre prior and a uniform map over the
// fundus disc, with bootstrap intervals over photographs. Prints a Markdown table. The photographs never leave ../shared.
//
// Usage: tsx benchmarks/scripts/localisation.ts [<model-dir>] [--methods gradcam,layercam] [--limit 20]
//          [--datasets datasets/train.json --part test] [--names list.txt] [--lesion-types hard_exudates]
//          [--tolerance 15] [--layer NAME] [--resamples 1000] [--batch-size 4] [--out runs/localisation]
//          [--tta none|hflip] (default: the model's own) [--record | --record-class]
//          [--faithfulness] (also deletion/insertion, 10 steps: to choose a default by both)
//
// A model trained on codras photographs must be scored on photographs it did not train on: `--datasets` and `--part`
// keep only the codras photographs of that part of the datasets file's split (names `codras/0001.jpg`), `--names`
// only those listed in a file (one name per line, with or without the `codras/` prefix), and the codras photographs
// in the train or validation part of the model's own split.json are always left out; with `--part validation`, only
// those of its train part (the validation photographs score settings to choose between, never results to report).
// `--limit` picks that many photographs evenly spaced over the sorted names (0: all). `--out` keeps the overlays,
// explain.json and the gallery.
//
// `--record` writes the model's default heatmap into its fundus.json (`explanation`): the method of this run that
// localises best by `bestLocalisingMethod` (the highest energy ratio to the uniform disc whose interval lies above the
// centre prior's), at this run's layer, with the numbers as `chosenBy`. It compares the methods of one run, i.e. of
// one layer: run each layer, and record with the layer that won. No method qualifying records nothing (exit 1).
// Recording changes the fundus.json's sha256, the model's identity in prediction files and queues.
//
// `--record-class` records this run's layer for the diabetic retinopathy class alone (`explanation.classes`), e.g.
// `lesion_map` for a model with a lesion map head, leaving the other classes at the model's default layer. The method
// stays the model's own: the run's best method must be the one its fundus.json records (exit 1 otherwise).
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { readDatasets } from '../../src/data/datasets.js';
import { initEngine } from '../../src/engine/index.js';
import { CAM_METHODS, isCamMethod, type CamMethod } from '../../src/explain/cam.js';
import { formatFaithfulnessTable } from '../../src/explain/faithfulness.js';
import { explanationTta } from '../../src/explain/explainer.js';
import { renderGallery } from '../../src/explain/gallery.js';
import { DEFAULT_TOLERANCE_PX, bestLocalisingMethod, describeLocalisation, formatLocalisationTable, readLesions } from '../../src/explain/localisation.js';
import { parseClasses, runExplain } from '../../src/explain/run.js';
import { loadModel, readMetadata, writeMetadata } from '../../src/models/io.js';
import type { TestTimeAugmentation } from '../../src/models/metadata.js';
import { writeDirAtomic } from '../../src/util/atomic.js';

const args = process.argv.slice(2);
const flag = (name: string): string | undefined => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
};
const positional = args.filter((a, i) => !a.startsWith('--') && (i === 0 || !args[i - 1].startsWith('--')));
const modelDir = positional[0] ?? 'models/default';
const external = process.env.EXTERNAL ?? join(import.meta.dirname, '..', '..', '..', 'shared', 'data', 'external');
const codras = join(external, 'codras');
const methods = (flag('methods') ?? 'gradcam,layercam').split(',').map((m) => m.trim());
for (const m of methods) if (!isCamMethod(m)) throw new Error(`unknown method ${m} (known: ${CAM_METHODS.join(', ')})`);
const limit = Number(flag('limit') ?? '20');
const tolerance = Number(flag('tolerance') ?? String(DEFAULT_TOLERANCE_PX));
const resamples = Number(flag('resamples') ?? '1000');
const lesionClass = 'diabetic retinopathy';
const tta = flag('tta') as TestTimeAugmentation | undefined;
if (tta !== undefined && tta !== 'none' && tta !== 'hflip') throw new Error(`--tta ${tta}: expected none or hflip`);
if ((args.includes('--record') || args.includes('--record-class')) && flag('layer') === undefined) {
  throw new Error('--record and --record-class record the layer of the run: name it with --layer');
}

/** Codras names as listed: `codras/0001.jpg` -> `0001.jpg`; names of other sources -> undefined. */
const codrasName = (n: string, bareOk: boolean) => (n.startsWith('codras/') ? n.slice('codras/'.length) : bareOk && !n.includes('/') ? n : undefined);

// The photographs with boxes (images.csv has_lesion_boxes = 1, and rows in lesions.csv).
const lesions = await readLesions(join(codras, 'lesions.csv'), flag('lesion-types') ? { types: flag('lesion-types')!.split(',') } : {});
const imagesCsv = (await readFile(join(codras, 'images.csv'), 'utf8')).trim().split(/\r?\n/);
const head = imagesCsv[0].split(',');
const [fi, hi] = [head.indexOf('filename'), head.indexOf('has_lesion_boxes')];
let names = imagesCsv
  .slice(1)
  .map((l) => l.split(','))
  .filter((r) => r[hi] === '1' && lesions.byImage.has(r[fi]))
  .map((r) => r[fi])
  .sort();
const notes: string[] = [`${names.length} codras photographs with ${lesions.kept.join('/')} boxes`];

if (flag('datasets')) {
  const part = (flag('part') ?? 'test') as 'train' | 'validation' | 'test';
  const data = await readDatasets(flag('datasets')!);
  const source = data.sources.find((s) => s.name === 'codras');
  if (!source) throw new Error(`${flag('datasets')} has no source named codras`);
  const keep = new Set(source.parts[part].map((n) => codrasName(n, false)).filter((n): n is string => !!n));
  names = names.filter((n) => keep.has(n));
  notes.push(`${names.length} in the ${part} part of ${flag('datasets')}`);
}
if (flag('names')) {
  const listed = new Set(
    (await readFile(flag('names')!, 'utf8'))
      .split(/\r?\n/)
      .map((l) => l.trim())
      .filter(Boolean)
      .map((n) => codrasName(n, true) ?? n),
  );
  names = names.filter((n) => listed.has(n));
  notes.push(`${names.length} listed in ${flag('names')}`);
}
// Never score photographs the model trained or chose its thresholds on.
try {
  const split = JSON.parse(await readFile(join(modelDir, 'split.json'), 'utf8')) as {
    source?: { csv?: string };
    parts?: Record<string, string[]>;
  };
  const bare = (split.source?.csv ?? '').includes('codras');
  // `--part validation` asks for the photographs that chose the model's epoch and thresholds, to choose a setting
  // (e.g. --tta) without touching the test part; only the training photographs stay out then.
  const choosing = flag('part') === 'validation';
  const seen = new Set([...(split.parts?.train ?? []), ...(choosing ? [] : (split.parts?.validation ?? []))].map((n) => codrasName(n, bare)).filter(Boolean));
  const before = names.length;
  names = names.filter((n) => !seen.has(n));
  if (before !== names.length) notes.push(`${before - names.length} left out: in the model's train${choosing ? '' : ' or validation'} part`);
} catch {
  notes.push("the model has no readable split.json: make sure it did not train on these photographs");
}
if (limit > 0 && names.length > limit) {
  const step = names.length / limit;
  names = Array.from({ length: limit }, (_, i) => names[Math.floor(i * step)]);
  notes.push(`${limit} picked evenly over the sorted names`);
}
if (names.length === 0) throw new Error(`no photographs left to score (${notes.join('; ')})`);

await initEngine();
const model = await loadModel(modelDir);
const keepOut = flag('out');
const dir = keepOut ? undefined : await mkdtemp(join(tmpdir(), 'fundus-localisation-'));
const t0 = performance.now();
let manifest: Awaited<ReturnType<typeof runExplain>> | undefined;
const fill = async (outDir: string) => {
  manifest = await runExplain({
    model,
    images: names.map((n) => join(codras, 'images', n)),
    classes: parseClasses(lesionClass, model.metadata.classes),
    methods: methods as CamMethod[],
    outDir,
    layer: flag('layer'),
    ...(tta ? { tta } : {}),
    raw: [],
    batchSize: Number(flag('batch-size') ?? '4'),
    localisation: { lesions, lesionClass, tolerancePx: tolerance, resamples },
    faithfulness: args.includes('--faithfulness') ? { steps: 10, seed: 1 } : false,
  });
  await writeFile(join(outDir, 'explain.json'), JSON.stringify(manifest, null, 2) + '\n');
  await writeFile(join(outDir, 'index.html'), renderGallery(manifest));
  await writeFile(join(outDir, 'localisation.md'), formatLocalisationTable(manifest.localisation!) + '\n');
};
if (keepOut) await writeDirAtomic(resolve(keepOut), fill);
else {
  await fill(dir!);
  await rm(dir!, { recursive: true, force: true });
}
const m = manifest!;
console.log(`Model ${modelDir} (${model.metadata.architecture}, layer ${m.layer}); ${notes.join('; ')}.`);
console.log(`Photographs: ${names.map((n) => basename(n, '.jpg')).join(' ')}`);
console.log(`${((performance.now() - t0) / 1000).toFixed(1)} s for ${m.entries.length} maps.\n`);
console.log(formatLocalisationTable(m.localisation!));
if (m.faithfulness) console.log(`\n${formatFaithfulnessTable(m.faithfulness)}`);
if (keepOut) console.log(`\nOverlays and gallery: ${join(resolve(keepOut), 'index.html')}`);
const recordFlag = args.includes('--record-class') ? '--record-class' : args.includes('--record') ? '--record' : undefined;
if (recordFlag) {
  const report = m.localisation!;
  const best = bestLocalisingMethod(report);
  const meta = await readMetadata(modelDir);
  const forClass = recordFlag === '--record-class';
  const noBest = 'no method puts more energy in the boxes than the centre prior beyond its interval';
  const refusal =
    forClass && !meta.explanation ? 'the model records no default heatmap (record one with --record first)'
    : !best ? noBest
    : forClass && best.method !== meta.explanation!.method ? `the best method here is ${best.method}, the model's is ${meta.explanation!.method}`
    : tta !== undefined && tta !== explanationTta(meta) ? `--tta ${tta} is not how the model's maps are made (through its own, ${explanationTta(meta)})`
    : undefined;
  if (refusal || !best) {
    console.error(`\n${recordFlag}: ${refusal}; ${modelDir}/fundus.json left as it was`);
    process.exitCode = 1;
  } else {
    const command = ['benchmarks/scripts/localisation.ts', ...args.filter((a) => a !== recordFlag)].join(' ');
    const mirrored = explanationTta(meta) === 'hflip' ? ', maps averaged with the mirror image\'s as the model predicts' : '';
    const chosenBy = `${command} (${new Date().toISOString().slice(0, 10)}${mirrored}): ${describeLocalisation(best, report)}`;
    // --record: the classes with a layer of their own keep it (they are explained with the model's method, now this one).
    const explanation = forClass
      ? { ...meta.explanation!, classes: { ...meta.explanation!.classes, [lesionClass]: { layer: m.layer, chosenBy } } }
      : { method: best.method, layer: m.layer, chosenBy, ...(meta.explanation?.classes ? { classes: meta.explanation.classes } : {}) };
    await writeMetadata(modelDir, { ...meta, explanation });
    console.log(`\nRecorded in ${join(modelDir, 'fundus.json')}: ${forClass ? lesionClass : best.method} at ${m.layer} (${chosenBy})`);
  }
}
