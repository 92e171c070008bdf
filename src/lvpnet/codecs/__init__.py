"""Slice codecs behind one interface, looked up by the id the container records."""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .base import Codec
from .fallback import FallbackCodec

_CODECS: dict[str, type[Codec]] = {FallbackCodec.id: FallbackCodec}
_INSTANCES: dict[str, Codec] = {}


def available() -> list[str]:
    """Names accepted by ``--codec``."""
    return sorted(_CODECS)


def get_codec(name: str) -> Codec:
    """The codec registered under ``name`` (one shared instance)."""
    if name not in _CODECS:
        raise InputError(f"unknown codec {name!r}; available: {', '.join(available())}")
    if name not in _INSTANCES:
        _INSTANCES[name] = _CODECS[name]()
    return _INSTANCES[name]


def default_codec_name(dtype: np.dtype, rgb: bool) -> str:
    """The codec ``compress`` uses when none is named."""
    return FallbackCodec.id


__all__ = ["Codec", "FallbackCodec", "available", "default_codec_name", "get_codec"]
