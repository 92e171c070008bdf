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

import functools
import importlib
import os
import threading
from pathlib import Path

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


_IMPORT: threading.Thread | None = None


def _import_lvpnet() -> None:
    """Import lvpnet (and torch with it: 2 s or more) on a helper thread while the main thread keeps
    painting, so the first file dropped into a new napari does not freeze the window. User input
    waits until it is done (no second drop can start while the first is half read)."""
    global _IMPORT
    if _IMPORT is None:
        _IMPORT = threading.Thread(target=importlib.import_module, args=("lvpnet",), name="import lvpnet",
                                   daemon=True)
        _IMPORT.start()
    app = None
    if threading.current_thread() is threading.main_thread():
        try:
            from qtpy.QtCore import QEventLoop
            from qtpy.QtWidgets import QApplication

            app, flags = QApplication.instance(), QEventLoop.ProcessEventsFlag.ExcludeUserInputEvents
        except Exception:  # no Qt: just wait
            app = None
    while _IMPORT.is_alive():
        if app is not None:
            app.processEvents(flags)
        _IMPORT.join(0.01)


def get_lvp_reader(path):
    """``read_lvp`` for a file that starts with the lvpnet magic, and for any file named ``.lvp``: one
    that is empty or something else gets what ``lvpnet verify`` says ("not an lvpnet file"), not
    napari's "the plugin refused the file, try another"."""
    path = _single(path)
    try:
        _import_lvpnet()
        from lvpnet.container import looks_like_lvp

        named = path is not None and str(path).lower().endswith(".lvp") and os.path.isfile(path)
        if path is None or not (named or looks_like_lvp(path)):
            return None
    except Exception:
        return None
    return read_lvp


def read_lvp(path):
    from napari.utils import notifications

    from lvpnet import DamagedError, LvpFile, LvpnetError

    from ._layers import LABELS_KEY, axis_labels, labels_layer, lazy_lvp_layer
    from ._maps import slice_words
    from ._messages import notification, plain_words

    path = os.fspath(_single(path))
    words = plain_words
    try:
        lvp = LvpFile(path)
        try:
            meta = lvp.metadata
        except DamagedError as e:  # the DICOM record that holds the first file's elements: the slices may be fine
            notifications.show_warning(f"{e}\nOpened without the first file's DICOM elements (a palette shows "
                                       "grey); the slices are checked as they decode")
            meta = lvp.header.get("source", {}).get("metadata", {})
        if meta.get(LABELS_KEY):  # saved from a labels layer
            # a damaged slice named as the layer's sliders would name it ('time 1, slice 2', not the flat 8)
            words = functools.partial(slice_words, frames=lvp.frame_shape, labels=axis_labels(len(lvp.shape), meta))
            return [labels_layer(lvp, _name(path, (".lvp",)), metadata=meta)]
    except LvpnetError as e:  # damaged header, truncated, newer format, a damaged labels slice: say so, add nothing
        notifications.show_error(notification(e, path, words))
        return [(None,)]  # npe2's "read, no layers" sentinel: no "try another plugin" dialog
    name = _name(path, (".lvp",))
    layer = lazy_lvp_layer(lvp, name, metadata=meta)
    _say_stacking(_header_volume(lvp, meta), name)
    return [layer]


def _header_volume(lvp, metadata: dict):
    """``lvp``'s Volume from its header alone: geometry and metadata around an array of its shape that holds
    nothing (no slice decoded, no file record read), for what is said of its geometry."""
    import numpy as np

    from lvpnet import Volume

    return Volume(array=np.broadcast_to(np.zeros((), lvp.dtype), lvp.shape), rgb=lvp.rgb, spacing=lvp.spacing,
                  origin=lvp.origin, direction=lvp.direction, affine=lvp.affine,
                  source_format=lvp.header.get("source", {}).get("format", "numpy"), metadata=metadata)


def _say_stacking(volume, name: str) -> None:
    """A DICOM series whose slices one spacing misplaces (a missing slice, a localiser's three planes): said,
    since the layer shows them evenly spaced (``lvpnet.io.nifti.stacking_notes``)."""
    from napari.utils.notifications import show_warning

    from lvpnet.io.nifti import stacking_notes

    for note in stacking_notes(volume, "layer"):
        show_warning(f"{name}: {note}")


def get_nifti_reader(path):
    path = _single(path)
    if path is None or not str(path).lower().endswith((".nii", ".nii.gz")) or not os.path.isfile(path):
        return None
    try:
        import nibabel

        _import_lvpnet()  # read_volume needs it: imported here, where the window keeps painting
        nibabel.load(path)  # reads the header only; the data stays on disk
    except Exception:
        return None
    return read_volume


def _is_dicom(path: str) -> bool:
    """A ``.dcm`` / ``.dicom`` file, another file with the DICOM preamble ('DICM' at byte 128), or a
    folder holding one."""
    _import_lvpnet()
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

    from ._layers import volume_image

    path = os.fspath(_single(path))
    name = _name(path, (".nii.gz", ".nii", *DICOM_SUFFIXES))
    if os.path.isdir(path):  # a DICOM folder, read once: one layer per series (the command line asks --series)
        from lvpnet.io.dicom import read_each_series

        return _each_series(path, name, read_each_series(path))
    volume = lvpnet.read(path)
    _say_stacking(volume, name)
    return [volume_image(volume, name)]


def _each_series(path: str, name: str, series: list) -> list:
    """Every series of a folder as its own layer (named by its description where there are several);
    one that cannot be read is said in a warning and the others open."""
    from napari.utils.notifications import show_warning

    import lvpnet

    from ._layers import volume_image

    if len(series) == 1:  # a series folder: its error as it is, the folder's name
        volume = series[0][1]
        if isinstance(volume, Exception):
            raise volume
        _say_stacking(volume, name)
        return [volume_image(volume, name)]
    layers, failed = [], []
    for uid, volume in series:
        if isinstance(volume, Exception):
            failed.append(f"{uid}: {volume}")
            continue
        desc = str((volume.metadata.get("dicom") or {}).get("series_description") or "").strip()
        title = f"{name} {desc or uid[-12:]}".strip()
        _say_stacking(volume, title)
        layers.append(volume_image(volume, title))
    if failed:
        show_warning(f"{len(failed)} of {len(series)} series in {name} could not be opened: " + "; ".join(failed))
    if not layers:
        raise lvpnet.InputError(f"{path}: none of its {len(series)} series could be opened: " + "; ".join(failed))
    return layers
