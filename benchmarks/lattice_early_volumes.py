"""The encoder's early base-lattice choice (``coding.lattice_estimate``) on volumes coded as files code
them, each slice against the one before (bitstream 8's reference flags): bytes and encoder CPU time
with the early choice and with the exact choice only, slice by slice.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/lattice_early_volumes.py ID ... [--slices 8]

The val split codes every slice alone (``bitstream9_val.py``), so this is where the reference's
interplay with the early choice is measured; train and val volumes both serve (nothing is chosen
here: the rule and its margin were set on val slices).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("ids", nargs="+")
    ap.add_argument("--slices", type=int, default=8, help="the first N slices of each volume")
    ap.add_argument("--data", default=str(DATA))
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from lvpnet.codecs.lvpnet_codec import LVPNetCodec
    from lvpnet.coding import lattice_estimate

    items = {it["id"]: it for it in json.loads((Path(args.data) / "manifest.json").read_text())["items"]}
    codec, exact_rule = LVPNetCodec(device="cpu"), lattice_estimate.early_level
    total = [0, 0]
    print("| volume | slices | early bytes | exact bytes | change | early CPU s | exact CPU s |")
    print("|---|---|---|---|---|---|---|")
    for name in args.ids:
        with np.load(Path(args.data) / items[name]["file"]) as f:
            vol = f["image"][: args.slices]
        row = []
        for early in (True, False):
            lattice_estimate.early_level = exact_rule if early else (lambda *a, **k: 0)
            try:
                t, n, prev = time.process_time(), 0, None
                for x in vol:
                    n += len(codec.encode(x, reference=prev))
                    prev = x
                row.append((n, time.process_time() - t))
            finally:
                lattice_estimate.early_level = exact_rule
        total[0] += row[0][0]
        total[1] += row[1][0]
        print(f"| {name} {tuple(vol.shape[1:])} | {len(vol)} | {row[0][0]:,} | {row[1][0]:,} | "
              f"{100 * (row[0][0] / row[1][0] - 1):+.3f}% | {row[0][1]:.1f} | {row[1][1]:.1f} |", flush=True)
    print(f"| **total** | | {total[0]:,} | {total[1]:,} | {100 * (total[0] / total[1] - 1):+.3f}% | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
