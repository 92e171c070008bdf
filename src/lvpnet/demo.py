"""``lvpnet demo``: the bundled sample scan through lvpnet and two classical codecs."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from . import classical, read
from .compressor import iter_compress_to_file
from .lvpfile import LvpFile
from .progress import run


def sample_path() -> Path:
    from lvpnet.resources import SAMPLE_CT, path

    return path(SAMPLE_CT)


def run_demo(keep: str | None = None) -> int:
    src = sample_path()
    volume = read(src)
    a = volume.array
    print(f"sample: {src.name}, {a.shape} {a.dtype}, {a.nbytes:,} bytes", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(keep or tmp) / "sample_ct.lvp"
        out.parent.mkdir(parents=True, exist_ok=True)
        result = run(iter_compress_to_file(volume, out, verify=False))
        t0 = time.perf_counter()
        back = LvpFile(out).read_all()
        decode_seconds = time.perf_counter() - t0
        identical = back.dtype == a.dtype and back.shape == a.shape and back.tobytes() == a.tobytes()
    rows = [("lvpnet (" + ", ".join(result.codec_counts) + ")", result.lvp_bytes, result.encode_seconds,
             decode_seconds, identical)]
    for name in classical.CODECS:
        c = classical.measure(name, a)
        rows.append((name + " lossless", c.bytes, c.encode_seconds, c.decode_seconds, c.lossless))
    print(f"{'codec':<28}{'bytes':>12}{'bits/sample':>13}{'ratio':>8}{'encode s':>10}{'decode s':>10}  identical")
    print(f"{'original':<28}{a.nbytes:>12,}{8 * a.itemsize:>13.3f}{1:>8.2f}")
    for name, size, enc, dec, ok in rows:
        print(f"{name:<28}{size:>12,}{8 * size / a.size:>13.3f}{a.nbytes / size:>8.2f}{enc:>10.2f}{dec:>10.2f}  "
              f"{'yes' if ok else 'NO'}")
    if keep:
        print(f"kept {out}", file=sys.stderr)
    return 0 if identical else 1
