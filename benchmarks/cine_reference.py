"""Cine loops with the previous frame as a reference (bitstream version 8, ``coding.reference``).

    .venv/bin/python benchmarks/cine_reference.py [--frames 8] [--json F] [--out benchmarks/cine_reference.md]

The val split holds no multi-frame ultrasound, so this runs on the three cines of `train` (the
model trained on their frames; the reference flags, which are not learned, are what is measured):
real `.lvp` bytes of the learned codec alone and with the safety net (what `lvpnet compress
--codec lvpnet` writes), each frame coded against the one before as the writer does, against the
better of JPEG-XL effort 7 and 9 on every frame alone; and the same file without references
(every frame coded alone, as bitstream 7 did). Times on this machine, encode without verification.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "train"
CINES = ("deid_US_grey_cine", "deid_US_rgb_cine", "deid_US_echo_multiframe")


def _file(a: np.ndarray, rgb: bool, safety_net: bool, run: int):
    from lvpnet import compressor
    from lvpnet.lvpfile import LvpFile

    keep, compressor.REFERENCE_RUN = compressor.REFERENCE_RUN, run
    try:
        t0 = time.perf_counter()
        data = compressor.compress(a, codec="lvpnet", rgb=rgb, safety_net=safety_net, verify=False)
        t1 = time.perf_counter()
    finally:
        compressor.REFERENCE_RUN = keep
    f = LvpFile(data)
    back = f.read_all()
    t2 = time.perf_counter()
    if not np.array_equal(back, a):
        raise SystemExit("cine_reference: the file did not decode to the input")
    return {"bytes": len(data), "chunks": [f.chunk_bytes(i) for i in range(len(f))], "codecs": f.codec_counts(),
            "against_previous": f.coded_against_previous(), "encode_s": round(t1 - t0, 2),
            "decode_s": round(t2 - t1, 2)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--json")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "cine_reference.md"))
    args = ap.parse_args(argv)
    import imagecodecs

    from lvpnet.compressor import REFERENCE_RUN

    rows = {}
    for name in CINES:
        z = np.load(DATA / f"{name}.npz")
        a = z[z.files[0]][: args.frames]
        rgb = a.ndim == 4
        jxl = [min(len(imagecodecs.jpegxl_encode(x, lossless=True, effort=e, numthreads=1)) for e in (7, 9))
               for x in a]
        rows[name] = {
            "shape": list(a.shape), "jpegxl_best_frames": jxl,
            "learned": _file(a, rgb, False, REFERENCE_RUN),
            "learned_no_reference": _file(a, rgb, False, 1),
            "combined": _file(a, rgb, True, REFERENCE_RUN),
        }
        r = rows[name]
        print(name, a.shape, {k: r[k]["bytes"] for k in ("learned", "learned_no_reference", "combined")},
              "jpegxl", sum(jxl), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    lines = [
        "# Cine loops: the previous frame as a reference (bitstream 8)",
        "",
        f"Written by `benchmarks/cine_reference.py`: the first {args.frames} frames of the `train` cines (val has",
        "none), real `.lvp` bytes against the better of JPEG-XL effort 7 and 9 on each frame alone.",
        "`alone` codes every frame by itself (as bitstream 7 did); `reference` codes each frame against",
        f"the one before, except every {REFERENCE_RUN}th (`compressor.REFERENCE_RUN`); `combined` adds the",
        "safety net (`lvpnet compress --codec lvpnet`). Ratios are file bytes over JPEG-XL's.",
        "",
        "| cine | shape | JPEG-XL bytes | learned, alone | learned, reference | combined | frames against the previous | encode s (reference / alone) | decode s (reference / alone) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        jx = sum(r["jpegxl_best_frames"])
        lr, la, c = r["learned"], r["learned_no_reference"], r["combined"]
        lines.append(
            f"| {name} | {'x'.join(map(str, r['shape']))} | {jx} | {la['bytes'] / jx:.3f}x | {lr['bytes'] / jx:.3f}x "
            f"| {c['bytes'] / jx:.3f}x | {lr['against_previous']} of {len(lr['chunks'])} "
            f"| {lr['encode_s']} / {la['encode_s']} | {lr['decode_s']} / {la['decode_s']} |")
    lines += ["", "Per frame, chunk bytes (learned, reference) against JPEG-XL:", ""]
    for name, r in rows.items():
        pairs = ", ".join(f"{c} / {j}" for c, j in zip(r["learned"]["chunks"], r["jpegxl_best_frames"]))
        lines.append(f"- {name}: {pairs}")
    Path(args.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    raise SystemExit(main())
