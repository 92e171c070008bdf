"""`lvpnet archive` throughput with 1 and 2 local workers: series per second and MB/s, and the ratio.

    .venv/bin/python benchmarks/archive_throughput.py [--series 8] [--slices 6] [--rounds 2]
        [--workers 1 2] [--codec fallback] [--out benchmarks/archive_throughput.md]

The tree: --series DICOM series of --slices 512 x 512 int16 CT slices each (the bundled sample
CT's slices, written as Explicit VR Little Endian files with pydicom's CT_small.dcm as the
template), one series per study folder. Each configuration archives the whole tree into a fresh
DEST through the Python API on a local cluster of that many single-threaded worker processes (what
``--workers N`` starts), verification included. Timed: from the first task submitted to the last
result recorded (``work_seconds``), apart from starting the cluster and importing the codec in its
workers (``startup_seconds``, reported beside); the workers' CPU seconds are counted too. Configurations are
interleaved round by round so that they see the same machine; the best round of each is reported.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make_tree(root: Path, n_series: int, n_slices: int) -> int:
    """Write the DICOM tree; returns its bytes."""
    import numpy as np
    import pydicom
    from pydicom.data import get_testdata_file

    import lvpnet

    ct = lvpnet.read(ROOT / "resources" / "sample_ct.nii.gz").array  # (12, 512, 512) int16
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        template = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    total = 0
    for s in range(n_series):
        folder = root / f"study{s:03d}" / "ct"
        folder.mkdir(parents=True)
        uid = f"1.2.826.0.1.3680043.9.19.{s + 1}"
        for i in range(n_slices):
            ds = template.copy()
            ds.SeriesInstanceUID = uid
            ds.SOPInstanceUID = f"{uid}.{i + 1}"
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.InstanceNumber = i + 1
            ds.ImagePositionPatient = [0.0, 0.0, 2.5 * i]
            ds.Rows, ds.Columns = 512, 512
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
            ds.PixelData = np.ascontiguousarray(ct[(s + i) % ct.shape[0]], dtype="<i2").tobytes()
            path = folder / f"{i:04d}.dcm"
            ds.save_as(path)
            total += path.stat().st_size
    return total


def run_once(src: Path, dest: Path, workers: int, codec: str) -> dict:
    """Archive ``src`` on a local cluster of ``workers`` single-threaded processes (what ``--workers``
    starts), adding the CPU seconds the workers spent to the summary."""
    import logging

    from distributed import Client, LocalCluster

    import lvpnet
    from lvpnet.archiver.engine import _warm_up

    t0 = time.perf_counter()
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                      scheduler_kwargs={"dashboard": False}, silence_logs=logging.CRITICAL) as lc, Client(lc) as client:
        client.run(_warm_up)
        startup = time.perf_counter() - t0
        cpu0 = client.run(time.process_time)
        s = lvpnet.archive(src, dest, scheduler=client, codec=codec)
        cpu1 = client.run(time.process_time)
    s["cpu_seconds"] = sum(cpu1[k] - cpu0[k] for k in cpu1)
    s["startup_seconds"] = startup
    return s


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=8)
    ap.add_argument("--slices", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--codec", default="fallback")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "archive_throughput.md"))
    args = ap.parse_args(argv)

    import distributed


    tmp = Path(tempfile.mkdtemp(prefix="lvpnet-archive-bench-"))
    try:
        nbytes = make_tree(tmp / "src", args.series, args.slices)
        runs: dict[int, list[dict]] = {w: [] for w in args.workers}
        for r in range(args.rounds):
            for w in args.workers:
                dest = tmp / f"dest-{w}-{r}"
                load = os.getloadavg()[0]
                s = run_once(tmp / "src", dest, w, args.codec)
                assert s["failed"] == 0 and s["done"] == args.series, s
                s["load"] = load
                runs[w].append(s)
                print(f"round {r + 1}, {w} worker(s): {s['work_seconds']:.2f} s work, {s['cpu_seconds']:.2f} s worker CPU, "
                      f"{s['startup_seconds']:.2f} s start-up, load {load:.2f}", file=sys.stderr)
                shutil.rmtree(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    best = {w: min(rs, key=lambda s: s["work_seconds"]) for w, rs in runs.items()}
    base = args.workers[0]
    rows = []
    for w in args.workers:
        b = best[w]
        sec = b["work_seconds"]
        every = ", ".join(f"{s['work_seconds']:.2f}" for s in runs[w])
        rows.append(
            f"| {w} | {sec:.2f} | {every} | "
            f"{args.series / sec:.3f} | {nbytes / sec / 1e6:.2f} | {b['bytes_in'] / b['bytes_out']:.2f} | "
            f"{best[base]['work_seconds'] / sec:.2f}x | {b['cpu_seconds']:.2f} | "
            f"{nbytes / b['cpu_seconds'] / 1e6:.2f} | {b['startup_seconds']:.1f} |"
        )
    per_round = [
        runs[base][r]["work_seconds"] / runs[w][r]["work_seconds"] for w in args.workers[1:] for r in range(args.rounds)
    ]
    text = "\n".join([
        "# `lvpnet archive` throughput by local workers",
        "",
        f"`benchmarks/archive_throughput.py --series {args.series} --slices {args.slices} --rounds {args.rounds} "
        f"--workers {' '.join(map(str, args.workers))} --codec {args.codec}`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{machine()}; Python {platform.python_version()}, dask.distributed {distributed.__version__}.",
        "",
        f"Tree: {args.series} DICOM series x {args.slices} slices of 512 x 512 int16 (the sample CT's slices), "
        f"{nbytes / 1e6:.1f} MB. Codec `{args.codec}`, every output verified by decoding it. Work time from the "
        "first task to the last result recorded in the ledger; cluster start-up (worker processes, codec imports) apart. "
        f"Best of {args.rounds} interleaved rounds; load average (1 min) at the start of each run: "
        + "; ".join(f"{w} worker(s) " + ", ".join(f"{s['load']:.2f}" for s in runs[w]) for w in args.workers) + ".",
        "",
        "| workers | work s (best) | all rounds | series/s | MB/s | ratio (size) | throughput vs 1 | worker CPU s | "
        "MB per worker CPU s | start-up s |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Throughput ratio round by round (same round, 1 worker's time / more workers' time): "
        + ", ".join(f"{x:.2f}x" for x in per_round) + ". Worker CPU: the CPU seconds the worker processes spent "
        "during the work (all of them together), so MB per worker CPU second is the throughput of one worker "
        "on a core of its own, whatever else the machine ran.",
        "",
    ])
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
