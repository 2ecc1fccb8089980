import type { Metric } from '../eval/schema.js';
import type { ArmBudget, Comparison, SelfLearnReport } from './schema.js';

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

const signed = (x: number | null): string => (x === null ? 'n/a' : `${x >= 0 ? '+' : ''}${x.toFixed(3)}`);
const delta = (d: Comparison['macroAuc']): string => `${signed(d.value)}${d.ci ? ` [${signed(d.ci[0])}, ${signed(d.ci[1])}]` : ''}`;
const minutes = (s: number): string => (Number.isFinite(s) ? (s / 60).toFixed(1) : 'n/a');

function budgetCells(b: ArmBudget | null): string[] {
  if (!b) return ['', '', '', '', ''];
  return [
    `${Number(b.epochsRun.toFixed(2))} / ${b.epochsPlanned}`,
    b.bestEpoch === null ? 'n/a' : String(b.bestEpoch),
    `${minutes(b.trainSeconds)}${b.maxMinutes === null ? '' : ` (cap ${b.maxMinutes})`}`,
    minutes(b.wallSeconds),
    `${b.stoppedBy}, lr ${b.lr.toExponential(1)}`,
  ];
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
  for (const note of [...(r.notes ?? []), ...(r.stoppedEarly ? [r.stoppedEarly] : [])]) out.push(`**${note}**`, '');
  out.push(
    `Leakage guard: ${r.leakageGuard.excluded} of ${r.leakageGuard.unlabelledTotal} unlabelled images excluded as near-duplicates ` +
      `of test images; ${r.leakageGuard.kept} used.`,
    '',
  );
  out.push('## Summary', '');
  out.push(
    table(
      ['model', 'pseudo-labelled', 'mean F1', 'mean F1 @0.5', 'macro AUC', 'macro AP', 'val macro AUC'],
      r.variants.map((v) => [
        v.name,
        String(v.pseudoLabelled),
        cell(v.metrics.overall.meanF1),
        cell(v.metrics.overall.meanF1At05),
        cell(v.metrics.overall.macroAuc),
        cell(v.metrics.overall.macroAp),
        v.validationMacroAuc === null ? 'n/a' : v.validationMacroAuc.toFixed(3),
      ]),
    ),
    '',
  );
  out.push('## Arms: pseudo-labels and training budget', '');
  out.push(
    'Every arm of a mode has the same budget; every fine-tuned arm starts from the original. Epochs: run / planned (a ' +
      'last epoch cut by the time cap counts by its fraction); train min: time in training steps (cap); wall min: the ' +
      'whole arm incl. data loading, validation, threshold tuning and the test evaluation.',
    '',
  );
  out.push(
    table(
      ['arm', 'mode', 'teacher', 'pseudo-labels', ...r.classes.map((c) => `+${c}`), 'epochs', 'best epoch', 'train min', 'wall min', 'stopped by'],
      r.variants
        .map((v) => v.mode === 'original'
          ? [v.name, 'original', '-', '0', ...r.classes.map(() => '-'), r.originalTraining ? String(r.originalTraining.epochs) : 'n/a', '', r.originalTraining ? minutes(r.originalTraining.trainSeconds) : 'n/a', '', 'as recorded in its fundus.json']
          : [
          v.name,
          v.mode === 'control' ? `${v.controlFor} (control)` : v.mode,
          v.teacher ?? '-',
          String(v.pseudoLabelled),
          ...r.classes.map((c) => (v.positivesPerClass ? String(v.positivesPerClass[c] ?? 0) : '-')),
          ...budgetCells(v.budget),
        ]),
    ),
    '',
  );
  if (r.skipped.length > 0) out.push('Not run:', '', ...r.skipped.map((a) => `- ${a.name}: ${a.reason}`), '');
  if (r.roundsChoice) {
    out.push(
      `Rounds past 1 ran for ${r.roundsChoice.method}, chosen by ${r.roundsChoice.by} (` +
        Object.entries(r.roundsChoice.candidates).map(([k, v]) => `${k} ${v === null ? 'n/a' : v.toFixed(3)}`).join(', ') +
        '), never on test.',
      '',
    );
  }
  out.push('## Paired comparisons on the test part', '');
  out.push(
    'Differences arm − reference with 95% paired bootstrap intervals (the same resampled test images for both models); ' +
      '"higher"/"lower" only where the macro AUC interval excludes zero.',
    '',
  );
  out.push(
    table(
      ['arm', 'reference', 'isolates', 'Δ macro AUC', 'Δ mean F1', 'outcome'],
      r.comparisons.map((c) => [c.arm, c.reference, c.question, delta(c.macroAuc), delta(c.meanF1), c.outcome]),
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
      ['method', 'round', 'teacher', 'accepted', 'min-class confidence (mean)', ...r.classes.map((c) => `+${c}`), 'details'],
      r.pseudoLabelling.map((p) => [
        p.method,
        String(p.round),
        p.teacher,
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
  out.push(
    'Intervals: 95% stratified percentile bootstrap on the test part, the same resamples for every model. ' +
      `Run time: ${minutes(r.wallSeconds)} min.`,
    '',
  );
  return out.join('\n');
}
