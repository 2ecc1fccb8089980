#!/usr/bin/env bash
# Trains the other task models on the VietAI data, each fine-tuned from the bundled multilabel model (same
# architecture and preprocessing: its features transfer, and a from-scratch run per task would not fit the machine):
#   focus          softmax over diabetic retinopathy / glaucoma / normal (images with exactly one of them)
#   focus-sigmoid  the same three as independent sigmoids (keeps images with both DR and glaucoma)
#   one-vs-normal  one binary member per pathology against normal, combined into one predictor
# Each writes runs/tasks/<task>/model (with held-out metrics in fundus.json) and a log; then prints the table of
# models x tasks. Knobs (environment): DATA, SPLIT, BASE (the init model), MINUTES (budget of focus and of
# focus-sigmoid), MEMBER_MINUTES (budget of each of the 6 one-vs-normal members), EPOCHS.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/vietai}
SPLIT=${SPLIT:-splits/vietai.json}
BASE=${BASE:-models/default}
MINUTES=${MINUTES:-6}
MEMBER_MINUTES=${MEMBER_MINUTES:-2}
EPOCHS=${EPOCHS:-8}
OUT=runs/tasks
mkdir -p "$OUT"
export FUNDUS_NO_PROGRESS=1

train() {
  local task=$1 minutes=$2
  npx tsx src/cli.ts train --task "$task" --init-from "$BASE" --data "$DATA/train.csv" "$DATA/train" --split "$SPLIT" \
    --out "$OUT/$task/model" --run-dir "$OUT/$task/run" --epochs "$EPOCHS" --lr 5e-4 --warmup 0.5 \
    --max-minutes "$minutes" >"$OUT/$task.json" 2>"$OUT/$task.log"
}

train focus "$MINUTES"
train focus-sigmoid "$MINUTES"
train one-vs-normal "$MEMBER_MINUTES"
npx tsx scripts/models-table.ts "$BASE" models/alexnet-focus "$OUT/focus/model" "$OUT/focus-sigmoid/model" "$OUT/one-vs-normal/model"
