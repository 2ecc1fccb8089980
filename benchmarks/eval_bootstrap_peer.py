"""Peer of benchmarks/eval-bootstrap.ts: the usual scikit-learn way to bootstrap per-class metrics.

Reads {labels, probs, n, classes, thresholds, resamples} as JSON from argv[1]; per stratified resample computes
roc_auc_score, average_precision_score, f1/precision/recall/specificity at the thresholds and at 0.5 for every class;
prints {"seconds": ..., "resamples": ...} as JSON. Run by the TypeScript benchmark with /usr/bin/python3.
"""
import json
import sys
import time
import warnings

import numpy as np
from sklearn.metrics import average_precision_score, confusion_matrix, roc_auc_score

warnings.simplefilter("ignore")
d = json.load(open(sys.argv[1]))
n, C, R = d["n"], d["classes"], d["resamples"]
Y = np.array(d["labels"], dtype=int).reshape(n, C)
P = np.array(d["probs"], dtype=float).reshape(n, C)
thr = np.array(d["thresholds"])
rng = np.random.default_rng(0)
keys = ["".join(map(str, r)) for r in Y]
strata = {}
for i, k in enumerate(keys):
    strata.setdefault(k, []).append(i)
strata = [np.array(v) for v in strata.values()]

t0 = time.perf_counter()
for _ in range(R):
    idx = np.concatenate([rng.choice(s, len(s), replace=True) for s in strata])
    y, p = Y[idx], P[idx]
    for k in range(C):
        roc_auc_score(y[:, k], p[:, k])
        average_precision_score(y[:, k], p[:, k])
        for t in (thr[k], 0.5):
            tn, fp, fn, tp = confusion_matrix(y[:, k], p[:, k] >= t, labels=[0, 1]).ravel()
            f1 = 2 * tp / max(1, 2 * tp + fp + fn)
            prec = tp / max(1, tp + fp)
            sens = tp / max(1, tp + fn)
            spec = tn / max(1, tn + fp)
print(json.dumps({"seconds": time.perf_counter() - t0, "resamples": R}))
