import { InputError } from '../util/errors.js';
import { kNearestNeighbors, knnConnectivity, type KnnOptions } from './knn.js';
import { checkMatrix, csrTimesDense, denseTimesDense, type CsrMatrix, type DenseMatrix } from './matrix.js';

/**
 * Semi-supervised label propagation over a similarity graph, equivalent to scikit-learn 1.2.1's
 * `sklearn.semi_supervised.LabelSpreading` and `LabelPropagation` (same graph construction, normalisation, iteration,
 * convergence test, `label_distributions_`, `transduction_` and `n_iter_`). Checked against scikit-learn by
 * test/selflearn/spreading.test.ts on fixtures from benchmarks/fixtures/make_spreading_fixtures.py.
 */

export type SpreadingKernel = 'knn' | 'rbf';

export interface SpreadingParams {
  /** `knn`: sparse k-nearest-neighbour connectivity graph; `rbf`: dense exp(−γ‖x−y‖²). sklearn's default is rbf. */
  kernel?: SpreadingKernel;
  /** γ of the rbf kernel (sklearn default 20). */
  gamma?: number;
  /** k of the knn kernel, the point itself included (sklearn default 7). */
  nNeighbors?: number;
  /** Clamping factor of LabelSpreading in (0, 1): the share of a point's label taken from its neighbours. */
  alpha?: number;
  maxIter?: number;
  /** Convergence: stop when Σ|F_t − F_{t−1}| over all points and classes drops below tol. */
  tol?: number;
  /**
   * The rbf kernel is a dense n×n float64 matrix (8·n² bytes): above this many samples `fit` refuses with a clear
   * error instead of exhausting memory. Default 12,000 (≈1.2 GB). Use the knn kernel for larger sets.
   */
  maxDenseSamples?: number;
  knn?: KnnOptions;
}

/** The propagation operator: a sparse graph (knn) or a dense one (rbf). */
export type Graph = { kind: 'sparse'; matrix: CsrMatrix } | { kind: 'dense'; n: number; matrix: Float64Array };

const DEFAULT_MAX_DENSE = 12_000;

function checkParams(p: Required<Omit<SpreadingParams, 'knn'>>, variant: 'spreading' | 'propagation'): void {
  if (p.kernel !== 'knn' && p.kernel !== 'rbf') throw new InputError(`kernel must be "knn" or "rbf" (got "${p.kernel}")`);
  if (!(p.gamma >= 0) || !Number.isFinite(p.gamma)) throw new InputError(`gamma must be >= 0 (got ${p.gamma})`);
  if (!Number.isInteger(p.nNeighbors) || p.nNeighbors < 1) {
    throw new InputError(`n_neighbors must be a positive integer (got ${p.nNeighbors})`);
  }
  if (variant === 'spreading' && !(p.alpha > 0 && p.alpha < 1)) {
    throw new InputError(`alpha must be strictly between 0 and 1 (got ${p.alpha})`);
  }
  if (!Number.isInteger(p.maxIter) || p.maxIter < 1) throw new InputError(`max_iter must be a positive integer (got ${p.maxIter})`);
  if (!(p.tol >= 0)) throw new InputError(`tol must be >= 0 (got ${p.tol})`);
}

/** Dense rbf affinities exp(−γ‖xi−xj‖²) in float64, with exact zeros on the diagonal distances (as sklearn's). */
export function rbfAffinity(x: DenseMatrix, gamma: number): Float64Array {
  const n = x.rows;
  const d = x.cols;
  const w = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    w[i * n + i] = 1;
    const oi = i * d;
    for (let j = i + 1; j < n; j++) {
      const oj = j * d;
      let s = 0;
      for (let t = 0; t < d; t++) {
        const diff = x.data[oi + t] - x.data[oj + t];
        s += diff * diff;
      }
      const v = Math.exp(-gamma * s);
      w[i * n + j] = v;
      w[j * n + i] = v;
    }
  }
  return w;
}

/** Σ over rows, per column (scipy's `sum(axis=0)`, the in-degree `csgraph.laplacian` uses by default). */
function columnSums(a: CsrMatrix): Float64Array {
  const s = new Float64Array(a.cols);
  for (let p = 0; p < a.indptr[a.rows]; p++) s[a.indices[p]] += a.values[p];
  return s;
}

