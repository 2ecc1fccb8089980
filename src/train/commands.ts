import type { Command } from 'commander';
import { Option } from 'commander';
import { initEngine } from '../engine/index.js';
import { architectureInfo, architectureNames } from '../models/architectures.js';
import { readMetadata } from '../models/io.js';
import { TASKS, parseTask } from '../models/tasks.js';
import { InputError } from '../util/errors.js';
import { CAMERA_AUGMENT } from '../data/augment.js';
import type { Monitor } from './loop.js';
import { trainModel } from './train.js';
import { INTEGER, NON_NEGATIVE_NUMBER, POSITIVE_INTEGER, POSITIVE_NUMBER, numberOption } from '../util/cli-options.js';

interface TrainFlags {
  task: string;
  model?: string;
  data?: string[];
  split?: string;
  datasets?: string;
  balanceSources?: boolean;
  sourceAdversarial?: number;
  out: string;
  runDir?: string;
  epochs: number;
  batchSize: number;
  lr: number;
  minLr?: number;
  weightDecay: number;
  warmup: number;
  imageSize?: number;
  channels?: 'green' | 'rgb';
  clahe?: boolean;
  resize: 'area' | 'lanczos3';
  mask?: 'circle';
  localMean?: number | true;
  augment: boolean;
  cameraAugment?: boolean;
  patience: number;
  monitor: Monitor;
  seed: number;
  initFrom?: string;
  pretrained?: string;
  recipe?: 'probe' | 'partial' | 'full';
  backboneLrScale?: number;
  batchNorm?: 'frozen' | 'train';
  trainableFrom?: string;
  tta: 'none' | 'hflip';
  checkpointSeconds: number;
  maxMinutes?: number;
  restart?: boolean;
  force?: boolean;
  limit?: number;
  quiet?: boolean;
}

/** Graham's σ: 10 px for a 600 px disc. */
const LOCAL_MEAN_SIGMA = 1 / 60;

