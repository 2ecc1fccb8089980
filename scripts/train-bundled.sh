#!/usr/bin/env bash
# Trains the bundled models (train writes each model card from its data), validates them on every source
# (external-validation.json) and adds that and docs/model-notes/<name>.md to their cards (scripts/train-model-card.ts):
#   models/default        multilabel on VietAI + mexico-b + codras (datasets/train.json; classes a source does not grade
#                         are masked out of the loss), by progressive resizing in three runs, each from the last:
#                         default-224: MobileNetV2 from its ImageNet weights (shipped in pretrained/), RGB 224 px masked
#                           to a standard circle, camera augmentation, full fine-tuning (backbone at 0.1x the head's
#                           rate), 12 epochs within a 40-minute budget, flip TTA;
#                         default-320: 320 px, lr 3e-4 (backbone 0.3x), 3 epochs within 20 minutes;
#                         default: 448 px, lr 1e-4, 2 epochs within 22 minutes (small hard exudates need the resolution:
#                           HEI-MED), against a source-adversarial head (strength 0.2, at 10x the learning rate) so that
#                           the finer input does not let the features keep more of the camera (fundus audit;
#                           docs/generalisation.md), with a lesion map head on block_12_add trained on codras's expert
#                           lesion boxes, whose peak feeds the diabetic retinopathy score and whose map is that class's
#                           heatmap (docs/explain-localisation.md)
#                         The three budgets add up to 82 minutes (issue #15: at most 90 on this 2-core machine).
#   models/focus          focus (DR / glaucoma / normal) on the same sources: fine-tuned from the 224 px stage, 8 epochs
#                         within 30 min
#   models/alexnet-focus  the reference AlexNet (green, 227 px) on the focus task, VietAI only, from scratch, for
#                         comparison: 24 epochs within 28 min
# One run at a time, each with both cores: two parallel runs each go slower than half speed on 2 cores, and the
# cosine schedule is set for the epochs, so a starved run stops at its time budget before the rate has come down.
# Logs go to runs/<name>.log, checkpoints to runs/<name>/: if a run is interrupted, running this script again
# resumes it. Knobs (environment): DATASETS, EXTERNAL, EXTERNAL_DATA (the external sources' folder), DATA, SPLIT, MINUTES (budget of the 224 px stage), DEFAULT_EPOCHS,
# FOCUS_EPOCHS, FOCUS_MINUTES, ALEXNET_EPOCHS, ALEXNET_MINUTES, ONLY (default, focus or alexnet-focus).
set -euo pipefail
cd "$(dirname "$0")/.."
DATASETS=${DATASETS:-datasets/train.json}
EXTERNAL=${EXTERNAL:-datasets/external.json}
EXTERNAL_DATA=${EXTERNAL_DATA:-../shared/data/external}
DATA=${DATA:-../shared/data/vietai}
SPLIT=${SPLIT:-splits/vietai.json}
MINUTES=${MINUTES:-40}
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
  # --force: these runs replace the bundled models (train refuses to replace another run's model without it)
  npx tsx src/cli.ts train --out "models/$name" --run-dir "runs/$name" --force "$@" >"runs/$name.json" 2>"runs/$name.log"
  npx tsx src/cli.ts evaluate "models/$name" --datasets "$DATASETS" "$EXTERNAL" --part test --json --quiet \
    >"models/$name/external-validation.json"
  npx tsx scripts/train-model-card.ts "models/$name" ${NOTES_DIR:+--notes "$NOTES_DIR/$name.md"}
  npx tsx scripts/record-reference-predictions.ts "models/$name"
  cat "runs/$name.json"
}

# A stage of the default model: trained into runs/<stage>/model, kept out of models/ (only the last stage ships).
stage() {
  local name=$1
  shift
  [ -n "$ONLY" ] && [ "$ONLY" != default ] && [ "$ONLY" != focus ] && return 0
  npx tsx src/cli.ts train --out "runs/$name/model" --run-dir "runs/$name/run" "$@" >"runs/$name.json" 2>"runs/$name.log"
}

