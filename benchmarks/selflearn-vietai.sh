#!/usr/bin/env bash
# The self-learning experiment on the real VietAI data: original vs retrained from scratch vs fine-tuned, with
# label spreading (knn, rbf) and classifier-confidence pseudo-labels, on the held-out test part of splits/vietai.json.
# Usage: bash benchmarks/selflearn-vietai.sh [model-dir]    (env: EPOCHS, MAX_MINUTES, OUT, ARCH, SIZE)
# Without a model dir (and no models/default) it first trains an "original" with the same budget as the retrained
# models, so that scratch vs original differs only by the pseudo-labelled images.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=../shared/data/vietai
OUT=${OUT:-runs/selflearn-vietai}
EPOCHS=${EPOCHS:-6}
MAX_MINUTES=${MAX_MINUTES:-5}
ARCH=${ARCH:-resnet18-w8}
SIZE=${SIZE:-128}
MODEL=${1:-models/default}
mkdir -p "$OUT"
if [ ! -f "$MODEL/fundus.json" ]; then
  MODEL="$OUT/original"
  if [ ! -f "$MODEL/fundus.json" ]; then
    echo "training the original ($ARCH, ${SIZE}px, $EPOCHS epochs, at most $MAX_MINUTES min)" >&2
    nice -n 10 npx tsx src/cli.ts train --task multilabel --model "$ARCH" --image-size "$SIZE" \
      --data "$DATA/train.csv" "$DATA/train" --split splits/vietai.json --out "$MODEL" --run-dir "$OUT/runs/original" \
      --epochs "$EPOCHS" --max-minutes "$MAX_MINUTES" --seed 1 --restart --quiet
  fi
fi
nice -n 10 npx tsx src/cli.ts selflearn "$MODEL" --data "$DATA/train.csv" "$DATA/train" --split splits/vietai.json \
  --unlabelled "$DATA/unlabeled" --out "$OUT" --methods knn,rbf,confidence --retrain scratch,finetune \
  --epochs "$EPOCHS" --max-minutes "$MAX_MINUTES" --threshold "${THRESHOLD:-0.9}" --seed 0 --bootstrap 1000
