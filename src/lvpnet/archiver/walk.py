"""Discovering what an archive run has to do: the items of a SOURCE tree.

An *item* becomes one output under DEST:

- ``dicom``: a DICOM series, its image files grouped by SeriesInstanceUID wherever they lie under
  one study folder (a top-level folder of SOURCE; files directly in SOURCE form their own study);
  written as ``DEST/<the files' common folder>/series-<UID>.lvp`` and restored file by file. Files
  of one UID that cannot form one volume (other rows, columns, samples, bits, signedness or
  photometric interpretation; several multi-frame files) become several items,
  ``series-<UID>-<hash of the first file's path>.lvp``;
- ``nifti`` / ``numpy``: one ``.nii``, ``.nii.gz`` or ``.npy`` file, written as ``<its name>.lvp``
  beside where it lies;
- ``other``: any other regular file (DICOMDIR, reports, notes, a DICOM object without pixels or with
  a pixel layout lvpnet does not code, a 1-bit SEG; a damaged DICOM file, whose header pydicom cannot
  read or whose pixel data is cut short, listed as such in ``Plan.damaged``; a lossy one, listed in
  ``Plan.lossy``, unless the run codes lossy sources' values; a ``.npy`` array it does not
  code, 1-D or complex), copied as it is, so the restored tree is complete;
- ``link``: a symbolic link (to a file or a folder), written as ``<its name>.lvplink``, a small file
  holding where it points (never followed); restore makes the same link.

Names are deterministic and cannot collide: series outputs end in ``<digits>.lvp`` (UIDs hold
digits and dots only; any other UID is hashed to ``x<hex>``) or ``dicom-<hex>.lvp``; NIfTI and
``.npy`` outputs end in ``.nii.lvp``, ``.gz.lvp`` or ``.npy.lvp``; a copied file keeps its name
unless that ends in ``.lvp``, ``.lvpcarry`` or ``.lvplink`` or is one of the ledger's own names, in which
case ``.lvpcarry`` is appended (so copies never end in ``.lvp`` or ``.lvplink`` and stay distinct from
each other).

Special files (FIFOs, sockets, devices) are never read: they are listed in the report with the reason.
"""

from __future__ import annotations

import hashlib
import math
import os
import posixpath
import re
import stat
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import is_partial_name
from ..dicom_lossy import lossy_reason
from ..errors import InputError
from ..files import kind_of
from ..io import is_dicom_file
from ..io.dicom import image_without_pixels, pixels_coded
from ..io.nifti import nifti_coded
from ..io.numpy_io import npy_coded

LEDGER_NAME = "lvpnet-ledger.sqlite"
LOCK_NAME = "lvpnet-ledger.lock"
# SQLite's journal files sit beside the ledger
RESERVED = {LEDGER_NAME, LOCK_NAME, *(LEDGER_NAME + s for s in ("-journal", "-wal", "-shm"))}
CARRY_SUFFIX = ".lvpcarry"
LINK_SUFFIX = ".lvplink"  # a symbolic link's output: a small file holding where the link points
_NOT_UTF8 = ("its name is not valid UTF-8, which the archive cannot hold: not archived; rename it "
             "(convmv -f latin1 -t utf8, say) and run again")

