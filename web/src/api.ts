// Typed calls to the fundus HTTP API. The types come from the server's own source, so a change on either side
// breaks the type-check rather than the page.
import type { ErrorBody, ExplainResponse, GradedResponse, ModelCard, PredictResponse } from '../../src/serve/api-types.js';

export type { ExplainResponse, GradedResponse, ModelCard, PredictResponse };

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

async function parse<T>(res: Response): Promise<T> {
  if (res.ok) return (await res.json()) as T;
  let message = `${res.status} ${res.statusText}`;
  try {
    const body = (await res.json()) as Partial<ErrorBody>;
    if (body.message) message = body.message;
  } catch {
    // not JSON: keep the status line
  }
  throw new ApiError(res.status, message);
}

function contentType(file: File): string {
  if (file.type === 'application/dicom' || /\.(dcm|dicom)$/i.test(file.name)) return 'application/dicom';
  return file.type && file.type.startsWith('image/') ? file.type : 'application/octet-stream';
}

export async function fetchModel(): Promise<ModelCard> {
  return parse<ModelCard>(await fetch('v1/model', { headers: { accept: 'application/json' } }));
}

export async function predict(file: File): Promise<PredictResponse> {
  const res = await fetch(`v1/predict?filename=${encodeURIComponent(file.name)}`, {
    method: 'POST',
    headers: { 'content-type': contentType(file), accept: 'application/json' },
    body: file,
  });
  return parse<PredictResponse>(res);
}

/** Whether a file is DICOM, which browsers cannot show: the server decodes it (`photo`). */
export function isDicom(file: File): boolean {
  return contentType(file) === 'application/dicom';
}

/** The photograph as the server decodes it (PNG), for files the browser cannot show itself. */
export async function photo(file: File): Promise<Blob> {
  const res = await fetch(`v1/photo?filename=${encodeURIComponent(file.name)}`, { method: 'POST', headers: { 'content-type': contentType(file) }, body: file });
  if (!res.ok) await parse<never>(res);
  return res.blob();
}

export async function explain(file: File, cls: string, method: string): Promise<ExplainResponse> {
  const q = new URLSearchParams({ class: cls, method, format: 'json' });
  const res = await fetch(`v1/explain?${q}`, {
    method: 'POST',
    headers: { 'content-type': contentType(file), accept: 'application/json' },
    body: file,
  });
  return parse<ExplainResponse>(res);
}
