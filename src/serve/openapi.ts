import { UNGRADABLE_REASONS } from '../data/gradability.js';
import { CAM_METHODS } from '../explain/cam.js';
import type { DefaultExplanation } from '../explain/explainer.js';
import { COLORMAPS } from '../explain/overlay.js';

/** ?frame=n: one frame of a multi-frame DICOM upload. */
const FRAME_PARAMETER = { name: 'frame', in: 'query', required: false, schema: { type: 'integer', minimum: 1, maximum: 65535 }, description: 'the frame of a multi-frame DICOM upload (from 1); the result names it <file>#frame-<n>' };

const errorRef = { $ref: '#/components/schemas/Error' };
const imageBody = {
  required: true,
  description:
    'A fundus photograph: the raw JPEG/PNG/WebP/TIFF bytes, a DICOM file (Ophthalmic Photography, Secondary Capture...; ' +
    'JPEG Baseline, JPEG Lossless or uncompressed; of a multi-frame file one frame, chosen with ?frame=n), or a multipart form with one file field.',
  content: {
    'application/dicom': { schema: { type: 'string', format: 'binary' } },
    'image/jpeg': { schema: { type: 'string', format: 'binary' } },
    'image/png': { schema: { type: 'string', format: 'binary' } },
    'image/webp': { schema: { type: 'string', format: 'binary' } },
    'image/tiff': { schema: { type: 'string', format: 'binary' } },
    'application/octet-stream': { schema: { type: 'string', format: 'binary' } },
    'multipart/form-data': {
      schema: { type: 'object', properties: { image: { type: 'string', format: 'binary' } }, required: ['image'] },
    },
  },
};
const errors = (codes: number[]) =>
  Object.fromEntries(
    codes.map((c) => [
      String(c),
      {
        description: {
          400: 'invalid request (parameters, missing body)',
          401: 'missing or wrong API token',
          408: 'the upload took too long, or paused too long (the upload timeouts); the connection is closed',
          413: 'body larger than the limit',
          415: 'not an image content type',
          421: 'no token is set and the Host header names neither this machine nor an --allowed-host (DNS rebinding guard)',
          422: 'the body is not a readable photograph',
          503: 'every predict/explain slot is taken, or the inference thread stopped and is restarting; retry later (see Retry-After and GET /readyz)',
        }[c],
        content: { 'application/json': { schema: errorRef } },
      },
    ]),
  );

const probabilityMap = { type: 'object', additionalProperties: { type: 'number', minimum: 0, maximum: 1 } };