_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
# what io.dicom requires to be equal across the files of one series
# a .npy's or NIfTI's hint: coded, or carried as it is
_FILE_HINTS = {"numpy": ("npy", "no pixels"), "nifti": ("nifti", "no pixels")}
_LAYOUT = ("Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "PixelRepresentation", "PhotometricInterpretation")


@dataclass(frozen=True)
class SourceFile:
    rel: str  # POSIX path relative to SOURCE
    size: int
    mtime_ns: int
    # what the walk learnt from a DICOM header ("image|lossy <frames> <layout> <SeriesInstanceUID>", "no image",
    # "unreadable", "truncated <have> <need>", or "" for a file that is not DICOM): kept in the ledger, so a rerun reads the
    # header of a file again only when its size or modification time changed
    hint: str | None = ""  # None: nothing learnt to keep (a file that could not be opened)
    mode: int | None = None  # permission bits (a regular file's; None for a link)


@dataclass
class Item:
    key: str  # the output's path relative to DEST (POSIX): unique, the ledger's key
    kind: str  # "dicom", "nifti", "numpy" or "other"
    root: str  # folder (relative to SOURCE, "" for SOURCE) the DICOM record names are relative to
    sources: list[SourceFile]

    @property
    def source_bytes(self) -> int:
        return sum(s.size for s in self.sources)


@dataclass
class Plan:
    items: list[Item]
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"file", "reason"}: never read
    damaged: list[dict[str, str]] = field(default_factory=list)  # {"file", "reason"}: carried whole (other items)
    # {"file", "reason"}: what the archive cannot hold: regular files whose names are not UTF-8, files and
    # folders that cannot be read (a folder without read permission hid everything in it, unsaid): failures
    # of every run, so that a run whose exit is 0 left nothing out
    unnamed: list[dict[str, str]] = field(default_factory=list)
    lossy: list[str] = field(default_factory=list)  # lossy DICOM files (their paths), carried (other items)


def walk(source: str | os.PathLike, known: dict[str, tuple[int, int, str]] | None = None,
         carry_lossy: bool = True) -> Plan:
    """Every item under ``source`` (a folder), in a deterministic order (by output name).

    ``known``: ``{path: (size, mtime_ns, hint)}`` from the ledger; a file whose size and
    modification time are unchanged is classified from its hint without opening it.
    ``carry_lossy``: a DICOM file whose header says its pixels went through lossy compression
    (``dicom_lossy``: LossyImageCompression 01, a lossy-only transfer syntax such as JPEG baseline)
    is carried as it is (``Plan.lossy``) rather than decoded and coded again (``--allow-lossy-source``)."""
    known = known or {}
    root = Path(source)
    items: list[Item] = []
    skipped: list[dict[str, str]] = []
    damaged: list[dict[str, str]] = []
    unnamed: list[dict[str, str]] = []
    lossy: list[str] = []
    series: dict[tuple[str, str], list[tuple[SourceFile, int, str]]] = {}  # (study, uid) -> (file, frames, layout)
    def unreadable(e: OSError) -> None:  # os.walk's: a folder it cannot list
        if e.filename is not None and Path(e.filename) != root:
            unnamed.append({"file": _printable(_rel(root, Path(e.filename))), "reason": (
                f"a folder that cannot be read ({e.strerror or e}): nothing in it was archived")})
        else:
            raise InputError(f"{root}: cannot be read ({e.strerror or e})")

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):
        here = Path(dirpath)
        for name in sorted(dirnames):
            if (here / name).is_symlink():  # os.walk lists it but does not enter it: kept as a link
                link = _link_item(root, here / name, unnamed, skipped)
                if link is not None:
                    items.append(link)
        dirnames.sort()
        for name in sorted(filenames):
            path = here / name
            rel = _rel(root, path)
            try:
                rel.encode("utf-8")
            except UnicodeEncodeError:  # bytes the file system allows but no ledger or header can hold
                unnamed.append({"file": _printable(rel), "reason": _NOT_UTF8})
                continue
            try:
                st = path.lstat()
            except OSError as e:
                unnamed.append({"file": rel, "reason": f"cannot be read ({e.strerror or e}): not archived"})
                continue
            if is_partial_name(name):  # a killed lvpnet write's leftover: no one's data, and a write in DEST
                skipped.append({"file": rel, "reason": "an lvpnet temporary file (a killed write's leftover)"})
                continue  # would take its copy there for debris and remove it
            if kind_of(st.st_mode) == "link":  # kept as a link (where it points, not what): restore makes it again
                items.append(_link(SourceFile(rel, st.st_size, st.st_mtime_ns)))
                continue
            why = _not_regular(st)
            if why:
                skipped.append({"file": rel, "reason": why})
                continue
            kind = _kind(name)
            cached = known.get(rel)
            fresh = cached is not None and cached[:2] == (st.st_size, st.st_mtime_ns) and cached[2] is not None
            if kind:  # a 1-D or complex array, say, is carried as it is; the verdict from the header kept as a hint
                coded = npy_coded if kind == "numpy" else nifti_coded
                hint = cached[2] if fresh and cached[2] in _FILE_HINTS[kind] else (
                    _FILE_HINTS[kind][0] if coded(path) else "no pixels")
                # damaged (cut short, a header that does not parse): carried whole and named, as a damaged DICOM
                # file is (it failed every run, never archived); not one the archive holds a good version of,
                # whose item fails and keeps that version (a source broken after archiving)
                held = cached is not None and cached[2] == _FILE_HINTS[kind][0]
                why = _file_damage(path, kind) if hint != "no pixels" and not fresh and not held else None
                if why:
                    items.append(_other(SourceFile(rel, st.st_size, st.st_mtime_ns, None, _mode(st))))
                    damaged.append({"file": rel, "reason": why})
                    continue
                src = SourceFile(rel, st.st_size, st.st_mtime_ns, hint, _mode(st))
                items.append(_other(src) if hint == "no pixels" else
                             Item(key=rel + ".lvp", kind=kind, root=posixpath.dirname(rel), sources=[src]))
                continue
            if fresh and (cached[2].startswith("uid ") or cached[2] == "no pixels"):
                # written before hints said lossy, or before an image cut ahead of its Rows was told from a file
                # without pixels (both were "no pixels" then; "no image" now): read the header again, once
                fresh = False
            hint = cached[2] if fresh else _hint(_dicom_header(path, name))
            src = SourceFile(rel, st.st_size, st.st_mtime_ns, hint, _mode(st))
            header = _from_hint(hint)
            if header is None:
                items.append(_other(src))
            elif header == "cannot open":  # its copy fails, saying why; read again next run (no hint kept)
                items.append(_other(SourceFile(rel, st.st_size, st.st_mtime_ns, None, _mode(st))))
            elif isinstance(header, str) and header.split(" ", 1)[0] in _DAMAGED:
                # damaged (a header pydicom cannot read, pixel data cut short): carried whole, as it is, so the
                # restored tree is complete; said in every run's summary
                items.append(_other(src))
                damaged.append({"file": rel, "reason": _damage(header)})
            elif header == "no image" or not _coded(header[2]):  # from the layout: a hint cached before says it too
                items.append(_other(src))  # carried as it is: no image, or one lvpnet does not code (a 1-bit SEG)
            elif header[3] and carry_lossy:  # already compressed with loss: nothing to gain, its bytes kept as they are
                items.append(_other(src))
                lossy.append(rel)
            else:
                uid, frames, layout, _ = header
                study = rel.split("/", 1)[0] if "/" in rel else ""
                series.setdefault((study, uid), []).append((src, frames, layout))
    items.extend(_series_items(series))
    items.sort(key=lambda it: it.key)
    return Plan(items=items, skipped=skipped, damaged=damaged, unnamed=unnamed, lossy=lossy)


