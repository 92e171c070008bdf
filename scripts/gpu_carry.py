#!/usr/bin/env python3
"""Build the one folder a GPU session carries (``scripts/gpu_session.sh --prepare`` calls this).

    .venv/bin/python scripts/gpu_carry.py [--out .gpucarry] [--wheels .volbench] [--limit-mib 60]

The device lacks imagecodecs and constriction and takes at most 64 MiB of working tree, carried
paths included. The imagecodecs wheel alone is 26.5 MB, most of it codecs lvpnet never calls
(AVIF/AOM, SZ3, TIFF, ...), so its files are unpacked and only the modules lvpnet's coding paths
use are kept (with the bundled libraries they link), packed as ``site.tar.xz``; a wheel install is
an unzip for these two, so unpacking the tarball into /tmp/site there is the install.

Writes into --out:
  site.tar.xz       imagecodecs (jpegxl, zstd, png, jpegls, jpeg2k, htj2k) + constriction, cp312/abi3
  vol/sources.npy   the engine benchmark's source slices (benchmarks/volume_engine.py --run vol)
  train/            a train pack from scripts/prepare_train_data.py, its per-array sample cap lowered
                    until checkout + this folder fit --limit-mib (with room kept for
                    checkpoints/gpu-latest/ when that is not committed yet)
  size.txt          the accounting (bytes that travel)
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# imagecodecs modules that lvpnet calls (codecs.fallback, codecs.lvpnet_base, classical, io.dicom's
# usual syntaxes), plus the shared ones every codec module imports
KEEP = ("_shared", "_shared_cython", "_imcd", "_jpegxl", "_zstd", "_png", "_jpegls", "_jpeg2k", "_htj2k", "_zlib")
RESERVE_CKPT = 4_000_000  # checkpoints/gpu-latest/resume.pt (fp16 state) once a GPU session has run


def needed_libs(so: Path) -> list[str]:
    out = subprocess.run(["readelf", "-d", str(so)], capture_output=True, text=True, check=True).stdout
    return [ln.split("[", 1)[1].split("]", 1)[0] for ln in out.splitlines() if "Shared library:" in ln]


def slim_site(wheels: list[Path], dest: Path) -> None:
    """Unpack the wheels, drop the imagecodecs modules (and bundled libraries) lvpnet does not use."""
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp)
        for w in wheels:
            zipfile.ZipFile(w).extractall(site)
        pkg, libs = site / "imagecodecs", site / "imagecodecs.libs"
        keep = {pkg / f"{m}.abi3.so" for m in KEEP}
        missing = [p.name for p in keep if not p.exists()]
        if missing:
            raise SystemExit(f"imagecodecs wheel lacks {missing}")
        # the bundled libraries the kept modules need, transitively
        todo, libs_kept = list(keep), set()
        while todo:
            for name in needed_libs(todo.pop()):
                if (libs / name).exists() and name not in libs_kept:
                    libs_kept.add(name)
                    todo.append(libs / name)
        for so in pkg.glob("*.so"):
            if so not in keep:
                so.unlink()
        for lib in libs.iterdir():
            if lib.name not in libs_kept:
                lib.unlink()
        with tarfile.open(dest, "w:xz", preset=9) as tf:
            for p in sorted(site.iterdir()):
                tf.add(p, arcname=p.name)


def tracked_bytes() -> int:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    return sum((ROOT / f.decode()).stat().st_size for f in files if f and (ROOT / f.decode()).is_file())


def folder_bytes(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / ".gpucarry"))
    ap.add_argument("--wheels", default=str(ROOT / ".volbench"),
                    help="a folder with the two wheels and sources.npy (benchmarks/volume_engine.py --prepare "
                         "makes one; made here when missing)")
    ap.add_argument("--limit-mib", type=float, default=60.0, help="checkout + carry (the device's limit: 64)")
    ap.add_argument("--val-slices", type=int, default=2)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"), help="the shared corpus (manifest.json)")
    ap.add_argument("--site-only", action="store_true",
                    help="only (re)build --out/site.tar.xz from the wheels in --wheels (scripts/gpu_smoke.sh)")
    a = ap.parse_args()
    out, wdir = Path(a.out), Path(a.wheels)
    if a.site_only:
        out.mkdir(parents=True, exist_ok=True)
        slim_site(sorted(wdir.glob("*.whl")), out / "site.tar.xz")
        return 0
    if not list(wdir.glob("imagecodecs-*.whl")) or not (wdir / "sources.npy").exists():
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "volume_engine.py"), "--prepare", str(wdir),
                        "--data", a.data], check=True)
    if out.exists():
        shutil.rmtree(out)
    (out / "vol").mkdir(parents=True)
    shutil.copy2(wdir / "sources.npy", out / "vol" / "sources.npy")
    slim_site(sorted(wdir.glob("*.whl")), out / "site.tar.xz")
    tracked = tracked_bytes()
    reserve = 0 if (ROOT / "checkpoints" / "gpu-latest" / "resume.pt").exists() else RESERVE_CKPT
    room = int(a.limit_mib * 2**20) - tracked - reserve - folder_bytes(out) - 4096
    samples = 7e5
    while True:
        r = subprocess.run([sys.executable, str(ROOT / "scripts" / "prepare_train_data.py"), "--data", a.data,
                            "--out", str(out / "train"),
                            "--samples", f"{samples:.0f}", "--val-slices", str(a.val_slices),
                            "--max-mb", f"{room / 2**20:.2f}"], capture_output=True, text=True)
        print(r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr[-300:])
        if r.returncode == 0 and folder_bytes(out / "train") <= room:
            break
        samples *= 0.7
        if samples < 2e4:
            raise SystemExit(f"no train pack fits {room / 2**20:.1f} MiB")
    carry = folder_bytes(out)
    lines = [
        f"tracked files (git ls-files): {tracked} B",
        f"{out.name}/: {carry} B (site.tar.xz {(out / 'site.tar.xz').stat().st_size}, vol {folder_bytes(out / 'vol')}, "
        f"train {folder_bytes(out / 'train')}, --samples {samples:.0f}, --val-slices {a.val_slices})",
        f"reserved for checkpoints/gpu-latest/: {reserve} B",
        f"travels: {tracked + carry} B = {(tracked + carry) / 2**20:.1f} MiB (+ untracked, not ignored files; limit 64 MiB)",
    ]
    (out / "size.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
