import type { Command } from 'commander';
import { Option } from 'commander';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import type { Queue } from 'bullmq';
import { InputError } from '../util/errors.js';
import { formatFromPath, type OutputFormat } from '../serve/output.js';
import { resolveModelDir, withHeatmapChoice } from '../serve/commands.js';
import { numberOption, POSITIVE_INTEGER } from '../util/cli-options.js';
import { checkHeatmapsDir, type HeatmapChoice } from '../serve/heatmap-files.js';
import type { CamMethod } from '../explain/cam.js';
import { connectRedis, redactUrl, redisTarget, REDIS_URL_ENV, DEFAULT_REDIS_URL, type RedisTarget } from './connection.js';
import { checkQueueName, DEFAULT_QUEUE, type ChunkData } from './batch.js';
import { DEFAULT_RETRY, openQueue, type RetryPolicy } from './jobs.js';
import { DEFAULT_BYTES_CAPS, submitPhotos } from './submit.js';
import { batchStatus, failedPhotos, formatStatus, isFinished } from './status.js';
import { writeResults } from './results.js';
import { drain, retryFailed } from './maintenance.js';
import { DEFAULT_STALL, runWorker } from './worker.js';

interface ConnectionFlags {
  redis?: string;
  redisCa?: string;
  queue: string;
}

function withConnection(cmd: Command): Command {
  return cmd
    .option('--redis <url>', `Redis URL: redis://[:password@]host[:port][/db], or rediss://... for TLS (default: $${REDIS_URL_ENV}, else ${DEFAULT_REDIS_URL}); prefer the variable for a password, since arguments are visible to other users`)
    .option('--redis-ca <pem>', 'certificate authority of a rediss:// server (default: the system\'s)')
    .option('--queue <name>', 'the queue (one batch, one model)', checkQueueName, DEFAULT_QUEUE);
}

function target(flags: ConnectionFlags): RedisTarget {
  return redisTarget(flags.redis, flags.redisCa);
}

/** Runs a queue command with a Redis client and the BullMQ queue, closing both however it ends. */
async function withQueue<T>(flags: ConnectionFlags, fn: (redis: Redis, queue: Queue<ChunkData>, t: RedisTarget) => Promise<T>): Promise<T> {
  const t = target(flags);
  const redis = await connectRedis(t);
  const queue = await openQueue(t, flags.queue);
  try {
    return await fn(redis, queue, t);
  } finally {
    await queue.close();
    redis.disconnect();
  }
}

function milliseconds(name: string) {
  return numberOption(name, POSITIVE_INTEGER);
}

function retryOptions(cmd: Command): Command {
  return cmd
    .option('--attempts <n>', 'attempts per chunk (unreadable photographs are read again at each; then they are failed)', numberOption('--attempts', POSITIVE_INTEGER), DEFAULT_RETRY.attempts)
    .option('--backoff <ms>', 'wait before the second attempt, doubled before each further one', milliseconds('--backoff'), DEFAULT_RETRY.backoffMs);
}

interface SubmitFlags {
  model?: string;
  chunk: number;
  gradabilityCheck: boolean;
  bytes?: boolean;
  maxPhotoBytes: number;
  maxRedisBytes: number;
  heatmaps?: string;
  /** Absent: the model's own default (`defaultExplanation`). */
  heatmapMethod?: CamMethod;
  heatmapClasses: HeatmapChoice['classes'];
  attempts: number;
  backoff: number;
}

function say(line: string): void {
  process.stderr.write(`fundus queue: ${line}\n`);
}

