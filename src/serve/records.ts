import type { PredictionRecord } from './api-types.js';

/** Turns one row of probabilities into the per-class record shared by the CLI, the API and the viewer. */
export function toRecord(
  probs: ArrayLike<number>,
  offset: number,
  classes: readonly string[],
  thresholds: readonly number[],
  file?: string,
): PredictionRecord {
  const probabilities: Record<string, number> = {};
  const decisions: Record<string, boolean> = {};
  const positive: string[] = [];
  classes.forEach((c, j) => {
    // Rounded so that outputs are stable and readable; 1e-6 is far below any clinically meaningful difference.
    const p = Math.round(probs[offset + j] * 1e6) / 1e6;
    probabilities[c] = p;
    decisions[c] = p >= thresholds[j];
    if (decisions[c]) positive.push(c);
  });
  return file === undefined ? { probabilities, decisions, positive } : { file, probabilities, decisions, positive };
}
