import { isGraded } from '../data/labels.js';
import type { LabelledImage } from '../data/labels.js';
import { rocAuc } from '../metrics/metrics.js';

/** How one class is spread over the sources of a multi-source set. */
export interface ClassBySource {
  class: string;
  /** Per source that grades the class: graded images, positives and their share. */
  perSource: { source: string; graded: number; positives: number; rate: number }[];
  /**
   * ROC AUC of the source alone as the score (each image scored by its source's positive rate): what a model that
   * recognised the source and nothing else would reach on the pooled data. Null when fewer than two sources grade
   * the class or the pool lacks positives or negatives.
   */
  sourceAuc: number | null;
  confounded: boolean;
}

/**
 * Above this source-only AUC a class counts as confounded with the source: a model can score well on the pooled
 * data by recognising the camera or clinic, without seeing the disease.
 */
export const CONFOUNDING_AUC = 0.7;

/** Each class's share per source and how well the source alone predicts it (see ClassBySource). */
export function confoundingBySource(images: LabelledImage[], classes: readonly string[], datasetClasses: readonly string[]): ClassBySource[] {
  const sources = [...new Set(images.map((im) => im.source ?? '(none)'))].sort();
  return classes.map((c) => {
    const k = datasetClasses.indexOf(c);
    const perSource = sources
      .map((source) => {
        const graded = images.filter((im) => (im.source ?? '(none)') === source && im.labels && k >= 0 && isGraded(im, k));
        const positives = graded.filter((im) => im.labels![k] === 1).length;
        return { source, graded: graded.length, positives, rate: graded.length > 0 ? positives / graded.length : 0 };
      })
      .filter((r) => r.graded > 0);
    let sourceAuc: number | null = null;
    if (perSource.length >= 2) {
      const rate = new Map(perSource.map((r) => [r.source, r.rate]));
      const pool = images.filter((im) => im.labels && k >= 0 && isGraded(im, k) && rate.has(im.source ?? '(none)'));
      sourceAuc = rocAuc(
        Float64Array.from(pool, (im) => im.labels![k]),
        Float64Array.from(pool, (im) => rate.get(im.source ?? '(none)')!),
      );
    }
    return { class: c, perSource, sourceAuc, confounded: sourceAuc !== null && sourceAuc >= CONFOUNDING_AUC };
  });
}

/** One line per confounded class, for warnings and model cards. */
export function confoundingWarnings(rows: ClassBySource[]): string[] {
  return rows
    .filter((r) => r.confounded)
    .map(
      (r) =>
        `'${r.class}' is confounded with the source (source alone gives AUC ${r.sourceAuc!.toFixed(2)}): positives ` +
        r.perSource.map((p) => `${p.source} ${p.positives}/${p.graded} (${(100 * p.rate).toFixed(0)}%)`).join(', '),
    );
}
