import * as tf from '@tensorflow/tfjs-core';
import { InputError } from '../util/errors.js';
import { checkMatrix, type CsrMatrix, type DenseMatrix } from './matrix.js';

export interface KnnOptions {
  /** Bytes of float32 distances computed per block (bounds memory for large n). Default 64 MiB. */
  blockBytes?: number;
  onProgress?: (rowsDone: number) => void;
}

export interface KnnResult {
  /** n×k neighbour indices, nearest first; ties broken by the lower index. */
  indices: Int32Array;
  /** n×k squared Euclidean distances in float64, matching `indices`. */
  sqDistances: Float64Array;
  k: number;
  /** Rows whose float32 candidate list could not be certified and were recomputed exactly over all points. */
  exactFallbackRows: number;
}

/**
 * The k nearest neighbours of every row of X among all rows of X, the point itself included (as scikit-learn's
 * `NearestNeighbors(n_neighbors=k).fit(X).kneighbors_graph(X_fit)` does: querying with the fitted data counts each
 * point as its own nearest neighbour at distance 0).
 *
 * Brute force in two steps, so that it is fast and still exact:
 * 1. candidates: a blocked float32 matmul through tfjs (so it runs on the native backend when the engine has one)
 *    on centred data, ‖q‖² + ‖x‖² − 2q·x, and `topk` of the k + m smallest;
 * 2. re-ranking: the candidates' distances recomputed in float64. A row is certified when its k-th exact distance is
 *    below the smallest possible exact distance of any non-candidate (the last candidate's float32 distance minus
 *    an error bound); otherwise that row is recomputed exactly against every point.
 */
export function kNearestNeighbors(x: DenseMatrix, k: number, opts: KnnOptions = {}): KnnResult {
  checkMatrix(x);
  const n = x.rows;
  const d = x.cols;
  if (!Number.isInteger(k) || k < 1) throw new InputError(`n_neighbors must be a positive integer (got ${k})`);
  if (k > n) throw new InputError(`n_neighbors (${k}) cannot exceed the number of samples (${n})`);

  // Centre in float64 first: distances do not change, and float32 cancellation in ‖q‖²+‖x‖²−2q·x shrinks.
  const mean = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) mean[j] += x.data[i * d + j];
  for (let j = 0; j < d; j++) mean[j] /= n;
  const centred64 = new Float64Array(n * d);
  const centred32 = new Float32Array(n * d);
  const norms = new Float64Array(n);
  let maxNorm = 0;
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < d; j++) {
      const v = x.data[i * d + j] - mean[j];
      centred64[i * d + j] = v;
      centred32[i * d + j] = v;
      s += v * v;
    }
    norms[i] = s;
    if (s > maxNorm) maxNorm = s;
  }

  const exactSq = (a: number, b: number): number => {
    let s = 0;
    const oa = a * d;
    const ob = b * d;
    for (let j = 0; j < d; j++) {
      const t = x.data[oa + j] - x.data[ob + j];
      s += t * t;
    }
    return s;
  };
  // A generous bound on float32 error of the expanded distance (accumulated rounding grows ~√d in blocked sums).
  const eps32 = 2 ** -23;
  const errBound = (i: number): number => 8 * (Math.sqrt(d) + 4) * eps32 * (norms[i] + maxNorm) + 1e-30;

  const kc = Math.min(n, k + Math.max(8, k));
  const indices = new Int32Array(n * k);
  const sqDistances = new Float64Array(n * k);
  let exactFallbackRows = 0;
  const blockRows = Math.max(1, Math.min(n, Math.floor((opts.blockBytes ?? 64 * 2 ** 20) / (4 * n))));

  const all = tf.tensor2d(centred32, [n, d]);
  const norms32 = Float32Array.from(norms);
  try {
    for (let r0 = 0; r0 < n; r0 += blockRows) {
      const r1 = Math.min(n, r0 + blockRows);
      const b = r1 - r0;
      // Only the matmul runs in tfjs; ‖q‖² is constant along a row, so selection ranks ‖x‖² − 2q·x and adds it back.
      const prod = tf.tidy(() => tf.matMul(tf.slice(all, [r0, 0], [b, d]), all, false, true));
      const block = prod.dataSync() as Float32Array;
      prod.dispose();
      for (let t = 0; t < block.length; t++) block[t] = norms32[t % n] - 2 * block[t];
      const { values, idx } = smallestPerRow(block, b, n, kc);
      const cand: { j: number; d2: number }[] = new Array(kc);
      for (let bi = 0; bi < b; bi++) {
        const i = r0 + bi;
        for (let c = 0; c < kc; c++) {
          const j = idx[bi * kc + c];
          cand[c] = { j, d2: exactSq(i, j) };
        }
        cand.sort((p, q) => p.d2 - q.d2 || p.j - q.j);
        const lastApprox = norms[i] + values[bi * kc + kc - 1];
        let chosen = cand;
        if (kc < n && !(cand[k - 1].d2 < lastApprox - errBound(i))) {
          exactFallbackRows++;
          const full: { j: number; d2: number }[] = [];
          for (let j = 0; j < n; j++) full.push({ j, d2: exactSq(i, j) });
          full.sort((p, q) => p.d2 - q.d2 || p.j - q.j);
          chosen = full;
        }
        for (let c = 0; c < k; c++) {
          indices[i * k + c] = chosen[c].j;
          sqDistances[i * k + c] = chosen[c].d2;
        }
      }
      opts.onProgress?.(r1);
    }
  } finally {
    all.dispose();
  }
  return { indices, sqDistances, k, exactFallbackRows };
}

