"""DICOM archive: every file of a DICOM input, restorable from the ``.lvp`` byte for byte.

The pixel values travel through the slice codec like any volume; everything
else of each source file travels in one container blob per file, a *file
record* (format in docs/FORMAT.md, "DICOM archive"):

- an image file whose transfer syntax is uncompressed (implicit VR little
  endian, explicit VR little or big endian) is kept as its own bytes with the
  pixel data cut out; the cut-out bytes are serialised again from the decoded
  array on restore (dtype and byte order, planar configuration, YBR_FULL_422
  packing, 8-bit OW byte swapping), so the file comes back byte-identical;
- an image file whose pixel data is compressed (RLE, JPEG-LS, JPEG 2000, JPEG
  lossless, deflate, encapsulated uncompressed) is rewritten once, at compress
  time, as Explicit VR Little Endian: the transfer syntax UID, the pixel data
  element (native, not encapsulated: OB for 8-bit, OW otherwise, padded to an
  even length with a zero byte), no extended offset table, and
  PhotometricInterpretation only where the decoder changed the colour space
  (YBR_RCT / YBR_ICT / YBR_FULL(_422) decoded to RGB by JPEG 2000 or JPEG),
  and for a lossy source (``--allow-lossy-source``) LossyImageCompression
  "01" with its method, since the old transfer syntax said so; every other
  element is kept as it was. That rewritten file is then archived
  like an uncompressed one and comes back byte-identical to *it*;
- anything that cannot be rebuilt exactly (checked at compress time for every
  file) is kept whole, zstd-compressed, as are the folder's other files
  (DICOMDIR, structured reports, text): nothing is ever dropped silently.

Every record carries the SHA-256 of the file it restores; restoring checks it.
Lossy sources (see :mod:`lvpnet.dicom_lossy`) are refused unless allowed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import struct
import warnings
import zlib
from collections.abc import Generator, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from .errors import DamagedError, InputError
from .progress import Progress, run
from .volume import Volume

ARCHIVE_VERSION = 1
RECORD_MAGIC = b"LVPDCM"
RECORD_VERSION = 1
_PREFIX = struct.Struct("<6sBBI")  # magic, record version, flags (0), JSON length

_IMPLICIT_LE = "1.2.840.10008.1.2"
_EXPLICIT_LE = "1.2.840.10008.1.2.1"
_EXPLICIT_BE = "1.2.840.10008.1.2.2"
_NATIVE = (_IMPLICIT_LE, _EXPLICIT_LE, _EXPLICIT_BE)
_PIXEL_DATA = 0x7FE00010
_OFFSET_TABLES = (0x7FE00001, 0x7FE00002)  # extended offset table and its lengths
_UNDEFINED = 0xFFFFFFFF


# ---------------------------------------------------------------- questions about a volume / header


def archive_of(metadata: dict | None) -> dict | None:
    """The archive summary of a Volume's metadata (or a header's ``source.metadata``), or None."""
    dicom = (metadata or {}).get("dicom") or {}
    arch = dicom.get("archive") if isinstance(dicom, dict) else None
    return arch if isinstance(arch, dict) else None


def info_fields(metadata: dict | None, lvp_bytes: int | None = None) -> dict[str, Any]:
    """What ``lvpnet info`` says about the DICOM files a ``.lvp`` restores; with the ``.lvp``'s size, also
    ``dicom_ratio``: the files' bytes over it (the .lvp holds the files, headers and all)."""
    arch = archive_of(metadata)
    if arch is None:
        return {"dicom_archive": False}
    # only reports: entries of another shape are left out here (verify checks the records themselves)
    files = [f for f in _list(arch.get("files")) if isinstance(f, dict) and isinstance(f.get("name"), str)]
    left = [f for f in _list(arch.get("not_archived")) if isinstance(f, dict) and isinstance(f.get("file"), str)]
    return {
        "dicom_archive": True,
        "archived_files": len(files),  # what decompress restores: the image files and the folder's others
        "dicom_image_files": sum(1 for f in files if f.get("role") == "image"),
        "other_files": sum(1 for f in files if f.get("role") != "image"),
        "dicom_source_bytes": arch.get("source_bytes"),
        "transfer_syntax_changed": [f["name"] for f in files if f.get("transfer_syntax_changed")],
        "photometric_changed": [f["name"] for f in files if f.get("photometric_changed")],
        "carried_verbatim": [f["name"] for f in files if f.get("mode") == "verbatim"],
        "lossy_source_files": [f["name"] for f in files if f.get("lossy_source")],
        "not_archived": [f["file"] for f in left],
        **({"dicom_ratio": round(source / lvp_bytes, 4)}
           if lvp_bytes and isinstance(source := arch.get("source_bytes"), int) and source > 0 else {}),
    }


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


# ---------------------------------------------------------------- building the archive


