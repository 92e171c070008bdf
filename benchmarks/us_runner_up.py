"""Would a second neighbour-repeat candidate pay? An optimistic estimate (issue 17, ultrasound).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/us_runner_up.py ID [ID ...] [--data DIR]

Today a pixel of step k >= 1 may carry one flag, "I am c1" (``coding.repeat``: the value most of
its ring of decoded neighbours share). Text and graphics on black are two-valued: where that flag
misses, the pixel is often the *other* value of its ring (c2, the runner-up) and pays the
network's table bits for it. On the per-pixel bit map of ``lvpnet.analysis`` (the middle slice of
each manifest id, steps 4-15: steps 0-3 are the base lattice on these planes) this counts the
pixels that miss c1 and equal c2, the bits they cost now, and the ideal adaptive cost (KT) of a
flag "I am c2" on every pixel that misses c1 and has a c2, in contexts of how many ring neighbours
hold c1 and c2. Optimistic: the c2 pixels' whole bits count as saved (their c1 flag's miss and any
drift of the adapted tables are ignored). Results: ``benchmarks/us_levers.md``.
"""

from __future__ import annotations

import argparse
import json
from math import lgamma, log
from pathlib import Path

import numpy as np

from lvpnet import analysis
from lvpnet.coding.repeat import ring_for_step
from lvpnet.model.prep import collapse_gaps, rgb_to_planes, to_grid

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def kt_bits(hits: int, n: int) -> float:
    """Code length of ``hits`` ones in ``n`` binary symbols under the KT estimator."""
    if not n:
        return 0.0
    return (lgamma(n + 1) - lgamma(hits + 0.5) - lgamma(n - hits + 0.5) + 2 * lgamma(0.5)) / log(2)


def ring_values(v: np.ndarray, pos, f: int, ring) -> tuple[np.ndarray, np.ndarray]:
    """The ring neighbours' values and whether each is inside the plane, (len(ring), h, w)."""
    H, W = v.shape
    di, dj = pos
    rows = di + f * np.arange(len(range(di, H, f)))[:, None]
    cols = dj + f * np.arange(len(range(dj, W, f)))[None, :]
    nb, ok = [], []
    for dy, dx in ring:
        r, c = rows + dy, cols + dx
        ok.append((r >= 0) & (r < H) & (c >= 0) & (c < W))
        nb.append(v[np.clip(r, 0, H - 1), np.clip(c, 0, W - 1)])
    return np.stack(nb), np.stack(ok)


def first_two(nb: np.ndarray, ok: np.ndarray):
    """(c1, x1, c2, x2): the value most ring neighbours share (as ``coding.repeat``) and how many,
    then the most shared value other than c1 (x2 = 0: none)."""
    eq = ((nb[:, None] == nb[None]) & ok[None] & ok[:, None]).sum(1)
    b1 = np.argmax(eq, 0)[None]
    c1, x1 = np.take_along_axis(nb, b1, 0)[0], np.take_along_axis(eq, b1, 0)[0]
    eq2 = np.where((nb != c1[None]) & ok, eq, 0)
    b2 = np.argmax(eq2, 0)[None]
    return c1, x1, np.take_along_axis(nb, b2, 0)[0], np.take_along_axis(eq2, b2, 0)[0]


def plane_estimate(model, plane: np.ndarray) -> dict:
    dec = model.dec
    d = analysis._plane(model, plane)
    bits = d["pixel_bits"]
    total = float(bits.sum() + d["latent_bits"].sum())
    v = collapse_gaps(to_grid(plane)[2])[0]
    v = v - v.min()
    saved, hits, counts = 0.0, 0, {}
    for k in range(4, dec.steps):
        pos = dec.order[k]
        sub, b = v[pos[0] :: dec.f, pos[1] :: dec.f], bits[pos[0] :: dec.f, pos[1] :: dec.f]
        c1, x1, c2, x2 = first_two(*ring_values(v, pos, dec.f, ring_for_step(dec.order, k)))
        flagged = (x2 >= 1) & (sub != c1)  # the first flag missed and a runner-up exists
        hit = flagged & (sub == c2)
        saved += float(b[hit].sum())
        hits += int(hit.sum())
        for key in set(zip(x1[flagged].tolist(), x2[flagged].tolist())):
            sel = flagged & (x1 == key[0]) & (x2 == key[1])
            h, n = counts.get(key, (0, 0))
            counts[key] = (h + int(hit[sel].sum()), n + int(sel.sum()))
    flag = sum(kt_bits(h, n) for h, n in counts.values())
    return {"total": total, "pixels": v.size, "hits": hits, "saved": saved, "flag": flag}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ids", nargs="+")
    ap.add_argument("--data", type=Path, default=DATA)
    a = ap.parse_args(argv)
    model = analysis.load_model()
    items = {it["id"]: it for it in json.loads((a.data / "manifest.json").read_text())["items"]}
    groups: dict[str, list[float]] = {}
    for name in a.ids:
        it = items[name]
        arr = np.load(a.data / it["file"])["image"]
        rgb = bool(it.get("rgb", False))
        frame = arr.shape[-3:] if rgb else arr.shape[-2:]
        arr = arr.reshape((-1, *frame))
        x = arr[arr.shape[0] // 2]
        for i, p in enumerate(rgb_to_planes(x) if rgb else [x]):
            r = plane_estimate(model, p.astype(np.int64))
            net = r["saved"] - r["flag"]
            print(f"{name[:30]:30s} {it['modality']} plane {i}: {r['total'] / r['pixels']:.4f} bits/px; runner-up "
                  f"hits {100 * r['hits'] / r['pixels']:.2f}% of pixels, {100 * r['saved'] / r['total']:.1f}% of the "
                  f"bits; flags {100 * r['flag'] / r['total']:.1f}%; net {100 * net / r['total']:+.1f}%")
            g = groups.setdefault(f"{it['split']} {it['modality']}", [0.0, 0.0, 0.0])
            g[0] += r["total"]
            g[1] += net
            g[2] += max(net, 0.0)
    for key, (total, net, paying) in groups.items():
        print(f"{key}: optimistic saving {100 * net / total:+.2f}% on every plane, "
              f"{100 * paying / total:+.2f}% where it pays")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
