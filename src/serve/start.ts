import type { FastifyInstance } from 'fastify';
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
  batchSize?: number;
  logger?: boolean;
  /** Print the address and stop on SIGINT/SIGTERM (the CLI); tests and benchmarks handle that themselves. */
  interactive?: boolean;
}

/** Loads the model, builds the viewer when needed, and listens. Resolves with the server and its URL. */
export async function startServer(opts: StartOptions): Promise<{ app: FastifyInstance; url: string }> {
  const interactive = opts.interactive ?? true;
  const engine = await initEngine();
  const service = await ModelService.load(opts.modelDir, { maxBatch: opts.batchSize });
  await ensureWebBuilt();
  const app = await buildServer({
    service,
    token: opts.token,
    bodyLimit: opts.bodyLimit,
    maxInFlight: opts.maxInFlight,
    webRoot: WEB_DIST,
    logger: opts.logger,
  });
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
