"""The "Inspect" dock widget: where the bits go, drawn over the image.

The core (``lvpnet.analysis``) computes the arrays: per-pixel code length, latent maps, QCM
error maps, per-slice totals and, for a ``.lvp``, the real bits of every stored chunk. This
widget runs it in a napari ``thread_worker`` with a progress bar, slice by slice so that a
damaged slice of a ``.lvp`` is skipped and named instead of ending the run; adds the maps as
layers aligned with the image (same scale, translate, axis labels and units; block maps placed
on the image grid), each named with what it shows and its unit; and shows colorbars of the
visible maps, a legend in words, the totals and a plot (bits per slice, or a histogram of bits
per pixel for one slice) in napari's theme. The latent's channel is chosen in the dock, so the
maps never add a dims slider that could pass for the slice axis. Errors and a missing model
become napari notifications.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, Label, ProgressBar, PushButton, SpinBox
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from napari.layers import Image
from napari.utils.notifications import show_error, show_warning
from napari.viewer import Viewer
from qtpy.QtCore import Qt

from lvpnet import LvpFile, analysis, slice_pool
from lvpnet.container import looks_like_lvp
from lvpnet.progress import Cancelled, Progress, run, watching

from ._background import BackgroundJobMixin, JobControl, full_width, quietly_if_closed, wrap_text
from ._lazy import LazySlices
from ._maps import MAPS, layer_colormap, layer_name, legend, slice_words, slider_labels
from ._messages import blocked_by, plain_words, what_is_wrong
from ._plots import draw_colorbars, draw_plot, theme_colours

CURRENT = "current slice"
ALL = "all slices"
MAP_KEY = "lvpnet_inspect"  # metadata key of the layers Inspect adds: {"map": kind, "unit": ..., "says": ...}


class ExactSlices:
    """A lazy .lvp layer's data for the analysis: every slice exact (waits for its decode, from the
    layer's cache when it is there), a damaged one raising its error."""

    def __init__(self, data: LazySlices):
        self.data, self.shape, self.dtype = data, data.shape, data.dtype

    def __getitem__(self, frame_index) -> np.ndarray:
        return self.data.read(int(np.ravel_multi_index(tuple(frame_index), self.data.frame_shape)))

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.data.read(0), dtype=dtype)


def _inspect_job(source, rgb, lvp, indices, weights, ablation, workers, cancel):
    """Runs in the worker thread: load the model (None when there is none), then analyse the slices,
    in runs that ``workers`` processes share where there are several (``analysis.analysed_runs``;
    ``ablation``: the latent's ablation too). Returns (Analysis, {slice: error} of the damaged slices
    skipped), or None if cancelled."""
    yield Progress("loading model", 0, 1)
    model = analysis.load_model(weights, device="auto")
    if model is None:  # the real chunk bits of a .lvp, nothing decoded
        return run(analysis.iter_analyse(source, None, rgb=rgb, indices=indices, lvp=lvp)), {}
    frames, _ = analysis.slice_layout(source.shape, rgb)
    idx = list(range(int(np.prod(frames, dtype=np.int64)))) if indices is None else list(indices)
    res, skipped, done = None, {}, 0
    yield Progress("inspect", 0, len(idx))
    runs = analysis.analysed_runs(source, model, idx, rgb=rgb, lvp=lvp, ablation=ablation, workers=workers)
    try:
        while True:
            if cancel.is_set():
                return None
            try:
                with watching(cancel):  # a Cancel lands within a slice this process analyses, at its next step
                    part, bad, n = next(runs)
            except StopIteration:
                break
            except Cancelled:
                return None
            skipped.update(bad)  # slices damaged, or coded against one that is: skipped, and said which
            if part is not None:
                res = part if res is None else analysis.merge(res, part)
            done += n
            yield Progress("inspect", done, len(idx))
    finally:
        runs.close()  # queued runs dropped; a worker finishes the one it holds
    if res is None:  # every slice asked for was damaged
        res = run(analysis.iter_analyse(source, None, rgb=rgb, indices=[], lvp=lvp))
        res.model_path, res.model_sha256 = model.path, model.sha256
    return res, skipped


