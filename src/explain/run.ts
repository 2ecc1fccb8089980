import { writeFile } from 'node:fs/promises';
import sharp from 'sharp';
import { basename, join } from 'node:path';
import { decodeRgb, type CropGeometry, type PreprocessedImage } from '../data/preprocess.js';
import { seededRandom } from '../data/random.js';
import { outputStem } from '../data/dicom.js';
import type { FundusModel } from '../models/io.js';
import type { TestTimeAugmentation } from '../models/metadata.js';
import { Predictor } from '../models/predictor.js';
import { InputError } from '../util/errors.js';
import type { CamMethod, CamResult, CamTarget } from './cam.js';
import { classExplainer, explainerFor, explanationTta, layerOfClass } from './explainer.js';
import {
  blurImage,
  heatmapScore,
  randomScore,
  summarize,
  type FaithfulnessOptions,
  type FaithfulnessRow,
  type FaithfulnessScore,
} from './faithfulness.js';
import { discMask } from './disc.js';
import { heatmapToNpy } from './heatmap.js';
import {
  baselineScores,
  checkBoxes,
  localisationGrid,
  scoreHeatmap,
  summarizeLocalisation,
  type BaselineScores,
  type EntryLocalisation,
  type ImageLocalisation,
  type LesionBox,
  type LocalisationJob,
  type LocalisationReport,
  type ScoredMap,
} from './localisation.js';
import { heatmapToPng16, renderOverlayRgb, type Colormap } from './overlay.js';
import type { SkippedPhoto } from '../util/skipped.js';

/** Which classes to explain: `predicted` (positives at the model's thresholds, plus evidence against `normal` where it is predicted absent), `all`, or a list. */
export type ClassSelection = { kind: 'predicted' } | { kind: 'all' } | { kind: 'list'; classes: number[] };

export type RawFormat = 'npy' | 'png16';

export interface ExplainJob {
  model: FundusModel;
  /** Image files (already expanded from folders). */
  images: string[];
  classes: ClassSelection;
  methods: CamMethod[];
  /** Directory to fill (the caller makes it atomic). */
  outDir: string;
  /** The target layer(s); absent: the model's own default (`defaultExplanation`), else the automatic choice. */
  layer?: string;
  /** Explain through this test-time augmentation instead of the model's own (`CamOptions.tta`). */
  tta?: TestTimeAugmentation;
  colormap?: Colormap;
  alpha?: number;
  raw?: RawFormat[];
  /** Per-heatmap deletion/insertion scores and the per-method table. */
  faithfulness?: FaithfulnessOptions | false;
  /** Images preprocessed and explained together. */
  batchSize?: number;
  /** Paint overlays (and the 16-bit maps) only inside the fundus disc (default true); false: the whole crop square. */
  discMask?: boolean;
  /** Score every map of a photograph with lesion boxes against them (pointing game, energy share, baselines). */
  localisation?: LocalisationJob;
  /** Refuse photographs the gradability gate rejects (listed in `skipped` with the reasons); default true. */
  gradabilityCheck?: boolean;
  onProgress?: (done: number) => void;
}

/** One written heatmap, as listed in `explain.json` and the gallery. */
export interface ExplainEntry {
  image: string;
  className: string;
  /** `for`: evidence for the class; `against`: evidence against it (normal predicted absent). */
  direction: 'for' | 'against';
  method: CamMethod;
  /** The layer the map was made at (the manifest's `layer`, or the class's own where the model records one). */
  layer: string;
  probability: number;
  threshold: number;
  logit: number;
  overlay: string;
  raw: string[];
  faithfulness?: { score: FaithfulnessScore; random: FaithfulnessScore };
  /** Against the photograph's lesion boxes, when `--lesions` gave it some. */
  localisation?: EntryLocalisation;
}

export interface ExplainManifest {
  model: string;
  layer: string;
  /** `hflip`: each map is the mean of the photo's and its mirror image's (mirrored back), as the model predicts. */
  tta: TestTimeAugmentation;
  classes: string[];
  thresholds: number[];
  methods: CamMethod[];
  colormap: Colormap;
  /** Overlays and 16-bit maps are painted inside the fundus disc only (the `.npy` raw maps never are masked). */
  discMask: boolean;
  /** `photo`: the photograph without overlay (a JPEG in the output folder), to compare the maps with. */
  images: { path: string; photo: string; geometry: CropGeometry; probabilities: number[]; localisation?: ImageLocalisation }[];
  entries: ExplainEntry[];
  /** Photographs not explained: unreadable, or refused by the gradability gate (`reason` says which and why). */
  skipped: SkippedPhoto[];
  faithfulness?: FaithfulnessRow[];
  localisation?: LocalisationReport;
}

