import type { Command } from 'commander';
import { numberOption, POSITIVE_INTEGER } from '../util/cli-options.js';
import { Option } from 'commander';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { DEFAULT_MODEL_DIR, loadModel, METADATA_JSON } from '../models/io.js';
import { CAM_METHODS, DEFAULT_CAM_METHOD, isCamMethod, type CamMethod } from '../explain/cam.js';
import { InputError } from '../util/errors.js';
import { collectImages } from '../data/image-files.js';
import { formatFromPath } from './output.js';
import { checkPredictOut, runPredict, type PredictFormat } from './predict-cli.js';
import { HEATMAPS_INDEX, checkHeatmapsDir, type HeatmapChoice } from './heatmap-files.js';
import { checkBindAddress, readTokenFile } from './auth.js';
import { initBatchPrediction } from '../models/predictor.js';
// Constants only: server.js itself (Fastify and the rest) is loaded when `serve` runs.
import { DEFAULT_BODY_LIMIT, DEFAULT_MAX_IN_FLIGHT, DEFAULT_UPLOAD_IDLE_TIMEOUT, DEFAULT_UPLOAD_TIMEOUT } from './limits.js';

async function isModelDir(p: string): Promise<boolean> {
  try {
    return (await stat(join(p, METADATA_JSON))).isFile();
  } catch {
    return false;
  }
}

function camMethod(v: string): CamMethod {
  if (!isCamMethod(v)) throw new InputError(`unknown heatmap method "${v}" (known: ${CAM_METHODS.join(', ')})`);
  return v;
}

function heatmapClasses(v: string): HeatmapChoice['classes'] {
  return v === 'positive' || v === 'all' ? v : v.split(',').map((s) => s.trim());
}

/** `--heatmap-method` and `--heatmap-classes`, as `predict` and `queue submit` take them (with `--heatmaps`). */
export function withHeatmapChoice(cmd: Command): Command {
  return cmd
    .option(
      '--heatmap-method <method>',
      `heatmap method: ${CAM_METHODS.join(', ')} (default: the model's own, as its fundus.json "explanation" records it, else ${DEFAULT_CAM_METHOD})`,
      camMethod,
    )
    .option('--heatmap-classes <which>', '"positive" (decided classes, else the likeliest), "all", or a comma-separated list of class names', heatmapClasses, 'positive');
}

/** The model directory to use: the one named, else the bundled model; InputError when it is not a fundus model. */
export async function resolveModelDir(explicit: string | undefined): Promise<string> {
  const dir = explicit ?? DEFAULT_MODEL_DIR;
  if (!(await isModelDir(dir))) {
    throw new InputError(
      explicit ? 'not a fundus model directory (no fundus.json)' : 'the bundled model is missing; name a model directory with --model',
      { file: dir },
    );
  }
  return dir;
}

interface PredictFlags {
  model?: string;
  format?: PredictFormat;
  showIdentifiers?: boolean;
  out?: string;
  heatmaps?: string;
  /** Absent: the model's own default (`defaultExplanation`). */
  heatmapMethod?: CamMethod;
  heatmapClasses: HeatmapChoice['classes'];
  batchSize: number;
  resume?: boolean;
  quiet?: boolean;
  /** False with --no-gradability-check. */
  gradabilityCheck: boolean;
}

interface ServeFlags {
  model?: string;
  host: string;
  port: number;
  allowRemote?: boolean;
  token?: string;
  tokenFile?: string;
  allowedHost?: string[];
  bodyLimit: number;
  maxInFlight: number;
  uploadTimeout: number;
  uploadIdleTimeout: number;
  batchSize: number;
  inferenceThreads: number;
  log?: boolean;
  gradabilityCheck: boolean;
}

