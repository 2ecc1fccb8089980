import type { FastifyInstance } from 'fastify';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { initEngine } from '../engine/index.js';
import { ensureWebBuilt, WEB_DIST } from '../../web/build.js';
import { isLoopbackHost } from './auth.js';
import { ModelService } from './model-service.js';
import { buildServer } from './server.js';

export interface StartOptions {
  modelDir: string;
  host: string;
  port: number;
  token?: string;
  bodyLimit?: number;
  maxInFlight?: number;
  /** Milliseconds allowed for a predict/explain upload, and for a pause in one (see ServerOptions). */
  uploadTimeout?: number;
  uploadIdleTimeout?: number;
  batchSize?: number;
  logger?: boolean;
  /** Print the address and stop on SIGINT/SIGTERM (the CLI); tests and benchmarks handle that themselves. */
  interactive?: boolean;
}

/** Loads the model, builds the viewer when needed, and listens. Resolves with the server and its URL. */
export async function startServer(opts: StartOptions): Promise<{ app: FastifyInstance; url: string }> {
  const interactive = opts.interactive ?? true;
  // Not initBatchPrediction(): a request's latency suffers when its decoding yields to the engine and to whatever else
  // runs on the machine (measured: p95 at 8 connections 34-37 ms -> 43-51 ms); that trade is for batch prediction.
  const engine = await initEngine();
  const service = await ModelService.load(opts.modelDir, { maxBatch: opts.batchSize });
  let webRoot: string | undefined = WEB_DIST;
  try {
    await ensureWebBuilt();
  } catch (err) {
    // A read-only install can still serve the API, and the viewer too if a bundle is there.
    webRoot = existsSync(join(WEB_DIST, 'index.html')) ? WEB_DIST : undefined;
    process.stderr.write(`fundus serve: cannot build the viewer (${(err as Error).message.split('\n')[0]}); ${webRoot ? 'serving the existing bundle' : 'serving the API only'}\n`);
  }
  const app = await buildServer({
    service,
    token: opts.token,
    bodyLimit: opts.bodyLimit,
    maxInFlight: opts.maxInFlight,
    uploadTimeout: opts.uploadTimeout,
    uploadIdleTimeout: opts.uploadIdleTimeout,
    webRoot,
    logger: opts.logger,
  });
  app.addHook('onClose', async () => service.close());
  await app.listen({ host: opts.host, port: opts.port });
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : opts.port;
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  const url = `http://${host}:${port}/`;
  if (interactive) {
    const m = service.model.metadata;
    console.log(`fundus serve: ${url}  (model ${m.architecture} ${m.task}, version ${service.version}, engine ${engine.backend})`);
    if (opts.token) console.log('  API token required; open the viewer as ' + `${url}?token=<token>`);
    else if (!isLoopbackHost(opts.host)) console.log('  warning: reachable from other machines without an API token (--token)');
    const stop = async () => {
      await app.close();
      process.exit(0);
    };
    process.once('SIGINT', () => void stop());
    process.once('SIGTERM', () => void stop());
  }
  return { app, url };
}
