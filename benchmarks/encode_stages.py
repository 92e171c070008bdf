"""Where the learned codec's encode time goes: each stage's time per 512 x 512 CT slice, one thread.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/encode_stages.py [--rounds 2] [--data ../shared/data]

The slices are ``cpu_speed.py``'s (the val split's three CT arrays and the sample CT's 12 slices). Each stage
is timed by a wrapper around its function (wall clock, nested: a stage's time includes the stages it calls,
e.g. ``Engine._lattice_first`` includes ``PlaneSteps.fitted``, which includes ``refine.choose_step``); the
network's walk runs inside the encoder's generator and is what the stages leave of the total. For choosing
what to speed up next, not for the ratio to JPEG-XL (``cpu_speed.py`` measures that side by side).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]

# (module, attribute path): the stages of ``Engine.encode_walk`` worth a line each
STAGES = (
    ("lvpnet.codecs.lvpnet_engine", "Engine._lattice_first"),
    ("lvpnet.codecs.plane_steps", "PlaneSteps.fitted"),
    ("lvpnet.coding.refine", "choose_step"),
    ("lvpnet.coding.refine", "refine_step"),
    ("lvpnet.codecs.lvpnet_base", "options"),
    ("lvpnet.coding.lattice_estimate", "early_level"),
    ("lvpnet.coding.adapt", "choose_coding"),
    ("lvpnet.coding.block_choice", "choose"),
    ("lvpnet.codecs.plane_steps", "PlaneSteps.itemised"),
    ("lvpnet.codecs.plane_steps", "PlaneSteps.offsets_of"),
    ("lvpnet.coding.item_stage", "plan_items"),
    ("lvpnet.coding.item_stage", "write_items"),
    ("lvpnet.coding.stage", "write_side"),
)


def timed_stage(spent: dict, module: str, path: str) -> None:
    """Wrap ``module.path`` so its calls add their time to ``spent[path]``; a plain function is replaced in
    every lvpnet module that imported it by name too."""
    mod = importlib.import_module(module)
    *owners, name = path.split(".")
    owner = mod
    for o in owners:
        owner = getattr(owner, o)
    fn = getattr(owner, name)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[path] = spent.get(path, 0.0) + time.perf_counter() - t

    setattr(owner, name, wrapper)
    if not owners:
        for m in list(sys.modules.values()):
            if getattr(m, "__name__", "").startswith("lvpnet") and getattr(m, name, None) is fn:
                setattr(m, name, wrapper)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from cpu_speed import slices

    from lvpnet.codecs.lvpnet_codec import LVPNetCodec

    codec = LVPNetCodec(device="cpu")
    xs = [x for _, x in slices(Path(args.data))]
    for x in xs[:2]:  # warm-up: weights, numba kernels, the products' layouts
        codec.encode(x)
    spent: dict = {}
    for module, path in STAGES:
        timed_stage(spent, module, path)
    total = 0.0
    for _ in range(args.rounds):
        for x in xs:
            t = time.perf_counter()
            codec.encode(x)
            total += time.perf_counter() - t
    n = args.rounds * len(xs)
    print(f"{len(xs)} slices x {args.rounds} rounds: encode {1e3 * total / n:.1f} ms a slice")
    print("| stage (nested) | ms a slice |\n|---|---|")
    for path, s in sorted(spent.items(), key=lambda kv: -kv[1]):
        print(f"| {path} | {1e3 * s / n:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
