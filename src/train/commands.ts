import type { Command } from 'commander';
import { Option } from 'commander';
import { initEngine } from '../engine/index.js';
import { architectureNames } from '../models/architectures.js';
import { TASKS, parseTask } from '../models/tasks.js';
import { InputError } from '../util/errors.js';
import { CAMERA_AUGMENT } from '../data/augment.js';
import type { Monitor } from './loop.js';
import { DEFAULT_MODEL, DEFAULT_ONE_VS_NORMAL_MODEL, DEFAULT_TASK, PRETRAINED_RECIPE, RUN_DEFAULTS, SCRATCH_RECIPE } from './recipe.js';
import type { Recipe } from './recipe.js';
import { trainModel } from './train.js';
import type { TrainOptions } from './train.js';
import { INTEGER, NON_NEGATIVE_NUMBER, POSITIVE_INTEGER, POSITIVE_NUMBER, numberOption } from '../util/cli-options.js';

/** The flags as commander hands them over: TrainOptions' own, and those whose name or form differs. */
type TrainFlags = Pick<
  TrainOptions,
  | 'model' | 'split' | 'datasets' | 'balanceSources' | 'sourceAdversarial' | 'adversaryLrScale' | 'lesionAttention' | 'lesions' | 'lesionSource' | 'lesionClass' | 'lesionLayer' | 'lesionHead'
  | 'out' | 'runDir' | 'epochs' | 'batchSize' | 'lr' | 'minLr'
  | 'weightDecay' | 'imageSize' | 'channels' | 'clahe' | 'mask' | 'patience' | 'initFrom' | 'pretrained' | 'recipe' | 'backboneLrScale'
  | 'batchNorm' | 'trainableFrom' | 'tta' | 'maxMinutes' | 'restart' | 'force' | 'limit' | 'quiet'
> & {
  task: string;
  data?: string[];
  warmup?: number;
  resize: 'area' | 'lanczos3';
  localMean?: number | true;
  augment: boolean;
  cameraAugment?: boolean;
  monitor?: Monitor;
  seed?: number;
  checkpointSeconds?: number;
};

/** A default that depends on how the network starts, in words for --help. */
function byStart(value: (r: Recipe) => unknown): string {
  const p = value(PRETRAINED_RECIPE);
  const s = value(SCRATCH_RECIPE);
  return p === s ? `default ${String(p)}` : `default ${String(p)} for pretrained backbones, ${String(s)} from scratch`;
}

/** Graham's σ: 10 px for a 600 px disc. */
const LOCAL_MEAN_SIGMA = 1 / 60;

