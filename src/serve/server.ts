import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { isDicomBytes } from '../data/dicom.js';
import multipart from '@fastify/multipart';
import fastifyStatic from '@fastify/static';
import { performance } from 'node:perf_hooks';
import { isCamMethod, CAM_METHODS, type CamMethod } from '../explain/cam.js';
import { COLORMAPS, type Colormap } from '../explain/overlay.js';
import { InputError } from '../util/errors.js';
import type { ErrorBody, ExplainResponse, PredictResponse } from './api-types.js';
import { hostAllowed, hostHeaderName, requestToken, tokenMatches, TOKEN_COOKIE } from './auth.js';
import { InferenceUnavailableError } from './inference-pool.js';
import type { ModelService } from './model-service.js';
import { openApiDocument } from './openapi.js';
import { FHIR_JSON, fhirBundle } from './fhir.js';
import { modelIdentity } from './predict-cli.js';
import { dropSlowUpload, SlotGate, type SlotCounts, type UploadTimeouts } from './slots.js';
import { DEFAULT_BODY_LIMIT, DEFAULT_MAX_IN_FLIGHT, DEFAULT_UPLOAD_IDLE_TIMEOUT, DEFAULT_UPLOAD_TIMEOUT } from './limits.js';

export interface ServerOptions {
  service: ModelService;
  /** When set, every route (the viewer included) needs it: Bearer header, X-API-Key, or `?token=` once (cookie). */
  token?: string;
  /** Largest accepted request body in bytes. */
  bodyLimit?: number;
  /** Predict/explain requests admitted at once (uploading, running or queued); beyond that the server answers 503. */
  maxInFlight?: number;
  /** Milliseconds a predict/explain upload may take from its headers to its last byte; then 408 and the connection closes. */
  uploadTimeout?: number;
  /** Milliseconds a predict/explain upload may pause (no body bytes arriving); then 408 and the connection closes. */
  uploadIdleTimeout?: number;
  /**
   * Host names (besides IP addresses and localhost) that requests may name in their Host header when no token is
   * set: the bound address and `--allowed-host`. Others get 421, which stops DNS rebinding (auth.ts, hostAllowed).
   */
  allowedHosts?: readonly string[];
  /** Folder of the built viewer (web/dist); no viewer when absent. */
  webRoot?: string;
  logger?: boolean;
}

export { DEFAULT_BODY_LIMIT, DEFAULT_MAX_IN_FLIGHT, DEFAULT_UPLOAD_TIMEOUT, DEFAULT_UPLOAD_IDLE_TIMEOUT };

const IMAGE_TYPES = ['image/jpeg', 'image/png', 'image/webp', 'image/tiff', 'application/dicom', 'application/octet-stream'];

class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
  }
}

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  404: 'Not Found',
  405: 'Method Not Allowed',
  406: 'Not Acceptable',
  408: 'Request Timeout',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  421: 'Misdirected Request',
  422: 'Unprocessable Entity',
  499: 'Client Closed Request',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

function sendError(reply: FastifyReply, statusCode: number, message: string): FastifyReply {
  const body: ErrorBody = { statusCode, error: REASONS[statusCode] ?? 'Error', message };
  return reply.code(statusCode).type('application/json; charset=utf-8').send(body);
}

/** The photograph of a request: a raw image body or the first file of a multipart form. */
async function readImage(req: FastifyRequest, bodyLimit: number): Promise<{ data: Buffer; name: string }> {
  const { data, name } = await readUpload(req, bodyLimit);
  // ?frame=n picks a frame of a multi-frame DICOM upload, named as the CLI names frames (`x.dcm#frame-2`).
  const frame = (req.query as { frame?: number }).frame;
  if (frame === undefined) return { data, name };
  if (!isDicomBytes(data)) throw new HttpError(422, `${name}: ?frame was given, but the photograph is not a DICOM file`);
  return { data, name: `${name}#frame-${frame}` };
}