function csrDiagonal(a: CsrMatrix): Float64Array {
  const diag = new Float64Array(a.rows);
  for (let i = 0; i < a.rows; i++) {
    for (let p = a.indptr[i]; p < a.indptr[i + 1]; p++) if (a.indices[p] === i) diag[i] += a.values[p];
  }
  return diag;
}

/**
 * LabelSpreading's operator: −(normed Laplacian) with a zero diagonal, i.e. S = D^−½ W D^−½ off the diagonal, where
 * D holds W's column sums without the self-loops (scipy `csgraph.laplacian(W, normed=True)`); isolated points get
 * degree 1. W need not be symmetric (the knn graph is directed).
 */
export function spreadingGraph(params: { kernel: SpreadingKernel }, affinity: CsrMatrix | Float64Array, n: number): Graph {
  if (params.kernel === 'knn') {
    const a = affinity as CsrMatrix;
    const colSum = columnSums(a);
    const diag = csrDiagonal(a);
    const sw = new Float64Array(n);
    for (let j = 0; j < n; j++) {
      const w = colSum[j] - diag[j];
      sw[j] = w === 0 ? 1 : Math.sqrt(w);
    }
    const indptr = new Int32Array(n + 1);
    const indices: number[] = [];
    const values: number[] = [];
    for (let i = 0; i < n; i++) {
      for (let p = a.indptr[i]; p < a.indptr[i + 1]; p++) {
        const j = a.indices[p];
        if (j === i) continue;
        indices.push(j);
        values.push(a.values[p] / sw[i] / sw[j]);
      }
      indptr[i + 1] = indices.length;
    }
    return { kind: 'sparse', matrix: { rows: n, cols: n, indptr, indices: Int32Array.from(indices), values: Float64Array.from(values) } };
  }
  const m = Float64Array.from(affinity as Float64Array);
  for (let i = 0; i < n; i++) m[i * n + i] = 0;
  const sw = new Float64Array(n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) sw[j] += m[i * n + j];
  for (let j = 0; j < n; j++) sw[j] = sw[j] === 0 ? 1 : Math.sqrt(sw[j]);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) m[i * n + j] = m[i * n + j] / sw[j] / sw[i];
  return { kind: 'dense', n, matrix: m };
}

/**
 * LabelPropagation's operator. Dense (rbf): each row divided by its column sum (equal to the row sum, W being
 * symmetric). Sparse (knn): sklearn 1.2.1 divides every entry by one scalar, the column sum of column 0
 * (`data /= np.diag(np.array(normalizer))` takes the diagonal of a 1×n array); the per-step row normalisation in
 * `fit` cancels that scalar, so the result is the same as row normalising, but it is reproduced as written.
 */
export function propagationGraph(params: { kernel: SpreadingKernel }, affinity: CsrMatrix | Float64Array, n: number): Graph {
  if (params.kernel === 'knn') {
    const a = affinity as CsrMatrix;
    const c0 = columnSums(a)[0];
    return { kind: 'sparse', matrix: { ...a, values: a.values.map((v) => v / c0) } };
  }
  const m = Float64Array.from(affinity as Float64Array);
  const colSum = new Float64Array(n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) colSum[j] += m[i * n + j];
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) m[i * n + j] /= colSum[i];
  return { kind: 'dense', n, matrix: m };
}

function multiply(g: Graph, f: Float64Array, c: number, out: Float64Array): void {
  if (g.kind === 'sparse') csrTimesDense(g.matrix, f, c, out);
  else denseTimesDense(g.matrix, g.n, f, c, out);
}

/** Integer class labels with −1 for unlabelled points, as sklearn takes them. */
export type SemiSupervisedTargets = ArrayLike<number>;

abstract class BaseLabelPropagation {
  readonly params: Required<Omit<SpreadingParams, 'knn'>> & { knn: KnnOptions };
  protected abstract readonly variant: 'spreading' | 'propagation';

  /** Sorted distinct labels of the labelled points (sklearn `classes_`). */
  classes: number[] = [];
  /** n×C row-major, each row normalised to sum 1 (or all zero for points the graph cannot reach). */
  labelDistributions: Float64Array = new Float64Array(0);
  /** classes[argmax] of each row (ties: the first class). */
  transduction: Int32Array = new Int32Array(0);
  nIter = 0;
  converged = false;
  /** The operator used, kept so that several label sets (multi-label) can reuse one graph. */
  graph?: Graph;
  /** The points fitted on (sklearn `X_`), which `predictProba` weighs new points against; absent after `fitGraph` alone. */
  x?: DenseMatrix;

