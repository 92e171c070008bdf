"""The ``lvpnet`` command.

Exit codes: 0 success; 1 a damaged file or a failed verification; 2 bad usage
or an input that cannot be read. Messages go to stderr, tracebacks only with
``--debug``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import signal
import sys
import time
import traceback
import warnings

from . import __version__, codecs
from .errors import DamagedError, InputError, LimitError, LvpnetError
from .progress import Progress, run
from .terminal import StatusLine, bar, printable, time_left

OUTPUT_SUFFIXES = (".npy", ".nii", ".nii.gz")


class ProgressBar(StatusLine):
    """Slices done / total on stderr, drawn only on a terminal, with the time left from the second
    slice of a stage on (timed from the first, which also loads the weights: the learned codec takes
    seconds a slice, and a long volume should say how long it will take)."""

    def __init__(self, enabled: bool | None = None, clock=time.monotonic, stream=None, then: dict | None = None):
        super().__init__(enabled, stream)
        self.clock = clock
        self.then = then or {}  # stage -> the stage after it, said while it runs ({"encode": "verify"})
        self._last = ""
        self._stage: tuple[str, float, int] | None = None  # (stage, when it started, slices done then)
        self._p: Progress | None = None  # the last progress drawn

    def __call__(self, p: Progress) -> None:
        if not self.enabled:
            return
        now = self.clock()
        if self._stage is not None and (self._stage[0] != p.stage or p.done < self._stage[2]):
            self._stage = None
        if self._stage is None and p.done >= 1:  # timed from the end of the first slice (the weights loaded)
            self._stage = (p.stage, now, p.done)
        self._p = p
        line = f"\r{p.stage:>7} {bar(p.done, p.total, 30)} {p.done}/{p.total} slices{self._left(p, now)}"
        if line != self._last:
            self.draw(line, final=p.done == p.total)
            self._last = line

    def _left(self, p: Progress, now: float) -> str:
        """", 1:49 left" from the second slice of a stage on (``time_left``), and what comes after the stage
        ("then verify")."""
        _, start, first = self._stage or (p.stage, now, p.done)
        left = time_left((now - start) / (p.done - first) * (p.total - p.done)) if first < p.done < p.total else ""
        later = self.then.get(p.stage)
        return f"{left}, then {later}" if later and p.done < p.total else left

    def part(self, fraction: float | None) -> None:
        """Within a slice (``progress.tick``): a large image is one slice of many seconds, whose bar
        stood still at 0/1 until it was done. The next slice's share is drawn, in tenths (``None``: a
        slice coded ahead of its turn, nothing to draw)."""
        p = self._p
        if not self.enabled or p is None or p.done >= p.total or fraction is None:
            return
        line = (f"\r{p.stage:>7} {bar(10 * p.done + int(10 * fraction), 10 * p.total, 30)} {p.done}/{p.total} slices"
                f" (slice {p.done + 1}: {int(100 * fraction) // 10 * 10}%){self._left(p, self.clock())}")
        if line != self._last:
            self.draw(line, final=False)
            self._last = line


def _check_device(device: str) -> None:
    if device != "cuda":
        return
    try:
        import torch
    except ImportError:
        raise InputError("--device cuda: PyTorch is not installed") from None
    if not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available (use --device cpu or auto)")


def cmd_compress(args: argparse.Namespace) -> int:
    from .atomic import check_writable
    from .compressor import iter_compress_path

    if not str(args.output).lower().endswith(".lvp"):
        raise InputError(f"{args.output}: the output name must end in .lvp")
    check_writable(args.output)  # before the encode, not after it
    if args.device:  # else the codec's own: LVPNET_DEVICE, or auto
        _check_device(args.device)
        codecs.get_codec("lvpnet").device = args.device  # where the learned codec runs (no weights loaded here)
    job = iter_compress_path(args.input, args.output, args.codec, verify=not args.no_verify, series=args.series,
                             rgb=args.rgb, follow_symlinks=args.follow_symlinks,
                             allow_lossy_source=args.allow_lossy_source, safety_net=not args.no_safety_net,
                             workers=args.workers,
                             on_note=lambda note: print(f"lvpnet: note: {note}", file=sys.stderr))
    result, volume, read_seconds = run(job, ProgressBar(then={} if args.no_verify else {"encode": "verify"}))
    report = {"input": str(args.input), **result.as_dict(), "read_seconds": round(read_seconds, 3)}
    if volume.source_format == "dicom":
        from .dicom_archive import info_fields

        report.update(info_fields(volume.metadata, report["lvp_bytes"]))
    source_bytes = report.get("dicom_source_bytes")
    if source_bytes is None and os.path.isfile(args.input):  # a .nii.gz or .npz is smaller than its values
        report["input_bytes"] = os.path.getsize(args.input)
    counts = report.get("codecs") or {}
    loaded = (f" (after {report['load_seconds']:.1f} s loading the learned codec)"
              if report.get("load_seconds", 0) >= 0.05 else "")
    kept = ("" if len(counts) < 2 and ("lvpnet" in counts or not counts) else
            "; slices by codec: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if args.json:
        print(json.dumps(report))
    elif source_bytes:
        files = report.get("archived_files", 0)
        print(
            f"{args.input} -> {args.output}: {files} file{'s' * (files != 1)} of {source_bytes:,} bytes -> "
            f"{report['lvp_bytes']:,} bytes, ratio {report['dicom_ratio']:.2f} (headers and every file kept; "
            f"the pixels alone: {report['original_bytes']:,} bytes), encoded in {report['encode_seconds']:.2f} s"
            + loaded + ("" if report.get("verify_seconds") is None else f", verified in {report['verify_seconds']:.2f} s")
            + kept
        )
    else:
        print(
            f"{args.input} -> {args.output}: {report['original_bytes']:,} bytes of values -> {report['lvp_bytes']:,} "
            f"bytes, {report['bits_per_sample']:.3f} bits/sample, ratio {report['ratio']:.2f}"
            + ("" if abs(report.get("input_bytes", report["original_bytes"]) - report["original_bytes"])
               <= 0.01 * report["original_bytes"] else  # a .npy's header is not worth a second ratio
               f" (to the input file's {report['input_bytes']:,} bytes: {report['input_bytes'] / report['lvp_bytes']:.2f})")
            + f", encoded in {report['encode_seconds']:.2f} s" + loaded
            + ("" if report.get("verify_seconds") is None else f", verified in {report['verify_seconds']:.2f} s")
            + kept
        )
    return 0


def _output_suffix(path: str) -> str | None:
    low = path.lower()
    return next((s for s in OUTPUT_SUFFIXES if low.endswith(s)), None)


def cmd_decompress(args: argparse.Namespace) -> int:
    import dataclasses

    from . import io as lio
    from .atomic import check_writable
    from .io.dicom import pixel_values
    from .lvpfile import LvpFile

    out = str(args.output)
    t0 = time.perf_counter()
    if _output_suffix(out) is None:
        report = _decompress_dicom(args.input, out, args.workers)
    else:
        check_writable(out)  # before the decode
        lvp = LvpFile(args.input)
        array = run(lvp.iter_decode(workers=args.workers), ProgressBar())  # all checked before anything is written
        volume = lvp.volume(array)
        values, note = pixel_values(volume)  # a DICOM series' words held to BitsStored, as viewers show them
        if note:
            print(f"lvpnet: warning: {out}: {note}", file=sys.stderr)
            volume = dataclasses.replace(volume, array=values)
        if _output_suffix(out) != ".npy":  # what NIfTI cannot hold of a DICOM series: said before writing
            from .io.nifti import conversion_notes

            for note in conversion_notes(volume):
                print(f"lvpnet: warning: {out}: {note}", file=sys.stderr)
        lio.write(volume, out)  # atomic itself; its messages name OUT, not the hidden temporary file
        report = {"shape": list(array.shape), "dtype": str(array.dtype)}
    report = {"input": str(args.input), "output": out, **report, "seconds": round(time.perf_counter() - t0, 3)}
    if args.json:
        print(json.dumps(report))
    elif "files" in report:
        print(f"{args.input} -> {out}: {_files_phrase(report['files'], report.get('other_files', 0))}")
    else:
        print(f"{args.input} -> {out}: {tuple(report['shape'])} {report['dtype']}")
    return 0


def _decompress_dicom(src: str, out: str, workers: int | None = None) -> dict:
    """Write the DICOM files a .lvp archives: into a new folder, or one ``.dcm`` file."""
    from .dicom_archive import archive_of, check_output_folder, info_fields, write_folder, write_single
    from .lvpfile import LvpFile

    lvp = LvpFile(src)
    source = lvp.header.get("source", {})
    if archive_of(source.get("metadata")) is None:
        if source.get("format") == "dicom":
            raise InputError(f"{out}: {src} holds the values of a DICOM series but not its files (written from an "
                             "image, e.g. by the napari plugin, or by an lvpnet before the DICOM archive): "
                             "decompress it to .npy, .nii or .nii.gz")
        raise InputError(f"{out}: unsupported output type: use .npy, .nii or .nii.gz (a DICOM folder or .dcm only "
                         f"for a .lvp made from DICOM files; {src} was made from a {source.get('format')} file)")
    single = out.lower().endswith(".dcm")
    if single and os.path.lexists(out):
        raise InputError(f"{out}: already exists; DICOM output never replaces a file: choose a new name")
    if single:
        from .atomic import check_writable

        check_writable(out)  # before the decode
    else:
        check_output_folder(out)
    array = run(lvp.iter_decode(workers=workers), ProgressBar())  # every slice and every record checked before writing
    volume = lvp.volume(array, check_files=False)  # write_single / write_folder check every file they rebuild
    try:
        if single:
            write_single(volume, out)
            return {"files": 1}
        written = write_folder(volume, out)
    except OSError as e:  # a full disk names the folder (the file's own name is in a hidden temporary)
        raise InputError(f"{out}: cannot write ({e.strerror or e})") from None
    except (DamagedError, LimitError) as e:  # the records name the archived file; say which .lvp holds it
        raise type(e)(f"{src}: {e}") from None
    return {"files": len(written), "other_files": info_fields(volume.metadata)["other_files"]}


def _files_phrase(n: int, others: int, what: str = "") -> str:
    """"3 DICOM files", or "4 files (3 DICOM, 1 other)" where the folder's notes or reports came too."""
    if not others:
        return f"{n} DICOM file{'' if n == 1 else 's'}{what}"
    return f"{n} file{'' if n == 1 else 's'}{what} ({n - others} DICOM, {others} other)"


