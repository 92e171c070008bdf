"""The learned codec on one CPU thread against JPEG-XL effort 7, on real 512 x 512 CT slices, in one run.

    .venv/bin/python benchmarks/cpu_speed.py [--rounds 3] [--out benchmarks/cpu_speed.md]

Issue 20's CPU target is a ratio to JPEG-XL measured side by side, so both codecs code the same
slices in the same process, interleaved slice by slice, round after round (the machine's load
hits both alike); each slice's time is its best round. Slices: the val split's three CT arrays
(512 x 512; ``../shared/data``, or ``--data``) and the bundled sample CT's 12 slices.

Also timed in the same rounds: the engine's reference paths (float convolutions for the trunk,
the torch head), the paths the GPU runs and every CPU ran before the int8 trunk and the fused
head; and the trunk with each other kind of exact product this CPU has (``exact_mm``: torch's
int8, the AVX2 kernel, float32; ``--kinds`` picks them). The bytes of all must be equal. Entropy coding and the container's chunk are included;
the safety net (``lvpnet compress`` also tries JPEG-XL on every slice) and verification are not.
"""

from __future__ import annotations

import argparse
import os
import time
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import imagecodecs  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VAL_CT = ("pydicom_CT_J2K_pixelrep_mismatch", "cs_CT_toshiba_CT2", "fod_CT_philips_ingenuity")


def slices(data: Path) -> list[tuple[str, np.ndarray]]:
    import nibabel as nib

    out = []
    for name in VAL_CT:
        path = data / "val" / f"{name}.npz"
        if path.exists():
            out.append((name, np.load(path)["image"]))
    vol = np.asarray(nib.load(ROOT / "resources" / "sample_ct.nii.gz").dataobj)
    vol = np.moveaxis(vol, -1, 0).transpose(0, 2, 1).astype(np.int16)
    out += [(f"sample {i}", np.ascontiguousarray(s)) for i, s in enumerate(vol)]
    return out


@contextmanager
def reference_paths(codec):
    """The engine with its float trunk and torch head: what ran before the fast CPU paths."""
    from lvpnet.model import head_kernel

    dec = codec.engine().dec
    old = (dec.int8, head_kernel._KERNEL)
    dec.int8, head_kernel._KERNEL = False, False
    try:
        yield
    finally:
        dec.int8, head_kernel._KERNEL = old


