"""The per-item work that runs on dask workers: pure functions of a plain dict, idempotent.

``archive_item`` writes one output under DEST: a ``.lvp`` through
:func:`lvpnet.compressor.compress_to_file` (a hidden ``.NAME.lvp.partial-HOST-PID-XXXXXXXX`` beside the
target, verified by decoding it, then renamed into place) or a copy of an other file through
:func:`lvpnet.atomic.atomic_path`. Run twice, it gives the same file; killed, it leaves at most a
temporary file of that pattern, which the client sweeps. When the output already exists (a run
killed after the rename but before the client recorded it), the item is *adopted* instead of
coded again if the output says it was made from exactly these source bytes: every archive
``.lvp`` carries the SHA-256 of its sources in its header (``source.metadata.lvpnet_archive``).

``restore_item`` checks an output against the SHA-256 the ledger holds, decodes it (every slice
and record checksum checked) and writes the files it restores, each atomically.

Neither function raises for a bad item: it returns ``{"ok": False, "reason": ...}`` so that one
unreadable file is recorded and the run goes on. Only the client writes the ledger.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import operator
import os
import posixpath
import shutil
import stat
import tempfile
import time
from pathlib import Path

from .. import limits
from ..errors import DamagedError, InputError, LvpnetError

_CHUNK = 1 << 20
_threads_set = False


# ---------------------------------------------------------------- worker set-up and helpers


def _setup(device: str | None, max_memory: int | None = None) -> None:
    """One torch thread per worker unless the worker's OMP_NUM_THREADS says otherwise (dask's
    nanny sets it to 1 before spawning), so N workers on N cores do not oversubscribe them. The
    memory limit the run was given (None: the rule, or the worker's LVPNET_MAX_MEMORY)."""
    global _threads_set
    limits.set_max_memory(max_memory)
    if not _threads_set:
        import torch

        torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1") or 1)))
        _threads_set = True
    if device:
        from .. import codecs

        codecs.get_codec("lvpnet").device = device  # no weights are loaded here


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with _open_regular(path) as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def _open_regular(path: Path):
    """A walked file, read only while it is still a regular file: a name swapped for a FIFO, a device
    or a symbolic link after the walk must not hang, flood or lead a worker elsewhere."""
    from ..files import open_regular

    return open_regular(path, follow_symlinks=False)


def _content_sha256(path: Path) -> str:
    """SHA-256 of what a file holds: a .gz file's uncompressed bytes (gzip headers carry a time)."""
    if not path.name.lower().endswith(".gz"):
        return sha256_file(path)
    h = hashlib.sha256()
    with gzip.open(path, "rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def _describe(e: BaseException) -> str:
    if isinstance(e, LvpnetError):
        return str(e)
    if isinstance(e, OSError):
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        return f"{where}{e.strerror or e}"
    if isinstance(e, MemoryError):
        return "out of memory"
    return f"internal error: {type(e).__name__}: {e}"


def _fail(spec: dict, e: BaseException, sources: list[dict] | None = None) -> dict:
    return {"key": spec["key"], "ok": False, "reason": _describe(e), "sources": sources, "pid": os.getpid()}


def _target(out: Path, rel: str) -> Path:
    """Where ``rel`` is written under ``out`` (restore's OUT, or archive's DEST): never through a symbolic
    link, which no archived tree has above a file (a link is a leaf), a crafted ledger would use to write out
    of OUT, and a DEST folder replaced by a link would take its outputs elsewhere."""
    path = out / _safe_rel(rel)
    for parent in reversed(path.relative_to(out).parents[:-1]):  # "a", then "a/b": every folder on the way
        if (out / parent).is_symlink():
            raise DamagedError(f"{out / parent} is a symbolic link: {rel!r} is not written through it")
    return path


def _safe_rel(rel: str) -> str:
    from ..dicom_archive import _DEPTH_MAX, UnsafeName, safe_name  # the same rule as a DICOM record's file name

    try:
        return safe_name(rel)
    except UnsafeName as e:
        short = rel[:60] + ("..." if len(rel) > 60 else "")
        if e.why == "too long":  # a name the file system takes, which the archive's suffix makes too long
            raise InputError(f"{rel}: its name in the archive would be too long to write (255 bytes a name, "
                             "4096 a path): rename it") from None
        if e.why == "too deep":
            raise InputError(f"{short}: more than {_DEPTH_MAX} folders deep, which an archive does not write: "
                             "move it up") from None
        raise DamagedError(f"the ledger names a path outside the tree: {rel!r}") from None


# ---------------------------------------------------------------- archiving


def archive_item(spec: dict) -> dict:
    """Archive one item. ``spec``: key, kind, root, sources (paths relative to ``source``), source,
    dest, codec, device, allow_lossy_source, adopt (the output exists: check it before coding)."""
    t0 = time.perf_counter()
    sources = None
    try:
        _setup(spec.get("device"), spec.get("max_memory"))
        src_root, dest = Path(spec["source"]), Path(spec["dest"])
        sources = [_stat_and_hash(src_root, rel) for rel in spec["sources"]]
        out = _target(dest, spec["key"])
        _room_for(dest, out)
        if spec["kind"] == "other":
            result = _copy_other(src_root / spec["sources"][0], out, sources[0], spec.get("adopt", False))
        elif spec["kind"] == "link":
            result = _keep_link(src_root / spec["sources"][0], out, sources[0])
        else:
            result = None
            if spec.get("adopt") and out.exists():
                result = _adopt(out, sources, spec.get("recorded_sha256"))
            if result is None:
                result = _encode(spec, src_root, out, sources)
        result.update(key=spec["key"], ok=True, sources=sources, seconds=time.perf_counter() - t0, pid=os.getpid())
        return result
    except Exception as e:  # recorded as this item's failure; the run goes on
        return _fail(spec, e, sources)


def _room_for(dest: Path, out: Path) -> None:
    """The folders above ``out`` made, and ``out`` free for a file: where SOURCE turned a file into a folder
    (or back), DEST still holds the earlier item's output under that name, kept for restore. Said so, with
    the way out, instead of "File exists" on every run."""
    for parent in reversed(out.relative_to(dest).parents[:-1]):
        if (dest / parent).exists() and not (dest / parent).is_dir():
            raise InputError(f"{dest / parent} is an earlier item's file (SOURCE's {parent.as_posix()} was a file "
                             "then, a folder now): move it out of DEST, keeping it, to archive the folder")
    if out.is_dir() and not out.is_symlink():
        raise InputError(f"{out} is a folder of earlier items (SOURCE's {out.relative_to(dest).as_posix()} was a "
                         "folder then): move it out of DEST, keeping it, to archive what is there now")
    out.parent.mkdir(parents=True, exist_ok=True)


def _stat_and_hash(root: Path, rel: str) -> dict:
    path = root / rel
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode):  # a link is where it points: never followed
        target = os.fsencode(os.readlink(path))
        return {"rel": rel, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                "sha256": hashlib.sha256(target).hexdigest(), "mode": None}
    return {"rel": rel, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256_file(path),
            "mode": stat.S_IMODE(st.st_mode) & 0o777}  # permission bits only: no set-user-ID on a copy


def _fingerprint(sources: list[dict]) -> list[dict]:
    return [{"rel": s["rel"], "sha256": s["sha256"]} for s in sources]


def _adopt(out: Path, sources: list[dict], recorded: str | None = None) -> dict | None:
    """The existing output, if it was made from exactly these source bytes and is intact (else None: code
    again). Intact: its SHA-256 is the one the ledger ``recorded`` when it was verified, or, without one
    (a run killed between the rename and the record), every slice and file record decodes and checks.
    A damaged .lvp whose header still names these sources was adopted, and its hash recorded as good."""
    from ..lvpfile import LvpFile
    from ..progress import run

    try:
        lvp = LvpFile(out)
        meta = (lvp.header.get("source") or {}).get("metadata") or {}
        mine = meta.get("lvpnet_archive") or {}
        if mine.get("sources") != _fingerprint(sources):
            return None
        sha = sha256_file(out)
        if sha != recorded:
            run(lvp.iter_verify())
        raw = lvp.n_samples * lvp.dtype.itemsize
        codecs = lvp.codec_counts()
    except LvpnetError:  # damaged or foreign: replace it
        return None
    return {"encoded": False, "adopted": True, "output_sha256": sha, "output_bytes": out.stat().st_size,
            "raw_bytes": raw, "identical": mine.get("identical"), "codecs": codecs}


def _copy_other(src: Path, out: Path, source: dict, adopt: bool) -> dict:
    from ..atomic import atomic_path

    size = source["size"]
    if adopt and out.is_file() and out.stat().st_size == size and sha256_file(out) == source["sha256"]:
        return {"encoded": False, "adopted": True, "output_sha256": source["sha256"], "output_bytes": size,
                "identical": True}
    mode = output_mode([source.get("mode")])
    with atomic_path(out, mode) as tmp:
        h = hashlib.sha256()
        with _open_regular(src) as fi, open(tmp, "wb") as fo:  # "wb": atomic_path's owner-only file, or a new one
            while block := fi.read(_CHUNK):
                h.update(block)
                fo.write(block)
        if h.hexdigest() != source["sha256"]:
            raise InputError(f"{src}: changed while it was being archived; run again")
    return {"encoded": True, "adopted": False, "output_sha256": source["sha256"], "output_bytes": size,
            "identical": True}


def output_mode(modes: list) -> int | None:
    """The permission bits of an archive's output: those of its most private source (a 600 series stays
    600), owner read and write added (the copy is the archiving user's, who must read it back to check
    and restore it); None where a source's are not known."""
    if not modes or None in modes:
        return None
    return functools.reduce(operator.and_, modes) | stat.S_IRUSR | stat.S_IWUSR


def make_private(dest: Path, key: str, modes: list) -> None:
    """The existing output ``key`` in ``dest`` given ``output_mode`` (an archive made before modes were kept
    was the umask's); never through a symbolic link."""
    mode = output_mode(modes)
    try:
        out = _target(dest, key)
        if mode is not None and out.is_file() and not out.is_symlink() and stat.S_IMODE(out.stat().st_mode) != mode:
            os.chmod(out, mode)
    except (OSError, DamagedError):  # not this user's file, or under a link: left as it is
        pass


def _keep_link(src: Path, out: Path, source: dict) -> dict:
    """A symbolic link's output: where it points, as bytes (``walk.LINK_SUFFIX``)."""
    from ..atomic import atomic_path

    target = os.fsencode(os.readlink(src))
    if hashlib.sha256(target).hexdigest() != source["sha256"]:
        raise InputError(f"{src}: changed while it was being archived; run again")
    with atomic_path(out) as tmp:
        tmp.write_bytes(target)
    return {"encoded": True, "adopted": False, "output_sha256": source["sha256"], "output_bytes": len(target),
            "identical": True}


def _restore_link(archived: Path, target: Path) -> int:
    """The link an archive's ``.lvplink`` holds, made at ``target`` under a temporary name and renamed
    (a link already there, from a restore resumed, is replaced)."""
    from ..atomic import partial_name

    if archived.stat().st_size > _LINK_MAX:  # a crafted archive's: never read whole
        raise DamagedError(f"{archived}: {archived.stat().st_size:,} bytes, longer than any link's target")
    data = archived.read_bytes()
    if not data or b"\0" in data:
        raise DamagedError(f"{archived}: not a link's target (empty, or a NUL byte in it)")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_name(target)
    os.symlink(os.fsdecode(data), tmp)
    try:
        os.replace(tmp, target)
    except IsADirectoryError:  # a folder is there: the tree had one under that name too (the archive keeps both)
        tmp.unlink(missing_ok=True)
        raise InputError(f"{target}: a folder is there, where the archive also holds a link of that name (the "
                         "source had each at some time); the folder's files are restored, the link is not") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return 0


_LINK_MAX = 4096  # PATH_MAX: the longest target a link can have


def _encode(spec: dict, src_root: Path, out: Path, sources: list[dict]) -> dict:
    from ..compressor import iter_compress_to_file
    from ..progress import run

    kind = spec["kind"]
    carried: list[dict] = []
    lossy: list[str] = []
    if kind == "dicom":
        volume, identical, restore, carried, lossy = _dicom_volume(src_root / spec["root"], spec, sources)
    else:
        volume, identical, restore = _file_volume(src_root / spec["sources"][0], kind, sources[0])
    volume.metadata = {
        **volume.metadata,
        "lvpnet_archive": {"item": spec["key"], "sources": _fingerprint(sources), "identical": identical, **restore},
    }
    result = run(iter_compress_to_file(volume, out, spec.get("codec"), verify=True,
                                       mode=output_mode([s.get("mode") for s in sources])))
    # hash what is now under the final name: that is what the ledger vouches for
    return {"encoded": True, "adopted": False, "output_sha256": sha256_file(out), "output_bytes": result.lvp_bytes,
            "raw_bytes": result.raw_bytes, "identical": identical, "codecs": result.codec_counts,
            "damaged_carried": carried, "lossy_carried": lossy}


def _dicom_volume(root: Path, spec: dict, sources: list[dict]):
    """A DICOM series as a Volume with one file record per source file (``lvpnet compress FOLDER``'s
    archive), its files named relative to ``root``."""
    from ..dicom_archive import archive_of, build_archive

    root_rel = spec["root"]
    names = [s["rel"][len(root_rel) + 1 :] if root_rel else s["rel"] for s in sources]
    volume, damaged = _read_series_carrying_damaged(root, names)
    if damaged:  # carried whole in the series' .lvp, as a folder's other files are: restored byte for byte
        dicom = volume.metadata["dicom"]
        dicom["skipped_files"] = [*dicom.get("skipped_files", []), *({"file": n, "reason": why} for n, why in damaged)]
    volume = build_archive(volume, root, allow_lossy_source=bool(spec.get("allow_lossy_source")), carry_lossy=True)
    arch = archive_of(volume.metadata)
    # the other files of the folder are items of their own here, not "not archived"
    arch["not_archived"] = []
    # the records restore each file byte for byte, except the files rewritten from a compressed syntax
    identical = not any(f.get("transfer_syntax_changed") for f in arch.get("files", []))
    carried = [{"file": posixpath.join(root_rel, n), "reason": why} for n, why in damaged]
    # a lossy file only its codestream shows (JPEG 2000), kept whole (the walk carries those its header shows)
    lossy = [posixpath.join(root_rel, f["name"]) for f in arch.get("files", []) if f.get("carried_lossy")]
    return volume, identical, {}, carried, lossy


def _read_series_carrying_damaged(root: Path, names: list[str]):
    """The series as one Volume and ``[(name, why)]`` of its files left out of it: those whose pixels
    cannot be read (truncated, say), so that one damaged file does not keep a series out of the archive.
    Only where the whole series fails and some files fail alone while the others still read as one."""
    try:
        return _read_series(root, names), []
    except InputError:
        if len(names) < 2:
            raise
        damaged = []
        for n in names:
            try:
                _read_series(root, [n])
            except InputError as e:  # said of the file by its name in the tree, as the walk says the others
                damaged.append((n, str(e).replace(f"{root / n}: ", "")))
        if not damaged or len(damaged) == len(names):
            raise
        out = {n for n, _ in damaged}
        return _read_series(root, [n for n in names if n not in out]), damaged


def _read_series(root: Path, names: list[str]):
    """The DICOM image files ``names`` (relative to ``root``, possibly in several folders) as one Volume."""
    from ..io.dicom import read_dicom_files

    return read_dicom_files(root, names)


def _file_volume(path: Path, kind: str, source: dict):
    """A NIfTI or .npy file as a Volume, with what restoring it must reproduce."""
    from .. import io as lio

    volume = lio.read(path)
    if kind == "numpy":
        head = _npy_header(path)
        restored = _npy_bytes(head, volume)
        sha = hashlib.sha256(restored).hexdigest()
        return volume, sha == source["sha256"], {
            "npy_header_b64": base64.b64encode(head).decode(), "restore_sha256": sha}
    # NIfTI: write it back as a restore would and compare what the files hold, and their bytes (a .nii.gz's gzip
    # stream is rarely the source's: named in the archive's not_identical too, not only in restore's)
    with tempfile.TemporaryDirectory(prefix="lvpnet-archive-") as tmp:
        again = Path(tmp) / path.name
        lio.write(volume, again)
        sha = _content_sha256(again)
        same_bytes = sha256_file(again) == source["sha256"]
    return volume, sha == _content_sha256(path) and same_bytes, {"restore_sha256": sha}


def _npy_header(path: Path) -> bytes:
    """The bytes of a .npy file before its data (magic, version, header dictionary, padding)."""
    import numpy as np

    with open(path, "rb") as f:
        fmt = np.lib.format
        version = fmt.read_magic(f)
        if version == (1, 0):
            fmt.read_array_header_1_0(f)
        elif version == (2, 0):
            fmt.read_array_header_2_0(f)
        else:  # 3.0 (UTF-8 field names) has no public reader
            fmt._read_array_header(f, version)
        n = f.tell()
        f.seek(0)
        return f.read(n)


def _npy_bytes(head: bytes, volume) -> bytes:
    """A .npy file from its kept header and the stored array: the source's bytes when it had nothing
    after its data."""
    import numpy as np

    info = (volume.metadata or {}).get("numpy") or {}
    arr = np.asarray(volume.array)
    if info.get("dtype"):
        arr = arr.astype(np.dtype(info["dtype"]), copy=False)
    return head + arr.tobytes(order="F" if info.get("fortran_order") else "C")


# ---------------------------------------------------------------- restoring


def restore_item(spec: dict) -> dict:
    """Restore one item into ``spec["out"]``. ``spec``: key, kind, root, dest, out, output_sha256,
    sources (relative paths, for other files and single-file items)."""
    t0 = time.perf_counter()
    try:
        if spec["kind"] != "link":  # a link is made in the client process (run.py): its settings left alone
            _setup(None, spec.get("max_memory"))
        dest, out = Path(spec["dest"]), Path(spec["out"])
        archived = dest / _safe_rel(spec["key"])
        if not archived.is_file():
            raise DamagedError(f"{archived}: missing from the archive")
        damaged = sha256_file(archived) != spec["output_sha256"]
        if damaged and spec["kind"] != "dicom":  # one file, or a copy: nothing of it can be trusted
            raise DamagedError(f"{archived}: damaged (its SHA-256 differs from the ledger's)")
        changed: list[str] = []
        if spec["kind"] == "other":
            files = [_restore_copy(archived, _target(out, spec["sources"][0]), spec["output_sha256"],
                                   _attrs(spec, spec["sources"][0]))]
        elif spec["kind"] == "link":
            files = [_restore_link(archived, _target(out, spec["sources"][0]))]
        else:  # a damaged series: salvaged, file by file (every file written matches its own SHA-256)
            files, changed = _restore_lvp(archived, spec, out)
            if damaged:
                raise _PartlyRestored(f"{archived}: damaged (its SHA-256 differs from the ledger's); every file it "
                                      "holds still matched its own SHA-256 and was restored", files)
        return {"key": spec["key"], "ok": True, "files": len(files), "bytes": sum(files), "not_identical": changed,
                "archive_bytes": archived.stat().st_size, "seconds": time.perf_counter() - t0, "pid": os.getpid()}
    except _PartlyRestored as e:  # a failure of the item, its intact files written all the same
        return {**_fail(spec, e), "files": len(e.sizes), "bytes": sum(e.sizes)}
    except Exception as e:
        return _fail(spec, e)


def _write(path: Path, data: bytes, attrs: tuple | None = None) -> int:
    from ..atomic import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, _mode_of(attrs)) as tmp:
        tmp.write_bytes(data)
        _set_times(tmp, attrs)
    return len(data)