export function register(program: Command): void {
  withConnection(
    program
      .command('worker')
      .description('Score photographs from a Redis queue (run any number, on any machines): loads the model once, takes chunks until stopped')
      .option('-m, --model <dir>', 'model directory (default: the bundled model); chunks submitted for another model are refused')
      .option('-c, --concurrency <n>', 'chunks worked on at once by this process', numberOption('--concurrency', POSITIVE_INTEGER), 1)
      .option('-b, --batch-size <n>', 'photographs per inference batch', numberOption('--batch-size', POSITIVE_INTEGER), 16)
      .option('--lock-duration <ms>', 'how long a chunk stays taken without renewal (renewed every half of it); a lost worker\'s chunk returns to the queue after about this plus --stalled-interval', milliseconds('--lock-duration'), DEFAULT_STALL.lockDurationMs)
      .option('--stalled-interval <ms>', 'how often to look for chunks of lost workers', milliseconds('--stalled-interval'), DEFAULT_STALL.stalledIntervalMs)
      .option('--max-stalled <n>', 'times a chunk may be recovered from a lost worker before it is failed', numberOption('--max-stalled', POSITIVE_INTEGER), DEFAULT_STALL.maxStalledCount),
  )
    .addHelpText(
      'after',
      '\nSIGTERM or Ctrl-C: stop taking chunks, finish the inference batch in hand and hand the rest of the chunk back;\n' +
        'a second signal exits at once. Exit status 0 when stopped by a signal, 2 on a usage or model error (also when the\n' +
        'queue serves another model). See docs/queue.md.',
    )
    .action(async (flags: ConnectionFlags & { model?: string; concurrency: number; batchSize: number; lockDuration: number; stalledInterval: number; maxStalled: number }) => {
      const modelDir = await resolveModelDir(flags.model);
      const code = await runWorker({
        target: target(flags),
        queue: flags.queue,
        modelDir,
        concurrency: flags.concurrency,
        batchSize: flags.batchSize,
        stall: { lockDurationMs: flags.lockDuration, stalledIntervalMs: flags.stalledInterval, maxStalledCount: flags.maxStalled },
        log: (line) => process.stderr.write(`fundus worker: ${line}\n`),
      });
      process.exit(code);
    });

  const queue = program
    .command('queue')
    .description('Distributed batch scoring on Redis: submit photographs, watch the queue, collect results (see docs/queue.md)');

  retryOptions(
    withHeatmapChoice(
      withConnection(
        queue
          .command('submit')
          .description('Enqueue photographs (files, folders walked recursively, or list files of paths: .txt/.list/.lst) for the workers; a photograph already in the batch (same bytes) is not enqueued again')
          .argument('<paths...>', 'photographs, folders and list files (paths in a list are relative to the list\'s folder)')
          .option('-m, --model <dir>', 'the model that must score them (default: the bundled model); the batch is bound to it')
          .option('--chunk <n>', 'photographs per job', numberOption('--chunk', POSITIVE_INTEGER), 64)
          .option('--no-gradability-check', 'score photographs the gradability gate refuses instead of reporting them ungradable (as `fundus predict --no-gradability-check`: for research only)')
          .option('--bytes', 'send the photographs\' bytes through Redis instead of their paths (for workers without the shared storage)')
          .option('--max-photo-bytes <n>', 'with --bytes: largest photograph accepted', numberOption('--max-photo-bytes', POSITIVE_INTEGER), DEFAULT_BYTES_CAPS.maxPhotoBytes)
          .option('--max-redis-bytes <n>', 'with --bytes: most bytes of the batch\'s photographs held in Redis at once', numberOption('--max-redis-bytes', POSITIVE_INTEGER), DEFAULT_BYTES_CAPS.maxTotalBytes)
          .option(
            '--heatmaps <dir>',
            'workers also write heatmap overlay PNGs (as `fundus predict --heatmaps`) into this folder, which every worker must reach at the same path ' +
              '(shared storage, also with --bytes): <name>.<content hash, 8 hex>.<class>.<method>.png; JSON results name them. Photographs already scored without heatmaps are enqueued again for them',
          ),
      ),
    ),
  )
    .addHelpText('after', '\nExit status: 0, or 3 when some files could not be read here (listed; the others are enqueued), 2 on a usage error.')
    .action(async (paths: string[], flags: ConnectionFlags & SubmitFlags) => {
      const modelDir = await resolveModelDir(flags.model);
      // Before Redis is reached or the photographs read: a --heatmaps that would be refused fails now.
      if (flags.heatmaps) await checkHeatmapsDir(flags.heatmaps);
      const retry: RetryPolicy = { attempts: flags.attempts, backoffMs: flags.backoff };
      const s = await withQueue(flags, (redis, q) =>
        submitPhotos({
          redis,
          queue: q,
          queueName: flags.queue,
          modelDir,
          inputs: paths,
          chunk: flags.chunk,
          retry,
          gradability: flags.gradabilityCheck,
          bytes: flags.bytes ? { maxPhotoBytes: flags.maxPhotoBytes, maxTotalBytes: flags.maxRedisBytes } : undefined,
          heatmaps: flags.heatmaps ? { dir: flags.heatmaps, choice: { method: flags.heatmapMethod, classes: flags.heatmapClasses } } : undefined,
        }),
      );
      for (const u of s.unreadable) say(`not enqueued ${u.file}: ${u.reason}`);
      const parts = [`enqueued ${s.enqueued} photograph${s.enqueued === 1 ? '' : 's'} in ${s.chunks} chunk${s.chunks === 1 ? '' : 's'} on queue "${flags.queue}"`];
      if (s.forHeatmaps) parts.push(`${s.forHeatmaps} of them already in the batch without heatmaps, for their heatmaps`);
      if (s.known) parts.push(`${s.known} already in the batch (not scored again)`);
      if (s.unreadable.length) parts.push(`${s.unreadable.length} not enqueued`);
      say(parts.join('; '));
      if (s.unreadable.length) process.exitCode = 3;
    });

  withConnection(
    queue
      .command('status')
      .description('Show the batch: photographs done / failed / active / waiting, chunks, workers, rate and time left')
      .option('--json', 'one JSON object (the URL is shown without its password)')
      .option('-w, --watch [seconds]', 'refresh every few seconds (default 2) until nothing is waiting or active')
      .option('--failed', 'also list the failed photographs with their reasons'),
  ).action(async (flags: ConnectionFlags & { json?: boolean; watch?: boolean | string; failed?: boolean }) => {
    const every = flags.watch === undefined || flags.watch === false ? 0 : flags.watch === true ? 2 : Number(flags.watch);
    if (!(every >= 0)) throw new InputError(`--watch takes a number of seconds (got "${String(flags.watch)}")`);
    await withQueue(flags, async (redis, q, t) => {
      const shown = redactUrl(t.url);
      const tty = process.stdout.isTTY === true;
      let lines = 0;
      for (;;) {
        const s = await batchStatus(redis, q, flags.queue, shown);
        let text = flags.json ? JSON.stringify(s) + '\n' : formatStatus(s);
        if (flags.failed) {
          const failed = [...(await failedPhotos(redis, flags.queue, q)).values()].sort((a, b) => (a.file < b.file ? -1 : 1));
          text += flags.json ? JSON.stringify({ failed }) + '\n' : failed.map((f) => `failed ${f.file}: ${f.reason}\n`).join('');
        }
        // On a terminal the status repaints in place; piped, each refresh follows the last.
        if (tty && lines > 0 && !flags.json) process.stdout.write(`\x1b[${lines}A\x1b[J`);
        process.stdout.write(text);
        lines = text.split('\n').length - 1;
        if (every === 0 || isFinished(s)) break;
        await sleep(every * 1000);
      }
    });
  });

  withConnection(
    queue
      .command('results')
      .description('Write every scored photograph once, in the format of `fundus predict` (its header line names the model)')
      .addOption(new Option('-f, --format <format>', 'json is JSON Lines; default: from --out\'s extension, else table').choices(['table', 'json', 'csv']))
      .option('-o, --out <file>', 'write to this file (through <file>.partial; a file fundus did not write is never replaced)')
      .option('--wait', 'first wait until every photograph is scored or failed'),
  )
    .addHelpText(
      'after',
      '\nFailed photographs are listed on stderr with their reasons. Exit status: 0 when every photograph is in the output,\n' +
        '3 when some failed, 4 when some are not scored yet (the output holds those that are), 2 on a usage error.',
    )
    .action(async (flags: ConnectionFlags & { format?: OutputFormat; out?: string; wait?: boolean }) => {
      const format: OutputFormat = flags.format ?? (flags.out ? formatFromPath(flags.out) ?? 'json' : 'table');
      await withQueue(flags, async (redis, q, t) => {
        if (flags.wait) {
          while (!isFinished(await batchStatus(redis, q, flags.queue, redactUrl(t.url)))) await sleep(1000);
        }
        const s = await writeResults({ redis, queue: q, queueName: flags.queue, format, out: flags.out });
        for (const f of s.failed.sort((a, b) => (a.file < b.file ? -1 : 1))) say(`failed ${f.file}: ${f.reason}`);
        const parts = [`${s.written} photograph${s.written === 1 ? '' : 's'}${flags.out ? ` → ${flags.out}` : ''}${s.ungradable ? ` (${s.ungradable} ungradable)` : ''}`];
        if (s.failed.length) parts.push(`${s.failed.length} failed`);
        if (s.pending) parts.push(`${s.pending} not scored yet (run again later, or with --wait)`);
        if (s.withoutHeatmaps) {
          parts.push(
            `${s.withoutHeatmaps} gradable without heatmaps (scored before heatmaps were asked for, or their overlays could not be written: see the workers' logs; ` +
              `submit them again with the same --heatmaps options)`,
          );
        }
        say(parts.join('; '));
        process.exitCode = s.pending ? 4 : s.failed.length ? 3 : 0;
      });
    });

  retryOptions(
    withConnection(
      queue
        .command('retry-failed')
        .description('Requeue the failed photographs (unreadable ones and those of failed chunks) with a fresh retry budget')
        .option('--chunk <n>', 'photographs per job', numberOption('--chunk', POSITIVE_INTEGER), 64),
    ),
  ).action(async (flags: ConnectionFlags & { chunk: number; attempts: number; backoff: number }) => {
    const r = await withQueue(flags, (redis, q) => retryFailed(redis, q, flags.queue, flags.chunk, { attempts: flags.attempts, backoffMs: flags.backoff }));
    say(`requeued ${r.photographs} failed photograph${r.photographs === 1 ? '' : 's'} in ${r.chunks} chunk${r.chunks === 1 ? '' : 's'}`);
  });

  withConnection(
    queue
      .command('drain')
      .description('Empty the queue: remove every chunk, result, failure and stored photograph, and its model binding (collect results first)')
      .option('--force', 'also while chunks are being scored (their results are dropped)'),
  ).action(async (flags: ConnectionFlags & { force?: boolean }) => {
    const r = await withQueue(flags, (redis, q) => drain(redis, q, flags.queue, !!flags.force));
    say(`drained queue "${flags.queue}": ${r.photographs} photograph${r.photographs === 1 ? '' : 's'} and ${r.results} result${r.results === 1 ? '' : 's'} removed`);
  });
}
