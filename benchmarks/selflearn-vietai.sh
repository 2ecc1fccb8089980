#!/usr/bin/env bash
# The self-learning experiment on the real VietAI data, in one command and one report (docs/selflearn.md):
# the original model; label spreading (knn, rbf) pseudo-labels, retrained from scratch and fine-tuned; plain
# classifier-confidence pseudo-labels (fine-tuned); a second self-training round for the spreading kernel that did
# better on validation; and controls (the same fine-tuning / from-scratch training without pseudo-labels). All
# evaluated on the held-out test part of splits/vietai.json with bootstrap intervals and paired differences.
#
# Usage: bash benchmarks/selflearn-vietai.sh [model-dir]      (default models/default)
# Knobs (environment), defaults sized for ~35 min on a quiet 2-core machine at 128 px:
#   FT_EPOCHS=2 FT_MAX_MINUTES=3          each fine-tuned arm (5: control, knn, rbf, confidence, then round 2 of the better kernel)
#   SCRATCH_EPOCHS=4 SCRATCH_MAX_MINUTES=5 each from-scratch arm (3 of them: control, knn, rbf)
#   DEADLINE_MINUTES=34                   arms that could end past this are skipped, and the report says so
#   RETRAIN=scratch,finetune              retraining modes (finetune alone for a pretrained model at a large input, where
#                                         a from-scratch arm of a few minutes would see a fraction of an epoch)
#   ROUNDS=2 THRESHOLD=0.9 GAMMA_SCALE=30 N_NEIGHBORS=7 BOOTSTRAP=1000 SEED=0
#   LIMIT=                                at most this many images per split part in training (smoke runs only)
#   OUT=runs/selflearn-vietai-<time>      output folder (report.md, report.json, models/, runs/, log.txt)
#   NICE=10                               nice level of the run
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/vietai}
MODEL=${1:-models/default}
OUT=${OUT:-runs/selflearn-vietai-$(date -u +%Y%m%dT%H%M%S)}
FT_EPOCHS=${FT_EPOCHS:-2}
FT_MAX_MINUTES=${FT_MAX_MINUTES:-3}
SCRATCH_EPOCHS=${SCRATCH_EPOCHS:-4}
SCRATCH_MAX_MINUTES=${SCRATCH_MAX_MINUTES:-5}
DEADLINE_MINUTES=${DEADLINE_MINUTES:-34}
RETRAIN=${RETRAIN:-scratch,finetune}
ROUNDS=${ROUNDS:-2}
THRESHOLD=${THRESHOLD:-0.9}
GAMMA_SCALE=${GAMMA_SCALE:-30}
N_NEIGHBORS=${N_NEIGHBORS:-7}
BOOTSTRAP=${BOOTSTRAP:-1000}
SEED=${SEED:-0}
NICE=${NICE:-10}
if [ ! -f "$MODEL/fundus.json" ]; then
  echo "selflearn-vietai: $MODEL is not a fundus model directory (no fundus.json)" >&2
  exit 2
fi
mkdir -p "$OUT"
EXTRA=()
if [ -n "${LIMIT:-}" ]; then EXTRA+=(--limit "$LIMIT"); fi
echo "selflearn-vietai: $MODEL -> $OUT; fine-tuned arms $FT_EPOCHS epochs (cap $FT_MAX_MINUTES min), from-scratch arms" \
  "$SCRATCH_EPOCHS epochs (cap $SCRATCH_MAX_MINUTES min), deadline $DEADLINE_MINUTES min; log: $OUT/log.txt" >&2
start=$(date +%s)
nice -n "$NICE" npx tsx src/cli.ts selflearn "$MODEL" --data "$DATA/train.csv" "$DATA/train" --split splits/vietai.json \
  --unlabelled "$DATA/unlabeled" --out "$OUT" --methods knn,rbf,confidence --scratch-methods knn,rbf \
  --retrain "$RETRAIN" --rounds "$ROUNDS" --rounds-for best-spreading \
  --threshold "$THRESHOLD" --gamma-scale "$GAMMA_SCALE" --n-neighbors "$N_NEIGHBORS" \
  --epochs "$SCRATCH_EPOCHS" --max-minutes "$SCRATCH_MAX_MINUTES" \
  --finetune-epochs "$FT_EPOCHS" --finetune-max-minutes "$FT_MAX_MINUTES" \
  --deadline-minutes "$DEADLINE_MINUTES" --seed "$SEED" --bootstrap "$BOOTSTRAP" "${EXTRA[@]}" \
  2> >(tee "$OUT/log.txt" >&2) > /dev/null
echo "selflearn-vietai: done in $(( ($(date +%s) - start) / 60 )) min $(( ($(date +%s) - start) % 60 )) s: $OUT/report.md, $OUT/report.json" >&2
