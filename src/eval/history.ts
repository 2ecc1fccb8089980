import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseCsvRecords } from '../data/csv.js';

/** A training history: one row per epoch, one numeric column per logged quantity (loss, val_loss, val_f1, ...). */
export interface TrainingHistory {
  file: string;
  columns: string[];
  rows: Record<string, number>[];
}

/**
 * Reads the training history a model directory carries, if any: `history.csv` (a header with `epoch` and numeric
 * columns) or `history.json` (an array of per-epoch objects, or Keras's `{loss: [...], val_loss: [...]}`). Returns
 * null when there is none or it has no usable numbers: a report without training curves is still a report.
 */
export async function readTrainingHistory(modelDir: string): Promise<TrainingHistory | null> {
  for (const name of ['history.csv', 'history.json']) {
    const file = join(modelDir, name);
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch {
      continue;
    }
    const rows = name.endsWith('.csv') ? fromCsv(text) : fromJson(text);
    if (!rows || rows.length === 0) continue;
    rows.forEach((r, i) => {
      if (!Number.isFinite(r.epoch)) r.epoch = i + 1;
    });
    const columns = [...new Set(rows.flatMap((r) => Object.keys(r)))].filter((c) => c !== 'epoch');
    if (columns.length > 0) return { file, columns, rows };
  }
  return null;
}

function numericRow(obj: Record<string, unknown>): Record<string, number> {
  const row: Record<string, number> = {};
  for (const [k, v] of Object.entries(obj)) {
    const x = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
    if (Number.isFinite(x)) row[k] = x;
  }
  return row;
}

function fromCsv(text: string): Record<string, number>[] | null {
  const records = parseCsvRecords(text);
  if (records.length < 2) return null;
  const header = records[0].fields.map((h) => h.trim());
  return records.slice(1).map((r) => numericRow(Object.fromEntries(header.map((h, i) => [h, r.fields[i]]))));
}

function fromJson(text: string): Record<string, number>[] | null {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return null;
  }
  if (doc && typeof doc === 'object' && !Array.isArray(doc) && 'epochs' in doc && Array.isArray((doc as { epochs: unknown }).epochs)) {
    doc = (doc as { epochs: unknown[] }).epochs;
  }
  if (Array.isArray(doc)) return doc.filter((r) => r && typeof r === 'object').map((r) => numericRow(r as Record<string, unknown>));
  if (doc && typeof doc === 'object') {
    const series = Object.entries(doc as Record<string, unknown>).filter(([, v]) => Array.isArray(v)) as [string, unknown[]][];
    const n = Math.max(0, ...series.map(([, v]) => v.length));
    return Array.from({ length: n }, (_, i) => numericRow(Object.fromEntries(series.map(([k, v]) => [k, v[i]]))));
  }
  return null;
}
