"""NIfTI-1 / NIfTI-2 (``.nii``, ``.nii.gz``) input and output with nibabel.

Reading keeps the STORED values (``dataobj.get_unscaled()``, never scaled
floats) and records ``scl_slope`` / ``scl_inter`` beside them.

Layout: NIfTI data is ``(x, y, z[, t, ...])`` (i fastest). ``Volume.array``
reverses the axes to ``(..., t, z, y, x)`` so that every slice is a
``(y, x)`` image; ``spacing`` is the header zooms reversed the same way.
RGB24 / RGBA32 data becomes ``(..., y, x, 3|4)`` uint8 with ``rgb=True``.

Geometry: ``Volume.affine`` is nibabel's best affine of the file, unchanged:
it maps NIfTI voxel indices ``(i, j, k)`` (= array axes ``-1, -2, -3``) to
RAS+ world mm. ``origin`` is ``affine[:3, 3]``; ``direction`` row ``n`` is
affine column ``n`` normalised, so row 0 goes with the last array axis (i),
row 1 with the one before (j) and row 2 with the slice axis (k), the same
convention as the DICOM reader (whose world is LPS, see
``metadata["coordinate_system"]``).

Writing back: the header bytes of the source file and whatever follows them
up to the data (extension flag, extensions, padding) are kept in
``metadata["nifti"]`` (``header_b64``, ``extra_b64``, ``data_offset``), so writing a volume
read from a ``.nii`` gives the identical file bytes (``.nii.gz``: identical
uncompressed bytes; bytes after the image data, up to ``TRAILING_KEPT``, are kept too as
``trailing_b64``), as long as its geometry is the header's: one whose affine (or spacing,
origin, direction) was changed is written by nibabel with that geometry and the old header's
other fields. A volume from another source is written by nibabel
with an affine built from its geometry; one read from DICOM gets the series'
RescaleSlope / RescaleIntercept as ``scl_slope`` / ``scl_inter`` where every
slice shares them. What a NIfTI file cannot hold of a DICOM series (slices
not evenly spaced, a rescale per slice) is said by ``conversion_notes``.
A ``.nii.gz`` carries no file name in its gzip header (the atomic write's
temporary name would be the one it carried).
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import math
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path
from ..errors import InputError
from ..volume import Volume

_HEADER_SIZES = {348: 1, 540: 2}
#: bytes after the image data kept for a byte-identical .nii (a writer's padding, a tool's appended
#: note); more than this is said (``io.notes``) and not kept: the header's JSON is no place for megabytes
TRAILING_KEPT = 1 << 20


def read_nifti(path: Path) -> Volume:
    import nibabel as nib

    try:
        img = nib.load(str(path))
    except Exception as e:  # nibabel raises many kinds (ImageFileError, ValueError, EOFError...)
        raise InputError(f"{path}: not a readable NIfTI file ({e})") from None
    if isinstance(img, nib.Cifti2Image):  # a NIfTI-2 file underneath: keep its stored data
        img = nib.Nifti2Image.from_filename(str(path))
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputError(f"{path}: not a single-file NIfTI image ({type(img).__name__})")
    try:
        return _volume(img, path)
    except InputError:
        raise
    except Exception as e:  # damaged data or a header nibabel cannot interpret
        raise InputError(f"{path}: NIfTI data unreadable ({e})") from None


def nifti_coded(path: Path) -> bool:
    """Whether lvpnet codes the image a NIfTI file declares, from its header alone: False for a readable
    header of data it does not (complex, 1-D, empty: ``lvpnet archive`` carries the file as it is); True
    also where the header does not read, so that reading the file says what is wrong."""
    import nibabel as nib

    from ..slicing import check_layout

    try:
        hdr = nib.load(str(path)).header
        dtype = hdr.get_data_dtype()
        shape = tuple(int(n) for n in hdr.get_data_shape())
    except Exception:  # noqa: BLE001 - nibabel raises many kinds; the read says which
        return True
    rgb = dtype.names is not None
    if rgb and not all(dtype[n] == np.uint8 for n in dtype.names):
        return False
    try:  # RGB24 as the reader lays it out (the colours last); RGBA32 (4 fields) is refused there, so here
        check_layout(shape + (len(dtype.names),) if rgb else shape, np.dtype(np.uint8) if rgb else dtype, rgb)
    except InputError:
        return False
    return True


def _check_data_size(img: Any, path: Path) -> None:
    """Refuse a header that declares more data than the file can hold, before nibabel allocates it:
    an uncompressed file must contain every byte; gzip cannot inflate more than about 1032-fold,
    so a ``.nii.gz`` is held to the memory limit's ratio (``lvpnet.limits``)."""
    from .. import limits

    shape = tuple(int(n) for n in img.header.get_data_shape())
    if any(n < 0 for n in shape):
        raise InputError(f"{path}: NIfTI header declares a negative dimension {shape}")
    need = math.prod(shape) * img.header.get_data_dtype().itemsize
    size = path.stat().st_size
    if path.name.lower().endswith(".gz"):
        limits.check(need, size, f"{path}: the NIfTI data ({'x'.join(map(str, shape))})")
    elif need > size - int(img.dataobj.offset):
        raise InputError(
            f"{path}: NIfTI header declares {need:,} bytes of data ({'x'.join(map(str, shape))}), "
            f"the file holds {max(0, size - int(img.dataobj.offset)):,}: truncated or not a NIfTI file"
        )


