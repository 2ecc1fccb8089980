import { join } from 'node:path';
import { writeFileAtomic } from '../util/atomic.js';
import type { HistoryRow } from './checkpoint.js';
import { eventFileBytes, eventFileName, writeEventFile } from './tensorboard.js';
import type { ScalarRecord } from './tensorboard.js';

export const HISTORY_CSV = 'history.csv';

/** The history as CSV: `epoch` first, then every logged quantity (as `fundus evaluate` reads it back). */
export function historyCsv(rows: HistoryRow[]): string {
  const cols = ['epoch', ...new Set(rows.flatMap((r) => Object.keys(r)).filter((c) => c !== 'epoch'))];
  const fmt = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? '' : Number.isInteger(v) ? String(v) : v.toPrecision(6));
  return [cols.join(','), ...rows.map((r) => cols.map((c) => fmt(r[c])).join(','))].join('\n') + '\n';
}

/** TensorBoard tags of the history columns: grouped so that train and validation curves share a chart. */
const TAGS: Record<string, string> = {
  loss: 'loss/train',
  val_loss: 'loss/validation',
  val_auc: 'auc/validation',
  val_f1: 'f1/validation',
  lr: 'learning_rate',
  images_per_second: 'speed/images_per_second',
};

function scalarRecords(rows: HistoryRow[], createdAt: number): ScalarRecord[] {
  return rows.map((r) => {
    const scalars: Record<string, number> = {};
    for (const [k, v] of Object.entries(r)) if (k !== 'epoch' && k !== 'wall_time' && Number.isFinite(v)) scalars[TAGS[k] ?? k] = v;
    return { step: r.epoch, wallTime: r.wall_time ?? createdAt, scalars };
  });
}

/** Writes `history.csv` and the TensorBoard event file into `dir` (both atomically, whole). */
export async function writeHistory(dir: string, rows: HistoryRow[], eventsCreatedAt: number): Promise<void> {
  await writeFileAtomic(join(dir, HISTORY_CSV), historyCsv(rows));
  await writeEventFile(dir, eventFileName(eventsCreatedAt), eventsCreatedAt, scalarRecords(rows, eventsCreatedAt));
}

/** The two history files as in-memory content, to ship inside a model directory. */
export function historyFiles(rows: HistoryRow[], eventsCreatedAt: number): Record<string, string | Uint8Array> {
  return {
    [HISTORY_CSV]: historyCsv(rows),
    [eventFileName(eventsCreatedAt)]: eventFileBytes(eventsCreatedAt, scalarRecords(rows, eventsCreatedAt)),
  };
}
