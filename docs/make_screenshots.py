"""Make the README screenshots from a real napari viewer.

Usage (a display is needed; on a server: xvfb-run -a -s "-screen 0 1600x1000x24"):
    python docs/make_screenshots.py [--weights PATH]

Writes docs/images/compress.png (the Compress dock after a run on the sample),
docs/images/inspect.png (the sample CT, compressed to .lvp and opened lazily, with
the bit-cost heatmap over it and the Inspect dock) and docs/images/damaged.png (the
same file with one flipped byte in slice 7, at slice 7 under a labels layer).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import napari
import numpy as np
from PIL import Image
from qtpy.QtWidgets import QApplication

import lvpnet

OUT = Path(__file__).resolve().parent / "images"


def _wait(predicate, timeout=600.0):
    app = QApplication.instance()
    t0 = time.time()
    while not predicate():
        app.processEvents()
        time.sleep(0.05)
        if time.time() - t0 > timeout:
            raise TimeoutError("the widget did not finish in time")
    for _ in range(20):  # let the canvas and the dock redraw
        app.processEvents()
        time.sleep(0.05)


def _save(viewer, name: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    Image.fromarray(viewer.screenshot(canvas_only=False, flash=False)).save(OUT / name)
    print(f"wrote {OUT / name}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", help="model weights (default: the shipped ones)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        lvp = Path(tmp) / "sample_ct.lvp"
        viewer = napari.Viewer(show=True)
        viewer.window._qt_window.resize(1600, 900)
        viewer.open_sample("napari-lvpnet", "sample_ct")  # the CT window, spacing in mm
        _, comp = viewer.window.add_plugin_dock_widget("napari-lvpnet", "Compress")
        comp.output.value = lvp
        comp.compare.value = True
        comp.run_button.changed.emit(True)
        _wait(lambda: comp.last_result is not None and comp.run_button.enabled)
        _save(viewer, "compress.png")
        viewer.close()

        viewer = napari.Viewer(show=True)
        viewer.window._qt_window.resize(1600, 900)
        (image,) = viewer.open(str(lvp), plugin="napari-lvpnet")
        viewer.canvas.overlays.scale_bar.visible = True
        _wait(lambda: all(image.data.loader.resolved(i) for i in image.data.last_request))
        _, insp = viewer.window.add_plugin_dock_widget("napari-lvpnet", "Inspect")
        if args.weights:
            insp.weights.value = args.weights
        insp.run_button.changed.emit(True)
        _wait(lambda: insp.run_button.enabled and len(viewer.layers) > 1)
        bit_layers = [layer for layer in viewer.layers if "bit cost" in layer.name]
        for layer in bit_layers:
            layer.opacity = 0.7
        assert np.isfinite(np.asarray(bit_layers[0].data)).all() if bit_layers else True
        _save(viewer, "inspect.png")
        viewer.close()

        # one flipped byte in slice 7: shown blank at slice 7 under a labels layer, and named
        f = lvpnet.open(lvp)
        rec = f._reader.records[7]
        data = bytearray(lvp.read_bytes())
        data[rec.offset + rec.length // 2] ^= 0x20
        damaged = Path(tmp) / "ct_damaged.lvp"
        damaged.write_bytes(bytes(data))
        viewer = napari.Viewer(show=True)
        viewer.window._qt_window.resize(1600, 900)
        (image,) = viewer.open(str(damaged), plugin="napari-lvpnet")
        marks = np.zeros(image.data.shape, np.uint8)
        marks[:, 200:300, 150:250] = 1
        viewer.add_labels(marks, scale=image.scale, translate=image.translate, units=image.units,
                          axis_labels=image.axis_labels, name="lesion", opacity=0.5)
        viewer.dims.set_current_step(0, 7)
        _wait(lambda: all(image.data.loader.resolved(i) for i in image.data.last_request))
        _save(viewer, "damaged.png")
        viewer.close()


if __name__ == "__main__":
    main()
