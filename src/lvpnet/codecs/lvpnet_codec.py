"""The learned codec (LVPNet): one 2-D slice <-> a chunk of real constriction streams.

The chunk's layout and its ``Plane`` records: ``lvpnet_chunk`` (docs/FORMAT.md, section
"lvpnet"); what each bitstream version codes: its profile in ``profiles``; which weights wrote a
chunk (the file header's ``model``, sha256 of the weights file): ``weights``; the coding order
inside the streams: ``lvpnet_entropy``; the model side: ``lvpnet_engine``.

torch and the weights are loaded on first use, not on import.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..coding.profiles import LATEST, PROFILES, profile
from ..coding.reference import ref_values
from ..errors import InputError
from ..model import load_error, prep
from ..progress import part_ticker
from . import lvpnet_chunk
from .base import Codec, learned_takes
from .lvpnet_chunk import Plane, pack_chunk, unpack_chunk
from .weights import WEIGHTS_NAME, default_weights, file_sha256

__all__ = ["LVPNetCodec", "Plane", "pack_chunk", "unpack_chunk"]


def _check_device(value: str, what: str = "device") -> None:
    if value not in ("auto", "cpu", "cuda") and not str(value).startswith("cuda:"):
        raise InputError(f"{what} must be auto, cpu or cuda, not {value!r}")


class LVPNetCodec(Codec):
    """LVPNet with real constriction bitstreams. ``device``: "auto" | "cpu" | "cuda" (GMSM and integer
    path); by default ``LVPNET_DEVICE`` when set (how ``slice_pool`` workers follow their parent), else "auto"."""

    id = "lvpnet"
    # what each version codes, and why it exists: ``profiles``; the latest is written
    version = LATEST
    reads_versions = tuple(sorted(PROFILES))
    takes_reference = True
    # memory a decode may take per pixel of the slice (measured: 120-135 bytes per pixel on 1024 x 1024 and
    # 2048 x 2048 slices, plus 0.4 GB for torch and the weights, which small slices feel most); ``LvpFile`` checks it against
    # ``lvpnet.limits`` before a declared slice shape makes the engine allocate it
    decode_bytes_per_pixel = 512
    # this machine's memory a slice's work takes per pixel, numpy's arrays and torch's (measured on 1024 x 1024
    # and 2048 x 2048 slices, ``benchmarks/codec_memory.md``: 220-240 and 120-135): ``lvpnet.ram``
    encode_ram_per_pixel = 240
    decode_ram_per_pixel = 140

    def __init__(self, weights: str | os.PathLike | None = None, device: str | None = None):
        self._weights = Path(weights) if weights is not None else None
        # checked when the engine is built (``engine``), so a bad LVPNET_DEVICE is a clear error there
        self._device = device or os.environ.get("LVPNET_DEVICE", "").strip() or "auto"
        self._engine = None

    # ------------------------------------------------------------------ configuration
    @property
    def weights(self) -> Path | None:
        return self._weights if self._weights is not None else default_weights()

    @property
    def device(self) -> str:
        return self._device

    @device.setter
    def device(self, value: str) -> None:
        _check_device(value)
        if value != self._device:
            self._device = value
            self._engine = None

    def is_available(self) -> bool:
        w = self.weights
        return w is not None and w.is_file()

    def engine(self):
        if self._engine is None:
            w = self.weights
            if w is None or not w.is_file():
                where = w if w is not None else f"lvpnet/resources/{WEIGHTS_NAME}"
                raise InputError(
                    f"the learned codec's weights are not installed ({where} is missing): set LVPNET_WEIGHTS "
                    "to a weights file (to compress without them, use --codec fallback)"
                )
            from .lvpnet_engine import Engine

            _check_device(self._device, "the learned codec's device (LVPNET_DEVICE)")
            if str(self._device).startswith("cuda"):
                import torch

                if not torch.cuda.is_available():  # said as the device's fault, not the weights'
                    source = "device=" if os.environ.get("LVPNET_DEVICE", "").strip() != self._device else "LVPNET_DEVICE"
                    raise InputError(f"the learned codec's device is {self._device} ({source}), but no CUDA device "
                                     "is available: use cpu or auto")

            try:
                self._engine = Engine(w, self._device)
            except (InputError, MemoryError):
                raise
            except Exception as e:  # torch's unpickler fails on other files in many ways (IndexError on /etc/passwd)
                raise InputError(f"{w}: not usable as the learned codec's weights ({load_error(e, w)})") from None
        return self._engine

    # ------------------------------------------------------------------ Codec
    def accepts(self, dtype: np.dtype, rgb: bool) -> bool:
        return learned_takes(dtype)

    def model_id(self) -> str | None:
        w = self.weights
        if w is None or not w.is_file():
            return self.engine().sha256  # raises the clear "weights not installed" error
        return file_sha256(w)  # no need to load torch and the weights just to compare ids

    def _planes(self, slice_: np.ndarray) -> list[np.ndarray]:
        if slice_.ndim == 3:
            from ..model.prep import rgb_to_planes

            return rgb_to_planes(slice_)
        if slice_.ndim != 2:
            raise ValueError(f"lvpnet codec: a slice must be 2-D or 2-D RGB, got shape {slice_.shape}")
        return [slice_]

    def encode(self, slice_: np.ndarray, reference: np.ndarray | None = None) -> bytes:
        """``reference``: the slice before this one in the file (same shape and dtype); planes may
        then flag the pixels that repeat it (``coding.reference``), and decoding needs it too."""
        return self.drive(self.encode_walk(slice_, reference))

    def drive(self, walk):
        """Runs a walk generator here: its checks and errors come first, as the walk meets them; the
        engine answers its asks (``Engine.drive``)."""
        try:
            ask = next(walk)
        except StopIteration as stop:
            return stop.value
        return self.engine().drive(walk, ask)

    def encode_walk(self, slice_: np.ndarray, reference: np.ndarray | None = None):
        """``encode`` as a walk generator (``lvpnet_engine.Ask``; ``run_lanes`` runs many at once)."""
        if not self.accepts(slice_.dtype, slice_.ndim == 3):
            raise InputError(f"lvpnet codec does not take {slice_.dtype} data")
        eng = self.engine()
        prof = profile(self.version)
        refs = self._references(np.shape(slice_), reference)
        planes = []
        parts = self._planes(np.asarray(slice_))
        for i, p in enumerate(parts):
            vmin, step, k = prep.to_grid(p)
            packed, gaps = prep.collapse_gaps(k)
            ref = None
            if prof.reference and refs is not None and packed.size:
                ref = ref_values(refs[i], vmin, step, gaps, int(packed.max()))
            # the engine codes the values k from 0; the plane's own offset, step and gaps go in its header
            coded = yield from eng.encode_walk(packed, prof, ref_plane=ref, ticks=part_ticker(len(parts), i))
            planes.append(replace(coded, vmin=vmin, step=step, gaps=gaps))
        return pack_chunk(planes, self.version)

    def _references(self, shape: tuple[int, ...], reference: np.ndarray | None) -> list[np.ndarray] | None:
        """The planes of the reference slice (of a slice shaped ``shape``), or None without one."""
        if reference is None:
            return None
        reference = np.asarray(reference)
        if reference.shape != tuple(shape):
            raise ValueError(f"lvpnet codec: the reference slice is {reference.shape}, the slice {tuple(shape)}")
        return [np.asarray(p).astype(np.int64) for p in self._planes(reference)]

    def needs_reference(self, data: bytes, shape: tuple[int, ...], version: int) -> bool:
        """Does this chunk decode only against the previous slice (version 8, ``coding.reference``)?"""
        return lvpnet_chunk.needs_reference(data, shape, version)

    def _decode_planes(self, planes: list[Plane], shape: tuple[int, ...], version: int, reference,
                       want_bits: bool = False):
        """A walk generator of each plane's ``decode_walk`` result (its values; with ``want_bits`` also the estimates),
        the previous slice's planes as its reference where the chunk says so."""
        eng = self.engine()
        prof = profile(version)
        H, W = shape[:2]
        refs = self._references(shape, reference) if any(p.ref_level for p in planes) else None
        out = []
        for i, p in enumerate(planes):
            ref = None  # without a reference the engine refuses a plane coded against one
            if p.ref_level and refs is not None:
                ref = ref_values(refs[i], p.vmin, p.step, p.gaps, p.R)
            try:
                out.append((yield from eng.decode_walk(p, H, W, prof, want_bits=want_bits, ref_plane=ref,
                                                       ticks=part_ticker(len(planes), i))))
            except BaseException as e:  # noqa: BLE001 - narrowed to a native panic just below
                # constriction's models panic (pyo3's PanicException, a BaseException no reader
                # catches) on parameters only a damaged or forged stream gives: the codec's error
                if type(e).__name__ != "PanicException":
                    raise
                raise ValueError(f"lvpnet chunk: plane {i}'s streams are inconsistent (damaged stream)") from None
        return out

    def decode(self, data: bytes, shape: tuple[int, ...], dtype: np.dtype, version: int,
               reference: np.ndarray | None = None) -> np.ndarray:
        """``reference``: the slice before this one in the file, needed where ``needs_reference``."""
        return self.drive(self.decode_walk(data, shape, dtype, version, reference))

    def decode_walk(self, data: bytes, shape: tuple[int, ...], dtype: np.dtype, version: int,
                    reference: np.ndarray | None = None):
        """``decode`` as a walk generator (``lvpnet_engine.Ask``; ``run_lanes`` runs many at once)."""
        dtype = np.dtype(dtype)
        if version not in self.reads_versions:
            raise ValueError(f"lvpnet chunk version {version} is not supported")
        rgb = len(shape) == 3
        planes = unpack_chunk(data, 3 if rgb else 1, version)
        out = yield from self._decode_planes(planes, shape, version, reference)
        if rgb:
            from ..model.prep import planes_to_rgb

            rgb_values = planes_to_rgb(out, np.int64)
            info = np.iinfo(dtype)
            if rgb_values.min() < info.min or rgb_values.max() > info.max:
                raise ValueError("lvpnet chunk: colour values outside the dtype")
            return rgb_values.astype(dtype)
        info = np.iinfo(dtype)
        if planes[0].vmin < info.min or planes[0].top() > info.max:
            raise ValueError("lvpnet chunk: value range outside the dtype")
        return out[0].astype(dtype)

    def chunk_stats(self, data: bytes, shape: tuple[int, ...], dtype: np.dtype, version: int,
                    reference: np.ndarray | None = None) -> dict[str, float]:
        planes = unpack_chunk(data, 3 if len(shape) == 3 else 1, version)
        est_lat = est_pix = 0.0
        for _out, bl, bp in self.drive(self._decode_planes(planes, shape, version, reference, want_bits=True)):
            est_lat += bl
            est_pix += bp
        return {
            "latent_bits": float(32 * sum(len(p.latent) for p in planes)),
            "pixel_bits": float(32 * sum(len(p.pixels) for p in planes) + sum(p.base_bits() for p in planes)),
            "estimated_bits": est_lat + est_pix,
            "estimated_latent_bits": est_lat,
            "estimated_pixel_bits": est_pix,
        }
