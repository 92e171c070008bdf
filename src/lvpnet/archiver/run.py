"""Orchestration of ``lvpnet archive`` and ``lvpnet restore`` on dask.distributed.

The client walks SOURCE, compares it with the ledger, submits one task per item that is not done
and unchanged (largest first, a bounded number in flight so a million-item tree does not flood the
scheduler), and records every result in the ledger as it arrives (``as_completed``). A task that
dies with its worker is retried by dask on another worker; one that kills its workers again and
again (dask's ``allowed-failures``) is recorded as failed. Temporary files of the pattern our
atomic writes use, left by killed workers, are swept from DEST before and after each run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from .. import limits
from ..errors import InputError
from .bar import ArchiveProgress
from .ledger import DAMAGED, Ledger
from .tasks import archive_item, make_private, restore_item
from .walk import LEDGER_NAME, Item, walk

Callback = Callable[[ArchiveProgress], None]


# ---------------------------------------------------------------- archive


def archive(
    source: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    workers: int | None = None,
    scheduler=None,
    codec: str | None = None,
    device: str = "auto",
    allow_lossy_source: bool = False,
    check: bool = False,
    progress: Callback | None = None,
) -> dict:
    """Archive every series and file under ``source`` into ``dest``; returns the summary.

    ``workers``: local worker processes (default: the free cores); ``scheduler``: the address of an
    existing dask scheduler (or a ``distributed.Client``) instead. Rerunning skips what is done and
    unchanged; ``check`` first reads every output it would skip and compares its SHA-256 with the
    ledger's: a damaged one is coded again from SOURCE (``repaired``). Raises
    :class:`lvpnet.InputError` for bad arguments; failed items are in the summary.
    """
    t_start = time.perf_counter()
    _check_engine(workers, scheduler)
    # the settings first: refused, they left an empty DEST behind (made by the paths' check)
    if codec is not None:
        from .. import codecs

        codecs.get_codec(codec)  # an unknown name fails here, not on every worker
    if device not in ("auto", "cpu", "cuda"):
        raise InputError(f"--device {device} (device={device!r} in Python): use auto, cpu or cuda")
    if device == "cuda" and scheduler is None:
        from .engine import gpu_count

        if not gpu_count(device):
            raise InputError("--device cuda (device=\"cuda\" in Python): no CUDA device is available (use cpu or auto)")
    src, dst = _check_archive_paths(source, dest)
    ledger = Ledger(dst, create=True)
    try:
        ledger.lock()
        known = ledger.meta("source")
        if known is None:
            ledger.set_meta("source", str(src))
        elif known != str(src):
            if any(r.state == "done" for r in ledger.rows().values()):
                raise InputError(f"{dst}: is the archive of {known}, not of {src}; choose another DEST")
            # nothing archived from it (a first run that failed before any item, an unreachable scheduler):
            # not yet anyone's archive
            ledger.set_meta("source", str(src))
        run_id = ledger.start_run("archive")
        plan = walk(src, ledger.known_files(), carry_lossy=not allow_lossy_source)
        keys = [it.key for it in plan.items]
        if len(set(keys)) != len(keys):  # the naming rules make this impossible; never overwrite if not
            raise InputError("internal error: two items would share an output name")
        rows = ledger.rows()
        _sweep(dst, set(keys) | set(rows))
        # an item that failed (or never finished) and has left SOURCE since holds nothing: forgotten, so
        # that restore does not report it for ever (a done one stays: the archive is where its files are)
        planned = set(keys)
        forgotten = sorted(k for k, r in rows.items()
                           if k not in planned and r.state != "done" and not os.path.lexists(dst / k))
        if forgotten:
            ledger.forget(forgotten)
            rows = ledger.rows()
        todo: list[tuple[Item, bool]] = []
        skips: list[tuple[Item, object, bool]] = []  # done and unchanged: (item, row, some sources deleted)
        # files whose names the archive cannot hold: failures of every run until renamed (not in the ledger)
        conflicts: list[dict] = [{"item": u["file"], "sources": [u["file"]], "reason": u["reason"]}
                                 for u in plan.unnamed]
        for it in plan.items:
            row = rows.get(it.key)
            out = dst / it.key
            gone = _deleted_sources(src, row, it) if row is not None and row.state == "done" else []
            if gone and not _output_present(out, row):  # its .lvp moved out of DEST (as the message below
                todo.append((it, False))                  # says): archived anew from what SOURCE has now
            elif gone:  # never rewrite an output that holds files SOURCE no longer has
                if _unchanged(row, it, subset=True):
                    skips.append((it, row, True))
                else:
                    conflicts.append({"item": it.key, "sources": gone, "reason": (
                        f"{len(gone)} of its files {'was' if len(gone) == 1 else 'were'} deleted (or renamed) in SOURCE "
                        "since it was archived and "
                        "files were added or changed: the archived .lvp, which still holds the deleted files, is "
                        "kept as it is, and restore gives the files as they were archived (to archive the series "
                        "anew from SOURCE, move that .lvp out of DEST first, and keep it: it then holds the only "
                        "copy of the deleted files)")})
            elif row is not None and row.state == "done" and _unchanged(row, it) and _output_present(out, row):
                skips.append((it, row, False))
            else:
                todo.append((it, out.exists()))
        # with --check also the items SOURCE no longer has (kept for restore): damage there is said, not repaired
        orphans = [r for k, r in rows.items() if r.state == "done" and k not in planned] if check else []
        looked = [row for _, row, _ in skips] + orphans
        damaged = _damaged_outputs(dst, looked, progress) if check else set()
        unrepairable = [_unrepairable(r, "SOURCE no longer has its files") for r in orphans if r.key in damaged]
        skipped = 0
        kept: list[str] = []  # done items some of whose files were deleted from SOURCE since
        repaired: list[str] = []
        unchanged: list[Item] = []
        for it, row, with_deleted in skips:
            if not check and _damage_noted(row):  # an earlier --check found it so
                conflicts.append(_still_damaged(row))
            elif it.key not in damaged:
                skipped += 1
                if with_deleted:
                    kept.append(it.key)
                else:
                    unchanged.append(it)
            elif with_deleted:  # SOURCE cannot give it again: said, and left for restore to report
                unrepairable.append(_unrepairable(row, "some of its files were deleted from SOURCE since"))
            else:  # coded again from SOURCE over the damaged output (never adopted: it is not what was made)
                todo.append((it, False))
                repaired.append(it.key)
        if check:  # remembered for the plain runs, which read no output; dropped where found intact again
            for row in looked:
                if row.key not in damaged and _damage_noted(row):
                    ledger.note_damage(row.key, None)
            for failure in unrepairable:
                ledger.note_damage(failure["item"], failure["reason"])
        else:  # items SOURCE no longer has, found damaged by an earlier --check
            conflicts += [_still_damaged(r) for k, r in rows.items()
                          if r.state == "done" and k not in planned and _damage_noted(r)]
        conflicts += unrepairable
        # what the archive holds of the items coded again: kept if their new version fails (a source
        # broken since, say), for "nothing the archive holds is dropped because SOURCE lost it"
        previous = {it.key: rows[it.key] for it, _ in todo
                    if it.key in rows and rows[it.key].state == "done" and it.key not in damaged}
        kept_after_failure: list[str] = []
        ledger.refresh(unchanged)
        for it in unchanged:  # an archive made before modes were kept, or a source chmod-ed since
            make_private(dst, it.key, [s.mode for s in it.sources])
        ledger.plan([it for it, _ in todo])

        specs = [
            {"key": it.key, "kind": it.kind, "root": it.root, "sources": [s.rel for s in it.sources],
             "source": str(src), "dest": str(dst), "codec": codec, "device": device,
             "allow_lossy_source": allow_lossy_source, "adopt": exists, "size": it.source_bytes,
             # the hash the ledger holds for the output there, verified when it was made (adopting checks it)
             "recorded_sha256": rows[it.key].output_sha256 if it.key in rows and rows[it.key].state == "done" else None}
            for it, exists in todo
        ]
        stats = _Stats("archive", len(specs), sum(s["size"] for s in specs), progress)
        n_workers, startup, interrupted = 0, 0.0, True
        try:
            if specs:
                t0 = time.perf_counter()
                from .engine import connect

                # the fallback codec never uses a GPU: one worker per core then, not one per GPU
                engine_device = "cpu" if codec == "fallback" else device
                with connect(workers, scheduler, engine_device) as (client, n_workers):
                    startup = time.perf_counter() - t0
                    stats.start()
                    for spec, res in _run_tasks(client, archive_item, specs):
                        ledger.record(spec["key"], res)
                        old = previous.get(spec["key"])
                        if not res["ok"] and old is not None and _output_present(dst / spec["key"], old):
                            ledger.keep_previous(old, f"its sources failed to archive again ({res['reason']}): "
                                                      "the version archived before is kept")
                            kept_after_failure.append(spec["key"])
                        stats.add(spec, res, res.get("output_bytes") or 0, spec["size"])
            interrupted = False
        finally:
            _sweep(dst, set(keys) | set(rows))
            summary = _archive_summary(src, dst, plan, ledger, stats, skipped, n_workers,
                                       startup, time.perf_counter() - t_start, interrupted, kept, conflicts)
            summary["kept_after_failure"] = kept_after_failure
            summary["checked"] = len(looked) if check else None
            summary["damaged"] = sorted(damaged)
            summary["forgotten"] = forgotten
            summary["repaired"] = repaired
            ledger.finish_run(run_id, summary)
        return summary
    finally:
        ledger.close()


def _check_engine(workers: int | None, scheduler) -> None:
    if workers is not None and workers < 1:
        raise InputError(f"--workers {workers} (workers={workers} in Python): give at least 1")
    if workers is not None and scheduler is not None:
        raise InputError("--workers sizes the local cluster; a cluster given by --scheduler has its own workers (in Python: workers= or scheduler=, not both)")


def _check_archive_paths(source, dest) -> tuple[Path, Path]:
    src = Path(source)
    if not src.exists():
        raise InputError(f"{source}: not found")
    if not src.is_dir():
        raise InputError(f"{source}: not a folder (lvpnet archive takes a folder tree; lvpnet compress takes one file)")
    src = src.resolve()
    dst = Path(dest).resolve()
    if dst == src or dst.is_relative_to(src) or src.is_relative_to(dst):
        raise InputError(f"{dest}: DEST must lie outside SOURCE (and SOURCE outside DEST)")
    if dst.exists() and not dst.is_dir():
        raise InputError(f"{dest}: exists and is not a folder")
    if dst.is_dir() and not (dst / LEDGER_NAME).exists() and any(dst.iterdir()):
        raise InputError(f"{dest}: exists, is not empty and is not an lvpnet archive: choose a new or empty folder")
    try:
        dst.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"{dest}: cannot create the folder ({e.strerror or e})") from None
    if not os.access(dst, os.W_OK | os.X_OK):  # said as such, not as a ledger that cannot be opened
        raise InputError(f"{dest}: cannot be written (a read-only folder or file system)")
    return src, dst


def _unchanged(row, item: Item, subset: bool = False) -> bool:
    """Same files, sizes and modification times as when the item was archived (hashing every
    source on every rerun would read the whole tree again); ``subset``: the item's files are
    among those archived, each unchanged."""
    then = [(p, size, mtime) for p, size, mtime, *_ in row.sources]
    now = [(s.rel, s.size, s.mtime_ns) for s in item.sources]
    return set(now) <= set(then) if subset else then == now


def _deleted_sources(src: Path, row, item: Item) -> list[str]:
    """Files the archived item holds that are gone from SOURCE (not moved to another item)."""
    now = {s.rel for s in item.sources}
    return [p for p, *_ in row.sources if p not in now and not os.path.lexists(src / p)]


def _damaged_outputs(dst: Path, rows: list, progress: Callback | None) -> set[str]:
    """The keys of ``rows`` whose output in ``dst`` is unreadable or no longer has the SHA-256 the
    ledger recorded (``archive --check``): hashed here, a few files at a time (the disk, not the
    cores, is the limit), with the progress line as stage "check"."""
    from concurrent.futures import ThreadPoolExecutor

    from .tasks import sha256_file

    def intact(row) -> bool:
        try:
            return sha256_file(dst / row.key) == row.output_sha256
        except (OSError, InputError):  # unreadable, or no longer a regular file (``open_regular``)
            return False

    stats = _Stats("check", len(rows), sum(r.output_bytes or 0 for r in rows), progress)
    stats.start()
    damaged: set[str] = set()
    with ThreadPoolExecutor(max_workers=4) as pool:
        for row, ok in zip(rows, pool.map(intact, rows)):
            if not ok:
                damaged.add(row.key)
            stats.looked_at(row.output_bytes or 0, ok)
    return damaged


def _damage_noted(row) -> bool:
    """Whether an earlier ``--check`` found the row's output damaged beyond repair (``Ledger.note_damage``)."""
    return (row.reason or "").startswith(DAMAGED)