export function register(program: Command): void {
  withHeatmapChoice(
    program
      .command('predict')
      .description('Predict the classes of fundus photographs (files or folders, walked recursively)')
      .argument('<paths...>', '[model-dir] followed by images or folders; the bundled model (models/default) when no model directory comes first')
      .option('-m, --model <dir>', 'model directory (instead of a leading positional one)')
      .addOption(
        new Option(
          '-f, --format <format>',
          'output format; json is JSON Lines (one object per image); fhir is one FHIR R4 Bundle (a DiagnosticReport per photograph, an Observation per class; docs/dicom-fhir.md). Default: from --out\'s extension, else table',
        ).choices(['table', 'json', 'csv', 'fhir']),
      )
      .option(
        '-o, --out <file>',
        'write results to this file (streamed to <file>.partial, renamed when the run completes; its first line records the model). ' +
          'Replaces only a predictions file fundus wrote; <file>.lock keeps a second run off it',
      )
      .option('--resume', 'skip images already in --out (or its .partial from an interrupted run); refused when another model wrote it')
      .option(
        '--heatmaps <dir>',
        'write a heatmap overlay PNG per image and explained class into this folder (a new or empty one, or one fundus wrote heatmaps into: ' +
          `${HEATMAPS_INDEX} maps each image to its file names, <name>-2... when two images share a name); JSON records name their overlays`,
      ),
  )
    .option('-b, --batch-size <n>', 'images per inference batch', numberOption('--batch-size', POSITIVE_INTEGER), 16)
    .option('-q, --quiet', 'no progress bar')
    .option('--no-gradability-check', 'predict photographs the gradability gate refuses (not a fundus photograph, too dark, no disc, ...; see docs/gradability.md) instead of reporting them ungradable: for research only')
    .option('--show-identifiers', "put DICOM photographs' patient identifiers (name, ID, birth date, sex, accession number) into the results; by default they never appear")
    .addHelpText(
      'after',
      '\nDICOM files (.dcm, .dicom, or no extension) are read frame by frame (<file>#frame-<n>); their SOP Instance UID,\n' +
        'laterality and acquisition date go into the results (docs/dicom-fhir.md).\n' +
        '\nA photograph that is not a gradable fundus photograph gets a row saying why ("gradable": false and the reasons;\n' +
        'in CSV the gradable and "ungradable reason" columns, with empty probabilities) instead of a diagnosis.\n\n' +
        'Exit status: 0 when every image was predicted or reported ungradable, 3 when some could not be read (they are\n' +
        'listed on stderr and left out of the output; the others are predicted), 2 on a usage or model error.\n\n' +
        'Examples:\n  fundus predict samples/images\n  fundus predict models/default photos/ --out results.csv --heatmaps overlays/\n' +
        '  fundus predict --model runs/m1 big-folder/ --format json --out preds.jsonl --resume',
    )
    .action(async (paths: string[], flags: PredictFlags) => {
      let modelDir = flags.model;
      let inputs = paths;
      if (!modelDir && paths.length > 0 && (await isModelDir(paths[0]))) {
        modelDir = paths[0];
        inputs = paths.slice(1);
      }
      if (inputs.length === 0) throw new InputError('no images given: name image files or folders after the model directory');
      const dir = await resolveModelDir(modelDir);
      const format: PredictFormat = flags.format ?? (flags.out ? formatFromPath(flags.out) ?? 'json' : 'table');
      if (flags.resume && !flags.out) throw new InputError('--resume needs --out (the file to resume)');
      // Before the images are walked or the model loaded: an --out or --heatmaps that would be refused fails now.
      if (flags.out) await checkPredictOut(flags.out);
      if (flags.heatmaps) await checkHeatmapsDir(flags.heatmaps);
      const images = await collectImages(inputs);
      await initBatchPrediction();
      const model = await loadModel(dir);
      const s = await runPredict({
        model,
        images,
        format,
        out: flags.out,
        resume: flags.resume,
        heatmaps: flags.heatmaps,
        heatmapMethod: flags.heatmapMethod,
        heatmapClasses: flags.heatmapClasses,
        batchSize: flags.batchSize,
        quiet: flags.quiet,
        gradabilityCheck: flags.gradabilityCheck,
        showIdentifiers: flags.showIdentifiers,
      });
      if (!s.failuresReported) for (const f of s.failed) process.stderr.write(`fundus predict: skipped ${f.file}: ${f.message}\n`);
      const rate = s.predicted > 0 ? ` (${(s.predicted / s.seconds).toFixed(1)} images/s)` : '';
      const parts = [`predicted ${s.predicted} image${s.predicted === 1 ? '' : 's'} in ${s.seconds.toFixed(1)} s${rate}`];
      if (s.skipped) parts.push(`${s.skipped} already in ${flags.out}`);
      if (s.ungradable) parts.push(`${s.ungradable} ungradable (reported with the reasons, not predicted)`);
      if (s.heatmaps) parts.push(`${s.heatmaps} heatmaps in ${flags.heatmaps}`);
      if (s.failed.length) parts.push(`${s.failed.length} unreadable (skipped)`);
      if (!flags.quiet || s.failed.length) process.stderr.write(`fundus predict: ${parts.join('; ')}${flags.out ? ` → ${flags.out}` : ''}\n`);
      if (s.failed.length) process.exitCode = 3;
    });

  program
    .command('serve')
    .description('Serve the HTTP API and the web viewer (http://127.0.0.1:8080/ by default)')
    .argument('[model-dir]', 'model directory (default: the bundled model, models/default)')
    .option('-m, --model <dir>', 'model directory')
    .option('--host <address>', 'address to listen on', '127.0.0.1')
    .option('-p, --port <n>', 'port (0 picks a free one)', (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InputError(`--port must be 0..65535 (got "${v}")`);
      return n;
    }, 8080)
    .option('--allow-remote', 'allow listening on an address other machines can reach')
    .option('--token <token>', 'require this API token on every route; prefer --token-file or $FUNDUS_TOKEN, since a command line is visible to every user in ps')
    .option('--token-file <path>', 'read the API token from the first line of this file (which only you may read: chmod 600)')
    .option('--allowed-host <name>', 'without a token, also answer requests whose Host header names this (repeatable; IP addresses and localhost always are)', (v: string, all: string[] = []) => [...all, v])
    .option('--body-limit <bytes>', 'largest accepted upload in bytes', numberOption('--body-limit', POSITIVE_INTEGER), DEFAULT_BODY_LIMIT)
    .option('--max-in-flight <n>', 'predict/explain requests admitted at once (uploading, running or queued); beyond that the server answers 503', numberOption('--max-in-flight', POSITIVE_INTEGER), DEFAULT_MAX_IN_FLIGHT)
    .option('--upload-timeout <ms>', 'longest time a predict/explain upload may take, headers to last byte; then 408 and the connection is closed', numberOption('--upload-timeout', POSITIVE_INTEGER), DEFAULT_UPLOAD_TIMEOUT)
    .option('--upload-idle-timeout <ms>', 'longest pause in a predict/explain upload; then 408 and the connection is closed', numberOption('--upload-idle-timeout', POSITIVE_INTEGER), DEFAULT_UPLOAD_IDLE_TIMEOUT)
    .option('-b, --batch-size <n>', 'largest batch formed from concurrent requests', numberOption('--batch-size', POSITIVE_INTEGER), 16)
    .option('--inference-threads <n>', 'threads that run the model, each with its own copy of it (the engine already uses every core: more help only to interleave long heatmaps with predictions)', numberOption('--inference-threads', POSITIVE_INTEGER), 1)
    .option('--log', 'log every request (JSON lines on stdout)')
    .option('--no-gradability-check', 'predict photographs the gradability gate refuses (not a fundus photograph, too dark, no disc, ...; see docs/gradability.md) instead of reporting them ungradable: for research only')
    .addHelpText(
      'after',
      '\nRoutes: GET / (viewer), POST /v1/predict, POST /v1/explain?class=…&method=…, GET /v1/model, GET /healthz\n' +
        '(liveness), GET /readyz (503 while every predict/explain slot is taken), GET /openapi.json. With a token, open\n' +
        'the viewer once as http://host:port/?token=<token>. See docs/serve.md.',
    )
    .action(async (positional: string | undefined, flags: ServeFlags) => {
      checkBindAddress(flags.host, !!flags.allowRemote);
      if (flags.token && flags.tokenFile) throw new InputError('give either --token or --token-file, not both');
      const token = flags.tokenFile ? await readTokenFile(flags.tokenFile) : (flags.token ?? (process.env.FUNDUS_TOKEN || undefined));
      const dir = await resolveModelDir(flags.model ?? positional);
      const { startServer } = await import('./start.js');
      await startServer({
        modelDir: dir,
        host: flags.host,
        port: flags.port,
        token,
        allowedHosts: flags.allowedHost,
        bodyLimit: flags.bodyLimit,
        maxInFlight: flags.maxInFlight,
        uploadTimeout: flags.uploadTimeout,
        uploadIdleTimeout: flags.uploadIdleTimeout,
        batchSize: flags.batchSize,
        inferenceThreads: flags.inferenceThreads,
        logger: !!flags.log,
        gradabilityCheck: flags.gradabilityCheck,
      });
    });
}
