"""The ``lvpnet archive`` and ``lvpnet restore`` subcommands (registered by :mod:`lvpnet.cli`)."""

from __future__ import annotations

import argparse
import json
import signal
import sys

from ..terminal import printable
from .bar import ArchiveBar, human_bytes


def add_parsers(sub, cmd_archive, cmd_restore, codec_help: str, max_memory_help: str, size_type) -> None:
    from .. import codecs

    engine = ("--workers", "--scheduler")
    a = sub.add_parser("archive", help="compress a folder tree (DICOM series, NIfTI, .npy) into an archive folder")
    a.add_argument("source", help="the folder tree to archive")
    a.add_argument("dest", help="the archive folder (new, empty, or an archive of SOURCE to bring up to date)")
    a.add_argument(engine[0], type=int, metavar="N", help="local worker processes (default: the free cores)")
    a.add_argument(engine[1], metavar="ADDRESS", help="run on an existing dask cluster (tcp://host:8786)")
    a.add_argument("--codec", choices=codecs.known(), help=codec_help)
    a.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where the learned codec runs")
    a.add_argument("--allow-lossy-source", action="store_true",
                   help="accept DICOM files whose pixel data went through lossy compression")
    a.add_argument("--check", action="store_true",
                   help="also read every archived output that is up to date and compare it with the SHA-256 in "
                        "the ledger; a damaged one is archived again from SOURCE")
    a.add_argument("--max-memory", type=size_type, metavar="SIZE", help=max_memory_help)
    a.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    a.set_defaults(func=cmd_archive)

    r = sub.add_parser("restore", help="rebuild the folder tree an archive folder holds")
    r.add_argument("dest", help="the archive folder (what lvpnet archive wrote)")
    r.add_argument("out", help="a new or empty folder")
    r.add_argument(engine[0], type=int, metavar="N", help="local worker processes (default: the free cores)")
    r.add_argument(engine[1], metavar="ADDRESS", help="run on an existing dask cluster (tcp://host:8786)")
    r.add_argument("--max-memory", type=size_type, metavar="SIZE", help=max_memory_help)
    r.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    r.set_defaults(func=cmd_restore)


_INTERRUPTED = ("every item finished so far is recorded and no partial file is left: "
                "run the same command again to finish")


def _interrupted(e: KeyboardInterrupt, what: str) -> int:
    """'lvpnet: interrupted (SIGTERM); ...' and 128 + the signal, as every lvpnet command (Ctrl-C: 130)."""
    signum = getattr(e, "signum", signal.SIGINT)
    print(f"lvpnet: interrupted ({signal.Signals(signum).name}); {what}", file=sys.stderr)
    return 128 + signum


def run_archive(args: argparse.Namespace) -> int:
    from .run import archive

    try:
        summary = archive(args.source, args.dest, workers=args.workers, scheduler=args.scheduler, codec=args.codec,
                          device=args.device, allow_lossy_source=args.allow_lossy_source, check=args.check,
                          progress=ArchiveBar())
    except KeyboardInterrupt as e:
        return _interrupted(e, _INTERRUPTED)
    if args.json:
        print(json.dumps(summary))
    else:
        print(printable(format_archive(summary)))  # names from the tree: no escape sequence reaches the terminal
    return 1 if summary["failed"] else 0


def run_restore(args: argparse.Namespace) -> int:
    from .run import restore

    try:
        summary = restore(args.dest, args.out, workers=args.workers, scheduler=args.scheduler, progress=ArchiveBar())
    except KeyboardInterrupt as e:
        return _interrupted(e, "run the same command again to finish (OUT is written again, file by file)")
    if args.json:
        print(json.dumps(summary))
    else:
        print(printable(format_restore(summary)))
    return 1 if summary["failed"] else 0


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _names(keys: list[str], most: int = 5) -> str:
    """The first few item names, and how many more (``--json`` lists them all)."""
    return ", ".join(keys[:most]) + (f" and {len(keys) - most} more" if len(keys) > most else "")


def _bytes(n: int) -> str:
    return f"{n:,} bytes" + (f" ({human_bytes(n)})" if n >= 10_000 else "")


_NOT_IDENTICAL_WHY = ("a .nii.gz with the same uncompressed bytes in another gzip stream, a compressed DICOM "
                      "rewritten as Explicit VR Little Endian, or a NIfTI's bytes after its data beyond 1 MiB")