# A restored file gets its source's (modification time in ns, permission bits): ``attrs``, None where the
# archive's ledger did not keep them (the new file's own then). ``atomic_path`` keeps its temporary file
# owner-only and gives it the source's bits as it takes its name (after the last read of it, so bits
# without the owner's read, 044 say, do not stop the restore).


def _mode_of(attrs: tuple | None) -> int | None:
    return attrs[1] if attrs else None


def _set_times(tmp: Path, attrs: tuple | None) -> None:
    if attrs and attrs[0] is not None:
        os.utime(tmp, ns=(attrs[0], attrs[0]))


def _restore_copy(archived: Path, target: Path, sha: str, attrs: tuple | None = None) -> int:
    from ..atomic import atomic_path

    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target, _mode_of(attrs)) as tmp:
        try:
            shutil.copyfile(archived, tmp)
        except OSError as e:  # a write that failed (a full OUT) named the archive's file being read
            if getattr(e, "filename2", None) is not None and os.fspath(e.filename2) == os.fspath(tmp):
                e.filename, e.filename2 = os.fspath(target), None
            raise
        if sha256_file(tmp) != sha:  # read back what was written
            raise DamagedError(f"{target}: the copy differs from the archive")
        _set_times(tmp, attrs)
    return target.stat().st_size


