"""``lvpnet demo``: the bundled sample scan through lvpnet (the default codec, and the learned one when
its weights are installed but not yet the default) and two classical codecs."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from . import classical, codecs, read
from .compressor import iter_compress_to_file
from .errors import InputError
from .lvpfile import LvpFile
from .progress import run


def sample_path() -> Path:
    from lvpnet.resources import SAMPLE_CT, path

    return path(SAMPLE_CT)


def run_demo(keep: str | None = None) -> int:
    if keep is not None and os.path.exists(keep) and not os.path.isdir(keep):
        raise InputError(f"{keep}: is a file; --keep names a folder to keep the sample's .lvp in")
    if keep is not None and not os.path.isdir(os.path.dirname(os.path.abspath(keep))):
        # the folder itself is made, not a path of them: a typo left a trail of new folders behind
        raise InputError(f"{keep}: the folder it would be made in does not exist")
    src = sample_path()
    volume = read(src)
    a = volume.array
    # on stdout with the table it explains (`lvpnet demo > out.txt` kept the table without it); the values' size,
    # which the ratios divide, and the file's, which is smaller (a .nii.gz is compressed already)
    print(f"sample: {src.name}, {a.shape} {a.dtype}: {a.nbytes:,} bytes of values, a {os.path.getsize(src):,}-byte file")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for codec in _codecs(a.dtype, volume.rgb):
            out = Path(keep or tmp) / ("sample_ct.lvp" if codec is None else f"sample_ct.{codec}.lvp")
            out.parent.mkdir(exist_ok=True)
            # the learned codec's row shows it alone (no per-slice fallback), so its own size is seen
            result = run(iter_compress_to_file(volume, out, codec=codec, verify=False, safety_net=codec is None))
            t0 = time.perf_counter()
            back = LvpFile(out).read_all()
            decode_seconds = time.perf_counter() - t0
            identical = back.dtype == a.dtype and back.shape == a.shape and back.tobytes() == a.tobytes()
            # the default codec's row says how many slices each codec kept ("lvpnet: 12 learned")
            label = ("lvpnet: " + ", ".join(f"{n} {_SLICES_OF.get(c, c)}" for c, n in result.codec_counts.items())
                     if codec is None else f"{codec} codec alone")
            rows.append((label, result.lvp_bytes, result.encode_seconds, decode_seconds, identical))
            if keep:
                print(f"kept {out}", file=sys.stderr)
    for name in classical.CODECS:
        c = classical.measure(name, a)
        rows.append((name + " lossless", c.bytes, c.encode_seconds, c.decode_seconds, c.lossless))
    print(f"{'codec':<30}{'bytes':>12}{'bits/sample':>13}{'ratio':>8}{'encode s':>10}{'decode s':>10}  identical")
    print(f"{'values (raw)':<30}{a.nbytes:>12,}{8 * a.itemsize:>13.3f}{1:>8.2f}")
    for name, size, enc, dec, ok in rows:
        print(f"{name:<30}{size:>12,}{8 * size / a.size:>13.3f}{a.nbytes / size:>8.2f}{enc:>10.2f}{dec:>10.2f}  "
              f"{'yes' if ok else 'NO'}")
    return 0 if all(r[4] for r in rows) else 1


_SLICES_OF = {"lvpnet": "learned", "fallback": "fallback"}  # codec id -> its slices' word in the demo's table


def _codecs(dtype, rgb: bool) -> list[str | None]:
    """The default codec (None), plus the learned one when its weights are installed but it is not
    the default yet (the shipped model has not beaten the classical codecs on val)."""
    out: list[str | None] = [None]
    if "lvpnet" in codecs.available() and codecs.default_codec_name(dtype, rgb) != "lvpnet":
        out.append("lvpnet")
    return out
