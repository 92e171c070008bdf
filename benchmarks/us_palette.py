"""Would a colour palette help the learned codec on RGB ultrasound? (measured, not built)

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/us_palette.py [--data ../shared/data]

Each RGB image of the val split (or the first frame of a train array) is coded as the codec codes it
today (``LVPNetCodec.encode``: the G, R-G and B-G planes), and as one plane of palette indices coded
by the same learned codec, plus the palette (its sorted colours as delta bytes through zlib: an
optimistic side cost). Three orders of the palette, since the index plane is only smooth where
near colours get near indices: by luminance, by G then R then B, and the grey colours first (by
value) with the coloured ones after them. Results and the decision: ``benchmarks/us_levers.md``.
"""

from __future__ import annotations

import argparse
import os
import time
import zlib
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

IMAGES = {  # split/id -> the frame coded
    "val/deid_US_rgb_image": lambda a: a,
    "val/pdd_US_color_pl": lambda a: a,
    "train/deid_US_rgb_cine": lambda a: a[0],
    "train/plj_US_medistim_rgb": lambda a: a[0],
    "train/deid_US_echo_multiframe": lambda a: a[0],
}


def orders(colours: np.ndarray) -> dict[str, np.ndarray]:
    """Each order of the palette, as the permutation of ``colours`` (n, 3) that sorts them."""
    R, G, B = (colours[:, i].astype(np.int64) for i in range(3))
    Y = R + 2 * G + B
    grey = (R == G) & (G == B)
    return {
        "lum": np.lexsort((B, R, G, Y)),
        "gmaj": np.lexsort((B, R, G)),
        "greyfirst": np.lexsort((B, R, G, Y, ~grey)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = ap.parse_args()
    from lvpnet.codecs.lvpnet_codec import LVPNetCodec

    codec = LVPNetCodec()
    for name, pick in IMAGES.items():
        a = pick(np.load(args.data / f"{name}.npz")["image"])
        n = a.shape[0] * a.shape[1]
        t = time.perf_counter()
        base = len(codec.encode(a))
        lines = [f"{name} {a.shape} today {base * 8 / n:.4f} bits a pixel ({time.perf_counter() - t:.1f} s)"]
        colours, inverse = np.unique(a.reshape(-1, 3), axis=0, return_inverse=True)
        lines[0] += f", {len(colours)} colours"
        for label, order in orders(colours).items():
            rank = np.empty(len(colours), np.int64)
            rank[order] = np.arange(len(colours))
            index = rank[inverse.reshape(-1)].reshape(a.shape[:2]).astype(np.uint16)
            deltas = np.diff(colours[order].astype(np.int16), axis=0, prepend=0).astype(np.int8)
            side = len(zlib.compress(deltas.tobytes(), 9))
            coded = len(codec.encode(index))
            lines.append(f"  {label}: indices {coded * 8 / n:.4f} + palette {side * 8 / n:.4f} = "
                         f"{(coded + side) * 8 / n:.4f} bits a pixel ({(coded + side) / base:.3f}x today)")
        print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
