"""The "Compress" dock widget: an image layer to a verified .lvp, in the background.

The work is the core's progress generator (``lvpnet.iter_compress_to_file``)
run in a napari ``thread_worker``; the viewer stays responsive, a progress bar
follows the slices, and Cancel stops within one slice with no file left
behind. Errors become napari notifications.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, Label, ProgressBar, PushButton
from napari.layers import Image
from napari.utils.notifications import show_error, show_info
from napari.viewer import Viewer

import lvpnet
from lvpnet import codecs, slice_pool
from lvpnet.codecs.base import learned_takes
from lvpnet.progress import Progress, cancellable
from lvpnet.slicing import check_array, n_slices

from ._background import BackgroundJobMixin, JobControl, full_width, quietly_if_closed, wrap_text
from ._layers import layer_to_volume
from ._lazy import LazySlices

AUTO_CODEC = "auto (best for the data)"


def cuda_available() -> bool:
    """Whether to offer CUDA, without importing torch: importing it as the dock was built froze the window
    for seconds (9 s on a busy machine). torch already loaded says itself; else an NVIDIA driver on the
    machine is the sign. CUDA chosen where torch then finds none is said when the run starts."""
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            return bool(torch.cuda.is_available())
        except Exception:  # a broken torch: CPU only
            return False
    return os.path.exists("/proc/driver/nvidia/version") or shutil.which("nvidia-smi") is not None


def _decode_layer(data: LazySlices, attributes: dict, name: str, cancel):
    """A lazy .lvp layer as a Volume, decoded here on the worker thread (cached slices reused),
    not on the main thread; None when cancelled."""
    out = np.empty(data.shape, data.dtype)
    rows = out.reshape((-1,) + data.slice_shape)
    done = 0
    for i, s in data.loader.iter_read(range(len(rows)), until=cancel.is_set):  # worker processes for a volume
        rows[i] = s
        done += 1
        yield Progress("decode", done, len(rows))
    if done < len(rows):  # cancelled
        return None
    volume = layer_to_volume(out, attributes)
    check_array(volume.array, volume.rgb, what=f"layer {name!r}")
    return volume


def _full_shape(layer) -> tuple[int, ...]:
    """The shape of a layer's data at full resolution, without reading it."""
    return tuple(layer.data[0].shape if layer.multiscale else layer.data.shape)


def _computed_layer(data, attributes: dict, name: str):
    """A layer's Volume from data that computes when read (dask, zarr: seconds or minutes), in the worker: on
    the main thread the window froze while it computed."""
    yield Progress("reading the layer", 0, 1)
    volume = layer_to_volume(data, attributes)
    check_array(volume.array, volume.rgb, what=f"layer {name!r}")
    return volume


def _compress_job(volume, path, codec, device, verify, compare, safety_net, cancel):
    """Runs in the worker thread: (decode a lazy .lvp layer, or compute a dask one,) compress, then
    optionally JPEG-XL for comparison. ``volume``: a Volume, or (LazySlices or lazy data, attributes, name);
    ``device``: where the learned codec runs (loading it, torch, took a second of the window's);
    ``safety_net``: as ``lvpnet.compress``'s (off: the learned codec's own figures, every slice its own)."""
    t_read = time.perf_counter()
    if isinstance(volume, tuple):
        lazy = isinstance(volume[0], LazySlices)
        volume = yield from (_decode_layer(*volume, cancel) if lazy else _computed_layer(*volume))
        if volume is None:
            return None
    read_seconds = time.perf_counter() - t_read  # the summary's time said only the compression's
    codecs.get_codec("lvpnet").device = device
    t0 = time.perf_counter()
    # worker processes on every free core where they can start (a large volume: minutes on one core)
    result = yield from cancellable(lvpnet.iter_compress_to_file(volume, path, codec, verify, safety_net=safety_net,
                                                                 workers=slice_pool.automatic_if_safe()), cancel)
    if result is None:
        return None
    seconds = time.perf_counter() - t0
    lvp = lvpnet.open(result.path)  # the slices' bytes apart from the header's (from the index: no decoding)
    pixel_bytes = sum(lvp.chunk_bytes(i) for i in range(len(lvp)))
    jxl = skipped = jxl_seconds = None
    if compare and not cancel.is_set():
        from lvpnet import classical

        # a float layer, or a uint32 one spanning more than 16 bits: said, not failed (the file is written)
        why = classical.not_applicable(volume.array, volume.rgb)
        if why is None:
            yield Progress("JPEG-XL", 0, 1)
            jxl = classical.measure("JPEG-XL e7", volume.array, volume.rgb)
            yield Progress("JPEG-XL", 1, 1)
            jxl_seconds = time.perf_counter() - t0 - seconds
        else:
            skipped = f"not run: {why}"
    return {"result": result, "seconds": seconds, "jxl": jxl, "pixel_bytes": pixel_bytes, "jxl_skipped": skipped,
            "rgb": volume.rgb, "read_seconds": read_seconds, "jxl_seconds": jxl_seconds}


