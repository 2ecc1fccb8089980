import type { EvaluationReport, Metric } from './schema.js';

const num = (v: number | null, d = 3): string => (v === null ? '—' : v.toFixed(d));
const withCi = (m: Metric): string => (m.value === null ? '—' : m.ci ? `${num(m.value)} (${num(m.ci[0], 2)}–${num(m.ci[1], 2)})` : num(m.value));

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, j) => Math.max(h.length, ...rows.map((r) => r[j].length)));
  const line = (cells: string[]): string => cells.map((c, j) => (j === 0 ? c.padEnd(widths[j]) : c.padStart(widths[j]))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** The evaluation as a plain-text summary for the terminal (`--json` gives every number). */
export function formatReport(r: EvaluationReport): string {
  const o = r.overall;
  const level = Math.round(r.bootstrap.level * 100);
  const out = [
    `${r.model.architecture} (${r.model.task}) on ${r.imageCount} images${r.data.part ? `, part '${r.data.part}'` : ''}; thresholds: ${r.model.thresholdPolicy}`,
    `${level}% bootstrap intervals, ${r.bootstrap.resamples} stratified resamples, seed ${r.bootstrap.seed}`,
    '',
    `mean F1 @ 0.5 (contest)  ${withCi(o.meanF1At05)}`,
    `mean F1 @ thresholds     ${withCi(o.meanF1)}`,
    `macro ROC AUC            ${withCi(o.macroAuc)}`,
    `macro average precision  ${withCi(o.macroAp)}`,
    ...(o.accuracy ? [`top-class accuracy       ${withCi(o.accuracy)}`] : []),
    `calibration error (ECE)  ${num(o.ece)}`,
    '',
    table(
      ['class', 'pos', 'thr', 'AUC', 'AP', 'F1', 'sensitivity', 'specificity', 'precision', 'F1@0.5'],
      r.scoredClasses.map((name) => {
        const m = r.perClass[name];
        return [name, String(m.positives), num(m.threshold, 2), withCi(m.auc), withCi(m.ap), withCi(m.f1), withCi(m.sensitivity), withCi(m.specificity), withCi(m.precision), num(m.f1At05.value)];
      }),
    ),
  ];
  const undefinedNotes = r.scoredClasses.flatMap((name) => {
    const m = r.perClass[name];
    const seen = new Set<string>();
    return [m.auc, m.ap, m.f1, m.sensitivity, m.specificity, m.precision]
      .map((x) => x.note)
      .filter((n): n is string => n !== undefined && !seen.has(n) && (seen.add(n), true))
      .map((n) => `${name}: ${n}`);
  });
  const notes = [...r.notes, ...undefinedNotes];
  if (notes.length > 0) out.push('', ...notes.map((n) => `note: ${n}`));
  return out.join('\n');
}
