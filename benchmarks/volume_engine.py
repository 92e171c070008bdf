"""End-to-end speed of `lvpnet` on a 256 x 512 x 512 int16 volume, CPU or GPU, in one call.

    here:    .venv/bin/python benchmarks/volume_engine.py --prepare .volbench
             # .volbench/: sources.npy (4 real 512 x 512 CT slices from ../shared/data/train, 2 MB) and
             # the wheels the device lacks (constriction, imagecodecs: 27 MB); the checkout is 34 MB, so
             # the call stays under the device's 64 MiB. `echo /.volbench/ >> .git/info/exclude` once.
    device:  python3 -m pip install -q --no-index --no-deps --target /tmp/site .volbench/*.whl && \\
             mkdir -p /tmp/pkg && cp -r src/lvpnet /tmp/pkg/ && cp -r resources /tmp/pkg/lvpnet/resources && \\
             PYTHONPATH=/tmp/site:/tmp/pkg PYTHONUNBUFFERED=1 python3 benchmarks/volume_engine.py --run .volbench \\
                 --device cuda --budget-s 420 --out $OUT/volume_engine.json           (carry: .volbench)
             # /tmp/pkg lays the package out as an install does (resources/ inside lvpnet/, for the weights)
    CPU:     .venv/bin/python benchmarks/volume_engine.py --run .volbench --device cpu --budget-s 120 \\
                 --md benchmarks/volume_engine.md

The volume: 256 slices, each one of the source slices under one of the 8 flips and rotations of the
square and one of 8 circular shifts, so that no slice repeats the one before it (bitstream 8 codes each
slice against the one before; an exact repeat would cost nothing and flatter the figures).

What is timed, end to end through the public API (`lvpnet.compress` and `lvpnet.decompress`: container,
learned codec with the per-slice safety net, entropy coding): encode without verification, then decode
(which checks every chunk's CRC and slice hash) and a comparison with the input, reported apart. The
engine of today codes about 0.1-0.5 Mpixel/s, so a whole 256-slice volume does not fit a 15-minute GPU
lease: ``--budget-s`` (default 420) sizes the volume from a 2-slice probe (a multiple of 8 slices, at
most 256) and the report says how many slices were run. Then the portability check: the first 8 slices
(one reference run) encoded on the device decode exactly on the CPU, and the CPU's file on the device.
GPU memory: torch's peak allocation. Then ``--pools`` (default ``same:auto``): the same volume by a pool
of processes (``slice_pool``: one per core, on a GPU bounded by its free memory), each running the learned
codec on the device named (``cpu``, ``cuda``, ``same`` as ``--device``); on a GPU machine the per-slice
fits, tables, entropy coding and the safety net's JPEG-XL run on the CPU, so the GPU session runs
``same:auto,cpu:auto`` to see what the GPU adds. On a GPU each process walks its slices in lock-step
(``slice_pool.lanes``, from the free GPU memory: one network call per sub-image step for a batch of slices,
``Engine.run_lanes``); the report gives the lanes of each run, and the first 8 slices timed in lanes and one
slice at a time. ``--profile``: where one process's time goes (cProfile of
2 slices). Exit status 0 when every decode is exact.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SIDE = 512
FULL = 256
RUN = 8  # compressor.REFERENCE_RUN: the portability check takes one whole run


# ---------------------------------------------------------------- preparing (here)


def source_slices(n: int, data: Path = SHARED) -> np.ndarray:
    """``n`` real 512 x 512 CT slices from train (never val), evenly spread over the CT arrays that have them."""
    manifest = json.loads((data / "manifest.json").read_text())
    entries = manifest["items"]
    picked = []
    for e in sorted(entries, key=lambda e: e["id"]):
        if e.get("split") != "train" or e.get("modality") != "CT" or e.get("rgb"):
            continue
        if list(e["shape"][-2:]) != [SIDE, SIDE] or np.dtype(e["dtype"]).kind not in "iu":
            continue
        with np.load(data / e["file"]) as z:
            a = z["image"].reshape(-1, SIDE, SIDE)
        picked.append(a[len(a) // 2])
    if len(picked) < n:
        raise SystemExit(f"only {len(picked)} 512 x 512 CT arrays in train; asked for {n}")
    step = len(picked) / n
    return np.stack([picked[int(i * step)] for i in range(n)]).astype(np.int16)


def prepare(folder: Path, n: int, data: Path = SHARED, python_version: str = "3.12") -> None:
    """``folder``: sources.npy and the two wheels the device lacks, for its Python (``python_version``: 3.12
    on the lent machines; ``scripts/gpu_smoke.sh`` asks for this machine's)."""
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "sources.npy", source_slices(n, data))
    import imagecodecs

    for old in folder.glob("*.whl"):
        old.unlink()
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version", python_version,
         "--implementation", "cp", "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
         "--platform", "manylinux2014_x86_64", "-d", str(folder), "constriction==0.5.0",
         f"imagecodecs=={imagecodecs.__version__}"],
        check=True,
    )
    print("prepared", folder, sorted(os.listdir(folder)))


