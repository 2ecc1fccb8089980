#!/usr/bin/env bash
# Held-out evaluation of a bundled model on the test part of the canonical split (full data, minutes on CPU):
# the JSON report, the plain-text summary and the self-contained HTML report go to runs/eval/.
# Usage: bash benchmarks/scripts/evaluate-bundled.sh [models/default] [test]
set -euo pipefail
cd "$(dirname "$0")/../.."
MODEL=${1:-models/default}
PART=${2:-test}
DATA=../shared/data/vietai
NAME=$(basename "$MODEL")-$PART
mkdir -p runs/eval
node bin/fundus.js evaluate "$MODEL" --data "$DATA/train.csv" "$DATA/train" --split splits/vietai.json --part "$PART" \
  --report "runs/eval/$NAME.html" --json > "runs/eval/$NAME.json"
node -e '
const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
const f = (m) => m.value === null ? "n/a" : `${m.value.toFixed(3)} [${m.ci ? m.ci.map((x) => x.toFixed(3)).join(", ") : "-"}]`;
console.log(`${r.model.architecture} (${r.model.task}) on ${r.imageCount} images, part ${r.data.part}; thresholds: ${r.model.thresholdPolicy}`);
for (const k of ["meanF1At05", "meanF1", "macroAuc", "macroAp"]) console.log(`${k.padEnd(12)} ${f(r.overall[k])}`);
console.log(`ece          ${r.overall.ece?.toFixed(3)}`);
for (const c of r.scoredClasses) { const m = r.perClass[c]; console.log(`${c.padEnd(28)} pos ${String(m.positives).padStart(4)}  auc ${f(m.auc)}  ap ${f(m.ap)}  f1 ${f(m.f1)}  sens ${f(m.sensitivity)}  spec ${f(m.specificity)}`); }
' "runs/eval/$NAME.json"
echo "report: runs/eval/$NAME.html"
