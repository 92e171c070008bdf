"""Plugin timings on the bundled sample (run under a display, e.g. xvfb-run -a).

Usage: python benchmarks/plugin_timing.py [--skip-compress]
Prints, for a .lvp of the sample written with the default codec and with each other codec the
widget offers (the fallback, and the learned one alone when it is not the default):

- the time from viewer.open until the first slice is on the canvas (the slice napari shows
  first, decoded in the background);
- the longest gap between ticks of a 20 ms QTimer on the main thread (how long the window was
  frozen) while opening, then while stepping through every slice as a user does: one step, wait
  until the slice is drawn, next step; and a fast scroll (a step every 100 ms over all slices);
- seconds to compress the sample from the Compress widget (verify on);
- the same open in a fresh process where nothing has imported lvpnet yet (the first file a user
  drops into a new napari): the reader's import of lvpnet (and torch) runs on the main thread.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import napari
import numpy as np
from lvpnet.resources import SAMPLE_CT, path
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QApplication

import lvpnet


class Ticks:
    """A 20 ms timer on the main thread; ``worst()`` is the longest gap between two ticks."""

    def __init__(self):
        self.t: list[float] = []
        self.timer = QTimer()
        self.timer.timeout.connect(lambda: self.t.append(time.perf_counter()))

    def start(self):
        self.t = [time.perf_counter()]
        self.timer.start(20)

    def stop(self) -> float:
        self.timer.stop()
        self.t.append(time.perf_counter())
        return float(np.diff(self.t).max())


def _spin_until(app, predicate, timeout=300.0):
    t0 = time.perf_counter()
    while not predicate():
        app.processEvents()
        time.sleep(0.005)
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError


def _drawn(layer, volume, i) -> bool:
    return np.array_equal(np.asarray(layer._slice.image.raw), volume.array[i])


def time_viewer(app, lvp: Path, volume, name: str) -> None:
    ticks = Ticks()
    viewer = napari.Viewer(show=True)
    app.processEvents()
    n = volume.array.shape[0]
    ticks.start()
    t0 = time.perf_counter()
    (layer,) = viewer.open(str(lvp), plugin="napari-lvpnet")
    t_return = time.perf_counter() - t0  # napari's own work (a new layer, its first draw) and the reader's
    first = (n - 1) // 2
    _spin_until(app, lambda: _drawn(layer, volume, first))
    t_first = time.perf_counter() - t0
    gap_open = ticks.stop()
    print(f"[{name}] open ({lvpnet.open(lvp).codec_counts()}): viewer.open returned after {t_return:.2f} s, "
          f"first slice drawn after {t_first:.2f} s; longest main-thread gap {gap_open:.3f} s")

    ticks.start()
    t0 = time.perf_counter()
    for i in range(n):  # step, wait until the slice is drawn, step again
        viewer.dims.set_current_step(0, i)
        _spin_until(app, lambda i=i: _drawn(layer, volume, i))
    t_steps = time.perf_counter() - t0
    gap_steps = ticks.stop()
    print(f"[{name}] step through {n} slices, each drawn before the next: {t_steps:.2f} s; "
          f"longest main-thread gap {gap_steps:.3f} s")
    viewer.close()

    viewer = napari.Viewer(show=True)  # a fresh cache
    (layer,) = viewer.open(str(lvp), plugin="napari-lvpnet")
    _spin_until(app, lambda: _drawn(layer, volume, first))
    ticks.start()
    t0 = time.perf_counter()
    for i in list(range(n)) + list(range(n - 1, -1, -1)):  # a fast scroll down and back up
        viewer.dims.set_current_step(0, i)
        t_step = time.perf_counter()
        while time.perf_counter() - t_step < 0.1:
            app.processEvents()
            time.sleep(0.005)
    _spin_until(app, lambda: _drawn(layer, volume, 0))
    t_scroll = time.perf_counter() - t0
    gap_scroll = ticks.stop()
    print(f"[{name}] fast scroll (a step every 0.1 s, {2 * n} steps) until the last slice is drawn: "
          f"{t_scroll:.2f} s; longest main-thread gap {gap_scroll:.3f} s")
    viewer.close()


FRESH = """
import sys, time
import numpy as np
import napari
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QApplication

app = QApplication.instance() or QApplication([])
viewer = napari.Viewer(show=True)
app.processEvents()
assert "lvpnet" not in sys.modules
ticks = [time.perf_counter()]
timer = QTimer()
timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
timer.start(20)
t0 = time.perf_counter()
(layer,) = viewer.open(sys.argv[1], plugin="napari-lvpnet")
t_return = time.perf_counter() - t0
first = layer.data.last_request[0]
while not (layer.data.loader.resolved(first) and not (np.asarray(layer._slice.image.raw) == layer.data.fill).all()):
    app.processEvents()
    time.sleep(0.005)
t_first = time.perf_counter() - t0
gap = float(np.diff(ticks + [time.perf_counter()]).max())
print(f"viewer.open returned after {t_return:.2f} s, first slice drawn after {t_first:.2f} s; "
      f"longest main-thread gap {gap:.3f} s")
"""


def time_fresh_process(lvp: Path, name: str) -> None:
    out = subprocess.run([sys.executable, "-c", FRESH, str(lvp)], capture_output=True, text=True, check=True)
    print(f"[{name}] open in a fresh napari (lvpnet not imported yet): {out.stdout.strip().splitlines()[-1]}")


def time_compress(app, volume, out: Path, codec: str) -> None:
    viewer = napari.Viewer(show=True)
    viewer.add_image(volume.array, name="ct")
    _, w = viewer.window.add_plugin_dock_widget("napari-lvpnet", "Compress")
    w.output.value = out
    if codec != "auto":
        w.codec.value = codec
    t0 = time.perf_counter()
    w.run_button.changed.emit(True)
    _spin_until(app, lambda: w.last_result is not None and w.run_button.enabled, timeout=900)
    t = time.perf_counter() - t0
    print(f"[{codec}] compress the sample from the widget (verify on, codecs "
          f"{w.last_result['result'].codec_counts}): {t:.2f} s")
    viewer.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-compress", action="store_true", help="only the viewer timings")
    args = ap.parse_args()
    app = QApplication.instance() or QApplication([])
    from lvpnet import codecs

    with tempfile.TemporaryDirectory() as tmp:
        volume = lvpnet.read(path(SAMPLE_CT))
        default = codecs.default_codec_name(volume.array.dtype, volume.rgb)
        names = ["auto"] + [c for c in ("fallback", "lvpnet") if c != default and c in codecs.available()]
        print(f"auto = {default}")
        for name in names:
            lvp = Path(tmp) / f"sample_ct.{name}.lvp"
            # the learned codec's file without the per-slice fallback, so opening it decodes learned chunks
            lvpnet.compress_to_file(volume, lvp, codec=None if name == "auto" else name, safety_net=name != "lvpnet")
            time_viewer(app, lvp, volume, name)
            time_fresh_process(lvp, name)
            if not args.skip_compress:
                time_compress(app, volume, Path(tmp) / f"widget.{name}.lvp", name)


if __name__ == "__main__":
    main()
