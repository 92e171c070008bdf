"""`lvpnet compress` with 1 and 2 threads on a loaded machine, with OpenMP waiting passively
(lvpnet's default since it sets OMP_WAIT_POLICY=PASSIVE on import) and actively (the old default).

    .venv/bin/python benchmarks/threads.py [--slices 2] [--rounds 2] [--load 1] [--out benchmarks/threads.md]

Each configuration runs the real command (learned codec, verification included) on the first
--slices slices of the bundled sample CT, in a fresh process, while --load busy-looping processes
keep other cores busy, as on a user's workstation. Configurations are interleaved round by round
so that they see the same machine; the best round of each is reported.
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

CONFIGS = {  # name: environment overrides
    "1 thread": {"OMP_NUM_THREADS": "1"},
    "2 threads, passive wait (default)": {"OMP_NUM_THREADS": "2"},
    "2 threads, active wait (before)": {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "ACTIVE"},
}


def _spin() -> None:
    while True:
        pass


def _run(npy: Path, out: Path, overrides: dict[str, str]) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    env.update(overrides)
    out.unlink(missing_ok=True)
    start = time.perf_counter()
    subprocess.run([LVPNET, "compress", str(npy), str(out)], env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slices", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--load", type=int, default=1, help="busy-looping processes beside the command")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "threads.md"))
    args = ap.parse_args(argv)

    import lvpnet

    volume = lvpnet.read(ROOT / "resources" / "sample_ct.nii.gz")
    tmp = Path(tempfile.mkdtemp())
    npy = tmp / "ct.npy"
    np.save(npy, np.asarray(volume.array)[: args.slices])
    spinners = [mp.Process(target=_spin, daemon=True) for _ in range(args.load)]
    for p in spinners:
        p.start()
    times: dict[str, list[float]] = {name: [] for name in CONFIGS}
    try:
        for r in range(args.rounds):
            for name, overrides in CONFIGS.items():
                t = _run(npy, tmp / "out.lvp", overrides)
                times[name].append(t)
                print(f"round {r + 1}: {name}: {t:.1f} s", flush=True)
    finally:
        for p in spinners:
            p.terminate()
    base = min(times["1 thread"])
    lines = [
        "# `lvpnet compress` with 1 and 2 threads on a loaded machine",
        "",
        f"`benchmarks/threads.py --slices {args.slices} --rounds {args.rounds} --load {args.load}`, "
        f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores, "
        f"{args.load} busy-looping process(es) beside the command. The first {args.slices} slices of the "
        "sample CT (512 x 512 int16), learned codec, verification included, whole command timed "
        "(start-up and weights too); best of the rounds, configurations interleaved.",
        "",
        "| configuration | seconds (best) | all rounds | vs 1 thread |",
        "|---|---|---|---|",
    ]
    for name, ts in times.items():
        lines.append(f"| {name} | {min(ts):.1f} | {', '.join(f'{t:.1f}' for t in ts)} | {min(ts) / base:.2f}x |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
