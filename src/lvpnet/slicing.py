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
    check_layout(tuple(array.shape), array.dtype, rgb, what)


def check_layout(shape: tuple[int, ...], dtype: np.dtype, rgb: bool, what: str = "input") -> None:
    """``check_array`` from the shape and dtype alone (a ``.npy`` header, before reading its data)."""
    dtype, ndim, size = np.dtype(dtype), len(shape), int(np.prod(shape, dtype=np.int64))
    kind = dtype.kind
    if kind == "c":
        raise InputError(f"{what}: complex arrays are not supported (store real and imaginary parts separately)")
    if kind not in "biuf" or dtype.fields is not None:
        raise InputError(f"{what}: arrays of dtype {dtype} are not supported (need integers, floats or booleans)")
    if dtype.itemsize > 8:  # long double: no file format holds it (the header's dtypes go to 8 bytes)
        raise InputError(f"{what}: {dtype} ({8 * dtype.itemsize}-bit) values are not supported "
                         "(at most 64 bits: convert to float64 if that keeps what you need)")
    if size == 0:
        raise InputError(f"{what}: the array is empty (shape {shape})")
    if ndim > MAX_DIMS:
        raise InputError(f"{what}: {ndim} dimensions; at most {MAX_DIMS} are supported")
    if ndim < 2:
        raise InputError(f"{what}: shape {shape} is not an image: need at least rows and columns")
    if rgb and ndim < 3:
        raise InputError(f"{what}: RGB data needs rows, columns and a last axis of 3 colours, the shape is {shape}")
    if rgb and shape[-1] != 3:
        raise InputError(f"{what}: RGB data needs a last axis of 3 colours, the shape is {shape}")


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