def info_dict(path: str) -> dict:
    from .lvpfile import LvpFile

    lvp = LvpFile(path)
    h = lvp.header
    counts = lvp.codec_counts()
    against, damaged, unread = 0, [], []  # every chunk is read for its plane headers: one that cannot be is said
    for i in range(len(lvp)):
        try:
            against += lvp.needs_previous(i)
        except DamagedError as e:
            damaged.append({"slice": i, "error": str(e)})
        except LvpnetError as e:  # not damage: a codec or version this lvpnet does not know (a newer writer's)
            unread.append({"slice": i, "error": str(e)})
    damaged_files = _damaged_records(lvp)
    return {
        "file": str(path),
        "format_version": "{}.{}".format(*lvp.version),
        "writer": h.get("writer"),
        "codec": next(iter(counts)) if len(counts) == 1 else "mixed",
        "codecs": counts,
        "coded_against_previous": against,
        **({"damaged_slices": damaged} if damaged else {}),
        **({"damaged_files": damaged_files} if damaged_files else {}),
        **({"unreadable_slices": unread} if unread else {}),
        "codec_versions": h["codecs"],
        "model": h.get("model"),
        "constriction_version": h.get("constriction_version"),
        "shape": list(lvp.shape),
        "dtype": lvp.dtype.name,
        "rgb": lvp.rgb,
        "slices": len(lvp),
        "spacing": h.get("spacing"),
        "source_format": h.get("source", {}).get("format"),
        "file_bytes": lvp.file_bytes,
        "original_bytes": lvp.n_samples * lvp.dtype.itemsize,
        "bits_per_sample": round(lvp.bits_per_sample, 4),
        "ratio": round(lvp.n_samples * lvp.dtype.itemsize / lvp.file_bytes, 4),
        **_dicom_info(h, lvp.file_bytes),
    }


