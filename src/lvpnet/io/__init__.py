"""Reading and writing medical images as :class:`lvpnet.volume.Volume`.

``read`` picks the reader from the path: ``.npy`` (or an ``.npz`` of one array); ``.nii`` / ``.nii.gz``; a
``.dcm`` file, any file with the DICOM preamble (``DICM`` at byte 128), or a
folder of DICOM files. ``write`` writes ``.npy``, ``.nii`` and ``.nii.gz``.
``.lvp`` files are not handled here (see ``lvpnet.container``).

Every failure to read an input is raised as :class:`lvpnet.errors.InputError`.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError
from ..files import read_head, require_regular
from ..volume import Volume

__all__ = ["read", "write", "is_dicom_file", "notes"]

_DICOM_MAGIC_OFFSET = 128


def is_dicom_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a file with the DICOM preamble (``DICM`` at byte 128)."""
    return read_head(path, 4, _DICOM_MAGIC_OFFSET) == b"DICM"  # never blocks on a FIFO or reads a device


def _kind(path: Path) -> str:
    name = path.name.lower()
    if path.is_dir():
        return "dicom"
    if name.endswith(".npy"):
        return "numpy"
    if name.endswith(".npz"):
        return "npz"
    if name.endswith((".nii", ".nii.gz")):
        return "nifti"
    if name.endswith(".dcm") or is_dicom_file(path):
        return "dicom"
    return ""


def read(
    path: str | os.PathLike, *, series: str | None = None, rgb: bool = False, follow_symlinks: bool = False
) -> Volume:
    """Read an image or volume, keeping the stored values exactly.

    ``series`` picks one series (by SeriesInstanceUID) from a DICOM folder
    holding several; ``rgb`` says the last axis (of 3) of a ``.npy`` or ``.npz`` is colour.
    Only regular files are read: in a folder, FIFOs, devices and sockets are
    skipped, and symbolic links too unless ``follow_symlinks`` (``notes`` lists them).
    """
    p = require_regular(path)
    kind = _kind(p)
    if series is not None and kind != "dicom":
        raise InputError(f"{p}: series selection applies to DICOM input only")
    if kind == "numpy":
        from .numpy_io import read_numpy

        return read_numpy(p, rgb=rgb)
    if kind == "npz":
        from .numpy_io import read_npz

        return read_npz(p, rgb=rgb)
    if rgb:
        raise InputError(f"{p}: --rgb (rgb=True in Python) applies to .npy and .npz input only (colour is read from the file)")
    if kind == "nifti":
        from .nifti import read_nifti

        return read_nifti(p)
    if kind == "dicom":
        from .dicom import read_dicom

        return read_dicom(p, series=series, follow_symlinks=follow_symlinks)
    raise InputError(
        f"{p}: unsupported input (expected .npy, .npz, .nii, .nii.gz, a DICOM file or a DICOM folder)"
    )


def notes(volume: Volume) -> list[str]:
    """What reading skipped or guessed that a user should hear about: special files and links in a folder, an
    image file without its pixels (a damaged copy: the volume lacks its slice), a
    NIfTI's bytes after its image data beyond what is kept, a colour image read as grey (no ``--rgb``)."""
    dicom = (volume.metadata or {}).get("dicom") or {}
    skipped = dicom.get("skipped_files", []) if isinstance(dicom, dict) else []
    said = [f"{s['file']}: skipped: {s['reason']}" for s in skipped if not s.get("archived", True)]
    said += [f"{s['file']}: not in the volume, kept as it is: {s['reason']}" for s in skipped if s.get("damaged")]
    nifti = (volume.metadata or {}).get("nifti") or {}
    dropped = nifti.get("trailing_dropped") if isinstance(nifti, dict) else None
    if dropped:
        said.append(f"{dropped:,} bytes after the NIfTI image data are not kept (more than 1 MiB): "
                    "a .nii written from this file ends with the data")
    shape = volume.array.shape
    if volume.source_format == "numpy" and not volume.rgb and len(shape) >= 3 and shape[-1] == 3:
        # a colour image read as grey is coded as rows of 3 pixels: many times the time and the bytes
        rows = "x".join(map(str, shape[:-2]))
        said.append(f"the last axis holds 3 values: if this is a colour image, add --rgb (rgb=True in Python); "
                    f"it is coded now as {rows} grey slices of {shape[-2]} x 3 pixels")
    return said


def write(volume: Volume, path: str | os.PathLike) -> None:
    """Write ``volume`` to ``.npy``, ``.nii`` or ``.nii.gz`` (chosen by the extension)."""
    p = Path(path)
    name = p.name.lower()
    if name.endswith(".npy"):
        from .numpy_io import write_numpy

        write_numpy(volume, p)
    elif name.endswith((".nii", ".nii.gz")):
        from .nifti import write_nifti

        write_nifti(volume, p)
    elif p.is_dir() or not p.suffix or name.endswith(".dcm"):
        raise InputError(f"{p}: DICOM output comes in a later version; write .npy, .nii or .nii.gz")
    else:
        raise InputError(f"{p}: unsupported output type (expected .npy, .nii or .nii.gz)")
