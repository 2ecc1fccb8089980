import type { PairedDelta } from './compare.js';
import type { Comparison, VariantResult } from './schema.js';

const fmt = (x: number | null, signed = false): string => (x === null || Number.isNaN(x) ? 'n/a' : `${signed && x >= 0 ? '+' : ''}${x.toFixed(3)}`);
const fmtDelta = (d: PairedDelta): string => `${fmt(d.value, true)}${d.ci ? ` [${fmt(d.ci[0], true)}, ${fmt(d.ci[1], true)}]` : ''}`;

/**
 * Plain-words conclusions from the paired comparisons on the test part: each arm against its reference (fine-tuned
 * and from-scratch arms against their controls, controls against the original), then which approach came out best.
 * "Higher"/"lower" only where the paired 95% interval of the macro AUC difference excludes zero.
 */
export function verdict(variants: VariantResult[], comparisons: Comparison[]): string[] {
  const lines = comparisons.map(
    (c) => `${c.arm} − ${c.reference} (${c.question}): macro AUC ${fmtDelta(c.macroAuc)}, mean F1 ${fmtDelta(c.meanF1)} → ${c.outcome}`,
  );
  const arms = variants.filter((v) => v.mode === 'finetune' || v.mode === 'scratch');
  if (arms.length === 0) return lines;
  const uncontrolled = arms.filter((v) => !variants.some((c) => c.mode === 'control' && c.controlFor === v.mode));
  for (const v of uncontrolled) {
    lines.push(
      `${v.name} has no control (the same ${v.mode} training without pseudo-labels): its difference from the original mixes ` +
        `the training budget with the pseudo-labels and says nothing about the pseudo-labels alone`,
    );
  }
  // Per mode, the arms against their own control: the answer to "does self-learning help here".
  for (const mode of ['finetune', 'scratch'] as const) {
    const vsControl = comparisons.filter((c) => c.reference === `control-${mode}` && c.macroAuc.value !== null);
    const best = [...vsControl].sort((a, b) => b.macroAuc.value! - a.macroAuc.value!)[0];
    if (!best) continue;
    const how = mode === 'finetune' ? 'fine-tuned from the original' : 'trained from scratch';
    const helped = vsControl.filter((c) => c.outcome === 'higher').map((c) => c.arm);
    const hurt = vsControl.filter((c) => c.outcome === 'lower').map((c) => c.arm);
    lines.push(
      helped.length > 0
        ? `${how}: pseudo-labels helped: ${helped.join(', ')} beat${helped.length === 1 ? 's' : ''} control-${mode} beyond the paired interval; the largest gain is ${best.arm}, macro AUC ${fmtDelta(best.macroAuc)}`
        : best.outcome === 'lower'
          ? `${how}: pseudo-labels did not help: every arm is below control-${mode} beyond the paired interval; the closest is ${best.arm}, macro AUC ${fmtDelta(best.macroAuc)}`
          : `${how}: pseudo-labels did not clearly help: the best arm is ${best.arm}, macro AUC ${fmtDelta(best.macroAuc)} against control-${mode} (the interval contains zero)`,
    );
    // (When every arm is below, the line above says so already.)
    if (hurt.length > 0 && best.outcome !== 'lower') lines.push(`${how}: pseudo-labels hurt (paired interval below zero): ${hurt.join(', ')}`);
  }
  // The best model on the test part (reported, not selected: nothing is chosen on test).
  const top = [...variants].sort((a, b) => (b.metrics.overall.macroAuc.value ?? -1) - (a.metrics.overall.macroAuc.value ?? -1))[0];
  const orig = variants.find((v) => v.mode === 'original');
  if (top && orig && top !== orig) {
    lines.push(
      `highest test macro AUC: ${top.name} ${fmt(top.metrics.overall.macroAuc.value)} (mean F1 ${fmt(top.metrics.overall.meanF1.value)}) against the original's ` +
        `${fmt(orig.metrics.overall.macroAuc.value)} (${fmt(orig.metrics.overall.meanF1.value)})`,
    );
  } else if (top && orig) {
    lines.push(`highest test macro AUC: the original, ${fmt(orig.metrics.overall.macroAuc.value)} (mean F1 ${fmt(orig.metrics.overall.meanF1.value)}); no arm beat it`);
  }
  const vsConfidence = comparisons.filter((c) => c.reference === 'confidence-r1-finetune' && c.macroAuc.value !== null);
  for (const c of vsConfidence) {
    const word = c.outcome === 'higher' ? 'better than' : c.outcome === 'lower' ? 'worse than' : 'not shown to differ from';
    lines.push(`${c.arm} is ${word} plain classifier-confidence pseudo-labelling (macro AUC ${fmtDelta(c.macroAuc)})`);
  }
  const scratch = variants.find((v) => v.mode === 'control' && v.controlFor === 'scratch');
  if (scratch?.budget) {
    lines.push(
      `from-scratch arms had ${scratch.budget.epochsRun.toFixed(1)} epochs (${(scratch.budget.trainSeconds / 60).toFixed(1)} min of training): ` +
        `not comparable with the original's full training; read them only against control-scratch`,
    );
  }
  return lines;
}
