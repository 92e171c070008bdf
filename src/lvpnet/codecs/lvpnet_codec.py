"""The learned codec (LVPNet): one 2-D slice <-> a chunk of real constriction streams.

Chunk layout, version 3 (docs/FORMAT.md, section "lvpnet"), little-endian:

    byte 0          P, the number of planes: 1 (grey) or 3 (RGB as G, R-G, B-G)
    P x 22 bytes    per plane: vmin (i32), R (u32), latent_words (u32), pixel_words (u32),
                    value step (u16), gaps (u32)
    then per plane  gaps pairs of u32 (p, r): runs of unused values taken out
                    (``prep.collapse_gaps``), then latent_words u32 words of the latent
                    ANS stream, then pixel_words u32 words of the pixel ANS stream

Version 7 keeps the layout of version 3; the plane header's last u32 holds the number of gaps in
its low 16 bits and the plane's base level in the next 8 (``model.lattice``). A plane with a
base level > 0 has, after its pixel words, a u32 byte count and that many bytes: a JPEG-XL
codestream of the plane's coarse lattice (``lvpnet_base``). Planes without one cost nothing more.
Version 8 puts the plane's reference level (``model.reference``) in the top 8 bits of that u32:
a plane with a level > 0 decodes only against the previous slice of the file.

The plane's values are ``vmin + step * expand_gaps(k)`` with ``k`` in ``[0, R]`` the coded
values. Version 2 has no gaps field (18-byte plane headers), version 1 neither the step
(16 bytes). A plane with R = 0 (constant) has no streams (both word counts 0). The streams
must tile the chunk exactly. Which weights wrote a chunk is the file header's
``model`` (sha256 of the weights file); see ``lvpnet_entropy`` for the coding
order inside the streams and ``lvpnet_engine`` for the model side.

torch and the weights are loaded on first use, not on import.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import struct
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..model import prep
from ..model.reference import ref_values
from . import lvpnet_base
from .base import Codec

WEIGHTS_NAME = "lvpnet-v1.pt"  # the current shipped weights (the name stays; the card says which)
CARD_NAME = "lvpnet-v1.json"
WEIGHTS_ENV = "LVPNET_WEIGHTS"
# plane header per bitstream version: vmin, R, latent words, pixel words[, value step[, gaps]]
_PLANE = {1: struct.Struct("<iIII"), 2: struct.Struct("<iIIIH"), 3: struct.Struct("<iIIIHI")}
_PLANE[4] = _PLANE[3]  # version 4 changes only what the pixel stream holds
_PLANE[5] = _PLANE[3]  # version 5 too: only what the streams hold changes
_PLANE[6] = _PLANE[3]  # and version 6
_PLANE[7] = _PLANE[3]  # version 7: the base level beside the gap count, the base layer after the pixel words
_PLANE[8] = _PLANE[3]  # version 8: the reference level above the base level


def shipped_weights() -> Path | None:
    """The weights shipped in ``lvpnet.resources``, or None when not installed."""
    try:
        from ..resources import path
    except ImportError:  # pragma: no cover - resources are part of the package
        return None
    p = path(WEIGHTS_NAME)
    return p if p.is_file() else None


RETIRED_DIR = "retired"  # earlier shipped weights, lvpnet-<first 16 hex digits of sha256>.pt


def retired_dir() -> Path | None:
    """Where earlier shipped weights live, so files they wrote keep opening after an upgrade."""
    try:
        from ..resources import path
    except ImportError:  # pragma: no cover - resources are part of the package
        return None
    return path(RETIRED_DIR)


def file_sha256(path) -> str:
    """sha256 of a file (weights: the id a ``.lvp`` header records), cached per path and version."""
    st = os.stat(path)
    return _file_sha256(os.fspath(path), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=16)
def _file_sha256(path: str, mtime_ns: int, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weights_for_model(sha256: str) -> Path | None:
    """The shipped weights, current or retired, whose sha256 is ``sha256`` (None: not shipped)."""
    if not isinstance(sha256, str) or not sha256:
        return None
    cands = [shipped_weights()]
    d = retired_dir()
    if d is not None and d.is_dir():
        cands += sorted(d.glob(f"lvpnet-{sha256[:16]}*.pt"))
    for p in cands:
        if p is not None and p.is_file() and file_sha256(p) == sha256:
            return p
    return None


def shipped_card() -> dict:
    """The shipped weights' card (``lvpnet-v1.json`` beside them, written by
    ``scripts/ship_weights.py``); {} when there is none or it cannot be read."""
    w = shipped_weights()
    card = None if w is None else w.with_name(CARD_NAME)
    try:
        return json.loads(card.read_text()) if card is not None and card.is_file() else {}
    except (OSError, ValueError):
        return {}


def shipped_is_default() -> bool:
    """True when the shipped model beat the classical codecs on val (its card says so)."""
    return bool(shipped_card().get("default_codec"))


def default_weights() -> Path | None:
    """``$LVPNET_WEIGHTS`` when set, else the shipped weights (None when neither exists)."""
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        return Path(env)
    return shipped_weights()


def pack_chunk(planes: list[tuple], version: int = 3) -> bytes:
    """Planes ``(vmin, R, latent words, pixel words[, step[, gaps[, base[, ref level]]]]])`` -> chunk
    bytes (``step``: version 2 and later; ``gaps``, an (n, 2) array of ``prep.collapse_gaps``: version
    3; ``base``, ``(level, codestream)``: version 7; the reference level: version 8)."""
    fmt = _PLANE[version]
    head = [bytes([len(planes)])]
    body = []
    for vmin, R, lat, pix, *rest in planes:
        step = int(rest[0]) if rest else 1
        gaps = np.asarray(rest[1] if len(rest) > 1 else np.zeros((0, 2)), dtype=np.int64).reshape(-1, 2)
        level, data = rest[2] if len(rest) > 2 else (0, b"")
        ref = int(rest[3]) if len(rest) > 3 else 0
        if (version < 8 and ref) or not 0 <= ref < 256:
            raise ValueError("a reference level needs bitstream version 8 and fits in 8 bits")
        extra = (step, len(gaps) | int(level) << 16 | ref << 24)[: max(0, version - 1)]
        if version < 3 and len(gaps):
            raise ValueError("value gaps need bitstream version 3")
        if (version < 7 and level) or not 0 <= level < 256 or bool(level) != bool(len(data)):
            raise ValueError("a base layer needs bitstream version 7, a level in 1..255 and a codestream")
        head.append(fmt.pack(int(vmin), int(R), len(lat), len(pix), *extra))
        body.append(np.ascontiguousarray(gaps, dtype="<u4").tobytes())
        body.append(np.ascontiguousarray(lat, dtype="<u4").tobytes())
        body.append(np.ascontiguousarray(pix, dtype="<u4").tobytes())
        if level:
            body.append(lvpnet_base.LENGTH.pack(len(data)) + bytes(data))
    return b"".join(head + body)


def unpack_chunk(data: bytes, n_planes: int, version: int = 3) -> list[tuple]:
    """Chunk bytes -> planes ``(vmin, R, latent words, pixel words, step, gaps)`` (step 1 before
    version 2; gaps an (n, 2) int64 array, empty before version 3), from version 7 with
    ``base = (level, codestream)`` appended, from version 8 the reference level after it."""
    fmt = _PLANE.get(version)
    if fmt is None:
        raise ValueError(f"lvpnet chunk version {version} is not supported")
    if len(data) < 1 or data[0] != n_planes:
        raise ValueError(f"lvpnet chunk: expected {n_planes} plane(s)")
    pos = 1 + n_planes * fmt.size
    if len(data) < pos:
        raise ValueError("lvpnet chunk: truncated header")
    out = []
    for i in range(n_planes):
        vmin, R, nl, npx, *rest = fmt.unpack_from(data, 1 + i * fmt.size)
        step = rest[0] if rest else 1
        ng = rest[1] if len(rest) > 1 else 0
        level = ref = 0
        if version >= 8:
            ng, ref = ng & 0xFFFFFF, ng >> 24
            if R == 0 and ref:
                raise ValueError("lvpnet chunk: bad reference level")
        if version >= 7:
            ng, level = ng & 0xFFFF, ng >> 16
            if level > 255 or (R == 0 and level):
                raise ValueError("lvpnet chunk: bad base level")
        if step < 1:
            raise ValueError("lvpnet chunk: value step 0")
        if R == 0 and (nl or npx or ng):
            raise ValueError("lvpnet chunk: streams for a constant plane")
        if R > 0 and (nl == 0 or npx == 0):
            raise ValueError("lvpnet chunk: missing stream")
        end = pos + 4 * (2 * ng + nl + npx)
        if end > len(data):
            raise ValueError("lvpnet chunk: truncated stream")
        words = np.frombuffer(data, dtype="<u4", count=2 * ng + nl + npx, offset=pos).astype(np.uint32)
        gaps = words[: 2 * ng].astype(np.int64).reshape(ng, 2)
        if ng and ((np.diff(gaps[:, 0]) <= 0).any() or gaps[-1, 0] >= R or (gaps[:, 1] < 1).any()
                   or R + int(gaps[:, 1].sum()) > 0xFFFFFFFF):
            raise ValueError("lvpnet chunk: bad value gaps")
        words = words[2 * ng :]
        plane = (vmin, R, words[:nl], words[nl:], step, gaps)
        if version >= 7:
            base = b""
            if level:
                if end + 4 > len(data):
                    raise ValueError("lvpnet chunk: truncated base layer")
                (nb,) = lvpnet_base.LENGTH.unpack_from(data, end)
                base, end = bytes(data[end + 4 : end + 4 + nb]), end + 4 + nb
                if nb == 0 or end > len(data):
                    raise ValueError("lvpnet chunk: truncated base layer")
            plane += ((level, base),)
        if version >= 8:
            plane += (ref,)
        out.append(plane)
        pos = end
    if pos != len(data):
        raise ValueError("lvpnet chunk: trailing bytes")
    return out


def _levels(version: int, encoder: bool = False) -> dict[str, bool]:
    """The engine's switches for a bitstream version (the encoder names the first two otherwise)."""
    first = ("calibrate", "adapt") if encoder else ("calibrated", "adaptive")
    return {first[0]: version >= 2, first[1]: version >= 3, "refined": version >= 4, "staged_latent": version >= 5,
            "wide_flags": version >= 5, "edge_classes": version >= 6,
            "min_flags": version >= 6} | ({"base_layer": version >= 7} if encoder else {})


