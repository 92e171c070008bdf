"""A volume with 1 thread, 2 threads in one process, and 2 worker processes (`--workers 2`).

    .venv/bin/python benchmarks/workers.py [--slices 24] [--rounds 2] [--load 0] [--out benchmarks/workers.md]

Issue 20's target for 2 cores: at least 1.6x one thread's speed on a volume when the machine is
idle, and never slower than one thread when it is loaded. Each configuration runs the real
commands in fresh processes, start-up and weights included: `lvpnet compress` (learned codec,
safety net and verification included) and `lvpnet decompress`, on --slices slices of the bundled
sample CT (its 12 slices repeated), while --load busy-looping processes keep cores busy.
Configurations are interleaved round by round. Each is reported by its best round and, since a
shared host can move one configuration's time by a quarter within minutes, by the median of the
per-round speeds (each round's time against that round's one-thread time): run several rounds.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LVPNET = str(Path(sys.executable).with_name("lvpnet"))

CONFIGS = {  # name: (environment, command-line arguments)
    "1 thread": ({"OMP_NUM_THREADS": "1"}, ["--workers", "1"]),
    "2 threads, one process": ({"OMP_NUM_THREADS": "2"}, ["--workers", "1"]),
    "2 worker processes": ({"OMP_NUM_THREADS": "1"}, ["--workers", "2"]),
}


def _spin() -> None:
    while True:
        pass


def _timed(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([LVPNET, *args], env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slices", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--load", type=int, default=0, help="busy-looping processes beside the command")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "workers.md"))
    args = ap.parse_args(argv)

    import lvpnet

    ct = np.asarray(lvpnet.read(ROOT / "resources" / "sample_ct.nii.gz").array)
    vol = np.concatenate([ct] * (-(-args.slices // len(ct))))[: args.slices]
    tmp = Path(tempfile.mkdtemp())
    npy = tmp / "ct.npy"
    np.save(npy, vol)
    spinners = [mp.Process(target=_spin, daemon=True) for _ in range(args.load)]
    for p in spinners:
        p.start()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in CONFIGS}
    try:
        for r in range(args.rounds):
            for name, (overrides, extra) in CONFIGS.items():
                env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "LVPNET_WORKERS")}
                env.update(overrides)
                lvp, back = tmp / "out.lvp", tmp / "back.npy"
                lvp.unlink(missing_ok=True)
                back.unlink(missing_ok=True)
                te = _timed(["compress", str(npy), str(lvp), *extra], env)
                td = _timed(["decompress", str(lvp), str(back), *extra], env)
                assert np.array_equal(np.load(back), vol)
                times[name].append((te, td))
                print(f"round {r + 1}: {name}: compress {te:.1f} s, decompress {td:.1f} s", flush=True)
    finally:
        for p in spinners:
            p.terminate()
    base = times["1 thread"]
    be, bd = (min(t[i] for t in base) for i in (0, 1))

    def median_speed(ts: list, i: int) -> float:
        return float(np.median([b[i] / t[i] for b, t in zip(base, ts)]))

    lines = [
        "# A volume with 1 thread, 2 threads and 2 worker processes",
        "",
        f"`benchmarks/workers.py --slices {args.slices} --rounds {args.rounds} --load {args.load}`, "
        f"{time.strftime('%Y-%m-%d %H:%M')} UTC, {platform.machine()}, {os.cpu_count()} cores, {args.load} "
        f"busy-looping process(es) beside the commands. {args.slices} slices of 512 x 512 int16 (the sample CT "
        "repeated), learned codec; `compress` includes the safety net and verification; whole commands timed, "
        "start-up and weights included; configurations interleaved round by round. Speed: the best round against "
        "one thread's best, and the median over the rounds of each round's speed against that round's one thread.",
        "",
        "| configuration | compress (s), best | speed, best | speed, median | decompress (s), best | speed, best "
        "| speed, median |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, ts in times.items():
        e, d = min(t[0] for t in ts), min(t[1] for t in ts)
        lines.append(f"| {name} | {e:.1f} | {be / e:.2f}x | {median_speed(ts, 0):.2f}x | {d:.1f} | {bd / d:.2f}x "
                     f"| {median_speed(ts, 1):.2f}x |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
