"""Peer for benchmarks/selflearn-bench.ts: times scikit-learn's LabelSpreading on the same data.

Usage (called by the TS benchmark): /usr/bin/python3 benchmarks/selflearn_peer.py <data.f32> <rows> <dim> <labels.i32> <out.json>
"""
import json
import sys
import time

import numpy as np
from sklearn.semi_supervised import LabelSpreading


def main():
    data, rows, dim, labels, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    X = np.fromfile(data, dtype='<f4').reshape(rows, dim).astype(np.float64)
    y = np.fromfile(labels, dtype='<i4')
    results = {}
    for name, params, n in (('knn', {'kernel': 'knn', 'n_neighbors': 7}, rows), ('rbf', {'kernel': 'rbf', 'gamma': 0.05}, min(rows, 4000))):
        t0 = time.perf_counter()
        m = LabelSpreading(alpha=0.2, **params).fit(X[:n], y[:n])
        results[name] = {'seconds': time.perf_counter() - t0, 'n': n, 'transduction': m.transduction_.tolist(), 'nIter': int(m.n_iter_)}
    with open(out, 'w') as f:
        json.dump(results, f)


if __name__ == '__main__':
    main()
