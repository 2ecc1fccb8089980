import type { FastifyInstance } from 'fastify';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InputError } from '../util/errors.js';
import { isLoopbackHost } from './auth.js';
import { ModelService } from './model-service.js';
import { buildServer } from './server.js';

/**
 * The viewer's bundle, built by `npm run build:web` (and by `npm run build` and npm's `prepare`, so a checkout set
 * up with `npm ci` and an installed package both have it): web/dist beside src/ or dist/.
 */
export const VIEWER_DIR = fileURLToPath(new URL('../../web/dist', import.meta.url));

export interface StartOptions {
  modelDir: string;
  /** The viewer's built files (default VIEWER_DIR); the API alone is served when they are missing. */
  webRoot?: string;
  host: string;
  port: number;
  token?: string;
  /** Host names the API answers to without a token, besides IP addresses, localhost and `host` (ServerOptions). */
  allowedHosts?: string[];
  bodyLimit?: number;
  maxInFlight?: number;
  /** Milliseconds allowed for a predict/explain upload, and for a pause in one (see ServerOptions). */
  uploadTimeout?: number;
  uploadIdleTimeout?: number;
  batchSize?: number;
  /** Inference threads, each with its own copy of the model (default 1: the engine already uses every core). */
  inferenceThreads?: number;
  logger?: boolean;
  /** Refuse photographs that fail the gradability gate (default true; see ModelService.load). */
  gradabilityCheck?: boolean;
  /** Print the address and stop on SIGINT/SIGTERM (the CLI); tests and benchmarks handle that themselves. */
  interactive?: boolean;
}

/** Why the server could not listen, as the user can act on it (no stack trace); other failures as they are. */
function listenError(err: unknown, host: string, port: number): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  const where = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  if (code === 'EADDRINUSE') return new InputError(`cannot listen on ${where}: the port is already in use (another fundus serve?); choose another with --port, or --port 0 for a free one`);
  if (code === 'EACCES') return new InputError(`cannot listen on ${where}: permission denied (ports below 1024 need privileges); choose another with --port`);
  if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND') return new InputError(`cannot listen on ${where}: no such address on this machine (--host)`);
  return err;
}

/**
 * Starts the inference threads on the model (ModelService), builds the viewer when needed, and listens. Resolves with
 * the server, its URL and the model service.
 */
export async function startServer(opts: StartOptions): Promise<{ app: FastifyInstance; url: string; service: ModelService }> {
  const interactive = opts.interactive ?? true;
  // The inference threads set the engine up as initEngine() does, not initBatchPrediction(): a request's latency
  // suffers when its decoding yields to the engine and to whatever else runs on the machine (measured: p95 at 8
  // connections 34-37 ms -> 43-51 ms); that trade is for batch prediction.
  const service = await ModelService.load(opts.modelDir, { maxBatch: opts.batchSize, gradabilityCheck: opts.gradabilityCheck, threads: opts.inferenceThreads });
  const viewer = opts.webRoot ?? VIEWER_DIR;
  const webRoot = existsSync(join(viewer, 'index.html')) ? viewer : undefined;
  if (!webRoot) process.stderr.write(`fundus serve: the viewer is not built (no ${join(viewer, 'index.html')}; run npm run build:web); serving the API only\n`);
  let app: FastifyInstance;
  try {
    app = await buildServer({
      service,
      token: opts.token,
      allowedHosts: [opts.host, ...(opts.allowedHosts ?? [])],
      bodyLimit: opts.bodyLimit,
      maxInFlight: opts.maxInFlight,
      uploadTimeout: opts.uploadTimeout,
      uploadIdleTimeout: opts.uploadIdleTimeout,
      webRoot,
      logger: opts.logger,
    });
  } catch (err) {
    await service.close(); // the inference threads would keep the process alive
    throw err;
  }
  app.addHook('onClose', async () => service.close());
  try {
    await app.listen({ host: opts.host, port: opts.port });
  } catch (err) {
    await app.close();
    throw listenError(err, opts.host, opts.port);
  }
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : opts.port;
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  const url = `http://${host}:${port}/`;
  if (interactive) {
    const m = service.model.metadata;
    const threads = service.threads.length;
    console.log(
      `fundus serve: ${url}  (model ${m.architecture} ${m.task}, version ${service.version}, engine ${service.engine.backend}, ` +
        `${threads} inference thread${threads === 1 ? '' : 's'})`,
    );
    if (opts.token) console.log('  API token required; open the viewer as ' + `${url}?token=<token>`);
    else if (!isLoopbackHost(opts.host)) console.log('  warning: reachable from other machines without an API token (--token)');
    const stop = async () => {
      await app.close();
      process.exit(0);
    };
    process.once('SIGINT', () => void stop());
    process.once('SIGTERM', () => void stop());
  }
  return { app, url, service };
}
