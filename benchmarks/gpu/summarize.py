"""Summarises recipe_study.py results: one row per variant, means over seeds, best validation AUC first.

    python3 benchmarks/gpu/summarize.py benchmarks/gpu/results/2026-11-26-h200.jsonl
"""
import collections
import json
import sys

runs = [json.loads(line) for path in sys.argv[1:] for line in open(path) if line.strip()]
by_variant = collections.defaultdict(list)
seen = set()
for r in runs:
    if (r["name"], r.get("seed")) in seen:  # a rerun of the same seed (the GPU's nondeterminism aside, a repeat)
        continue
    seen.add((r["name"], r.get("seed")))
    if "error" in r and r["error"]:
        print(f"{r['name']} seed {r['seed']}: {r['error']}", file=sys.stderr)
        continue
    by_variant[r["name"]].append(r)


def mean(rs, key):
    return sum(r[key] for r in rs) / len(rs)


print("| variant | seeds | val AUC (each seed) | test AUC | test mean F1 | flip TTA test AUC |")
print("| --- | --- | --- | --- | --- | --- |")
for name, rs in sorted(by_variant.items(), key=lambda kv: -mean(kv[1], "val_auc")):
    each = " ".join(f"{r['val_auc']:.3f}" for r in sorted(rs, key=lambda r: r["seed"]))
    print(f"| {name} | {len(rs)} | {mean(rs, 'val_auc'):.3f} ({each}) | {mean(rs, 'test_auc'):.3f} | "
          f"{mean(rs, 'test_f1'):.3f} | {mean(rs, 'test_auc_tta'):.3f} |")