  constructor(params: SpreadingParams, defaults: { alpha: number; maxIter: number }) {
    this.params = {
      kernel: params.kernel ?? 'rbf',
      gamma: params.gamma ?? 20,
      nNeighbors: params.nNeighbors ?? 7,
      alpha: params.alpha ?? defaults.alpha,
      maxIter: params.maxIter ?? defaults.maxIter,
      tol: params.tol ?? 1e-3,
      maxDenseSamples: params.maxDenseSamples ?? DEFAULT_MAX_DENSE,
      knn: params.knn ?? {},
    };
  }

  /** Builds the propagation operator for X (the expensive part: the kNN search or the n×n rbf kernel). */
  buildGraph(x: DenseMatrix): Graph {
    checkParams(this.params, this.variant);
    checkMatrix(x);
    const n = x.rows;
    let affinity: CsrMatrix | Float64Array;
    if (this.params.kernel === 'knn') {
      affinity = knnConnectivity(kNearestNeighbors(x, this.params.nNeighbors, this.params.knn), n);
    } else {
      if (n > this.params.maxDenseSamples) {
        throw new InputError(
          `the rbf kernel needs a dense ${n}x${n} matrix (${((8 * n * n) / 2 ** 30).toFixed(1)} GiB); ` +
            `that is over the limit of ${this.params.maxDenseSamples} samples: use the knn kernel`,
        );
      }
      affinity = rbfAffinity(x, this.params.gamma);
    }
    return this.variant === 'spreading' ? spreadingGraph(this.params, affinity, n) : propagationGraph(this.params, affinity, n);
  }

  /** Fits on X (n×d) and y (n labels, −1 = unlabelled), like sklearn's `fit(X, y)`. */
  fit(x: DenseMatrix, y: SemiSupervisedTargets): this {
    if (y.length !== x.rows) throw new InputError(`X has ${x.rows} rows but y has ${y.length} labels`);
    return this.fitGraph(this.buildGraph(x), y, x);
  }

