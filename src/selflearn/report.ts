import type { Metric } from '../eval/schema.js';
import type { SelfLearnReport } from './pipeline.js';

const cell = (m: Metric | undefined): string => {
  if (!m || m.value === null) return 'n/a';
  return m.ci ? `${m.value.toFixed(3)} [${m.ci[0].toFixed(3)}, ${m.ci[1].toFixed(3)}]` : m.value.toFixed(3);
};

function table(header: string[], rows: string[][]): string {
  return [
    `| ${header.join(' | ')} |`,
    `| ${header.map(() => '---').join(' | ')} |`,
    ...rows.map((r) => `| ${r.join(' | ')} |`),
  ].join('\n');
}

/** The report as Markdown: summary, per-class F1 and AUC tables with 95% bootstrap intervals, pseudo-labelling stats. */
export function renderMarkdown(r: SelfLearnReport): string {
  const out: string[] = [];
  out.push('# Self-learning: before / after on the held-out test part', '');
  out.push(
    `Model \`${r.model}\`; ${r.data.train} labelled training images, ${r.data.validation} validation, ${r.data.test} test; ` +
      `${r.data.unlabelled} unlabelled images. Pseudo-labels kept at confidence >= ${r.threshold}; ${r.rounds} round(s).`,
    '',
  );
  out.push(
    `Leakage guard: ${r.leakageGuard.excluded} of ${r.leakageGuard.unlabelledTotal} unlabelled images excluded as near-duplicates ` +
      `of test images; ${r.leakageGuard.kept} used.`,
    '',
  );
  out.push('## Summary', '');
  out.push(
    table(
      ['model', 'pseudo-labelled', 'mean F1', 'mean F1 @0.5', 'macro AUC', 'macro AP'],
      r.variants.map((v) => [
        v.name,
        String(v.pseudoLabelled),
        cell(v.metrics.overall.meanF1),
        cell(v.metrics.overall.meanF1At05),
        cell(v.metrics.overall.macroAuc),
        cell(v.metrics.overall.macroAp),
      ]),
    ),
    '',
  );
  const classes = r.variants[0]?.metrics.scoredClasses ?? r.classes;
  for (const [title, key] of [
    ['F1 per class (at each model\'s thresholds)', 'f1'],
    ['ROC AUC per class', 'auc'],
  ] as const) {
    out.push(`## ${title}`, '');
    out.push(table(['model', ...classes], r.variants.map((v) => [v.name, ...classes.map((c) => cell(v.metrics.perClass[c]?.[key]))])), '');
  }
  out.push('## Pseudo-labelling', '');
  out.push(
    table(
      ['method', 'round', 'accepted', 'min-class confidence (mean)', ...r.classes.map((c) => `+${c}`), 'details'],
      r.pseudoLabelling.map((p) => [
        p.method,
        String(p.round),
        `${p.accepted} / ${p.unlabelledScored}`,
        p.meanConfidence === null ? 'n/a' : p.meanConfidence.toFixed(3),
        ...r.classes.map((c) => String(p.positivesPerClass[c] ?? 0)),
        Object.entries(p.info)
          .filter(([k]) => k !== 'perClass')
          .map(([k, v]) => `${k}=${typeof v === 'number' ? Number(v.toPrecision(4)) : String(v)}`)
          .join(', '),
      ]),
    ),
    '',
  );
  out.push('## Verdict', '', ...r.verdict.map((l) => `- ${l}`), '');
  out.push('Intervals: 95% stratified percentile bootstrap on the test part, the same resamples for every model.', '');
  return out.join('\n');
}
