"""The "Inspect" dock widget: where the bits go, drawn over the image.

The core (``lvpnet.analysis``) computes the arrays: per-pixel code length,
latent maps, QCM error maps, per-slice totals and, for a ``.lvp``, the real
bits of every stored chunk. This widget runs it in a napari ``thread_worker``
with a progress bar, adds the maps as layers aligned with the image (same
scale and translate; block maps are placed on the image grid), and shows a
colorbar, the totals and a small plot (bits per slice, or a histogram of bits
per pixel for one 2-D slice). Errors and a missing model become napari
notifications.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, Label, ProgressBar, PushButton
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from napari.layers import Image
from napari.utils.notifications import show_error, show_warning
from napari.viewer import Viewer

from lvpnet import LvpFile, analysis
from lvpnet.container import looks_like_lvp
from lvpnet.progress import Progress, cancellable

from ._background import BackgroundJobMixin

CURRENT = "current slice"
ALL = "all slices"
COLORMAPS = {"bits": "inferno", "latent": "PiYG", "qcm": "viridis"}
BAR_COLOURS = ["0.65", "C0", "C2", "C4"]
MAP_KEY = "lvpnet_inspect"  # metadata key of the layers Inspect adds: {"map": kind, "units": ...}


def _inspect_job(source, rgb, lvp, indices, weights, cancel):
    """Runs in the worker thread: load the model (None when there is none), then analyse."""
    yield Progress("loading model", 0, 1)
    model = analysis.load_model(weights, device="auto")
    job = analysis.iter_analyse(source, model, rgb=rgb, indices=indices, lvp=lvp)
    return (yield from cancellable(job, cancel))


def layer_lvp(layer) -> LvpFile | None:
    """The .lvp a layer was opened from (and still matches), or None."""
    candidates = [((layer.metadata or {}).get("lvp") or {}).get("file"), getattr(layer.source, "path", None)]
    for path in candidates:
        if not path or not os.path.isfile(str(path)):
            continue
        try:
            if not looks_like_lvp(path):
                continue
            lvp = LvpFile(path)
        except Exception:
            continue
        if tuple(lvp.shape) == tuple(layer.data.shape) and lvp.rgb == bool(layer.rgb):
            return lvp
    return None


def _fmt_bits(bits: float, pixels: int) -> str:
    return f"{bits:,.0f} bits ({bits / pixels:.3f} bits/pixel)"


def summary_text(res: analysis.Analysis, model_name: str | None) -> str:
    px = res.pixels_per_slice
    lines = [f"model: {model_name}" if model_name else "no model: real chunk bits only"]
    if res.has_model:
        est = res.estimated_bits
        if len(res.indices) == 1:
            i = res.indices[0]
            where = f"slice {i}" if res.n_slices > 1 else "image"
            lines.append(f"{where}: {_fmt_bits(float(est[0]), px)} estimated")
            lines.append(f"  pixels {res.pixel_bits[0]:,.0f} + latent {res.latent_bits[0]:,.0f} bits")
        else:
            n = len(res.indices)
            lines.append(f"{n} slices: {_fmt_bits(float(est.sum()), n * px)} estimated")
            lines.append(f"  pixels {res.pixel_bits.sum():,.0f} + latent {res.latent_bits.sum():,.0f} bits")
    if res.chunk_bits is not None:
        if len(res.indices) == 1 and res.n_slices > 1:
            i = res.indices[0]
            lines.append(f"stored chunk of slice {i}: {_fmt_bits(float(res.chunk_bits[i]), px)}")
        lines.append(f"stored, all {res.n_slices} chunks: {_fmt_bits(float(res.chunk_bits.sum()), res.n_slices * px)}")
        if res.has_model and res.model_matches_file is False:
            lines.append("  (the file was coded with other weights; estimates are for these)")
        elif res.has_model and res.file_model is None:
            lines.append("  (the file holds classical chunks; estimates are what the model would spend)")
    return "\n".join(lines)


class InspectWidget(BackgroundJobMixin, Container):
    job_title = "Inspect"

    def __init__(self, napari_viewer: Viewer):
        viewer = napari_viewer
        self._viewer = viewer
        default = analysis.default_model_path()
        self.layer = ComboBox(label="image layer", choices=self._image_layers)
        self.scope = ComboBox(label="slices", choices=[CURRENT, ALL], value=CURRENT)
        self.show_bits = CheckBox(text="bit-cost heatmap (bits per pixel)", value=True)
        self.show_latent = CheckBox(text="latent maps (z, latent bits)", value=False)
        self.show_qcm = CheckBox(text="QCM error maps (before / after)", value=False)
        self.weights = FileEdit(label="model weights", mode="r", filter="*.pt", value=str(default or ""))
        self.run_button = PushButton(text="Inspect")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(label="slices", value=0, min=0, max=1, visible=False)
        self.summary = Label(label="", value="")
        super().__init__(widgets=[self.layer, self.scope, self.show_bits, self.show_latent, self.show_qcm,
                                  self.weights, self.run_button, self.cancel_button, self.progress, self.summary])
        self.colorbar_figure = Figure(figsize=(3.2, 0.9), layout="constrained")
        self.colorbar_canvas = FigureCanvasQTAgg(self.colorbar_figure)
        self.colorbar_canvas.setMinimumHeight(60)
        self.colorbar_canvas.setVisible(False)
        self.plot_figure = Figure(figsize=(3.2, 2.2), layout="constrained")
        self.plot_canvas = FigureCanvasQTAgg(self.plot_figure)
        self.plot_canvas.setMinimumHeight(160)
        self.plot_canvas.setVisible(False)
        self.native.layout().addWidget(self.colorbar_canvas)
        self.native.layout().addWidget(self.plot_canvas)
        self.worker = None
        self.last_result: analysis.Analysis | None = None
        self.added_layers: dict[str, Image] = {}  # kind -> layer added by the last run
        self._cancel = threading.Event()
        self.run_button.changed.connect(self.start)
        self.cancel_button.changed.connect(self.cancel)
        viewer.layers.events.inserted.connect(lambda e: self.layer.reset_choices())
        viewer.layers.events.removed.connect(lambda e: self.layer.reset_choices())

    def _image_layers(self, _widget=None):
        # the maps this widget adds carry MAP_KEY in their metadata and are not offered for inspection
        return [layer for layer in self._viewer.layers
                if isinstance(layer, Image) and MAP_KEY not in (layer.metadata or {})]

    # ------------------------------------------------------------ running
    def _weights_path(self) -> str | None:
        value = str(self.weights.value)
        if value in ("", ".") or Path(value).is_dir():  # an empty FileEdit reads as the working folder
            return None
        return value

    def current_index(self, layer, frames) -> int:
        """Flat index of the slice the viewer shows for ``layer``."""
        if not frames:
            return 0
        pos = layer.world_to_data(self._viewer.dims.point)
        return analysis.flat_index(np.round(pos[: len(frames)]).astype(int), frames)

    def start(self, *_):
        layer = self.layer.value
        if layer is None:
            show_error("Inspect: choose an image layer first")
            return
        try:
            data = layer.data[0] if layer.multiscale else layer.data
            rgb = bool(layer.rgb)
            frames, _ = analysis.slice_layout(data.shape, rgb)
            lvp = layer_lvp(layer)
            source = lvp if lvp is not None else data
            indices = None if self.scope.value == ALL else [self.current_index(layer, frames)]
        except Exception as e:
            show_error(f"Inspect: {e}")
            return
        self._layer, self._frames = layer, frames
        self.summary.value = f"inspecting {layer.name} ..."
        self.progress.max = 1
        self._run_in_background(_inspect_job, source, rgb, lvp, indices, self._weights_path())


    def _on_done(self, res: analysis.Analysis | None):
        if res is None:
            self.summary.value = "cancelled"
            return
        self.last_result = res
        layer = self._layer
        model_name = Path(res.model_path).name if res.model_path else None
        if not res.has_model:
            if res.chunk_bits is None:
                show_warning("Inspect: no model weights are installed (lvpnet-v1.pt) or chosen, and this layer "
                             "was not opened from a .lvp: there is nothing to show")
            else:
                show_warning("Inspect: no model weights are installed (lvpnet-v1.pt) or chosen: showing the real "
                             "bits of every stored chunk; heatmaps need the model")
        try:
            if res.has_model:
                self._add_layers(layer, res)
            self.summary.value = summary_text(res, model_name)
            self._draw_colorbars()
            self._draw_plot(res)
        except Exception as e:  # drawing must never take the viewer down
            self._on_error(e)

    # ------------------------------------------------------------ layers
    def _placement(self, layer, res: analysis.Analysis) -> tuple[tuple, list, list]:
        """Leading shape, scale and translate so the maps sit exactly on the analysed slices."""
        scale = np.asarray(layer.scale, float)
        translate = np.asarray(layer.translate, float).copy()
        frames = res.frame_shape
        if len(res.indices) == res.n_slices:
            return tuple(frames), list(scale), list(translate)
        (i,) = res.indices
        pos = np.unravel_index(i, frames)
        for ax, p in enumerate(pos):
            translate[ax] += p * scale[ax]
        return (1,) * len(frames), list(scale), list(translate)

    def _put(self, kind: str, data, name: str, **kwargs) -> Image:
        old = self.added_layers.pop(kind, None)
        if old is not None and old in self._viewer.layers:
            self._viewer.layers.remove(old)
        kwargs["metadata"] = {MAP_KEY: {"map": kind, **kwargs.get("metadata", {})}}
        new = self._viewer.add_image(data, name=name, **kwargs)
        self.added_layers[kind] = new
        new.events.contrast_limits.connect(lambda e: self._draw_colorbars())
        return new

    def _add_layers(self, layer, res: analysis.Analysis):
        lead, scale, translate = self._placement(layer, res)
        hw = res.slice_shape
        geo = {"scale": scale, "translate": translate}
        aff = np.asarray(layer.affine.affine_matrix, float)
        if not np.allclose(aff, np.eye(len(aff))):  # a world affine set on the image: the maps follow it
            geo["affine"] = aff
        for kind in list(self.added_layers):  # drop the maps of an earlier run that are not asked for now
            old = self.added_layers.pop(kind)
            if old in self._viewer.layers:
                self._viewer.layers.remove(old)
        base = layer.name
        shown = []  # one map visible at a time (the first asked for); the others wait behind their eye icons

        def first(kind):
            if not shown:
                shown.append(kind)
            return shown[0] == kind

        if self.show_bits.value:
            bits = res.stack("pixel_bits").reshape(lead + hw)
            hi = float(np.percentile(bits, 99.5)) if bits.size else 1.0
            self._put("bits", bits, f"{base} bit cost", colormap=COLORMAPS["bits"],
                      contrast_limits=[0.0, max(hi, 1e-3)], opacity=0.8, blending="translucent", visible=first("bits"),
                      metadata={"units": "bits per pixel (code length of each pixel)"}, **geo)
        if self.show_latent.value:
            share = np.stack([m.on_grid(m.latent_bits / analysis.block_pixel_counts(hw, m.block)) for m in res.maps])
            self._put("latent_bits", share.reshape(lead + hw).astype(np.float32), f"{base} latent bits",
                      colormap=COLORMAPS["bits"], contrast_limits=[0.0, max(float(share.max()), 1e-3)],
                      opacity=0.8, blending="translucent", visible=False,
                      metadata={"units": "bits per pixel (block's latent bits / its pixels)"}, **geo)
            z = self._latent_stack(res, lead)
            m = max(1, int(np.abs(res.stack("z")).max()))
            self._put("latent", z, f"{base} latent z", colormap=COLORMAPS["latent"], contrast_limits=[-m, m],
                      opacity=0.8, blending="translucent", visible=first("latent"),
                      metadata={"units": "quantised latent z; leading axis: channel"},
                      scale=[1.0, *scale], translate=[0.0, *translate],
                      **({"affine": _lead_identity(geo["affine"])} if "affine" in geo else {}))
        if self.show_qcm.value:
            before = res.stack("qcm_before", on_grid=True).reshape(lead + hw)
            after = res.stack("qcm_after", on_grid=True).reshape(lead + hw)
            hi = max(float(before.max()), float(after.max()), 1e-6)
            for kind, arr, label in (("qcm_before", before, "before"), ("qcm_after", after, "after")):
                self._put(kind, arr, f"{base} QCM error {label}", colormap=COLORMAPS["qcm"], contrast_limits=[0.0, hi],
                          opacity=0.8, blending="translucent", visible=label == "after" and first("qcm"),
                          metadata={"units": "mean |y - y_hat| over channels, per 32x32 block"}, **geo)
        if shown:
            self._viewer.layers.selection.active = self.added_layers[shown[0] if shown[0] != "qcm" else "qcm_after"]
        self.layer.reset_choices()  # the maps themselves are not offered as images to inspect

    @staticmethod
    def _latent_stack(res: analysis.Analysis, lead: tuple):
        """(channels, *lead, rows, cols), computed lazily one channel-slice at a time on the image grid."""
        import dask.array as da

        small = np.moveaxis(res.stack("z"), 1, 0)  # (C, n, hz, wz)
        small = small.reshape((small.shape[0], *lead, *small.shape[-2:]))
        hw, block = res.slice_shape, res.maps[0].block
        chunks = (1,) * (small.ndim - 2) + small.shape[-2:]
        lazy = da.from_array(small, chunks=chunks)
        return lazy.map_blocks(lambda b: analysis.to_image_grid(b, hw, block), dtype=small.dtype,
                               chunks=tuple((1,) * n for n in small.shape[:-2]) + ((hw[0],), (hw[1],)))

    # ------------------------------------------------------------ drawing
    def _draw_colorbars(self):
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize

        fig = self.colorbar_figure
        fig.clear()
        shown = [(k, layer) for k, layer in self.added_layers.items() if k in ("bits", "latent", "qcm_after")]
        if not shown:
            self.colorbar_canvas.setVisible(False)
            return
        titles = {"bits": "bit cost (bits per pixel)", "latent": "latent z", "qcm_after": "QCM |error| (y units)"}
        axes = fig.subplots(len(shown), 1, squeeze=False)[:, 0]
        for ax, (kind, layer) in zip(axes, shown):
            lo, hi = layer.contrast_limits
            sm = ScalarMappable(norm=Normalize(lo, hi), cmap=COLORMAPS[kind if kind != "qcm_after" else "qcm"])
            cb = fig.colorbar(sm, cax=ax, orientation="horizontal")
            cb.ax.tick_params(labelsize=7)
            cb.set_label(titles[kind], fontsize=7)
        fig.set_size_inches(3.2, 0.75 * len(shown))
        self.colorbar_canvas.setMinimumHeight(int(60 * len(shown)))
        self.colorbar_canvas.setVisible(True)
        self.colorbar_canvas.draw_idle()

    def _draw_plot(self, res: analysis.Analysis):
        fig = self.plot_figure
        fig.clear()
        ax = fig.add_subplot()
        per_slice = len(res.indices) > 1 or (res.chunk_bits is not None and res.n_slices > 1)
        if per_slice:
            x = np.arange(res.n_slices)
            if res.chunk_bits is not None:
                codecs = res.chunk_codecs or ["stored"] * res.n_slices
                for k, cid in enumerate(sorted(set(codecs))):
                    sel = np.array([c == cid for c in codecs])
                    ax.bar(x[sel], res.chunk_bits[sel] / 1e3, color=BAR_COLOURS[k % len(BAR_COLOURS)],
                           label=f"stored ({cid})")
            if res.has_model:
                ax.plot(res.indices, res.estimated_bits / 1e3, "o-", ms=3, color="C3", label="estimated")
            ax.margins(y=0.1)
            ax.set_xlabel("slice", fontsize=8)
            ax.set_ylabel("kbit per slice", fontsize=8)
            ax.legend(fontsize=7)
        elif res.maps:
            counts, edges = res.histogram()
            ax.stairs(counts, edges, fill=True, color="C1")
            ax.set_xlabel("bits per pixel", fontsize=8)
            ax.set_ylabel("pixels", fontsize=8)
        else:
            ax.bar([0], res.chunk_bits / 1e3, color="0.7")
            ax.set_ylabel("kbit (stored chunk)", fontsize=8)
        ax.tick_params(labelsize=7)
        self.plot_canvas.setVisible(True)
        self.plot_canvas.draw_idle()


def _lead_identity(aff: np.ndarray) -> np.ndarray:
    """An (n+1)x(n+1) affine extended by one leading axis that it leaves alone (the channel axis)."""
    n = aff.shape[0]
    out = np.eye(n + 1)
    out[1:, 1:] = aff
    return out
