"""How long Python lingers after the viewer is closed in the middle of Inspect's all-slices run.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python benchmarks/plugin_close.py [--rounds 2]

Each round runs a child process: the 24-slice .lvp of ``plugin_inspect.py`` opened in napari, Inspect started on
every slice (napari's process and one worker), the viewer closed 6 s in; the parent times from the close to the
child's exit. Rounds alternate with the child told to undo ``slice_pool``'s stop at exit (``--old``: the worker
then finishes the task it holds before Python can exit), so both are measured on the same machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path


def child(old: bool) -> None:
    """The viewer, Inspect, the close. (No code at the top level of this script: the plugin starts worker processes
    only for a main module every worker can import again without running anything.)"""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import threading

    import napari
    import plugin_inspect
    from qtpy.QtWidgets import QApplication

    from lvpnet import slice_pool
    from napari_lvpnet import _inspect_widget as iw

    path = plugin_inspect.volume(Path("/tmp/lvpnet-plugin-inspect"))
    viewer = napari.Viewer(show=True)
    (layer,) = viewer.open(str(path), plugin="napari-lvpnet")
    _, dock = viewer.window.add_plugin_dock_widget("napari-lvpnet", "Inspect")
    dock.layer.value, dock.scope.value = layer, iw.ALL
    app = QApplication.instance()
    dock.run_button.changed.emit(True)
    start = time.monotonic()
    while time.monotonic() - start < 6:
        app.processEvents()
        time.sleep(0.02)
    print(f"at close: {dock.progress.native.format()}", flush=True)
    viewer.close()
    if old:  # as before session 36: nothing stops the workers at exit
        threading._threading_atexits[:] = [c for c in threading._threading_atexits
                                           if getattr(c, "func", c) is not slice_pool._stop_at_exit]
    print(f"CLOSED {time.time():.3f}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--child", choices=["old", "new"])
    args = ap.parse_args()
    if args.child:
        child(args.child == "old")
        return 0
    for r in range(args.rounds):
        for mode in ("old", "new"):
            out = subprocess.run([sys.executable, __file__, "--child", mode], capture_output=True, text=True)
            ended = time.time()
            closed = next((float(line.split()[1]) for line in out.stdout.splitlines() if line.startswith("CLOSED")), None)
            said = next((line for line in out.stdout.splitlines() if line.startswith("at close")), "")
            took = "no close" if closed is None else f"{ended - closed:.2f} s"
            print(f"round {r + 1}, {'stop at exit off' if mode == 'old' else 'stop at exit on'}: exit {took} after the "
                  f"close ({said}; exit status {out.returncode})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
