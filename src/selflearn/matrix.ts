import { InputError } from '../util/errors.js';

/** A row-major matrix of `rows` samples by `cols` features (embeddings, label distributions). */
export interface DenseMatrix {
  data: Float32Array | Float64Array;
  rows: number;
  cols: number;
}

/** A sparse matrix in compressed-sparse-row form (scipy's `csr_matrix` layout). */
export interface CsrMatrix {
  rows: number;
  cols: number;
  indptr: Int32Array;
  indices: Int32Array;
  values: Float64Array;
}

/** Wraps nested arrays (e.g. parsed JSON) as a float64 matrix, checking that every row has the same length. */
export function fromRows(rows: readonly (readonly number[])[]): DenseMatrix {
  const n = rows.length;
  const d = n > 0 ? rows[0].length : 0;
  const data = new Float64Array(n * d);
  rows.forEach((r, i) => {
    if (r.length !== d) throw new InputError(`row ${i} has ${r.length} values, expected ${d}`);
    data.set(r, i * d);
  });
  return { data, rows: n, cols: d };
}

export function checkMatrix(x: DenseMatrix, what = 'X'): void {
  if (!Number.isInteger(x.rows) || !Number.isInteger(x.cols) || x.rows < 1 || x.cols < 1) {
    throw new InputError(`${what} must have at least one row and one column (got ${x.rows}x${x.cols})`);
  }
  if (x.data.length !== x.rows * x.cols) {
    throw new InputError(`${what} holds ${x.data.length} values but is declared ${x.rows}x${x.cols}`);
  }
  for (let i = 0; i < x.data.length; i++) {
    if (!Number.isFinite(x.data[i])) {
      throw new InputError(`${what} has a non-finite value at row ${Math.floor(i / x.cols)}, column ${i % x.cols}`);
    }
  }
}

/** out = A·B for sparse A (n×n) and dense B (n×c), both row-major. */
export function csrTimesDense(a: CsrMatrix, b: Float64Array, c: number, out: Float64Array): void {
  out.fill(0);
  for (let i = 0; i < a.rows; i++) {
    const o = i * c;
    for (let p = a.indptr[i]; p < a.indptr[i + 1]; p++) {
      const v = a.values[p];
      const r = a.indices[p] * c;
      for (let k = 0; k < c; k++) out[o + k] += v * b[r + k];
    }
  }
}

/** out = A·B for dense square A (n×n) and dense B (n×c). */
export function denseTimesDense(a: Float64Array, n: number, b: Float64Array, c: number, out: Float64Array): void {
  out.fill(0);
  for (let i = 0; i < n; i++) {
    const o = i * c;
    const row = i * n;
    for (let j = 0; j < n; j++) {
      const v = a[row + j];
      if (v === 0) continue;
      const r = j * c;
      for (let k = 0; k < c; k++) out[o + k] += v * b[r + k];
    }
  }
}