def _base_bits(plane: tuple) -> float:
    """The chunk bits of a plane's base layer (version 7): its byte count and codestream."""
    return lvpnet_base.bits(plane[6][1]) if len(plane) > 6 and plane[6][0] else 0.0


class LVPNetCodec(Codec):
    """LVPNet with real constriction bitstreams. ``device``: "auto" | "cpu" | "cuda" (GMSM and integer path)."""

    id = "lvpnet"
    # 2: per-step scale offsets at the head of each pixel stream (1: none); 3: as 2, with
    # pixel tables adapted to the slice (model.adapt) and runs of unused values taken out
    # (prep.collapse_gaps, listed in the chunk); 4: as 3, with each step's location refined by
    # a linear predictor fitted on the slice (model.refine), its scales moved by the residuals
    # decoded nearby (model.feedback) and per-step scale offsets in [-8, 8]; 5: as 4, with the
    # latent's tables adapted to the slice stage by stage (model.latent_adapt) and two more
    # levels of neighbour-repeat flags, only where most or all neighbours agree (model.repeat);
    # 6: as 5, with the adapted tables counted per scale and distance from the minimum (model.edge),
    # and flags on candidates at the plane's minimum, in contexts of their own (model.repeat);
    # 7: as 6, with a plane's coarse lattice coded by JPEG-XL where that is smaller (model.lattice);
    # 8: as 7, with flags for the pixels that repeat the previous slice (model.reference)
    version = 8
    reads_versions = (1, 2, 3, 4, 5, 6, 7, 8)
    takes_reference = True
    # memory a decode takes per pixel of the slice (measured: 540-930 bytes per pixel on the CPU for
    # 1024 x 1024 and 256 x 256 slices, weights and torch included); ``LvpFile`` checks it against
    # ``lvpnet.limits`` before a declared slice shape makes the engine allocate it
    decode_bytes_per_pixel = 512

    def __init__(self, weights: str | os.PathLike | None = None, device: str = "auto"):
        self._weights = Path(weights) if weights is not None else None
        self._device = device
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
        if value not in ("auto", "cpu", "cuda") and not str(value).startswith("cuda:"):
            raise InputError(f"device must be auto, cpu or cuda, not {value!r}")
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

            try:
                self._engine = Engine(w, self._device)
            except RuntimeError as e:
                raise InputError(f"lvpnet codec: {e}") from None
        return self._engine

    # ------------------------------------------------------------------ Codec
    def accepts(self, dtype: np.dtype, rgb: bool) -> bool:
        dtype = np.dtype(dtype)
        return dtype.kind in "iu" and dtype.itemsize <= 2

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
        then flag the pixels that repeat it (``model.reference``), and decoding needs it too."""
        if not self.accepts(slice_.dtype, slice_.ndim == 3):
            raise InputError(f"lvpnet codec does not take {slice_.dtype} data")
        eng = self.engine()
        refs = self._references(np.shape(slice_), reference)
        planes = []
        for i, p in enumerate(self._planes(np.asarray(slice_))):
            vmin, step, k = prep.to_grid(p)
            packed, gaps = prep.collapse_gaps(k)
            kw = {}
            if self.version >= 8 and refs is not None and packed.size:
                kw["ref_plane"] = ref_values(refs[i], vmin, step, gaps, int(packed.max()))
            _zero, R, lat, pix, *more = eng.encode_plane(packed, **_levels(self.version, encoder=True), **kw)
            planes.append((vmin, R, lat, pix, step, gaps, *more) + ((0,) if self.version >= 8 and not kw else ()))
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
        """Does this chunk decode only against the previous slice (version 8, ``model.reference``)?"""
        if version < 8:
            return False
        return any(p[7] for p in unpack_chunk(data, 3 if len(shape) == 3 else 1, version))

    def _decode_planes(self, planes, shape: tuple[int, ...], version: int, reference, want_bits: bool = False):
        """Each plane's ``decode_plane`` result (its coded values ``k``; with ``want_bits`` also the
        estimates), the previous slice's planes as its reference where the chunk says so."""
        eng = self.engine()
        H, W = shape[:2]
        refs = self._references(shape, reference) if any(len(p) > 7 and p[7] for p in planes) else None
        out = []
        for i, (vmin, R, lat, pix, step, gaps, *more) in enumerate(planes):
            kw = {"base": more[0]} if more else {}
            if len(more) > 1 and more[1]:  # without a reference the engine refuses the plane
                kw |= {"ref_level": more[1], "ref_plane": None if refs is None else ref_values(refs[i], vmin, step, gaps, R)}
            out.append(eng.decode_plane(0, R, lat, pix, H, W, want_bits=want_bits, **_levels(version), **kw))
        return out

    def decode(self, data: bytes, shape: tuple[int, ...], dtype: np.dtype, version: int,
               reference: np.ndarray | None = None) -> np.ndarray:
        """``reference``: the slice before this one in the file, needed where ``needs_reference``."""
        dtype = np.dtype(dtype)
        if version not in self.reads_versions:
            raise ValueError(f"lvpnet chunk version {version} is not supported")
        rgb = len(shape) == 3
        planes = unpack_chunk(data, 3 if rgb else 1, version)
        out = [vmin + step * prep.expand_gaps(k, gaps)
               for (vmin, _R, _lat, _pix, step, gaps, *_more), k in
               zip(planes, self._decode_planes(planes, shape, version, reference))]
        if rgb:
            from ..model.prep import planes_to_rgb

            rgb_values = planes_to_rgb(out, np.int64)
            info = np.iinfo(dtype)
            if rgb_values.min() < info.min or rgb_values.max() > info.max:
                raise ValueError("lvpnet chunk: colour values outside the dtype")
            return rgb_values.astype(dtype)
        info = np.iinfo(dtype)
        vmin, R, step, gaps = planes[0][0], planes[0][1], planes[0][4], planes[0][5]
        if vmin < info.min or vmin + step * (R + int(gaps[:, 1].sum())) > info.max:
            raise ValueError("lvpnet chunk: value range outside the dtype")
        return out[0].astype(dtype)

    def chunk_stats(self, data: bytes, shape: tuple[int, ...], dtype: np.dtype, version: int,
                    reference: np.ndarray | None = None) -> dict[str, float]:
        planes = unpack_chunk(data, 3 if len(shape) == 3 else 1, version)
        est_lat = est_pix = 0.0
        for _out, bl, bp in self._decode_planes(planes, shape, version, reference, want_bits=True):
            est_lat += bl
            est_pix += bp
        return {
            "latent_bits": float(32 * sum(len(p[2]) for p in planes)),
            "pixel_bits": float(32 * sum(len(p[3]) for p in planes) + sum(_base_bits(p) for p in planes)),
            "estimated_bits": est_lat + est_pix,
            "estimated_latent_bits": est_lat,
            "estimated_pixel_bits": est_pix,
        }