def _still_damaged(row) -> dict:
    """The failure of a plain run for an output an earlier ``--check`` found damaged beyond repair."""
    return {"item": row.key, "sources": [p for p, *_ in row.sources], "reason": (
        f"{row.reason[len(DAMAGED):]} (found by an earlier --check; put a good copy back and run --check)")}


def _unrepairable(row, why: str) -> dict:
    """The failure of a damaged output (``archive --check``) that SOURCE cannot give again."""
    return {"item": row.key, "sources": [p for p, *_ in row.sources], "reason": (
        f"its archived file is damaged (its SHA-256 is not the ledger's) and {why}: it cannot be archived again")}


def _output_present(out: Path, row) -> bool:
    try:
        return out.is_file() and out.stat().st_size == row.output_bytes
    except OSError:
        return False


def _sweep(root: Path, keep: set[str]) -> int:
    """Remove the temporary files of our atomic writes under ``root`` (left by a killed worker or
    command); never a file whose name the plan or the ledger knows, whatever it looks like.
    Unlike ``atomic.clean_debris`` (this machine's dead processes only) it removes those of any
    machine: a cluster's workers write from many hosts, and the client runs it only when no task
    of its own is running (before the first and after the last)."""
    from ..atomic import is_partial_name  # the temporary names of lvpnet.atomic.atomic_path

    n = 0
    for dirpath, dirnames, filenames in os.walk(root):
        # a link is unlinked, never followed: restore's links (``tasks._restore_link``) are made under these names
        # too, and one to a folder is listed among the folders
        links = [d for d in dirnames if (Path(dirpath) / d).is_symlink()]
        for name in filenames + links:
            if is_partial_name(name):
                path = Path(dirpath) / name
                if path.relative_to(root).as_posix() not in keep:
                    path.unlink(missing_ok=True)
                    n += 1
    return n