export function register(program: Command): void {
  program
    .command('train')
    .description(
      'Train a model on a labelled dataset and its split (given, or made like `fundus data split`); writes a model directory with thresholds tuned on the ' +
        'validation part, held-out test metrics and a model card (MODEL_CARD.md) about the data it was given. ' +
        `Without options it trains as the shipped model was: ${DEFAULT_MODEL} from its ImageNet weights, full fine-tuning ` +
        `(backbone at ${PRETRAINED_RECIPE.fineTune.backboneLrScale}x the head's rate), AdamW, ${PRETRAINED_RECIPE.epochs} epochs, camera augmentation, circle mask, ` +
        'flip test-time augmentation; networks trained from scratch (e.g. --model alexnet: green channel, 227 px) have ' +
        'their own defaults. Re-running the same command resumes from the last checkpoint.',
    )
    .addOption(new Option('--task <task>', 'what to learn').choices([...TASKS]).default(DEFAULT_TASK))
    .addOption(
      new Option('--model <name>', `architecture (default: --init-from's, else ${DEFAULT_MODEL}; ${DEFAULT_ONE_VS_NORMAL_MODEL} for one-vs-normal)`).choices(architectureNames()),
    )
    .option('--data <csv_and_images...>', 'the labels CSV and the image folder, e.g. --data train.csv train/')
    .option(
      '--split <split.json>',
      'split file with train/validation/test parts (e.g. splits/vietai.json); without it, one is made as `fundus data split` makes it and written to the run directory',
    )
    .option('--datasets <file>', 'instead of --data and --split: a datasets file listing several sources (e.g. datasets/train.json)')
    .option('--balance-sources', 'with --datasets: every source weighs the same in the loss, whatever its size')
    .option(
      '--source-adversarial <weight>',
      'with --datasets: a head that predicts the source through a gradient-reversal layer, so the features carry little of the camera (0.05 was stable, 0.3 diverged: docs/generalisation.md)',
      numberOption('--source-adversarial', POSITIVE_NUMBER),
    )
    .option(
      '--adversary-lr-scale <x>',
      "with --source-adversarial: the source head's learning rate over the task head's (default 1); a head slower than the features is fooled instead of read",
      numberOption('--adversary-lr-scale', POSITIVE_NUMBER),
    )
    .option(
      '--lesion-attention <weight>',
      "guide a class's heatmap into expert lesion boxes (--lesions) on the training photographs that have them: a loss of this weight on the share of " +
        "the class's activation map inside the boxes (the photographs it trained on can no longer test its heatmaps)",
      numberOption('--lesion-attention', POSITIVE_NUMBER),
    )
    .option('--lesions <csv>', 'with --lesion-attention: the lesion boxes (codras or heimed format; photographs matched by file name)')
    .option('--lesion-source <name>', "with --lesion-attention and several training sources: the boxes' source")
    .option('--lesion-class <name>', 'with --lesion-attention: the class whose map is guided (default: diabetic retinopathy for codras boxes, macular edema for heimed)')
    .option(
      '--lesion-layer <name>',
      "with --lesion-attention: guide the class's Grad-CAM map at this layer (e.g. block_12_add, the heatmap models/default shows) instead of " +
        'the class activation map behind the global pooling',
    )
    .option(
      '--lesion-head',
      'with --lesion-attention and --lesion-layer: add a lesion map head on that layer instead, trained as weak segmentation from the boxes ' +
        '(photographs graded free of the class count as lesion-free), whose peak feeds the class score; its heatmap is Grad-CAM at lesion_map',
    )
    .requiredOption('--out <dir>', 'model directory to write')
    .option('--run-dir <dir>', 'checkpoints, history.csv and TensorBoard events (default: runs/<name of --out>)')
    .option('--epochs <n>', `maximum number of epochs (${byStart((r) => r.epochs)})`, numberOption('--epochs', POSITIVE_INTEGER))
    .option('--batch-size <n>', `images per optimiser step (${byStart((r) => r.batchSize)})`, numberOption('--batch-size', POSITIVE_INTEGER))
    .option('--lr <rate>', `peak learning rate of Adam (${byStart((r) => r.lr)})`, numberOption('--lr', POSITIVE_NUMBER))
    .option('--min-lr <rate>', 'final learning rate of the cosine schedule (default: lr/50)', numberOption('--min-lr', POSITIVE_NUMBER))
    .option(
      '--weight-decay <rate>',
      `decoupled weight decay (AdamW): each step every weight shrinks by lr x rate; 0 is plain Adam (${byStart((r) => r.weightDecay)})`,
      numberOption('--weight-decay', NON_NEGATIVE_NUMBER),
    )
    .option('--warmup <epochs>', `linear warm-up epochs (${byStart((r) => r.warmupEpochs)})`, numberOption('--warmup', NON_NEGATIVE_NUMBER))
    .option('--image-size <px>', "input side in pixels (default: the architecture's: 227 for alexnet, 224 for resnets)", numberOption('--image-size', POSITIVE_INTEGER))
    .addOption(new Option('--channels <c>', 'input channels (default: green for alexnet, rgb otherwise)').choices(['green', 'rgb']))
    .option('--clahe', 'contrast-limited adaptive histogram equalisation in preprocessing')
    .addOption(
      new Option('--resize <method>', 'area: JPEG decoded at reduced scale, area average (fast); lanczos3: full decode, Lanczos-3')
        .choices(['area', 'lanczos3'])
        .default('area'),
    )
    .addOption(
      new Option(
        '--mask <shape>',
        `camera-invariant: black out everything outside a standard circle around the disc centre; none: no mask (${byStart((r) => r.mask ?? 'none')}; with --init-from: its model's)`,
      ).choices(['circle', 'none']),
    )
    .option(
      '--local-mean [sigma]',
      "camera-invariant: subtract a Gaussian-blurred copy (Graham's local mean colour normalisation); sigma as a fraction of the side",
      numberOption('--local-mean', POSITIVE_NUMBER),
    )
    .option('--no-augment', 'train without augmentation')
    .option(
      '--camera-augment',
      `also imitate other cameras while training: blur/sharpness, colour temperature, noise, down-and-up resampling, JPEG re-compression (${byStart((r) => (r.augment.jpeg ? 'on' : 'off'))})`,
    )
    .option('--no-camera-augment', 'the usual augmentation only')
    .option('--patience <epochs>', `early stopping: epochs without improvement of the monitored metric (${byStart((r) => r.patience)})`, numberOption('--patience', POSITIVE_INTEGER))
    .addOption(
      new Option('--monitor <metric>', `validation metric for best epoch and early stopping (default ${RUN_DEFAULTS.monitor})`).choices(['val_auc', 'val_f1', 'val_loss']),
    )
    .option('--seed <n>', `random seed: initialisation, order, augmentation (default ${RUN_DEFAULTS.seed})`, numberOption('--seed', INTEGER))
    .option('--init-from <model_dir>', 'start from the weights of an existing model (fine-tuning)')
    .addOption(new Option('--pretrained <weights>', 'weights of a pretrained backbone (mobilenetv2, resnet50; the only ones are ImageNet)').choices(['imagenet']))
    .addOption(
      new Option('--recipe <recipe>', 'backbones: probe = head only, on frozen features computed once; partial = last stage + head; full = every layer (default)')
        .choices(['probe', 'partial', 'full']),
    )
    .option('--backbone-lr-scale <x>', `backbones: the backbone's learning rate as a multiple of the head's (default ${PRETRAINED_RECIPE.fineTune.backboneLrScale})`, numberOption('--backbone-lr-scale', POSITIVE_NUMBER))
    .addOption(new Option('--batch-norm <mode>', 'backbones: train = batch statistics while training (default); frozen = the pretrained statistics').choices(['frozen', 'train']))
    .option('--trainable-from <layer>', 'backbones, partial recipe: first layer that trains (default: the start of the last stage)')
    .addOption(
      new Option('--tta <kind>', `test-time augmentation the model records: hflip averages each photo with its mirror image (${byStart((r) => r.tta)}; with --init-from: its model's)`).choices(['none', 'hflip']),
    )
    .option(
      '--checkpoint-seconds <s>',
      `save a mid-epoch checkpoint at least this often (default ${RUN_DEFAULTS.checkpointSeconds})`,
      numberOption('--checkpoint-seconds', POSITIVE_NUMBER),
    )
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
        '  fundus train --data ../shared/data/vietai/train.csv ../shared/data/vietai/train --split splits/vietai.json --out models/mine\n' +
        '  fundus train --datasets datasets/train.json --out models/multi --max-minutes 85\n' +
        '  fundus train --task focus --model alexnet --data train.csv train/ --split splits/vietai.json --out models/alexnet-focus\n' +
        '  fundus train --task focus --init-from models/default --lr 5e-4 --epochs 8 --datasets datasets/train.json --out models/focus',
    )
    .action(async (flags: TrainFlags) => {
      if (flags.datasets === undefined) {
        if (!flags.data) throw new InputError('give --data <csv> <images> (and --split <file>, else a split is made), or --datasets <file>');
        if (flags.data.length !== 2) throw new InputError('--data takes two values: the labels CSV and the image folder');
      } else if (flags.data || flags.split) throw new InputError('give either --datasets or --data and --split, not both');
      const engine = await initEngine();
      if (!flags.quiet) process.stderr.write(`engine: ${engine.backend} (${engine.threads} threads)\n`);
      const r = await trainModel({
        task: parseTask(flags.task),
        model: flags.model,
        pretrained: flags.pretrained,
        csv: flags.data?.[0],
        images: flags.data?.[1],
        split: flags.split,
        datasets: flags.datasets,
        balanceSources: flags.balanceSources,
        sourceAdversarial: flags.sourceAdversarial,
        adversaryLrScale: flags.adversaryLrScale,
        lesionAttention: flags.lesionAttention,
        lesions: flags.lesions,
        lesionSource: flags.lesionSource,
        lesionClass: flags.lesionClass,
        lesionLayer: flags.lesionLayer,
        lesionHead: flags.lesionHead,
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
        // left out: the recipe's (camera augmentation for pretrained backbones)
        augment: !flags.augment ? false : flags.cameraAugment === undefined ? undefined : flags.cameraAugment ? { ...CAMERA_AUGMENT } : {},
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