def _volume(img: Any, path: Path) -> Volume:
    _check_data_size(img, path)
    raw = np.asarray(img.dataobj.get_unscaled())
    offset = int(img.dataobj.offset)  # where data starts (vox_offset may be 0)
    head, extra = _raw_header(path, img.header, offset)
    trailing, dropped = _trailing(path, offset + raw.nbytes)
    array, rgb = _to_volume_layout(raw, path)
    hdr = img.header
    affine = np.asarray(img.affine, dtype=np.float64)
    zooms = [float(z) for z in hdr.get_zooms()][: raw.ndim]
    return Volume(
        array=array,
        rgb=rgb,
        spacing=tuple(reversed(zooms)),
        origin=tuple(float(v) for v in affine[:3, 3]),
        direction=_direction(affine),
        affine=affine,
        source_format="nifti",
        metadata={
            "modality": None,  # NIfTI does not say
            "coordinate_system": "RAS",
            "nifti": {**_nifti_metadata(hdr, head, extra, raw.dtype, offset),
                      **({"trailing_b64": base64.b64encode(trailing).decode("ascii")} if trailing else {}),
                      **({"trailing_dropped": dropped} if dropped else {})},
        },
    )


def _trailing(path: Path, end: int) -> tuple[bytes, int]:
    """The bytes after the image data (which ends at ``end``): (kept bytes, count of bytes not kept).
    A ``.nii.gz`` is inflated to its end here, so that every member's CRC-32 and size are checked:
    nibabel stops reading after the data, and a flipped byte in the stream was coded as the file's
    values, then written back as a sound ``.nii.gz`` (the damage laundered)."""
    gz = path.name.lower().endswith(".gz")
    if not gz and path.stat().st_size == end:
        return b"", 0  # the data ends the file, the usual case
    opener = gzip.open if gz else open
    try:
        with opener(path, "rb") as f:
            while end - f.tell() > 0:  # to the data's end (the gzip module checks nothing on a seek)
                if not f.read(min(end - f.tell(), 1 << 22)):
                    break
            tail = f.read(TRAILING_KEPT + 1)
            more = len(tail)
            while chunk := f.read(1 << 22):  # the end of the stream: the last member's CRC and size
                more += len(chunk)
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise InputError(f"{path}: damaged gzip stream ({e}): its values cannot be trusted "
                         "(gzip -t reports it too)") from None
    return (tail, 0) if more <= TRAILING_KEPT else (b"", more)


