"""Speed of the learned codec on one 512x512 int16 slice on this machine (CPU), entropy coding included.

    .venv/bin/python benchmarks/codec_speed.py [--weights PATH] [--threads 1 2] [--repeat 3] [--out benchmarks/codec_speed.md]
        [--against VERSION [--rounds 4]]

Weights: --weights, else the shipped resources/lvpnet-v1.pt, else an untrained model of
configs/lvpnet-v1.json (same size and speed as the trained one; its bits mean nothing).
Times: best of --repeat after one warm-up; verification (the container's decode-and-compare) is
not included. Writes a Markdown table to --out. ``--against``: also an earlier bitstream version,
timed alternately with the current one in one process (2 threads, best of ``--rounds``), on the
slice and on the bundled sample CT volume, so both see the same machine load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def test_slice(seed: int = 0) -> np.ndarray:
    """A CT-like 512x512 int16 slice: body disc, organs, bone, noise, air outside."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:512, :512]
    r = np.hypot(yy - 256, (xx - 256) * 1.2)
    img = np.where(r < 220, 40.0, -1000.0)
    img += np.where(np.hypot(yy - 200, xx - 300) < 60, 30.0, 0.0)
    img += np.where((r > 190) & (r < 205), 900.0, 0.0)
    img += 25 * np.sin(xx / 17.0) * np.cos(yy / 23.0)
    img += rng.normal(0, 12, img.shape)
    return np.clip(np.round(img), -1024, 3071).astype(np.int16)


def weights(arg: str | None) -> tuple[Path, str]:
    if arg:
        return Path(arg), "given"
    from lvpnet.codecs.weights import shipped_weights

    w = shipped_weights()
    if w is not None:
        return w, "shipped"
    from lvpnet.model import LVPNet, save_checkpoint

    cfg = json.loads((ROOT / "configs" / "lvpnet-v1.json").read_text())["model"]
    torch.manual_seed(0)
    path = Path(tempfile.mkdtemp()) / "untrained-v1.pt"
    save_checkpoint(path, LVPNet(cfg))
    return path, "untrained lvpnet-v1 config"


def best(fn, repeat: int) -> tuple[float, object]:
    out = fn()  # warm-up
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
    return min(ts), out


def sample_ct() -> np.ndarray:
    """The bundled sample CT volume, (slices, rows, cols) int16."""
    import nibabel as nib

    vol = np.asarray(nib.load(ROOT / "resources" / "sample_ct.nii.gz").dataobj)
    return np.ascontiguousarray(np.moveaxis(vol, -1, 0).transpose(0, 2, 1)).astype(np.int16)


def against(codec, old: int, x: np.ndarray, rounds: int) -> list[str]:
    """Markdown lines: the current bitstream against version ``old``, alternately in one process."""
    from lvpnet.codecs.lvpnet_codec import LVPNetCodec

    torch.set_num_threads(2)
    versions = (old, codec.version)
    coders = {v: LVPNetCodec(codec.weights, device="cpu") for v in versions}
    for v, c in coders.items():
        c.version = v
    times = {v: [[], []] for v in versions}
    data = {}
    for _ in range(rounds):
        for v, c in coders.items():
            t = time.perf_counter()
            data[v] = c.encode(x)
            times[v][0].append(time.perf_counter() - t)
            t = time.perf_counter()
            y = c.decode(data[v], x.shape, x.dtype, v)
            times[v][1].append(time.perf_counter() - t)
            assert np.array_equal(y, x)
    lines = [
        "", f"## Bitstream version {codec.version} against version {old}", "",
        f"The same slice, coded alternately with both versions in one process ({rounds} rounds, best of each, "
        f"2 threads; same weights), {time.strftime('%Y-%m-%d')}:", "",
        "| bitstream | encode (s) | decode (s) | bytes | bits/sample |", "|---|---|---|---|---|",
    ]
    for v in versions:
        te, td = min(times[v][0]), min(times[v][1])
        lines.append(f"| {v} | {te:.3f} | {td:.3f} | {len(data[v]):,} | {8 * len(data[v]) / x.size:.3f} |")
    vol = sample_ct()
    enc = {v: [c.encode(s) for s in vol] for v, c in coders.items()}
    dec = {v: [] for v in versions}
    for _ in range(2):
        for v, c in coders.items():
            t = time.perf_counter()
            for s, d in zip(vol, enc[v]):
                assert np.array_equal(c.decode(d, s.shape, s.dtype, v), s)
            dec[v].append(time.perf_counter() - t)
    lines += [
        "", f"The bundled sample CT ({len(vol)} slices of {vol.shape[1]} x {vol.shape[2]}), decoded alternately, two "
        "rounds each:", "",
        "| bitstream | decode, all slices (s) | per slice (s) | bytes |", "|---|---|---|---|",
    ]
    for v in versions:
        n = sum(len(d) for d in enc[v])
        lines.append(f"| {v} | {' / '.join(f'{t:.2f}' for t in dec[v])} | {min(dec[v]) / len(vol):.3f} | {n:,} |")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "codec_speed.md"))
    ap.add_argument("--against", type=int, help="an earlier bitstream version to time alternately with the current one")
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args(argv)
    from lvpnet.codecs.lvpnet_codec import LVPNetCodec

    w, kind = weights(args.weights)
    codec = LVPNetCodec(w, device="cpu")
    x = test_slice()
    rows, datas = [], []
    for th in args.threads:
        torch.set_num_threads(th)
        te, data = best(lambda: codec.encode(x), args.repeat)
        td, y = best(lambda data=data: codec.decode(data, x.shape, x.dtype, codec.version), args.repeat)
        assert np.array_equal(y, x)
        rows.append((th, te, td, len(data)))
        datas.append(data)
        print(f"threads {th}: encode {te:.3f} s, decode {td:.3f} s, {8 * len(data) / x.size:.3f} bits/sample", flush=True)
    lines = [
        "# Learned codec speed (CPU)",
        "",
        f"One 512x512 int16 CT-like slice (`benchmarks/codec_speed.py`), weights: {kind} (`{w}`, sha256 "
        f"{codec.model_id()[:16]}...).",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, "
        f"Python {sys.version.split()[0]}. Best of {args.repeat} after a warm-up; entropy coding included, "
        "verification not included. Targets: decode <= 1.0 s, encode <= 1.5 s.",
        "",
        "| torch threads | encode (s) | decode (s) | encode Mpixel/s | decode Mpixel/s | bits/sample |",
        "|---|---|---|---|---|---|",
    ]
    for th, te, td, n in rows:
        lines.append(f"| {th} | {te:.3f} | {td:.3f} | {x.size / te / 1e6:.2f} | {x.size / td / 1e6:.2f} | {8 * n / x.size:.3f} |")
    same = all(d == datas[0] for d in datas)
    lines += ["", f"Same bytes with every thread count: {'yes' if same else 'NO'}."]
    if args.against:
        lines += against(codec, args.against, x, args.rounds)
    lines += ["", f"Load average at the end: {os.getloadavg()[0]:.2f} (other work on the machine slows these down)."]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("wrote", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