# ---------------------------------------------------------------- running (here or on the device)


def build_volume(sources: np.ndarray, n: int) -> np.ndarray:
    """Slice k: source k % S, flipped/rotated by (k // S) % 8, shifted by (k // (8 S)) % 8 steps of 61 pixels."""
    S = len(sources)
    out = np.empty((n, SIDE, SIDE), dtype=sources.dtype)
    for k in range(n):
        a = sources[k % S]
        t = (k // S) % 8
        a = np.rot90(a, t % 4)
        if t >= 4:
            a = a[:, ::-1]
        shift = 61 * ((k // (8 * S)) % 8)
        out[k] = np.roll(a, (shift, 2 * shift), axis=(0, 1))
    return out


def _timed(fn, sync):
    sync()
    t = time.perf_counter()
    out = fn()
    sync()
    return out, time.perf_counter() - t


def run(folder: Path, device: str, budget_s: float, slices: int | None, pools: str = "", profile: bool = False,
        save=lambda report: None) -> dict:
    import torch

    import lvpnet
    from lvpnet import codecs

    cuda = device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    learned = codecs.get_codec("lvpnet")
    learned.device = device
    sources = np.load(folder / "sources.npy")
    from lvpnet import slice_pool

    report = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": torch.cuda.get_device_name(0) if cuda else f"{platform.machine()} CPU, {os.cpu_count()} cores",
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "lvpnet": lvpnet.__version__,
        "model": learned.model_id(),
        "bitstream_version": learned.version,
        # slices walked in lock-step by one process (``Engine.run_lanes``; 1 on the CPU)
        "lanes": slice_pool.lanes(device, SIDE * SIDE),
    }
    probe = build_volume(sources, 2)
    lvpnet.compress(probe[:1], verify=False)  # warm-up: weights, cuDNN, allocator
    _, t_probe = _timed(lambda: lvpnet.decompress(lvpnet.compress(probe, verify=False)), sync)
    sized_by = "--slices" if slices else f"--budget-s {budget_s:g}"
    if slices is None:  # what fits the budget, in whole reference runs (half of it with pools after)
        serial_s = budget_s / 2 if pools else budget_s
        slices = int(min(FULL, max(RUN, serial_s / (t_probe / 2) // RUN * RUN)))
    volume = build_volume(sources, slices)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    try:
        data, t_enc = _timed(lambda: lvpnet.compress(volume, verify=False), sync)
        decoded, t_dec = _timed(lambda: lvpnet.decompress(data), sync)
        exact = bool(np.array_equal(decoded, volume))
    except Exception as e:  # noqa: BLE001 - the lanes are new and unmeasured on a GPU: a session's figures still come back
        if report["lanes"] <= 1:
            raise
        report["lanes_error"] = f"{type(e).__name__}: {e}"
        print(f"lanes failed ({report['lanes_error']}): again one slice at a time", flush=True)
        os.environ[slice_pool.LANES_ENV] = "1"
        report["lanes"] = 1
        data, t_enc = _timed(lambda: lvpnet.compress(volume, verify=False), sync)
        decoded, t_dec = _timed(lambda: lvpnet.decompress(data), sync)
        exact = bool(np.array_equal(decoded, volume))
    pix = volume.size / 1e6
    f = lvpnet.open(data)
    report.update(
        slices=slices,
        sized_by=sized_by,
        shape=list(volume.shape),
        probe_seconds_per_slice=round(t_probe / 2, 3),
        file_bytes=len(data),
        bits_per_sample=round(8 * len(data) / volume.size, 4),
        codec_counts=f.codec_counts(),
        encode_seconds=round(t_enc, 2),
        decode_and_check_seconds=round(t_dec, 2),
        encode_mpix_s=round(pix / t_enc, 3),
        decode_mpix_s=round(pix / t_dec, 3),
        exact=exact,
    )
    report["all_exact"] = exact
    save(report)  # the timed volume's figures kept at once: a GPU session's kill before the checks below lost them
    print(json.dumps({k: report[k] for k in ("slices", "encode_mpix_s", "decode_mpix_s", "exact")}), flush=True)
    if cuda:
        report["gpu_peak_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        run_ = volume[:RUN]
        on_gpu = lvpnet.compress(run_, verify=False)
        learned.device = "cpu"
        on_cpu = lvpnet.compress(run_, verify=False)
        report["gpu_file_decodes_on_cpu"] = bool(np.array_equal(lvpnet.decompress(on_gpu), run_))
        learned.device = "cuda"
        report["cpu_file_decodes_on_gpu"] = bool(np.array_equal(lvpnet.decompress(on_cpu), run_))
        report["same_bytes_cpu_gpu"] = on_gpu == on_cpu
        exact = exact and report["gpu_file_decodes_on_cpu"] and report["cpu_file_decodes_on_gpu"]
    if profile:  # before the pools: the GPU session's first question, kept if a pool runs out of time
        report["profile"] = _profile(volume[:2], sync)
    if report["lanes"] > 1:  # what the lanes buy: a reference run in lanes and one slice at a time
        report["all_exact"] = exact
        save(report)  # the figures so far kept even if this runs past the session's end
        report["lanes_against_one"] = _lanes_against_one(volume[:RUN], report["lanes"], sync)
    if pools:
        report["all_exact"] = exact
        save(report)  # the one-process figures kept even if a pool runs past the session's end
        report["pools"] = []
        for dev, n in _pool_plan(pools, device, slices):
            report["pools"].append(_pooled(volume, data, learned, dev, n, sync))
            exact = exact and report["pools"][-1]["exact"]
            report["all_exact"] = exact
            save(report)
    report["all_exact"] = exact
    return report


def _lanes_against_one(vol: np.ndarray, lanes: int, sync) -> dict:
    """``vol`` compressed and decompressed in ``lanes`` lanes and one slice at a time (``LVPNET_LANES``),
    one after the other: Mpixel/s both ways, and whether the files are the same."""
    import lvpnet
    from lvpnet import slice_pool

    before = os.environ.get(slice_pool.LANES_ENV)
    best: dict = {}
    files: dict = {}
    try:
        for n in (lanes, 1):
            os.environ[slice_pool.LANES_ENV] = str(n)
            data, t_enc = _timed(lambda: lvpnet.compress(vol, verify=False), sync)
            _, t_dec = _timed(lambda data=data: lvpnet.decompress(data), sync)
            files[n] = data
            e, d = best.get(n, (1e9, 1e9))
            best[n] = (min(e, t_enc), min(d, t_dec))
    finally:
        if before is None:
            os.environ.pop(slice_pool.LANES_ENV, None)
        else:
            os.environ[slice_pool.LANES_ENV] = before
    pix = vol.size / 1e6
    return {"slices": len(vol), "same_bytes": files[lanes] == files[1],
            **{f"{'lanes' if n > 1 else 'one'}_{k}_mpix_s": round(pix / t, 3)
               for n, (te, td) in best.items() for k, t in (("encode", te), ("decode", td))}}


def _pooled(volume: np.ndarray, serial: bytes, learned, device: str, n: int, sync) -> dict:
    """The same volume coded by ``n`` processes (``slice_pool``: this one and ``n - 1`` workers, each
    running the learned codec on ``device``), the file written and decoded back from disk as the
    command does. The pool is started by an untimed warm-up of ``n`` slices (about 2 s a worker),
    so the figures are a running pool's; the bytes must equal the serial run's (bitstream 8 codes
    against the slice before within a run, identically in any process)."""
    import tempfile

    import lvpnet
    from lvpnet.lvpfile import LvpFile
    from lvpnet.progress import run as drain

    before = learned.device
    learned.device = device
    try:
        lvpnet.compress(volume[: min(n, len(volume))], verify=False, workers=n)  # warm-up: the workers start
        data, t_enc = _timed(lambda: lvpnet.compress(volume, verify=False, workers=n), sync)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "v.lvp"
            path.write_bytes(data)
            decoded, t_dec = _timed(lambda: drain(LvpFile(path).iter_decode(workers=n)), sync)
    finally:
        learned.device = before
    pix = volume.size / 1e6
    from lvpnet import slice_pool

    return {
        "device": device,
        "processes": n,
        "lanes": slice_pool.lanes(device, SIDE * SIDE, n),
        "encode_seconds": round(t_enc, 2),
        "decode_and_check_seconds": round(t_dec, 2),
        "encode_mpix_s": round(pix / t_enc, 3),
        "decode_mpix_s": round(pix / t_dec, 3),
        "same_bytes_as_serial": data == serial,
        "exact": bool(np.array_equal(decoded, volume)),
    }


def _profile(vol: np.ndarray, sync, top: int = 30) -> str:
    """Where one process's time goes: cProfile of the serial encode and decode of ``vol``, the
    ``top`` functions by their own time (the GPU run's first question is what is left on the CPU)."""
    import cProfile
    import io
    import pstats

    import lvpnet

    prof = cProfile.Profile()
    prof.enable()
    lvpnet.decompress(lvpnet.compress(vol, verify=False))
    sync()
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def _pool_plan(spec: str, device: str, slices: int) -> list[tuple[str, int]]:
    """``--pools``: comma-separated ``DEVICE:N`` (N a number or ``auto``: ``slice_pool.workers``)."""
    from lvpnet import slice_pool

    plan = []
    for item in filter(None, (p.strip() for p in spec.split(","))):
        dev, _, n = item.partition(":")
        dev = device if dev == "same" else dev
        plan.append((dev, slice_pool.workers(slices, None if n in ("", "auto") else int(n), dev)))
    return plan


def markdown(rep: dict) -> str:
    lines = [
        "# The engine on a 512 x 512 int16 volume, end to end",
        "",
        f"`benchmarks/volume_engine.py --run ... --device {rep['device']}`, {rep['date']}, {rep['machine']}, "
        f"torch {rep['torch']}, torch threads: {rep['torch_threads']}, bitstream {rep['bitstream_version']}, "
        f"weights {str(rep['model'])[:12]}, slices walked in lock-step: {rep.get('lanes', 1)}. Default codec "
        f"(learned, per-slice safety net), container and entropy coding included; the decode column includes "
        f"every chunk's CRC and slice-hash check.",
        "",
        "| slices | encode s | encode Mpixel/s | decode s | decode Mpixel/s | bits/sample | exact |",
        "|---|---|---|---|---|---|---|",
        f"| {rep['slices']} | {rep['encode_seconds']} | {rep['encode_mpix_s']} | {rep['decode_and_check_seconds']} | "
        f"{rep['decode_mpix_s']} | {rep['bits_per_sample']} | {rep['exact']} |",
        "",
        f"Slices per codec: {rep['codec_counts']}. {rep['slices']} of the {FULL} slices were run "
        f"(`{rep['sized_by']}`; the budget sizes the volume from a 2-slice probe: here "
        f"{rep['probe_seconds_per_slice']} s a slice, encode and decode).",
    ]
    if "lanes_against_one" in rep:
        c = rep["lanes_against_one"]
        lines.append(
            f"The first {c['slices']} slices in {rep['lanes']} lanes against one slice at a time (one after the "
            f"other): encode {c['lanes_encode_mpix_s']} against {c['one_encode_mpix_s']} Mpixel/s, decode "
            f"{c['lanes_decode_mpix_s']} against {c['one_decode_mpix_s']} Mpixel/s; the same bytes: {c['same_bytes']}."
        )
    if "gpu_peak_memory_mib" in rep:
        lines.append(
            f"GPU peak memory {rep['gpu_peak_memory_mib']} MiB; one reference run of {RUN} slices encoded on the "
            f"GPU decodes exactly on the CPU: {rep['gpu_file_decodes_on_cpu']}, and the CPU's on the GPU: "
            f"{rep['cpu_file_decodes_on_gpu']} (same bytes: {rep['same_bytes_cpu_gpu']})."
        )
    if rep.get("pools"):
        lines += ["", "The same volume by a pool of processes (`slice_pool`; warm pool, file decoded from disk):", "",
                  "| device | processes | lanes each | encode s | encode Mpixel/s | decode s | decode Mpixel/s | same bytes "
                  "| exact |",
                  "|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {p['device']} | {p['processes']} | {p.get('lanes', 1)} | {p['encode_seconds']} | {p['encode_mpix_s']} | "
                  f"{p['decode_and_check_seconds']} | {p['decode_mpix_s']} | {p['same_bytes_as_serial']} | {p['exact']} |"
                  for p in rep["pools"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--prepare", metavar="DIR")
    g.add_argument("--run", metavar="DIR")
    ap.add_argument("--sources", type=int, default=4, help="--prepare: real slices to build the volume from")
    ap.add_argument("--data", type=Path, default=SHARED, help="--prepare: the shared corpus (its manifest.json)")
    ap.add_argument("--python-version", default="3.12", help="--prepare: the wheels' Python (the device's: 3.12)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cuda")
    ap.add_argument("--budget-s", type=float, default=420.0, help="sizes the volume to end within about this")
    ap.add_argument("--slices", type=int, help="run exactly this many slices instead (at most 256)")
    ap.add_argument("--pools", default="same:auto",
                    help="after the serial run, pools of processes: comma-separated DEVICE:N, DEVICE cpu, cuda or "
                         "same (--device), N a number or auto (one per core, bounded by GPU memory); '' for none")
    ap.add_argument("--profile", action="store_true", help="cProfile of 2 slices (serial), into the report")
    ap.add_argument("--out", help="the report as JSON")
    ap.add_argument("--md", help="the report as Markdown")
    args = ap.parse_args(argv)
    if args.prepare:
        prepare(Path(args.prepare), args.sources, args.data, args.python_version)
        return 0

    def save(rep: dict) -> None:
        if args.out:
            Path(args.out).write_text(json.dumps(rep, indent=1))

    rep = run(Path(args.run), args.device, args.budget_s, args.slices, args.pools, args.profile, save)
    print(json.dumps(rep, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(rep, indent=1))
    if args.md:
        Path(args.md).write_text(markdown(rep))
    return 0 if rep["all_exact"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
