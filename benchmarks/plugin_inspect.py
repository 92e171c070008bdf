"""The napari Inspect dock on every slice of a .lvp volume: time until the maps and the plot are there, with the
worker processes the plugin starts (one per free core) or one process.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python benchmarks/plugin_inspect.py [--workers 1] [--shot F]

The volume: the bundled sample CT (12 slices of 512 x 512 int16) and its mirror image, 24 slices, compressed once
with ``lvpnet compress`` (the default codec) to ``--work``. The shipped weights, the bit-cost map only.
``--workers 1`` sets ``LVPNET_WORKERS=1`` (the plugin's worker processes off) to compare in the same session.
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


def volume(work: Path) -> Path:
    """The 24-slice .lvp, made once."""
    import nibabel as nib
    import numpy as np

    out = work / "vol24.lvp"
    if not out.exists():
        v = np.moveaxis(np.asarray(nib.load(root() / "resources" / "sample_ct.nii.gz").dataobj), -1, 0).astype(np.int16)
        npy = work / "vol24.npy"
        np.save(npy, np.ascontiguousarray(np.concatenate([v, v[:, ::-1]], 0)))
        subprocess.run([sys.executable, "-m", "lvpnet.cli", "compress", str(npy), str(out)], check=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=Path("/tmp/lvpnet-plugin-inspect"))
    ap.add_argument("--workers", type=int, default=None, help="1: the plugin's worker processes off")
    ap.add_argument("--shot", type=Path, default=None, help="a screenshot of the window at the end")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.workers is not None:
        os.environ["LVPNET_WORKERS"] = str(args.workers)
    args.work.mkdir(parents=True, exist_ok=True)
    path = volume(args.work)

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_lvpnet import _inspect_widget as iw

    viewer = napari.Viewer(show=True)
    (layer,) = viewer.open(str(path), plugin="napari-lvpnet")
    _, dock = viewer.window.add_plugin_dock_widget("napari-lvpnet", "Inspect")
    dock.layer.value, dock.scope.value = layer, iw.ALL
    app = QApplication.instance()
    texts = []
    start = time.monotonic()
    dock.run_button.changed.emit(True)
    while not (dock.run_button.enabled and dock.progress.visible is False):
        app.processEvents()
        text = dock.progress.native.format()
        if not texts or texts[-1][1] != text:
            texts.append((time.monotonic() - start, text))
        time.sleep(0.02)
    took = time.monotonic() - start
    res = dock.last_result
    from lvpnet import slice_pool

    print(f"{path.name}: {len(res.indices)} slices inspected in {took:.1f} s (workers: "
          f"{os.environ.get('LVPNET_WORKERS', 'automatic')}, main module guarded: {slice_pool.main_is_guarded()}), "
          f"{len(dock.skipped)} skipped")
    counted = next((t for t, text in texts if "slice" in text), None)
    print(f"first slice count on the bar after {counted:.1f} s" if counted is not None else "no slice count shown")
    print("progress:", " | ".join(f"{t:.1f} s {text}" for t, text in texts if "%" not in text))
    if args.shot is not None:
        for _ in range(20):
            app.processEvents()
            time.sleep(0.05)
        viewer.screenshot(str(args.shot), canvas_only=False)
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
