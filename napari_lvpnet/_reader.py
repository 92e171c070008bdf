"""npe2 readers for .lvp, NIfTI and DICOM.

``get_*_reader`` returns a reader function, or None for anything it cannot read; it never
raises. A file that starts with the lvpnet magic is claimed even when it is damaged: its
reader then says what is wrong in the words of ``lvpnet verify`` and opens nothing (napari
would otherwise say only that no plugin could read it).

napari's own reader claims ``*.dcm`` and ``*.nii*`` too (it cannot read NIfTI here, and reads
a DICOM file's whole folder as one stack), so for those napari asks which to use; the
manifest's DICOM patterns claim only ``.dcm`` / ``.dicom`` names, folders and names without a
dot (DICOM media file IDs such as ``IM000001``); the reader checks the preamble before it takes
one.
"""

from __future__ import annotations

import os
from pathlib import Path

from ._layers import lazy_lvp_layer, volume_layer

_MAX_FILES_PROBED = 64
DICOM_SUFFIXES = (".dcm", ".dicom")


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
        from lvpnet.container import looks_like_lvp

        if path is None or not looks_like_lvp(path):
            return None
    except Exception:
        return None
    return read_lvp


def read_lvp(path):
    from napari.utils import notifications

    from lvpnet import LvpFile, LvpnetError

    from ._messages import notification

    path = os.fspath(_single(path))
    try:
        lvp = LvpFile(path)
    except LvpnetError as e:  # damaged header, truncated, newer format: say so, add nothing
        notifications.show_error(notification(e, path))
        return [(None,)]  # npe2's "read, no layers" sentinel: no "try another plugin" dialog
    return [lazy_lvp_layer(lvp, _name(path, (".lvp",)))]


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
    """A ``.dcm`` / ``.dicom`` file, another file with the DICOM preamble ('DICM' at byte 128), or a
    folder holding one."""
    from lvpnet.io import is_dicom_file

    if os.path.isfile(path):
        return path.lower().endswith(DICOM_SUFFIXES) or is_dicom_file(path)
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
    return [volume_layer(volume, _name(path, (".nii.gz", ".nii", *DICOM_SUFFIXES)))]
