"""Plugin timings on the bundled sample (run under a display, e.g. xvfb-run -a).

Usage: python benchmarks/plugin_timing.py
Prints: seconds from viewer.open(sample .lvp) until the first slice is drawn,
and seconds to compress the sample from the Compress widget (verify on).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import napari
from lvpnet.resources import SAMPLE_CT, path
from qtpy.QtWidgets import QApplication

import lvpnet


def main() -> None:
    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory() as tmp:
        lvp = Path(tmp) / "sample_ct.lvp"
        volume = lvpnet.read(path(SAMPLE_CT))
        lvpnet.compress_to_file(volume, lvp)

        viewer = napari.Viewer(show=True)
        app.processEvents()
        t0 = time.perf_counter()
        (layer,) = viewer.open(str(lvp), plugin="napari-lvpnet")
        viewer.window._qt_viewer.canvas.native.update()
        app.processEvents()
        viewer.screenshot(canvas_only=True, flash=False)  # forces the first slice to be drawn
        t_open = time.perf_counter() - t0
        viewer.close()

        viewer = napari.Viewer(show=True)
        viewer.add_image(volume.array, name="ct")
        _, w = viewer.window.add_plugin_dock_widget("napari-lvpnet", "Compress")
        w.output.value = Path(tmp) / "widget.lvp"
        t0 = time.perf_counter()
        w.run_button.changed.emit(True)
        while not (w.last_result is not None and w.run_button.enabled):
            app.processEvents()
            time.sleep(0.01)
        t_compress = time.perf_counter() - t0
        codecs_used = w.last_result["result"].codec_counts
        viewer.close()
    print(f"open sample .lvp until the first slice is drawn: {t_open:.2f} s")
    print(f"compress the sample from the widget (verify on, codecs {codecs_used}): {t_compress:.2f} s")


if __name__ == "__main__":
    main()
