import { InputError } from '../util/errors.js';
import type { DenseMatrix } from './matrix.js';
import { spreadMultiLabel } from './multilabel.js';
import { LabelSpreading, type SpreadingKernel, type SpreadingParams } from './spreading.js';

/** How unlabelled images get their labels. */
export type PseudoLabelMethod =
  | {
      kind: 'spreading';
      kernel: SpreadingKernel;
      params: SpreadingParams;
      normalize: 'l2' | 'none';
      /** rbf without an explicit gamma: gamma = gammaScale × the median heuristic (default 1), so it follows the embedding's scale. */
      gammaScale?: number;
    }
  | { kind: 'confidence' };

export function methodName(m: PseudoLabelMethod): string {
  return m.kind === 'confidence' ? 'confidence' : `spreading-${m.kernel}`;
}

/** One accepted pseudo-label. */
export interface PseudoLabel {
  index: number;
  /** Multi-hot labels in the model's class order. */
  labels: Uint8Array;
  /** Per-class confidence of the decision: max(p, 1 − p) for sigmoid models, the top probability for softmax ones. */
  confidence: number[];
}

/**
 * Scores of the unlabelled points, n×C row-major in [0, 1]: for sigmoid (multi-label) models the per-class
 * probability that the class is present, for softmax models a distribution over classes.
 */
export interface PseudoScores {
  scores: Float64Array;
  numClasses: number;
  activation: 'sigmoid' | 'softmax';
  /** Extra facts for the report (iterations, gamma used, ...). */
  info: Record<string, unknown>;
}

/**
 * Keeps the confident ones. Sigmoid: an image is kept when every class is decided with confidence ≥ threshold
 * (p ≥ t or p ≤ 1 − t) and at least one class is present (every labelled image has one). Softmax: the top class's
 * probability ≥ threshold, labelled with that class only.
 */
export function selectConfident(s: PseudoScores, threshold: number): PseudoLabel[] {
  if (!(threshold >= 0.5 && threshold <= 1)) throw new InputError(`the confidence threshold must be in [0.5, 1] (got ${threshold})`);
  const C = s.numClasses;
  const n = s.scores.length / C;
  const out: PseudoLabel[] = [];
  for (let i = 0; i < n; i++) {
    const row = Array.from(s.scores.subarray(i * C, (i + 1) * C));
    const labels = new Uint8Array(C);
    if (s.activation === 'softmax') {
      let best = 0;
      for (let c = 1; c < C; c++) if (row[c] > row[best]) best = c;
      if (row[best] < threshold) continue;
      labels[best] = 1;
      out.push({ index: i, labels, confidence: [row[best]] });
      continue;
    }
    const conf = row.map((p) => Math.max(p, 1 - p));
    if (conf.some((v) => v < threshold)) continue;
    row.forEach((p, c) => (labels[c] = p >= 0.5 ? 1 : 0));
    if (!labels.some((v) => v === 1)) continue;
    out.push({ index: i, labels, confidence: conf });
  }
  return out;
}

/** Row-wise L2 normalisation (cosine geometry), in float64. */
export function l2Normalize(x: DenseMatrix): DenseMatrix {
  const { rows, cols } = x;
  const data = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    let s = 0;
    for (let j = 0; j < cols; j++) s += x.data[i * cols + j] ** 2;
    const norm = Math.sqrt(s) || 1;
    for (let j = 0; j < cols; j++) data[i * cols + j] = x.data[i * cols + j] / norm;
  }
  return { data, rows, cols };
}

/**
 * γ for the rbf kernel when none is given: 1 / median squared distance between points (the "median heuristic"),
 * from a deterministic sample of pairs. sklearn's default γ = 20 suits features of unit scale, not CNN embeddings.
 */
export function medianHeuristicGamma(x: DenseMatrix, maxPairs = 20000): number {
  const n = x.rows;
  const d = x.cols;
  const values: number[] = [];
  let state = 12345;
  const next = () => (state = (Math.imul(state, 1103515245) + 12345) >>> 0) % n;
  const pairs = Math.min(maxPairs, (n * (n - 1)) / 2);
  for (let p = 0; p < pairs; p++) {
    const i = next();
    let j = next();
    if (j === i) j = (i + 1) % n;
    let s = 0;
    for (let t = 0; t < d; t++) s += (x.data[i * d + t] - x.data[j * d + t]) ** 2;
    if (s > 0) values.push(s);
  }
  values.sort((a, b) => a - b);
  const med = values.length ? values[Math.floor(values.length / 2)] : 1;
  return 1 / med;
}

/**
 * Label spreading over embeddings: the labelled rows come first (with their multi-hot labels, n_l×C), the
 * unlabelled rows after. Returns the scores of the unlabelled rows only.
 */
export function spreadingScores(
  embeddings: DenseMatrix,
  labelled: Uint8Array,
  numLabelled: number,
  numClasses: number,
  activation: 'sigmoid' | 'softmax',
  method: Extract<PseudoLabelMethod, { kind: 'spreading' }>,
): PseudoScores {
  const n = embeddings.rows;
  const nu = n - numLabelled;
  if (labelled.length !== numLabelled * numClasses) throw new RangeError('labelled must be numLabelled × numClasses');
  const x = method.normalize === 'l2' ? l2Normalize(embeddings) : embeddings;
  const params: SpreadingParams = { ...method.params, kernel: method.kernel };
  const info: Record<string, unknown> = { kernel: method.kernel, normalize: method.normalize, alpha: params.alpha ?? 0.2 };
  if (method.kernel === 'rbf' && params.gamma === undefined) {
    const scale = method.gammaScale ?? 1;
    if (!(scale > 0)) throw new InputError(`the rbf gamma scale must be positive (got ${scale})`);
    params.gamma = scale * medianHeuristicGamma(x);
    info.gammaScale = scale;
  }
  if (method.kernel === 'rbf') info.gamma = params.gamma;
  else info.nNeighbors = params.nNeighbors ?? 7;
  const scores = new Float64Array(nu * numClasses);
  if (activation === 'sigmoid') {
    const y = new Int8Array(n * numClasses).fill(-1);
    for (let i = 0; i < numLabelled * numClasses; i++) y[i] = labelled[i];
    const r = spreadMultiLabel(x, y, numClasses, params);
    scores.set(r.confidences.subarray(numLabelled * numClasses));
    info.perClass = r.perClass;
  } else {
    const y = new Int32Array(n).fill(-1);
    for (let i = 0; i < numLabelled; i++) {
      const row = labelled.subarray(i * numClasses, (i + 1) * numClasses);
      const k = row.indexOf(1);
      if (k < 0 || row.indexOf(1, k + 1) >= 0) continue; // not single-label: leave it out of the seed set
      y[i] = k;
    }
    const m = new LabelSpreading(params).fit(x, y);
    for (let i = numLabelled; i < n; i++) {
      m.classes.forEach((cls, j) => (scores[(i - numLabelled) * numClasses + cls] = m.labelDistributions[i * m.classes.length + j]));
    }
    info.nIter = m.nIter;
    info.converged = m.converged;
  }
  return { scores, numClasses, activation, info };
}