def _archive_summary(src, dst, plan, ledger, stats, skipped, n_workers, startup, seconds, interrupted,
                     kept, conflicts) -> dict:
    rows = ledger.rows()
    planned = {it.key for it in plan.items}
    done_rows = [r for r in rows.values() if r.state == "done" and r.key in planned]
    return {
        "command": "archive",
        "source": str(src),
        "dest": str(dst),
        "items": len(plan.items),
        "series": sum(1 for it in plan.items if it.kind == "dicom"),
        "images": sum(1 for it in plan.items if it.kind in ("nifti", "numpy")),
        "other_files": sum(1 for it in plan.items if it.kind == "other"),
        "links": sum(1 for it in plan.items if it.kind == "link"),
        "files": sum(len(it.sources) for it in plan.items),
        "done": stats.done,
        "adopted": stats.adopted,
        "skipped": skipped,
        "failed": len(stats.failures) + len(conflicts),
        "bytes_in": stats.bytes_in,
        "bytes_out": stats.bytes_out,
        "ratio": round(stats.bytes_in / stats.bytes_out, 4) if stats.bytes_out else None,
        # the whole archive: also the items kept for sources deleted since (the "kept" lines below)
        "archive_bytes_in": sum(r.source_bytes for r in rows.values() if r.state == "done"),
        "archive_bytes_out": sum(r.output_bytes or 0 for r in rows.values() if r.state == "done"),
        "not_identical": sorted(r.key for r in done_rows if r.identical == 0),
        "failures": conflicts + stats.failures,
        "damaged_carried": plan.damaged + stats.carried,
        "lossy_carried": sorted(plan.lossy + stats.lossy),
        "kept_with_deleted_sources": kept,
        "not_archived": plan.skipped,
        "not_in_source": sorted(k for k in rows if k not in planned),
        "workers": n_workers,
        "seconds": round(seconds, 3),
        "startup_seconds": round(startup, 3),
        "work_seconds": round(stats.seconds(), 3),
        "interrupted": interrupted,
    }


