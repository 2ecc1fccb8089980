#!/usr/bin/env bash
# Trains the bundled models on the VietAI data with the canonical split, and writes their model cards:
#   models/default        multilabel: MobileNetV2 from its ImageNet weights (shipped in pretrained/), RGB 224 px, full
#                         fine-tuning (backbone at 0.1x the head's rate), 12 epochs within an 85-minute budget, flip TTA
#   models/focus          focus (DR / glaucoma / normal): fine-tuned from models/default, 8 epochs within 30 min
#   models/alexnet-focus  the reference AlexNet (green, 227 px) on the focus task, from scratch, for comparison: 24
#                         epochs within 28 min
# One run at a time, each with both cores: two parallel runs each go slower than half speed on 2 cores, and the
# cosine schedule is set for the epochs, so a starved run stops at its time budget before the rate has come down.
# Logs go to runs/<name>.log, checkpoints to runs/<name>/: if a run is interrupted, running this script again
# resumes it. Knobs (environment): DATA, SPLIT, MINUTES (budget of the default model), DEFAULT_EPOCHS, FOCUS_EPOCHS,
# FOCUS_MINUTES, ALEXNET_EPOCHS, ALEXNET_MINUTES, ONLY (default, focus or alexnet-focus).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/vietai}
SPLIT=${SPLIT:-splits/vietai.json}
MINUTES=${MINUTES:-85}
DEFAULT_EPOCHS=${DEFAULT_EPOCHS:-12}
FOCUS_EPOCHS=${FOCUS_EPOCHS:-8}
FOCUS_MINUTES=${FOCUS_MINUTES:-30}
ALEXNET_EPOCHS=${ALEXNET_EPOCHS:-24}
ALEXNET_MINUTES=${ALEXNET_MINUTES:-28}
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

train default --task multilabel --model mobilenetv2 --pretrained imagenet --recipe full --image-size 224 --resize area \
  --epochs "$DEFAULT_EPOCHS" --batch-size 16 --lr 1e-3 --backbone-lr-scale 0.1 --weight-decay 0.05 --warmup 1 --patience 5 \
  --tta hflip --max-minutes "$MINUTES"
train focus --task focus --init-from models/default --epochs "$FOCUS_EPOCHS" --batch-size 16 --lr 5e-4 --warmup 0.5 \
  --patience 4 --tta hflip --max-minutes "$FOCUS_MINUTES"
train alexnet-focus --task focus --model alexnet --resize area --epochs "$ALEXNET_EPOCHS" --batch-size 16 --lr 5e-4 \
  --warmup 1 --patience 8 --max-minutes "$ALEXNET_MINUTES"
