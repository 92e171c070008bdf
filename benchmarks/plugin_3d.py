"""The napari 3-D view of a long .lvp volume: time until every slice is decoded, the window's freezes, and
the status bar's count, with the worker processes the plugin starts (one per free core) or one process.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python benchmarks/plugin_3d.py [--data DIR] [--workers 1]

The volume: a train lung CT of ``../shared/data`` (61 slices of 512 x 512 int16) stacked forward, reversed and
forward again (183 slices), compressed once with ``lvpnet compress`` (the default codec) to ``--work``.
A 20 ms QTimer on the main thread measures the freezes (the longest gap between two ticks). ``--workers 1``
sets ``LVPNET_WORKERS=1`` (the plugin's worker processes off) to compare in the same session.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path


def root() -> Path:
    """The checkout. (No code at the top level of this script: the plugin starts worker processes only for a main
    module that every worker can import again without running anything, ``slice_pool.main_is_guarded``.)"""
    return Path(__file__).resolve().parents[1]


def volume(data: Path, work: Path) -> Path:
    """The 183-slice .lvp, made once."""
    import numpy as np

    out = work / "vol183.lvp"
    if not out.exists():
        a = np.load(data / "train" / "pyradiomics_lung2_CT.npz")["image"]
        npy = work / "vol183.npy"
        np.save(npy, np.concatenate([a, a[::-1], a], 0))
        subprocess.run([sys.executable, "-m", "lvpnet.cli", "compress", str(npy), str(out)], check=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=root().parent / "shared" / "data")
    ap.add_argument("--work", type=Path, default=Path("/tmp/lvpnet-plugin-3d"))
    ap.add_argument("--workers", type=int, default=None, help="LVPNET_WORKERS for the plugin (default: automatic)")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    args.work.mkdir(parents=True, exist_ok=True)
    path = volume(args.data, args.work)
    if args.workers is not None:
        os.environ["LVPNET_WORKERS"] = str(args.workers)
    import napari
    import numpy as np
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    gaps, last = [], [time.monotonic()]

    def tick():
        now = time.monotonic()
        gaps.append(now - last[0])
        last[0] = now

    def pump_until(cond, limit):
        t = time.monotonic()
        while not cond() and time.monotonic() - t < limit:
            QApplication.processEvents()
            time.sleep(0.01)
        return time.monotonic() - t

    viewer = napari.Viewer(show=True)
    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(20)
    statuses = []
    viewer.events.status.connect(lambda e: statuses.append((time.monotonic(), str(e.value))))
    (layer,) = viewer.open(str(path), plugin="napari-lvpnet")
    loader = layer.data.loader
    first = pump_until(lambda: any(loader.resolved(i) for i in range(loader.n)), 120)
    gaps.clear()
    last[0] = time.monotonic()
    viewer.dims.ndisplay = 3
    took = pump_until(lambda: all(loader.resolved(i) for i in range(loader.n)), 900)
    pump_until(lambda: False, 1.0)  # the final redraw
    g = np.array(gaps or [0.0])
    workers = os.environ.get("LVPNET_WORKERS", "automatic")
    print(f"workers {workers} (cores {len(os.sched_getaffinity(0))}): first slice {first:.1f} s; 3-D view of "
          f"{loader.n} slices complete in {took:.1f} s; main thread frozen > 1 s: {(g > 1).sum()} times, "
          f"> 0.3 s: {(g > 0.3).sum()}, longest {g.max():.2f} s; load average {os.getloadavg()[0]:.2f}")
    counts = [s for t, s in statuses if s.startswith("decoding ")]
    for s in counts[:: max(1, len(counts) // 4)]:
        print("  status:", s)
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