  /**
   * Runs the iteration on an already built operator (see `buildGraph`); `x`, the points it was built from, is kept
   * for `predictProba`.
   */
  fitGraph(graph: Graph, y: SemiSupervisedTargets, x?: DenseMatrix): this {
    checkParams(this.params, this.variant);
    const n = graph.kind === 'sparse' ? graph.matrix.rows : graph.n;
    if (y.length !== n) throw new InputError(`the graph has ${n} points but y has ${y.length} labels`);
    const classSet = new Set<number>();
    for (let i = 0; i < n; i++) {
      const v = y[i];
      if (!Number.isInteger(v) || v < -1) throw new InputError(`label ${v} at index ${i} is not a class index or -1`);
      if (v !== -1) classSet.add(v);
    }
    if (classSet.size === 0) throw new InputError('no labelled points: at least one label must be other than -1');
    const classes = [...classSet].sort((a, b) => a - b);
    const c = classes.length;
    const col = new Map(classes.map((v, i) => [v, i]));

    let f = new Float64Array(n * c);
    for (let i = 0; i < n; i++) if (y[i] !== -1) f[i * c + col.get(y[i])!] = 1;
    const yStatic = Float64Array.from(f);
    const propagation = this.variant === 'propagation';
    const alpha = this.params.alpha;
    if (!propagation) for (let i = 0; i < yStatic.length; i++) yStatic[i] *= 1 - alpha;

    let previous = new Float64Array(n * c);
    let next = new Float64Array(n * c);
    let converged = false;
    let it = 0;
    for (; it < this.params.maxIter; it++) {
      let change = 0;
      for (let i = 0; i < f.length; i++) change += Math.abs(f[i] - previous[i]);
      if (change < this.params.tol) {
        converged = true;
        break;
      }
      multiply(graph, f, c, next);
      if (propagation) {
        for (let i = 0; i < n; i++) {
          if (y[i] !== -1) {
            for (let k = 0; k < c; k++) next[i * c + k] = yStatic[i * c + k];
            continue;
          }
          let s = 0;
          for (let k = 0; k < c; k++) s += next[i * c + k];
          if (s === 0) s = 1;
          for (let k = 0; k < c; k++) next[i * c + k] /= s;
        }
      } else {
        for (let i = 0; i < next.length; i++) next[i] = alpha * next[i] + yStatic[i];
      }
      // previous ← f, f ← next; recycle the oldest buffer.
      const spare = previous;
      previous = f;
      f = next;
      next = spare;
    }
    this.nIter = converged ? it : this.params.maxIter;
    this.converged = converged;

    const transduction = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let k = 0; k < c; k++) s += f[i * c + k];
      if (s === 0) s = 1;
      let best = 0;
      for (let k = 0; k < c; k++) {
        f[i * c + k] /= s;
        if (f[i * c + k] > f[i * c + best]) best = k;
      }
      transduction[i] = classes[best];
    }
    this.graph = graph;
    this.x = x;
    this.classes = classes;
    this.labelDistributions = f;
    this.transduction = transduction;
    return this;
  }

  /**
   * Class probabilities of new points (m×C row-major, columns in `classes` order), as sklearn's `predict_proba(X)`:
   * with the knn kernel, the sum of the fitted distributions of each point's k nearest fitted points; with rbf, the
   * fitted distributions weighted by exp(−γ‖x−xi‖²); each row then normalised to sum 1. As in sklearn, a point whose
   * weights are all zero (rbf underflow far from every fitted point) gets NaN.
   */
  predictProba(x: DenseMatrix): Float64Array {
    const fitted = this.x;
    if (!fitted || this.classes.length === 0) throw new InputError('predictProba needs a model fitted with fit(X, y)');
    checkMatrix(x);
    if (x.cols !== fitted.cols) throw new InputError(`X has ${x.cols} features per point but the model was fitted on ${fitted.cols}`);
    const n = fitted.rows;
    const d = fitted.cols;
    const c = this.classes.length;
    const f = this.labelDistributions;
    const out = new Float64Array(x.rows * c);
    const dist = new Float64Array(n);
    const k = Math.min(this.params.nNeighbors, n);
    for (let q = 0; q < x.rows; q++) {
      const row = out.subarray(q * c, (q + 1) * c);
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let t = 0; t < d; t++) {
          const diff = x.data[q * d + t] - fitted.data[j * d + t];
          s += diff * diff;
        }
        dist[j] = s;
      }
      if (this.params.kernel === 'knn') {
        // nearest first, ties to the lower index
        const nearest = Array.from({ length: n }, (_, j) => j)
          .sort((a, b) => dist[a] - dist[b] || a - b)
          .slice(0, k);
        for (const j of nearest) for (let t = 0; t < c; t++) row[t] += f[j * c + t];
      } else {
        for (let j = 0; j < n; j++) {
          const w = Math.exp(-this.params.gamma * dist[j]);
          if (w !== 0) for (let t = 0; t < c; t++) row[t] += w * f[j * c + t];
        }
      }
      let sum = 0;
      for (let t = 0; t < c; t++) sum += row[t];
      for (let t = 0; t < c; t++) row[t] /= sum;
    }
    return out;
  }

  /** The most probable class of each new point (sklearn's `predict(X)`: `classes[argmax]`, ties to the first). */
  predict(x: DenseMatrix): Int32Array {
    const p = this.predictProba(x);
    const c = this.classes.length;
    const labels = new Int32Array(x.rows);
    for (let q = 0; q < x.rows; q++) {
      let best = 0;
      for (let t = 1; t < c; t++) if (p[q * c + t] > p[q * c + best]) best = t;
      labels[q] = this.classes[best];
    }
    return labels;
  }
}

/** Zhou et al. (2004) label spreading: F ← αSF + (1−α)Y with S the symmetrically normalised graph. */
export class LabelSpreading extends BaseLabelPropagation {
  protected readonly variant = 'spreading';
  constructor(params: SpreadingParams = {}) {
    super(params, { alpha: 0.2, maxIter: 30 });
  }
}

/** Zhu & Ghahramani (2002) label propagation: F ← PF with P row-normalised, labelled points hard-clamped. */
export class LabelPropagation extends BaseLabelPropagation {
  protected readonly variant = 'propagation';
  constructor(params: Omit<SpreadingParams, 'alpha'> = {}) {
    super(params, { alpha: 0, maxIter: 1000 });
  }
}