def _raw_header(path: Path, hdr: Any, offset: int) -> tuple[bytes, bytes]:
    """The file's header bytes and the bytes between them and the data."""
    size = int(hdr["sizeof_hdr"])
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as f:
        head = f.read(max(size, offset))
    return head[:size], head[size:offset]


def _to_volume_layout(raw: np.ndarray, path: Path) -> tuple[np.ndarray, bool]:
    if raw.ndim < 2:
        raise InputError(f"{path}: NIfTI image has {raw.ndim} dimension(s), need at least 2")
    rgb = raw.dtype.names is not None
    arr = raw.transpose(tuple(reversed(range(raw.ndim))))
    if rgb:  # RGB24 / RGBA32: one uint8 per field, channels last
        arr = np.ascontiguousarray(arr).view(np.uint8).reshape(arr.shape + (len(raw.dtype.names),))
    elif arr.dtype.byteorder not in ("=", "|"):
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return np.ascontiguousarray(arr), rgb


def _direction(affine: np.ndarray) -> tuple[tuple[float, ...], ...] | None:
    cols = affine[:3, :3].T
    norms = np.linalg.norm(cols, axis=1)
    if np.any(norms == 0):
        return None
    return tuple(tuple(float(v) for v in c / n) for c, n in zip(cols, norms, strict=True))


def _finite_or_none(value: Any) -> float | None:
    v = float(value)
    return v if math.isfinite(v) else None


def _nifti_metadata(
    hdr: Any, head: bytes, extra: bytes, disk_dtype: np.dtype, offset: int
) -> dict[str, Any]:
    disk = _header_from_bytes(head)
    return {
        "version": _HEADER_SIZES.get(len(head), 1),
        "header_b64": base64.b64encode(head).decode("ascii"),
        "extra_b64": base64.b64encode(extra).decode("ascii"),
        "data_offset": offset,
        "dtype": disk_dtype.str if disk_dtype.names is None else "RGB",
        # as in the file: nibabel moves the scaling out of the loaded header
        "scl_slope": _finite_or_none(disk["scl_slope"]),
        "scl_inter": _finite_or_none(disk["scl_inter"]),
        "sform_code": int(hdr["sform_code"]),
        "qform_code": int(hdr["qform_code"]),
        "xyzt_units": [str(u) for u in hdr.get_xyzt_units()],
        "descrip": hdr["descrip"].item().decode("latin-1").rstrip("\0"),
        "extensions": [
            {"code": int(e.get_code()), "size": int(e.get_sizeondisk())} for e in hdr.extensions
        ],
    }


def metadata_problem(info: Any) -> str | None:
    """What makes a ``.lvp`` header's ``metadata["nifti"]`` unfit to lay out a ``.nii`` (None: fit).

    The kept header bytes go to the output as they are, so what the record says about them
    must agree with them: the data starts where the kept bytes end and where the header's
    ``vox_offset`` says, and ``scl_slope`` / ``scl_inter`` are the header's own (as the reader
    wrote them). Anything else is a forged or damaged record."""
    if not isinstance(info, dict):
        return "not an object"
    try:
        head = base64.b64decode(info["header_b64"], validate=True)
        extra = base64.b64decode(info.get("extra_b64", ""), validate=True)
        trailing = base64.b64decode(info.get("trailing_b64", ""), validate=True)
    except (KeyError, TypeError, ValueError):
        return "header_b64 / extra_b64 / trailing_b64 are not base64"
    if len(trailing) > TRAILING_KEPT:
        return f"trailing_b64 holds {len(trailing):,} bytes, more than a reader keeps ({TRAILING_KEPT:,})"
    if len(head) not in _HEADER_SIZES:
        return f"a header of {len(head)} bytes (NIfTI-1 has 348, NIfTI-2 540)"
    offset = info.get("data_offset", 0)
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        return f"data_offset {offset!r} is not a byte offset"
    try:
        disk = _header_from_bytes(head)
        vox_offset, slope, inter = float(disk["vox_offset"]), disk["scl_slope"], disk["scl_inter"]
    except Exception as e:  # nibabel's header classes raise several kinds on odd bytes
        return f"the header cannot be parsed ({e})"
    if offset >= len(head):  # the kept bytes are written as they are, the data right after them
        if offset != len(head) + len(extra):
            return f"data_offset {offset} is not where the kept bytes end ({len(head) + len(extra)})"
        if vox_offset != offset:
            return f"data_offset {offset} differs from the header's vox_offset {vox_offset:g}"
    for key, value in (("scl_slope", slope), ("scl_inter", inter)):
        if info.get(key) != _finite_or_none(value):
            return f"{key} {info.get(key)!r} differs from the header's {float(value):g}"
    return None


