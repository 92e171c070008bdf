"""The learned codec's speed on every modality of the val split, against JPEG-XL effort 7 in the same run.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/val_speed.py [--slices 4] [--arrays ID,ID] [--json out.json]

``cpu_speed.py`` times issue 20's case, 512 x 512 CT slices. A radiologist's MR series has slices of
64 x 64 to 512 x 512, and part of the encoder's work is per plane, not per pixel (the coding choice
weighs every prior weight and flag level over the plane's tables), so small slices may be slower per
pixel. Here every val array of the shared corpus (``manifest.json``) gives up to ``--slices`` evenly
spaced slices (an RGB image is one), each coded alone as ``bitstream9_val.py`` codes them, by the
learned codec (``LVPNetCodec``: encode, then decode checked against the slice) and by JPEG-XL effort 7
(the fallback codec, as the safety net runs it: one thread), interleaved slice by slice so the
machine's load hits both alike. Reported: microseconds per pixel each way and the ratio to JPEG-XL,
per array and per modality (the modality's summed times over its summed pixels).
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bitstream9_val import val_arrays  # noqa: E402


def _timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--slices", type=int, default=4, help="at most this many slices of each array (evenly spaced)")
    ap.add_argument("--arrays", help="only these val arrays (comma-separated ids)")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from lvpnet.codecs import get_codec

    learned, jxl = get_codec("lvpnet"), get_codec("fallback")
    arrays = [a for a in val_arrays(Path(args.data)) if not args.arrays or a[0] in args.arrays.split(",")]
    learned.encode(arrays[0][2][0])  # the engine built and the kernels loaded before any clock runs
    rows = {}
    for name, modality, slices in arrays:
        pick = np.unique(np.linspace(0, len(slices) - 1, min(args.slices, len(slices))).round().astype(int))
        t = {"enc": 0.0, "dec": 0.0, "jxl_enc": 0.0, "jxl_dec": 0.0}
        pixels = 0
        for i in pick:
            x = slices[i]
            data, dt = _timed(learned.encode, x)
            t["enc"] += dt
            back, dt = _timed(learned.decode, data, x.shape, x.dtype, learned.version)
            t["dec"] += dt
            if not np.array_equal(back, x):
                raise SystemExit(f"{name}: slice {i} does not decode to itself")
            data, dt = _timed(jxl.encode, x)
            t["jxl_enc"] += dt
            _, dt = _timed(jxl.decode, data, x.shape, x.dtype, jxl.version)
            t["jxl_dec"] += dt
            pixels += x.shape[0] * x.shape[1]
        rows[name] = {"modality": modality, "slice": list(slices.shape[1:]), "slices": len(pick), "pixels": pixels, **t}
        r = rows[name]
        print(f"{name:36s} {modality} {'x'.join(map(str, r['slice'])):>12s} enc {1e6 * r['enc'] / pixels:6.2f} us/px "
              f"({r['enc'] / r['jxl_enc']:5.1f}x) dec {1e6 * r['dec'] / pixels:6.2f} ({r['dec'] / r['jxl_dec']:5.1f}x)",
              flush=True)
    print()
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"slices": args.slices, "arrays": rows}, indent=1) + "\n")
    return 0


def table(rows: dict) -> str:
    """Per modality and in total: microseconds per pixel each way, and the ratio to JPEG-XL e7."""
    groups: dict[str, list] = {}
    for r in rows.values():
        groups.setdefault(r["modality"], []).append(r)
    groups["all"] = list(rows.values())
    out = ["| modality | arrays | pixels | encode us/px | JPEG-XL e7 | encode / JPEG-XL | decode us/px | JPEG-XL e7 "
           "| decode / JPEG-XL |", "|---|---|---|---|---|---|---|---|---|"]
    for m in sorted(groups, key=lambda m: (m == "all", m)):
        g = groups[m]
        px = sum(r["pixels"] for r in g)
        s = {k: sum(r[k] for r in g) for k in ("enc", "dec", "jxl_enc", "jxl_dec")}
        out.append(f"| {m} | {len(g)} | {px:,} | {1e6 * s['enc'] / px:.2f} | {1e6 * s['jxl_enc'] / px:.2f} | "
                   f"{s['enc'] / s['jxl_enc']:.1f}x | {1e6 * s['dec'] / px:.2f} | {1e6 * s['jxl_dec'] / px:.2f} | "
                   f"{s['dec'] / s['jxl_dec']:.1f}x |")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
