"""The ``.lvp`` header's fields, checked against docs/FORMAT.md before anything trusts them.

The header's CRC-32 catches damage, not forgery: anyone can recompute it. So
every field a reader uses is checked for its type and range here, at open,
and a file that fails is refused as damaged (exit 1, the field named) rather
than surfacing later as a stray ``KeyError`` or a wrong output file. The
container's own fields (codecs, blobs) are checked by ``container``; a DICOM
archive's records by ``dicom_archive``.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from .errors import DamagedError
from .slicing import MAX_DIMS


def check_header(h: dict, name: str) -> tuple[np.dtype, tuple[int, ...], bool]:
    """(dtype, shape, rgb) of a header whose every field has the right type; DamagedError if not."""

    def bad(field: str, want: str):
        return DamagedError(f"{name}: damaged: header field '{field}' is not {want}: {_short(h.get(field))}")

    dtype = _dtype(h.get("dtype"))
    if dtype is None:
        raise bad("dtype", "a little-endian integer, float or boolean type")
    shape = h.get("shape")
    if not (isinstance(shape, list) and 2 <= len(shape) <= MAX_DIMS and all(_count(n) for n in shape)):
        raise bad("shape", f"a list of 2 to {MAX_DIMS} positive integers")
    rgb = h.get("rgb")
    if not isinstance(rgb, bool) or (rgb and (len(shape) < 3 or shape[-1] != 3)):
        raise bad("rgb", "true or false (true with a last axis of 3)")
    if not isinstance(h.get("array_hash"), str):
        raise bad("array_hash", "a string")
    if h.get("model") is not None and not isinstance(h.get("model"), str):
        raise bad("model", "null or a string")
    for field, depth in (("spacing", 1), ("origin", 1), ("direction", 2), ("affine", 2)):
        if h.get(field) is not None and not _numbers(h[field], depth):
            raise bad(field, "null or " + ("a list of numbers" if depth == 1 else "a matrix of numbers"))
    source = h.get("source", {})
    if not (isinstance(source, dict) and isinstance(source.get("format", "numpy"), str)
            and isinstance(source.get("metadata", {}), dict)):
        raise bad("source", "an object with a string format and an object metadata")
    _check_metadata(source.get("metadata", {}), name, rgb)
    return dtype, tuple(shape), rgb


def _check_metadata(meta: dict, name: str, rgb: bool) -> None:
    """The parts of the source's metadata that shape an output file."""
    if meta.get("numpy") is not None:
        info = meta["numpy"]
        if not (isinstance(info, dict) and (info.get("dtype") is None or _dtype(info["dtype"], any_order=True))
                and isinstance(info.get("fortran_order", False), bool)):
            raise DamagedError(f"{name}: damaged: the .npy metadata (dtype, fortran_order) is not valid: {_short(info)}")
    if meta.get("nifti") is not None:
        from .io.nifti import metadata_problem

        problem = metadata_problem(meta["nifti"])
        if problem:
            raise DamagedError(f"{name}: damaged: the kept NIfTI header does not fit its record: {problem}")
    dicom = meta.get("dicom")
    if dicom is not None and not isinstance(dicom, dict):
        raise DamagedError(f"{name}: damaged: the DICOM metadata is not an object")
    archive = (dicom or {}).get("archive")
    if archive is not None and not (isinstance(archive, dict) and isinstance(archive.get("files", []), list)):
        raise DamagedError(f"{name}: damaged: the DICOM archive summary is not valid")


def _dtype(text: Any, any_order: bool = False) -> np.dtype | None:
    """The numpy dtype a header names, when it is one lvpnet stores (else None)."""
    if not isinstance(text, str) or len(text) > 8:
        return None
    try:
        dt = np.dtype(text)
    except (TypeError, ValueError, SyntaxError):
        return None
    if dt.kind not in "biuf" or dt.itemsize > 8 or dt.fields is not None or dt.shape != ():
        return None
    if not any_order and dt.byteorder not in ("<", "|", "="):
        return None
    return dt


def _count(n: Any) -> bool:
    return isinstance(n, int) and not isinstance(n, bool) and 1 <= n < 1 << 40


def _numbers(v: Any, depth: int) -> bool:
    """A list of numbers a float holds (depth 1), or of such lists all of one length (a matrix): a JSON integer
    of 400 digits overflowed a float later (exit 3). NaN and infinity pass: writers before 2026-12-07 stored
    them where a source had them, and such files still open."""
    if not isinstance(v, list) or len(v) > 16:
        return False
    if depth == 1:
        return all(isinstance(x, numbers.Real) and not isinstance(x, bool) and _a_float(x) for x in v)
    return all(_numbers(row, depth - 1) for row in v) and len({len(row) for row in v}) <= 1


def _a_float(x: numbers.Real) -> bool:
    try:
        float(x)
    except OverflowError:
        return False
    return True


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."