stage default-224 --datasets "$DATASETS" --task multilabel --model mobilenetv2 --pretrained imagenet --recipe full \
  --image-size 224 --resize area --mask circle --camera-augment \
  --epochs "$DEFAULT_EPOCHS" --batch-size 16 --lr 1e-3 --backbone-lr-scale 0.1 --weight-decay 0.05 --warmup 1 --patience 5 \
  --tta hflip --max-minutes "$MINUTES"
FINE_TUNE=(--datasets "$DATASETS" --task multilabel --camera-augment --batch-size 16 --weight-decay 0.05 --recipe full
  --backbone-lr-scale 0.3 --batch-norm train --tta hflip)
stage default-320 "${FINE_TUNE[@]}" --init-from runs/default-224/model --image-size 320 --lr 3e-4 --epochs 3 --warmup 0.3 \
  --seed 43 --max-minutes 20
train default "${FINE_TUNE[@]}" --init-from runs/default-320/model --image-size 448 --lr 1e-4 --epochs 2 --warmup 0.1 --seed 45 \
  --source-adversarial 0.2 --adversary-lr-scale 10 --max-minutes 22 \
  --lesion-attention 1 --lesions "$EXTERNAL_DATA/codras/lesions.csv" --lesion-source codras --lesion-layer block_12_add --lesion-head
# A model's default heatmap: the method that localises the codras test photographs' lesion boxes best at the layer that
# measured best (benchmarks/results/localisation-layers.md), written into its fundus.json (docs/explain-localisation.md)
# A class's own heatmap layer (the localisation benchmark's --record-class): diabetic retinopathy at the lesion map.
record_class_heatmap() {
  local name=$1 methods=$2 layer=$3
  [ -n "$ONLY" ] && [ "$ONLY" != "$name" ] && return 0
  npx tsx benchmarks/scripts/localisation.ts "models/$name" --methods "$methods" --datasets "$DATASETS" --part test \
    --limit 0 --batch-size 4 --layer "$layer" --record-class >"runs/$name-localisation-$layer.md" 2>"runs/$name-localisation-$layer.log" ||
    echo "models/$name: the $layer map did not localise better than the centre prior; not recorded (runs/$name-localisation-$layer.md)" >&2
}
record_heatmap() {
  local name=$1 methods=$2 layer=$3
  [ -n "$ONLY" ] && [ "$ONLY" != "$name" ] && return 0
  npx tsx benchmarks/scripts/localisation.ts "models/$name" --methods "$methods" --datasets "$DATASETS" --part test \
    --limit 0 --batch-size 4 --layer "$layer" --record >"runs/$name-localisation.md" 2>"runs/$name-localisation.log" ||
    echo "models/$name: no heatmap method localised better than the centre prior; none recorded (runs/$name-localisation.md)" >&2
}
# models/default: Grad-CAM, because diabetic retinopathy's map is its lesion map head's (`lesion_map`: one channel behind
# a max pooling), where LayerCAM and HiResCAM see one cell's gradient and show only the map's peak; Grad-CAM shows the
# map itself. The other classes keep Grad-CAM at block_12_add (chosen there before the head, docs/explain-localisation.md).
record_heatmap default gradcam block_12_add
record_class_heatmap default gradcam lesion_map
train focus --datasets "$DATASETS" --task focus --init-from runs/default-224/model --camera-augment --epochs "$FOCUS_EPOCHS" --batch-size 16 --lr 5e-4 --warmup 0.5 \
  --patience 4 --tta hflip --max-minutes "$FOCUS_MINUTES"
record_heatmap focus gradcam,layercam,hirescam block_5_add
train alexnet-focus --data "$DATA/train.csv" "$DATA/train" --split "$SPLIT" --task focus --model alexnet --resize area --epochs "$ALEXNET_EPOCHS" --batch-size 16 --lr 5e-4 \
  --warmup 1 --patience 8 --max-minutes "$ALEXNET_MINUTES"
record_heatmap alexnet-focus gradcam,layercam,hirescam conv2