export function register(program: Command): void {
  program
    .command('train')
    .description(
      'Train a model on a labelled dataset and a split file; writes a model directory with thresholds tuned on the ' +
        'validation part and held-out test metrics. Re-running the same command resumes from the last checkpoint.',
    )
    .addOption(new Option('--task <task>', 'what to learn').choices([...TASKS]).makeOptionMandatory())
    .addOption(new Option('--model <name>', "architecture (default: --init-from's, else resnet18-narrow)").choices(architectureNames()))
    .option('--data <csv_and_images...>', 'the labels CSV and the image folder, e.g. --data train.csv train/')
    .option('--split <split.json>', 'split file with train/validation/test parts (e.g. splits/vietai.json)')
    .option('--datasets <file>', 'instead of --data and --split: a datasets file listing several sources (e.g. datasets/train.json)')
    .option('--balance-sources', 'with --datasets: every source weighs the same in the loss, whatever its size')
    .option(
      '--source-adversarial <weight>',
      'with --datasets: a head that predicts the source through a gradient-reversal layer, so the features carry little of the camera (0.05 was stable, 0.3 diverged: docs/generalisation.md)',
      numberOption('--source-adversarial', POSITIVE_NUMBER),
    )
    .requiredOption('--out <dir>', 'model directory to write')
    .option('--run-dir <dir>', 'checkpoints, history.csv and TensorBoard events (default: runs/<name of --out>)')
    .option('--epochs <n>', 'maximum number of epochs', numberOption('--epochs', POSITIVE_INTEGER), 30)
    .option('--batch-size <n>', 'images per optimiser step', numberOption('--batch-size', POSITIVE_INTEGER), 16)
    .option('--lr <rate>', 'peak learning rate of Adam', numberOption('--lr', POSITIVE_NUMBER), 1e-3)
    .option('--min-lr <rate>', 'final learning rate of the cosine schedule (default: lr/50)', numberOption('--min-lr', POSITIVE_NUMBER))
    .option('--weight-decay <rate>', 'decoupled weight decay (AdamW): each step every weight shrinks by lr x rate', numberOption('--weight-decay', NON_NEGATIVE_NUMBER), 0)
    .option('--warmup <epochs>', 'linear warm-up epochs', numberOption('--warmup', NON_NEGATIVE_NUMBER), 1)
    .option('--image-size <px>', "input side in pixels (default: the architecture's: 227 for alexnet, 224 for resnets)", numberOption('--image-size', POSITIVE_INTEGER))
    .addOption(new Option('--channels <c>', 'input channels (default: green for alexnet, rgb otherwise)').choices(['green', 'rgb']))
    .option('--clahe', 'contrast-limited adaptive histogram equalisation in preprocessing')
    .addOption(
      new Option('--resize <method>', 'area: JPEG decoded at reduced scale, area average (fast); lanczos3: full decode, Lanczos-3')
        .choices(['area', 'lanczos3'])
        .default('area'),
    )
    .addOption(new Option('--mask <shape>', 'camera-invariant: black out everything outside a standard circle around the disc centre').choices(['circle']))
    .option(
      '--local-mean [sigma]',
      "camera-invariant: subtract a Gaussian-blurred copy (Graham's local mean colour normalisation); sigma as a fraction of the side",
      numberOption('--local-mean', POSITIVE_NUMBER),
    )
    .option('--no-augment', 'train without augmentation')
    .option('--camera-augment', 'also imitate other cameras while training: blur/sharpness, colour temperature, noise, down-and-up resampling, JPEG re-compression')
    .option('--patience <epochs>', 'early stopping: epochs without improvement of the monitored metric', numberOption('--patience', POSITIVE_INTEGER), 8)
    .addOption(new Option('--monitor <metric>', 'validation metric for best epoch and early stopping').choices(['val_auc', 'val_f1', 'val_loss']).default('val_auc'))
    .option('--seed <n>', 'random seed (initialisation, order, augmentation)', numberOption('--seed', INTEGER), 42)
    .option('--init-from <model_dir>', 'start from the weights of an existing model (fine-tuning)')
    .addOption(new Option('--pretrained <weights>', 'weights of a pretrained backbone (mobilenetv2, resnet50; the only ones are ImageNet)').choices(['imagenet']))
    .addOption(
      new Option('--recipe <recipe>', 'backbones: probe = head only, on frozen features computed once; partial = last stage + head; full = every layer (default)')
        .choices(['probe', 'partial', 'full']),
    )
    .option('--backbone-lr-scale <x>', "backbones: the backbone's learning rate as a multiple of the head's (default 0.1)", numberOption('--backbone-lr-scale', POSITIVE_NUMBER))
    .addOption(new Option('--batch-norm <mode>', 'backbones: train = batch statistics while training (default); frozen = the pretrained statistics').choices(['frozen', 'train']))
    .option('--trainable-from <layer>', 'backbones, partial recipe: first layer that trains (default: the start of the last stage)')
    .addOption(new Option('--tta <kind>', 'test-time augmentation the model records: hflip averages each photo with its mirror image').choices(['none', 'hflip']).default('none'))
    .option('--checkpoint-seconds <s>', 'save a mid-epoch checkpoint at least this often', numberOption('--checkpoint-seconds', POSITIVE_NUMBER), 120)
    .option('--max-minutes <m>', 'training-time budget: when spent, stops (mid-epoch if need be), validates and writes the best model', numberOption('--max-minutes', POSITIVE_NUMBER))
    .option('--restart', 'discard an existing checkpoint in the run directory instead of resuming')
    .option(
      '--force',
      'replace the fundus model already in --out when another run wrote it (the whole folder, model card included); ' +
        'never needed to re-run the same command, and never deletes a folder that is not a fundus model',
    )
    .option('--limit <n>', 'use at most n images of each split part (smoke runs)', numberOption('--limit', POSITIVE_INTEGER))
    .option('--quiet', 'no progress bar or log lines')
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  fundus train --task multilabel --model resnet18-narrow --data ../shared/data/vietai/train.csv ../shared/data/vietai/train \\\n' +
        '      --split splits/vietai.json --out models/mine\n' +
        '  fundus train --task focus --model alexnet --data train.csv train/ --split splits/vietai.json --out models/alexnet-focus\n' +
        '  fundus train --task multilabel --model mobilenetv2 --pretrained imagenet --recipe full --lr 1e-3 --epochs 12 \\\n' +
        '      --data train.csv train/ --split splits/vietai.json --out models/mnv2\n' +
        '  fundus train --task multilabel --model mobilenetv2 --pretrained imagenet --datasets datasets/train.json --out models/multi',
    )
    .action(async (flags: TrainFlags) => {
      if (flags.datasets === undefined) {
        if (!flags.data || !flags.split) throw new InputError('give --data <csv> <images> and --split <file>, or --datasets <file>');
        if (flags.data.length !== 2) throw new InputError('--data takes two values: the labels CSV and the image folder');
      } else if (flags.data || flags.split) throw new InputError('give either --datasets or --data and --split, not both');
      const model = flags.model ?? (flags.initFrom ? (await readMetadata(flags.initFrom)).architecture : 'resnet18-narrow');
      if (flags.pretrained && !architectureInfo(model).backbone) {
        throw new InputError(`--pretrained: ${model} has no pretrained weights (backbones: ${architectureNames().filter((n) => architectureInfo(n).backbone).join(', ')})`);
      }
      const engine = await initEngine();
      if (!flags.quiet) process.stderr.write(`engine: ${engine.backend} (${engine.threads} threads)\n`);
      const r = await trainModel({
        task: parseTask(flags.task),
        model,
        csv: flags.data?.[0],
        images: flags.data?.[1],
        split: flags.split,
        datasets: flags.datasets,
        balanceSources: flags.balanceSources,
        sourceAdversarial: flags.sourceAdversarial,
        out: flags.out,
        runDir: flags.runDir,
        epochs: flags.epochs,
        batchSize: flags.batchSize,
        lr: flags.lr,
        minLr: flags.minLr,
        weightDecay: flags.weightDecay,
        warmupEpochs: flags.warmup,
        imageSize: flags.imageSize,
        channels: flags.channels,
        clahe: flags.clahe,
        resize: flags.resize,
        mask: flags.mask,
        localMean: flags.localMean === undefined ? undefined : { sigma: flags.localMean === true ? LOCAL_MEAN_SIGMA : flags.localMean },
        augment: flags.augment ? (flags.cameraAugment ? { ...CAMERA_AUGMENT } : {}) : false,
        patience: flags.patience,
        monitor: flags.monitor,
        seed: flags.seed,
        initFrom: flags.initFrom,
        recipe: flags.recipe,
        backboneLrScale: flags.backboneLrScale,
        batchNorm: flags.batchNorm,
        trainableFrom: flags.trainableFrom,
        tta: flags.tta,
        checkpointSeconds: flags.checkpointSeconds,
        maxMinutes: flags.maxMinutes,
        restart: flags.restart,
        force: flags.force,
        limit: flags.limit,
        quiet: flags.quiet,
      });
      const test = r.metadata.metrics?.test as { macroAuc: number | null; meanF1: number | null } | undefined;
      process.stdout.write(
        JSON.stringify({
          model: r.modelDir,
          task: r.metadata.task,
          architecture: r.metadata.architecture,
          epochs: r.history.length,
          bestEpoch: r.bestEpoch,
          trainSeconds: Math.round(r.trainSeconds),
          imagesPerSecond: r.imagesPerSecond,
          testMacroAuc: test?.macroAuc ?? null,
          testMeanF1: test?.meanF1 ?? null,
        }) + '\n',
      );
    });
}
