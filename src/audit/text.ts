import { relative } from 'node:path';
import type { AuditReport, ClassAuc, SourcePredictability } from './report.js';

/** Left-aligned first column, right-aligned others, two spaces apart. */
function table(rows: string[][], indent = '  '): string[] {
  const widths: number[] = [];
  for (const r of rows) r.forEach((cell, j) => (widths[j] = Math.max(widths[j] ?? 0, cell.length)));
  return rows.map((r) => indent + r.map((cell, j) => (j === 0 ? cell.padEnd(widths[j]) : cell.padStart(widths[j]))).join('  ').trimEnd());
}

/** Wraps a paragraph at `width` columns. */
function wrap(text: string, width = 110): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(line);
  return lines;
}

const auc = (v: number | null) => (v === null ? '—' : v.toFixed(3));

/** A statistic's value with about three significant digits (pixel counts without decimals). */
function num(v: number): string {
  const a = Math.abs(v);
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  if (a >= 1) return v.toFixed(2);
  return v.toFixed(3);
}

function predictabilityLines(p: SourcePredictability): string[] {
  const lines = [
    `  ${p.features}; ${p.folds}-fold cross-validation${p.groupedFolds ? ', folds grouped by patient' : ''}; ${p.classifier}`,
    ...table([['source', 'AUC (source vs rest)'], ...p.perSource.map((r) => [r.source, auc(r.auc)]), ['macro', auc(p.macroAuc)]]),
  ];
  return lines;
}

function cell(c: ClassAuc | undefined): string {
  if (!c || c.skipped === 'not graded') return '·';
  if (c.skipped) return c.skipped === 'no positives' ? 'no pos' : 'no neg';
  return `${auc(c.auc)} (${c.positives}/${c.graded})`;
}

/** The report as text: the sources, the four sections and the verdict. */
export function formatAudit(r: AuditReport): string {
  const out: string[] = [];
  const rel = (p: string) => relative(process.cwd(), p) || p;
  const names = r.sources.map((s) => s.name);
  out.push(
    `Shortcut audit of ${r.sources.length} sources: part '${r.part}' of training sources, all images of external ones` +
      (r.limitPerSource !== null ? `, at most ${r.limitPerSource} per source (seed ${r.seed})` : ''),
  );
  out.push(
    ...table([
      ['source', 'role', 'images', 'in part', 'patients', 'datasets file'],
      ...r.sources.map((s) => [s.name, s.role, String(s.images), String(s.available), s.grouped ? String(s.groups) : '—', rel(s.datasets)]),
    ]),
  );

  out.push('', '1. Source from plain image statistics (no model)');
  out.push(`  computed on: ${r.statistics.preprocess}`);
  const all = r.statistics.predictability;
  const pix = r.statistics.pixelPredictability;
  out.push(`  ${all.folds}-fold cross-validation${all.groupedFolds ? ', folds grouped by patient' : ''}; ${all.classifier}`);
  out.push(
    ...table([
      ['source', `AUC, all ${all.dim} statistics`, `crop pixels only (${pix.dim}: no photo size)`],
      ...all.perSource.map((p, s) => [p.source, auc(p.auc), auc(pix.perSource[s].auc)]),
      ['macro', auc(all.macroAuc), auc(pix.macroAuc)],
    ]),
  );
  out.push('', '  Mean per source (separation: the best one-vs-rest AUC of the statistic alone, as max(AUC, 1 − AUC)):');
  const rows = [...r.statistics.bySource].sort((a, b) => b.separation - a.separation);
  out.push(
    ...table([
      ['statistic', ...names, 'separation', 'sets apart'],
      ...rows.map((s) => [s.statistic, ...s.means.map(num), s.separation.toFixed(2), s.separation >= 0.75 ? s.separates : '']),
    ]),
  );

  out.push('', "2. Source from the model's embedding");
  if (r.model) {
    out.push(`  model: ${rel(r.model.dir)} (${r.model.architecture})`);
    out.push(...predictabilityLines(r.model.embedding));
  } else out.push('  (no --model: skipped)');

  out.push('', "3. Each class's share per source (positives/graded; source AUC: the source alone as the predictor)");
  if (r.confounding.length === 0) out.push('  (no class is graded by these sources)');
  else {
    out.push(
      ...table([
        ['class', ...names, 'source AUC', ''],
        ...r.confounding.map((c) => [
          c.class,
          ...names.map((n) => {
            const p = c.perSource.find((q) => q.source === n);
            return p ? `${p.positives}/${p.graded} ${(100 * p.rate).toFixed(0)}%` : '·';
          }),
          auc(c.sourceAuc),
          c.confounded ? 'CONFOUNDED' : '',
        ]),
      ]),
    );
    out.push('  (· : not graded by the source)');
  }

  out.push('', "4. Each class's ROC AUC within each source (the model's predictions; AUC (positives/graded))");
  if (r.model) {
    const model = r.model;
    out.push(
      ...table([
        ['class', ...names, 'pooled'],
        ...model.pooled.map((p) => [p.class, ...model.perSource.map((s) => cell(s.classes.find((c) => c.class === p.class))), cell(p)]),
      ]),
    );
    const skipped = model.perSource.flatMap((s) => s.classes.filter((c) => c.skipped === 'no positives' || c.skipped === 'no negatives').map((c) => `${s.source}: '${c.class}' ${c.skipped}`));
    out.push('  (· : not graded by the source; no pos / no neg: its graded images hold no positives / no negatives, so no AUC)');
    if (skipped.length > 0) out.push(...wrap(`skipped: ${skipped.join('; ')}`, 108).map((l) => `  ${l}`));
  } else out.push('  (no --model: skipped)');

  if (r.warnings.length > 0 || r.notes.length > 0) {
    out.push('');
    for (const w of r.warnings) out.push(`warning: ${w}`);
    for (const n of r.notes) out.push(`note: ${n}`);
  }
  out.push('', 'Verdict', ...wrap(r.verdict).map((l) => `  ${l}`));
  return out.join('\n');
}
