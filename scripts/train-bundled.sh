#!/usr/bin/env bash
# Trains the two bundled models on the VietAI data with the canonical split, and writes their model cards:
#   models/default        best multilabel model: narrow ResNet-18, RGB 128 px, 40 epochs from scratch within the
#                         60-minute budget (58 min of training, then thresholds and held-out metrics)
#   models/alexnet-focus  the reference AlexNet (green, 227 px) on the focus task, for comparison: 24 epochs within
#                         28 min
# One run at a time, each with both cores: two parallel runs each go slower than half speed on 2 cores, and the
# cosine schedule is set for the epochs, so a starved run stops at its time budget before the rate has come down.
# Logs go to runs/<name>.log, checkpoints to runs/<name>/: if a run is interrupted, running this script again
# resumes it. Knobs (environment): DATA, SPLIT, MINUTES (budget of the default model), DEFAULT_EPOCHS, FOCUS_EPOCHS,
# FOCUS_MINUTES, ONLY (default or alexnet-focus).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/vietai}
SPLIT=${SPLIT:-splits/vietai.json}
MINUTES=${MINUTES:-58}
DEFAULT_EPOCHS=${DEFAULT_EPOCHS:-40}
FOCUS_EPOCHS=${FOCUS_EPOCHS:-24}
FOCUS_MINUTES=${FOCUS_MINUTES:-28}
ONLY=${ONLY:-}
NOTES_DIR=${NOTES_DIR:-docs/model-notes}
mkdir -p runs
export FUNDUS_NO_PROGRESS=1

train() {
  local name=$1
  shift
  [ -n "$ONLY" ] && [ "$ONLY" != "$name" ] && return 0
  npx tsx src/cli.ts train --data "$DATA/train.csv" "$DATA/train" --split "$SPLIT" \
    --out "models/$name" --run-dir "runs/$name" "$@" >"runs/$name.json" 2>"runs/$name.log"
  npx tsx scripts/train-model-card.ts "models/$name" ${NOTES_DIR:+--notes "$NOTES_DIR/$name.md"}
  npx tsx scripts/record-reference-predictions.ts "models/$name"
  cat "runs/$name.json"
}

train default --task multilabel --model resnet18-narrow --image-size 128 --resize area --epochs "$DEFAULT_EPOCHS" \
  --batch-size 16 --lr 2e-3 --weight-decay 0.05 --warmup 1 --patience 10 --max-minutes "$MINUTES"
train alexnet-focus --task focus --model alexnet --resize area --epochs "$FOCUS_EPOCHS" --batch-size 16 --lr 5e-4 \
  --warmup 1 --patience 8 --max-minutes "$FOCUS_MINUTES"
