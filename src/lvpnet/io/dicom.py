"""DICOM input with pydicom: one file, a multi-frame file, or a folder holding one series.

Stored values are kept exactly. For uncompressed transfer syntaxes the
PixelData bytes are read straight into the stored dtype (from BitsAllocated
and PixelRepresentation), so bits above BitsStored (overlays) survive and
signed values are not sign-extended again. Compressed frames (RLE, JPEG-LS,
JPEG 2000, JPEG lossless, JPEG, JPEG XL) are decoded with pydicom's RLE
decoder or imagecodecs and cast to the stored dtype; signed data coded as
unsigned bit patterns is sign-extended from BitsStored, as pydicom does.
Deflated files are inflated by pydicom on reading.

Layout ``(frames, rows, cols)`` or ``(frames, rows, cols, 3)`` for colour
(planar configuration 0 and 1 alike); a single frame gives ``(rows, cols)``.
Uncompressed YBR_FULL_422 is expanded to full-resolution YBR (each chroma
sample repeated twice, so the stored samples are the even columns).
MONOCHROME1 is kept as stored, palette colour keeps the indices.

Order: the files of a series are sorted by ImagePositionPatient projected on
the slice normal (row x column cosines of ImageOrientationPatient); when
positions are missing, repeated or the orientations differ, by
InstanceNumber; with neither, they stay in scan order (recorded as
``slice_order: "unknown"``). The frames of a multi-frame file keep their
stored order.

Geometry: ``spacing`` is (slice, row, column) spacing, or (row, column) for a
single image; ``origin`` the ImagePositionPatient of the first slice;
``direction`` rows are the row cosine (direction of increasing column index),
the column cosine (increasing row index) and the slice normal (increasing
slice index); world coordinates are DICOM patient LPS mm.

``metadata["dicom"]["elements"]`` holds, per source file in slice order, the
DICOM JSON model of its elements (file meta included) without pixel data;
binary values over 1 KiB are dropped (``"BulkDataURI": "lvpnet:omitted"``)
except palette colour lookup tables, which are kept inline.
"""

from __future__ import annotations

import base64
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..files import iter_folder
from ..volume import Volume
from . import is_dicom_file

_RLE = "1.2.840.10008.1.2.5"
_ENCAPSULATED_UNCOMPRESSED = "1.2.840.10008.1.2.1.98"
_IMPLICIT_LE = "1.2.840.10008.1.2"
_EXPLICIT_LE = "1.2.840.10008.1.2.1"
_EXPLICIT_BE = "1.2.840.10008.1.2.2"

# transfer syntax -> imagecodecs decoders to try, in order
_CODECS: dict[str, tuple[str, ...]] = {
    "1.2.840.10008.1.2.4.50": ("jpeg8",),  # JPEG baseline (lossy)
    "1.2.840.10008.1.2.4.51": ("jpeg8",),  # JPEG extended (lossy)
    "1.2.840.10008.1.2.4.57": ("ljpeg", "jpeg8"),  # JPEG lossless
    "1.2.840.10008.1.2.4.70": ("ljpeg", "jpeg8"),  # JPEG lossless SV1
    "1.2.840.10008.1.2.4.80": ("jpegls",),
    "1.2.840.10008.1.2.4.81": ("jpegls",),
    "1.2.840.10008.1.2.4.90": ("jpeg2k",),
    "1.2.840.10008.1.2.4.91": ("jpeg2k",),
    "1.2.840.10008.1.2.4.92": ("jpeg2k",),
    "1.2.840.10008.1.2.4.93": ("jpeg2k",),
    "1.2.840.10008.1.2.4.201": ("jpeg2k",),  # HTJ2K
    "1.2.840.10008.1.2.4.202": ("jpeg2k",),
    "1.2.840.10008.1.2.4.203": ("jpeg2k",),
    "1.2.840.10008.1.2.4.110": ("jpegxl",),
    "1.2.840.10008.1.2.4.111": ("jpegxl",),
    "1.2.840.10008.1.2.4.112": ("jpegxl",),
}
# decoders that turn YCbCr-coded colour into RGB
_COLOUR_TRANSFORMING = ("jpeg8", "jpeg2k")

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_PALETTE_TAGS = {"00281201", "00281202", "00281203", "00281221", "00281222", "00281223"}
_BULK_LIMIT = 1024
_NO_PREAMBLE = 0x49444D43  # the tag pydicom reads from "DICM" at byte 0 (group 'DI', element 'CM')
_OMITTED = "lvpnet:omitted"


@dataclass
class _File:
    path: Path
    rel: str
    ds: Any  # pydicom Dataset, header only (large values deferred)


# ---------------------------------------------------------------- entry point


def read_dicom(path: Path, *, series: str | None = None, follow_symlinks: bool = False) -> Volume:
    """Read a DICOM file or a folder holding one series (or the one ``series`` names).

    In a folder only regular files are read; FIFOs, devices, sockets and (unless
    ``follow_symlinks``) symbolic links are listed in ``skipped_files`` with
    ``"archived": false``."""
    path = Path(path)
    try:
        with warnings.catch_warnings():  # pydicom warns about every oddity; we report what matters
            warnings.simplefilter("ignore")
            return _read(path, series, follow_symlinks)
    except InputError:
        raise
    except Exception as e:  # malformed values surface as many kinds of pydicom/numpy errors
        raise InputError(f"{path}: unreadable DICOM input ({type(e).__name__}: {e})") from None


