"""Peak memory of compressing and decompressing a 64-slice 512x512 int16 volume with the learned codec.

    .venv/bin/python benchmarks/codec_memory.py [--weights PATH] [--slices 64] [--out benchmarks/codec_memory.md]

Peak resident set size of this process (resource.getrusage), which includes Python, torch,
the weights, the input volume (32 MiB) and the decoded copy. Target: under 2 GB.
The file is written with verification (decode and compare), by default with the learned codec
for every slice (``--safety-net``: as ``lvpnet compress`` does), then decoded again with
``LvpFile.read_all``.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from codec_speed import test_slice, weights  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights")
    ap.add_argument("--slices", type=int, default=64)
    ap.add_argument("--safety-net", action="store_true", help="also code every slice with the fallback, keep the smaller")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "codec_memory.md"))
    args = ap.parse_args(argv)
    from lvpnet import codecs
    from lvpnet.codecs.lvpnet_codec import LVPNetCodec
    from lvpnet.compressor import compress_to_file
    from lvpnet.lvpfile import LvpFile

    w, kind = weights(args.weights)
    codecs._INSTANCES["lvpnet"] = LVPNetCodec(w, device="cpu")
    base = test_slice()
    vol = np.stack([np.roll(base, 3 * i, axis=1) for i in range(args.slices)])
    after_setup = peak_mib()
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "vol.lvp"
        t0 = time.perf_counter()
        res = compress_to_file(vol, out, codec="lvpnet", safety_net=args.safety_net)
        t1 = time.perf_counter()
        after_compress = peak_mib()
        back = LvpFile(out).read_all()
        t2 = time.perf_counter()
        assert np.array_equal(back, vol)
        after_decompress = peak_mib()
    lines = [
        "# Learned codec memory",
        "",
        f"{args.slices} x 512 x 512 int16 volume ({vol.nbytes / 2**20:.0f} MiB), weights: {kind} (`{w.name}`); "
        "`benchmarks/codec_memory.py`. Peak resident set size of the whole process (Python, torch, weights, "
        "input and decoded arrays included). Target: under 2 GB.",
        "",
        "| stage | peak RSS (MiB) | seconds |",
        "|---|---|---|",
        f"| imports, weights path, input volume built | {after_setup:.0f} | |",
        f"| compress ({'safety net, ' if args.safety_net else 'learned codec only, '}verified) | {after_compress:.0f} | {t1 - t0:.1f} |",
        f"| decompress | {after_decompress:.0f} | {t2 - t1:.1f} |",
        "",
        f"Slices per codec: {res.codec_counts}; {res.bits_per_sample:.3f} bits/sample.",
    ]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