# ---------------------------------------------------------------- restore


def restore(
    dest: str | os.PathLike,
    out: str | os.PathLike,
    *,
    workers: int | None = None,
    scheduler=None,
    progress: Callback | None = None,
) -> dict:
    """Rebuild the tree archived in ``dest`` under ``out`` (new or empty); returns the summary.

    Every ``.lvp`` is checked against the SHA-256 in the ledger before it is decoded; a damaged
    one is reported (``failures``) and the rest restored.
    """
    t_start = time.perf_counter()
    _check_engine(workers, scheduler)
    dst = Path(dest)
    if not dst.is_dir():
        raise InputError(f"{dest}: not found or not a folder")
    dst = dst.resolve()
    ledger = Ledger(dst, read_only=True)  # restore writes nothing in DEST
    try:
        ledger.lock()  # no archive run may change DEST meanwhile
        rows = ledger.rows()
        done = [r for r in rows.values() if r.state == "done"]
        target, marker = _check_restore_out(dst, Path(out), {p for r in done for p, *_ in r.sources})
        failures = [
            {"item": r.key, "sources": [p for p, *_ in r.sources],
             "reason": f"not in the archive: {r.reason or 'never archived (run lvpnet archive again)'}"}
            for r in rows.values() if r.state != "done"
        ]
        owner = _owners(done)
        specs, superseded = [], []
        for r in done:
            mine = [p for p, *_ in r.sources if owner[p] == r.key]
            if not mine:
                superseded.append(r.key)
                continue
            # each file's modification time and permission bits, set before it takes its name
            attrs = {p: (mtime, mode) for p, _size, mtime, _sha, mode in r.sources if owner[p] == r.key}
            specs.append(_restore_spec(r, mine, attrs, dst, target))
        target.mkdir(parents=True, exist_ok=True)
        if not os.access(target, os.W_OK | os.X_OK):  # before decoding anything, not one failure per item
            raise InputError(f"{out}: cannot be written (a read-only folder or file system)")
        marker.write_text(str(dst))  # which archive this OUT is a restore of, should it be interrupted
        stats = _Stats("restore", len(specs), sum(s["size"] for s in specs), progress)
        not_identical: list[str] = []  # files restored with the same values, not the same bytes
        from_older: list[str] = []  # files a damaged item lost, restored from an older item that holds them
        n_workers, startup, interrupted = 0, 0.0, True
        try:
            if specs:
                t0 = time.perf_counter()
                from .engine import connect

                with connect(workers, scheduler, "cpu") as (client, n_workers):
                    startup = time.perf_counter() - t0
                    stats.start()
                    for spec, res in _run_tasks(client, restore_item, [s for s in specs if s["kind"] != "link"]):
                        stats.add(spec, res, res.get("bytes") or 0, res.get("archive_bytes") or 0,
                                  files=res.get("files", 0))
                        not_identical += res.get("not_identical") or []
                    # files a damaged newer item could not give back, from an older item that holds them with the
                    # same SHA-256 (kept in DEST after a regroup): they were lost with the newer item
                    for spec, res in _run_tasks(client, restore_item, _older_copies(done, owner, stats.failures,
                                                                                     target, dst)):
                        if res["ok"]:
                            from_older += spec["sources"]
                            stats.files += res.get("files", 0)
                            stats.bytes_out += res.get("bytes") or 0
                            not_identical += res.get("not_identical") or []
                # the links last, once every file is written, and one at a time here: no file, and no link, can
                # then be made through a link this restore made (a crafted ledger's link "a" -> /etc beside a
                # file "a/passwd", or beside a link "a/x": two workers could race past each other's check)
                for spec in (s for s in specs if s["kind"] == "link"):
                    res = restore_item(spec)
                    stats.add(spec, res, 0, res.get("archive_bytes") or 0, files=res.get("files", 0))
            interrupted = False
        finally:
            known = {p for r in done for p, *_ in r.sources}
            _sweep(target, known)
            if not interrupted and not stats.failures:  # else kept: a rerun into OUT resumes (a disk was full)
                marker.unlink(missing_ok=True)
        return {
            "command": "restore",
            "dest": str(dst),
            "out": str(target),
            "items": len(rows),
            "done": stats.done,
            "skipped": len(superseded),
            "superseded": superseded,
            "failed": len(stats.failures) + len(failures),
            "files": stats.files,
            "bytes_in": stats.bytes_in,
            "bytes_out": stats.bytes_out,
            "failures": failures + stats.failures,
            "not_identical": sorted(not_identical),
            "from_older_items": sorted(from_older),
            "workers": n_workers,
            "seconds": round(time.perf_counter() - t_start, 3),
            "startup_seconds": round(startup, 3),
            "work_seconds": round(stats.seconds(), 3),
        }
    finally:
        ledger.close()


