#!/usr/bin/env bash
# Trains the other task models on the VietAI data:
#   focus          softmax over diabetic retinopathy / glaucoma / normal (images with exactly one of them)
#   focus-sigmoid  the same three as independent sigmoids (keeps images with both DR and glaucoma)
#   one-vs-normal  one binary member per pathology against normal, combined into one predictor
# focus and focus-sigmoid are fine-tuned from the bundled multilabel model (same architecture and preprocessing: its
# features transfer). one-vs-normal trains its members from scratch at its own default architecture
# (resnet18-narrow): train refuses one-vs-normal on a pretrained backbone such as the bundled model's mobilenetv2,
# which would make six copies of the backbone in one network, so it cannot start from that model.
# Each writes runs/tasks/<task>/model (with held-out metrics in fundus.json) and a log; then prints the table of
# models x tasks. Knobs (environment): DATA, SPLIT, BASE (the init model of focus and focus-sigmoid), MINUTES (budget
# of focus and of focus-sigmoid), MEMBER_MINUTES (budget of each of the 6 one-vs-normal members), EPOCHS (of the
# fine-tuned models; the members take train's from-scratch defaults within their budget).
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

# train <task> <minutes> [options...]
train() {
  local task=$1 minutes=$2
  shift 2
  npx tsx src/cli.ts train --task "$task" --data "$DATA/train.csv" "$DATA/train" --split "$SPLIT" \
    --out "$OUT/$task/model" --run-dir "$OUT/$task/run" --max-minutes "$minutes" "$@" >"$OUT/$task.json" 2>"$OUT/$task.log"
}

FINE_TUNE=(--init-from "$BASE" --epochs "$EPOCHS" --lr 5e-4 --warmup 0.5)
train focus "$MINUTES" "${FINE_TUNE[@]}"
train focus-sigmoid "$MINUTES" "${FINE_TUNE[@]}"
train one-vs-normal "$MEMBER_MINUTES"
npx tsx scripts/models-table.ts "$BASE" models/alexnet-focus "$OUT/focus/model" "$OUT/focus-sigmoid/model" "$OUT/one-vs-normal/model"