# ---------------------------------------------------------------- writing


def write_nifti(volume: Volume, path: Path) -> None:
    """Write ``volume``; a volume read from NIfTI gets its own header back byte for byte."""
    info = (volume.metadata or {}).get("nifti")
    data = _kept_header_bytes(volume, info) if info else None
    try:
        with atomic_path(path) as tmp:
            if data is not None:
                _write_bytes(tmp, data)
            else:
                hdr = _kept_header(info) if info else None
                if hdr is not None and volume.affine is not None and _same(volume.affine, hdr.get_best_affine()):
                    # the affine is the header's: what was edited is the spacing, origin or direction
                    volume = dataclasses.replace(volume, affine=None)
                _write_with_nibabel(volume, tmp, path, template=hdr)
    except OSError as e:
        raise InputError(f"{path}: cannot write ({e.strerror or e})") from None


def _write_bytes(path: Path, data: bytes) -> None:
    if path.name.lower().endswith(".gz"):  # no name in the gzip header (``path`` is a temporary one)
        with open(path, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as f:
            f.write(data)
    else:
        path.write_bytes(data)


def _dicom_meta(volume: Volume) -> dict | None:
    meta = (volume.metadata or {}).get("dicom")
    return meta if volume.source_format == "dicom" and isinstance(meta, dict) else None


def _dicom_rescale(volume: Volume) -> tuple[list[float], list[float]] | None:
    """The slopes and intercepts of a DICOM series (one each where every file agrees), or None (also where
    one is not a number or a slope is 0, which no scaling can hold: ``_unusable_rescale`` says so)."""
    got = _dicom_rescale_values(volume)
    if got is None or not all(np.isfinite(got[0] + got[1])) or 0.0 in got[0]:
        return None
    return got


def _dicom_rescale_values(volume: Volume) -> tuple[list[float], list[float]] | None:
    meta = _dicom_meta(volume)
    if meta is None:
        return None
    try:
        out = []
        for key, default in (("rescale_slope", 1.0), ("rescale_intercept", 0.0)):
            v = meta.get(key)
            vals = v if isinstance(v, list) else [v]
            out.append([default if x is None else float(x) for x in vals])
    except (TypeError, ValueError, OverflowError):  # OverflowError: a 400-digit integer in a crafted header
        return None
    return out[0], out[1]


def _unusable_rescale(volume: Volume) -> bool:
    """A DICOM series whose rescale cannot be a NIfTI scaling (a slope of 0, a value that is not a number)."""
    return _dicom_rescale_values(volume) is not None and _dicom_rescale(volume) is None


def _usable_direction(direction) -> bool:
    """A 3 x 3 direction NIfTI can hold: finite, its axes not collapsed (a DICOM orientation of zeros)."""
    d = np.asarray(direction, float) if direction is not None else None
    return d is not None and d.shape == (3, 3) and bool(np.isfinite(d).all()) and abs(np.linalg.det(d)) > 1e-6


def _positions_along_normal(volume: Volume) -> np.ndarray | None:
    """Each slice's position along the slice normal (mm), for a DICOM series that has them."""
    meta = _dicom_meta(volume)
    if meta is None:
        return None
    pos, iop = meta.get("image_positions"), meta.get("image_orientation")
    try:
        pos, iop = np.asarray(pos, float), np.asarray(iop, float)
    except (TypeError, ValueError):
        return None
    if pos.ndim != 2 or pos.shape[1] != 3 or len(pos) < 3 or iop.shape != (6,):
        return None
    normal = np.cross(iop[:3], iop[3:])
    if not np.isfinite(normal).all() or np.linalg.norm(normal) < 1e-6:
        return None
    return pos @ (normal / np.linalg.norm(normal))


#: how a holder of one spacing per axis places a series' slices: (its words, what keeps each slice's own position)
_HOLDERS = {
    "nifti": ("NIfTI holds one spacing, so the file places them", "a DICOM output keeps every slice's position"),
    "layer": ("a napari layer has one spacing, so the viewer shows them",
              "each slice's position is in layer.metadata['dicom']['image_positions']"),
}


def stacking_notes(volume: Volume, holder: str = "nifti") -> list[str]:
    """Where one spacing per axis (a NIfTI file's, a napari layer's: ``holder``) misplaces a DICOM series' slices:
    positions not evenly spaced (a missing slice, a gap), or slices stacked by InstanceNumber because their
    positions are missing, repeated or in different planes (a localiser's three planes)."""
    places, keeps = _HOLDERS[holder]
    notes = []
    meta = _dicom_meta(volume)
    if meta is not None and meta.get("slice_order") in ("InstanceNumber", "unknown") and volume.n_slices > 1:
        by = "InstanceNumber" if meta["slice_order"] != "unknown" else "file order"
        notes.append(f"the slices were stacked by {by}, not by position (positions missing, repeated, or in different "
                     f"planes): {places} as parallel slices one spacing apart; check the geometry ({keeps})")
    proj = _positions_along_normal(volume)
    if proj is not None:
        steps = np.abs(np.diff(proj))
        # the spacing the file gets is the volume's (what the zooms say), else the median step
        spacing = volume.spacing[-3] if volume.spacing is not None and len(volume.spacing) >= 3 else None
        step = float(spacing) if spacing is not None and _usable_zooms([spacing]) else float(np.median(steps))
        ideal = proj[0] + (np.sign(proj[-1] - proj[0]) or 1.0) * step * np.arange(len(proj))
        off = float(np.abs(proj - ideal).max())
        if off > max(0.02, 0.01 * step):
            same = int(np.sum(steps <= 1e-6))
            how = (f"{same + 1 if same == 1 else same} slices share a position with another" if same
                   else f"the slices are not evenly spaced ({steps.min():g} to {steps.max():g} mm apart)")
            notes.append(f"{how}; {places} {step:g} mm apart and some slices are up to {off:.3g} mm from their true "
                         f"position ({keeps})")
    return notes


def conversion_notes(volume: Volume) -> list[str]:
    """What a NIfTI file written from ``volume`` cannot say that its DICOM source did: slices that
    are not evenly spaced (NIfTI has one spacing per axis: ``stacking_notes``) and a rescale that differs
    between slices (one ``scl_slope`` / ``scl_inter`` per file); and a spacing that is not positive (NIfTI
    zooms must be). The file is still written; the DICOM output (a folder or ``.dcm``) keeps both."""
    notes = stacking_notes(volume)
    rescale = _dicom_rescale(volume)
    if rescale is not None and (len(rescale[0]) > 1 or len(rescale[1]) > 1):
        slopes, inters = rescale
        notes.append(
            f"RescaleSlope / RescaleIntercept differ between slices (slope {min(slopes):g} to {max(slopes):g}, "
            f"intercept {min(inters):g} to {max(inters):g}); NIfTI holds one scaling, so the file holds the "
            "stored values unscaled (scl_slope 1, scl_inter 0): apply each slice's rescale from the DICOM output")
    if volume.spacing is not None and not _usable_zooms(volume.spacing):
        notes.append(f"the spacing {tuple(volume.spacing)} has values that are not positive numbers; NIfTI "
                     "zooms must be, so the file's spacing is the one its affine gives")
    if _unusable_rescale(volume):
        slopes, inters = _dicom_rescale_values(volume)
        notes.append(f"RescaleSlope {', '.join(f'{v:g}' for v in sorted(set(slopes)))} / RescaleIntercept "
                     f"{', '.join(f'{v:g}' for v in sorted(set(inters)))} cannot be a NIfTI scaling (a slope of 0 "
                     "or a value that is not a number): the file holds the stored values unscaled")
    if volume.direction is not None and volume.affine is None and not _usable_direction(volume.direction):
        notes.append("the orientation is not usable (its axes are zero, collapsed or not numbers): the file's "
                     "affine takes the image axes as they are, with the spacing and origin")
    return notes


def _usable_zooms(spacing) -> bool:
    return all(math.isfinite(float(v)) and float(v) > 0 for v in spacing)


def _header_from_bytes(head: bytes) -> Any:
    import nibabel as nib

    cls = nib.Nifti2Header if len(head) == 540 else nib.Nifti1Header
    return cls(binaryblock=head, check=False)


def _kept_header(info: dict[str, Any]) -> Any:
    """The NIfTI header a volume was read with (None: none, or not readable)."""
    try:
        return _header_from_bytes(base64.b64decode(info["header_b64"]))
    except Exception:
        return None


def _same(a, b) -> bool:
    """Equal geometry (``a`` None: not given, so not changed), to the header's float32 precision."""
    if a is None:
        return True
    a, b = np.asarray(a, float), np.asarray(b, float)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-6, atol=1e-6, equal_nan=True))


