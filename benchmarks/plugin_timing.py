"""Plugin timings on the bundled sample (run under a display, e.g. xvfb-run -a).

Usage: python benchmarks/plugin_timing.py
Prints: seconds from viewer.open(sample .lvp) until the first slice is drawn (the file
written with the default codec, and with each other codec the widget offers: the fallback, and
the learned one alone when it is not the default), and seconds to compress the sample from the
Compress widget (verify on) with each.
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
    from lvpnet import codecs

    with tempfile.TemporaryDirectory() as tmp:
        volume = lvpnet.read(path(SAMPLE_CT))
        # the default ("auto"), and each other codec the widget offers for this scan
        default = codecs.default_codec_name(volume.array.dtype, volume.rgb)
        names = ["auto"] + [c for c in ("fallback", "lvpnet") if c != default and c in codecs.available()]
        print(f"auto = {default}")
        for name in names:
            lvp = Path(tmp) / f"sample_ct.{name}.lvp"
            # the learned codec's file without the per-slice fallback, so opening it decodes learned chunks
            lvpnet.compress_to_file(volume, lvp, codec=None if name == "auto" else name, safety_net=name != "lvpnet")
            viewer = napari.Viewer(show=True)
            app.processEvents()
            t0 = time.perf_counter()
            (layer,) = viewer.open(str(lvp), plugin="napari-lvpnet")
            viewer.window._qt_viewer.canvas.native.update()
            app.processEvents()
            viewer.screenshot(canvas_only=True, flash=False)  # forces the first slice to be drawn
            t_open = time.perf_counter() - t0
            viewer.close()
            print(f"[{name}] open sample .lvp ({lvpnet.open(lvp).codec_counts()}) until the first slice is drawn: "
                  f"{t_open:.2f} s")

            viewer = napari.Viewer(show=True)
            viewer.add_image(volume.array, name="ct")
            _, w = viewer.window.add_plugin_dock_widget("napari-lvpnet", "Compress")
            w.output.value = Path(tmp) / f"widget.{name}.lvp"
            if name != "auto":
                w.codec.value = name
            t0 = time.perf_counter()
            w.run_button.changed.emit(True)
            while not (w.last_result is not None and w.run_button.enabled):
                app.processEvents()
                time.sleep(0.01)
            t_compress = time.perf_counter() - t0
            codecs_used = w.last_result["result"].codec_counts
            viewer.close()
            print(f"[{name}] compress the sample from the widget (verify on, codecs {codecs_used}): {t_compress:.2f} s")


if __name__ == "__main__":
    main()