def _older_copies(done: list, owner: dict[str, str], failures: list[dict], target: Path, dst: Path) -> list[dict]:
    """Restore specs for the files of failed items (not written: a damaged ``.lvp``) that an older item also holds
    with the same SHA-256, one spec per older item, its own files only (``only``); the newest such item first
    takes them. A file whose older copy differs (an earlier version) is not taken: named lost, as it is."""
    rows = {r.key: r for r in done}
    lost: dict[str, tuple] = {}  # path -> the failed item's record of it (size, mtime, sha, mode)
    for f in failures:
        r = rows.get(f["item"])
        for p, size, mtime, sha, mode in (r.sources if r is not None else ()):
            if owner.get(p) == r.key and not (target / p).exists():
                lost[p] = (size, mtime, sha, mode)
    specs = []
    for r in sorted(done, key=lambda r: (r.updated, r.key), reverse=True):  # the newest copy first
        mine = [p for p, _size, _mtime, sha, _mode in r.sources if p in lost and lost[p][2] == sha and r.key != owner[p]]
        if not mine or (r.kind != "dicom" and len(r.sources) != 1):
            continue
        attrs = {p: (lost[p][1], lost[p][3]) for p in mine}  # the newest record's time and permission bits
        for p in mine:
            del lost[p]
        specs.append(_restore_spec(r, mine, attrs, dst, target))
    return specs


