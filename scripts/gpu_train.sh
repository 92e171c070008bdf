#!/usr/bin/env bash
# One GPU training run of LVPNet (about 7.5 min wall in all), for the device machine:
#   bash scripts/gpu_train.sh            (with .traindata carried; results under $OUT)
# CPU smoke test of this exact script:
#   OUT=/tmp/gpu_smoke LVP_DEVICE=cpu LVP_MINUTES=0.5 LVP_EXTRA="--batch 2 --crop 64 --val-max-pixels 70000" bash scripts/gpu_train.sh
# Writes $OUT/main/{best.pt,log.json,model_card.md,train.log} (LVP_CONFIG, default configs/lvpnet-v2.json:
# the shipped model's kind; LVP_RESUME=CKPT continues from a checkpoint, e.g. resources/lvpnet-v1.pt)
# and, unless LVP_ONEPASS=0, $OUT/onepass/{best.pt,log.json,train.log} (one-pass model, trained alongside).
set -u
OUT=${OUT:-.out/gpu}
MIN=${LVP_MINUTES:-6.7}
DEV=${LVP_DEVICE:-cuda}
ONEPASS=${LVP_ONEPASS:-1}          # 1: a second run alongside the main one
SECOND_CONFIG=${LVP_SECOND_CONFIG:-configs/lvpnet-v1-onepass.json}
SECOND_NAME=${LVP_SECOND_NAME:-onepass}
ONEPASS_BATCH=${LVP_ONEPASS_BATCH:-6}
EXTRA=${LVP_EXTRA:-}
CONFIG=${LVP_CONFIG:-configs/lvpnet-v2.json}
RESUME=${LVP_RESUME:+--resume $LVP_RESUME}
KILL_AFTER=${LVP_KILL_AFTER:-555}
PY=${PYTHON:-python3}
mkdir -p "$OUT/main" "$OUT/$SECOND_NAME"
# Stage lvpnet.model + lvpnet.train under a bare package, so that whatever src/lvpnet/__init__.py
# imports (constriction, imagecodecs, ...) is not needed on the device.
STAGE=$(mktemp -d)
mkdir -p "$STAGE/lvpnet"
cp -r src/lvpnet/model src/lvpnet/train.py "$STAGE/lvpnet/"
touch "$STAGE/lvpnet/__init__.py"
export PYTHONPATH="$STAGE" PYTHONUNBUFFERED=1
echo "== $(date -u) device=$DEV minutes=$MIN"
nvidia-smi --query-gpu=name,memory.total --format=csv 2>/dev/null || true
$PY -c "import torch, numpy; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'numpy', numpy.__version__)"
ls -la .traindata | head -5
OPID=""
if [ "$ONEPASS" = 1 ]; then
  timeout -s INT -k 25 "$KILL_AFTER" $PY -m lvpnet.train --config "$SECOND_CONFIG" --data .traindata \
    --device "$DEV" --minutes "$MIN" --out "$OUT/$SECOND_NAME" --batch "$ONEPASS_BATCH" $EXTRA > "$OUT/$SECOND_NAME/train.log" 2>&1 &
  OPID=$!
fi
timeout -s INT -k 25 "$KILL_AFTER" $PY -m lvpnet.train --config "$CONFIG" --data .traindata \
  --device "$DEV" --minutes "$MIN" --out "$OUT/main" $RESUME $EXTRA 2>&1 | tee "$OUT/main/train.log"
RC=${PIPESTATUS[0]}
if [ -n "$OPID" ]; then
  wait "$OPID"; echo "$SECOND_NAME exit $?"
  grep -E "val step|new best|done|skipped [1-9]" "$OUT/$SECOND_NAME/train.log" | tail -n 30
fi
rm -rf "$STAGE"
ls -la "$OUT"/main "$OUT/$SECOND_NAME"
echo "== $(date -u) main exit $RC"
exit 0