def build_archive(volume: Volume, source: str | os.PathLike, *, allow_lossy_source: bool = False,
                  carry_lossy: bool = False) -> Volume:
    """``volume`` (read from ``source`` by :func:`lvpnet.io.read`) with one file record per source file.
    A lossy source file is refused unless ``allow_lossy_source``; with ``carry_lossy`` (``lvpnet archive``)
    it is kept whole instead (its record holds the file, ``carried_lossy``)."""
    return run(iter_build_archive(volume, source, allow_lossy_source=allow_lossy_source, carry_lossy=carry_lossy))


def iter_build_archive(
    volume: Volume, source: str | os.PathLike, *, allow_lossy_source: bool = False, carry_lossy: bool = False
) -> Generator[Progress, None, Volume]:
    """Generator form of :func:`build_archive` (yields one progress step per file)."""
    meta = (volume.metadata or {}).get("dicom")
    if volume.source_format != "dicom" or not isinstance(meta, dict):
        raise InputError(f"{source}: not a DICOM input")
    source = Path(source)
    root = source if source.is_dir() else source.parent
    images = list(meta["files"])
    # files that are not DICOM images are carried whole; what was not read at all (FIFOs,
    # devices, links not followed) is only listed in not_archived
    others = [s["file"] for s in meta.get("skipped_files", []) if s.get("archived", True)]
    unread = {s["file"]: s["reason"] for s in meta.get("skipped_files", []) if not s.get("archived", True)}
    frames_per_file = list(meta["frames_per_file"])
    starts = np.concatenate([[0], np.cumsum(frames_per_file)[:-1]]).astype(int).tolist()
    flat = volume.array.reshape((-1,) + volume.slice_shape)
    if sum(frames_per_file) != flat.shape[0]:
        raise InputError(f"{source}: {flat.shape[0]} frames read but the files hold {sum(frames_per_file)}")

    for rel in [*images, *others]:  # a name the archive cannot restore is the input's problem, said first (exit 2)
        try:
            safe_name(rel)
        except UnsafeName as e:
            why = ("a backslash in its name, a folder separator on Windows" if "\\" in rel else
                   str(e).removeprefix("DICOM file record with "))
            raise InputError(f"{root / rel}: {why}, which an archive does not restore: rename it") from None
    records: list[dict] = []
    bodies: list[bytes] = []
    summary: list[dict] = []
    total = len(images) + len(others)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about every oddity of real files
        for i, rel in enumerate(images):
            data = _read(root, rel)
            rec, body, entry = _image_record(
                data, rel, root / rel, flat[starts[i] : starts[i] + frames_per_file[i]], starts[i], allow_lossy_source,
                carry_lossy,
            )
            records.append(rec)
            bodies.append(body)
            summary.append(entry)
            yield Progress("archive", i + 1, total)
    for j, rel in enumerate(others):
        data = _read(root, rel)
        records.append(_file_header(rel, "other", data))
        bodies.append(data)
        summary.append({"name": rel, "role": "other", "mode": "verbatim", "size": len(data)})
        yield Progress("archive", len(images) + j + 1, total)

    blobs = _encode_records(records, bodies)
    archive = {
        "version": ARCHIVE_VERSION,
        "record_format": f"{RECORD_MAGIC.decode()} {RECORD_VERSION}",
        "files": summary,
        "not_archived": _not_archived(source, root, set(images) | set(others), unread),
        "source_bytes": sum(e["source_size"] if "source_size" in e else e["size"] for e in summary),
    }
    metadata = dict(volume.metadata)
    metadata["dicom"] = {**meta, "archive": archive}
    elements = meta.get("elements")
    patch = elements_patch(_first_elements(blobs), elements[0]) if isinstance(elements, list) and elements and images \
        else None
    if patch is not None:
        # every file's whole header is in its record, the first file's too, and it gives back these elements,
        # or, from a file rewritten out of a compressed transfer syntax, these but for a few (the transfer
        # syntax UID, the meta group's length): the JSON header does not hold them twice (4-7 kB for one
        # ultrasound frame, a third of its .lvp); LvpFile.metadata reads them back from the record
        del metadata["dicom"]["elements"]
        if patch:  # a key of its own: a reader that knows no patch shows no elements rather than the rewrite's
            metadata["dicom"]["elements_in_record_patched"] = 0
            metadata["dicom"]["elements_patch"] = patch
        else:
            metadata["dicom"]["elements_in_record"] = 0
    elif isinstance(elements, list) and len(elements) > 1:
        # every file's whole header is in its record: the JSON header keeps the first file's only
        metadata["dicom"]["elements"] = elements[:1]
        metadata["dicom"]["elements_scope"] = "first file only; every file's header is in its DICOM file record"
    out = Volume(
        array=volume.array,
        rgb=volume.rgb,
        spacing=volume.spacing,
        origin=volume.origin,
        direction=volume.direction,
        affine=volume.affine,
        source_format=volume.source_format,
        metadata=metadata,
        blobs=blobs,
    )
    # the records must restore every file from the very array that will be coded
    for k, (name, data) in enumerate(_iter_restore(out, limited=False)):  # built here, from files already read
        if _sha(data) != records[k]["sha256"]:
            raise InputError(f"{name}: internal error: the archive would not restore this file exactly")
    return out