/**
 * The directed kNN connectivity graph, A[i, j] = 1 when j is among the k nearest neighbours of i (self included),
 * as `kneighbors_graph(..., mode='connectivity')`. Column indices within a row are sorted.
 */
export function knnConnectivity(knn: KnnResult, n: number): CsrMatrix {
  const k = knn.k;
  const indptr = new Int32Array(n + 1);
  const indices = new Int32Array(n * k);
  for (let i = 0; i < n; i++) {
    indptr[i + 1] = (i + 1) * k;
    const row = Array.from(knn.indices.subarray(i * k, (i + 1) * k)).sort((a, b) => a - b);
    indices.set(row, i * k);
  }
  return { rows: n, cols: n, indptr, indices, values: new Float64Array(n * k).fill(1) };
}

/**
 * The kc smallest entries of each row of a rows×n block, ascending (ties: lower index first), as values and column
 * indices (rows×kc each).
 */
export function smallestPerRow(block: Float32Array, rows: number, n: number, kc: number): { values: Float32Array; idx: Int32Array } {
  const values = new Float32Array(rows * kc);
  const idx = new Int32Array(rows * kc);
  const bv = new Float64Array(kc);
  const bi = new Int32Array(kc);
  for (let r = 0; r < rows; r++) {
    const o = r * n;
    // Keep the kc best seen so far (unordered) and the position of the worst of them.
    for (let j = 0; j < kc; j++) {
      bv[j] = block[o + j];
      bi[j] = j;
    }
    let worst = 0;
    for (let j = 1; j < kc; j++) if (bv[j] > bv[worst]) worst = j;
    for (let j = kc; j < n; j++) {
      const v = block[o + j];
      if (v < bv[worst]) {
        bv[worst] = v;
        bi[worst] = j;
        worst = 0;
        for (let t = 1; t < kc; t++) if (bv[t] > bv[worst] || (bv[t] === bv[worst] && bi[t] > bi[worst])) worst = t;
      }
    }
    const order = Array.from({ length: kc }, (_, t) => t).sort((a, b) => bv[a] - bv[b] || bi[a] - bi[b]);
    order.forEach((t, c) => {
      values[r * kc + c] = bv[t];
      idx[r * kc + c] = bi[t];
    });
  }
  return { values, idx };
}
