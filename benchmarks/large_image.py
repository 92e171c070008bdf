"""One large 2-D image (a radiograph, a mammogram) compressed and decompressed in one process, with
one torch thread and with every core, as ``lvpnet compress`` / ``decompress`` run it.

    .venv/bin/python benchmarks/large_image.py [--ids plj_CR_kodak_hand fod_MG_siemens_mammomat]
        [--rounds 2] [--out benchmarks/large_image.md]

A volume's slices go to worker processes (``slice_pool``); a single image is one plane, so what a
second core gives it is the bands of each step (``model/band_threads.py``) and the safety net's
JPEG-XL beside the learned encoder (``compressor.code_slice``). Timed: ``lvpnet.compress`` with the
defaults (learned codec, safety net, verifying decode; ``workers=None`` as the command line) and a
fresh ``LvpFile``'s decode of the result; each image's best round per setting, the settings
alternated round by round (the machine's load hits both alike). The bytes must be the same with any
number of threads. Run it from another tree (``PYTHONPATH=other/src``) for a before/after.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--ids", nargs="+", default=["plj_CR_kodak_hand", "fod_MG_siemens_mammomat"])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    import torch

    import lvpnet
    from lvpnet.lvpfile import LvpFile

    cores = len(os.sched_getaffinity(0))
    settings = sorted({1, cores})
    best = {}
    images = {i: np.load(args.data / "val" / f"{i}.npz")["image"] for i in args.ids}
    lvpnet.compress(images[args.ids[0]][:64, :64])  # weights and numba loaded once, outside the timing
    for r in range(args.rounds):
        for n in settings:
            torch.set_num_threads(n)
            for i, a in images.items():
                t = time.perf_counter()
                data = lvpnet.compress(a, workers=None)
                enc = time.perf_counter() - t
                t = time.perf_counter()
                back = LvpFile(data).read_all()
                dec = time.perf_counter() - t
                assert np.array_equal(back, a)
                key = (i, n)
                old = best.get(key)
                best[key] = (min(enc, old[0]), min(dec, old[1]), data) if old else (enc, dec, data)
                print(f"round {r + 1} {i} threads {n}: compress {enc:.2f} s, decompress {dec:.2f} s", flush=True)
    lines = [
        "| image | shape | threads | compress, verified (s) | decompress (s) | bits/sample | same bytes |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, a in images.items():
        ref = best[(i, 1)][2]
        for n in settings:
            enc, dec, data = best[(i, n)]
            lines.append(f"| {i} | {'x'.join(map(str, a.shape))} | {n} | {enc:.2f} | {dec:.2f} | "
                         f"{8 * len(data) / a.size:.4f} | {data == ref} |")
    head = (f"`benchmarks/large_image.py --rounds {args.rounds}`, {time.strftime('%Y-%m-%d')}; "
            f"{platform.processor() or platform.machine()}, {cores} cores usable, torch {torch.__version__}, "
            f"lvpnet from {Path(lvpnet.__file__).parent}.")
    text = head + "\n\n" + "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