/** Parses `--classes`: `predicted`, `all`, or comma-separated class names or indices of the model. */
export function parseClasses(spec: string | undefined, classes: string[]): ClassSelection {
  if (spec === undefined || spec === 'predicted') return { kind: 'predicted' };
  if (spec === 'all') return { kind: 'all' };
  const picked = spec.split(',').map((s) => {
    const name = s.trim();
    const byName = classes.indexOf(name);
    if (byName >= 0) return byName;
    const byIndex = /^\d+$/.test(name) ? Number(name) : -1;
    if (byIndex >= 0 && byIndex < classes.length) return byIndex;
    throw new InputError(`--classes: the model has no class "${name}" (classes: ${classes.join(', ')})`);
  });
  return { kind: 'list', classes: [...new Set(picked)] };
}

/** The targets of one image given its probabilities. */
export function chooseTargets(sel: ClassSelection, probs: ArrayLike<number>, model: FundusModel, image: number): CamTarget[] {
  const { classes, thresholds } = model.metadata;
  if (sel.kind === 'all') return classes.map((_, c) => ({ image, classIndex: c }));
  if (sel.kind === 'list') return sel.classes.map((c) => ({ image, classIndex: c }));
  const targets: CamTarget[] = [];
  classes.forEach((name, c) => {
    const positive = probs[c] >= thresholds[c];
    if (positive) targets.push({ image, classIndex: c });
    else if (name === 'normal') targets.push({ image, classIndex: c, negate: true });
  });
  return targets;
}

export function slug(s: string): string {
  return s.toLowerCase().replace(/\+/g, 'p').replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');
}

/** Unique output stems (see outputStem): numbered when two inputs share a name, a DICOM frame's saying its frame. */
function stems(paths: string[]): string[] {
  const used = new Set<string>();
  return paths.map((p) => {
    let n = 1;
    let stem = outputStem(p, n, slug);
    while (used.has(stem)) stem = outputStem(p, ++n, slug);
    used.add(stem);
    return stem;
  });
}

/** The input photographs' boxes by index (matched by file name); InputError when two inputs with boxes share a name. */
function boxesOfImages(images: string[], job: LocalisationJob): Map<number, LesionBox[]> {
  const out = new Map<number, LesionBox[]>();
  const seen = new Map<string, string>();
  images.forEach((p, i) => {
    const name = basename(p);
    const boxes = job.lesions.byImage.get(name);
    if (!boxes || boxes.length === 0) return;
    const other = seen.get(name);
    if (other) throw new InputError(`two input photographs are named ${name} (${other} and ${p}): boxes are matched by file name`, { file: job.lesions.file });
    seen.set(name, p);
    out.set(i, boxes);
  });
  return out;
}

/**
 * Explains every image: preprocesses it with the model's own settings, predicts, picks the classes, computes each
 * method's heatmaps for all classes of a batch at once, and writes an overlay on the original photograph (inside the
 * fundus disc) plus the raw heatmaps; with `localisation`, scores every map of a photograph with lesion boxes. Returns
 * the manifest (the caller writes it and the gallery).
 */