def _file_damage(path: Path, kind: str) -> str | None:
    """Why a ``.npy`` or NIfTI file cannot be read whole, from its header and size alone (None when it looks
    whole): a header that does not parse (a text file named .npy), data cut short, a gzip stream shorter than
    the header declares (a .nii.gz cut short). Damage inside a whole-length stream (a flipped byte: its CRC) is
    found only by reading it: that item fails, said."""
    name = ".npy" if kind == "numpy" else "NIfTI"
    try:
        size = path.stat().st_size
        if kind == "numpy":
            from ..io.numpy_io import _declared

            with open(path, "rb") as f:
                shape, dtype = _declared(f)
                start = f.tell()
            need, have = start + math.prod(shape) * dtype.itemsize, size
        else:
            import nibabel as nib

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                img = nib.load(str(path))
            need = int(img.dataobj.offset) + math.prod(img.header.get_data_shape()) * img.header.get_data_dtype().itemsize
            have = size
            if path.name.lower().endswith(".gz"):
                with open(path, "rb") as f:
                    if f.read(2) != b"\x1f\x8b":
                        return f"a {name} file named .gz that is not gzip"
                    f.seek(max(0, size - 4))
                    isize = int.from_bytes(f.read(4), "little")  # a (last) gzip member's length, mod 2**32
                if isize == need % 2**32:  # the whole file's length: the common case, said by its last 4 bytes
                    return None
                have = _gunzipped_size(path)  # else inflated to know: bytes after the data, members, or cut short
                if have is None:
                    return f"a {name} file whose gzip stream is cut short or damaged"
    except OSError:
        return None  # its copy says why
    except Exception:  # noqa: BLE001 - numpy and nibabel raise many kinds on a header that is not one
        return f"a {name} file whose header cannot be read"
    return f"a {name} file cut short ({have:,} of {need:,} bytes)" if have < need else None


