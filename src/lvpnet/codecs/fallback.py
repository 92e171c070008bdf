"""Lossless classical codec for every slice the learned codec does not take.

Chunk layout (version 1), all integers little-endian:

    byte 0      mode: 0 = JPEG-XL lossless, 1 = byte-shuffle + zstd, 2 = constant
    mode 0      the offset (the slice minimum, one element of the slice dtype),
                then a JPEG-XL codestream of (slice - offset) as uint8
                (range < 256) or uint16 (range < 65536)
    mode 1      zstd frame of the slice's bytes regrouped by byte position
                (all first bytes, then all second bytes, ...)
    mode 2      the bytes of one element; every element has exactly these bytes

Integer slices whose range fits in 16 bits go to JPEG-XL (effort 7: on the
validation scans it beats effort 9 in total and encodes four times faster; the
learned codec's safety net also tries effort 9, and 10 on 8-bit slices, where the
fallback wins a slice, see ``lvpnet.compressor.encode_stream``).
Anything else (floats with NaN and infinities kept bit for bit, booleans,
integers spanning more than 16 bits) goes through mode 1, which works on raw
bytes and so cannot lose anything.
"""

from __future__ import annotations

import math

import imagecodecs
import numpy as np

from .base import Codec
from .jxl_size import jxl_size

MODE_JXL, MODE_SHUFFLE_ZSTD, MODE_CONSTANT = 0, 1, 2
JXL_EFFORT = 7
JXL_EFFORT_THOROUGH = 9  # the safety net's second try (smaller on 8-bit and CT data, slower)
# The safety net's third try, on slices of at most 8 bits (``thorough_efforts``). Measured on
# val against effort 9: RGB ultrasound -9.5%, colour -2.4%, palette -1.4%, the CT -0.4%; but
# larger on 9 of the 11 MR images (up to +2.3%), and 6x slower (136 s against 23 s on val).
JXL_EFFORT_MAX = 10
ZSTD_LEVEL = 19


def _is_constant(slice_: np.ndarray) -> bool:
    flat = slice_.reshape(-1).view(np.uint8).reshape(slice_.size, slice_.dtype.itemsize)
    return bool((flat == flat[0]).all())


def _shuffle(slice_: np.ndarray) -> bytes:
    raw = np.ascontiguousarray(slice_).reshape(-1).view(np.uint8)
    return raw.reshape(-1, slice_.dtype.itemsize).T.tobytes()


def _unshuffle(data: bytes, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    planes = np.frombuffer(data, np.uint8).reshape(dtype.itemsize, -1)
    return np.ascontiguousarray(planes.T).view(dtype).reshape(shape)


class FallbackCodec(Codec):
    id = "fallback"
    version = 1
    reads_versions = (1,)
    # memory a decode takes beyond the slice itself, per pixel (``LvpFile`` checks it against
    # ``lvpnet.limits`` before decoding): libjxl's int32 channels, up to 3 of them, and its output
    decode_bytes_per_pixel = 16

    def encode(self, slice_: np.ndarray, effort: int = JXL_EFFORT) -> bytes:
        """``effort``: JPEG-XL's (the chunk decodes the same way whatever it is)."""
        slice_ = np.ascontiguousarray(slice_)
        if _is_constant(slice_):
            return bytes([MODE_CONSTANT]) + slice_.reshape(-1)[:1].tobytes()
        if slice_.dtype.kind in "iu":
            lo, hi = int(slice_.min()), int(slice_.max())
            if hi - lo < 65536:
                unsigned = np.uint8 if hi - lo < 256 else np.uint16
                offset = np.array([lo], dtype=slice_.dtype)
                # subtract in the slice's own dtype: no overflow since 0 <= x - lo < 65536
                shifted = (slice_ - offset[0]).astype(unsigned)
                jxl = imagecodecs.jpegxl_encode(shifted, lossless=True, effort=effort, numthreads=1)
                return bytes([MODE_JXL]) + offset.tobytes() + jxl
        packed = imagecodecs.zstd_encode(_shuffle(slice_), level=ZSTD_LEVEL)
        return bytes([MODE_SHUFFLE_ZSTD]) + packed

    @staticmethod
    def thorough_efforts(slice_: np.ndarray) -> tuple[int, ...]:
        """The JPEG-XL efforts the safety net tries beyond the default where the fallback wins a
        slice: 9, and 10 on integer slices spanning fewer than 256 values (8-bit data, where
        effort 10's palettes pay; on wider data it was larger and much slower)."""
        if slice_.dtype.kind in "iu" and slice_.size and int(slice_.max()) - int(slice_.min()) < 256:
            return (JXL_EFFORT_THOROUGH, JXL_EFFORT_MAX)
        return (JXL_EFFORT_THOROUGH,)

    def decode(self, data: bytes, shape: tuple[int, ...], dtype: np.dtype, version: int) -> np.ndarray:
        """Every stream is checked against ``shape`` before it is decoded, so what is allocated
        follows the slice, never a size the stream declares (a JPEG-XL header, a zstd bomb)."""
        dtype = np.dtype(dtype)
        if not data:
            raise ValueError("empty chunk")
        mode, body = data[0], data[1:]
        n_bytes = math.prod(shape) * dtype.itemsize
        if mode == MODE_CONSTANT:
            if len(body) != dtype.itemsize:
                raise ValueError("constant chunk of the wrong size")
            return np.full(shape, np.frombuffer(body, dtype)[0], dtype=dtype)
        if mode == MODE_JXL:
            if dtype.kind not in "iu" or len(body) <= dtype.itemsize:
                raise ValueError("JPEG-XL chunk for a slice that is not integer, or without a codestream")
            offset = np.frombuffer(body[: dtype.itemsize], dtype)[0]
            stream = body[dtype.itemsize :]
            declared = jxl_size(stream)
            if declared != tuple(shape[:2]):
                raise ValueError(f"JPEG-XL codestream of {declared[0]}x{declared[1]} for a {shape[0]}x{shape[1]} slice")
            shifted = imagecodecs.jpegxl_decode(stream, numthreads=1)
            if shifted.size != math.prod(shape):
                raise ValueError("JPEG-XL chunk of the wrong size")
            return shifted.reshape(shape).astype(dtype) + offset
        if mode == MODE_SHUFFLE_ZSTD:
            raw = imagecodecs.zstd_decode(body, out=n_bytes)  # refuses a frame that inflates past the slice
            if len(raw) != n_bytes:
                raise ValueError("zstd chunk of the wrong size")
            return _unshuffle(raw, shape, dtype)
        raise ValueError(f"unknown fallback mode {mode}")