def _attrs(spec: dict, rel: str) -> tuple | None:
    """The restored file ``rel``'s (modification time, permission bits), from the restore's spec."""
    found = (spec.get("attrs") or {}).get(rel)
    return tuple(found) if found else None


class _PartlyRestored(DamagedError):
    """A series restored in part: the files of damaged slices are not written, the others are."""

    def __init__(self, message: str, sizes: list[int]):
        super().__init__(message)
        self.sizes = sizes


def _salvage(lvp) -> tuple:
    """Every slice of ``lvp`` that decodes (a damaged one, and those coded against it, left as zeros), and
    the numbers of those that do not."""
    import numpy as np

    array = np.zeros(lvp.shape, lvp.dtype)
    flat = array.reshape((-1,) + lvp.slice_shape)
    lost = set()
    for i in range(len(lvp)):
        try:
            flat[i] = lvp.read_slice(i)
        except DamagedError:
            lost.add(i)
    return array, lost


def _restore_lvp(archived: Path, spec: dict, out: Path) -> tuple[list[int], list[str]]:
    """The files one ``.lvp`` restores, written under ``out``: their sizes, and the names (relative to
    SOURCE) of those that come back with the same values but not the same bytes (a compressed DICOM
    rewritten as Explicit VR Little Endian, a NIfTI's bytes after its data beyond 1 MiB, a ``.nii.gz``
    whose gzip stream is not the one the source held)."""
    from .. import io as lio
    from ..container import HeaderChecksumError
    from ..dicom_archive import archive_of, iter_files
    from ..lvpfile import LvpFile
    from ..progress import run

    try:
        lvp = LvpFile(archived)
    except HeaderChecksumError:
        if spec["kind"] != "dicom":  # one file: no checksum of its own vouches for what a damaged header says
            raise
        # a series: every file its records restore is checked against its own SHA-256, so the header is read
        # anyway (one flipped byte there lost all of a series' files, every one of them intact)
        lvp = LvpFile(archived, salvage_header=True)
    lost_frames: set[int] = set()
    try:  # every slice checked against its checksum; the DICOM files are checked one by one by iter_files below
        array = run(lvp.iter_decode())
    except DamagedError:
        if spec["kind"] != "dicom":  # one file: nothing of it can be written
            raise
        array, lost_frames = _salvage(lvp)  # a series: every file whose slices are intact is restored
    # a series: a damaged file record loses its file (and those deflated against it), not the others
    volume = lvp.volume(array, check_files=spec["kind"] != "dicom", salvage=spec["kind"] == "dicom")
    mine = (volume.metadata or {}).get("lvpnet_archive") or {}
    if spec["kind"] == "dicom":
        prefix = spec["root"] + "/" if spec["root"] else ""
        only = None if spec.get("only") is None else set(spec["only"])  # files a newer item holds are its
        lost: list[str] = []
        # iter_files checks every file against the SHA-256 its record holds
        sizes = [_write(_target(out, prefix + name), data, _attrs(spec, prefix + name))
                 for name, data in iter_files(volume, lost_frames, lambda name, why: lost.append(f"{prefix}{name}"))
                 if only is None or prefix + name in only]
        lost = [name for name in lost if only is None or name in only]
        if lvp.header_damaged:  # said even where every file came back: the .lvp itself is damaged
            raise _PartlyRestored(f"{archived}: damaged: header checksum mismatch; {len(sizes)} of its files were "
                                  f"restored, each matching its SHA-256"
                                  + (f"; {len(lost)} cannot be ({', '.join(lost[:5])}"
                                     f"{' ...' if len(lost) > 5 else ''})" if lost else ""), sizes)
        if lost:
            raise _PartlyRestored(f"{archived}: damaged: {len(lost)} of its {len(lost) + len(sizes)} files cannot be "
                                  f"restored ({', '.join(lost[:5])}{' ...' if len(lost) > 5 else ''}); the other "
                                  f"{len(sizes)} were restored, each matching its SHA-256", sizes)
        files = (archive_of(volume.metadata) or {}).get("files") or []
        changed = [prefix + f["name"] for f in files if isinstance(f, dict) and f.get("transfer_syntax_changed")
                   and isinstance(f.get("name"), str) and (only is None or prefix + f["name"] in only)]
        return sizes, changed
    target = _target(out, spec["sources"][0])
    if spec["kind"] == "numpy":
        data = _npy_bytes(base64.b64decode(mine["npy_header_b64"]), volume)
        if hashlib.sha256(data).hexdigest() != mine.get("restore_sha256"):
            raise DamagedError(f"{archived}: the restored .npy differs from the one checked when archiving")
        return [_write(target, data, _attrs(spec, spec["sources"][0]))], (
            [] if mine.get("identical", True) else [spec["sources"][0]])
    from ..atomic import atomic_path

    target.parent.mkdir(parents=True, exist_ok=True)
    attrs = _attrs(spec, spec["sources"][0])
    # a .nii.gz comes back with the same uncompressed bytes, rarely the same gzip stream: named when its bytes
    # are not the source file's (its SHA-256 is in the .lvp), as a checksum manifest would see it
    recorded = [s.get("sha256") for s in mine.get("sources") or [] if isinstance(s, dict)]
    with atomic_path(target, _mode_of(attrs)) as tmp:  # keeps the extension: the writer picks .nii or .nii.gz
        lio.write(volume, tmp)
        if mine.get("restore_sha256") and _content_sha256(tmp) != mine["restore_sha256"]:
            raise DamagedError(f"{archived}: the restored NIfTI differs from the one checked when archiving")
        same = mine.get("identical", True) and (len(recorded) != 1 or sha256_file(tmp) == recorded[0])
        _set_times(tmp, attrs)
        size = tmp.stat().st_size
    return [size], ([] if same else [spec["sources"][0]])
