"""What adaptive coding of the refinement's side information would save (measured, not built).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/side_info_adaptive.py [--split val]

Codes every slice of every grey val array alone (the RGB ones are left out: three planes a slice) (``LVPNetCodec``, shipped weights), keeps each plane's
refinement and error feedback as written (``coding.stage.Refinement.write``), and counts per modality:
the side information's share of the chunk bits as coded (uniform symbols: a config over 8, edges over
the scale count, each coefficient's magnitude class over 14 values, then its mantissa and sign raw), and
the refinement's bits under sequential adaptive counts (Krichevsky-Trofimov, no side cost): configs in
one context; magnitude classes per offset rank, or per offset rank and the magnitude of the class
above; or the coefficients coded as differences from the class above. The best of these is reported.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def kt_bits(symbols, contexts, k: int) -> float:
    counts: dict = defaultdict(lambda: np.full(k, 0.5))
    bits = 0.0
    for s, c in zip(symbols, contexts):
        t = counts[c]
        bits -= math.log2(t[s] / t.sum())
        t[s] += 1
    return bits


def refinement_costs(refs, order, n_scales: int) -> dict:
    from lvpnet.coding import refine

    out = defaultdict(float)
    configs, mags, by_rank, by_above, mant_sign = [], [], [], [], 0
    diffs, diff_ctx, diff_raw = [], [], 0
    for k in range(1, len(order)):
        r = refs[k]
        configs.append(0 if r is None else r.config)
        if r is None:
            continue
        q = np.asarray(r.coefs, np.int64).reshape(r.coefs.shape[0], -1)
        out["edges"] += (q.shape[0] - 1) * math.log2(n_scales)
        for ci in range(q.shape[0]):
            for oi in range(q.shape[1]):
                m = abs(int(q[ci, oi])).bit_length()
                mags.append(m)
                by_rank.append(min(oi, 11))
                above = 0 if ci == 0 else min(abs(int(q[ci - 1, oi])).bit_length(), 6)
                by_above.append((min(oi, 11), above))
                mant_sign += max(m - 1, 0) + (m >= 1)
                d = int(q[ci, oi]) - (int(q[ci - 1, oi]) if ci else 0)
                md = abs(d).bit_length()
                diffs.append(md)
                diff_ctx.append((min(oi, 11), ci > 0))
                diff_raw += max(md - 1, 0) + (md >= 1)
    mc = refine.MAG_CLASSES
    out["configs"] = kt_bits(configs, [0] * len(configs), len(refine.CONFIGS))
    out["coefs"] = min(kt_bits(mags, by_rank, mc) + mant_sign, kt_bits(mags, by_above, mc) + mant_sign,
                       kt_bits(diffs, diff_ctx, mc) + diff_raw)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--split", default="val")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from lvpnet.codecs.lvpnet_codec import LVPNetCodec
    from lvpnet.coding import feedback, refine, stage

    written = []
    plain = stage.Refinement.write

    def keep(self, coder, state, ctx):
        written.append((state[0], state[1], ctx.order, ctx.n_scales))
        return plain(self, coder, state, ctx)

    stage.Refinement.write = keep
    codec = LVPNetCodec()
    data = Path(args.data)
    tot: dict = defaultdict(lambda: defaultdict(float))
    for it in json.loads((data / "manifest.json").read_text())["items"]:
        if it["split"] != args.split or it.get("rgb"):
            continue
        im = np.load(data / it["split"] / f"{it['id']}.npz")["image"]
        for s in ([im] if im.ndim == 2 else list(im.reshape(-1, *im.shape[-2:]))):
            written.clear()
            t = tot[it["modality"]]
            t["chunk"] += 8 * len(codec.encode(s))
            refs, fbs, order, n_scales = written[-1]  # the plane as written (a grey slice: one plane)
            t["refinement"] += refine.side_bits(refs, order, n_scales)
            t["feedback"] += feedback.side_bits(fbs, len(order))
            a = refinement_costs(refs, order, n_scales)
            t["adaptive"] += a["configs"] + a["edges"] + a["coefs"]
    print("| modality | side information, share of the chunk bits | refinement bits as coded | adaptive | saving, share of the chunk bits |")
    print("|---|---|---|---|---|")
    for mod, t in sorted(tot.items()):
        share = (t["refinement"] + t["feedback"]) / t["chunk"]
        print(f"| {mod} | {100 * share:.2f}% | {t['refinement']:,.0f} | {t['adaptive']:,.0f} "
              f"({100 * (t['adaptive'] / t['refinement'] - 1):+.1f}%) | {100 * (t['refinement'] - t['adaptive']) / t['chunk']:.3f}% |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