def _geometry_kept(volume: Volume, hdr: Any, ndim: int) -> bool:
    """Whether ``volume``'s spacing, origin, direction and affine are still those its kept header
    gives (the reader's, ``_volume``): a volume whose geometry was edited since gets a new header."""
    affine = np.asarray(hdr.get_best_affine(), float)
    zooms = [float(z) for z in hdr.get_zooms()][:ndim]
    return (_same(volume.affine, affine) and _same(volume.spacing, list(reversed(zooms)))
            and _same(volume.origin, affine[:3, 3]) and _same(volume.direction, _direction(affine)))


def _kept_header_bytes(volume: Volume, info: dict[str, Any]) -> bytes | None:
    """The whole file from the kept header, or None when the array or its geometry no longer fit it."""
    try:
        head = base64.b64decode(info["header_b64"])
        extra = base64.b64decode(info.get("extra_b64", ""))
        offset = int(info.get("data_offset", 0))
        hdr = _header_from_bytes(head)
        disk = hdr.get_data_dtype()
    except Exception:
        return None
    arr = np.asarray(volume.array)
    shape = arr.shape[:-1] if volume.rgb else arr.shape
    if tuple(int(n) for n in hdr.get_data_shape()) != tuple(reversed(shape)):
        return None
    if not _geometry_kept(volume, hdr, len(shape)):
        return None
    if disk.names is not None:
        if not volume.rgb or arr.dtype != np.uint8 or arr.shape[-1] != len(disk.names):
            return None
        body = np.ascontiguousarray(arr).tobytes()
    else:
        if volume.rgb or arr.dtype.newbyteorder("=") != disk.newbyteorder("="):
            return None
        body = np.ascontiguousarray(arr, dtype=disk).tobytes()
    if offset < len(head) + len(extra):  # inconsistent record: let nibabel lay the file out
        return None
    try:
        trailing = base64.b64decode(info.get("trailing_b64", ""), validate=True)
    except (TypeError, ValueError):
        trailing = b""
    return head + extra + b"\0" * (offset - len(head) - len(extra)) + body + trailing