def safe_name(name: str) -> str:
    """A file name from a layer name: letters, digits, '.', '-' and '_' only ('sample CT' -> 'sample_CT')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "image"


def default_output(layer) -> Path:
    """Where a layer's .lvp goes unless the user says otherwise: next to the file it was opened from
    (or in the home folder), under a safe name that no existing file has."""
    source = getattr(layer.source, "path", None)
    src = Path(str(source)) if source else None
    # absolute, as the path field shows it: a layer opened by a relative path must still match its suggestion
    folder = src.parent.resolve() if src is not None and src.parent.is_dir() else Path.home()
    return free_name(folder, safe_name(layer.name))


def free_name(folder: Path, stem: str) -> Path:
    """``folder/stem.lvp``, or ``stem-1.lvp``, ``stem-2.lvp``, ...: the first that no file has."""
    candidate, k = folder / f"{stem}.lvp", 1
    while candidate.exists():
        candidate, k = folder / f"{stem}-{k}.lvp", k + 1
    return candidate


def confirm_replace(path: Path) -> bool:
    """Ask before a run replaces a file typed in "save as" (the dock's own names never exist)."""
    from qtpy.QtWidgets import QMessageBox

    answer = QMessageBox.question(None, "Compress", f"{path} exists. Replace it?",
                                  QMessageBox.Yes | QMessageBox.No, QMessageBox.No)
    return answer == QMessageBox.Yes


def slices_by_codec(counts: dict[str, int]) -> str:
    """'12 slices by the learned codec', or with the safety net's choices said as such: "lvpnet 11, fallback 1"
    read as if the codec chosen had not been used."""
    learned, fallback = counts.get(codecs.LEARNED, 0), counts.get("fallback", 0)
    others = {k: v for k, v in counts.items() if k not in (codecs.LEARNED, "fallback")}
    words = []
    if learned:
        words.append(f"{learned} slice{'s' if learned > 1 else ''} by the learned codec")
    if fallback:
        words.append(f"{fallback} by the fallback codec (JPEG-XL) where it was smaller: the safety net" if learned
                     else f"{fallback} slice{'s' if fallback > 1 else ''} by the fallback codec")
    words += [f"{v} by {k}" for k, v in others.items()]
    return ", ".join(words)


def format_summary(out: dict, source: tuple[str, int] | None = None) -> str:
    """The result in words. ``source``: (name, bytes) of the file(s) the layer was opened from: a small
    DICOM's .lvp is larger than its pixel values (it holds the header too) and smaller than the file."""
    r = out["result"]
    n = r.raw_bytes / np.dtype(r.dtype).itemsize
    per = "bits/sample (3 samples per RGB pixel)" if out.get("rgb") else "bits/sample"
    lines = [
        f"values: {r.raw_bytes:,} bytes",
        f".lvp: {r.lvp_bytes:,} bytes ({slices_by_codec(r.codec_counts)})",
    ]
    pixels = out.get("pixel_bytes")
    if pixels is not None:
        lines.append(f"  of which the slices {pixels:,} bytes, {8 * pixels / n:.3f} {per} "
                     f"(header, index and metadata {r.lvp_bytes - pixels:,})")
    else:
        lines.append(f"bits per sample: {r.bits_per_sample:.3f}")
    ratio = f"ratio: {r.ratio:.2f} to the values"
    if source is not None:
        ratio += f", {source[1] / r.lvp_bytes:.2f} to the source {source[0]} ({source[1]:,} bytes)"
    loaded = f", {r.load_seconds:.2f} s loading the learned codec" if r.load_seconds >= 0.05 else ""
    around = [f"reading the layer {out['read_seconds']:.2f} s" if (out.get("read_seconds") or 0) >= 0.05 else "",
              f"JPEG-XL {out['jxl_seconds']:.2f} s" if out.get("jxl_seconds") is not None else ""]
    around = [a for a in around if a]  # the rest of the wait, said apart (the run took 101 s, "time: 66.96 s")
    lines += [ratio, f"time: {out['seconds']:.2f} s: encoded in {r.encode_seconds:.2f} s"
              + ("" if r.verify_seconds is None else f", verified in {r.verify_seconds:.2f} s") + loaded
              + (f"; besides: {', '.join(around)}" if around else "")]
    jxl = out.get("jxl")
    if jxl is not None:
        lines.append(f"JPEG-XL lossless (the slices alone): {jxl.bytes:,} bytes, {8 * jxl.bytes / n:.3f} {per}"
                     + (f"; the .lvp's slices are {pixels / jxl.bytes:.3f}x it" if pixels else ""))
    elif out.get("jxl_skipped"):
        lines.append(f"JPEG-XL: {out['jxl_skipped']}")
    return "\n".join(lines)


def source_size(layer) -> tuple[str, int] | None:
    """(name, bytes) of what ``layer`` was opened from: its file, or a DICOM folder's image files (those its
    metadata lists); None when it was not opened from disk or the files are gone."""
    path = getattr(layer.source, "path", None)
    if not path:
        return None
    path = Path(str(path))
    try:
        if path.is_file():
            return path.name, path.stat().st_size
        files = ((layer.metadata or {}).get("dicom") or {}).get("files")
        if path.is_dir() and files:
            return f"{path.name}/ ({len(files)} files)", sum((path / f).stat().st_size for f in files)
    except (OSError, TypeError, AttributeError):
        return None
    return None


class CompressWidget(BackgroundJobMixin, Container):
    job_title = "Compress"

    def __init__(self, napari_viewer: Viewer):
        viewer = napari_viewer
        self._viewer = viewer
        self.layer = ComboBox(label="image layer", choices=self._image_layers)
        self.codec = ComboBox(label="codec", choices=self._codec_choices, value=AUTO_CODEC)
        self.device = ComboBox(label="device", choices=["Auto", "CPU", *(["CUDA"] if cuda_available() else [])])
        self.output = FileEdit(label="save as", mode="w", filter="*.lvp")
        self.verify = CheckBox(text="verify (decode and compare before saving)", value=True)
        self.safety_net = CheckBox(text="safety net (the fallback where it is smaller)", value=True,
                                   tooltip="Off: every slice by the learned codec, its own figures (what "
                                           "BENCHMARKS.md's 'learned codec alone' measures)")
        self.compare = CheckBox(text="also run JPEG-XL for comparison", value=False)
        self.run_button = PushButton(text="Compress")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(label="slices", value=0, min=0, max=1, visible=False)
        self.summary = Label(label="", value="")
        wrap_text(self.summary)
        self.inspect_button = PushButton(text="Inspect where the bits go", visible=False)
        super().__init__(widgets=[self.layer, self.codec, self.device, self.output, self.verify, self.safety_net,
                                  self.compare,
                                  self.run_button, self.cancel_button, self.progress, self.summary,
                                  self.inspect_button])
        full_width(self.summary)
        self.worker = None
        self.last_result: dict | None = None
        self._cancel = JobControl()
        self.run_button.changed.connect(self.start)
        self.cancel_button.changed.connect(self.cancel)
        self.inspect_button.changed.connect(self.open_inspect)
        self._suggested: str | None = None  # the output path this widget filled in (the user may change it)
        self._compressed = None  # the layer of the last run
        self.layer.changed.connect(self._layer_changed)
        self.codec.changed.connect(self._codec_changed)
        viewer.layers.events.inserted.connect(self._layers_changed)
        viewer.layers.events.removed.connect(self._layers_changed)
        self._codec_changed()
        self._suggest_output()
        self._offer_codecs()

    def _layers_changed(self, *_):
        """A layer added or removed: the list again, and the codecs for the layer chosen now (the first layer
        added is chosen without a change event)."""
        self.layer.reset_choices()
        self._offer_codecs()

    def _codec_choices(self, _widget=None) -> list[str]:
        """What can code the chosen layer: the learned codec takes integers up to 16 bits, so a float layer is
        offered auto and the fallback only (the learned codec failed after the click). A callable, as napari
        resets every choice list of a dock when layers change."""
        layer = self.layer.value if hasattr(self, "layer") else None
        names = codecs.available()
        if layer is not None and not learned_takes(layer.dtype):  # torch-free: the codec itself loads torch
            names = [n for n in names if n != codecs.LEARNED]
        return [AUTO_CODEC, *names]

    def _offer_codecs(self):
        self.codec.reset_choices()  # a value no longer offered falls back to the first: auto
        self._codec_changed()

    def _codec_changed(self, *_):
        """The safety net chooses between the learned codec and the fallback: moot when the fallback is chosen
        or the layer is one the learned codec does not take."""
        self.safety_net.enabled = codecs.LEARNED in self.codec.choices and self.codec.value != codecs.FallbackCodec.id

    def _layer_changed(self, *_):
        """Another layer chosen: the last run's summary and its Inspect button were about the other one, and
        so was a file name typed in "save as" (a folder typed there stays: it holds any layer's file)."""
        if self.run_button.enabled:  # not while a run is going: its summary is on its way
            self.summary.value = ""
            self.inspect_button.visible = False
        if not self._field_is_ours() and not Path(str(self.output.value)).is_dir():
            self._suggested = None
            self.output.value = ""
        self._suggest_output()
        self._offer_codecs()

    def _suggest_output(self, *_):
        """Fill "save as" for the chosen layer, unless the user typed a path of their own."""
        layer = self.layer.value
        if layer is None or not self._field_is_ours():
            return
        self._suggested = str(default_output(layer))
        self.output.value = self._suggested

    def _field_is_ours(self) -> bool:
        """Whether "save as" holds nothing of the user's: empty, the working folder, or the path this
        widget suggested (compared resolved: the field makes a relative path absolute)."""
        value = str(self.output.value)
        if value in ("", ".") or Path(value).resolve() == Path.cwd().resolve():
            return True
        return self._suggested is not None and Path(value).resolve() == Path(self._suggested).resolve()

    def _image_layers(self, _widget=None):
        return [layer for layer in self._viewer.layers if isinstance(layer, Image)]

    def _output_path(self, layer) -> Path:
        chosen = Path(str(self.output.value))
        # an emptied field reads as the working folder (magicgui resolves ""), which exists: the default, never
        # the cwd; our own suggestion is taken again if a file has appeared there since: never over a file by default
        if self._field_is_ours() and chosen.exists():
            return default_output(layer)
        if chosen.is_dir():  # a folder: the layer's name in it, never over a file already there
            chosen = free_name(chosen, safe_name(layer.name))
        if chosen.suffix.lower() != ".lvp":
            chosen = chosen.with_name(chosen.name + ".lvp")
        return chosen

    def start(self, *_):
        layer = self.layer.value
        if layer is None:
            show_error("Compress: choose an image layer first")
            return
        # what napari hands a writer (File > Save): geometry, metadata and the display (window, colormap,
        # gamma), so both ways of saving keep the same; only rgb, scale, translate and metadata were passed
        attributes = layer.as_layer_data_tuple()[1]
        try:
            if isinstance(layer.data, np.ndarray):  # in memory: checked here, said at once
                volume = layer_to_volume(layer.data, attributes)
                check_array(volume.array, volume.rgb, what=f"layer {layer.name!r}")
            else:  # a .lvp still decoding, or data that computes when read (dask): the worker reads it
                volume = (layer.data, attributes, layer.name)
        except Exception as e:
            show_error(f"Compress: {e}")
            return
        path = self._output_path(layer)
        if path.exists() and not confirm_replace(path):
            self.summary.value = f"{path} exists and was kept: nothing was written"
            return
        codec = None if self.codec.value == AUTO_CODEC else self.codec.value
        self.summary.value = f"compressing to {path} ..."
        self.progress.max = n_slices(_full_shape(layer), bool(layer.rgb))
        self.inspect_button.visible = False
        self._compressed = layer  # what "Inspect where the bits go" opens, whatever is chosen by then
        self._source = source_size(layer)  # now: the file may be the one this run replaces
        self.then = {"encode": "verify"} if self.verify.value else {}
        self._run_in_background(_compress_job, volume, path, codec, self.device.value.lower(), self.verify.value,
                                self.compare.value, self.safety_net.value)

    def open_inspect(self, *_):
        """Open the Inspect dock on the layer just compressed and run it."""
        layer = self._compressed
        if layer is None or layer not in self._viewer.layers:
            show_error("Inspect: the layer that was compressed is no longer in the viewer")
            return None
        # a tab beside Compress: stacked under it, the dock that came second was squeezed to a few lines
        dock, inspect = self._viewer.window.add_plugin_dock_widget("napari-lvpnet", "Inspect", tabify=True)
        dock.show()
        dock.raise_()
        inspect._fit_width()  # again, now that its tab shows: the area kept Compress's width, cutting it on the right
        inspect.layer.value = layer
        inspect.run_button.changed.emit(True)
        return inspect

    @quietly_if_closed
    def _on_done(self, out):
        if out is None:
            self.summary.value = "cancelled: nothing was written"
            return
        self.last_result = out
        self.summary.value = f"layer: {self._compressed.name}\n" + format_summary(out, self._source)
        self._suggest_output()  # the next run gets a new name, not this file
        self.inspect_button.visible = True
        show_info(f"Saved {out['result'].path}")

