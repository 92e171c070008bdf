"""The one in-memory type every part of lvpnet passes around."""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import slicing
from .errors import InputError


@dataclass
class Volume:
    """Stored values of an image or volume plus what is known about its geometry.

    ``array`` keeps the values exactly as the source stored them (no rescale, no
    LUT, no MONOCHROME1 inversion) in layout ``(frames..., rows, cols)`` or, when
    ``rgb`` is true, ``(frames..., rows, cols, 3)``.

    ``spacing`` has one entry per non-colour axis of ``array`` (mm for space,
    the source's unit for time); ``origin`` is the position of the first voxel
    (x, y, z in patient/scanner mm) and ``direction`` a 3x3 matrix of direction
    cosines; ``affine`` is the source's 4x4 voxel-to-world matrix where it has
    one (NIfTI). Any of them may be ``None`` when the source does not say.

    ``metadata`` must be JSON-serialisable: it travels in the ``.lvp`` header.
    ``blobs`` are opaque per-source-file byte strings (for example everything
    of a DICOM file but its pixel data) stored beside the header.
    """

    array: np.ndarray
    rgb: bool = False
    spacing: tuple[float, ...] | None = None
    origin: tuple[float, ...] | None = None
    direction: tuple[tuple[float, ...], ...] | None = None
    affine: np.ndarray | None = None
    source_format: str = "numpy"
    metadata: dict[str, Any] = field(default_factory=dict)
    blobs: list[bytes] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, ...]:
        """The array's shape, as ``LvpFile.shape`` gives a file's (``lvpnet.read(path).shape``)."""
        return tuple(self.array.shape)

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    @property
    def slice_shape(self) -> tuple[int, ...]:
        """Shape of one 2-D slice (``(rows, cols)`` or ``(rows, cols, 3)``)."""
        return slicing.slice_shape(self.array.shape, self.rgb)

    @property
    def frame_shape(self) -> tuple[int, ...]:
        """Leading axes that are iterated slice by slice (may be empty)."""
        return tuple(self.array.shape[: self.array.ndim - len(self.slice_shape)])

    @property
    def n_slices(self) -> int:
        return slicing.n_slices(self.array.shape, self.rgb)

    def pixel_values(self) -> np.ndarray:
        """The pixel values as DICOM defines them and viewers show them: for a DICOM source, ``array``'s stored
        words held to BitsStored (bits above it, overlays of old scanners, cleared; signed data sign-extended
        from its top stored bit), else ``array`` itself. ``array`` keeps the words as stored, so that the
        files restore byte for byte; a CT's Hounsfield units are ``pixel_values() * slope + intercept``
        (``metadata["dicom"]["rescale_slope"]``, ``["rescale_intercept"]``), as ``lvpnet decompress`` writes
        them to .npy and NIfTI."""
        from .io.dicom import pixel_values

        return pixel_values(self)[0]

    def without_files(self) -> Volume:
        """This volume without the source files it carries (``blobs``: a DICOM archive's file records, which
        restore the files byte for byte from ``array``), the rest of its metadata kept: what to store once the
        array has changed (filtered, cropped), since those files' pixels are no longer these."""
        metadata = copy.deepcopy(self.metadata)
        dicom = metadata.get("dicom")
        if isinstance(dicom, dict):
            for key in ("archive", "elements_in_record", "elements_in_record_patched", "elements_patch",
                        "elements_scope"):  # what refers to the records
                dicom.pop(key, None)
        return dataclasses.replace(self, metadata=metadata, blobs=[])


def check_volume(volume: Volume, what: str = "input") -> None:
    """Refuse, before any coding, what the file could not store as given: the array
    (``slicing.check_array``), geometry of the wrong shape (it would be dropped when the file is
    written out as NIfTI or DICOM) and metadata that is not JSON (``plain_metadata``)."""
    array = volume.array
    if isinstance(array, np.ma.MaskedArray):
        raise InputError(f"{what}: a masked array: its mask would be lost; store array.filled(value), or "
                         "array.data and the mask (np.ma.getmaskarray) as two arrays")
    slicing.check_array(array, volume.rgb, what)
    axes = array.ndim - (1 if volume.rgb else 0)
    for name, value, shape in (("spacing", volume.spacing, (axes,)), ("origin", volume.origin, (3,)),
                               ("direction", volume.direction, (3, 3)), ("affine", volume.affine, (4, 4))):
        if value is None:
            continue
        try:
            got = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError(f"{what}: {name} must be numbers, got {value!r}") from None
        if got.shape != shape:
            each = f"one value per axis of a {'RGB ' if volume.rgb else ''}{array.shape} array" if name == "spacing" else ""
            raise InputError(f"{what}: {name} has shape {got.shape}, needs {shape}" + (f" ({each})" if each else ""))
        if not np.isfinite(got).all():  # strict JSON (the header's) has no NaN or infinity, nor has a geometry
            raise InputError(f"{what}: {name} holds {got[~np.isfinite(got)][0]}: needs finite numbers")
        if name == "affine" and not np.array_equal(got[3], [0.0, 0.0, 0.0, 1.0]):
            # a NIfTI (or any world) affine is homogeneous: another last row was silently replaced on output
            raise InputError(f"{what}: affine's last row is {got[3].tolist()}, needs [0, 0, 0, 1]")
    plain_metadata(volume.metadata, what)


_JSON_INT_BITS = 4096  # 1234 decimal digits: within what Python converts to and from text (4300)


def plain_metadata(metadata: dict, what: str = "input") -> dict:
    """``metadata`` as the file's JSON header holds it: numpy scalars and arrays become numbers and
    lists; anything else that is not JSON (bytes, objects) is refused, naming its key."""
    def plain(value, key: str):
        if isinstance(value, np.generic):
            value = value.item()
        elif isinstance(value, np.ndarray):
            value = value.tolist()
        if isinstance(value, float) and not math.isfinite(value):
            raise InputError(f"{what}: metadata {key!r} is {value}, which the JSON header cannot hold (JSON has no NaN "
                             "or infinity): store None or a string")
        if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > _JSON_INT_BITS:
            # Python writes and reads at most 4300 digits of an integer (the encode failed at the end)
            raise InputError(f"{what}: metadata {key!r} is an integer of {value.bit_length():,} bits, more than a "
                             "JSON header's reader takes: store it as a string")
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, dict):
            bad = next((k for k in value if not isinstance(k, str)), None)
            if bad is not None:
                raise InputError(f"{what}: metadata {key or 'keys'}: key {bad!r} is not a string")
            return {k: plain(v, f"{key}.{k}" if key else k) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v, f"{key}[{i}]") for i, v in enumerate(value)]
        raise InputError(f"{what}: metadata {key!r} is a {type(value).__name__}, which a .lvp header cannot hold "
                         "(numbers, strings, booleans, None, lists and dicts of them)")

    if not isinstance(metadata, dict):
        raise InputError(f"{what}: metadata must be a dict, got {type(metadata).__name__}")
    try:
        return plain(metadata, "")
    except RecursionError:  # nested hundreds deep, or a dict that holds itself
        raise InputError(f"{what}: metadata is nested too deeply (or holds itself) to be stored") from None
