import { InputError } from '../util/errors.js';
import type { DenseMatrix } from './matrix.js';
import { LabelPropagation, LabelSpreading, type SpreadingParams } from './spreading.js';

export interface MultiLabelSpreadingResult {
  /** n×C row-major: the spread probability that class c is present at point i (label_distributions_[:, 1]). */
  confidences: Float64Array;
  /** n×C row-major 0/1: the transduced label of each per-class binary problem. */
  labels: Uint8Array;
  numClasses: number;
  /** Iterations and convergence of each class's problem. */
  perClass: { nIter: number; converged: boolean; labelledPositives: number; labelledNegatives: number }[];
}

/**
 * Multi-label spreading: every class is its own binary problem (present / absent, −1 = unknown) on one shared graph,
 * so a point can come out with several classes, each with its own confidence. This equals running sklearn's
 * estimator once per class on y = Y[:, c]. Y is n×C row-major with entries 1, 0 or −1. A class with no labelled
 * positives gets confidence 0 everywhere (sklearn's classes_ would then lack the positive class).
 */
export function spreadMultiLabel(
  x: DenseMatrix,
  y: Int8Array,
  numClasses: number,
  params: SpreadingParams & { variant?: 'spreading' | 'propagation' } = {},
): MultiLabelSpreadingResult {
  const n = x.rows;
  if (y.length !== n * numClasses) {
    throw new InputError(`label matrix has ${y.length} entries, expected ${n}x${numClasses}`);
  }
  const make = () => (params.variant === 'propagation' ? new LabelPropagation(params) : new LabelSpreading(params));
  const graph = make().buildGraph(x);
  const confidences = new Float64Array(n * numClasses);
  const labels = new Uint8Array(n * numClasses);
  const perClass: MultiLabelSpreadingResult['perClass'] = [];
  for (let c = 0; c < numClasses; c++) {
    const yc = new Int32Array(n);
    let pos = 0;
    let neg = 0;
    for (let i = 0; i < n; i++) {
      const v = y[i * numClasses + c];
      if (v !== 1 && v !== 0 && v !== -1) throw new InputError(`label of point ${i}, class ${c} must be 1, 0 or -1 (got ${v})`);
      yc[i] = v;
      if (v === 1) pos++;
      else if (v === 0) neg++;
    }
    if (pos === 0 || neg === 0) {
      // Only one side is known: spreading cannot produce anything but that side.
      for (let i = 0; i < n; i++) {
        confidences[i * numClasses + c] = pos > 0 ? 1 : 0;
        labels[i * numClasses + c] = pos > 0 ? 1 : 0;
      }
      perClass.push({ nIter: 0, converged: true, labelledPositives: pos, labelledNegatives: neg });
      continue;
    }
    const m = make().fitGraph(graph, yc);
    const posCol = m.classes.indexOf(1);
    for (let i = 0; i < n; i++) {
      confidences[i * numClasses + c] = m.labelDistributions[i * m.classes.length + posCol];
      labels[i * numClasses + c] = m.transduction[i];
    }
    perClass.push({ nIter: m.nIter, converged: m.converged, labelledPositives: pos, labelledNegatives: neg });
  }
  return { confidences, labels, numClasses, perClass };
}
