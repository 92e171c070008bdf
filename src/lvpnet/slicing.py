"""Which arrays lvpnet takes, and how an array becomes a sequence of 2-D slices.

Layout: ``(frames..., rows, cols)`` or ``(frames..., rows, cols, 3)`` for RGB.
Leading axes are flattened in C order, so slice ``i`` of a ``(t, z, y, x)``
array is ``array[i // z, i % z]`` and the concatenated slices are exactly the
array's C-order bytes.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .errors import InputError

MAX_DIMS = 5


def check_array(array: np.ndarray, rgb: bool, what: str = "input") -> None:
    """Refuse what cannot be stored losslessly, with a message for the user."""
    if not isinstance(array, np.ndarray):
        raise InputError(f"{what}: expected a numpy array, got {type(array).__name__}")
    kind = array.dtype.kind
    if kind == "c":
        raise InputError(f"{what}: complex arrays are not supported (store real and imaginary parts separately)")
    if kind not in "biuf" or array.dtype.fields is not None:
        raise InputError(f"{what}: arrays of dtype {array.dtype} are not supported (need integers, floats or booleans)")
    if array.dtype.itemsize > 8:  # long double: no file format holds it (the header's dtypes go to 8 bytes)
        raise InputError(f"{what}: {array.dtype} ({8 * array.dtype.itemsize}-bit) values are not supported "
                         "(at most 64 bits: convert to float64 if that keeps what you need)")
    if array.size == 0:
        raise InputError(f"{what}: the array is empty (shape {array.shape})")
    if array.ndim > MAX_DIMS:
        raise InputError(f"{what}: {array.ndim} dimensions; at most {MAX_DIMS} are supported")
    if array.ndim < 2:
        raise InputError(f"{what}: shape {array.shape} is not an image: need at least rows and columns")
    if rgb and array.ndim < 3:
        raise InputError(f"{what}: RGB data needs rows, columns and a last axis of 3 colours, the shape is {array.shape}")
    if rgb and array.shape[-1] != 3:
        raise InputError(f"{what}: RGB data needs a last axis of 3 colours, the shape is {array.shape}")


def slice_shape(shape: tuple[int, ...], rgb: bool) -> tuple[int, ...]:
    return tuple(shape[-3:] if rgb else shape[-2:])


def n_slices(shape: tuple[int, ...], rgb: bool) -> int:
    lead = shape[:-3] if rgb else shape[:-2]
    return int(np.prod(lead, dtype=np.int64))


def iter_slices(array: np.ndarray, rgb: bool) -> Iterator[np.ndarray]:
    """C-contiguous 2-D (or 2-D RGB) slices in storage order, without copying the whole array."""
    lead = array.shape[:-3] if rgb else array.shape[:-2]
    for idx in np.ndindex(*lead):
        yield np.ascontiguousarray(array[idx])