def _write_with_nibabel(volume: Volume, path: Path, shown: Path | None = None, template: Any = None) -> None:
    """``volume`` as a new NIfTI-1 file at ``path``; messages name ``shown`` (the file the user asked
    for, where ``path`` is its temporary). ``template``: the NIfTI-1 header the volume was read with,
    whose other fields (units, intent, description, form codes, scaling) the new file keeps."""
    import nibabel as nib

    shown = shown or path

    arr = np.asarray(volume.array)
    if volume.rgb:
        if arr.dtype != np.uint8 or arr.shape[-1] != 3:
            raise InputError(
                f"{shown}: NIfTI colour must be uint8 RGB, got {arr.dtype} x{arr.shape[-1]}"
            )
        rgb_t = np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")])
        arr = np.ascontiguousarray(arr).view(rgb_t)[..., 0]
    data = arr.transpose(tuple(reversed(range(arr.ndim))))
    if not isinstance(template, nib.Nifti1Header) or isinstance(template, nib.Nifti2Header):
        template = None  # none, or a NIfTI-2 header, which does not fit a NIfTI-1 file
    try:
        img = nib.Nifti1Image(data, _affine_for(volume), header=template)
        if volume.spacing is not None and len(volume.spacing) == data.ndim and _usable_zooms(volume.spacing):
            img.header.set_zooms(tuple(reversed([float(s) for s in volume.spacing])))
        img.header.set_data_dtype(data.dtype)
        # the array holds what is stored; a DICOM series' one rescale makes its values real units
        rescale = _dicom_rescale(volume)
        if rescale is not None and len(rescale[0]) == len(rescale[1]) == 1:
            img.header.set_slope_inter(rescale[0][0], rescale[1][0])
        elif template is not None:  # the stored values with the scaling they were read with
            img.header.set_slope_inter(*(float(template[k]) if math.isfinite(float(template[k])) else d
                                         for k, d in (("scl_slope", 1.0), ("scl_inter", 0.0))))
        else:
            img.header.set_slope_inter(1.0, 0.0)
        _write_bytes(path, img.to_bytes())
    except (InputError, OSError):  # a full disk is said by ``write_nifti``, as for any file
        raise
    except Exception as e:
        raise InputError(f"{shown}: cannot write {arr.dtype} data as NIfTI ({e})") from None


