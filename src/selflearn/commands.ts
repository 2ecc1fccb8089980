import { Option, type Command } from 'commander';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { readDataset } from '../data/csv.js';
import { initEngine } from '../engine/index.js';
import { loadModel } from '../models/io.js';
import { readSplitParts } from '../data/split.js';
import { writeFileAtomic } from '../util/atomic.js';
import { InputError } from '../util/errors.js';
import { reportSkipped } from '../util/skipped.js';
import { embedFiles, saveEmbeddings } from './embed.js';
import { collectImages } from '../data/image-files.js';
import { defaultDuplicateFinder } from './leakage.js';
import { runSelfLearning, type RetrainMode } from './pipeline.js';
import type { PseudoLabelMethod } from './pseudolabel.js';
import { renderMarkdown } from './report.js';
import { trainModelRetrainer } from './retrain.js';

const METHODS = ['knn', 'rbf', 'confidence'] as const;

function number(name: string, check: (v: number) => boolean, what: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || !check(n)) throw new InputError(`--${name} must be ${what} (got "${v}")`);
    return n;
  };
}

function list<T extends string>(name: string, allowed: readonly T[]) {
  return (v: string): T[] => {
    const items = v.split(',').map((s) => s.trim()).filter(Boolean);
    const bad = items.filter((s) => !(allowed as readonly string[]).includes(s));
    if (bad.length || items.length === 0) throw new InputError(`--${name} takes a comma-separated list of ${allowed.join(', ')} (got "${v}")`);
    return [...new Set(items)] as T[];
  };
}

interface SelflearnFlags {
  data: string[];
  split: string;
  unlabelled: string[];
  out: string;
  methods: (typeof METHODS)[number][];
  retrain: RetrainMode[];
  threshold: number;
  rounds: number;
  alpha: number;
  nNeighbors: number;
  gamma?: number;
  gammaScale: number;
  maxIter: number;
  tol: number;
  normalize: 'l2' | 'none';
  layer?: string;
  epochs: number;
  maxMinutes?: number;
  finetuneEpochs?: number;
  finetuneMaxMinutes?: number;
  deadlineMinutes?: number;
  scratchMethods?: (typeof METHODS)[number][];
  roundsFor: 'best-spreading' | 'all';
  batchSize: number;
  lr: number;
  finetuneLr?: number;
  patience: number;
  pseudoWeight: number;
  limit?: number;
  bootstrap: number;
  seed: number;
  quiet?: boolean;
  control: boolean;
}

export function register(program: Command): void {
  registerEmbed(program);
  registerSelflearn(program);
}

export function registerEmbed(program: Command): void {
  program
    .command('embed')
    .description(
      'Save image embeddings: the activations of one layer of a trained model (default: the penultimate layer, the ' +
        'input of the classification head). Writes <out>.f32 (little-endian float32, rows x dim, row-major) and ' +
        '<out>.json (rows, dim, layer, image names and paths in row order).',
    )
    .argument('<model-dir>', 'a fundus model directory (model.json, weights.bin, fundus.json)')
    .argument('<images...>', 'image files or folders of images')
    .requiredOption('-o, --out <file>', 'output path; .f32 is added when missing, the sidecar is <out>.json')
    .option('--layer <name>', 'layer whose output is the embedding (default: the penultimate layer)')
    .option('--batch-size <n>', 'images per forward pass', (v) => Number.parseInt(v, 10), 16)
    .option('--no-cache', 'do not read or write the preprocessing cache')
    .action(async (modelDir: string, images: string[], opts: { out: string; layer?: string; batchSize: number; cache: boolean }) => {
      await initEngine();
      const model = await loadModel(modelDir);
      const paths = await collectImages(images);
      const emb = await embedFiles(model, paths, { layer: opts.layer, batchSize: opts.batchSize, cache: opts.cache, progressLabel: 'embed', skipUnreadable: true });
      const written = await saveEmbeddings(opts.out, emb, modelDir);
      reportSkipped('embed', emb.skipped);
      const skipped = emb.skipped.length ? `; ${emb.skipped.length} skipped (listed above and in the sidecar)` : '';
      console.log(`${emb.matrix.rows} embeddings of dimension ${emb.matrix.cols} from layer "${emb.layer}" → ${written.data}, ${written.sidecar}${skipped}`);
    });
}

