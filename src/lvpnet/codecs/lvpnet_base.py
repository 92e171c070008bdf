"""The base layer of bitstream version 7: a plane's coarse lattice as a JPEG-XL codestream.

``coding.lattice`` says which lattices there are and why. Here the lattice ``v[::g, ::g]`` of a
plane's coded values (``0..R``) is coded lossless by JPEG-XL, as uint8 when ``R < 256``, else
uint16. Effort 7, and 9 as well on 8-bit lattices (measured on val lattices: effort 9 is smaller
on the palette ultrasound by 13%, larger on the CT and MR by 0.7-5%); the smaller is kept. The
decoder checks the codestream's shape, type and range, so a damaged base layer is an error, not
a wrong image.
"""

from __future__ import annotations

import struct

import numpy as np

from ..coding import lattice
from ..errors import InputError

EFFORTS = (7,)
EFFORTS_8BIT = (7, 9)
LENGTH = struct.Struct("<I")  # the chunk's byte count before each codestream (``lvpnet_codec``)


def _no_jpegxl(e: Exception) -> InputError:
    return InputError(f"lvpnet codec: the base lattice (bitstream 7 and later) needs imagecodecs with JPEG-XL ({e})")


def _imagecodecs():
    try:
        import imagecodecs
    except ImportError as e:
        raise _no_jpegxl(e) from None
    return imagecodecs


def lattice_shape(H: int, W: int, g: int) -> tuple[int, int]:
    return -(-H // g), -(-W // g)


def encode_lattice(v: np.ndarray, R: int, g: int) -> bytes:
    """The smallest JPEG-XL codestream of ``v[::g, ::g]`` (values in ``0..R``)."""
    imagecodecs = _imagecodecs()  # not on import: the CUDA round trip stages the codec where it may be missing

    sub = np.ascontiguousarray(v[::g, ::g]).astype(np.uint8 if R < 256 else np.uint16)
    best = None
    for effort in EFFORTS_8BIT if R < 256 else EFFORTS:
        try:
            data = imagecodecs.jpegxl_encode(sub, lossless=True, effort=effort)
        except ImportError as e:  # an imagecodecs built without JPEG-XL imports it only here
            raise _no_jpegxl(e) from None
        if best is None or len(data) < len(best):
            best = data
    return bytes(best)


def decode_lattice(data: bytes, H: int, W: int, R: int, g: int) -> np.ndarray:
    """The lattice (int64) of an (H, W) plane with values in ``0..R``; ValueError when damaged."""
    from .jxl_size import jxl_size

    imagecodecs = _imagecodecs()

    try:  # the declared size first: the decoder would allocate whatever the codestream says
        declared = jxl_size(data)
    except Exception as e:
        raise ValueError(f"lvpnet base layer: not a JPEG-XL codestream ({e})") from None
    if declared != lattice_shape(H, W, g):
        raise ValueError("lvpnet base layer: wrong shape or type (a codestream of another size; damaged chunk)")
    try:
        sub = imagecodecs.jpegxl_decode(data)
    except ImportError as e:  # no JPEG-XL in this imagecodecs: the file is fine, the install is not
        raise _no_jpegxl(e) from None
    except Exception as e:  # imagecodecs raises its own error types for damaged codestreams
        raise ValueError(f"lvpnet base layer: not a JPEG-XL codestream ({e})") from None
    want = np.uint8 if R < 256 else np.uint16
    if sub.shape != lattice_shape(H, W, g) or sub.dtype != want:
        raise ValueError("lvpnet base layer: wrong shape or type (damaged chunk)")
    sub = sub.astype(np.int64)
    if sub.size and sub.max() > R:
        raise ValueError("lvpnet base layer: value outside the slice's range (damaged chunk)")
    return sub


def options(v: np.ndarray, R: int, f: int) -> dict[int, bytes]:
    """Every base level of a plane (values ``v`` in ``0..R``) with its codestream."""
    return {c: encode_lattice(v, R, lattice.stride(f, c)) for c in lattice.levels(f)}


def bits(data: bytes) -> float:
    """What a base layer adds to the chunk: its u32 byte count and the codestream."""
    return 8.0 * (LENGTH.size + len(data))


def costs(v: np.ndarray, R: int, f: int) -> dict[int, float]:
    """Every base level's ``bits`` (``coding.adapt.adapted_pixel_bits``, ``model.slice_bits``)."""
    return {c: bits(d) for c, d in options(v, R, f).items()}
