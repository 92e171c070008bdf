"""Classical lossless codecs through imagecodecs, for comparisons.

Each 2-D slice (an RGB slice as one 3-channel image) is coded after
subtracting its minimum, as unsigned 8 bit (range < 256) or 16 bit
(range < 65536), with one thread, and round-tripped: the way
``baselines-val.md`` measured them (PNG at zlib level 9, JPEG 2000 and HTJ2K
reversible, JPEG-XL lossless at efforts 9 and 7, JPEG-LS with NEAR = 0).

``ALL_CODECS`` holds the six that ``lvpnet bench`` reports, keyed by the short
ids of ``baselines-val.md``; ``CODECS`` (display name -> encoder, decoder) is
the pair ``lvpnet demo`` shows, kept for its callers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import imagecodecs
import numpy as np

from .slicing import iter_slices

Encoder = Callable[[np.ndarray], bytes]
Decoder = Callable[[bytes], np.ndarray]


@dataclass(frozen=True)
class ClassicalCodec:
    id: str  # short id, as in baselines-val.md
    name: str  # display name
    encode: Encoder
    decode: Decoder


@dataclass(frozen=True)
class ClassicalResult:
    name: str
    bytes: int
    encode_seconds: float
    decode_seconds: float
    lossless: bool
    id: str = ""
    samples: int = 0

    @property
    def bits_per_sample(self) -> float:
        return 8.0 * self.bytes / self.samples if self.samples else float("nan")


def _jxl(effort: int) -> tuple[Encoder, Decoder]:
    return (
        lambda a: imagecodecs.jpegxl_encode(a, lossless=True, effort=effort, numthreads=1),
        lambda b: imagecodecs.jpegxl_decode(b, numthreads=1),
    )


ALL_CODECS: dict[str, ClassicalCodec] = {
    c.id: c
    for c in (
        ClassicalCodec("jpegxl-e9", "JPEG-XL e9", *_jxl(9)),
        ClassicalCodec("jpegxl-e7", "JPEG-XL e7", *_jxl(7)),
        ClassicalCodec("jpegls", "JPEG-LS", lambda a: imagecodecs.jpegls_encode(a, level=0), imagecodecs.jpegls_decode),
        ClassicalCodec(
            "jpeg2k",
            "JPEG 2000",
            lambda a: imagecodecs.jpeg2k_encode(a, level=0, reversible=True, numthreads=1),
            lambda b: imagecodecs.jpeg2k_decode(b, numthreads=1),
        ),
        ClassicalCodec(
            "htj2k", "HTJ2K", lambda a: imagecodecs.htj2k_encode(a, reversible=True), imagecodecs.htj2k_decode
        ),
        ClassicalCodec("png", "PNG", lambda a: imagecodecs.png_encode(a, level=9), imagecodecs.png_decode),
    )
}

_BY_NAME = {c.name: c for c in ALL_CODECS.values()}

#: display name -> (encoder, decoder): what ``lvpnet demo`` shows
CODECS: dict[str, tuple[Encoder, Decoder]] = {
    name: (_BY_NAME[name].encode, _BY_NAME[name].decode) for name in ("JPEG-XL e7", "JPEG-LS")
}


def _as_unsigned(s: np.ndarray) -> np.ndarray:
    if s.dtype == np.bool_:
        return s.astype(np.uint8)
    lo = s.min()
    span = int(s.max()) - int(lo)
    if span >= 65536:
        raise ValueError("more than 16 bits per slice")
    return (s.astype(np.int64) - int(lo)).astype(np.uint8 if span < 256 else np.uint16)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.size == b.size and np.array_equal(a, b.reshape(a.shape))


def not_applicable(array: np.ndarray, rgb: bool = False) -> str | None:
    """Why the classical codecs cannot code ``array`` losslessly this way, or None when they can."""
    if array.dtype.kind not in "biu":
        return f"{array.dtype} data (the classical codecs take integers only)"
    if array.dtype.kind != "b":
        for s in iter_slices(array, rgb):
            if int(s.max()) - int(s.min()) >= 65536:
                return "a slice spans more than 16 bits"
    return None


def _codec(name: str) -> ClassicalCodec:
    if name in ALL_CODECS:
        return ALL_CODECS[name]
    if name in _BY_NAME:
        return _BY_NAME[name]
    raise KeyError(f"unknown classical codec {name!r}; known: {', '.join(ALL_CODECS)}")


def measure(name: str, array: np.ndarray, rgb: bool = False) -> ClassicalResult:
    """Code every slice of an integer array with one classical codec (id or display name) and check it.

    The times cover only the codec calls (the shift to unsigned is outside them).
    Raises ``ValueError`` when a slice spans more than 16 bits.
    """
    codec = _codec(name)
    slices = [_as_unsigned(s) for s in iter_slices(array, rgb)]
    t0 = time.perf_counter()
    coded = [codec.encode(s) for s in slices]
    t1 = time.perf_counter()
    back = [codec.decode(c) for c in coded]
    t2 = time.perf_counter()
    lossless = all(_same(a, np.asarray(b)) for a, b in zip(slices, back))
    return ClassicalResult(
        codec.name, sum(len(c) for c in coded), t1 - t0, t2 - t1, lossless, id=codec.id, samples=int(array.size)
    )
