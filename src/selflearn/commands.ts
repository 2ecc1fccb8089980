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
import { runSelfLearning } from './pipeline.js';
import type { RetrainMode } from './schema.js';
import type { PseudoLabelMethod } from './pseudolabel.js';
import { renderMarkdown } from './report.js';
import { trainModelRetrainer } from './retrain.js';
import { addUnlabelledOption, INTEGER, listOption, NON_NEGATIVE_INTEGER, NON_NEGATIVE_NUMBER, numberIn, numberOption, POSITIVE_INTEGER, POSITIVE_NUMBER, unlabelledOf } from '../util/cli-options.js';

const METHODS = ['knn', 'rbf', 'confidence'] as const;

interface SelflearnFlags {
  data: string[];
  split: string;
  unlabelled?: string[];
  unlabeled?: string[];
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
    .option('--batch-size <n>', 'images per forward pass', numberOption('--batch-size', POSITIVE_INTEGER), 16)
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
  addUnlabelledOption(
    program
      .command('selflearn')
      .description(
        'Self-learning experiment: pseudo-label unlabelled images (label spreading over the model\'s embeddings with a ' +
          'knn or rbf kernel, and/or the classifier\'s own confident predictions), retrain from scratch and by fine-tuning ' +
          'on labelled + pseudo-labelled data, and evaluate the original and every retrained model on the same held-out ' +
          'test part with bootstrap intervals. Unlabelled near-duplicates of test images are excluded (leakage guard). ' +
          'Writes <out>/report.json, <out>/report.md and the retrained models under <out>/models/.',
      )
      .argument('<model-dir>', 'the trained multilabel model to start from (its embeddings, its fine-tuning)'),
    '<images...>',
    'unlabelled image files or folders (required)',
  )
    .requiredOption('--data <csv_and_images...>', 'the labels CSV and the image folder, e.g. --data train.csv train/')
    .requiredOption('--split <split.json>', 'split file: spreading seeds from its train part, evaluation on its test part')
    .requiredOption('--out <dir>', 'output folder for the report and the retrained models')
    .option('--methods <list>', `pseudo-labelling methods, from ${METHODS.join(', ')}`, listOption('--methods', METHODS), [...METHODS])
    .option('--retrain <list>', 'retraining modes: scratch, finetune', listOption('--retrain', ['scratch', 'finetune'] as const), ['scratch', 'finetune'] as RetrainMode[])
    .option('--threshold <p>', 'keep a pseudo-label when every class is decided with at least this confidence', numberOption('--threshold', numberIn(0.5, 1)), 0.9)
    .option('--scratch-methods <list>', 'methods that also get a from-scratch arm (default: the label-spreading ones among --methods)', listOption('--scratch-methods', METHODS))
    .option('--rounds <n>', 'self-training rounds: round r pseudo-labels with round r-1\'s model, its student starts again from the original', numberOption('--rounds', POSITIVE_INTEGER), 1)
    .addOption(
      new Option('--rounds-for <which>', 'methods that go past round 1: the spreading kernel with the better validation macro AUC in round 1, or all')
        .choices(['best-spreading', 'all'])
        .default('best-spreading'),
    )
    .option('--alpha <a>', 'label spreading clamping factor, in (0, 1)', numberOption('--alpha', numberIn(0, 1, true)), 0.2)
    .option('--n-neighbors <k>', 'knn kernel: neighbours, the point itself included', numberOption('--n-neighbors', POSITIVE_INTEGER), 7)
    .option('--gamma <g>', 'rbf kernel: gamma (default: --gamma-scale x the median heuristic 1 / median squared distance)', numberOption('--gamma', POSITIVE_NUMBER))
    .option('--gamma-scale <f>', 'rbf kernel without --gamma: multiple of the median-heuristic gamma', numberOption('--gamma-scale', POSITIVE_NUMBER), 1)
    .option('--max-iter <n>', 'label spreading iterations at most', numberOption('--max-iter', POSITIVE_INTEGER), 30)
    .option('--tol <t>', 'label spreading convergence tolerance', numberOption('--tol', NON_NEGATIVE_NUMBER), 1e-3)
    .addOption(new Option('--normalize <how>', 'embedding normalisation before spreading').choices(['l2', 'none']).default('l2'))
    .option('--layer <name>', 'embedding layer (default: the penultimate layer)')
    .option('--epochs <n>', 'training epochs of each from-scratch arm (and of fine-tuned arms without --finetune-epochs)', numberOption('--epochs', POSITIVE_INTEGER), 10)
    .option('--max-minutes <m>', 'training time budget of each from-scratch arm (and of fine-tuned arms without --finetune-max-minutes)', numberOption('--max-minutes', POSITIVE_NUMBER))
    .option('--finetune-epochs <n>', 'training epochs of each fine-tuned arm', numberOption('--finetune-epochs', POSITIVE_INTEGER))
    .option('--finetune-max-minutes <m>', 'training time budget of each fine-tuned arm', numberOption('--finetune-max-minutes', POSITIVE_NUMBER))
    .option('--deadline-minutes <m>', 'wall-clock limit of the whole run: arms that would end past it are skipped, and embedding for pseudo-labels stops at it (both reported)', numberOption('--deadline-minutes', POSITIVE_NUMBER))
    .option('--batch-size <n>', 'training batch size', numberOption('--batch-size', POSITIVE_INTEGER), 16)
    .option('--lr <rate>', 'peak learning rate from scratch', numberOption('--lr', POSITIVE_NUMBER), 1e-3)
    .option('--finetune-lr <rate>', 'peak learning rate for fine-tuning (default: lr/10)', numberOption('--finetune-lr', POSITIVE_NUMBER))
    .option('--patience <n>', 'early-stopping patience in epochs', numberOption('--patience', POSITIVE_INTEGER), 8)
    .option('--pseudo-weight <w>', 'loss weight of a pseudo-labelled image relative to a labelled one', numberOption('--pseudo-weight', NON_NEGATIVE_NUMBER), 1)
    .option('--limit <n>', 'smoke runs: at most n images of each split part in training and as spreading seeds, and n unlabelled images embedded and pseudo-labelled (the test part is evaluated whole)', numberOption('--limit', POSITIVE_INTEGER))
    .option('--bootstrap <n>', 'bootstrap resamples for the intervals', numberOption('--bootstrap', NON_NEGATIVE_INTEGER), 1000)
    .option('--seed <n>', 'seed of training and of the bootstrap', numberOption('--seed', INTEGER), 0)
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
      const given = unlabelledOf(f);
      if (!given) throw new InputError("required option '--unlabelled <images...>' not specified");
      const unlabelled = await collectImages(given);
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
        limit: f.limit,
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
      // Even with --quiet: the report is short of what was asked.
      if (report.stoppedEarly) process.stderr.write(`selflearn: ${report.stoppedEarly}\n`);
    });
}