def _affine_for(volume: Volume) -> np.ndarray:
    """Voxel (i, j, k) -> RAS mm for a volume that did not come from NIfTI."""
    lps = (volume.metadata or {}).get("coordinate_system") == "LPS"
    if volume.affine is not None and not lps and np.shape(volume.affine) == (4, 4) and _usable_direction(
            np.asarray(volume.affine, float)[:3, :3]):
        return np.asarray(volume.affine, dtype=np.float64)
    n_axes = volume.array.ndim - (1 if volume.rgb else 0)
    spacing = list(reversed(volume.spacing)) if volume.spacing else [1.0] * n_axes
    spacing = [s if math.isfinite(s) and s != 0 else 1.0 for s in (list(map(float, spacing)) + [1.0, 1.0, 1.0])[:3]]
    # geometry of another shape than a reader gives (a Volume made by hand), or not finite, is left out, not an error
    direction = np.asarray(volume.direction, float) if _usable_direction(volume.direction) else np.eye(3)
    affine = np.eye(4)
    affine[:3, :3] = direction.T * np.asarray(spacing, float)
    if volume.origin is not None:
        origin = np.asarray(volume.origin, float).reshape(-1)[:3]
        affine[: len(origin), 3] = np.where(np.isfinite(origin), origin, 0.0)
    if lps:  # DICOM patient LPS -> NIfTI RAS
        affine[:2, :] *= -1
    return affine