def read_dicom_files(root: Path, names: list[str]) -> Volume:
    """The DICOM image files ``names`` (paths relative to ``root``, in any folders under it) as one
    Volume, as ``read_dicom`` reads a series from a folder (the archiver groups series itself)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            files = [_File(root / n, n, _dcmread(root / n, header_only=True)) for n in names]
            for f in files:
                if not _has_pixels(f.ds):
                    raise InputError(f"{f.path}: {_no_pixels(f.ds)}")
            return _build(files, [], single_file=len(files) == 1)
    except InputError:
        raise
    except Exception as e:  # malformed values surface as many kinds of pydicom/numpy errors
        raise InputError(f"{root / names[0]}: unreadable DICOM input ({type(e).__name__}: {e})") from None


def read_each_series(path: Path) -> list[tuple[str, Volume | InputError]]:
    """Every series of a DICOM folder from one scan of it, in the order ``--series`` lists them: its UID
    and its Volume, or the InputError that series alone gives (a viewer opens each as its own layer)."""
    path = Path(path)

    def guarded(read):  # what ``read_dicom`` makes of pydicom's many kinds of errors
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return read()
        except InputError as e:
            return e
        except Exception as e:
            return InputError(f"{path}: unreadable DICOM input ({type(e).__name__}: {e})")

    scanned = guarded(lambda: _scan(path, False))
    if isinstance(scanned, InputError):
        raise scanned
    files, skipped = scanned
    groups = _series_groups(files, path, skipped)
    return [(uid, guarded(lambda g=g: _build(g, skipped, single_file=False))) for uid, g in groups.items()]


def _read(path: Path, series: str | None, follow_symlinks: bool) -> Volume:
    if path.is_dir():
        files, skipped = _scan(path, follow_symlinks)
        chosen = _select_series(files, series, path, skipped)
        return _build(chosen, skipped, single_file=False)
    ds = _dcmread(path, header_only=True)
    if not _has_pixels(ds):
        raise InputError(f"{path}: {_no_pixels(ds)}")
    uid = str(ds.get("SeriesInstanceUID", ""))
    if series is not None and series != uid:
        raise InputError(
            f"{path}: series {series} not found; this file is series {uid or '(none)'}"
        )
    return _build([_File(path, path.name, ds)], [], single_file=True)


def _dcmread(path: Path, *, header_only: bool) -> Any:
    import pydicom

    try:
        if header_only:  # large values (pixel data) stay on disk until used
            return pydicom.dcmread(path, force=True, defer_size=_BULK_LIMIT)
        return pydicom.dcmread(path, force=True)
    except Exception as e:  # pydicom raises many kinds on damaged files
        raise InputError(f"{path}: unreadable DICOM file ({e})") from None


def _has_pixels(ds: Any) -> bool:
    return "PixelData" in ds and "Rows" in ds


def image_without_pixels(ds: Any) -> bool:
    """An image object (its SOP class an image storage, or an image's Rows, or a SOP class that is no UID) that
    holds no pixel data (nor float pixel data: a parametric map's, not read but whole): most likely a copy cut short (pydicom stops quietly at a truncated element), not a
    file that never had pixels."""
    uid = ds.get("SOPClassUID")
    return uid is not None and not _float_pixels(ds) and (_sop_name(ds).endswith("Image Storage") or "Rows" in ds
                                                           or not getattr(uid, "is_valid", True))


def _no_pixels(ds: Any) -> str:
    """Why a file gives no image (``image_without_pixels``: said as damaged)."""
    uid = ds.get("SOPClassUID")
    if _float_pixels(ds):
        return "float pixel data (FloatPixelData or DoubleFloatPixelData) is not supported"
    if _NO_PREAMBLE in ds:  # "DICM" read as the first tag: the file starts where its preamble should end
        return ("a DICOM file without its 128-byte preamble (it starts with 'DICM', which belongs at byte 128): "
                "not read; dcmconv (DCMTK) or pydicom's dcmwrite can write it with its preamble")
    if uid is None:  # pydicom reads anything with force=True: no SOP class, no pixels is no DICOM object
        return "not a DICOM image (no SOP class and no pixel data: another kind of file, or one cut short)"
    name = _sop_name(ds)
    if image_without_pixels(ds):
        return (f"DICOM file without pixel data, although it is an image object ({name}): "
                "truncated or damaged?")
    return f"DICOM file without pixel data ({name})"


def _float_pixels(ds: Any) -> bool:
    return "PixelData" not in ds and ("FloatPixelData" in ds or "DoubleFloatPixelData" in ds)


def _sop_name(ds: Any) -> str:
    uid = ds.get("SOPClassUID")
    return getattr(uid, "name", None) or str(uid or "no SOP class")


# ---------------------------------------------------------------- folders and series


def _scan(root: Path, follow_symlinks: bool = False) -> tuple[list[_File], list[dict[str, Any]]]:
    """DICOM image files under ``root`` and what was skipped (and why): files that are not
    DICOM images (archived as they are) and what is not read at all (``"archived": False``)."""
    files: list[_File] = []
    skipped: list[dict[str, Any]] = []
    for rel, p, unread in iter_folder(root, follow_symlinks):
        if unread is not None:
            skipped.append({"file": rel, "reason": unread, "archived": False})
            continue
        if not (is_dicom_file(p) or p.name.lower().endswith(".dcm")):
            skipped.append({"file": rel, "reason": "not DICOM"})
            continue
        ds = _dcmread(p, header_only=True)
        if not _has_pixels(ds):
            if image_without_pixels(ds):  # carried as it is, and said: a slice of the series is likely missing
                skipped.append({"file": rel, "reason": _no_pixels(ds), "damaged": True})
                continue
            why = _no_pixels(ds) if _NO_PREAMBLE in ds or _float_pixels(ds) else f"no pixel data ({_sop_name(ds)})"
            skipped.append({"file": rel, "reason": why})
            continue
        files.append(_File(p, rel, ds))
    return files, skipped


def _series_groups(files: list[_File], root: Path, skipped: list[dict[str, Any]] = ()) -> dict[str, list[_File]]:
    """The image files of a folder by SeriesInstanceUID, in the order they were found."""
    groups: dict[str, list[_File]] = {}
    for f in files:
        groups.setdefault(str(f.ds.get("SeriesInstanceUID", "")), []).append(f)
    if not groups:
        # why the files were not images, the most common reason first: "no images" alone hid a missing
        # preamble or float pixel data behind a folder that plainly holds DICOM files
        reasons: dict[str, int] = {}
        for s in skipped:
            reasons[s["reason"]] = reasons.get(s["reason"], 0) + 1
        said = "; ".join(f"{n} file{'s' * (n > 1)}: {r}" for r, n in sorted(reasons.items(), key=lambda x: -x[1])[:3])
        other = any(str(s.get("file", "")).lower().endswith((".nii", ".nii.gz", ".npy", ".npz")) for s in skipped)
        hint = "; to compress a folder of NIfTI or .npy files, use lvpnet archive SOURCE DEST" if other else ""
        raise InputError(f"{root}: no DICOM images found in this folder" + (f" ({said})" if said else "") + hint)
    return groups


def _select_series(files: list[_File], series: str | None, root: Path, skipped=()) -> list[_File]:
    groups = _series_groups(files, root, skipped)
    if series is not None:
        if series not in groups:
            raise InputError(f"{root}: no series {series} here\nseries found: {_listing(groups)}")
        return groups[series]
    if len(groups) > 1:
        raise InputError(
            f"{root}: holds {len(groups)} series; pick one with --series UID (series=UID in Python)\n{_listing(groups)}"
        )
    return next(iter(groups.values()))


def _listing(groups: dict[str, list[_File]]) -> str:
    parts = []
    for uid, fs in groups.items():
        desc = str(fs[0].ds.get("SeriesDescription", "") or "")
        parts.append(f"{uid or '(no UID)'} '{desc}' ({len(fs)} file{'s' * (len(fs) != 1)})")
    return "; ".join(parts)


# ---------------------------------------------------------------- building the volume


def _build(files: list[_File], skipped: list[dict[str, str]], *, single_file: bool) -> Volume:
    if len(files) > 1:
        _check_consistent(files)
        order, method = _order(files)
        files = [files[i] for i in order]
    else:
        method = "stored" if _n_frames(files[0].ds, files[0].path) > 1 else "single"

    arrays, infos, elements = [], [], []
    for f in files:
        ds = _dcmread(f.path, header_only=False)
        arr, decoded_pi = _pixels(ds, f.path)
        arrays.append(arr)
        infos.append(_file_info(ds, f.rel, decoded_pi, arr.shape[0]))
        elements.append(elements_of(ds))
    array = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)

    geo = _geometry(infos)
    first = infos[0]
    rgb = first["samples_per_pixel"] > 1
    if array.shape[0] == 1:  # one image: 2-D
        array = array[0]
    meta = _series_metadata(infos, files, skipped, method, geo, elements)
    return Volume(
        array=np.ascontiguousarray(array),
        rgb=rgb,
        spacing=_spacing(geo, array.ndim - (1 if rgb else 0)),
        origin=geo["origin"],
        direction=geo["direction"],
        affine=None,
        source_format="dicom",
        metadata={"modality": first["modality"], "coordinate_system": "LPS", "dicom": meta},
    )


_MUST_MATCH = (
    "Rows",
    "Columns",
    "SamplesPerPixel",
    "BitsAllocated",
    "PixelRepresentation",
    "PhotometricInterpretation",
)


def _check_consistent(files: list[_File]) -> None:
    ref = files[0]
    for f in files:
        if _n_frames(f.ds, f.path) > 1:
            raise InputError(
                f"{f.path}: a series of several multi-frame files is not supported; pass one file"
            )
        for kw in _MUST_MATCH:
            if f.ds.get(kw) != ref.ds.get(kw):
                raise InputError(
                    f"{f.path}: {kw} {f.ds.get(kw)} differs from {ref.rel} ({ref.ds.get(kw)}) "
                    "in the same series"
                )


def _order(files: list[_File]) -> tuple[list[int], str]:
    """Slice order of a series: by position on the normal, else InstanceNumber, else as scanned."""
    idx = list(range(len(files)))
    geos = [_plane_geometry(f.ds, 1) for f in files]
    insts = [_int_or_none(f.ds.get("InstanceNumber")) for f in files]
    iops = [g[0] for g in geos]
    poss = [g[1][0] if g[1] else None for g in geos]
    if all(o is not None for o in iops) and all(p is not None for p in poss):
        same_plane = all(np.allclose(o, iops[0], atol=1e-4) for o in iops)
        if same_plane:
            normal = _normal(iops[0])
            proj = [float(np.dot(p, normal)) for p in poss]
            if len({round(v, 4) for v in proj}) == len(proj):
                return sorted(idx, key=lambda i: proj[i]), "ImagePositionPatient"
    if all(n is not None for n in insts):
        return sorted(idx, key=lambda i: insts[i]), "InstanceNumber"
    return idx, "unknown"


# ---------------------------------------------------------------- geometry


def _floats(value: Any) -> list[float] | None:
    if value is None:
        return None
    try:
        vals = [float(v) for v in (value if _is_multi(value) else [value])]
    except (TypeError, ValueError):
        return None
    return vals or None


def _is_multi(value: Any) -> bool:
    return isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue"


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def _fg_item(ds: Any, frame: int, seq: str) -> Any:
    """The functional group item ``seq`` for ``frame``: per-frame first, then shared."""
    for name, i in (
        ("PerFrameFunctionalGroupsSequence", frame),
        ("SharedFunctionalGroupsSequence", 0),
    ):
        groups = ds.get(name)
        items = groups[i].get(seq) if groups and len(groups) > i else None
        if items:
            return items[0]
    return None


def _attr(ds: Any, keyword: str, seq: str, frame: int = 0) -> Any:
    """A top-level attribute, or the same attribute in a functional group item."""
    if keyword in ds and ds.get(keyword) not in (None, ""):
        return ds.get(keyword)
    item = _fg_item(ds, frame, seq)
    return item.get(keyword) if item is not None else None


def _normal(iop: np.ndarray) -> np.ndarray:
    n = np.cross(iop[:3], iop[3:])
    norm = np.linalg.norm(n)
    return n / norm if norm > 0 else n


def _plane_geometry(ds: Any, n_frames: int) -> tuple[np.ndarray | None, list[np.ndarray] | None]:
    """ImageOrientationPatient and one ImagePositionPatient per frame (None when unknown)."""
    iop = _floats(_attr(ds, "ImageOrientationPatient", "PlaneOrientationSequence"))
    iop_arr = np.asarray(iop) if iop and len(iop) == 6 else None
    per_frame = [
        _floats(_attr(ds, "ImagePositionPatient", "PlanePositionSequence", i))
        for i in range(n_frames)
    ]
    if all(p and len(p) == 3 for p in per_frame):
        if n_frames == 1 or "PerFrameFunctionalGroupsSequence" in ds:
            return iop_arr, [np.asarray(p) for p in per_frame]
    first = per_frame[0]
    offsets = _floats(ds.get("GridFrameOffsetVector"))
    if first and len(first) == 3 and iop_arr is not None and offsets and len(offsets) == n_frames:
        normal = _normal(iop_arr)
        base = 0.0 if offsets[0] == 0 else float(np.dot(first, normal))  # relative vs absolute
        return iop_arr, [np.asarray(first) + (o - base) * normal for o in offsets]
    if first and len(first) == 3 and n_frames == 1:
        return iop_arr, [np.asarray(first)]
    return iop_arr, None


def _geometry(infos: list[dict[str, Any]]) -> dict[str, Any]:
    iop = infos[0]["iop"]
    positions: list[np.ndarray] | None = []
    for info in infos:
        if info["positions"] is None:
            positions = None
            break
        positions.extend(info["positions"])
    first_position = infos[0]["first_position"]
    geo: dict[str, Any] = {
        "iop": iop,
        "positions": positions,
        "pixel_spacing": infos[0]["pixel_spacing"],
        "origin": tuple(float(v) for v in first_position) if first_position is not None else None,
        "direction": None,
        "slice_spacing": None,
        "slice_spacing_from": None,
    }
    normal = _normal(iop) if iop is not None else None
    if positions and len(positions) > 1 and normal is not None:
        proj = np.array([np.dot(p, normal) for p in positions])
        steps = np.abs(np.diff(proj))
        if np.all(steps > 1e-6):
            geo["slice_spacing"], geo["slice_spacing_from"] = float(np.median(steps)), "positions"
        if proj[-1] < proj[0]:  # stored frames run against the normal
            normal = -normal
    if geo["slice_spacing"] is None:
        for key, label in (
            ("spacing_between_slices", "SpacingBetweenSlices"),
            ("slice_thickness", "SliceThickness"),
        ):
            if infos[0][key]:
                geo["slice_spacing"], geo["slice_spacing_from"] = infos[0][key], label
                break
    if iop is not None:
        geo["direction"] = (
            tuple(map(float, iop[:3])),
            tuple(map(float, iop[3:])),
            tuple(map(float, normal)),
        )
    return geo


def _spacing(geo: dict[str, Any], n_axes: int) -> tuple[float, ...] | None:
    px = geo["pixel_spacing"]
    if px is None:
        return None
    if n_axes == 2:
        return (px[0], px[1])
    return (geo["slice_spacing"] if geo["slice_spacing"] else 1.0, px[0], px[1])


# ---------------------------------------------------------------- pixel data


def _required_int(ds: Any, keyword: str, path: Path) -> int:
    value = _int_or_none(ds.get(keyword))
    if value is None:
        raise InputError(f"{path}: DICOM image without a valid {keyword}")
    return value


def _n_frames(ds: Any, path: Path) -> int:
    value = ds.get("NumberOfFrames")
    if value in (None, ""):
        return 1
    n = _int_or_none(value)
    if n is None or n < 1:
        raise InputError(f"{path}: invalid NumberOfFrames {value!r}")
    return n


def _transfer_syntax(ds: Any) -> str:
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    if ts:
        return str(ts)
    implicit, little = getattr(ds, "original_encoding", (True, True))
    if not little:
        return _EXPLICIT_BE
    return _IMPLICIT_LE if implicit else _EXPLICIT_LE


def _ts_name(ts: str) -> str:
    from pydicom.uid import UID

    name = UID(ts).name
    return f"{name} ({ts})" if name and name != ts else ts


@dataclass
class _Format:
    rows: int
    cols: int
    spp: int
    frames: int
    bits_allocated: int
    bits_stored: int
    dtype: np.dtype
    photometric: str
    planar: int


CODED_BITS_ALLOCATED = (8, 16, 32)
CODED_SAMPLES_PER_PIXEL = (1, 3)


def pixels_coded(ds: Any) -> bool:
    """Whether lvpnet reads this file's pixel layout (a 1-bit SEG, say, it does not): the archive
    carries a file it does not as it is."""
    try:
        ba, spp = ds.get("BitsAllocated"), int(ds.get("SamplesPerPixel", 1) or 1)
        if ba is None:
            return True  # a damaged header: the reader says what is missing
        return int(ba) in CODED_BITS_ALLOCATED and spp in CODED_SAMPLES_PER_PIXEL
    except (TypeError, ValueError):
        return True  # a damaged header: the reader says what is wrong with it


def _format(ds: Any, path: Path) -> _Format:
    rows = _required_int(ds, "Rows", path)
    cols = _required_int(ds, "Columns", path)
    ba = _required_int(ds, "BitsAllocated", path)
    bs = _int_or_none(ds.get("BitsStored")) or ba
    pr = _int_or_none(ds.get("PixelRepresentation")) or 0
    spp = _int_or_none(ds.get("SamplesPerPixel")) or 1
    if ba not in CODED_BITS_ALLOCATED:
        raise InputError(f"{path}: BitsAllocated {ba} is not supported (only 8, 16 and 32)")
    if spp not in CODED_SAMPLES_PER_PIXEL:
        raise InputError(f"{path}: SamplesPerPixel {spp} is not supported (only 1 and 3)")
    if rows < 1 or cols < 1:
        raise InputError(f"{path}: empty image ({rows}x{cols})")
    return _Format(
        rows=rows,
        cols=cols,
        spp=spp,
        frames=_n_frames(ds, path),
        bits_allocated=ba,
        bits_stored=min(bs, ba),
        dtype=np.dtype(f"{'i' if pr else 'u'}{ba // 8}"),
        photometric=str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip(),
        planar=_int_or_none(ds.get("PlanarConfiguration")) or 0,
    )


def _pixels(ds: Any, path: Path) -> tuple[np.ndarray, str]:
    """Stored values ``(frames, rows, cols[, 3])`` and the photometric they are in."""
    fmt = _format(ds, path)
    ts = _transfer_syntax(ds)
    try:
        data = ds.PixelData
    except Exception as e:
        raise InputError(f"{path}: pixel data unreadable ({e})") from None
    from pydicom.uid import UID

    if not UID(ts).is_encapsulated:
        return _native(data, fmt, ts, ds, path), _native_photometric(fmt)
    # compressed frames decode to what Rows x Columns x frames declare: held to the file's size first
    from .. import limits

    limits.check(fmt.rows * fmt.cols * fmt.spp * fmt.frames * fmt.dtype.itemsize, len(data),
                 f"{path}: the pixel data ({fmt.frames} x {fmt.rows}x{fmt.cols})")
    frames = _encapsulated_frames(data, fmt, ds, path, ts)
    if ts == _ENCAPSULATED_UNCOMPRESSED:
        return np.stack([_raw_frame(f, fmt, "<", path) for f in frames]), fmt.photometric
    if ts == _RLE:
        return np.stack([_rle_frame(f, fmt, path) for f in frames]), fmt.photometric
    decoders = _CODECS.get(ts)
    if decoders is None:
        raise InputError(f"{path}: cannot decode transfer syntax {_ts_name(ts)}")
    out, used = zip(*(_codec_frame(f, fmt, decoders, path, ts) for f in frames), strict=True)
    return np.stack(out), _decoded_photometric(fmt, used[0])


def _native(data: bytes, fmt: _Format, ts: str, ds: Any, path: Path) -> np.ndarray:
    big = ts == _EXPLICIT_BE
    if big and fmt.bits_allocated == 8 and _pixel_vr(ds) == "OW":
        data = _swap16(data)  # 8-bit values in big-endian OW words
    if fmt.photometric == "YBR_FULL_422" and fmt.spp == 3:
        return _ybr422(data, fmt, path)
    frame_bytes = fmt.rows * fmt.cols * fmt.spp * fmt.dtype.itemsize
    need = frame_bytes * fmt.frames
    if len(data) < need:
        raise InputError(f"{path}: pixel data truncated ({len(data)} of {need} bytes)")
    frames = [data[i * frame_bytes : (i + 1) * frame_bytes] for i in range(fmt.frames)]
    return np.stack([_raw_frame(f, fmt, ">" if big else "<", path) for f in frames])


def _pixel_vr(ds: Any) -> str:
    try:
        return str(ds["PixelData"].VR)
    except Exception:
        return ""


def _swap16(data: bytes) -> bytes:
    even = len(data) - len(data) % 2
    return np.frombuffer(data[:even], ">u2").astype("<u2").tobytes()


def _raw_frame(frame: bytes, fmt: _Format, endian: str, path: Path) -> np.ndarray:
    n = fmt.rows * fmt.cols * fmt.spp
    dt = fmt.dtype.newbyteorder(endian)
    if len(frame) < n * dt.itemsize:
        raise InputError(
            f"{path}: pixel data frame truncated ({len(frame)} of {n * dt.itemsize} bytes)"
        )
    arr = np.frombuffer(frame, dt, count=n).astype(fmt.dtype)
    if fmt.spp == 1:
        return arr.reshape(fmt.rows, fmt.cols)
    if fmt.planar == 1:
        return arr.reshape(fmt.spp, fmt.rows, fmt.cols).transpose(1, 2, 0)
    return arr.reshape(fmt.rows, fmt.cols, fmt.spp)


def _ybr422(data: bytes, fmt: _Format, path: Path) -> np.ndarray:
    """Uncompressed YBR_FULL_422 (Y0 Y1 Cb Cr per pixel pair) -> full-resolution YBR."""
    if fmt.cols % 2 or fmt.dtype.itemsize != 1:
        raise InputError(f"{path}: YBR_FULL_422 needs an even width and 8-bit samples")
    need = fmt.frames * fmt.rows * fmt.cols * 2
    if len(data) < need:
        raise InputError(f"{path}: pixel data truncated ({len(data)} of {need} bytes)")
    q = np.frombuffer(data, fmt.dtype, count=need).reshape(fmt.frames, fmt.rows, fmt.cols // 2, 4)
    out = np.empty((fmt.frames, fmt.rows, fmt.cols, 3), fmt.dtype)
    out[..., 0::2, 0] = q[..., 0]
    out[..., 1::2, 0] = q[..., 1]
    out[..., 1] = np.repeat(q[..., 2], 2, axis=-1)
    out[..., 2] = np.repeat(q[..., 3], 2, axis=-1)
    return out


def _native_photometric(fmt: _Format) -> str:
    return "YBR_FULL" if fmt.photometric == "YBR_FULL_422" and fmt.spp == 3 else fmt.photometric


def _encapsulated_frames(data: bytes, fmt: _Format, ds: Any, path: Path, ts: str) -> list[bytes]:
    from pydicom.encaps import generate_frames

    offsets = None
    if "ExtendedOffsetTable" in ds and "ExtendedOffsetTableLengths" in ds:
        offsets = (ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths)
    try:
        frames = []
        for frame in generate_frames(data, number_of_frames=fmt.frames, extended_offsets=offsets):
            frames.append(frame)
            if len(frames) == fmt.frames:
                break
    except Exception as e:
        raise InputError(f"{path}: damaged encapsulated pixel data ({_ts_name(ts)}: {e})") from None
    if len(frames) < fmt.frames:
        raise InputError(f"{path}: {len(frames)} of {fmt.frames} frames present ({_ts_name(ts)})")
    return frames


def _rle_frame(frame: bytes, fmt: _Format, path: Path) -> np.ndarray:
    from pydicom.pixels.decoders.rle import _rle_decode_frame

    try:  # little-endian samples, one colour plane after the other
        raw = _rle_decode_frame(frame, fmt.rows, fmt.cols, fmt.spp, fmt.bits_allocated)
    except Exception as e:
        raise InputError(f"{path}: cannot decode RLE frame ({e})") from None
    arr = np.frombuffer(bytes(raw), fmt.dtype.newbyteorder("<")).astype(fmt.dtype)
    arr = arr.reshape(fmt.spp, fmt.rows, fmt.cols)
    return arr[0] if fmt.spp == 1 else arr.transpose(1, 2, 0)


def _codec_frame(
    frame: bytes, fmt: _Format, decoders: tuple[str, ...], path: Path, ts: str
) -> tuple[np.ndarray, str]:
    import imagecodecs

    errors = []
    for name in decoders:
        kwargs = {}
        if name == "jpeg8" and fmt.spp == 3 and fmt.photometric == "RGB":
            # DICOM says the samples are RGB: stop libjpeg from assuming YCbCr
            kwargs = {"colorspace": "RGB", "outcolorspace": "RGB"}
        try:
            arr = np.asarray(getattr(imagecodecs, f"{name}_decode")(frame, **kwargs))
        except Exception as e:  # imagecodecs raises codec-specific errors
            errors.append(f"{name}: {e}")
            continue
        if arr.ndim == 3 and fmt.spp == 1 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        want = (fmt.rows, fmt.cols) if fmt.spp == 1 else (fmt.rows, fmt.cols, fmt.spp)
        if arr.shape != want:
            errors.append(f"{name}: decoded shape {arr.shape}, expected {want}")
            continue
        return _to_stored(arr, fmt, path), name
    raise InputError(f"{path}: cannot decode {_ts_name(ts)} ({'; '.join(errors)})")


def _to_stored(arr: np.ndarray, fmt: _Format, path: Path) -> np.ndarray:
    """Cast decoded samples to the stored dtype, sign-extending unsigned codes of signed data."""
    if arr.dtype.kind not in "ui":
        raise InputError(f"{path}: decoder returned {arr.dtype} samples")
    dtype = fmt.dtype
    if dtype.kind == "i" and arr.dtype.kind == "u":
        signed = arr.astype(f"u{dtype.itemsize}").view(dtype)
        shift = 8 * dtype.itemsize - fmt.bits_stored
        return (signed << shift) >> shift if shift > 0 else signed
    return arr.astype(dtype)


def _decoded_photometric(fmt: _Format, decoder: str) -> str:
    if fmt.spp == 3 and decoder in _COLOUR_TRANSFORMING and fmt.photometric.startswith("YBR"):
        return "RGB"
    return fmt.photometric


# ---------------------------------------------------------------- metadata


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if _is_multi(value):
        return [_jsonable(v) for v in value]
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, bytes):
        return None
    return str(value)


def _uniform(values: list[Any]) -> Any:
    """One value when every file agrees, else the list (slice order)."""
    return values[0] if all(v == values[0] for v in values) else values


def _file_info(ds: Any, rel: str, decoded_pi: str, n_frames: int) -> dict[str, Any]:
    iop, positions = _plane_geometry(ds, n_frames)
    first_pos = _floats(_attr(ds, "ImagePositionPatient", "PlanePositionSequence", 0))
    px = _floats(_attr(ds, "PixelSpacing", "PixelMeasuresSequence"))
    if not px or len(px) != 2:
        px = _floats(ds.get("ImagerPixelSpacing"))
    thickness = _floats(_attr(ds, "SliceThickness", "PixelMeasuresSequence"))
    between = _floats(_attr(ds, "SpacingBetweenSlices", "PixelMeasuresSequence"))
    tsyntax = _transfer_syntax(ds)
    return {
        "file": rel,
        "iop": iop,
        "positions": positions,
        "first_position": np.asarray(first_pos) if first_pos and len(first_pos) == 3 else None,
        "pixel_spacing": (px[0], px[1]) if px and len(px) == 2 else None,
        "slice_thickness": abs(thickness[0]) if thickness else None,
        "spacing_between_slices": abs(between[0]) if between else None,
        "frames": n_frames,
        "modality": _jsonable(ds.get("Modality")) or None,
        "photometric": str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip(),
        "decoded_photometric": decoded_pi,
        "samples_per_pixel": _int_or_none(ds.get("SamplesPerPixel")) or 1,
        "planar_configuration": _int_or_none(ds.get("PlanarConfiguration")),
        "bits_allocated": _int_or_none(ds.get("BitsAllocated")),
        "bits_stored": _int_or_none(ds.get("BitsStored")),
        "high_bit": _int_or_none(ds.get("HighBit")),
        "pixel_representation": _int_or_none(ds.get("PixelRepresentation")) or 0,
        "rescale_slope": _jsonable(_attr(ds, "RescaleSlope", "PixelValueTransformationSequence")),
        "rescale_intercept": _jsonable(
            _attr(ds, "RescaleIntercept", "PixelValueTransformationSequence")
        ),
        "rescale_type": _jsonable(_attr(ds, "RescaleType", "PixelValueTransformationSequence")),
        "window_center": _jsonable(_attr(ds, "WindowCenter", "FrameVOILUTSequence")),
        "window_width": _jsonable(_attr(ds, "WindowWidth", "FrameVOILUTSequence")),
        "transfer_syntax": tsyntax,
        "sop_instance_uid": _jsonable(ds.get("SOPInstanceUID")),
        "series_uid": _jsonable(ds.get("SeriesInstanceUID")),
        "series_description": _jsonable(ds.get("SeriesDescription")),
        "lossy_image_compression": _jsonable(ds.get("LossyImageCompression")),
    }


def _series_metadata(
    infos: list[dict[str, Any]],
    files: list[_File],
    skipped: list[dict[str, str]],
    method: str,
    geo: dict[str, Any],
    elements: list[dict[str, Any]],
) -> dict[str, Any]:
    first = infos[0]

    def per_file(key: str) -> Any:
        return _uniform([info[key] for info in infos])

    return {
        "series_uid": first["series_uid"],
        "series_description": first["series_description"],
        "modality": first["modality"],
        "photometric": first["photometric"],
        "decoded_photometric": first["decoded_photometric"],
        "palette": first["photometric"] == "PALETTE COLOR",
        "samples_per_pixel": first["samples_per_pixel"],
        "planar_configuration": first["planar_configuration"],
        "bits_allocated": first["bits_allocated"],
        "bits_stored": per_file("bits_stored"),
        "high_bit": per_file("high_bit"),
        "pixel_representation": first["pixel_representation"],
        "rescale_slope": per_file("rescale_slope"),
        "rescale_intercept": per_file("rescale_intercept"),
        "rescale_type": per_file("rescale_type"),
        "window_center": per_file("window_center"),
        "window_width": per_file("window_width"),
        "lossy_image_compression": per_file("lossy_image_compression"),
        "transfer_syntax": per_file("transfer_syntax"),
        "transfer_syntaxes": [info["transfer_syntax"] for info in infos],
        "number_of_frames": sum(info["frames"] for info in infos),
        "frames_per_file": [info["frames"] for info in infos],
        "sop_instance_uids": [info["sop_instance_uid"] for info in infos],
        "files": [f.rel for f in files],
        "skipped_files": skipped,
        "slice_order": method,
        "image_orientation": [float(v) for v in geo["iop"]] if geo["iop"] is not None else None,
        "image_positions": (
            [[float(v) for v in p] for p in geo["positions"]] if geo["positions"] else None
        ),
        "pixel_spacing": list(geo["pixel_spacing"]) if geo["pixel_spacing"] else None,
        "slice_thickness": first["slice_thickness"],
        "slice_spacing": geo["slice_spacing"],
        "slice_spacing_from": geo["slice_spacing_from"],
        "elements": elements,
    }


def elements_of(ds: Any) -> dict[str, Any]:
    """DICOM JSON of the file (meta included) without pixel data; large binaries dropped. Removes the
    pixel data elements from ``ds``."""
    for kw in _PIXEL_KEYWORDS:
        if kw in ds:
            del ds[kw]
    out: dict[str, Any] = {}
    meta = getattr(ds, "file_meta", None)
    try:
        if meta is not None:
            out.update(meta.to_json_dict(_BULK_LIMIT, _omit, suppress_invalid_tags=True))
        out.update(ds.to_json_dict(_BULK_LIMIT, _omit, suppress_invalid_tags=True))
    except Exception as e:  # a value pydicom cannot express in JSON: keep what we can say
        out["error"] = f"elements not converted: {e}"
    out = _finite(out)  # a DS "NaN" or an FD infinity: empty here (the file's own bytes keep it)
    for tag in _PALETTE_TAGS & set(out):  # the lookup table is needed to show the indices
        elem = ds[int(tag, 16)]
        out[tag] = {
            "vr": str(elem.VR),
            "InlineBinary": base64.b64encode(elem.value).decode("ascii"),
        }
    return out


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None: the .lvp header is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _omit(elem: Any) -> str:
    return _OMITTED


def pixel_values(volume: Volume) -> tuple[np.ndarray, str | None]:
    """The pixel values of a DICOM-sourced volume, as DICOM defines them and viewers show them: the
    stored words held to BitsStored (bits above it, overlays of old scanners, cleared; signed data
    sign-extended from its top stored bit). With a note when that changed any value, else the array
    itself and None. The ``.lvp`` and a DICOM output keep the words as stored (byte for byte); an
    ``.npy`` or NIfTI output is for analysis, where a CT must read in HU."""
    meta = (volume.metadata or {}).get("dicom") if volume.source_format == "dicom" else None
    arr = volume.array
    bits = meta.get("bits_stored") if isinstance(meta, dict) else None
    if volume.rgb or not isinstance(bits, int) or arr.dtype.kind not in "iu" or not 0 < bits < 8 * arr.dtype.itemsize:
        return arr, None
    if arr.dtype.kind == "u":
        values = arr & arr.dtype.type((1 << bits) - 1)
    else:
        shift = 8 * arr.dtype.itemsize - bits
        values = (arr << shift) >> shift
    changed = int(np.count_nonzero(values != arr))
    if not changed:
        return arr, None
    what = "sign-extended from bit" if arr.dtype.kind == "i" else "held to bit"
    return values, (f"{changed:,} stored values use bits above BitsStored ({bits}): overlay bits or a sign not "
                    f"extended; the file holds the pixel values ({what} {bits - 1}), as DICOM viewers show them "
                    "(the .lvp and a DICOM output keep the words as stored)")
