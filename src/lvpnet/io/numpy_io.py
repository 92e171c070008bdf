"""NumPy ``.npy`` input and output.

The array layout is ``(frames..., rows, cols)``; with ``rgb=True`` the last
axis (which must be 3) is colour. Pickles are never loaded. The array is
handed on in native byte order; the file's dtype (byte order included) and
memory order are kept in ``metadata["numpy"]`` so writing back reproduces the
file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..errors import InputError
from ..volume import Volume


def read_numpy(path: Path, *, rgb: bool = False) -> Volume:
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:  # object arrays raise ValueError
        raise InputError(f"{path}: not a readable .npy file ({e})") from None
    if not isinstance(arr, np.ndarray):
        raise InputError(f"{path}: not a .npy array file")
    file_dtype = arr.dtype.str
    fortran = bool(arr.flags.f_contiguous and not arr.flags.c_contiguous)
    if rgb and (arr.ndim < 3 or arr.shape[-1] != 3):
        raise InputError(f"{path}: --rgb needs a last axis of 3, the array has shape {arr.shape}")
    if arr.ndim < 2:
        raise InputError(f"{path}: needs at least 2 dimensions (rows, cols), got shape {arr.shape}")
    if arr.dtype.byteorder not in ("=", "|"):
        arr = arr.astype(arr.dtype.newbyteorder("="))
    n_axes = arr.ndim - (1 if rgb else 0)
    return Volume(
        array=np.ascontiguousarray(arr),
        rgb=rgb,
        spacing=None,
        source_format="numpy",
        metadata={
            "modality": None,
            "coordinate_system": None,
            "numpy": {"dtype": file_dtype, "fortran_order": fortran, "axes": n_axes},
        },
    )


def write_numpy(volume: Volume, path: Path) -> None:
    """Save the array; a volume read from ``.npy`` gets its file dtype and order back."""
    arr = np.asarray(volume.array)
    info = (volume.metadata or {}).get("numpy") or {}
    dtype = info.get("dtype")
    if dtype and np.dtype(dtype).newbyteorder("=") == arr.dtype.newbyteorder("="):
        arr = arr.astype(np.dtype(dtype), copy=False)
    if info.get("fortran_order"):
        arr = np.asfortranarray(arr)
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, arr, allow_pickle=False)
    except OSError as e:
        raise InputError(f"{path}: cannot write ({e.strerror or e})") from None
