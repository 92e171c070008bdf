#!/usr/bin/env bash
# The GPU session's dry run on this CPU, as the device will run it: run this before spending a lent GPU.
#   bash scripts/gpu_session.sh --prepare      (first, once: .gpucarry/)
#   bash scripts/gpu_smoke.sh                  (about 5 minutes; exit 0 when scripts/gpu_session.sh is ready)
# The device has a bare Python (torch and numpy, nothing else) and the carried site (constriction,
# imagecodecs) for its Python 3.12. The project's .venv is no stand-in for it: its editable install
# filled in, from src/, modules the staged training package lacked, and gave constriction from the
# venv, so a smoke test there passed where the device's training failed on its first import (found
# session 33). So here: a bare venv with torch and numpy only (made once, in /tmp), the carry copied
# with a site built for this machine's Python, and scripts/gpu_session.sh run with them.
set -eu
cd "$(dirname "$0")/.."
PY3=${PYTHON3:-python3}
TAG=$($PY3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
BARE=${LVP_BARE:-/tmp/lvpnet-bare-$TAG}
WORK=${LVP_SMOKE_DIR:-/tmp/lvpnet-gpu-smoke}
[ -f .gpucarry/site.tar.xz ] || { echo "no .gpucarry/: run 'bash scripts/gpu_session.sh --prepare' first"; exit 2; }
if [ ! -x "$BARE/bin/python" ]; then
  echo "== a bare Python $TAG with torch and numpy only: $BARE"
  $PY3 -m venv "$BARE"
  "$BARE/bin/pip" install -q torch==2.13.0 numpy
fi
rm -rf "$WORK" && mkdir -p "$WORK/wheels" "$WORK/out"
# the site for this Python: constriction's wheel is per Python version, imagecodecs' is abi3
.venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version "$TAG" -d "$WORK/wheels" \
  constriction==0.5.0 "imagecodecs==$(.venv/bin/python -c 'import imagecodecs; print(imagecodecs.__version__)')"
cp -r .gpucarry "$WORK/carry"
.venv/bin/python scripts/gpu_carry.py --site-only --wheels "$WORK/wheels" --out "$WORK/carry"
set +e
OMP_NUM_THREADS=1 OUT="$WORK/out" LVP_CARRY="$WORK/carry" LVP_SITE_PATH="$WORK/site" LVP_DEVICE=cpu PYTHON="$BARE/bin/python" \
  LVP_TRAIN_S=${LVP_TRAIN_S:-120} LVP_TRAIN_THREADS=1 \
  LVP_EXTRA=${LVP_EXTRA:-"--batch 2 --crop 64 --val-max-pixels 70000"} LVP_BENCH_SLICES=${LVP_BENCH_SLICES:-8} \
  nice bash scripts/gpu_session.sh
rc=$?
set -e
ls "$WORK/out"/*/best.pt > /dev/null 2>&1 || { echo "== smoke FAILED: no training run wrote a best.pt (rc $rc)"; exit 1; }
[ -f "$WORK/out/volume_engine.json" ] || { echo "== smoke FAILED: no volume_engine.json (rc $rc)"; exit 1; }
[ "$rc" = 0 ] || { echo "== smoke FAILED: scripts/gpu_session.sh exit $rc"; exit 1; }
echo "== smoke passed: $WORK/out ($(ls "$WORK/out" | tr '\n' ' '))"