export function registerSelflearn(program: Command): void {
  program
    .command('selflearn')
    .description(
      'Self-learning experiment: pseudo-label unlabelled images (label spreading over the model\'s embeddings with a ' +
        'knn or rbf kernel, and/or the classifier\'s own confident predictions), retrain from scratch and by fine-tuning ' +
        'on labelled + pseudo-labelled data, and evaluate the original and every retrained model on the same held-out ' +
        'test part with bootstrap intervals. Unlabelled near-duplicates of test images are excluded (leakage guard). ' +
        'Writes <out>/report.json, <out>/report.md and the retrained models under <out>/models/.',
    )
    .argument('<model-dir>', 'the trained multilabel model to start from (its embeddings, its fine-tuning)')
    .requiredOption('--data <csv_and_images...>', 'the labels CSV and the image folder, e.g. --data train.csv train/')
    .requiredOption('--split <split.json>', 'split file: spreading seeds from its train part, evaluation on its test part')
    .requiredOption('--unlabelled <images...>', 'unlabelled image files or folders')
    .requiredOption('--out <dir>', 'output folder for the report and the retrained models')
    .option('--methods <list>', `pseudo-labelling methods, from ${METHODS.join(', ')}`, list('methods', METHODS), [...METHODS])
    .option('--retrain <list>', 'retraining modes: scratch, finetune', list('retrain', ['scratch', 'finetune'] as const), ['scratch', 'finetune'] as RetrainMode[])
    .option('--threshold <p>', 'keep a pseudo-label when every class is decided with at least this confidence', number('threshold', (v) => v >= 0.5 && v <= 1, 'in [0.5, 1]'), 0.9)
    .option('--scratch-methods <list>', 'methods that also get a from-scratch arm (default: the label-spreading ones among --methods)', list('scratch-methods', METHODS))
    .option('--rounds <n>', 'self-training rounds: round r pseudo-labels with round r-1\'s model, its student starts again from the original', number('rounds', (v) => Number.isInteger(v) && v >= 1, 'a positive integer'), 1)
    .addOption(
      new Option('--rounds-for <which>', 'methods that go past round 1: the spreading kernel with the better validation macro AUC in round 1, or all')
        .choices(['best-spreading', 'all'])
        .default('best-spreading'),
    )
    .option('--alpha <a>', 'label spreading clamping factor, in (0, 1)', number('alpha', (v) => v > 0 && v < 1, 'in (0, 1)'), 0.2)
    .option('--n-neighbors <k>', 'knn kernel: neighbours, the point itself included', number('n-neighbors', (v) => Number.isInteger(v) && v >= 1, 'a positive integer'), 7)
    .option('--gamma <g>', 'rbf kernel: gamma (default: --gamma-scale x the median heuristic 1 / median squared distance)', number('gamma', (v) => v > 0, 'positive'))
    .option('--gamma-scale <f>', 'rbf kernel without --gamma: multiple of the median-heuristic gamma', number('gamma-scale', (v) => v > 0, 'positive'), 1)
    .option('--max-iter <n>', 'label spreading iterations at most', number('max-iter', (v) => Number.isInteger(v) && v >= 1, 'a positive integer'), 30)
    .option('--tol <t>', 'label spreading convergence tolerance', number('tol', (v) => v >= 0, '>= 0'), 1e-3)
    .addOption(new Option('--normalize <how>', 'embedding normalisation before spreading').choices(['l2', 'none']).default('l2'))
    .option('--layer <name>', 'embedding layer (default: the penultimate layer)')
    .option('--epochs <n>', 'training epochs of each from-scratch arm (and of fine-tuned arms without --finetune-epochs)', number('epochs', (v) => Number.isInteger(v) && v >= 1, 'a positive integer'), 10)
    .option('--max-minutes <m>', 'training time budget of each from-scratch arm (and of fine-tuned arms without --finetune-max-minutes)', number('max-minutes', (v) => v > 0, 'positive'))
    .option('--finetune-epochs <n>', 'training epochs of each fine-tuned arm', number('finetune-epochs', (v) => Number.isInteger(v) && v >= 1, 'a positive integer'))
    .option('--finetune-max-minutes <m>', 'training time budget of each fine-tuned arm', number('finetune-max-minutes', (v) => v > 0, 'positive'))
    .option('--deadline-minutes <m>', 'wall-clock limit of the whole run: arms that would end past it are skipped (and reported)', number('deadline-minutes', (v) => v > 0, 'positive'))
    .option('--batch-size <n>', 'training batch size', number('batch-size', (v) => Number.isInteger(v) && v >= 1, 'a positive integer'), 16)
    .option('--lr <rate>', 'peak learning rate from scratch', number('lr', (v) => v > 0, 'positive'), 1e-3)
    .option('--finetune-lr <rate>', 'peak learning rate for fine-tuning (default: lr/10)', number('finetune-lr', (v) => v > 0, 'positive'))
    .option('--patience <n>', 'early-stopping patience in epochs', number('patience', (v) => Number.isInteger(v) && v >= 1, 'a positive integer'), 8)
    .option('--pseudo-weight <w>', 'loss weight of a pseudo-labelled image relative to a labelled one', number('pseudo-weight', (v) => v >= 0, '>= 0'), 1)
    .option('--limit <n>', 'at most n images of each split part in training (smoke runs)', number('limit', (v) => Number.isInteger(v) && v >= 1, 'a positive integer'))
    .option('--bootstrap <n>', 'bootstrap resamples for the intervals', number('bootstrap', (v) => Number.isInteger(v) && v >= 0, 'a non-negative integer'), 1000)
    .option('--seed <n>', 'seed of training and of the bootstrap', number('seed', Number.isInteger, 'an integer'), 0)
    .option('--no-control', 'skip the controls: the same fine-tuning and from-scratch training on the labelled images alone')
    .option('--quiet', 'no log lines')
    .action(async (modelDir: string, f: SelflearnFlags) => {
      const started = Date.now();
      await initEngine();
      if (f.data.length !== 2) throw new InputError('--data takes the labels CSV and the image folder, e.g. --data train.csv train/');
      const [csv, images] = f.data;
      // Elapsed time on every line: the log of a long run shows where its minutes went.
      const clock = () => {
        const s = Math.round((Date.now() - started) / 1000);
        return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
      };
      const log = f.quiet ? () => {} : (line: string) => process.stderr.write(`selflearn [${clock()}]: ${line}\n`);
      const model = await loadModel(modelDir);
      const dataset = await readDataset(csv, images);
      const split = await readSplitParts(f.split);
      const unlabelled = await collectImages(f.unlabelled);
      const methods: PseudoLabelMethod[] = f.methods.map((m) =>
        m === 'confidence'
          ? { kind: 'confidence' }
          : {
              kind: 'spreading',
              kernel: m,
              normalize: f.normalize,
              gammaScale: f.gammaScale,
              params: { alpha: f.alpha, nNeighbors: f.nNeighbors, gamma: f.gamma, maxIter: f.maxIter, tol: f.tol },
            },
      );
      const retrain = trainModelRetrainer(
        { csv, images, split: f.split, runsDir: join(f.out, 'runs') },
        {
          epochs: f.epochs,
          maxMinutes: f.maxMinutes,
          finetuneEpochs: f.finetuneEpochs,
          finetuneMaxMinutes: f.finetuneMaxMinutes,
          batchSize: f.batchSize,
          lr: f.lr,
          finetuneLr: f.finetuneLr,
          patience: f.patience,
          pseudoWeight: f.pseudoWeight,
          limit: f.limit,
          quiet: true,
        },
        f.quiet ? undefined : (line) => log(`  train: ${line}`),
      );
      const report = await runSelfLearning({
        model,
        dataset,
        split,
        unlabelled,
        methods,
        threshold: f.threshold,
        modes: f.retrain,
        scratchMethods: (f.scratchMethods ?? f.methods.filter((m) => m !== 'confidence')).map((m) => (m === 'confidence' ? m : `spreading-${m}`)),
        rounds: f.rounds,
        roundsFor: f.roundsFor,
        deadline: f.deadlineMinutes !== undefined ? started + f.deadlineMinutes * 60_000 : undefined,
        armMinutes: { scratch: f.maxMinutes, finetune: f.finetuneMaxMinutes ?? f.maxMinutes },
        layer: f.layer,
        bootstrap: { resamples: f.bootstrap, seed: f.seed },
        outDir: f.out,
        seed: f.seed,
        retrain,
        findDuplicates: defaultDuplicateFinder(),
        control: f.control,
        notes:
          f.limit !== undefined
            ? [`Smoke run: training used at most ${f.limit} images of each split part (--limit); these numbers are not results.`]
            : [],
        log,
        // A long run leaves its results so far behind if it is stopped; the final files replace them.
        onProgress: async (partial) => {
          await writeFileAtomic(join(f.out, 'report.partial.json'), JSON.stringify(partial, null, 2) + '\n');
          await writeFileAtomic(join(f.out, 'report.partial.md'), renderMarkdown(partial));
        },
      });
      await writeFileAtomic(join(f.out, 'report.json'), JSON.stringify(report, null, 2) + '\n');
      const md = renderMarkdown(report);
      await writeFileAtomic(join(f.out, 'report.md'), md);
      await rm(join(f.out, 'report.partial.json'), { force: true });
      await rm(join(f.out, 'report.partial.md'), { force: true });
      process.stdout.write(md);
    });
}