def skipped_text(skipped: dict, name: str, words: Callable[[int], str] = plain_words) -> str:
    """'skipped damaged slice 8: chunk checksum mismatch', 'skipped slice 9: its maps need slice 8,
    which is damaged' (a slice is mapped against the one before it, as the writer codes it); ``words``
    names a slice as the layer's sliders do (``_maps.slice_words``)."""
    lines = []
    for i, e in sorted(skipped.items()):
        j = blocked_by(e, name, i)
        what = what_is_wrong(e, name)
        if j is None:
            lines.append(f"skipped damaged {words(i)}: {what}")
        else:
            lines.append(f"skipped {words(i)}: its maps need {words(j)}, which is damaged ({what})")
    return "\n".join(lines)


def layer_lvp(layer) -> LvpFile | None:
    """The .lvp a layer was opened from (and still matches), or None."""
    if isinstance(layer.data, LazySlices):
        return layer.data.loader.lvp
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


def ablation_text(saved: float, ablated: float) -> str:
    """The latent's ablation in words: what the slices cost with every latent channel held at its most
    frequent value, against the real latent (the bits the latent saves, or what its variation costs)."""
    share = 100.0 * saved / ablated if ablated else 0.0
    if saved > 0:
        return f"  latent ablation: the latent saves {saved:,.0f} bits ({share:.2f}%) against a constant latent"
    if saved < 0:
        return (f"  latent ablation: the latent saves nothing; its variation costs {-saved:,.0f} bits "
                f"({-share:.2f}%) more than a constant latent")
    return "  latent ablation: the latent saves nothing (the same bits with a constant latent)"


def latent_notes(maps: list) -> list[str]:
    """What the latent maps show, said where they would otherwise read as a finding about the image: a latent
    that is the same in every block (so the ablation can only say "nothing"), a QCM that raises the error it
    exists to lower. Both are the weights' (docs/MODEL.md section 6, "Latent collapse"), not the slice's."""
    if not maps:
        return []
    notes = []
    if all(bool((m.z == m.z[:, :1, :1]).all()) for m in maps):
        notes.append("  the latent is the same in every block of these slices: these weights' latent carries "
                     "nothing of the image (docs/MODEL.md section 6)")
    before = float(np.mean([m.qcm_before.mean() for m in maps]))
    after = float(np.mean([m.qcm_after.mean() for m in maps]))
    if after > before:
        notes.append(f"  the QCM raises the latent's rounding error here ({before:.2f} -> {after:.2f} steps): "
                     "these weights' QCM does not help (docs/MODEL.md section 6)")
    return notes


def summary_text(res: analysis.Analysis, model_name: str | None, frames: tuple = (), labels=None,
                 latent: bool = True) -> str:
    """``latent``: the latent, QCM or ablation maps were asked for, so the notes on what they show belong
    here (to a reader of the bit-cost map alone they read like warnings about the scan)."""
    px = res.pixels_per_slice
    lines = [f"model: {model_name}" if model_name else "no model: real chunk bits only"]
    if res.has_model:
        est = res.estimated_bits
        if len(res.indices) == 1:
            i = res.indices[0]
            where = slice_words(i, frames, labels) if res.n_slices > 1 else "image"
            lines.append(f"{where}: {_fmt_bits(float(est[0]), px)} estimated")
            lines.append(f"  pixels {res.pixel_bits[0]:,.0f} + latent {res.latent_bits[0]:,.0f} bits")
        else:
            n = len(res.indices)
            lines.append(f"{n} slices: {_fmt_bits(float(est.sum()), n * px)} estimated")
            lines.append(f"  pixels {res.pixel_bits.sum():,.0f} + latent {res.latent_bits.sum():,.0f} bits")
        if res.ablated_bits is not None:
            lines.append(ablation_text(float(res.latent_saved_bits.sum()), float(res.ablated_bits.sum())))
        if latent:
            lines += latent_notes(res.maps)
    if res.chunk_bits is not None:
        if len(res.indices) == 1 and res.n_slices > 1:
            i = res.indices[0]
            lines.append(f"stored chunk of {slice_words(i, frames, labels)}: {_fmt_bits(float(res.chunk_bits[i]), px)}")
        every = f"all {res.n_slices} chunks" if res.n_slices > 1 else "its one chunk"
        lines.append(f"stored, {every}: {_fmt_bits(float(res.chunk_bits.sum()), res.n_slices * px)}")
        if res.has_model and res.model_matches_file is False:
            lines.append("  (the file was coded with other weights; estimates are for these)")
        elif res.has_model and res.file_model is None:
            lines.append("  (the file holds classical chunks; estimates are what the model would spend)")
    return "\n".join(lines)