def _strict(value):
    """``value`` as strict JSON holds it: a NaN or infinite float (an old file's spacing) as null; json.dumps
    printed NaN, which strict parsers refuse."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def _damaged_records(lvp) -> list[dict]:
    """The blobs (a DICOM archive's file records) whose checksum fails, each with the file it restores: info
    checked the slices only, and said nothing (exit 0) of a record that verify and decompress refuse."""
    out = []
    for j in range(len(lvp.header.get("blobs", []))):
        try:
            lvp._blob(j)
        except DamagedError as e:
            name = lvp.record_name(j)
            out.append({"record": j, **({"file": name} if name else {}), "error": str(e)})
    return out


def _dicom_info(header: dict, file_bytes: int) -> dict:
    source = header.get("source", {})
    if source.get("format") != "dicom":
        return {}
    from .dicom_archive import info_fields

    return info_fields(source.get("metadata"), file_bytes)


def cmd_info(args: argparse.Namespace) -> int:
    """The header and index in words (``--json``: as they are); a damaged chunk, as ``verify`` would find it, is
    said too and makes the exit status 1, the rest still shown; a chunk of a codec or version this lvpnet does
    not know (a newer writer's) is said once, as a note: the file is not damaged."""
    info = info_dict(args.input)
    damaged = info.get("damaged_slices", [])
    files = info.get("damaged_files", [])
    status = 1 if damaged or files else 0
    for d in damaged[:5]:
        print(f"lvpnet: damaged: {printable(d['error'])} (lvpnet verify checks every slice)", file=sys.stderr)
    if len(damaged) > 5:
        print(f"lvpnet: damaged: {len(damaged) - 5} more slices", file=sys.stderr)
    for d in files[:5]:
        print(f"lvpnet: damaged: {printable(d['error'])}", file=sys.stderr)
    if len(files) > 5:
        print(f"lvpnet: damaged: {len(files) - 5} more file records", file=sys.stderr)
    damaged = damaged + files  # the JSON error names the first of either
    if args.json:
        if damaged:  # the exit status said in the object too, as every failure's (README, --json)
            more = len(damaged) - 1
            info = {**info, "error": f"damaged: {damaged[0]['error']}"
                    + (f" (and {more} more)" if more else ""), "exit_code": status}
        print(json.dumps(_strict(info)))
        return status
    keys = ["file", "format_version", "writer", "shape", "dtype", "rgb", "slices", "spacing", "source_format", "codecs",
            "coded_against_previous", "model", "constriction_version", "original_bytes", "file_bytes",
            "bits_per_sample", "ratio"]
    keys += [k for k in ("archived_files", "dicom_image_files", "other_files", "dicom_source_bytes", "dicom_ratio",
                         "transfer_syntax_changed", "photometric_changed", "carried_verbatim", "lossy_source_files",
                         "not_archived") if info.get(k)]
    width = max(len(k) for k in keys)  # one column of names, however long the longest
    for key in keys:
        value = _plain(info[key])
        if key == "model" and info[key]:
            from .codecs.weights import weights_for_model

            known = weights_for_model(info[key])
            value = f"sha256 {value}" + (f" (the weights {known.name} shipped with lvpnet)" if known else
                                         " (weights not shipped with this lvpnet)")
        elif key in ("ratio", "dicom_ratio") and info.get("dicom_source_bytes"):  # two ratios: which is which
            # (a small series' pixels are a fraction of the file that keeps every header: its ratio read below 1)
            value += (" (the source files against this file)" if key == "dicom_ratio" else
                      " (the pixels alone against this file, which keeps every DICOM header too)")
        elif key == "ratio":  # the values', not a source file's: a .nii.gz or .npz was smaller than its values
            value += " (the values against this file, not against the size of the file they came from)"
        elif key == "bits_per_sample" and info.get("dicom_source_bytes"):
            value += " (this file's bits per sample, every DICOM header included)"
        elif key == "original_bytes":
            value += " (the values, as stored)"
        print(f"{key:>{width}}: {printable(value, lines=False)}")  # names come from the file: never raw
    unread = info.get("unreadable_slices", [])
    if unread:  # said once: every slice of a newer writer's file says the same
        print(f"lvpnet: note: {len(unread)} of {info['slices']} slices cannot be read by this lvpnet: "
              f"{printable(unread[0]['error'])}", file=sys.stderr)
    return status


def _plain(value) -> str:
    """A value of ``info`` in words, not Python's repr (``--json`` gives the values as they are)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_plain(v)}" for k, v in value.items()) or "-"
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return " x ".join(str(v) if isinstance(v, int) else f"{v:.7g}" for v in value) if value else "-"
        return ", ".join(_plain(v) for v in value) or "-"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.7g}"  # a float32 spacing, 0.9 rather than 0.8999999761581421
    return str(value)


def cmd_verify(args: argparse.Namespace) -> int:
    from .dicom_archive import info_fields
    from .lvpfile import LvpFile

    lvp = LvpFile(args.input)
    files = run(lvp.iter_verify(workers=args.workers), ProgressBar())
    others = info_fields(lvp.header.get("source", {}).get("metadata"))["other_files"] if files else 0
    extra = f", {_files_phrase(files, others, ' rebuilt, each matching its SHA-256')}" if files else ""
    n = len(lvp)
    print(f"{args.input}: OK ({n} slice{'' if n == 1 else 's'}{extra}, every checksum matches)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(keep=args.keep)


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import bench_paths, format_table

    if args.plot:
        from .bench_plot import check_can_plot

        check_can_plot(args.plot)  # before the bench's long work
    rep = run(bench_paths(args.inputs, codec=args.codec, series=args.series, rgb=args.rgb,
                          on_note=lambda note: print(f"lvpnet: note: {note}", file=sys.stderr)), ProgressBar())
    if args.plot:
        from .bench_plot import plot_bits

        plot_bits(rep, args.plot)
    if args.json:
        print(json.dumps(rep))
    else:
        print(format_table(rep))
        if args.plot:
            print(f"chart: {args.plot}")
    return 0


def cmd_archive(args: argparse.Namespace) -> int:
    from .archiver.command import run_archive

    return run_archive(args)


def cmd_restore(args: argparse.Namespace) -> int:
    from .archiver.command import run_restore

    return run_restore(args)


CODEC_HELP = ("slice codec (default: lvpnet for integers up to 16 bits when the shipped weights won on val, "
              "else fallback, the fast one); with lvpnet, each slice is kept by the fallback where that is smaller "
              "(the safety net)")


MAX_MEMORY_HELP = ("the most memory a file may make lvpnet allocate, e.g. 8G (default: 256 MiB or 4096 times "
                   "the file's size, whichever is more; also LVPNET_MAX_MEMORY)")
COMPRESS_MAX_MEMORY_HELP = (MAX_MEMORY_HELP + "; here, what reading the input may take (the verification of "
                            "the output it wrote from memory is not held to it)")


WORKERS_HELP = ("processes that code the slices of a learned-codec volume in parallel (default: one per core "
                "for volumes of 8 slices or more and enough work to pay for starting them; also LVPNET_WORKERS; "
                "1: none)")


def _workers(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of workers (1 or more)")
    return n


def _size(text: str) -> int:
    from .limits import parse_size

    try:
        size = parse_size(text)
    except LvpnetError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if size < 1:  # '0.5' is 0 bytes: said as given ("not 0" read as a typo of ours)
        raise argparse.ArgumentTypeError(f"{text!r} is {size} bytes: give a size above 0 (examples: 4G, 512M)")
    return size


class _Parser(argparse.ArgumentParser):
    """argparse's parser, keeping the message that refused a command line (``main`` prints it as JSON for
    ``--json``); its subcommands' parsers are of this class too (``add_subparsers`` takes the parent's)."""

    refused: str | None = None

    def error(self, message: str):
        _Parser.refused = message  # bare, as every other --json error
        super().error(message)


def _asks_json(words: list[str]) -> bool:
    """Whether a command line asks for --json (before any '--'), as argparse reads it: '--js' is short for it."""
    words = words[: words.index("--")] if "--" in words else words
    return any(len(w) >= 4 and "--json".startswith(w) for w in words)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="lvpnet", description="Lossless compression of medical images and volumes.")
    p.add_argument("--version", action="version", version=f"lvpnet {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser("compress", help="compress a .npy, .npz, NIfTI or DICOM input to .lvp")
    c.add_argument("input", help=".npy, .npz (one array), .nii, .nii.gz, a .dcm file or a DICOM folder")
    c.add_argument("output", help="the .lvp file to write")
    c.add_argument("--rgb", action="store_true", help="the last axis of 3 of a .npy or .npz input is colour")
    c.add_argument("--series", metavar="UID", help="the series to take from a DICOM folder holding several")
    c.add_argument("--codec", choices=codecs.known(), help=CODEC_HELP + " unless --no-safety-net")
    c.add_argument("--device", choices=("auto", "cpu", "cuda"),
                   help="where the learned codec runs (default: LVPNET_DEVICE when set, else auto)")
    c.add_argument("--no-verify", action="store_true", help="skip decoding the output before it is put in place")
    c.add_argument("--no-safety-net", action="store_true",
                   help="keep every slice the learned codec codes, even where the fallback would be smaller (what "
                        "BENCHMARKS.md's 'learned codec alone' measures)")
    c.add_argument("--allow-lossy-source", action="store_true",
                   help="accept DICOM files whose pixel data went through lossy compression")
    c.add_argument("--json", action="store_true", help="print one JSON object with sizes, ratio and times")
    c.add_argument("--follow-symlinks", action="store_true",
                   help="read the files that symbolic links in an input folder point to (default: skip links)")
    c.add_argument("--max-memory", type=_size, metavar="SIZE", help=COMPRESS_MAX_MEMORY_HELP)
    c.add_argument("--workers", type=_workers, metavar="N", help=WORKERS_HELP)
    c.set_defaults(func=cmd_compress)

    d = sub.add_parser("decompress", help="restore a .lvp to .npy, .nii or .nii.gz, or its DICOM files to a folder")
    d.add_argument("input", help="the .lvp file to restore")
    d.add_argument("output", help=".npy, .nii, .nii.gz; for a DICOM source a new folder (or .dcm for one file)")
    d.add_argument("--max-memory", type=_size, metavar="SIZE", help=MAX_MEMORY_HELP)
    d.add_argument("--workers", type=_workers, metavar="N", help=WORKERS_HELP)
    d.add_argument("--json", action="store_true", help="print one JSON object (what was written, seconds)")
    d.set_defaults(func=cmd_decompress)

    i = sub.add_parser("info", help="what a .lvp holds")
    i.add_argument("input", help="the .lvp file")
    i.add_argument("--json", action="store_true", help="print one JSON object (shape, dtype, codecs, sizes, bits per sample, source format)")
    i.set_defaults(func=cmd_info)

    v = sub.add_parser("verify", help="decode every slice and check every checksum")
    v.add_argument("input", help="the .lvp file to check")
    v.add_argument("--max-memory", type=_size, metavar="SIZE", help=MAX_MEMORY_HELP)
    v.add_argument("--workers", type=_workers, metavar="N", help=WORKERS_HELP)
    v.set_defaults(func=cmd_verify)

    m = sub.add_parser("demo", help="compress the bundled sample scan and compare with JPEG-XL and JPEG-LS")
    m.add_argument("--keep", metavar="DIR", help="keep the .lvp in this folder")
    m.set_defaults(func=cmd_demo)

    b = sub.add_parser("bench", help="bits per sample and speed of lvpnet against six classical codecs")
    b.add_argument("inputs", nargs="+", metavar="INPUT", help=".npy, .npz, .nii, .nii.gz, .lvp, a .dcm file or a DICOM folder")
    b.add_argument("--codec", choices=codecs.known(), help=CODEC_HELP)
    b.add_argument("--series", metavar="UID", help="the series to take from DICOM folders holding several")
    b.add_argument("--rgb", action="store_true", help="a last axis of 3 in .npy / .npz input is colour (as compress --rgb); other inputs stay grey")
    b.add_argument("--json", action="store_true", help="print one JSON object (per-input records and totals)")
    b.add_argument("--plot", metavar="OUT.png", help="write a bar chart of bits per sample (PNG)")
    b.set_defaults(func=cmd_bench)

    from .archiver.command import add_parsers  # lvpnet archive / lvpnet restore

    add_parsers(sub, cmd_archive, cmd_restore, CODEC_HELP, MAX_MEMORY_HELP + " (in every worker)", _size)
    for command in sub.choices.values():  # also after the command (`lvpnet compress ... --debug`)
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show the traceback of an error (the exit code stays the error's)")
    return p


class _NamedStdout:
    """``sys.stdout`` whose write errors name it: "No space left on device" alone, after a compress whose
    file was written, read as the compress failing."""

    def __init__(self, stream):
        self._stream = stream

    def _named(self, call, *args):
        try:
            return call(*args)
        except OSError as e:
            if not isinstance(e, BrokenPipeError) and e.filename is None:
                e.filename = "standard output (the command's own work is done)"
            raise

    def write(self, text):
        return self._named(self._stream.write, text)

    def flush(self):
        return self._named(self._stream.flush)

    def __getattr__(self, name):
        return getattr(self._stream, name)


@contextlib.contextmanager
def _stdout_named():
    real = sys.stdout
    sys.stdout = _NamedStdout(real)
    try:
        yield
    finally:
        sys.stdout = real


def _json_error(args: argparse.Namespace, message: str, code: int) -> None:
    """With ``--json``, a refused or failed command's words on stdout too, as the one JSON object a script reads
    (stdout was empty: a script had to tell an error from a crash by stderr's text)."""
    if getattr(args, "json", False):
        try:
            print(json.dumps({"error": message, "exit_code": code}))
        except OSError:  # stdout gone too: stderr said it
            pass


def _sizes_joined(argv: list[str]) -> list[str]:
    """``--max-memory -5G`` as ``--max-memory=-5G``: argparse takes a word starting with '-' that is not a plain
    negative number for an option ("expected one argument"); joined, the size's own check says what is wrong."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] == "--max-memory" and i + 1 < len(argv) and re.match(r"-\d", argv[i + 1]):
            out.append(f"--max-memory={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    from .atomic import signals_interrupt
    from .limits import set_max_memory

    for name in ("stdout", "stderr"):  # started with one closed (cron, a daemon: `2>&-`): Python sets it to None
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w"))  # noqa: SIM115 - for the life of the process
    # lvpnet's own warnings (a slice left to the fallback for want of memory, workers that cannot start) as
    # one line each, like its other messages, not Python's "file:line: UserWarning:" form
    warnings.formatwarning = lambda message, *_a, **_k: f"lvpnet: warning: {message}\n"
    words = _sizes_joined(sys.argv[1:] if argv is None else argv)
    _Parser.refused = None
    try:
        args = build_parser().parse_args(words)
    except SystemExit:
        # a command line refused before any command ran (an unknown --codec, --workers 0): with --json, the one
        # JSON object a script reads, as for every other refusal (stdout held nothing but argparse's usage on stderr)
        if _Parser.refused is not None and _asks_json(words):
            _json_error(argparse.Namespace(json=True), _Parser.refused, 2)
        raise
    # SIGTERM and SIGHUP (a scheduler, a closed terminal) clean up like Ctrl-C: no temporary file left
    with signals_interrupt():
        try:
            if getattr(args, "max_memory", None) is not None:
                set_max_memory(args.max_memory)
            with _stdout_named():
                rc = args.func(args)
                sys.stdout.flush()  # what was printed, written now: a full disk is said here, not lost at exit
            return rc
        except LvpnetError as e:
            if args.debug:
                traceback.print_exc()
            print(f"lvpnet: {printable(str(e))}", file=sys.stderr)
            _json_error(args, str(e), e.exit_code)
            return e.exit_code
        except KeyboardInterrupt as e:
            signum = getattr(e, "signum", signal.SIGINT)
            print(f"lvpnet: interrupted ({signal.Signals(signum).name}); nothing was written", file=sys.stderr)
            return 128 + signum
        except BrokenPipeError:  # ``lvpnet info x.lvp | head``: the reader left; stop quietly, as a pipe's writer does
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush cannot fail again
            return 128 + signal.SIGPIPE
        except OSError as e:
            if args.debug:
                traceback.print_exc()
            where = f"{e.filename}: " if getattr(e, "filename", None) else ""
            print(f"lvpnet: {where}{e.strerror or e}", file=sys.stderr)
            _json_error(args, f"{where}{e.strerror or e}", 2)
            return 2
        except MemoryError:
            print("lvpnet: out of memory (--workers 1 holds one slice at a time; to compress, --codec fallback "
                  "needs a tenth of the learned codec's memory)", file=sys.stderr)
            return 2
        except Exception as e:  # a bug: say so briefly, the traceback is one flag away
            if args.debug:
                traceback.print_exc()
            print(f"lvpnet: internal error: {type(e).__name__}: {e} (run with --debug for details)", file=sys.stderr)
            return 3
        finally:
            set_max_memory(None)


def _ended(signum, frame) -> None:
    """A signal after the command has ended (its output in place, its last line printed) while Python exits
    (joining the workers takes a moment): let pass. Python's default gave exit 143 after "ctseries.lvp ->
    out: 6 DICOM files", which a script takes for a failure whose output then blocks its rerun."""


def entry() -> int:
    """The ``lvpnet`` command: ``main``, with Ctrl-C, SIGTERM and SIGHUP let pass outside its run (``main``
    turns them into a clean interruption while it runs, then gives ``_ended`` back), and ignored once it has
    returned: Python's exit puts its own handlers back to the default before it tears torch down, which
    takes a moment too. Ignored only then: an ignored signal stays ignored in a process started from this
    one, and a worker could no longer be stopped."""
    ends = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    for signum in ends:
        signal.signal(signum, _ended)
    rc = main()
    for signum in ends:
        signal.signal(signum, signal.SIG_IGN)
    return rc


if __name__ == "__main__":
    sys.exit(entry())

