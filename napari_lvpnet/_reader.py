"""npe2 readers for .lvp, NIfTI and DICOM.

``get_*_reader`` returns a reader function, or None for anything it cannot
read; it never raises (napari then offers the file to other plugins).
"""

from __future__ import annotations

import os
from pathlib import Path

from ._layers import lazy_lvp_layer, volume_layer

_MAX_FILES_PROBED = 64


def _single(path):
    if isinstance(path, (list, tuple)):
        return path[0] if len(path) == 1 else None
    return path


def _name(path: str, suffixes: tuple[str, ...]) -> str:
    name = Path(path.rstrip("/\\")).name
    for s in suffixes:
        if name.lower().endswith(s):
            return name[: -len(s)]
    return name


def get_lvp_reader(path):
    path = _single(path)
    try:
        from lvpnet import LvpFile
        from lvpnet.container import looks_like_lvp

        if path is None or not looks_like_lvp(path):
            return None
        LvpFile(path)  # header, index and their checksum: cheap, and refuses damaged files up front
    except Exception:
        return None
    return read_lvp


def read_lvp(path):
    from napari.utils.notifications import show_error

    from lvpnet import LvpFile, LvpnetError

    path = os.fspath(_single(path))
    try:
        return [lazy_lvp_layer(LvpFile(path), _name(path, (".lvp",)))]
    except LvpnetError as e:  # damaged or unreadable: say so, add nothing (napari's "empty file" sentinel)
        show_error(f"Cannot open {Path(path).name}: {e}")
        return [(None,)]


def get_nifti_reader(path):
    path = _single(path)
    if path is None or not str(path).lower().endswith((".nii", ".nii.gz")) or not os.path.isfile(path):
        return None
    try:
        import nibabel

        nibabel.load(path)  # reads the header only; the data stays on disk
    except Exception:
        return None
    return read_volume


def _is_dicom(path: str) -> bool:
    from lvpnet.io import is_dicom_file

    if os.path.isfile(path):
        return str(path).lower().endswith(".dcm") or is_dicom_file(path)
    if os.path.isdir(path):
        for i, p in enumerate(Path(path).rglob("*")):
            if i >= _MAX_FILES_PROBED:
                break
            if p.is_file() and is_dicom_file(p):
                return True
    return False


def get_dicom_reader(path):
    path = _single(path)
    try:
        if path is None or not _is_dicom(os.fspath(path)):
            return None
    except Exception:
        return None
    return read_volume


def read_volume(path):
    """NIfTI or DICOM through lvpnet.io: stored integers, geometry and metadata kept."""
    import lvpnet

    path = os.fspath(_single(path))
    volume = lvpnet.read(path)
    return [volume_layer(volume, _name(path, (".nii.gz", ".nii", ".dcm")))]