def _read(root: Path, rel: str) -> bytes:
    from .files import read_bytes

    return read_bytes(root / rel)  # a regular file only: what the reader saw could have been swapped


def _not_archived(source: Path, root: Path, taken: set[str], unread: dict[str, str]) -> list[dict[str, str]]:
    if not source.is_dir():
        return []
    left = [{"file": rel, "reason": reason} for rel, reason in unread.items()]
    listed = taken | set(unread)
    for dirpath, dirnames, filenames in os.walk(root):  # links to folders are not walked
        dirnames.sort()
        for name in sorted(filenames):
            rel = (Path(dirpath) / name).relative_to(root).as_posix()
            if rel not in listed:
                left.append({"file": rel, "reason": "another series"})
    return left


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_header(rel: str, role: str, target: bytes) -> dict:
    return {"name": rel, "role": role, "size": len(target), "sha256": _sha(target), "pixel": None}


def _image_record(
    data: bytes, rel: str, path: Path, frames: np.ndarray, start: int, allow_lossy: bool, carry_lossy: bool = False
) -> tuple[dict, bytes, dict]:
    """(record header, body before compression, summary entry) of one image file."""
    import pydicom

    from .dicom_lossy import lossy_reason
    from .io import dicom as dcm

    ds = pydicom.dcmread(io.BytesIO(data), force=True)
    raw = _raw_pixel_element(ds)
    ts = dcm._transfer_syntax(ds)
    entry: dict[str, Any] = {"name": rel, "role": "image", "source_transfer_syntax": ts, "frames": int(frames.shape[0])}
    target = data
    if ts in _NATIVE:
        reason = lossy_reason(ds, ts, None)
    else:
        fmt = dcm._format(ds, path)
        encapsulated = pydicom.uid.UID(ts).is_encapsulated
        codestreams = dcm._encapsulated_frames(ds.PixelData, fmt, ds, path, ts) if encapsulated else None
        reason = lossy_reason(ds, ts, codestreams)
    if reason is not None:
        if not allow_lossy and carry_lossy:  # the file whole, byte for byte: nothing lossless improves on it
            entry.update(mode="verbatim", transfer_syntax=ts, size=len(data), lossy_source=reason, carried_lossy=True)
            return _file_header(rel, "image", data), data, entry
        if not allow_lossy:
            raise InputError(
                f"{rel}: lossy source ({reason}); an archive cannot be better than its source. "
                "Pass --allow-lossy-source to store the decoded values anyway"
            )
        entry["lossy_source"] = reason

    if ts not in _NATIVE:
        rewritten = _rewrite_native(data, ds, frames, path, ts, entry)
        if rewritten is None:  # cannot be rewritten exactly: keep the source file whole
            entry.update(mode="verbatim", transfer_syntax=ts, size=len(data))
            return _file_header(rel, "image", data), data, entry
        target = rewritten
        entry.update(transfer_syntax=_EXPLICIT_LE, transfer_syntax_changed=True, source_size=len(data),
                     source_sha256=_sha(data))
        ds = pydicom.dcmread(io.BytesIO(target), force=True)
        raw = _raw_pixel_element(ds)
    else:
        entry["transfer_syntax"] = ts
    entry["size"] = len(target)

    header = _file_header(rel, "image", target)
    spec = _pixel_spec(ds, raw, ts if ts in _NATIVE else _EXPLICIT_LE, start, int(frames.shape[0]))
    if spec is not None:
        pixels = _serialise(frames, spec)
        off = spec["offset"]
        if target[off : off + len(pixels)] == pixels:
            spec["length"] = len(pixels)
            header["pixel"] = spec
            entry["mode"] = "rebuild"
            return header, target[:off] + target[off + len(pixels) :], entry
    entry["mode"] = "verbatim"
    return header, target, entry


def _raw_pixel_element(ds: Any) -> Any:
    """The pixel data element as pydicom read it, before any conversion: its ``value_tell``
    is the value's offset in the file. None when pydicom no longer exposes it (the file is
    then kept whole)."""
    elem = getattr(ds, "_dict", {}).get(_PIXEL_DATA)
    return elem if elem is not None and hasattr(elem, "value_tell") else None


def _pixel_spec(ds: Any, raw: Any, ts: str, start: int, n_frames: int) -> dict | None:
    """How the pixel data value of a native file is serialised from the array (None: unknown)."""
    if raw is None or getattr(raw, "value_tell", None) is None or raw.length == _UNDEFINED:
        return None
    try:
        ba = int(ds.BitsAllocated)
        pr = int(ds.get("PixelRepresentation", 0) or 0)
        spp = int(ds.get("SamplesPerPixel", 1) or 1)
        planar = int(ds.get("PlanarConfiguration", 0) or 0)
    except (TypeError, ValueError, AttributeError):
        return None
    if ba not in (8, 16, 32):
        return None
    pi = str(ds.get("PhotometricInterpretation", "") or "").strip()
    big = ts == _EXPLICIT_BE
    return {
        "offset": int(raw.value_tell),
        "frame_start": start,
        "frames": n_frames,
        "dtype": np.dtype(f"{'i' if pr else 'u'}{ba // 8}").newbyteorder(">" if big else "<").str,
        "layout": _layout(spp, pi, planar),
        "swap16": bool(big and ba == 8 and raw.VR == "OW"),
    }


