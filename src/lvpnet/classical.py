"""Classical lossless codecs through imagecodecs, for comparisons.

Each 2-D slice is coded after subtracting its minimum (as unsigned 8 or 16
bit), the way ``baselines-val.md`` measured them, and round-tripped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import imagecodecs
import numpy as np

from .slicing import iter_slices


@dataclass(frozen=True)
class ClassicalResult:
    name: str
    bytes: int
    encode_seconds: float
    decode_seconds: float
    lossless: bool


def _as_unsigned(s: np.ndarray) -> np.ndarray:
    lo = s.min()
    span = int(s.max()) - int(lo)
    if span >= 65536:
        raise ValueError("more than 16 bits per slice")
    return (s.astype(np.int64) - int(lo)).astype(np.uint8 if span < 256 else np.uint16)


CODECS: dict[str, tuple[Callable[[np.ndarray], bytes], Callable[[bytes], np.ndarray]]] = {
    "JPEG-XL e7": (lambda a: imagecodecs.jpegxl_encode(a, lossless=True, effort=7, numthreads=1),
                   lambda b: imagecodecs.jpegxl_decode(b, numthreads=1)),
    "JPEG-LS": (lambda a: imagecodecs.jpegls_encode(a, level=0), imagecodecs.jpegls_decode),
}


def measure(name: str, array: np.ndarray, rgb: bool = False) -> ClassicalResult:
    """Code every slice of an integer array with one classical codec and check it."""
    enc, dec = CODECS[name]
    slices = [_as_unsigned(s) for s in iter_slices(array, rgb)]
    t0 = time.perf_counter()
    coded = [enc(s) for s in slices]
    t1 = time.perf_counter()
    back = [dec(c) for c in coded]
    t2 = time.perf_counter()
    lossless = all(np.array_equal(a, b.reshape(a.shape)) for a, b in zip(slices, back))
    return ClassicalResult(name, sum(len(c) for c in coded), t1 - t0, t2 - t1, lossless)
