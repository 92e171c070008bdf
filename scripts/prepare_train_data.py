#!/usr/bin/env python3
"""Pack the corpus for a GPU machine: train slices (capped/tiled) + val arrays -> .traindata/.

    python scripts/prepare_train_data.py [--data ../shared/data] [--out .traindata] [--max-mb 27]

Train: every array becomes grey 2-D planes (RGB -> G, R-G, B-G); per array at most
``--samples`` samples are kept (evenly spaced slices; planes over 1.5 Mpixel are cut
into random 512x512 tiles). Val: each array, a volume cut to ``--val-slices`` evenly spaced slices
and a plane over 1.5 Mpixel to its central 1024 x 1024 (the device only picks its checkpoint on
them, so "best" ratios there are approximate; every figure reported comes from the CPU run of
``benchmarks/run_val.py`` on all of val). Writes index.json with
ids, modalities and the best classical bits per sample of every val image.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from lvpnet.model.prep import grey_slices  # noqa: E402
from lvpnet.train import parse_baselines  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(ROOT / ".traindata"))
    ap.add_argument("--samples", type=float, default=7e5, help="max samples kept per train array")
    ap.add_argument("--val-slices", type=int, default=4,
                    help="a val volume keeps this many evenly spaced slices (the device's checkpoint choice; "
                         "benchmarks/run_val.py measures every slice on the CPU)")
    ap.add_argument("--tile", type=int, default=512)
    # the device carries the checkout (about 36 MB) and this folder in 64 MiB
    ap.add_argument("--max-mb", type=float, default=27.0)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    data, out = Path(a.data), Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.npz"):
        old.unlink()
    rng = np.random.default_rng(a.seed)
    man = json.loads((data / "manifest.json").read_text())
    best = parse_baselines(data.parent / "baselines-val.md")
    idx = {"train": [], "val": [], "source": str(data)}
    for it in man["items"]:
        arr = np.load(data / it["file"])["image"]
        if it["split"] == "val":
            fn = f"val_{it['id']}.npz"
            lead = arr.ndim - (3 if it.get("rgb") else 2)  # leading (slice) axes
            if lead >= 1 and arr.shape[0] > a.val_slices:
                arr = arr[np.unique(np.linspace(0, arr.shape[0] - 1, a.val_slices).round().astype(int))]
            rows, cols = arr.shape[lead : lead + 2]
            if rows * cols > 1.5e6:  # a large radiograph or mosaic: its central 1024 x 1024
                r0, c0 = max(0, (rows - 1024) // 2), max(0, (cols - 1024) // 2)
                arr = arr[(slice(None),) * lead + (slice(r0, r0 + 1024), slice(c0, c0 + 1024))]
            np.savez_compressed(out / fn, image=arr)
            idx["val"].append({k: it.get(k) for k in ("id", "modality", "rgb", "dtype", "effective_bits")}
                              | {"shape": list(arr.shape), "file": fn, "best": best.get(it["id"])})
            continue
        if it["split"] != "train":
            continue
        planes = grey_slices(arr, it.get("rgb", False))
        keep = []
        big = [p for p in planes if p.size > 1.5e6]
        if big:
            t = a.tile
            n_tiles = max(1, int(a.samples // (t * t)))
            for _ in range(n_tiles):
                p = big[rng.integers(len(big))]
                i = rng.integers(p.shape[0] - t + 1)
                j = rng.integers(p.shape[1] - t + 1)
                keep.append(p[i : i + t, j : j + t])
        else:
            per = planes[0].size
            n = max(1, min(len(planes), int(a.samples // per)))
            sel = np.unique(np.linspace(0, len(planes) - 1, n).round().astype(int))
            keep = [planes[i] for i in sel]
        dt = np.int16 if all(p.min() >= -32768 and p.max() <= 32767 for p in keep) else np.int32
        fn = f"train_{it['id']}.npz"
        np.savez_compressed(out / fn, **{f"s{i}": p.astype(dt) for i, p in enumerate(keep)})
        idx["train"].append({"id": it["id"], "modality": it.get("modality"), "file": fn, "n_slices": len(keep),
                             "samples": int(sum(p.size for p in keep))})
    (out / "index.json").write_text(json.dumps(idx, indent=1))
    total = sum(f.stat().st_size for f in out.iterdir()) / 2**20
    tr = sum(f.stat().st_size for f in out.glob("train_*")) / 2**20
    print(f"{out}: {total:.1f} MiB ({tr:.1f} MiB train, {len(idx['train'])} arrays, "
          f"{sum(e['samples'] for e in idx['train']) / 1e6:.1f} M samples; {len(idx['val'])} val arrays)")
    if total > a.max_mb:
        print(f"too big: {total:.1f} MiB > {a.max_mb}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
