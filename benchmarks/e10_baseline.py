"""Is the default file's win on 8-bit val images the learned codec's, or JPEG-XL effort 10's?

The safety net keeps a slice by the fallback where that is smaller, and on slices spanning fewer than
256 values it tries JPEG-XL effort 10 (``FallbackCodec.thorough_efforts``); the classical baseline
(``../shared/baselines-val.md``, ``lvpnet bench``) stops at effort 9. This script measures, on every
val array with such slices, the default ``.lvp`` bytes (learned codec + safety net), which codec kept
each slice, the best of the six classical codecs of ``lvpnet bench``, and JPEG-XL effort 10 on the
same slices (coded as the baseline codes them: the slice less its minimum, RGB as one image), and
gives the ratio against the six and against the six plus effort 10.

Usage: OMP_NUM_THREADS=1 python benchmarks/e10_baseline.py [DATA_DIR] [--json F] > benchmarks/e10_baseline.md
(the whole page: title, run line, table and what it shows)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import time
from pathlib import Path

import imagecodecs
import numpy as np

import lvpnet
from lvpnet import classical
from lvpnet.slicing import iter_slices


def e10_bytes(a: np.ndarray, rgb: bool) -> int:
    n = 0
    for s in iter_slices(a, rgb):
        u = classical._as_unsigned(s)
        n += len(imagecodecs.jpegxl_encode(u, lossless=True, effort=10, numthreads=1))
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", nargs="?", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args()
    data = Path(args.data)
    items = [e for e in json.loads((data / "manifest.json").read_text())["items"] if e["split"] == "val"]
    here = Path(__file__).resolve().parents[1]
    commit = subprocess.run(["git", "-C", str(here), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "unknown"
    from lvpnet.bench import machine

    print("# The default files against JPEG-XL effort 10 too (8-bit val arrays)\n")
    print(f"`OMP_NUM_THREADS=1 .venv/bin/python benchmarks/e10_baseline.py` (the script's docstring says what is "
          f"measured), {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {machine()}, lvpnet at commit {commit}, "
          "shipped weights. Real `.lvp` bytes of bare Volumes (as `BENCHMARKS.md`, "
          "`lvpnet.compress` with its defaults).\n")
    print("| id | modality | slices kept (lvpnet / fallback) | .lvp bytes | best of six | JPEG-XL e10 |"
          " ratio to six | ratio to six + e10 | e10 s |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows = []
    for e in items:
        a = np.load(data / e["file"])["image"]
        rgb = bool(e["rgb"])
        if not any(int(s.max()) - int(s.min()) < 256 for s in iter_slices(a, rgb)):
            continue  # no slice the safety net would try effort 10 on
        lvp = lvpnet.compress(lvpnet.Volume(array=a, rgb=rgb), verify=False)
        counts = lvpnet.LvpFile(lvp).codec_counts()
        six = min(classical.measure(c, a, rgb).bytes for c in classical.ALL_CODECS)
        t0 = time.perf_counter()
        e10 = e10_bytes(a, rgb)
        secs = time.perf_counter() - t0
        row = {"id": e["id"], "modality": e["modality"], "lvp_bytes": len(lvp), "six": six, "e10": e10,
               "kept": counts, "samples": int(a.size)}
        rows.append(row)
        print(f"| {e['id']} | {e['modality']} | {counts.get('lvpnet', 0)} / {counts.get('fallback', 0)} | {len(lvp):,} | {six:,} | {e10:,} | {len(lvp) / six:.4f} |"
              f" {len(lvp) / min(six, e10):.4f} | {secs:.1f} |", flush=True)
    by: dict[str, list] = {}
    for r in rows:
        by.setdefault(r["modality"], []).append(r)
    for mod, rs in sorted(by.items()):
        lv, six, best = (sum(r["lvp_bytes"] for r in rs), sum(r["six"] for r in rs),
                         sum(min(r["six"], r["e10"]) for r in rs))
        print(f"| **{mod}, {len(rs)} arrays** | | | {lv:,} | {six:,} | | **{lv / six:.4f}** | **{lv / best:.4f}** | |")
    kept = sum(r["kept"].get("lvpnet", 0) for r in rows)
    print(f"\nEvery val array with a slice spanning fewer than 256 values is here ({len(rows)}); the learned codec "
          f"keeps {kept} of their slices. Where the fallback keeps a slice it is the smallest of JPEG-XL efforts 7, 9 "
          "and 10, so the default files' figure against the six codecs is partly effort 10's; the last column is the "
          "figure against the six and effort 10.")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
