#!/usr/bin/env bash
# One GPU session in ONE device call (about 540 s wall): training resumed from the last committed
# GPU checkpoint, then the engine benchmark; everything back through $OUT.
#
# Here, once per checkout change of the wheels/data (git-ignored .gpucarry/, about 28 MB):
#   bash scripts/gpu_session.sh --prepare        (scripts/gpu_carry.py: slim imagecodecs + constriction
#                                                 site.tar.xz, vol/sources.npy, train/ pack sized to fit)
# The device call (run tool), exactly:
#   command:   bash scripts/gpu_session.sh
#   carry:     [".gpucarry"]
#   timeout_s: 600            (the script ends by itself at about LVP_SESSION_S=540 s)
# What comes back under $OUT (at most 8 files): <run>/best.pt of each training run (8.8 MB each),
#   logs.tgz (each run's train.log, log.json, model_card.md), volume_engine.json + volume_engine.log.
# Afterwards, here, so that the next GPU session continues instead of starting over:
#   bash scripts/gpu_session.sh --collect FILES_AT      (the reply's files_at folder)
#   -> checkpoints/gpu-latest/resume.pt (the best run, float16 weights, 3.7 MB) + source.json, and it
#      prints the lines for docs/MODEL.md section 5; keep logs.tgz under checkpoints/gpu-h200-sessionN/
#      (log.json gzipped); then `git add checkpoints/gpu-latest ... && git commit -- <those paths>`.
#
# Training: the runs of scripts/gpu_train.sh (LVP_RUNS there). With checkpoints/gpu-latest/resume.pt
#   committed, the default is one run "resume" that continues it with its own train config (latent
#   and QCM reopening off: scripts/gpu_checkpoint.py expand); without it, gpu_train.sh's default runs
#   from the shipped resources/lvpnet-v1.pt. LVP_TRAIN_S (default 300) bounds training wall time in
#   all: fitting minutes = LVP_TRAIN_S - 100 s, for start-up and the last val pass (an H200 took 40 s
#   a val pass and 0.7 min past a 4-minute budget in session 8), val every 1.6 min (LVP_EXTRA).
# Engine: benchmarks/volume_engine.py --device cuda with --budget-s = what is left of LVP_SESSION_S
#   less 120 s (the 8-slice CPU <-> GPU portability check and warm-up come after the timed volume):
#   one process on the GPU, then the same volume by a pool of processes on the GPU and by one on the
#   CPU (one per core; the per-slice stages run on the CPU either way), and a cProfile of 2 slices.
#
# Size that travels (2026-12-05, after --prepare): tracked files 28.0 MB (`git ls-files -z | xargs -0
#   du -cb`) + .gpucarry 29.5 MB (site.tar.xz 5.5, vol 2.1, train 21.9) = 54.8 MiB, 4 MB kept
#   for checkpoints/gpu-latest/ (gpu_carry.py writes .gpucarry/size.txt); the device's limit is 64 MiB.
#
# Before a GPU session, the dry run of this exact script as the device runs it (a bare Python with torch
# and numpy only, the carry with a site for this machine's Python; about 3 minutes):
#   bash scripts/gpu_smoke.sh
# (The project's .venv is no stand-in for the device: its editable install filled in what the staged
# training package lacked, so a smoke test there passed where the device's training failed.)
# Exit status: 0, or 5 when no training run brought back a best.pt (the engine's results may be there).
set -u
case "${1:-}" in
  --prepare) shift; exec "${PYTHON:-.venv/bin/python}" scripts/gpu_carry.py "$@" ;;
  --collect) shift; exec "${PYTHON:-.venv/bin/python}" scripts/gpu_checkpoint.py collect "$@" ;;
esac
T0=$(date +%s)
OUT=${OUT:-.out/gpu_session}
TOTAL=${LVP_SESSION_S:-540}
TRAIN_S=${LVP_TRAIN_S:-300}
DEV=${LVP_DEVICE:-cuda}
PY=${PYTHON:-python3}
CARRY=${LVP_CARRY:-.gpucarry}
mkdir -p "$OUT"
[ -f "$CARRY/site.tar.xz" ] || { echo "no $CARRY/: run 'bash scripts/gpu_session.sh --prepare' here and carry it"; exit 2; }
echo "== $(date -u) gpu_session device=$DEV session=${TOTAL}s train=${TRAIN_S}s"
# The carried site: a wheel install of these two is an unzip, so the tarball unpacks into /tmp/site
# (by Python: its lzma is there whatever the machine's tar lacks).
SITE=${LVP_SITE_PATH:-/tmp/site}
mkdir -p "$SITE" && $PY -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" "$CARRY/site.tar.xz" "$SITE" || exit 3
[ "${LVP_SITE:-1}" = 1 ] || SITE=""
# The run(s): resume the committed GPU checkpoint when there is one (else gpu_train.sh's default).
if [ -z "${LVP_RUNS:-}" ] && [ -f checkpoints/gpu-latest/resume.pt ]; then
  RES=$(mktemp -d)
  $PY scripts/gpu_checkpoint.py expand checkpoints/gpu-latest/resume.pt "$RES" || exit 4
  export LVP_RUNS="resume|$RES/config.json|--resume $RES/resume.pt"
fi
MIN=$(awk -v s="$TRAIN_S" 'BEGIN { m = (s - 100) / 60; if (m < 0.2) m = 0.2; printf "%.2f", m }')
OUT="$OUT" LVP_EXTRA="${LVP_EXTRA:---val-every 1.6}" LVP_DATA="$CARRY/train" LVP_MINUTES="$MIN" LVP_KILL_AFTER=$((TRAIN_S - 20)) LVP_ROUNDTRIP=0 \
  LVP_DEVICE="$DEV" LVP_SITE_DIR="$SITE" bash scripts/gpu_train.sh
TRAIN_RC=$?
# The engine benchmark: the package laid out as an install does (resources/ inside lvpnet/).
PKG=$(mktemp -d)
cp -r src/lvpnet "$PKG/" && cp -r resources "$PKG/lvpnet/resources"
LEFT=$((TOTAL - ($(date +%s) - T0)))
BUDGET=$((LEFT - 120))
[ "$BUDGET" -lt 20 ] && BUDGET=20
if [ -n "${LVP_BENCH_SLICES:-}" ]; then SIZE="--slices $LVP_BENCH_SLICES"; else SIZE="--budget-s $BUDGET"; fi
echo "== $(date -u) engine: ${LEFT}s left, $SIZE"
# shellcheck disable=SC2086
PYTHONPATH="${SITE:+$SITE:}$PKG" PYTHONUNBUFFERED=1 timeout -k 10 $((LEFT > 40 ? LEFT - 10 : 30)) \
  $PY benchmarks/volume_engine.py --run "$CARRY/vol" --device "$DEV" $SIZE --pools "same:auto,cpu:auto" --profile \
  --out "$OUT/volume_engine.json" \
  > "$OUT/volume_engine.log" 2>&1
echo "== engine exit $?"
grep -E '"(slices|encode_mpix_s|decode_mpix_s|bits_per_sample|gpu_peak_memory_mib|all_exact)"' "$OUT/volume_engine.log"
tail -n 3 "$OUT/volume_engine.log"
rm -rf "$PKG"
find "$OUT" -type f -exec ls -la {} +
echo "== $(date -u) gpu_session done in $(($(date +%s) - T0)) s; training runs without a best.pt: $TRAIN_RC"
exit $((TRAIN_RC > 0 ? 5 : 0))  # 5: training brought nothing back (the engine's results may still be there)