async function readUpload(req: FastifyRequest, bodyLimit: number): Promise<{ data: Buffer; name: string }> {
  const q = req.query as { filename?: string };
  if (req.isMultipart()) {
    let part, data: Buffer;
    try {
      part = await req.file({ limits: { fileSize: bodyLimit, files: 1, fields: 20, parts: 21 } });
      if (!part) throw new HttpError(400, 'the multipart form has no file: send the photograph in a file field such as "image"');
      data = await part.toBuffer();
    } catch (err) {
      // The multipart parser reports a malformed form with plain errors: that is the client's mistake, not ours.
      if (err instanceof HttpError || (err as { statusCode?: number }).statusCode) throw err;
      throw new HttpError(400, `malformed multipart form: ${(err as Error).message}`);
    }
    return { data, name: part.filename || q.filename || 'upload' };
  }
  const body = req.body;
  if (!Buffer.isBuffer(body)) {
    throw new HttpError(
      req.body === undefined ? 400 : 415,
      req.body === undefined
        ? 'the request has no body: send a JPEG or PNG photograph (raw, or as multipart/form-data)'
        : `expected an image body (${IMAGE_TYPES.join(', ')} or multipart/form-data), got ${req.headers['content-type'] ?? 'no content type'}`,
    );
  }
  return { data: body, name: q.filename || 'upload' };
}

