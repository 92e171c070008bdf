"""Encode and decode time of one slice per val array, bitstream version against version (one thread).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bitstream_speed.py --versions 10 11 \
        --ids deid_US_rgb_image fod_US_philips_iU22 cs_CT_toshiba_CT2

Each array's first slice (an RGB array: its first frame): one warm-up encode, then the versions in
turn, twice (a, b, a, b), each encode and decode timed; the best of the two is printed as a markdown
row. The machine is shared, so two runs of one version can differ by tenths of a second.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def first_slice(data: Path, ident: str) -> np.ndarray:
    man = json.loads((data / "manifest.json").read_text())
    it = next(i for i in man["items"] if i["id"] == ident)
    with np.load(data / it["file"]) as f:
        a = f["image"]
    frame = a.shape[-3:] if it.get("rgb", False) else a.shape[-2:]
    return np.ascontiguousarray(a.reshape((-1,) + tuple(frame))[0])


def main(argv=None) -> int:
    import torch

    torch.set_num_threads(1)
    from lvpnet.codecs.lvpnet_codec import LVPNetCodec

    ap = argparse.ArgumentParser()
    ap.add_argument("--versions", type=int, nargs="+", required=True)
    ap.add_argument("--ids", nargs="+", required=True)
    ap.add_argument("--data", default=str(DATA))
    args = ap.parse_args(argv)
    codec = LVPNetCodec(device="cpu")
    vs = args.versions
    print("| image | " + " | ".join(f"v{v} encode" for v in vs) + " | " + " | ".join(f"v{v} decode" for v in vs)
          + " | " + " | ".join(f"v{v} bytes" for v in vs) + " |")
    print("|---" * (1 + 3 * len(vs)) + "|")
    for ident in args.ids:
        x = first_slice(Path(args.data), ident)
        codec.encode(x)  # warm-up: the model, the kernels
        enc = {v: [] for v in vs}
        dec = {v: [] for v in vs}
        size = {}
        for _ in range(2):
            for v in vs:
                codec.version = v
                t = time.perf_counter()
                data = codec.encode(x)
                enc[v].append(time.perf_counter() - t)
                t = time.perf_counter()
                y = codec.decode(data, x.shape, x.dtype, v)
                dec[v].append(time.perf_counter() - t)
                if not np.array_equal(x, y):
                    raise SystemExit(f"{ident}: version {v} does not decode")
                size[v] = len(data)
        shape = " x ".join(map(str, x.shape))
        print(f"| {ident} ({shape}) | " + " | ".join(f"{min(enc[v]):.2f} s" for v in vs) + " | "
              + " | ".join(f"{min(dec[v]):.2f} s" for v in vs) + " | "
              + " | ".join(f"{size[v]:,}" for v in vs) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