def _restore_spec(r, mine: list[str], attrs: dict, dst: Path, target: Path) -> dict:
    """``restore_item``'s task: item ``r``'s files ``mine`` (all of them, or ``only`` these) with their times and
    permission bits ``attrs``."""
    return {"key": r.key, "kind": r.kind, "root": r.root, "sources": mine, "attrs": attrs,
            "only": None if len(mine) == len(r.sources) else mine, "dest": str(dst), "out": str(target),
            "output_sha256": r.output_sha256, "size": r.output_bytes or 0}


def _owners(done: list) -> dict[str, str]:
    """Which item restores each source path: the one recorded last. An item whose files were
    regrouped later (a series split, a file moved to another item) stays in the ledger, and its
    files that a newer item also holds must come from the newer one. Files whose source was
    deleted after archiving keep their only item: the archive still restores them."""
    owner: dict[str, str] = {}
    for r in sorted(done, key=lambda r: (r.updated, r.key)):
        for p, *_ in r.sources:
            owner[p] = r.key
    return owner


def _check_restore_out(dst: Path, out: Path, known: set[str]) -> tuple[Path, Path]:
    """OUT must be new or empty, or hold an interrupted restore of this archive (every file of which
    is written again, atomically): its marker names this DEST, and OUT holds no file the archive does
    not restore (``known``), so a folder made anew where a restore was interrupted, or the restore of
    another archive, is not written into."""
    from ..atomic import is_partial_name
    from ..dicom_archive import check_output_folder

    target = out.resolve()
    if target == dst or target.is_relative_to(dst) or dst.is_relative_to(target):
        raise InputError(f"{out}: OUT must lie outside the archive folder")
    marker = target.parent / f".{target.name}.lvpnet-restoring"
    if marker.exists() and not target.is_dir():  # OUT removed since: the marker speaks of nothing
        marker.unlink(missing_ok=True)
    if not marker.exists():
        check_output_folder(target)
    else:
        try:
            of = marker.read_text().strip()
        except (OSError, UnicodeDecodeError):
            of = ""
        if of and of != str(dst):
            raise InputError(f"{out}: holds an interrupted restore of another archive ({of}): choose a new folder")
        for dirpath, _dirs, names in os.walk(target):
            for name in names:
                rel = (Path(dirpath) / name).relative_to(target).as_posix()
                if rel not in known and not is_partial_name(name):
                    raise InputError(f"{out}: holds {rel}, which this archive does not restore: not an "
                                     "interrupted restore of it; choose a new or empty folder")
    if not target.parent.is_dir():
        raise InputError(f"{out}: the folder {target.parent} does not exist")
    return target, marker