/** Builds the fundus HTTP server (not yet listening). */
export async function buildServer(opts: ServerOptions): Promise<FastifyInstance> {
  const { service } = opts;
  const bodyLimit = opts.bodyLimit ?? DEFAULT_BODY_LIMIT;
  const maxInFlight = opts.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT;
  const uploadLimits: UploadTimeouts = {
    total: opts.uploadTimeout ?? DEFAULT_UPLOAD_TIMEOUT,
    idle: opts.uploadIdleTimeout ?? DEFAULT_UPLOAD_IDLE_TIMEOUT,
  };
  const app = Fastify({
    logger: opts.logger ?? false,
    bodyLimit,
    // Backstops for every route; uploads to the predict/explain routes are held to the much shorter upload timeouts
    // (slots.ts), so that slow clients cannot hold their slots for this long.
    requestTimeout: 60_000,
    connectionTimeout: 120_000,
    forceCloseConnections: true,
  });

  app.removeAllContentTypeParsers();
  app.addContentTypeParser(IMAGE_TYPES, { parseAs: 'buffer', bodyLimit }, (_req, body, done) => done(null, body));
  // Any other body is read (so that the error names its type) but never interpreted.
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit }, (_req, body, done) => done(null, { unsupported: true, size: body.length }));
  await app.register(multipart, { limits: { fileSize: bodyLimit, files: 1 } });

  app.addHook('onSend', async (_req, reply, payload) => {
    reply.header('x-content-type-options', 'nosniff');
    reply.header('referrer-policy', 'no-referrer');
    reply.header(
      'content-security-policy',
      "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'",
    );
    return payload;
  });

  if (opts.token) {
    const token = opts.token;
    app.addHook('onRequest', async (req, reply) => {
      const given = requestToken(req.headers, req.query);
      if (!tokenMatches(given, token)) {
        reply.header('www-authenticate', 'Bearer realm="fundus"');
        dropSlowUpload(req, uploadLimits);
        return sendError(reply, 401, 'this server needs an API token: send "Authorization: Bearer <token>" (or open the viewer with ?token=<token>)');
      }
      // The viewer is opened once with ?token=…; the cookie then authorises its assets and API calls.
      if ((req.query as { token?: string }).token) {
        reply.header('set-cookie', `${TOKEN_COOKIE}=${encodeURIComponent(token)}; HttpOnly; SameSite=Strict; Path=/`);
      }
    });
  } else {
    const allowed = new Set((opts.allowedHosts ?? []).map((h) => hostHeaderName(h)!));
    app.addHook('onRequest', async (req, reply) => {
      if (hostAllowed(req.headers.host, allowed)) return;
      dropSlowUpload(req, uploadLimits);
      const name = hostHeaderName(req.headers.host)!.slice(0, 100);
      return sendError(
        reply,
        421,
        `this server does not answer to the host name "${name}" (a web page may be trying to reach it through DNS rebinding); ` +
          'start it with --allowed-host <name> to accept that name, or set a token',
      );
    });
  }

  const slots = new SlotGate(maxInFlight, uploadLimits);
  const admit = async (req: FastifyRequest, reply: FastifyReply) => {
    if (!slots.admit(req, reply)) {
      reply.header('retry-after', '1');
      dropSlowUpload(req, uploadLimits);
      return sendError(reply, 503, `the server is busy (${maxInFlight} requests in progress); retry shortly`);
    }
  };
  const limited = { onRequest: admit };
  /** Work not worth starting: nobody is left to receive its answer. */
  const checkClient = (req: FastifyRequest) => {
    if (slots.signal(req)?.aborted) throw new HttpError(499, 'the client closed the connection');
  };

  app.setErrorHandler((err, req, reply) => {
    // Whatever failed, a client that left (or was cut off with 408) gets no answer and the server logs nothing.
    if (reply.sent) return;
    if (slots.signal(req)?.aborted) return sendError(reply, 499, 'the client closed the connection');
    if (err instanceof HttpError) return sendError(reply, err.statusCode, err.message);
    if (err instanceof InferenceUnavailableError) {
      app.log.warn(err.message);
      reply.header('retry-after', '1');
      return sendError(reply, 503, err.message);
    }
    if (err instanceof InputError) return sendError(reply, 422, err.message);
    const e = err as { statusCode?: number; code?: string; message: string; validation?: unknown };
    if (e.validation) return sendError(reply, 400, `invalid request: ${e.message}`);
    if (e.code === 'FST_REQ_FILE_TOO_LARGE' || e.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      return sendError(reply, 413, `the body is larger than the limit of ${bodyLimit} bytes`);
    }
    if (e.statusCode && e.statusCode >= 400 && e.statusCode < 500) return sendError(reply, e.statusCode, e.message);
    app.log.error(err);
    return sendError(reply, 500, 'internal error while processing the request');
  });
  app.setNotFoundHandler((req, reply) => sendError(reply, 404, `no route ${req.method} ${req.url.split('?')[0]}`));

  const info = { version: service.version, architecture: service.model.metadata.architecture, task: service.model.metadata.task };

  app.get('/healthz', async () => ({ status: 'ok', model: service.version }));
  // Readiness: 503 while no predict/explain slot is free, or while the inference thread restarts (a load balancer then
  // sends the next request elsewhere).
  app.get('/readyz', async (_req, reply): Promise<{ status: 'ready' | 'saturated' | 'restarting'; model: string; slots: SlotCounts }> => {
    const counts = slots.counts();
    const status = !service.available ? 'restarting' : counts.free > 0 ? 'ready' : 'saturated';
    if (status !== 'ready') reply.code(503).header('retry-after', '1');
    return { status, model: service.version, slots: counts };
  });
  app.get('/v1/model', async () => service.card());
  const openapi = openApiDocument({ version: service.version, classes: service.classes, tokenRequired: !!opts.token, explanation: service.defaultExplanation });
  app.get('/openapi.json', async () => openapi);

  const filenameQuery = {
    type: 'object',
    properties: { filename: { type: 'string', maxLength: 512 }, frame: { type: 'integer', minimum: 1, maximum: 65535 }, token: { type: 'string' } },
  };

  const predictQuery = { type: 'object', properties: { ...filenameQuery.properties, format: { type: 'string', enum: ['json', 'fhir'] } } };
  // The FHIR Device's version is the fundus.json sha256, as `fundus predict --format fhir` records it.
  const identity = await modelIdentity(service.model);
  app.post('/v1/predict', { ...limited, schema: { querystring: predictQuery } }, slots.guard(async (req, reply): Promise<PredictResponse | Record<string, unknown>> => {
    const t0 = performance.now();
    const { data, name } = await readImage(req, bodyLimit);
    checkClient(req);
    const { image, record } = await service.predict(data, name, slots.signal(req));
    const { classes, thresholds } = service.model.metadata;
    const q = req.query as { filename?: string; format?: 'json' | 'fhir' };
    if (image.dicom) record.dicom = image.dicom;
    const accept = req.headers.accept ?? '';
    if ((q.format ?? (accept.includes(FHIR_JSON) ? 'fhir' : 'json')) === 'fhir') {
      const named = q.filename || req.isMultipart() ? { ...record, file: name } : record;
      reply.type(`${FHIR_JSON}; charset=utf-8`);
      return fhirBundle([named], { identity, classes, thresholds });
    }
    return {
      ...(q.filename || req.isMultipart() ? { file: name } : {}),
      ...record,
      classes,
      thresholds,
      model: info,
      image,
      timeMs: Math.round((performance.now() - t0) * 10) / 10,
    };
  }));

  app.post(
    '/v1/explain',
    {
      ...limited,
      schema: {
        querystring: {
          type: 'object',
          required: ['class'],
          properties: {
            class: { type: 'string', minLength: 1, maxLength: 100 },
            method: { type: 'string', enum: [...CAM_METHODS], default: service.defaultExplanation.method },
            format: { type: 'string', enum: ['png', 'json'] },
            opacity: { type: 'number', minimum: 0, maximum: 1, default: 0.45 },
            colormap: { type: 'string', enum: [...COLORMAPS], default: 'jet' },
            ...filenameQuery.properties,
          },
        },
      },
    },
    slots.guard(async (req, reply) => {
      const q = req.query as { class: string; method: string; format?: 'png' | 'json'; opacity: number; colormap: Colormap };
      let classIndex: number;
      try {
        classIndex = service.classIndex(q.class);
      } catch (err) {
        throw new HttpError(400, (err as Error).message);
      }
      if (!isCamMethod(q.method)) throw new HttpError(400, `unknown method "${q.method}" (known: ${CAM_METHODS.join(', ')})`);
      const method: CamMethod = q.method;
      const accept = req.headers.accept ?? '';
      const format = q.format ?? (/application\/json/.test(accept) && !/image\/png/.test(accept) ? 'json' : 'png');
      const { data, name } = await readImage(req, bodyLimit);
      checkClient(req);
      const overlay = format === 'png' ? { alpha: q.opacity, colormap: q.colormap } : undefined;
      const ex = await service.explain(data, name, classIndex, method, overlay, slots.signal(req));
      if (format === 'json') {
        const body: ExplainResponse = {
          class: service.classes[classIndex],
          method,
          layer: ex.layer,
          probability: Math.round(ex.probability * 1e6) / 1e6,
          model: { version: service.version },
          heatmap: { width: ex.heatmap.width, height: ex.heatmap.height, data: Array.from(ex.heatmap.data, (v) => Math.round(v * 1e4) / 1e4) },
          crop: { x: ex.geometry.x, y: ex.geometry.y, side: ex.geometry.side, width: ex.geometry.width, height: ex.geometry.height },
          image: ex.image,
        };
        return body;
      }
      return reply
        .type('image/png')
        .header('content-disposition', `inline; filename="${service.classes[classIndex].replace(/[^a-z0-9]+/gi, '-')}.${method}.png"`)
        .send(ex.png);
    }),
  );

  // The photograph as the server decodes it, for clients that cannot show the upload themselves (a browser and DICOM).
  app.post('/v1/photo', { ...limited, schema: { querystring: filenameQuery } }, slots.guard(async (req, reply) => {
    const { data, name } = await readImage(req, bodyLimit);
    checkClient(req);
    return reply.type('image/png').send(await service.photo(data, name, slots.signal(req)));
  }));

  if (opts.webRoot) {
    await app.register(fastifyStatic, { root: opts.webRoot, prefix: '/', index: 'index.html', cacheControl: true, maxAge: 0 });
  }
  return app;
}
