"""Slice codecs behind one interface, looked up by the id the container records."""

from __future__ import annotations

import time

import numpy as np

from ..errors import InputError
from .base import Codec, learned_takes
from .fallback import FallbackCodec
from .weights import default_weights, shipped_is_default, shipped_weights, weights_for_model

# The learned codec's id, known without importing it: its module imports torch (2-3 s), which
# ``lvpnet --help``, ``lvpnet info``, a bad argument or a classical-codec file never need.
LEARNED = "lvpnet"


def _learned() -> type[Codec]:
    from .lvpnet_codec import LVPNetCodec

    return LVPNetCodec


_CODECS = {FallbackCodec.id: lambda: FallbackCodec, LEARNED: _learned}  # id -> the class, imported when asked
_INSTANCES: dict[str, Codec] = {}


def __getattr__(name: str):
    if name == "LVPNetCodec":  # ``codecs.LVPNetCodec`` and ``from lvpnet.codecs import LVPNetCodec``
        return _learned()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def reads_versions(name: str) -> tuple[int, ...] | None:
    """The chunk versions of codec ``name`` this lvpnet reads (None: a codec it does not know), without
    importing the codec (no torch for the learned one: ``lvpnet info``)."""
    if name == LEARNED:
        from ..coding.profiles import PROFILES

        return tuple(sorted(PROFILES))
    return _CODECS[name]().reads_versions if name in _CODECS else None


def _usable(name: str) -> bool:
    if name == LEARNED and LEARNED not in _INSTANCES:  # the shared instance's weights: the default ones
        w = default_weights()
        return w is not None and w.is_file()
    codec = get_codec(name)
    return bool(getattr(codec, "is_available", lambda: True)())


def available() -> list[str]:
    """Names accepted by ``--codec``: the learned codec only when its weights are installed."""
    return sorted(n for n in _CODECS if _usable(n))


def known() -> list[str]:
    """Every codec name, installed or not: what ``--codec`` accepts, so naming the learned codec
    without its weights gets the message that says which file is missing, not argparse's list."""
    return sorted(_CODECS)


def get_codec(name: str) -> Codec:
    """The codec registered under ``name`` (one shared instance).

    ``lvpnet`` is always known (so a file that uses it names the missing weights
    clearly), but only listed by ``available()`` when its weights exist.
    """
    if name not in _CODECS:
        raise InputError(f"unknown codec {name!r}; available: {', '.join(available())}")
    if name not in _INSTANCES:
        _INSTANCES[name] = _CODECS[name]()()
    return _INSTANCES[name]


def needs_reference(name: str, data: bytes, shape: tuple[int, ...], version: int) -> bool:
    """Does a chunk of codec ``name`` decode only against the slice before it (``Codec.needs_reference``)?
    The learned codec's answer comes from its plane headers, without the codec: no torch, no weights."""
    if name == LEARNED:
        from .lvpnet_chunk import needs_reference as from_headers

        return from_headers(data, shape, version)
    return get_codec(name).needs_reference(data, shape, version)


def codec_for_model(name: str, model: str | None) -> Codec | None:
    """The codec ``name`` set up with the weights whose sha256 is ``model`` (a file header's
    ``model``): the shared instance when its weights are those (or the codec has none), else
    the learned codec with earlier shipped weights (``resources/retired``); None when no
    installed weights match."""
    codec = get_codec(name)
    have = codec.model_id() if getattr(codec, "is_available", lambda: True)() else None
    if model is None or (have is None and name != LEARNED) or have == model:
        return codec
    if name != LEARNED:
        return None
    device = getattr(codec, "device", "auto")
    key = f"{name}@{model}@{device}"  # the shared codec's device may change (napari's widget sets it)
    if key not in _INSTANCES:
        w = weights_for_model(model)
        if w is None:
            return None
        _INSTANCES[key] = _learned()(w, device=device)
    return _INSTANCES[key]


def default_codec_name(dtype: np.dtype, rgb: bool) -> str:
    """The codec ``compress`` uses when none is named: the learned one for integers up to 16 bits
    (grey or RGB) when the shipped weights are installed and their card says they beat the
    classical codecs on val (``scripts/ship_weights.py``), else the classical fallback."""
    if learned_takes(dtype) and shipped_weights() is not None and shipped_is_default():
        return LEARNED
    return FallbackCodec.id


def warm_up(name: str | None, dtype: np.dtype, rgb: bool) -> float:
    """Load the learned codec's weights and compile its kernels (a 16 x 16 tile coded and decoded) where codec
    ``name`` (None: the default for this data) is the learned one and takes the data, so that what is timed
    next is the coding alone; the seconds it took (about 1.2-2 s once per process; milliseconds after)."""
    name = name or default_codec_name(dtype, rgb)
    if name != LEARNED:
        return 0.0
    from ..progress import unplaced

    learned = get_codec(LEARNED)
    if not learned.accepts(np.dtype(dtype), rgb):
        return 0.0
    engine = getattr(learned, "_engine", None)
    if engine is not None and getattr(learned, "_warmed", None) is engine:
        return 0.0  # these weights coded a tile already: nothing left to load
    t0 = time.perf_counter()
    tile = np.full((16, 16, 3) if rgb else (16, 16), 7, dtype)
    tile[..., 5:9, 3:12] = 9
    with unplaced():  # the tile's steps are no share of the slice a bar shows next (a Cancel still stops them)
        learned.decode(learned.encode(tile), tile.shape, tile.dtype, learned.version)
    learned._warmed = learned._engine
    return time.perf_counter() - t0


__all__ = ["LEARNED", "Codec", "FallbackCodec", "LVPNetCodec", "available", "codec_for_model", "default_codec_name", "get_codec", "known", "needs_reference", "warm_up"]