def _gunzipped_size(path: Path) -> int | None:
    """The bytes a gzip file inflates to (every member), streamed; None where the stream is cut short or damaged."""
    import zlib

    n = 0
    try:
        with open(path, "rb") as f:
            d = zlib.decompressobj(31)
            while True:
                block = f.read(1 << 20)
                if not block:
                    return n if d.eof else None
                while block:
                    n += len(d.decompress(block))
                    if not d.eof:
                        break
                    block = d.unused_data  # the next member
                    if block:
                        d = zlib.decompressobj(31)
    except (OSError, zlib.error):
        return None


_DAMAGED = ("unreadable", "truncated", "short", "cut")  # hints of damaged DICOM files (``_damage`` says each)


def _damage(header: str) -> str:
    kind, *n = header.split()
    if kind == "unreadable":
        return "a DICOM file whose header cannot be read"
    if kind == "truncated":
        return f"a DICOM file whose pixel data is cut short ({int(n[0]):,} of {int(n[1]):,} bytes)"
    if kind == "short":
        return f"a DICOM file whose pixel data holds {int(n[0]):,} of the {int(n[1]):,} bytes its image needs"
    if header == "cut header":
        return "a DICOM image header without its pixel data (a copy cut short?)"
    return "a DICOM file whose compressed pixel data is cut short (no end to its frames)"


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def _printable(rel: str) -> str:
    """A name for the report: undecodable bytes shown as \\xNN, so the file can be found (U+FFFD hid which)."""
    return rel.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _in(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def _mode(st: os.stat_result) -> int:
    return stat.S_IMODE(st.st_mode) & 0o777  # permission bits only: no set-user-ID on a copy


def _not_regular(st: os.stat_result) -> str | None:
    what = kind_of(st.st_mode)
    if what == "file":
        return None
    return "symbolic link (not followed)" if what == "link" else f"{what} (not read)"


def _kind(name: str) -> str:
    low = name.lower()
    if low.endswith(".npy"):
        return "numpy"
    if low.endswith((".nii", ".nii.gz")):
        return "nifti"
    return ""


def _other(src: SourceFile) -> Item:
    name = posixpath.basename(src.rel)
    key = src.rel
    if name.lower().endswith((".lvp", CARRY_SUFFIX, LINK_SUFFIX)) or src.rel in RESERVED:
        key += CARRY_SUFFIX
    return Item(key=key, kind="other", root=posixpath.dirname(src.rel), sources=[src])


def _link(src: SourceFile) -> Item:
    """A symbolic link (to a file or a folder, inside SOURCE or not: a datalad or git-annex dataset holds
    every image as one): its output holds where it points; restore makes the same link."""
    return Item(key=src.rel + LINK_SUFFIX, kind="link", root=posixpath.dirname(src.rel), sources=[src])


def _link_item(root: Path, path: Path, unnamed: list, skipped: list) -> Item | None:
    """``_link`` of a link to a folder, which os.walk lists among the folders."""
    rel = _rel(root, path)
    try:
        rel.encode("utf-8")
        st = path.lstat()
    except UnicodeEncodeError:
        unnamed.append({"file": _printable(rel), "reason": _NOT_UTF8})
        return None
    except OSError as e:
        skipped.append({"file": rel, "reason": f"cannot be read ({e.strerror or e})"})
        return None
    return _link(SourceFile(rel, st.st_size, st.st_mtime_ns))


def _dicom_header(path: Path, name: str):
    """None (not DICOM), "unreadable", "no image" (no pixels: an SR, a plan), a damaged file's hint (``_DAMAGED``, ``_pixels_cut``), or
    (SeriesInstanceUID, number of frames, pixel layout: what must match for files to stack into one volume,
    whether the header says the pixels are lossy)."""
    if not (name.lower().endswith(".dcm") or is_dicom_file(path)):
        return None
    import pydicom

    try:
        f = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except OSError:  # not its content's fault (permissions, say): the copy task says why, and nothing is cached
        return "cannot open"
    try:
        with warnings.catch_warnings(), f:
            warnings.simplefilter("ignore")  # pydicom warns about every oddity of real files
            ds = pydicom.dcmread(f, force=True, stop_before_pixels=True)  # f stops at the pixel data
            size = os.fstat(f.fileno()).st_size
            cut = _pixels_cut(f, ds, size)
            if cut == "none" and image_without_pixels(ds):  # an image header, its pixels gone (cut before them)
                return "cut header"
            if cut == "none" or "Rows" not in ds:
                return "no image"
            if cut:
                return cut
            uid = str(ds.get("SeriesInstanceUID", "") or "")
            frames = int(ds.get("NumberOfFrames", 1) or 1)
            layout = "/".join(str(ds.get(k, "")) for k in _LAYOUT).replace(" ", "_")
            meta = getattr(ds, "file_meta", None)
            ts = str(meta.get("TransferSyntaxUID", "") or "") if meta is not None else ""
            # from the header alone (a JPEG 2000 codestream's own lossy mark is for the task to read)
            lossy = lossy_reason(ds, ts, None) is not None
    except Exception:  # damaged headers surface as many kinds of pydicom errors
        return "unreadable"
    return uid, frames, layout, lossy


def _pixels_cut(f, ds, size: int) -> str:  # noqa: C901 - one element's layouts, in order
    """At the pixel data element (where ``dcmread(stop_before_pixels=True)`` left ``f``): "none" when there
    is none (no PixelData element: no image lvpnet codes), "truncated HAVE NEED" when its declared length
    runs past the end of the file (a copy cut short), else ""."""
    meta = getattr(ds, "file_meta", None)
    if meta is not None and str(meta.get("TransferSyntaxUID", "")) == "1.2.840.10008.1.2.1.99":
        # deflated: the file's bytes are not the dataset's, so read it whole (values deferred) instead
        import pydicom

        full = pydicom.dcmread(f.name, force=True, defer_size=1024)
        return "" if "PixelData" in full else "none"
    _, little = ds.original_encoding
    start = f.tell()
    head = f.read(12)
    order = "<" if little is not False else ">"
    if len(head) < 8 or struct.unpack(order + "HH", head[:4]) != (0x7FE0, 0x0010):
        return "none"
    # the element as written, whatever the transfer syntax claims (pydicom reads a file that says explicit VR
    # and is implicit, and so must this): two capital letters after the tag are a VR
    if not (head[4:6].isalpha() and head[4:6].isupper()):
        (length,) = struct.unpack(order + "I", head[4:8])
        head = head[:8]
    elif head[4:6] in (b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"UN", b"UT", b"SQ", b"UC", b"UR") and len(head) == 12:
        (length,) = struct.unpack(order + "I", head[8:12])
    else:  # a short-form VR: a 16-bit length
        (length,) = struct.unpack(order + "H", head[6:8])
        head = head[:8]
    have = size - start - len(head)
    if length == 0xFFFFFFFF:  # encapsulated frames: the sequence delimiter that ends them must be there
        return "" if _delimiter_after(f, start + len(head), size, order) else "cut encapsulated"
    if have < length:
        return f"truncated {have} {length}"
    need = _image_bytes(ds)
    return f"short {length} {need}" if need is not None and length < need else ""


_DELIMITER_TAIL = 64 << 10  # bytes from the end of a file searched for its encapsulated pixel data's end


def _delimiter_after(f, start: int, size: int, order: str) -> bool:
    """Whether the encapsulated pixel data that starts at ``start`` ends with its sequence delimiter
    (FFFE,E0DD) within the file: a copy cut short loses it. The file's last 8 bytes, where it nearly always
    is, else its last 64 KiB (trailing padding); pixel data followed by more than that would read as cut,
    and be carried whole."""
    mark = struct.pack(order + "HHI", 0xFFFE, 0xE0DD, 0)
    for tail in (len(mark), _DELIMITER_TAIL):
        begin = max(start, size - tail)
        f.seek(begin)
        if mark in f.read(size - begin):
            return True
    return False


def _image_bytes(ds) -> int | None:
    """The bytes a native pixel data element must hold for the image its header declares, or None where
    the header does not say (a short element is a file damaged before it was copied: lvpnet reads it as
    'pixel data truncated')."""
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        spp, bits = int(ds.get("SamplesPerPixel", 1) or 1), int(ds.BitsAllocated)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (AttributeError, TypeError, ValueError):
        return None
    meta = getattr(ds, "file_meta", None)
    ts = str(meta.get("TransferSyntaxUID", "") or "") if meta is not None else ""
    if ts not in ("", "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2") or min(rows, cols, spp, bits) < 1:
        return None  # compressed (deflated whole), or nonsense the task will name
    if spp == 3 and str(ds.get("PhotometricInterpretation", "")).strip().endswith("_422"):
        spp = 2  # two chroma samples shared by each pair of pixels: 2 bytes a pixel at 8 bits
    return (rows * cols * spp * frames * bits + 7) // 8


def _coded(layout: str) -> bool:
    """Whether lvpnet codes the pixels of a file of this ``_LAYOUT`` string (``io.dicom.pixels_coded``)."""
    fields = dict(zip(_LAYOUT, layout.split("/")))
    return pixels_coded({k: fields.get(k) or None for k in ("SamplesPerPixel", "BitsAllocated")})


def _hint(header) -> str:
    if header is None:
        return ""
    if isinstance(header, str):
        return header
    uid, frames, layout, lossy = header
    # the UID last: it may hold anything, spaces included
    return f"{'lossy' if lossy else 'image'} {frames} {layout} {uid}"


def _from_hint(hint: str):
    if not hint:
        return None
    if hint.startswith(("image ", "lossy ")):
        kind, frames, layout, uid = hint.split(" ", 3)
        return uid, int(frames), layout, kind == "lossy"
    return hint


def _series_items(series: dict[tuple[str, str], list[tuple[SourceFile, int, str]]]) -> list[Item]:
    out = []
    for (_study, uid), members in series.items():
        tag = uid if _UID.fullmatch(uid) and len(uid) <= 64 else ("x" + _hash(uid) if uid else "")
        by_layout: dict[str, list[tuple[SourceFile, int]]] = {}
        for f, n, layout in members:
            by_layout.setdefault(layout, []).append((f, n))
        split = len(by_layout) > 1  # one UID, files that do not stack: one item per layout
        for same in by_layout.values():
            files = [f for f, _ in same]
            # a series of several multi-frame files is not one volume (lvpnet reads one such file
            # at a time), and files without a series UID belong to no series: one item per file
            alone = not tag or (len(files) > 1 and any(n > 1 for _, n in same))
            for group in [[f] for f in files] if alone else [files]:
                folder = _common_folder([f.rel for f in group])
                if not tag:
                    name = f"dicom-{_hash(group[0].rel)}.lvp"
                elif alone or split:
                    name = f"series-{tag}-{_hash(group[0].rel)}.lvp"
                else:
                    name = f"series-{tag}.lvp"
                out.append(Item(key=_in(folder, name), kind="dicom", root=folder,
                                sources=sorted(group, key=lambda f: f.rel)))
    return out


def _common_folder(rels: list[str]) -> str:
    dirs = [posixpath.dirname(r) for r in rels]
    if any(d == "" for d in dirs):
        return ""
    return posixpath.commonpath(dirs)
