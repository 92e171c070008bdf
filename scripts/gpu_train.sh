#!/usr/bin/env bash
# One device session of LVPNet work (about 8.5 min wall in all), for the GPU machine:
#   bash scripts/gpu_train.sh        (carry .traindata and .cudarun; results under $OUT)
# 1. LVP_RUNS training runs side by side on the one GPU (a small model leaves it mostly idle, so
#    parallel runs cost little each); each writes $OUT/NAME/best.pt;
# 2. the CUDA <-> CPU round trip (scripts/cuda_roundtrip.py) with the best checkpoint of the run
#    named by LVP_ROUNDTRIP_RUN (else the shipped weights) -> $OUT/cuda_roundtrip.json;
#    LVP_ROUNDTRIP_FIRST=1 runs it before training instead, with the shipped weights, so that its
#    GPU timings are not shared with the training runs;
# 3. every run's train.log, log.json and model_card.md packed into $OUT/logs.tgz (the device
#    returns at most 8 files).
# LVP_RUNS: ';'-separated "NAME|CONFIG|EXTRA ARGS". Default (docs/MODEL.md, "Latent and QCM, session 13"):
#   latent: the shipped weights resumed with the latent and the QCM reopened, the range hinge held at
#           the bin's middle, every latent bit charged (configs/lvpnet-v3-latent.json);
#   centred: the same with the rate's slope centred inside the bins and pulling back from below the
#            range (train.centred_rate; not yet run for long on the CPU) (configs/lvpnet-v3-latent-centred.json).
# The shipped recipe alone: LVP_RUNS="main|configs/lvpnet-v3.json|--resume resources/lvpnet-v1.pt".
# CPU smoke test of this exact script:
#   OUT=/tmp/gpu_smoke LVP_DEVICE=cpu LVP_MINUTES=0.4 LVP_EXTRA="--batch 2 --crop 64 --val-max-pixels 70000" \
#     LVP_ROUNDTRIP=0 bash scripts/gpu_train.sh
set -u
OUT=${OUT:-.out/gpu}
MIN=${LVP_MINUTES:-6.0}
DEV=${LVP_DEVICE:-cuda}
EXTRA=${LVP_EXTRA:-}
RUNS=${LVP_RUNS:-"latent|configs/lvpnet-v3-latent.json|--resume resources/lvpnet-v1.pt;centred|configs/lvpnet-v3-latent-centred.json|--resume resources/lvpnet-v1.pt"}
RT_RUN=${LVP_ROUNDTRIP_RUN:-latent}
ROUNDTRIP=${LVP_ROUNDTRIP:-1}
RT_FIRST=${LVP_ROUNDTRIP_FIRST:-0}
KILL_AFTER=${LVP_KILL_AFTER:-480}
DATA=${LVP_DATA:-.traindata}  # scripts/gpu_session.sh passes its smaller pack
PY=${PYTHON:-python3}
mkdir -p "$OUT"
# Stage the lvpnet package with an empty __init__.py, so that importing lvpnet.train does not import what
# src/lvpnet/__init__.py does (the container, the readers); the whole package, because the modules training
# uses import their neighbours (lvpnet.progress, lvpnet.errors: a staged subset failed on the first import
# that was not in it). LVP_SITE_DIR (scripts/gpu_session.sh: the carried site) gives what lvpnet.coding
# imports beyond torch and numpy (constriction; imagecodecs, for the val estimate's base layers).
STAGE=$(mktemp -d)
mkdir -p "$STAGE/lvpnet"
cp -r src/lvpnet/. "$STAGE/lvpnet/"
: > "$STAGE/lvpnet/__init__.py"
TRAIN_PATH="$STAGE${LVP_SITE_DIR:+:$LVP_SITE_DIR}"
export PYTHONUNBUFFERED=1
echo "== $(date -u) device=$DEV minutes=$MIN"
nvidia-smi --query-gpu=name,memory.total --format=csv 2>/dev/null || true
$PY -c "import torch, numpy; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'numpy', numpy.__version__)"
# The CUDA <-> CPU round trip with weights $1 when that file exists (else the shipped weights).
roundtrip() {
  [ -d .cudarun ] || return 0
  W=""
  [ -f "$1" ] && W="--weights $1"
  $PY -m pip install -q --no-index --no-deps --target /tmp/site .cudarun/*.whl 2>&1 | tail -n 2
  # shellcheck disable=SC2086
  PYTHONPATH=/tmp/site timeout 150 $PY scripts/cuda_roundtrip.py --run .cudarun --repeat 2 $W \
    --out "$OUT/cuda_roundtrip.json" > "$OUT/cuda_roundtrip.log" 2>&1
  echo "== roundtrip exit $?"
  tail -n 3 "$OUT/cuda_roundtrip.log"
}
[ "$ROUNDTRIP" = 1 ] && [ "$RT_FIRST" = 1 ] && roundtrip none
PIDS=()
NAMES=()
IFS=';' read -ra SPECS <<< "$RUNS"
for spec in "${SPECS[@]}"; do
  IFS='|' read -r name config args <<< "$spec"
  mkdir -p "$OUT/$name"
  # shellcheck disable=SC2086
  # -k 60: after the SIGINT, train.py's last val pass (about 40 s on an H200) and its files
  OMP_NUM_THREADS=${LVP_TRAIN_THREADS:-4} PYTHONPATH="$TRAIN_PATH" timeout -s INT -k 60 "$KILL_AFTER" $PY -m lvpnet.train --config "$config" \
    --data "$DATA" --device "$DEV" --minutes "$MIN" --out "$OUT/$name" $args $EXTRA > "$OUT/$name/train.log" 2>&1 &
  PIDS+=($!)
  NAMES+=("$name")
  echo "started $name: $config $args $EXTRA"
done
FAILED=0
for i in "${!PIDS[@]}"; do
  wait "${PIDS[$i]}"
  rc=$?
  echo "== ${NAMES[$i]} exit $rc"
  [ -f "$OUT/${NAMES[$i]}/best.pt" ] || FAILED=$((FAILED + 1))
  grep -E "resumed|reopened|model |val step|new best|done|skipped [1-9]|stopped|failed|Error|Traceback" \
    "$OUT/${NAMES[$i]}/train.log" | tail -n 12
done
[ "$ROUNDTRIP" = 1 ] && [ "$RT_FIRST" = 0 ] && roundtrip "$OUT/$RT_RUN/best.pt"
(cd "$OUT" && tar czf logs.tgz --ignore-failed-read ./*/train.log ./*/log.json ./*/model_card.md cuda_roundtrip.log 2>/dev/null;
 rm -f ./*/train.log ./*/log.json ./*/model_card.md cuda_roundtrip.log)
rm -rf "$STAGE"
ls -la "$OUT" "$OUT"/*/
echo "== $(date -u) done; runs without a best.pt: $FAILED"
exit "$FAILED"  # the run tool's rc says when training brought nothing back