export async function runExplain(job: ExplainJob): Promise<ExplainManifest> {
  const { model } = job;
  const meta = model.metadata;
  const tta = explanationTta(meta, job.tta);
  const explainer = explainerFor(model, { layer: job.layer, tta });
  const batchSize = Math.max(1, job.batchSize ?? 8);
  const colormap = job.colormap ?? 'jet';
  const rawFormats = job.raw ?? ['npy'];
  const masked = job.discMask ?? true;
  const names = stems(job.images);
  const rand = seededRandom((job.faithfulness ? job.faithfulness.seed : undefined) ?? 1);
  const loc = job.localisation;
  const boxesOf = loc ? boxesOfImages(job.images, loc) : new Map<number, LesionBox[]>();
  const manifest: ExplainManifest = {
    model: model.dir,
    layer: explainer.layerName,
    tta,
    classes: meta.classes,
    thresholds: meta.thresholds,
    methods: job.methods,
    colormap,
    discMask: masked,
    images: [],
    entries: [],
    skipped: [],
  };
  // The random-order yardstick depends on the image and class only, not on the method.
  const randomCache = new Map<string, FaithfulnessScore>();
  const timed: { method: CamMethod; score: FaithfulnessScore; random: FaithfulnessScore; camSeconds: number }[] = [];
  const scored: ScoredMap[] = [];
  const baselines = new Map<number, BaselineScores>();
  const predictor = new Predictor(model, { batchSize, gradability: job.gradabilityCheck ?? true });
  try {
    for await (const batch of predictor.batches(job.images)) {
      // A photograph that cannot be read or is not gradable is listed and left out; the others are explained.
      const kept = batch.outcomes.flatMap((o, i) => (o.ok ? [i] : []));
      batch.outcomes.forEach((o, i) => !o.ok && manifest.skipped.push({ path: batch.inputs[i] as string, reason: o.message }));
      if (kept.length === 0) {
        job.onProgress?.(batch.start + batch.inputs.length);
        continue;
      }
      const paths = kept.map((i) => batch.inputs[i] as string);
      const indices = kept.map((i) => batch.start + i);
      const pre = kept.map((i) => batch.images[i] as PreprocessedImage);
      const C = meta.classes.length;
      const probs = new Float32Array(paths.length * C);
      kept.forEach((k, i) => {
        const o = batch.outcomes[k];
        if (o.ok) probs.set(o.probabilities, i * C);
      });
      const targets = pre.flatMap((_, i) => chooseTargets(job.classes, probs.subarray(i * C, (i + 1) * C), model, i));
      const blurred = job.faithfulness ? pre.map((im) => blurImage(im)) : [];
      const perMethod = job.methods.map((method) => {
        const t0 = performance.now();
        const results: CamResult[] = explainer.explain(pre, targets, method);
        return { method, results, camSeconds: (performance.now() - t0) / 1000 / Math.max(1, results.length) };
      });
      // Per photograph: decoded once for its disc mask and all of its overlays.
      for (let i = 0; i < paths.length; i++) {
        const path = paths[i];
        const index = indices[i];
        const geometry = pre[i].geometry;
        const photo = await decodeRgb(path);
        if (photo.width !== geometry.width || photo.height !== geometry.height) {
          throw new Error(`${path}: decoded at ${photo.width}x${photo.height} but preprocessed at ${geometry.width}x${geometry.height}`);
        }
        const disc = discMask(photo.data, photo.width, photo.height, geometry);
        // The photograph without overlay, as the maps show it (orientation applied, a DICOM frame decoded), beside them.
        const original = `${names[index]}.photo.jpg`;
        await writeFile(join(job.outDir, original), await sharp(photo.data, { raw: { width: photo.width, height: photo.height, channels: 3 } }).jpeg({ quality: 90 }).toBuffer());
        const image: ExplainManifest['images'][number] = { path, photo: original, geometry, probabilities: Array.from(probs.subarray(i * C, (i + 1) * C)) };
        const boxes = boxesOf.get(index);
        let grid: ReturnType<typeof localisationGrid> | undefined;
        if (loc && boxes) {
          checkBoxes(boxes, photo.width, photo.height, loc.lesions.file, path);
          grid = localisationGrid(disc, geometry, boxes, loc.tolerancePx);
          const b = baselineScores(grid);
          baselines.set(index, b);
          image.localisation = {
            boxes: boxes.map(({ lesion, x0, y0, x1, y1 }) => ({ lesion, x0, y0, x1, y1 })),
            boxShare: grid.boxShare,
            nearShare: grid.nearShare,
            centre: b.centre,
            discPixels: disc.count,
            gridScale: grid.scale,
          };
        }
        manifest.images.push(image);
        for (const { method, results, camSeconds } of perMethod) {
          for (const r of results) {
            if (r.image !== i) continue;
            const className = meta.classes[r.classIndex];
            const direction = r.negate ? 'against' : 'for';
            const stem = `${names[index]}.${slug(className)}${r.negate ? '-against' : ''}.${slug(method)}`;
            const overlay = `${stem}.png`;
            await writeFile(join(job.outDir, overlay), await renderOverlayRgb(photo, r.heatmap, geometry, { colormap, alpha: job.alpha, disc: masked ? disc : false }));
            const raw: string[] = [];
            if (rawFormats.includes('npy')) {
              raw.push(`${stem}.raw.npy`);
              await writeFile(join(job.outDir, `${stem}.raw.npy`), heatmapToNpy(r.raw));
            }
            if (rawFormats.includes('png16')) {
              raw.push(`${stem}.heat16.png`);
              await writeFile(join(job.outDir, `${stem}.heat16.png`), await heatmapToPng16(r.heatmap, geometry, masked ? disc : false));
            }
            const entry: ExplainEntry = {
              image: path,
              className,
              direction,
              method,
              layer: layerOfClass(explainer, r.classIndex),
              probability: r.probability,
              threshold: meta.thresholds[r.classIndex],
              logit: r.score,
              overlay,
              raw,
            };
            if (job.faithfulness) {
              const key = `${index}/${r.classIndex}/${r.negate ? '-' : '+'}`;
              let random = randomCache.get(key);
              // The random order's grid is the class's map's (its own layer's, where the model records one).
              const own = classExplainer(explainer, r.classIndex);
              if (!random) randomCache.set(key, (random = randomScore(own, pre[i], r, rand, job.faithfulness, blurred[i])));
              entry.faithfulness = { score: heatmapScore(own, pre[i], r, r.heatmap, rand, job.faithfulness, blurred[i]), random };
              timed.push({ method, ...entry.faithfulness, camSeconds });
            }
            if (grid) {
              const score = scoreHeatmap(r.heatmap, grid);
              entry.localisation = { ...score };
              scored.push({ image: index, method, className, direction, score, positive: r.probability >= entry.threshold });
            }
            manifest.entries.push(entry);
          }
        }
      }
      job.onProgress?.(batch.start + batch.inputs.length);
    }
  } finally {
    await predictor.close();
  }
  if (job.faithfulness) manifest.faithfulness = summarize(timed);
  if (loc) {
    let boxCount = 0;
    for (const b of boxesOf.values()) boxCount += b.length;
    manifest.localisation = summarizeLocalisation(scored, baselines, loc, {
      withBoxes: boxesOf.size,
      withoutBoxes: job.images.length - boxesOf.size,
      boxes: boxCount,
    });
  }
  return manifest;
}