# ---------------------------------------------------------------- shared


class _Stats:
    def __init__(self, stage: str, total: int, total_bytes: int, progress: Callback | None):
        self.stage, self.total, self.total_bytes, self.progress = stage, total, total_bytes, progress
        self.done = self.adopted = self.bytes_in = self.bytes_out = self.files = 0
        self.finished = self.read = 0
        self.failures: list[dict] = []
        self.carried: list[dict] = []  # files of a series whose pixels could not be read, carried whole
        self.lossy: list[str] = []  # lossy files only their codestreams showed, carried whole in their .lvp
        self.flagged = 0  # items found damaged by a check (nothing of them written)
        self._t0: float | None = None
        self._t1: float | None = None

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._emit()

    def seconds(self) -> float:
        if self._t0 is None:
            return 0.0
        return (self._t1 or time.perf_counter()) - self._t0

    def add(self, spec: dict, res: dict, bytes_out: int, bytes_in: int, files: int = 0) -> None:
        self.finished += 1
        self.read += bytes_in  # the time left counts failed items' bytes as done too
        if res["ok"]:
            self.done += 1
            self.bytes_in += bytes_in
            self.adopted += int(bool(res.get("adopted")))
            self.bytes_out += bytes_out
            self.files += files
            self.carried += [{**c, "item": spec["key"]} for c in res.get("damaged_carried") or []]
            self.lossy += res.get("lossy_carried") or []
        else:
            self.failures.append({"item": spec["key"], "sources": spec["sources"], "reason": res["reason"]})
            self.files += files  # a damaged series restored in part: the files it did write
            self.bytes_out += bytes_out
        self._t1 = time.perf_counter()
        self._emit()

    def looked_at(self, bytes_in: int, ok: bool) -> None:
        """One item read and checked, nothing written (``archive --check``)."""
        self.finished += 1
        self.read += bytes_in
        self.flagged += int(not ok)
        self._emit()

    def _emit(self) -> None:
        if self.progress is not None:
            self.progress(ArchiveProgress(self.stage, self.finished, self.total, self.read, self.bytes_out,
                                          self.total_bytes, len(self.failures) + self.flagged))


def _run_tasks(client, fn, specs: list[dict]):
    """Yield ``(spec, result)`` as tasks finish, largest items submitted first, at most a few per
    worker in flight. A task whose workers kept dying comes back as a failed result."""
    from distributed import as_completed

    order = sorted(specs, key=lambda s: -s["size"])
    window = max(16, 4 * max(1, len(client.scheduler_info().get("workers", {}))))
    pending = iter(order)
    by_key: dict[str, dict] = {}
    done = as_completed(loop=client.loop)

    def submit_next() -> None:
        spec = next(pending, None)
        if spec is not None:
            # the user's memory limit (``--max-memory``, ``set_max_memory``) judges the files in the workers too
            fut = client.submit(fn, {**spec, "max_memory": limits.explicit_limit()}, pure=False)
            by_key[fut.key] = spec
            done.add(fut)

    for _ in range(window):
        submit_next()
    try:
        for fut in done:
            spec = by_key.pop(fut.key)
            try:
                res = fut.result()
            except Exception as e:  # KilledWorker after dask's retries, a lost scheduler...
                res = {"key": spec["key"], "ok": False, "reason": _task_error(e)}
            fut.release()
            yield spec, res
            submit_next()
    finally:
        for fut in list(done.futures):  # interrupted: nothing more runs on our behalf
            fut.cancel()


def _task_error(e: BaseException) -> str:
    name = type(e).__name__
    if name == "KilledWorker":
        return "the workers running this item kept dying (killed, or out of memory)"
    return f"task failed: {name}: {e}"