def format_archive(s: dict) -> str:
    lines = [
        f"{s['source']} -> {s['dest']}: {_plural(s['items'], 'item')} ({s['series']} DICOM series, "
        f"{s['images']} NIfTI/.npy, {_plural(s['other_files'], 'other file')}"
        + (f", {_plural(s['links'], 'symbolic link')}" if s.get("links") else "")
        + f"; {_plural(s['files'], 'source file')})",
        f"  done {s['done']}" + (f" ({s['adopted']} found in DEST made from these very sources: kept, not coded again)"
                               if s["adopted"] else "")
        + f", skipped {s['skipped']} (done and unchanged), failed {s['failed']}",
    ]
    if s["done"]:
        ratio = f", ratio {s['ratio']:.2f}" if s["ratio"] else ""
        lines.append(f"  {_bytes(s['bytes_in'])} -> {_bytes(s['bytes_out'])}{ratio} in {s['seconds']:.1f} s "
                     f"on {_plural(s['workers'], 'worker')}")
    if (s["archive_bytes_in"], s["archive_bytes_out"]) != ((s["bytes_in"], s["bytes_out"]) if s["done"] else (0, 0)):
        # the whole archive, where it is more than this run wrote
        lines.append(f"  archive: {_bytes(s['archive_bytes_in'])} -> {_bytes(s['archive_bytes_out'])}")
    if s["not_identical"]:
        lines.append(f"  restored with the same values but not byte for byte ({_NOT_IDENTICAL_WHY}): "
                     f"{', '.join(s['not_identical'])}")
    if s.get("checked") is not None:
        bad, again = s["damaged"], s["repaired"]
        if not bad:
            said = "all intact"
        elif len(again) == len(bad):
            said = f"{len(bad)} damaged, archived again from SOURCE: {_names(again)}"
        elif not again:
            said = f"{len(bad)} damaged, which SOURCE cannot give again (failed, below)"
        else:
            said = f"{len(bad)} damaged: {len(again)} archived again from SOURCE ({_names(again)}), the others failed (below)"
        lines.append(f"  checked {_plural(s['checked'], 'archived file')} against the ledger: {said}")
    if s.get("lossy_carried"):
        n = len(s["lossy_carried"])
        lines.append(f"  {_plural(n, 'lossy DICOM file')} (JPEG baseline, say) carried as {'it is' if n == 1 else 'they are'}, "
                     f"restored byte for byte (--allow-lossy-source codes the decoded values instead): "
                     f"{_names(s['lossy_carried'])}")
    if s.get("damaged_carried"):
        lines.append("damaged DICOM files, carried whole (restore gives them back byte for byte):")
        lines += [f"  {c['reason']}" if c["file"] in c["reason"] else f"  {c['file']}: {c['reason']}"
                  for c in s["damaged_carried"]]
    if s["failures"]:
        lines.append("failed:")
        lines += [f"  {f['item']}: {f['reason']}" for f in s["failures"]]
    if s["not_archived"]:
        lines.append("not archived:")
        lines += [f"  {f['file']}: {f['reason']}" for f in s["not_archived"]]
    if s.get("kept_with_deleted_sources"):
        lines.append(f"  {_plural(len(s['kept_with_deleted_sources']), 'item')} kept as archived: some of their files "
                     f"were deleted from SOURCE since (the archive still restores them): {_names(s['kept_with_deleted_sources'])}")
    if s.get("kept_after_failure"):
        lines.append(f"  {_plural(len(s['kept_after_failure']), 'item')} failed to archive again and keep the version "
                     f"archived before (restore gives it): {_names(s['kept_after_failure'])}")
    if s.get("forgotten"):
        lines.append(f"  {_plural(len(s['forgotten']), 'item')} that failed before and left SOURCE since dropped from "
                     f"the ledger (the archive never held them): {_names(s['forgotten'])}")
    if s["not_in_source"]:
        lines.append(f"  {_plural(len(s['not_in_source']), 'item')} in the archive no longer in SOURCE as such (kept: "
                     f"restore takes each file from the newest item that holds it): {_names(s['not_in_source'])}")
    return "\n".join(lines)


_NEVER = "not in the archive: never archived"  # restore's reason for an item an archive run planned, not done


def format_restore(s: dict) -> str:
    lines = [
        f"{s['dest']} -> {s['out']}: {_plural(s['done'], 'item')} restored ({_plural(s['files'], 'file')}, "
        f"{_bytes(s['bytes_out'])}) in {s['seconds']:.1f} s, failed {s['failed']}",
    ]
    if s.get("superseded"):
        lines.append(f"  {_plural(len(s['superseded']), 'older item')} not restored: newer items hold their files")
    if s.get("from_older_items"):
        lines.append(f"  {_plural(len(s['from_older_items']), 'file')} of damaged items restored from older items that "
                     f"hold them with the same SHA-256: {_names(s['from_older_items'])}")
    if s.get("not_identical"):
        lines.append(f"  {_plural(len(s['not_identical']), 'file')} restored with the same values but not byte for byte "
                     f"({_NOT_IDENTICAL_WHY}): {_names(s['not_identical'])}")
    never = [f["item"] for f in s["failures"] if f["reason"].startswith(_NEVER)]
    if never:  # an archive run cut short: one line, not one per item (--json lists them all)
        lines.append(f"  {_plural(len(never), 'item')} never archived (the archive run was cut short; run lvpnet "
                     f"archive again): {_names(never)}")
    others = [f for f in s["failures"] if not f["reason"].startswith(_NEVER)]
    if others:
        lines.append("failed:")
        lines += [f"  {f['item']}: {f['reason']}" for f in others]
    return "\n".join(lines)
