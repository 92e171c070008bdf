"""CUDA <-> CPU portability and GPU speed of the learned codec (run by hand on a GPU machine).

For every input slice:
  1. encode on CUDA, decode on CPU and on CUDA: both must give the input exactly;
  2. encode on CPU, decode on CUDA: must give the input exactly;
  3. the CUDA and CPU encodings' bytes are compared (they may differ only where the float
     GMSM gave another z; then both still decode exactly everywhere: reported, not an error);
  4. from the same z, the integer path's (mu, s) on CUDA (conv and unfold+GEMM) equal the CPU's;
and timings: CUDA encode / decode end to end (entropy coding included), megapixels per second.

Steps (the device has torch and numpy, not constriction or imagecodecs):

  here:   .venv/bin/python scripts/cuda_roundtrip.py --prepare .cudarun [--max-mb 2.6]
          # .cudarun/: input slices (.npy: synthetic, the sample CT, val slices when ../shared/data is
          # there), the weights (resources/lvpnet-v1.pt, else an untrained lvpnet-v1 model), and the
          # constriction wheel for the device's Python (pip download, cp312 manylinux); with
          # --imagecodecs also imagecodecs (26 MB), without which the run checks bitstream 6, not 7
          echo /.cudarun/ >> .git/info/exclude
  device: python3 -m pip install -q --no-index --no-deps --target /tmp/site .cudarun/*.whl && \
          PYTHONPATH=/tmp/site python3 scripts/cuda_roundtrip.py --run .cudarun --out $OUT/cuda_roundtrip.json
          (carry: .cudarun)

Exit status 0 when every decode is exact and every (mu, s) agrees, 1 otherwise.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- preparing (on this machine)


def synthetic() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    yy, xx = np.mgrid[:512, :512]
    r = np.hypot(yy - 256, (xx - 256) * 1.2)
    ct = np.where(r < 220, 40.0, -1000.0) + np.where((r > 190) & (r < 205), 900.0, 0) + rng.normal(0, 12, r.shape)
    mr = (np.hypot(yy - 250, xx - 260) < 200) * (800 + 300 * np.sin(xx / 30.0)) + rng.normal(0, 20, r.shape)
    xr = 120 + 80 * np.cos(yy / 90.0) * np.sin(xx / 70.0) + rng.normal(0, 4, r.shape)
    us = np.stack([(xx + yy) % 256, (2 * yy) % 256, (xx * 3) % 256], -1)[:480, :]
    full = rng.integers(-32768, 32768, (300, 257))
    full[0, 0], full[-1, -1] = -32768, 32767
    return {
        "syn_ct_int16_512": np.clip(np.round(ct), -1024, 3071).astype(np.int16),
        "syn_mr_uint16_12bit_512": np.clip(np.round(mr), 0, 4095).astype(np.uint16),
        "syn_xr_uint8_512": np.clip(np.round(xr), 0, 255).astype(np.uint8),
        "syn_us_rgb_uint8_480x512": us.astype(np.uint8),
        "syn_int16_full_range_300x257": full.astype(np.int16),
        "syn_odd_uint16_37x45": rng.integers(0, 60000, (37, 45)).astype(np.uint16),
    }


# Inputs are added in this order while they fit ``--max-mb``: what reaches the device is capped at
# 64 MiB, and scripts/gpu_train.sh carries .traindata (31 MB) beside the 30 MB checkout.
_FIRST = ("syn_odd_uint16_37x45", "syn_int16_full_range_300x257", "syn_us_rgb_uint8_480x512", "sample_ct_z0")


def candidates() -> list[tuple[str, np.ndarray]]:
    """Every input the check can take, in the order ``prepare`` adds them: the synthetic corner cases,
    the sample CT, then the val slices (first slice of each, smallest first), then the rest."""
    out = dict(synthetic())
    try:
        import nibabel as nib

        ct = np.asarray(nib.load(str(ROOT / "resources" / "sample_ct.nii.gz")).dataobj)
        for k in (0, ct.shape[-1] // 2):
            out[f"sample_ct_z{k}"] = np.ascontiguousarray(ct[..., k].T)
    except Exception as e:  # pragma: no cover - best effort
        print("sample CT skipped:", e)
    val = ROOT.parent / "shared" / "data" / "val"
    vals = []
    for f in sorted(val.glob("*.npz")) if val.is_dir() else []:
        with np.load(f) as z:
            a = z[z.files[0]]
        if a.dtype.kind not in "iu" or a.dtype.itemsize > 2:
            continue
        rgb = a.shape[-1] == 3 and a.ndim >= 3
        vals.append((f"val_{f.stem}", np.ascontiguousarray(a.reshape((-1,) + a.shape[-3:] if rgb else (-1,) + a.shape[-2:])[0])))
    first = [(n, out.pop(n)) for n in _FIRST if n in out]
    return first + sorted(vals, key=lambda v: v[1].nbytes) + list(out.items())


def prepare(folder: Path, max_mb: float = 2.6, with_imagecodecs: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.npy"):
        old.unlink()
    used = 700_000  # the constriction wheel (0.4 MB) and the staged package (0.25 MB)
    for name, a in candidates():
        if used + a.nbytes + 128 > max_mb * 1e6:
            print(f"skipped {name} ({a.nbytes / 1e6:.2f} MB): over --max-mb")
            continue
        np.save(folder / f"{name}.npy", a)
        used += a.nbytes + 128
    from lvpnet.codecs.weights import shipped_weights

    if shipped_weights() is None:  # else the run reads the checkout's resources/ (or --weights)
        import torch

        from lvpnet.model import LVPNet, save_checkpoint

        cfg = json.loads((ROOT / "configs" / "lvpnet-v1.json").read_text())["model"]
        torch.manual_seed(0)
        save_checkpoint(folder / "weights.pt", LVPNet(cfg), meta={"note": "untrained, for the CUDA check only"})
        print("no shipped weights: an untrained lvpnet-v1 model is used (exactness and speed only)")
    # the package itself, staged bare (imagecodecs only as the base layer needs it)
    stage = folder / "pkg" / "lvpnet"
    if stage.exists():
        shutil.rmtree(stage)
    (stage / "codecs").mkdir(parents=True)
    shutil.copytree(ROOT / "src" / "lvpnet" / "model", stage / "model")
    shutil.copytree(ROOT / "src" / "lvpnet" / "coding", stage / "coding")  # the engine's stages and the profiles
    shutil.copy(ROOT / "src" / "lvpnet" / "errors.py", stage / "errors.py")
    for f in ("base.py", "lvpnet_base.py", "lvpnet_chunk.py", "lvpnet_codec.py", "lvpnet_engine.py",
              "lvpnet_entropy.py", "weights.py"):
        shutil.copy(ROOT / "src" / "lvpnet" / "codecs" / f, stage / "codecs" / f)
    (stage / "__init__.py").write_text("")
    (stage / "codecs" / "__init__.py").write_text("")
    for p in stage.rglob("__pycache__"):
        shutil.rmtree(p)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
         "--implementation", "cp", "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64",
         "-d", str(folder), "constriction==0.5.0"],
        check=False,
    )
    for old in folder.glob("imagecodecs-*.whl"):
        old.unlink()
    if with_imagecodecs:  # bitstream 7's base layers (26 MB: too much beside .traindata on the device)
        import imagecodecs

        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
             "--implementation", "cp", "--platform", "manylinux_2_28_x86_64", "-d", str(folder),
             f"imagecodecs=={imagecodecs.__version__}"],
            check=False,
        )
    print("prepared", folder, sorted(os.listdir(folder)))


# ---------------------------------------------------------------- running (on the GPU machine)


def run(folder: Path, out: Path | None, repeat: int, dry_run: bool = False, weights: Path | None = None) -> int:
    sys.path.insert(0, str(folder / "pkg"))
    import torch

    from lvpnet.codecs.lvpnet_codec import LVPNetCodec
    from lvpnet.model import IntegerDecoder, prep

    dev = "cpu" if dry_run else "cuda"  # --dry-run: the same code paths on the CPU (a test of this script)
    assert dry_run or torch.cuda.is_available(), "no CUDA device"
    w = weights or (folder / "weights.pt" if (folder / "weights.pt").exists() else ROOT / "resources" / "lvpnet-v1.pt")
    print("weights", w, flush=True)
    gpu = LVPNetCodec(w, device=dev)
    cpu = LVPNetCodec(w, device="cpu")
    if importlib.util.find_spec("imagecodecs") is None:  # no base layers without it: the version before them
        gpu.version = cpu.version = 6
    eng_g, eng_c = gpu.engine(), cpu.engine()
    dec_gemm = IntegerDecoder(eng_c._ck["decoder"], device=dev, impl="gemm")
    sync = (lambda: None) if dry_run else torch.cuda.synchronize
    report = {"device": "cpu (dry run)" if dry_run else torch.cuda.get_device_name(0), "torch": torch.__version__, "weights_sha256": eng_c.sha256,
              "bitstream_version": cpu.version, "inputs": []}
    ok = True
    for f in sorted(glob.glob(str(folder / "*.npy"))):
        x = np.load(f)
        name = Path(f).stem
        rec = {"name": name, "shape": list(x.shape), "dtype": x.dtype.str}
        gpu.encode(x)  # warm-up (cuDNN, allocator)
        sync()
        te = []
        for _ in range(repeat):
            t = time.perf_counter(); dg = gpu.encode(x); sync(); te.append(time.perf_counter() - t)
        td = []
        for _ in range(repeat):
            t = time.perf_counter(); yg = gpu.decode(dg, x.shape, x.dtype, cpu.version); sync(); td.append(time.perf_counter() - t)
        t = time.perf_counter(); yc = cpu.decode(dg, x.shape, x.dtype, cpu.version); tcd = time.perf_counter() - t
        t = time.perf_counter(); dc = cpu.encode(x); tce = time.perf_counter() - t
        yx = gpu.decode(dc, x.shape, x.dtype, cpu.version)
        rec.update(
            gpu_encode_cpu_decode_exact=bool(np.array_equal(yc, x)),
            gpu_encode_gpu_decode_exact=bool(np.array_equal(yg, x)),
            cpu_encode_gpu_decode_exact=bool(np.array_equal(yx, x)),
            same_bytes_gpu_cpu=dg == dc,
            bytes_gpu=len(dg), bytes_cpu=len(dc), bits_per_sample=round(8 * len(dg) / x.size, 4),
            gpu_encode_s=round(min(te), 4), gpu_decode_s=round(min(td), 4),
            gpu_encode_mpix_s=round(x.size / min(te) / 1e6, 2), gpu_decode_mpix_s=round(x.size / min(td) / 1e6, 2),
            cpu_encode_s=round(tce, 3), cpu_decode_s=round(tcd, 3),
        )
        # (mu, s) on CUDA (conv, gemm) vs CPU from the same z, first plane
        plane = prep.rgb_to_planes(x)[0] if x.ndim == 3 else x.astype(np.int64)
        plane = np.asarray(plane).astype(np.int64)
        vmin, R, B = prep.slice_params(plane)
        agree = True
        if R > 0:
            v = plane - vmin
            H, W = v.shape
            Hp, Wp = prep.padded_size(H, W, eng_c.cfg.stride)
            vp = prep.polyphase_pad(v, Hp, Wp, eng_c.dec.f)
            z = eng_c.model().encode_slice(vp, B)
            fc, fg, fm = eng_c.dec.features(z), eng_g.dec.features(z.to(dev)), dec_gemm.features(z.to(dev))
            agree &= torch.equal(fc, fg.cpu()) and torch.equal(fc, fm.cpu())
            ctx_c, ctx_g = [], []
            f = eng_c.dec.f
            for k, (di, dj) in enumerate(eng_c.dec.order):
                sub = torch.from_numpy(np.ascontiguousarray(vp[di::f, dj::f]))
                a = eng_c.dec.predict(fc, ctx_c, k, R, B, known=sub)
                b = eng_g.dec.predict(fg, ctx_g, k, R, B, known=sub.to(dev))
                c = dec_gemm.predict(fm, ctx_g, k, R, B, known=sub.to(dev))
                for u, vv, ww in zip(a, b, c):
                    agree &= torch.equal(u, vv.cpu()) and torch.equal(u, ww.cpu())
                ctx_c.append(sub)
                ctx_g.append(sub.to(dev))
        rec["mu_s_agree_cpu_cuda_gemm"] = bool(agree)
        good = rec["gpu_encode_cpu_decode_exact"] and rec["gpu_encode_gpu_decode_exact"] and rec["cpu_encode_gpu_decode_exact"] and agree
        ok &= bool(good)
        report["inputs"].append(rec)
        print(json.dumps(rec), flush=True)
    # batch figure: all inputs, end to end on CUDA
    tot = sum(int(np.prod(r["shape"])) for r in report["inputs"])
    report["total_mpix"] = tot / 1e6
    report["gpu_encode_mpix_s_all"] = round(tot / 1e6 / sum(r["gpu_encode_s"] for r in report["inputs"]), 2)
    report["gpu_decode_mpix_s_all"] = round(tot / 1e6 / sum(r["gpu_decode_s"] for r in report["inputs"]), 2)
    report["all_exact"] = bool(ok)
    print(json.dumps({k: v for k, v in report.items() if k != "inputs"}))
    if out:
        Path(out).write_text(json.dumps(report, indent=1))
    return 0 if ok else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--prepare", metavar="DIR")
    ap.add_argument("--max-mb", type=float, default=2.6, help="--prepare: inputs up to this size in all (device limit)")
    ap.add_argument("--imagecodecs", action="store_true",
                    help="--prepare: add the imagecodecs wheel (26 MB), so the run checks bitstream 7 (else 6)")
    g.add_argument("--run", metavar="DIR")
    ap.add_argument("--out")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--weights", help="checkpoint to use (default: the prepared one, else resources/lvpnet-v1.pt)")
    ap.add_argument("--dry-run", action="store_true", help="run the checks with the CPU standing in for CUDA")
    args = ap.parse_args(argv)
    if args.prepare:
        prepare(Path(args.prepare), args.max_mb, args.imagecodecs)
        return 0
    w = Path(args.weights) if args.weights else None
    return run(Path(args.run), Path(args.out) if args.out else None, args.repeat, args.dry_run, w)


if __name__ == "__main__":
    raise SystemExit(main())
