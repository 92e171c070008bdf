#!/usr/bin/env python3
"""The committed GPU checkpoint that the next GPU session resumes from (``checkpoints/gpu-latest/``).

    python scripts/gpu_checkpoint.py collect DIR [--dest checkpoints/gpu-latest]
        DIR: the files_at folder of a `scripts/gpu_session.sh` call (DIR/<run>/best.pt, logs.tgz,
        volume_engine.json). Picks the run with the fewest total val bits, writes DEST/resume.pt
        (config + float weights, large tensors as float16: 3.7 MB instead of 8.8 MB, since the whole
        checkout travels to the device) and DEST/source.json, and prints the lines for docs/MODEL.md.
    python scripts/gpu_checkpoint.py expand DEST/resume.pt OUTDIR
        (on the device) OUTDIR/resume.pt, a float32 checkpoint `lvpnet.train --resume` loads, and
        OUTDIR/config.json: the run's model and train config with the latent and QCM reopening off
        (those weights are already past it; reopening again would start that part over).

Needs torch only (the device's bare Python).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
HALF_MIN_NUMEL = 4096  # small tensors (biases, scales) stay float32
HALF_MAX = 60000.0  # below float16's 65504


def compact_state(state: dict) -> dict:
    """Large weights as float16; the latent prior's state (its histogram: 154 x 63, mostly counts far below
    float16's smallest normal, which rounded 9417 of its 9702 entries to 0) always float32."""
    out = {}
    for k, v in state.items():
        if "prior" in k:
            out[k] = v
        elif v.is_floating_point() and v.numel() >= HALF_MIN_NUMEL and float(v.abs().max()) < HALF_MAX:
            out[k] = v.to(torch.float16)
        else:
            out[k] = v
    return out


def collect(run_dir: Path, dest: Path, force: bool = False) -> int:
    runs = []
    for best in sorted(run_dir.glob("*/best.pt")):
        ck = torch.load(best, map_location="cpu", weights_only=True)
        val = ck["meta"].get("val", {})
        runs.append((float(val.get("total_bits", float("inf"))), best, ck))
        print(f"{best.parent.name}: val {val.get('bpsp', float('nan')):.4f} bpsp, total {val.get('total_bits')} bits, "
              f"step {ck['meta'].get('steps')}")
    if not runs:
        print(f"no */best.pt under {run_dir}", file=sys.stderr)
        return 1
    bits, best, ck = min(runs, key=lambda r: r[0])
    meta = ck["meta"]
    before = dest / "source.json"
    if before.exists() and not force:  # a session that got worse (or a smoke test) must not replace a better start
        old = json.loads(before.read_text()).get("val_total_bits_device_pack")
        if old is not None and bits > float(old):
            print(f"{best}: {bits:.0f} val bits, more than the committed {dest / 'resume.pt'}'s {float(old):.0f} "
                  "(the same val pack when --prepare was not run again): kept the committed one; --force replaces it",
                  file=sys.stderr)
            return 3
    dest.mkdir(parents=True, exist_ok=True)
    small = {
        "format": ck["format"],
        "config": ck["config"],
        "state_dict": compact_state(ck["state_dict"]),
        "meta": {k: meta[k] for k in ("device", "params", "seed", "torch", "train_config", "train_config_base", "steps",
                                      "train_minutes", "when") if k in meta},
    }
    torch.save(small, dest / "resume.pt")
    sha = hashlib.sha256(best.read_bytes()).hexdigest()
    val = meta.get("val", {})
    source = {
        "run": best.parent.name,
        "best_pt_sha256": sha,
        "collected": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "val_bpsp_device_pack": val.get("bpsp"),
        "val_total_bits_device_pack": bits,
        "steps": meta.get("steps"),
        "train_minutes": meta.get("train_minutes"),
        "device": meta.get("device"),
        "runs": {r[1].parent.name: r[0] for r in runs},
    }
    (dest / "source.json").write_text(json.dumps(source, indent=1) + "\n")
    bench = run_dir / "volume_engine.json"
    eng = json.loads(bench.read_text()) if bench.exists() else None
    print(f"wrote {dest / 'resume.pt'} ({(dest / 'resume.pt').stat().st_size / 1e6:.1f} MB) from {best}")
    print("\nfor docs/MODEL.md section 5:")
    print(f"- GPU session {source['collected']}: run `{source['run']}` best at step {source['steps']} "
          f"({source['train_minutes']} min), {source['val_bpsp_device_pack']:.4f} bpsp on the device's val pack "
          f"(runs: {', '.join(f'{k} {v:.0f}' for k, v in source['runs'].items())} total bits); "
          f"best.pt sha256 {sha[:12]}; committed as checkpoints/gpu-latest/resume.pt (the next session resumes it).")
    if eng:
        print(f"- engine (benchmarks/volume_engine.py --device {eng.get('device')}, {eng.get('machine')}): "
              f"{eng.get('slices')} slices, encode {eng.get('encode_mpix_s')} Mpixel/s, decode "
              f"{eng.get('decode_mpix_s')} Mpixel/s, {eng.get('bits_per_sample')} bits/sample, "
              f"all exact: {eng.get('all_exact')}")
    print("\nthen: git add checkpoints/gpu-latest && git commit -m '...' -- checkpoints/gpu-latest")
    return 0


def expand(src: Path, out: Path) -> int:
    ck = torch.load(src, map_location="cpu", weights_only=True)
    state = {k: (v.float() if v.dtype == torch.float16 else v) for k, v in ck["state_dict"].items()}
    out.mkdir(parents=True, exist_ok=True)
    torch.save({"format": ck["format"], "config": ck["config"], "state_dict": state, "meta": ck["meta"]},
               out / "resume.pt")
    meta = ck["meta"]
    # the config file's settings, not the command's overrides (a smoke test's --batch 2 --crop 64)
    train = dict(meta.get("train_config_base") or meta.get("train_config", {}))
    train["reopen_latent"] = False
    train["reopen_qcm"] = False
    # new crops each session: the same seed replayed the same crop sequence every time
    train["seed"] = int(meta.get("seed") or 0) + int(meta.get("steps") or 0) + 1
    (out / "config.json").write_text(json.dumps({"model": ck["config"], "train": train}, indent=1) + "\n")
    print(f"expanded {src} (step {ck['meta'].get('steps')}, {ck['meta'].get('when')}) -> {out}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect")
    c.add_argument("dir")
    c.add_argument("--dest", default=str(ROOT / "checkpoints" / "gpu-latest"))
    c.add_argument("--force", action="store_true", help="replace a committed checkpoint with more val bits")
    e = sub.add_parser("expand")
    e.add_argument("src")
    e.add_argument("out")
    a = ap.parse_args()
    if a.cmd == "collect":
        return collect(Path(a.dir), Path(a.dest), a.force)
    return expand(Path(a.src), Path(a.out))


if __name__ == "__main__":
    raise SystemExit(main())