_MAX_DOCK_WIDTH = 640  # wider content scrolls sideways instead of squeezing the canvas
_MIN_DOCK_HEIGHT = 260  # the choices, the buttons and the summary's first lines


class InspectWidget(BackgroundJobMixin, Container):
    job_title = "Inspect"

    def _fit_width(self) -> None:
        """The dock as wide as its content needs (its summary and plots widen it once filled), so nothing
        is cut on the right; a horizontal scroll bar where the window cannot give that much."""
        scroll = self.root_native_widget
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        bar = scroll.verticalScrollBar().sizeHint().width()
        scroll.setMinimumWidth(min(super().native.minimumSizeHint().width() + bar, _MAX_DOCK_WIDTH))

    @property
    def native(self):
        """The scroll area around the dock's content: napari docks ``native``, and the content (its plots
        and legend) is taller than a laptop's screen, which made the window grow past it."""
        return self.root_native_widget

    def __init__(self, napari_viewer: Viewer):
        viewer = napari_viewer
        self._viewer = viewer
        default = analysis.default_model_path()
        self.layer = ComboBox(label="image layer", choices=self._image_layers)
        self.scope = ComboBox(label="slices", choices=[CURRENT, ALL], value=CURRENT)
        self.show_bits = CheckBox(text="bit-cost heatmap (bits per pixel)", value=True)
        self.show_latent = CheckBox(text="latent maps (z, latent bits)", value=False)
        self.show_qcm = CheckBox(text="QCM error maps (before / after)", value=False)
        self.show_ablation = CheckBox(text="latent ablation: what the latent saves (twice the time)", value=False)
        self.weights = FileEdit(label="model weights", mode="r", filter="*.pt", value=str(default or ""))
        self.run_button = PushButton(text="Inspect")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(label="slices", value=0, min=0, max=1, visible=False)
        self.summary = Label(label="", value="")
        self.hint = Label(label="", value="", visible=False)
        self.channel = SpinBox(label="latent channel", min=0, max=0, visible=False)
        self.legend = Label(label="", value="", visible=False)
        wrap_text(self.summary, self.hint, self.legend)
        super().__init__(widgets=[self.layer, self.scope, self.show_bits, self.show_latent, self.show_qcm,
                                  self.show_ablation, self.weights, self.run_button, self.cancel_button,
                                  self.progress, self.summary, self.hint, self.channel, self.legend],
                         scrollable=True)
        self.colorbar_canvas = FigureCanvasQTAgg(Figure(figsize=(3.2, 0.8), layout="constrained"))
        self.colorbar_canvas.setVisible(False)
        self.plot_canvas = FigureCanvasQTAgg(Figure(figsize=(3.2, 2.2), layout="constrained"))
        self.plot_canvas.setFixedHeight(200)
        self.plot_canvas.setVisible(False)
        content = super().native  # the scroll area's content
        content.layout().addWidget(self.colorbar_canvas)
        content.layout().addWidget(self.plot_canvas)
        content.layout().addStretch(1)  # a tall dock's spare height goes below, not between the controls
        full_width(self.summary, self.hint, self.legend)
        # at least its controls' height: stacked under another dock it was squeezed to a few lines
        self.root_native_widget.setMinimumHeight(_MIN_DOCK_HEIGHT)
        self._fit_width()
        self.worker = None
        self.last_result: analysis.Analysis | None = None
        self.skipped: dict = {}
        self.added_layers: dict[str, Image] = {}  # kind -> layer added by the last run
        self._maps_of = None  # the image those maps sit on (the last run that finished; ``_layer``: the last started)
        self._cancel = JobControl()
        self.run_button.changed.connect(self.start)
        self.cancel_button.changed.connect(self.cancel)
        self.channel.changed.connect(self._show_channel)
        self.layer.changed.connect(self._layer_changed)
        viewer.layers.events.inserted.connect(lambda e: self.layer.reset_choices())
        viewer.layers.events.removed.connect(self._layer_removed)
        viewer.dims.events.current_step.connect(self._update_hint)
        viewer.events.theme.connect(lambda e: self._redraw())

    def _layer_changed(self, *_):
        """Another layer chosen: the last run's words and charts were about the other one, and read as this
        one's (its maps stay: they are named after their image)."""
        if self.run_button.enabled and self.layer.value is not getattr(self, "_layer", None):
            self._clear_result()

    @quietly_if_closed
    def _layer_removed(self, event):
        """The inspected layer left the viewer: its results go with it (they stayed, over the next file opened),
        and so does a run on it (its maps would have nothing to sit on)."""
        self.layer.reset_choices()
        from qtpy.QtCore import QTimer

        if event.value is self._maps_of:
            # hidden now, removed just after: drawn once more without the volume they sat on, a one-slice map
            # crashed vispy (a segmentation fault in glDrawArrays with software OpenGL; plain napari does the same).
            # The maps' own image, not the last run's: a run on another layer cancelled left them over nothing
            for layer in self.added_layers.values():
                layer.visible = False
            QTimer.singleShot(0, self._drop_maps)  # not inside the layer list's own removal
        if event.value is not getattr(self, "_layer", None):
            return
        if not self.run_button.enabled:
            self.cancel()
        QTimer.singleShot(0, self._forget)

    @quietly_if_closed
    def _forget(self) -> None:
        if self._maps_of is self._layer:  # else they sit on a layer still shown
            self._drop_maps()
        self._clear_result()

    def _clear_result(self) -> None:
        self.last_result, self.skipped = None, {}
        self.summary.value = ""
        self.hint.value, self.hint.visible = "", False
        self.colorbar_canvas.setVisible(False)
        self.plot_canvas.setVisible(False)

    @property
    def colorbar_figure(self):
        return self.colorbar_canvas.figure

    @property
    def plot_figure(self):
        return self.plot_canvas.figure

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

    def _slice_words(self, i: int) -> str:
        """Slice ``i`` (flat) as the layer's sliders name it ('time 1, slice 3'; 'slice 3' on a volume)."""
        return slice_words(i, self._frames, self._axis_names())

    def _axis_names(self):
        """The names of the layer's axes, as the viewer's sliders show them."""
        return slider_labels(getattr(self, "_layer", None), getattr(self, "_viewer", None))

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
            if isinstance(data, LazySlices):
                source = ExactSlices(data)
            else:
                source = lvp if lvp is not None else data
            indices = None if self.scope.value == ALL else [self.current_index(layer, frames)]
        except Exception as e:
            show_error(f"Inspect: {e}")
            return
        self._layer, self._frames, self._lvp_name = layer, frames, lvp.name if lvp is not None else layer.name
        self.summary.value = f"inspecting {layer.name} ..."
        self.progress.max = 1
        self._run_in_background(_inspect_job, source, rgb, lvp, indices, self._weights_path(),
                                bool(self.show_ablation.value), slice_pool.automatic_if_safe())

    @quietly_if_closed
    def _on_done(self, out):
        if out is None:
            self.summary.value = "cancelled"
            return
        layer = self._layer
        if layer not in self._viewer.layers:  # removed while its run ended
            self.summary.value = f"{layer.name} was removed"
            return
        res, self.skipped = out
        self.last_result = res
        model_name = Path(res.model_path).name if res.model_path else None
        if not res.has_model and not self.skipped:
            if res.chunk_bits is None:
                show_warning("Inspect: no model weights are installed (lvpnet-v1.pt) or chosen, and this layer "
                             "was not opened from a .lvp: there is nothing to show")
            else:
                show_warning("Inspect: no model weights are installed (lvpnet-v1.pt) or chosen: showing the real "
                             "bits of every stored chunk; heatmaps need the model")
        words = self._slice_words
        skipped = skipped_text(self.skipped, self._lvp_name, words)
        if skipped:
            show_warning(f"Inspect {skipped}" if len(self.skipped) == 1 else
                         f"Inspect skipped {len(self.skipped)} slices ({'; '.join(map(words, sorted(self.skipped)))})"
                         f"\n{skipped}")
        try:
            if res.has_model and res.maps:
                self._add_layers(layer, res)
            else:  # the maps of an earlier run (of another layer, say) would read as this run's
                self._drop_maps()
            latent = bool(self.show_latent.value or self.show_qcm.value or self.show_ablation.value)
            said = summary_text(res, model_name, self._frames, self._axis_names(), latent=latent)
            self.summary.value = "\n".join(t for t in (f"layer: {layer.name}", said, skipped) if t)
            self._redraw()
            self._update_hint()
            self._fit_width()
        except Exception as e:  # drawing must never take the viewer down
            self._on_error(e)

    # ------------------------------------------------------------ layers
    def _placement(self, layer, res: analysis.Analysis, full: bool) -> tuple[tuple, list, list]:
        """Leading shape, scale and translate so the maps sit exactly on the analysed slices."""
        scale = np.asarray(layer.scale, float)
        translate = np.asarray(layer.translate, float).copy()
        frames = res.frame_shape
        if full:
            return tuple(frames), list(scale), list(translate)
        (i,) = res.indices
        for ax, p in enumerate(np.unravel_index(i, frames)):
            translate[ax] += p * scale[ax]
        return (1,) * len(frames), list(scale), list(translate)

    def _stack(self, res: analysis.Analysis, per_slice, full: bool) -> np.ndarray:
        """One map per analysed slice on the image grid, (lead..., rows, cols); in a full stack the
        slices not analysed (damaged) are NaN: drawn transparent, and read 'nan' under the cursor (0 read
        as a slice that cost nothing)."""
        maps = [np.asarray(per_slice(m), np.float32) for m in res.maps]
        if not full:
            return maps[0][None]
        out = np.full((res.n_slices, *res.slice_shape), np.nan, np.float32)
        for m, a in zip(res.maps, maps):
            out[m.index] = a
        return out

    def _put(self, kind: str, data, name: str, **kwargs) -> Image:
        info = MAPS[kind]
        kwargs["metadata"] = {MAP_KEY: {"map": kind, "unit": info.unit, "says": info.says}}
        new = self._viewer.add_image(data, name=name, colormap=layer_colormap(kind), opacity=0.8, blending="translucent",
                                     **kwargs)
        self.added_layers[kind] = new
        new.events.contrast_limits.connect(lambda e: self._draw_colorbars())
        new.events.visible.connect(lambda e: self._draw_colorbars())
        return new

    def _add_layers(self, layer, res: analysis.Analysis):
        full = self.scope.value == ALL or res.n_slices == 1
        lead, scale, translate = self._placement(layer, res, full)
        hw = res.slice_shape
        # the axes named as the sliders name them now: napari takes a new layer's names for its sliders, so the
        # layer's own would undo the user's renaming of them
        geo = {"scale": scale, "translate": translate, "axis_labels": slider_labels(layer, self._viewer),
               "units": layer.units}
        aff = np.asarray(layer.affine.affine_matrix, float)
        if not np.allclose(aff, np.eye(len(aff))):  # a world affine set on the image: the maps follow it
            geo["affine"] = aff
        self._drop_maps()
        self._maps_of = layer
        base = layer.name
        where = None if full or res.n_slices == 1 else res.indices[0]
        self._res, self._full, self._where = res, full, where
        shown = []  # one map visible at a time (the first asked for); the others wait behind their eye icons

        def first(kind):
            if not shown:
                shown.append(kind)
            return shown[0] == kind

        def put(kind, data, hi, visible, lo=0.0, **extra):
            return self._put(kind, data.reshape(lead + hw), layer_name(base, kind, slice_index=where, frames=self._frames,
                                                                 labels=self._axis_names(), **extra),
                             contrast_limits=[lo, hi], visible=visible, **geo)

        if self.show_bits.value:
            bits = self._stack(res, lambda m: m.pixel_bits, full)
            hi = float(np.nanpercentile(bits, 99.5)) if bits.size else 1.0
            put("bits", bits, max(hi, 1e-3), first("bits"))
        if self.show_latent.value:
            share = self._stack(res, lambda m: m.on_grid(m.latent_bits / analysis.block_pixel_counts(hw, m.block)),
                                full)
            put("latent_bits", share, max(float(np.nanmax(share)), 1e-3), False)
            m = max(1, int(np.abs(res.stack("z")).max()))
            channels = res.maps[0].z.shape[0]
            self.channel.max = channels - 1
            c = min(int(self.channel.value), channels - 1)
            put("latent", self._latent(c), m, first("latent"), lo=-m, channel=c)
        if self.show_qcm.value:
            q = self._q_step(res)
            before = self._stack(res, lambda m: m.on_grid(m.qcm_before) / q, full)
            after = self._stack(res, lambda m: m.on_grid(m.qcm_after) / q, full)
            hi = max(float(np.nanmax(before)), float(np.nanmax(after)), 1e-6)
            visible = first("qcm")
            put("qcm_before", before, hi, False)
            put("qcm_after", after, hi, visible)
        if self.show_ablation.value and res.maps[0].latent_saving is not None:
            saving = self._stack(res, lambda m: m.on_grid(m.latent_saving / analysis.block_pixel_counts(hw, m.block)),
                                 full)
            m = max(float(np.nanmax(np.abs(saving))), 1e-3)  # centred: green where the latent pays, pink where it costs
            put("latent_saving", saving, m, first("latent_saving"), lo=-m)
        self._follow(layer)
        self.channel.visible = "latent" in self.added_layers
        self.legend.value = legend(self.added_layers)
        self.legend.visible = bool(self.added_layers)
        if shown:
            self._viewer.layers.selection.active = self.added_layers[shown[0] if shown[0] != "qcm" else "qcm_after"]
        self.layer.reset_choices()  # the maps themselves are not offered as images to inspect

    @quietly_if_closed
    def _drop_maps(self) -> None:
        """Remove the maps an earlier run added, and what said where they are."""
        for kind in list(self.added_layers):
            old = self.added_layers.pop(kind)
            if old in self._viewer.layers:
                self._viewer.layers.remove(old)
        self._where = None
        self._maps_of = None
        self.channel.visible = self.legend.visible = False

    def _follow(self, image) -> None:
        """The maps hide with their image and come back as they were when it is shown again."""
        if getattr(self, "_followed", None) is image:
            return
        self._followed, self._hidden_with_image = image, {}

        def on_visible(event):
            if image is not self._layer:
                return
            maps = [m for m in self.added_layers.values() if m in self._viewer.layers]
            if not image.visible:
                self._hidden_with_image = {id(m): m.visible for m in maps}
                for m in maps:
                    m.visible = False
            else:
                for m in maps:
                    m.visible = self._hidden_with_image.get(id(m), m.visible)

        image.events.visible.connect(on_visible)

    @staticmethod
    def _q_step(res: analysis.Analysis) -> float:
        """The latent's quantisation step, so the QCM maps read in steps (the shipped model's is 1)."""
        try:
            return float(analysis.load_model(res.model_path, device="auto").q_step) or 1.0
        except Exception:
            return 1.0

    def _latent(self, c: int) -> np.ndarray:
        """Channel ``c`` of the latent z of every analysed slice, each cell covering its 32 x 32 block."""
        res = self._res
        return self._stack(res, lambda m: m.on_grid(m.z[c].astype(np.float32)), self._full)

    def _show_channel(self, *_):
        layer = self.added_layers.get("latent")
        if layer is None or layer not in self._viewer.layers:
            return
        c = int(self.channel.value)
        layer.data = self._latent(c).reshape(layer.data.shape)
        layer.name = layer_name(self._layer.name, "latent", channel=c, slice_index=self._where,
                                frames=self._frames, labels=self._axis_names())

    # ------------------------------------------------------------ words and drawing
    def _update_hint(self, *_):
        """Maps of one slice vanish on the others: say so while the viewer is elsewhere."""
        where = getattr(self, "_where", None)
        text = ""
        if where is not None and self.added_layers and self._layer in self._viewer.layers:
            here = self.current_index(self._layer, self._frames)
            if here != where:
                there, now = (slice_words(i, self._frames, self._axis_names()) for i in (where, here))
                text = (f"The maps show {there} only; the viewer is on {now}. Step back to {there}, run Inspect "
                        "here, or choose 'all slices'.")
        self.hint.value, self.hint.visible = text, bool(text)

    def _draw_colorbars(self):
        items = []
        for kind, layer in self.added_layers.items():
            if layer in self._viewer.layers and layer.visible:
                info = MAPS[kind]
                lo, hi = layer.contrast_limits
                items.append((f"{info.title} [{info.unit}]", info.colormap, lo, hi))
        draw_colorbars(self.colorbar_canvas, items, theme_colours(self._viewer))

    def _redraw(self):
        self._draw_colorbars()
        if self.last_result is not None:
            draw_plot(self.plot_canvas, self.last_result, theme_colours(self._viewer), self._axis_names(),
                      damaged=self.skipped)
