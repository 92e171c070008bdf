"""NumPy ``.npy`` input and output, and ``.npz`` input.

The array layout is ``(frames..., rows, cols)``; with ``rgb=True`` the last
axis (which must be 3) is colour. Pickles are never loaded. The array is
handed on in native byte order; the file's dtype (byte order included) and
memory order are kept in ``metadata["numpy"]`` so writing back reproduces the
file. An ``.npz`` (``np.savez``, ``np.savez_compressed``) must hold one array:
it is read as that array's ``.npy`` (and decompresses to one); with several the
user is told their names, since which one to keep is theirs to say.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from pathlib import Path
from tokenize import TokenError

import numpy as np

from ..atomic import atomic_path
from ..errors import InputError, NotColourError
from ..volume import Volume

# What numpy's readers raise on a damaged or crafted file: a header that does not parse (its dictionary
# goes through the tokenizer: SyntaxError, TokenError), short data, a bad zip or deflate stream.
_UNREADABLE = (ValueError, OSError, EOFError, SyntaxError, TokenError, zlib.error, zipfile.BadZipFile,
               zipfile.LargeZipFile, NotImplementedError, RuntimeError)


def _declared(f) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype a ``.npy`` stream declares (``f`` left at its data); ValueError when it
    is not one."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, _fortran, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, _fortran, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise ValueError(f".npy format version {version[0]}.{version[1]}")
    return shape, dtype


def _header(f) -> tuple[tuple[int, ...], np.dtype]:
    """``_declared``, and ValueError for an array of Python objects."""
    shape, dtype = _declared(f)
    if dtype.hasobject:
        raise ValueError("an array of Python objects (pickles are never loaded)")
    return shape, dtype


def npy_coded(path: Path) -> bool:
    """Whether lvpnet codes the array a ``.npy`` file declares, from its header alone: False for a valid
    file it does not (1-D, complex, empty, Python objects: ``lvpnet archive`` carries it as it is); True
    also where the header does not parse, so that reading it says what is wrong."""
    from ..slicing import check_layout

    try:
        with open(path, "rb") as f:
            shape, dtype = _declared(f)
    except _UNREADABLE:
        return True
    if dtype.hasobject:
        return False
    try:
        check_layout(tuple(shape), dtype, False)
    except InputError:
        return False
    return True


def read_numpy(path: Path, *, rgb: bool = False) -> Volume:
    """A ``.npy`` file; one whose header declares more data than the file holds is refused before
    anything is allocated (truncated, or crafted)."""

    from .. import limits

    def room(need: int, what: str, f) -> None:
        have = path.stat().st_size - f.tell()
        if need > have:
            raise InputError(f"{path}: the header declares {need:,} bytes of data ({what}), the file holds "
                             f"{have:,}: truncated or not a .npy file")
        # never more than the file's size (the check above), so only a limit the user set can refuse it
        limits.check(need, path.stat().st_size, f"{path}: the array ({what})")

    return _volume(_checked_array(path, ".npy", lambda: open(path, "rb"), room), path, rgb)


def read_npz(path: Path, *, rgb: bool = False) -> Volume:
    """The one array of an ``.npz``. Its declared size is checked before it is inflated: a small
    compressed file may declare any size (``lvpnet.limits``, as for ``.nii.gz``)."""
    from .. import limits

    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            if not names:
                raise InputError(f"{path}: holds no array")
            if len(names) > 1:
                keys = ", ".join(n[:-4] if n.endswith(".npy") else n for n in names[:20])
                more = f" and {len(names) - 20} more" if len(names) > 20 else ""
                raise InputError(
                    f"{path}: holds {len(names)} arrays ({keys}{more}); lvpnet compresses one: "
                    f"save the one to keep as .npy (np.save('x.npy', np.load({str(path)!r})['NAME']))"
                )
            arr = _checked_array(
                path, ".npz", lambda: zf.open(names[0]),
                lambda need, what, _f: limits.check(need, path.stat().st_size, f"{path}: the array {names[0]} ({what})"),
            )
    except InputError:
        raise
    except _UNREADABLE as e:
        raise InputError(f"{path}: not a readable .npz file ({e})") from None
    return _volume(arr, path, rgb)


def _checked_array(path: Path, kind: str, open_data, room) -> np.ndarray:
    """The array of the ``.npy`` stream ``open_data()`` opens (twice: its header, then the array), once
    ``room(bytes, "shape dtype", stream at its data)`` has let its declared size through; any failure to
    parse it is unreadable input."""
    try:
        with open_data() as f:
            shape, dtype = _header(f)
            room(math.prod(shape) * dtype.itemsize, f"{'x'.join(map(str, shape))} {dtype}", f)
        with open_data() as f:
            return np.lib.format.read_array(f, allow_pickle=False)
    except InputError:
        raise
    except _UNREADABLE as e:
        raise InputError(f"{path}: not a readable {kind} file ({e})") from None


def _volume(arr: np.ndarray, path: Path, rgb: bool) -> Volume:
    file_dtype = arr.dtype.str
    fortran = bool(arr.flags.f_contiguous and not arr.flags.c_contiguous)
    if rgb and (arr.ndim < 3 or arr.shape[-1] != 3):
        raise NotColourError(f"{path}: --rgb needs a last axis of 3, the array has shape {arr.shape}")
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
        # numpy's short write comes without an errno ("N requested and M written"): a full disk, mostly
        why = e.strerror or (f"{e}: is the disk full?" if e.errno is None else str(e))
        raise InputError(f"{path}: cannot write ({why})") from None