def _layout(spp: int, photometric: str, planar: int) -> str:
    if spp == 3 and photometric == "YBR_FULL_422":
        return "ybr422"
    return "planar" if spp == 3 and planar == 1 else "interleaved"


def _serialise(frames: np.ndarray, spec: dict) -> bytes:
    """The pixel data bytes of ``frames`` (``(n, rows, cols[, 3])``) as the record says."""
    layout = spec["layout"]
    if layout == "planar":
        frames = frames.transpose(0, 3, 1, 2)
    elif layout == "ybr422":  # Y0 Y1 Cb Cr for each pair of pixels (chroma of the even column)
        q = np.empty(frames.shape[:2] + (frames.shape[2] // 2, 4), frames.dtype)
        q[..., 0] = frames[..., 0::2, 0]
        q[..., 1] = frames[..., 1::2, 0]
        q[..., 2] = frames[..., 0::2, 1]
        q[..., 3] = frames[..., 0::2, 2]
        frames = q
    elif layout != "interleaved":
        raise DamagedError(f"unknown pixel layout {layout!r} in a DICOM file record")
    out = np.ascontiguousarray(frames, dtype=np.dtype(spec["dtype"])).tobytes()
    if spec["swap16"]:  # 8-bit samples in big-endian 16-bit words
        even = len(out) - len(out) % 2
        out = np.frombuffer(out[:even], "<u2").byteswap().tobytes()
    return out


def _rewrite_native(data: bytes, ds: Any, frames: np.ndarray, path: Path, ts: str, entry: dict) -> bytes | None:
    """A compressed-pixel file rewritten as Explicit VR Little Endian, or None if not exact."""
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian

    from .io import dicom as dcm

    try:
        source_pi = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
        decoded, decoded_pi = dcm._pixels(ds, path)
        if not np.array_equal(decoded, frames):
            return None
        encapsulated = pydicom.uid.UID(ts).is_encapsulated
        new_pi = source_pi
        if encapsulated and decoded_pi != source_pi:
            new_pi = decoded_pi
        elif encapsulated and source_pi == "YBR_FULL_422" and frames.ndim == 4:
            new_pi = "YBR_FULL"  # decoded at full resolution: no longer 4:2:2
        out = pydicom.dcmread(io.BytesIO(data), force=True)
        ba = int(out.BitsAllocated)
        spp = int(out.get("SamplesPerPixel", 1) or 1)
        layout = _layout(spp, new_pi, int(out.get("PlanarConfiguration", 0) or 0))
        pixels = _serialise(frames, {"layout": layout, "dtype": frames.dtype.newbyteorder("<").str, "swap16": False})
        if len(pixels) % 2:
            pixels += b"\x00"
        out.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        for tag in _OFFSET_TABLES:
            if tag in out:
                del out[tag]
        if new_pi != source_pi:
            out.PhotometricInterpretation = new_pi
            entry["photometric_changed"] = [source_pi, new_pi]
        if entry.get("lossy_source"):
            _mark_lossy(out, ts, entry)
        del out[_PIXEL_DATA]
        out.add_new(_PIXEL_DATA, "OB" if ba == 8 else "OW", pixels)
        buf = io.BytesIO()
        out.save_as(buf, enforce_file_format=False)
        rewritten = buf.getvalue()
        check = pydicom.dcmread(io.BytesIO(rewritten), force=True)
        again, again_pi = dcm._pixels(check, path)
        if again_pi != new_pi or not np.array_equal(again, frames):
            return None
        if str(check.file_meta.TransferSyntaxUID) != _EXPLICIT_LE:
            return None
        return rewritten
    except Exception:  # any surprise: the caller keeps the file whole instead
        return None


# (0028,2114)'s defined terms by the transfer syntax that did the lossy coding
_LOSSY_METHODS = {
    **{f"1.2.840.10008.1.2.4.{n}": "ISO_10918_1" for n in (50, 51, 52, 53, 54, 55, 56, 57, 59, 60, 61, 62, 63, 64, 70)},
    # lossless-only syntaxes too: a lossy codestream mislabelled under one (dicom_lossy reads them all)
    **{f"1.2.840.10008.1.2.4.{n}": "ISO_14495_1" for n in (80, 81)},
    **{f"1.2.840.10008.1.2.4.{n}": "ISO_15444_1" for n in (90, 91, 92, 93)},
    **{f"1.2.840.10008.1.2.4.{n}": "ISO_15444_15" for n in (201, 202, 203)},
    "1.2.840.10008.1.2.4.111": "ISO_18181_1",
    "1.2.840.10008.1.2.4.112": "ISO_18181_1",
}


def _mark_lossy(ds: Any, ts: str, entry: dict) -> None:
    """A lossy source rewritten as Explicit VR Little Endian says so itself: its old transfer syntax
    was the evidence, and PS3.3 C.7.6.1.1.5 requires LossyImageCompression "01" once an image has been
    through lossy compression (with the method where the transfer syntax names it)."""
    if str(ds.get("LossyImageCompression", "") or "").strip() != "01":
        ds.LossyImageCompression = "01"
        entry["lossy_flag_set"] = True
    method = _LOSSY_METHODS.get(ts)
    if method and "LossyImageCompressionMethod" not in ds:
        ds.LossyImageCompressionMethod = method


# ---------------------------------------------------------------- the record format


def _encode_records(records: list[dict], bodies: list[bytes]) -> list[bytes]:
    """Pack each record: prefix, JSON header, compressed body.

    Image records after the first rebuildable one are deflated with that
    record's body as preset dictionary (headers of one series differ in a few
    values) when that is smaller than zstd on their own.
    """
    import imagecodecs

    ref = next((k for k, r in enumerate(records) if r["pixel"] is not None), None)
    blobs = []
    for k, (rec, body) in enumerate(zip(records, bodies, strict=True)):
        coded = imagecodecs.zstd_encode(body, level=_zstd_level(len(body)))
        coding: dict[str, Any] = {"codec": "zstd"}
        if ref is not None and k != ref and rec["pixel"] is not None:
            comp = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zdict=bodies[ref])
            deflated = comp.compress(body) + comp.flush()
            if len(deflated) < len(coded):
                coded, coding = deflated, {"codec": "deflate", "dictionary": ref}
        rec = {**rec, "body": {**coding, "length": len(body), "sha256": _sha(body)}}
        head = json.dumps(rec, sort_keys=True, separators=(",", ":")).encode()
        blobs.append(_PREFIX.pack(RECORD_MAGIC, RECORD_VERSION, 0, len(head)) + head + coded)
    return blobs


def record_elements(blob, k: int) -> dict:
    """The DICOM JSON elements (``io.dicom``'s ``metadata["dicom"]["elements"]`` entry) of the file that
    record ``k`` restores, read from the record's body without rebuilding the pixel bytes: ``blob(j)``
    gives record ``j``'s bytes (a deflated body needs its dictionary's record too)."""
    import pydicom

    from . import limits
    from .io.dicom import elements_of

    def parsed(j: int) -> tuple[dict, bytes]:
        raw = blob(j)  # a dictionary out of range: IndexError, which _decode_body names as damage
        head, coded = _parse_record(raw, j)
        limits.check(head["body"]["length"], len(raw), f"{head['name']}: DICOM file record {j}")
        return head, coded

    head, coded = parsed(k)
    def dictionary(j: int) -> bytes:  # as _iter_restore's: a zstd body (so never record k itself, deflated)
        ref_head, ref_coded = parsed(j)
        if ref_head["body"]["codec"] != "zstd":
            raise DamagedError(f"DICOM file record {k}: invalid dictionary reference")
        return _decode_body(ref_head, ref_coded, j, None)

    body = _decode_body(head, coded, k, dictionary)
    spec = head.get("pixel")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns about every oddity of real files
            if spec is None:  # the whole file
                return elements_of(pydicom.dcmread(io.BytesIO(body), force=True))
            # the elements before the pixel data, then those after it (trailing padding, say)
            ds = pydicom.dcmread(io.BytesIO(body[: spec["offset"]]), force=True, stop_before_pixels=True)
            if len(body) > spec["offset"]:
                from pydicom.filereader import read_dataset

                implicit, little = ds.original_encoding
                for elem in read_dataset(io.BytesIO(body[spec["offset"] :]), implicit, little):
                    ds.add(elem)
            return elements_of(ds)
    except Exception as e:  # the record's checksum held, so this is a file pydicom cannot read back
        raise DamagedError(f"{head['name']}: DICOM file record {k}: its header cannot be read ({e})") from None


def _first_elements(blobs: list[bytes]) -> dict | None:
    """Record 0's elements as ``record_elements`` will read them, or None where they cannot be read."""
    try:
        return record_elements(lambda j: blobs[j], 0)
    except (DamagedError, InputError, IndexError):
        return None


def elements_patch(record: dict | None, source: Any) -> dict | None:
    """What turns a record's elements into the source file's: ``{tag: element, or None where the source has
    none}`` over the top-level tags that differ (``{}`` where none does), or None where the record's cannot
    be read or the patch would not be small (then the header keeps the elements themselves)."""
    if not isinstance(record, dict) or not isinstance(source, dict):
        return None
    tags = sorted(set(record) | set(source))
    patch = {t: source.get(t) for t in tags if not _same_json(record.get(t), source.get(t))}
    if not _same_json(patched_elements(record, patch), source):
        return None
    return patch if len(json.dumps(patch)) * 4 <= len(json.dumps(source)) else None


def patched_elements(record: dict, patch: dict) -> dict:
    """The source file's elements from its record's and ``elements_patch`` (FORMAT.md), in tag order."""
    merged = {**record, **patch}
    return {t: merged[t] for t in sorted(merged) if merged[t] is not None}


def _same_json(a: Any, b: Any) -> bool:
    """Equal as the JSON header stores them (a tuple and a list, an int key and its string, are alike)."""
    if a is None or b is None:
        return False
    try:
        return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    except (TypeError, ValueError):
        return False


def _zstd_level(n: int) -> int:
    return 19 if n < (1 << 20) else 12 if n < (16 << 20) else 6


def _parse_record(blob: bytes, k: int) -> tuple[dict, bytes]:
    if len(blob) < _PREFIX.size:
        raise DamagedError(f"DICOM file record {k}: too short")
    magic, version, _flags, n = _PREFIX.unpack_from(blob)
    if magic != RECORD_MAGIC:
        raise DamagedError(f"DICOM file record {k}: not a file record")
    if version > RECORD_VERSION:
        raise InputError(f"DICOM file record {k}: record version {version} is newer than this lvpnet: please upgrade")
    if _PREFIX.size + n > len(blob):
        raise DamagedError(f"DICOM file record {k}: its header runs past the record")
    try:
        head = json.loads(blob[_PREFIX.size : _PREFIX.size + n].decode())
    except (ValueError, RecursionError) as e:  # ValueError: bad JSON, bad UTF-8, a number of 4300+ digits
        raise DamagedError(f"DICOM file record {k}: unreadable header ({e})") from None
    _check_record(head, k)
    return head, blob[_PREFIX.size + n :]


_HEX64 = frozenset("0123456789abcdef")
_LAYOUTS = ("interleaved", "planar", "ybr422")


def _uint(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _sha_hex(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX64


def _check_record(head: Any, k: int) -> None:
    """Every field of a record's JSON typed and in range (docs/FORMAT.md, "File record"), before
    anything is decoded or allocated from it."""
    if not isinstance(head, dict):
        raise DamagedError(f"DICOM file record {k}: the header is not an object")
    where = f"DICOM file record {k}"
    safe_name(head.get("name"))
    if head.get("role") not in ("image", "other"):
        raise DamagedError(f"{where}: field 'role' is not image or other")
    if not _uint(head.get("size")) or not _sha_hex(head.get("sha256")):
        raise DamagedError(f"{where}: fields 'size' and 'sha256' must be a length and a SHA-256")
    body = head.get("body")
    if not (isinstance(body, dict) and body.get("codec") in ("zstd", "deflate") and _uint(body.get("length"))
            and _sha_hex(body.get("sha256"))):
        raise DamagedError(f"{where}: field 'body' needs codec zstd or deflate, a length and a SHA-256")
    if body["codec"] == "deflate" and not _uint(body.get("dictionary")):
        raise DamagedError(f"{where}: a deflate body needs a record number as 'dictionary'")
    pixel = head.get("pixel")
    if pixel is None:
        return
    if not (isinstance(pixel, dict) and all(_uint(pixel.get(key)) for key in ("offset", "length", "frame_start", "frames"))
            and pixel.get("layout") in _LAYOUTS and isinstance(pixel.get("swap16"), bool)):
        raise DamagedError(f"{where}: field 'pixel' needs offset, length, frame_start, frames, layout and swap16")
    try:
        dtype = np.dtype(pixel.get("dtype"))
    except (TypeError, ValueError, SyntaxError):
        dtype = None
    if dtype is None or dtype.kind not in "iu" or dtype.itemsize not in (1, 2, 4):
        raise DamagedError(f"{where}: field 'pixel.dtype' is not an 8, 16 or 32-bit integer type: {pixel.get('dtype')!r}")


def _decode_body(head: dict, coded: bytes, k: int, ref_body) -> bytes:
    import imagecodecs

    body = head["body"]
    name = head["name"]
    try:
        if body["codec"] == "zstd":
            # at most the declared length: a crafted frame cannot inflate past it (a zstd bomb)
            out = bytes(imagecodecs.zstd_decode(coded, out=body["length"]))
        else:
            d = zlib.decompressobj(-15, zdict=ref_body(body["dictionary"]))
            out = d.decompress(coded, body["length"] + 1)
            if len(out) <= body["length"]:
                out += d.flush(body["length"] + 1 - len(out))
    except (InputError, DamagedError):
        raise
    except Exception as e:
        raise DamagedError(f"{name}: file record cannot be decoded ({e})") from None
    if len(out) != body["length"] or _sha(out) != body["sha256"]:
        raise DamagedError(f"{name}: file record checksum mismatch (the archive is damaged)")
    return out


_NAME_MAX, _PATH_MAX = 255, 4096  # bytes, as Linux and most file systems count them
_DEPTH_MAX = 255  # folders above a file: 2,000 ("a/" * 2000, within 4096 bytes) overflowed Python's stack making them


class UnsafeName(DamagedError):
    """A record's file name that decompress would not write; ``why``: "invalid", "outside", "unwritable",
    "too long" or "too deep" (callers that judge a source tree's name, not a record's, tell them apart)."""

    def __init__(self, message: str, why: str = "invalid"):  # re-raised as type(e)(message) with the file named
        super().__init__(message)
        self.why = why


def safe_name(name: Any) -> str:
    """A record's file name, checked to stay inside the output folder and to be writable
    (verify refuses every name that decompress could not write)."""
    if not isinstance(name, str) or not name or "\\" in name or "\x00" in name:
        raise UnsafeName(f"DICOM file record with an invalid file name {name!r}", "invalid")
    p = PurePosixPath(name)
    if p.is_absolute() or any(part in ("", ".", "..") for part in name.split("/")):
        raise UnsafeName(f"DICOM file record with a file name outside the folder: {name!r}", "outside")
    try:
        raw = os.fsencode(name)
    except UnicodeError:
        raise UnsafeName(f"DICOM file record with a file name that cannot be written: {name!r}", "unwritable") from None
    short = repr(name[:60]) + ("..." if len(name) > 60 else "")
    if len(raw) > _PATH_MAX or any(len(part) > _NAME_MAX for part in raw.split(b"/")):
        raise UnsafeName(f"DICOM file record with a file name too long to write ({len(raw)} bytes): {short}", "too long")
    if name.count("/") > _DEPTH_MAX:
        raise UnsafeName(f"DICOM file record with a file name too deep to write ({name.count('/')} folders, "
                         f"at most {_DEPTH_MAX}): {short}", "too deep")
    return name


# ---------------------------------------------------------------- restoring


def iter_files(volume: Volume, lost_frames: set[int] | None = None, on_lost=None) -> Iterator[tuple[str, bytes]]:
    """Every archived file as (relative name, bytes), each checked against its SHA-256.

    Salvage (``on_lost(name, reason)`` given): a file whose record cannot be decoded, whose frames are
    among ``lost_frames`` (slices that did not decode: their values in the array mean nothing) or that
    does not match its SHA-256 is handed to ``on_lost`` instead of stopping the others."""
    if archive_of(volume.metadata) is None:
        raise InputError("this lvpnet file holds no DICOM archive")
    yield from _iter_restore(volume, lost_frames=lost_frames or set(), on_lost=on_lost)


def check_records(volume: Volume, what: str = "input") -> None:
    """The DICOM files a volume carries (``lvpnet.read`` of a .lvp made from DICOM: its file records) restore
    from its array, each to its SHA-256 (about a millisecond a file): InputError otherwise, before any coding.
    An array changed after reading (filtered, cropped, flipped) no longer holds those files' pixels: its file
    was written whole, then said to be damaged by the verify, or unreadable without it."""
    if archive_of(volume.metadata) is None:
        return
    try:
        for _ in _iter_restore(volume, limited=False):
            pass
    except DamagedError as e:
        raise InputError(f"{what}: the array does not hold the pixels of the DICOM files this volume carries "
                         f"({e}): changed since it was read? Store it without them: volume.without_files()") from None


def _check_names(names: list[str]) -> None:
    """No two records may restore to the same path, nor one file sit where another needs a folder."""
    files = set()
    for name in names:
        if name in files:
            raise DamagedError(f"{name}: two file records with the same name")
        files.add(name)
    for name in names:
        parts = name.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in files:
                raise DamagedError(f"{name}: file record inside {'/'.join(parts[:i])}, which is a file of the archive")


def _iter_restore(volume: Volume, limited: bool = True, lost_frames: set[int] = frozenset(),
                  on_lost=None) -> Iterator[tuple[str, bytes]]:
    """Every file the records restore. ``limited``: records read from a file may ask for no more memory
    than ``lvpnet.limits`` allows; the encoder's check of the records it has just built is not held to it
    (``--max-memory`` is about what a file makes lvpnet allocate)."""
    files = archive_of(volume.metadata).get("files", [])
    n_files = len(files) if isinstance(files, list) else -1
    if len(volume.blobs) != n_files:
        raise DamagedError(f"the archive lists {n_files} files but holds {len(volume.blobs)} file records")
    parsed: list[tuple[dict, bytes] | None] = []
    for k, b in enumerate(volume.blobs):  # None: a blob that failed its checksum (``LvpFile.volume(salvage=True)``)
        if b is None and on_lost is None:
            raise DamagedError(f"DICOM file record {k}: checksum mismatch (the file is damaged)")
        try:
            parsed.append(None if b is None else _parse_record(b, k))
        except DamagedError:
            if on_lost is None:
                raise
            parsed.append(None)
    _check_names([p[0]["name"] for p in parsed if p is not None])
    from . import limits

    stored = sum(len(b) for b in volume.blobs if b is not None)
    for k, p in enumerate(parsed):  # a record's body and file are allocated whole
        if limited and p is not None:
            limits.check(p[0]["body"]["length"] + p[0]["size"], stored, f"{p[0]['name']}: DICOM file record {k}")
    cache: dict[int, bytes] = {}

    def body_of(k: int) -> bytes:
        if k not in cache:
            if not 0 <= k < len(parsed) or parsed[k] is None or parsed[k][0]["body"]["codec"] != "zstd":
                raise DamagedError(f"DICOM file record {k}: invalid or damaged dictionary record")
            cache[k] = _decode_body(parsed[k][0], parsed[k][1], k, body_of)
        return cache[k]

    flat = volume.array.reshape((-1,) + volume.slice_shape)
    for k, p in enumerate(parsed):
        if p is None:  # only with on_lost: its name from the archive's list of files
            name = files[k].get("name") if isinstance(files[k], dict) else None
            on_lost(name if isinstance(name, str) else f"file record {k}", f"DICOM file record {k} is damaged")
            continue
        head, coded = p
        name = head["name"]
        try:
            data = _rebuild(head, coded, k, body_of, cache, flat, lost_frames)
        except DamagedError as e:
            if on_lost is None:
                raise
            on_lost(name, str(e))
            continue
        yield name, data


def _rebuild(head: dict, coded: bytes, k: int, body_of, cache: dict, flat: np.ndarray, lost_frames) -> bytes:
    """The file record ``k`` restores, checked against its SHA-256 (DamagedError otherwise)."""
    name = head["name"]
    body = cache[k] if k in cache else _decode_body(head, coded, k, body_of)
    spec = head.get("pixel")
    if spec:
        start, n = spec["frame_start"], spec["frames"]
        if start + n > flat.shape[0]:
            raise DamagedError(f"{name}: file record refers to frames {start}..{start + n - 1} of {flat.shape[0]}")
        if lost_frames.intersection(range(start, start + n)):
            raise DamagedError(f"{name}: its pixels are in damaged slices ({', '.join(map(str, sorted(lost_frames.intersection(range(start, start + n)))))})")
        if spec["layout"] != "interleaved" and (flat.ndim != 4 or (spec["layout"] == "ybr422" and flat.shape[2] % 2)):
            raise DamagedError(f"{name}: file record's pixel layout {spec['layout']} does not fit {flat.shape[1:]} frames")
        pixels = _serialise(flat[start : start + n], spec)
        off = spec["offset"]
        if len(pixels) != spec["length"] or off > len(body):
            raise DamagedError(f"{name}: file record does not match the pixel data")
        data = body[:off] + pixels + body[off:]
    else:
        data = body
    if len(data) != head["size"] or _sha(data) != head["sha256"]:
        raise DamagedError(f"{name}: restored file checksum (SHA-256) mismatch")
    return data


def iter_check(volume: Volume) -> Generator[Progress, None, int]:
    """Rebuild every file in memory and check its SHA-256; returns the number of files."""
    total = len(volume.blobs)
    n = 0
    for n, _ in enumerate(iter_files(volume), 1):
        yield Progress("files", n, total)
    return n


def check_output_folder(out: str | os.PathLike) -> Path:
    """Refuse an output folder that exists and is not empty (nothing is overwritten)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        what = "a folder that is not empty" if out.is_dir() else "a file"
        raise InputError(f"{out}: already exists ({what}); the output goes to a new or empty folder, never over files: choose a new folder")
    if not out.parent.is_dir():
        raise InputError(f"{out}: the folder {out.parent} does not exist")
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise InputError(f"{out}: the folder {out.parent} is not writable")
    return out


def write_folder(volume: Volume, out: str | os.PathLike) -> list[str]:
    """Write every archived file under ``out`` (a new or empty folder); returns the names.

    The files are written, each checked, into a hidden temporary folder beside
    ``out`` which is renamed to ``out`` only when all are in place: an
    interrupted or failed run leaves no partial folder under the final name.
    """
    from .atomic import clean_debris, partial_name

    out = check_output_folder(out)
    clean_debris(out.parent)  # what a killed run left beside it (one folder written: no need to spare the listing)
    tmp = partial_name(out)
    tmp.mkdir()
    names = []
    try:
        for name, data in iter_files(volume):
            p = tmp / name
            p.parent.mkdir(parents=True, exist_ok=True)
            with open(p, "xb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            names.append(name)
        check_output_folder(out)
        if out.exists():
            out.rmdir()
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return names


def write_single(volume: Volume, out: str | os.PathLike) -> str:
    """Write the one file of a single-file archive to ``out`` (atomically); returns its name."""
    from .atomic import atomic_path

    files = list(iter_files(volume))
    if len(files) != 1:
        raise InputError(f"{out}: the archive holds {len(files)} files; give a folder to write them into")
    out = Path(out)
    if out.exists():
        raise InputError(f"{out}: already exists; DICOM output never replaces a file: choose a new name")
    with atomic_path(out) as tmp:
        tmp.write_bytes(files[0][1])
    return files[0][0]