/** The OpenAPI 3.1 description served at `/openapi.json`. */
export function openApiDocument(opts: { version: string; classes: string[]; tokenRequired: boolean; explanation: DefaultExplanation }): Record<string, unknown> {
  const { method, layer, chosenBy } = opts.explanation;
  return {
    openapi: '3.1.0',
    info: {
      title: 'fundus',
      version: opts.version,
      description: 'Pathology probabilities and class-activation heatmaps for retinal fundus photographs.',
    },
    ...(opts.tokenRequired ? { security: [{ bearer: [] }, { apiKey: [] }] } : {}),
    paths: {
      '/healthz': {
        get: {
          summary: 'Liveness: the process answers. Stays 200 while the server is saturated (see /readyz)',
          responses: {
            200: {
              description: 'alive',
              content: {
                'application/json': {
                  schema: { type: 'object', required: ['status', 'model'], properties: { status: { const: 'ok' }, model: { type: 'string', description: 'model version' } } },
                },
              },
            },
            ...errors([401, 421]),
          },
        },
      },
      '/readyz': {
        get: {
          summary: 'Readiness: whether a predict/explain request would be admitted now',
          description:
            'Each POST /v1/predict or /v1/explain holds one of a fixed number of slots (--max-in-flight) from its headers until ' +
            'its answer is handed over, its client is gone, or its upload times out (--upload-timeout, --upload-idle-timeout); ' +
            'while no slot is free those routes answer 503 and so does this one, as it does while the inference thread that runs the model ' +
            'is being restarted after it stopped.',
          responses: {
            200: { description: 'at least one slot is free', content: { 'application/json': { schema: { $ref: '#/components/schemas/Readiness' } } } },
            ...errors([401, 421]),
            503: {
              description: 'every slot is taken (saturated), or the inference thread is restarting (restarting); retry later (see Retry-After)',
              content: { 'application/json': { schema: { $ref: '#/components/schemas/Readiness' } } },
            },
          },
        },
      },
      '/v1/model': {
        get: {
          summary: 'The model card: architecture, classes, thresholds, preprocessing, held-out metrics, limitations, version',
          responses: { 200: { description: 'model card', content: { 'application/json': { schema: { $ref: '#/components/schemas/ModelCard' } } } }, ...errors([401, 421]) },
        },
      },
      '/v1/predict': {
        post: {
          summary: 'Class probabilities and decisions at the model thresholds for one photograph, or why it is ungradable',
          description:
            'The photograph first goes through the gradability gate (unless the server runs with --no-gradability-check): one that ' +
            'is not a gradable fundus photograph (too small, too dark, no round disc on a dark field stop, overexposed, not the ' +
            'colour of a fundus, no retinal detail, noise) is answered 200 with `gradable: false` and `ungradable` (reason codes ' +
            'and words) and no probabilities or decisions. See docs/gradability.md.',
          parameters: [
            { name: 'filename', in: 'query', required: false, schema: { type: 'string', maxLength: 512 }, description: 'echoed back as `file`' },
            FRAME_PARAMETER,
            {
              name: 'format',
              in: 'query',
              required: false,
              schema: { type: 'string', enum: ['json', 'fhir'] },
              description: 'fhir: a FHIR R4 Bundle (DiagnosticReport with an Observation per class; docs/dicom-fhir.md). Default: from Accept (application/fhir+json), else json',
            },
          ],
          requestBody: imageBody,
          responses: {
            200: {
              description: 'prediction, or why the photograph is not graded',
              content: {
                'application/json': { schema: { oneOf: [{ $ref: '#/components/schemas/Prediction' }, { $ref: '#/components/schemas/Ungradable' }] } },
                'application/fhir+json': {
                  schema: { type: 'object', required: ['resourceType', 'type', 'entry'], properties: { resourceType: { const: 'Bundle' }, type: { const: 'collection' }, entry: { type: 'array' } } },
                },
              },
            },
            ...errors([400, 401, 408, 413, 415, 421, 422, 503]),
          },
        },
      },
      '/v1/photo': {
        post: {
          summary: 'The photograph as the server decodes it (PNG): a DICOM frame shown where the client cannot decode DICOM (the viewer)',
          description: 'Patient identifiers are never drawn or returned.',
          parameters: [
            { name: 'filename', in: 'query', required: false, schema: { type: 'string', maxLength: 512 }, description: 'names the upload in errors' },
            FRAME_PARAMETER,
          ],
          requestBody: imageBody,
          responses: {
            200: { description: 'the decoded photograph', content: { 'image/png': { schema: { type: 'string', format: 'binary' } } } },
            ...errors([400, 401, 408, 413, 415, 421, 422, 503]),
          },
        },
      },
      '/v1/explain': {
        post: {
          summary: 'Heatmap of one class: an overlay PNG, or JSON with the heatmap values',
          description: 'A photograph the gradability gate refuses is answered 422 with the reasons (no heatmap of a diagnosis that is not made).',
          parameters: [
            { name: 'class', in: 'query', required: true, schema: { type: 'string', enum: opts.classes }, description: 'class name (or index)' },
            {
              name: 'method',
              in: 'query',
              required: false,
              schema: { type: 'string', enum: [...CAM_METHODS], default: method },
              description:
                `CAM method; default: this model's (${method}${chosenBy ? `, chosen by ${chosenBy}` : ", fundus's global default"}). ` +
                `Every map is made at ${layer ? `layer ${layer}` : 'the automatically chosen layer'}; the JSON answer's \`layer\` names it.`,
            },
            { name: 'format', in: 'query', required: false, schema: { type: 'string', enum: ['png', 'json'] }, description: 'default: from Accept, else png' },
            { name: 'opacity', in: 'query', required: false, schema: { type: 'number', minimum: 0, maximum: 1, default: 0.45 }, description: 'heatmap opacity in the PNG' },
            { name: 'colormap', in: 'query', required: false, schema: { type: 'string', enum: [...COLORMAPS], default: 'jet' } },
            FRAME_PARAMETER,
          ],
          requestBody: imageBody,
          responses: {
            200: {
              description: 'overlay or heatmap',
              content: {
                'image/png': { schema: { type: 'string', format: 'binary' } },
                'application/json': { schema: { $ref: '#/components/schemas/Explanation' } },
              },
            },
            ...errors([400, 401, 408, 413, 415, 421, 422, 503]),
          },
        },
      },
    },
    components: {
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer' },
        apiKey: { type: 'apiKey', in: 'header', name: 'X-API-Key' },
      },
      schemas: {
        Error: {
          type: 'object',
          required: ['statusCode', 'error', 'message'],
          properties: { statusCode: { type: 'integer' }, error: { type: 'string' }, message: { type: 'string' } },
        },
        Prediction: {
          type: 'object',
          required: ['probabilities', 'decisions', 'positive', 'classes', 'thresholds', 'model', 'image'],
          properties: {
            file: { type: 'string' },
            gradable: { type: 'boolean', enum: [true], description: 'absent when the server runs with --no-gradability-check' },
            probabilities: probabilityMap,
            decisions: { type: 'object', additionalProperties: { type: 'boolean' } },
            positive: { type: 'array', items: { type: 'string' } },
            classes: { type: 'array', items: { type: 'string' } },
            thresholds: { type: 'array', items: { type: 'number' } },
            model: { type: 'object', properties: { version: { type: 'string' }, architecture: { type: 'string' }, task: { type: 'string' } } },
            image: { type: 'object', properties: { width: { type: 'integer' }, height: { type: 'integer' }, format: { type: 'string' } } },
            timeMs: { type: 'number' },
          },
        },
        Ungradable: {
          type: 'object',
          required: ['gradable', 'ungradable', 'classes', 'thresholds', 'model', 'image'],
          properties: {
            file: { type: 'string' },
            gradable: { type: 'boolean', enum: [false] },
            ungradable: {
              type: 'object',
              required: ['reasons', 'message'],
              properties: {
                reasons: {
                  type: 'array',
                  items: { type: 'string', enum: [...UNGRADABLE_REASONS] },
                },
                message: { type: 'string' },
              },
            },
            classes: { type: 'array', items: { type: 'string' } },
            thresholds: { type: 'array', items: { type: 'number' } },
            model: { type: 'object', properties: { version: { type: 'string' }, architecture: { type: 'string' }, task: { type: 'string' } } },
            image: { type: 'object', properties: { width: { type: 'integer' }, height: { type: 'integer' }, format: { type: 'string' } } },
            timeMs: { type: 'number' },
          },
        },
        Explanation: {
          type: 'object',
          properties: {
            class: { type: 'string' },
            method: { type: 'string' },
            layer: { type: 'string', description: "the network layer the map was made at (several fused: joined by '+')" },
            probability: { type: 'number' },
            heatmap: {
              type: 'object',
              properties: { width: { type: 'integer' }, height: { type: 'integer' }, data: { type: 'array', items: { type: 'number' } } },
            },
            crop: {
              type: 'object',
              description: 'the square the heatmap covers, in photo pixel coordinates',
              properties: { x: { type: 'number' }, y: { type: 'number' }, side: { type: 'number' }, width: { type: 'integer' }, height: { type: 'integer' } },
            },
          },
        },
        ModelCard: { type: 'object', additionalProperties: true },
        Readiness: {
          type: 'object',
          required: ['status', 'model', 'slots'],
          properties: {
            status: { type: 'string', enum: ['ready', 'saturated', 'restarting'] },
            model: { type: 'string', description: 'model version' },
            slots: {
              type: 'object',
              description: 'predict/explain slots: max = --max-in-flight, inUse + free = max',
              required: ['max', 'inUse', 'free'],
              properties: { max: { type: 'integer' }, inUse: { type: 'integer' }, free: { type: 'integer' } },
            },
          },
        },
      },
    },
  };
}
