"""lvpnet: learned lossless compression for medical images and volumes.

The Python API mirrors the command line::

    data = lvpnet.compress(array)          # bytes of a .lvp file
    array = lvpnet.decompress(data)        # bit-exact, same dtype and shape (native byte order)
    volume = lvpnet.read("scan.nii.gz")    # .npy, NIfTI, DICOM or .lvp -> Volume
    with_slices = lvpnet.open("scan.lvp")  # lazy: with_slices[i] decodes slice i

This package never imports Qt, napari or magicgui.
"""

from __future__ import annotations

__version__ = "0.1.0"

import os

# OpenMP threads that spin while they wait for work make torch 1.8x (up to 6-10x) slower with 2
# threads than with 1 on a machine whose other core is busy (a user's workstation, a shared server);
# waiting passively keeps 2 threads level with 1 there, and costs about 15% against spinning when
# the cores are free (benchmarks/threads.md): the safe default. libgomp reads this when torch is
# first imported, which the imports below do, so it must be set first; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

# whole trees on dask.distributed: lvpnet.archive(...), lvpnet.restore(...) (the lvpnet.archiver package)
from .archiver import archive, restore  # noqa: E402
from .compressor import (
    CompressResult,
    compress,
    compress_path,
    compress_to_file,
    iter_compress_path,
    iter_compress_to_file,
)
from .container import looks_like_lvp
from .errors import DamagedError, InputError, LvpnetError, NewerFormatError, NotLvpError
from .lvpfile import LvpFile
from .volume import Volume


def decompress(data: bytes) -> np.ndarray:
    """Decode the bytes of a ``.lvp`` file to the original array."""
    return LvpFile(data).read_all()


def open(path: str | os.PathLike) -> LvpFile:  # noqa: A001 - mirrors the CLI's vocabulary
    """Open a ``.lvp`` lazily: header now, slices on demand."""
    return LvpFile(path)


def read(path: str | os.PathLike, *, series: str | None = None, rgb: bool = False) -> Volume:
    """Read any supported file (``.lvp``, ``.npy``, ``.npz`` of one array, NIfTI, DICOM file or folder) into a Volume;
    the bytes of a ``.lvp`` too, as ``open`` and ``decompress`` take them."""
    from .files import input_path

    # a file named .lvp is read as one even when its first bytes are not the magic: its error says it is damaged or
    # cut short, not "unsupported input (expected .npy, ...)"
    lvp = isinstance(path, (bytes, bytearray, memoryview)) or looks_like_lvp(input_path(path))
    if not lvp and os.fspath(path).lower().endswith(".lvp") and os.path.isfile(path):
        from .io import is_dicom_file

        lvp = not is_dicom_file(path)  # a DICOM file named .lvp is read as DICOM, as compress reads it
    if lvp and (series is not None or rgb):  # were ignored: the file says both itself
        raise InputError("series= and rgb= apply to DICOM folders and arrays; a .lvp holds one volume and says "
                         "whether it is colour")
    if isinstance(path, (bytes, bytearray, memoryview)):  # a path never holds a NUL: bytes are a file's content
        return LvpFile(bytes(path)).volume()
    if lvp:
        return LvpFile(path).volume()
    from . import io

    return io.read(path, series=series, rgb=rgb)


__all__ = [
    "CompressResult",
    "DamagedError",
    "InputError",
    "LvpFile",
    "LvpnetError",
    "NewerFormatError",
    "NotLvpError",
    "Volume",
    "archive",
    "compress",
    "compress_path",
    "compress_to_file",
    "decompress",
    "iter_compress_path",
    "iter_compress_to_file",
    "open",
    "read",
    "restore",
]