def timed(fn, *args, **kw):
    """(wall seconds, this process's CPU seconds, result): on a machine other jobs share, the CPU
    time is what the codec itself spent (one thread: never more than the wall time)."""
    t, c = time.perf_counter(), time.process_time()
    out = fn(*args, **kw)
    return (time.perf_counter() - t, time.process_time() - c), out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "cpu_speed.md"))
    ap.add_argument("--kinds", default="", help="comma-separated kinds of product to time besides the chosen "
                    "one (default: every other kind this CPU has)")
    ap.add_argument("--gmsm", action="store_true", help="also time the encoder running the GMSM, as for weights "
                    "whose card does not have it write the prior's mode (its bytes may differ; they decode)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from lvpnet.bench import machine
    from lvpnet.codecs.lvpnet_codec import LVPNetCodec
    from lvpnet.model import exact_mm

    codec = LVPNetCodec(device="cpu")
    items = slices(Path(args.data))
    ver = codec.version
    chosen = exact_mm.kind()
    others = [k for k in (args.kinds.split(",") if args.kinds else exact_mm.KINDS)
              if k and k != chosen and exact_mm.available(k)]
    # warm-up: weights, numba kernels, oneDNN, each kind's layouts
    for k in [chosen, *others]:
        exact_mm.set_kind(k)
        codec.decode(codec.encode(items[0][1]), items[0][1].shape, items[0][1].dtype, ver)
    exact_mm.set_kind(chosen)
    gmsm = None
    if args.gmsm:  # the same weights, their encoder told to run the float GMSM for the latent
        gmsm = LVPNetCodec(device="cpu")
        gmsm.engine().prior_mode_latent = False
        gmsm.encode(items[0][1])
    names = (f"lvpnet (products: {chosen}, as chosen)", *(f"lvpnet, products: {k}" for k in others),
             "lvpnet reference paths", *(["lvpnet, encoder running the GMSM"] if gmsm else []), "JPEG-XL e7")
    best = {n: np.full((len(items), 2), np.inf) for n in names}
    cpu = {n: np.full((len(items), 2), np.inf) for n in names}
    size = {n: np.zeros(len(items)) for n in names}
    for r in range(args.rounds):
        for i, (name, x) in enumerate(items):
            te, data = timed(codec.encode, x)
            td, y = timed(codec.decode, data, x.shape, x.dtype, ver)
            assert np.array_equal(y, x), name
            with reference_paths(codec):
                tre, rdata = timed(codec.encode, x)
                trd, ry = timed(codec.decode, data, x.shape, x.dtype, ver)
            assert rdata == data and np.array_equal(ry, x), f"{name}: reference paths differ"
            kinds = []
            for k in others:
                exact_mm.set_kind(k)
                tke, kdata = timed(codec.encode, x)
                tkd, ky = timed(codec.decode, data, x.shape, x.dtype, ver)
                assert kdata == data and np.array_equal(ky, x), f"{name}: {k} products differ"
                kinds.append((tke, tkd, len(data)))
            exact_mm.set_kind(chosen)
            if gmsm is not None:
                tge, gdata = timed(gmsm.encode, x)
                tgd, gy = timed(gmsm.decode, gdata, x.shape, x.dtype, ver)
                assert np.array_equal(gy, x), f"{name}: the GMSM's file"
            v = (x.astype(np.int32) - int(x.min())).astype(np.uint16)
            tje, jxl = timed(imagecodecs.jpegxl_encode, v, lossless=True, effort=7, numthreads=1)
            tjd, jy = timed(imagecodecs.jpegxl_decode, jxl, numthreads=1)
            assert np.array_equal(jy, v)
            timings = ((te, td, len(data)), *kinds, (tre, trd, len(data)),
                       *([(tge, tgd, len(gdata))] if gmsm is not None else []), (tje, tjd, len(jxl)))
            for n, (e, d, nb) in zip(names, timings):
                best[n][i] = np.minimum(best[n][i], (e[0], d[0]))
                cpu[n][i] = np.minimum(cpu[n][i], (e[1], d[1]))
                size[n][i] = nb
            print(f"round {r + 1} {name}: lvpnet {te[0]:.3f}/{td[0]:.3f} s, reference {tre[0]:.3f}/{trd[0]:.3f} s, "
                  f"JPEG-XL {tje[0]:.3f}/{tjd[0]:.3f} s", flush=True)
    pixels = sum(x.size for _, x in items)
    jxl_e, jxl_d = best["JPEG-XL e7"].sum(0)
    cjxl_e, cjxl_d = cpu["JPEG-XL e7"].sum(0)
    lines = [
        "# The learned codec on one CPU thread against JPEG-XL effort 7",
        "",
        f"`benchmarks/cpu_speed.py --rounds {args.rounds}`, {time.strftime('%Y-%m-%d')}. Machine: "
        f"{machine()}, torch {torch.__version__}, one thread for every codec. Weights sha256 {codec.model_id()[:16]}..., "
        f"bitstream {ver}.",
        "",
        f"{len(items)} real 512 x 512 CT slices ({len(VAL_CT)} val CT arrays, the sample CT's "
        f"{len(items) - len(VAL_CT)} slices), coded interleaved slice by slice in {args.rounds} rounds; each slice's "
        "time is its best round. Entropy coding included; the safety net and verification are not.",
        "",
        "| codec | encode, all slices (s) | decode (s) | encode Mpixel/s | decode Mpixel/s | bits/sample | "
        "encode / JPEG-XL | decode / JPEG-XL | CPU time: encode / JPEG-XL | CPU time: decode / JPEG-XL |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n in names:
        e, d = best[n].sum(0)
        ce, cd = cpu[n].sum(0)
        lines.append(f"| {n} | {e:.2f} | {d:.2f} | {pixels / e / 1e6:.2f} | {pixels / d / 1e6:.2f} | "
                     f"{8 * size[n].sum() / pixels:.3f} | {e / jxl_e:.1f}x | {d / jxl_d:.1f}x | "
                     f"{ce / cjxl_e:.1f}x | {cd / cjxl_d:.1f}x |")
    lines += [
        "",
        "The reference paths and the other kinds of product wrote the same bytes and decoded the same files "
        "(checked on every slice). "
        "The CPU-time columns use each slice's least process CPU time over the rounds (the wall-clock "
        "columns its least elapsed time): on a machine shared with other jobs they show the codecs' own work.",
        "Targets (issue 20): encode at most 5x JPEG-XL's time, decode at most 20x.",
        f"Load average at the end: {os.getloadavg()[0]:.2f}.",
    ]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
