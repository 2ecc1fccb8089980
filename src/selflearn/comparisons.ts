import type { BootstrapOptions } from '../eval/bootstrap.js';
import { InputError } from '../util/errors.js';
import { pairedDifference } from './compare.js';
import type { PartEvaluation } from './evaluate.js';
import type { Comparison, VariantResult } from './schema.js';

/** The arms and their references that make up the comparisons, given the arms that exist (see compareArms). */
export function comparisonPlan(variants: Pick<VariantResult, 'name' | 'method' | 'round' | 'mode' | 'controlFor'>[]): { arm: string; reference: string; question: string }[] {
  const plan: { arm: string; reference: string; question: string }[] = [];
  const has = (name: string) => variants.some((v) => v.name === name);
  for (const v of variants) {
    if (v.mode === 'control') {
      plan.push({
        arm: v.name,
        reference: 'original',
        question: v.controlFor === 'finetune' ? 'extra fine-tuning epochs alone, no pseudo-labels' : 'a from-scratch model with this budget against the original',
      });
    } else if (v.mode === 'finetune' || v.mode === 'scratch') {
      const control = `control-${v.mode}`;
      if (has(control)) plan.push({ arm: v.name, reference: control, question: `the pseudo-labels: ${v.mode}, same budget, control without them` });
      if (v.round > 1) {
        const previous = `${v.method}-r${v.round - 1}-${v.mode}`;
        if (has(previous)) plan.push({ arm: v.name, reference: previous, question: `round ${v.round} against round ${v.round - 1}` });
      }
    }
  }
  // Spreading kernels against each other and against the classifier's own confidence, round 1, fine-tuned.
  const r1 = (method: string) => `${method}-r1-finetune`;
  if (has(r1('spreading-knn')) && has(r1('spreading-rbf'))) plan.push({ arm: r1('spreading-knn'), reference: r1('spreading-rbf'), question: 'knn against rbf kernel' });
  for (const kernel of ['spreading-knn', 'spreading-rbf']) {
    if (has(r1(kernel)) && has(r1('confidence'))) plan.push({ arm: r1(kernel), reference: r1('confidence'), question: 'label spreading against classifier-confidence pseudo-labels' });
  }
  return plan;
}

/**
 * Paired bootstrap comparisons of the planned arm pairs (arm − reference on the same test images and resamples).
 * `memo` keeps comparisons already made (a run re-plans after every arm; each pair costs a bootstrap).
 */
export function compareArms(
  variants: VariantResult[],
  evaluations: Map<string, PartEvaluation>,
  bootstrap: BootstrapOptions = {},
  memo = new Map<string, Comparison>(),
): Comparison[] {
  return comparisonPlan(variants).flatMap(({ arm, reference, question }) => {
    const key = `${arm}\u0000${reference}`;
    const known = memo.get(key);
    if (known) return [known];
    const a = evaluations.get(arm);
    const b = evaluations.get(reference);
    if (!a || !b) return [];
    if (a.classes.join('|') !== b.classes.join('|')) throw new InputError(`${arm} and ${reference} have different classes: they cannot be compared`);
    const d = pairedDifference(a.labels, a.classes.length, a, b, bootstrap);
    const ci = d.macroAuc.ci;
    const outcome: Comparison['outcome'] = ci && ci[0] > 0 ? 'higher' : ci && ci[1] < 0 ? 'lower' : 'no clear difference';
    const c: Comparison = { arm, reference, question, macroAuc: d.macroAuc, meanF1: d.meanF1, outcome };
    memo.set(key, c);
    return [c];
  });
}
