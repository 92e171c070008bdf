"""Offline estimate (issue 17, measured, not built; docs/MODEL.md section 6): the pixels next to a
plane's minimum (a CT's padding, an ultrasound's black background), coded as an "is the minimum" flag
plus a value around the mean of their non-minimum decoded neighbours with a Laplace scale from those
neighbours' spread, against what the codec's maps (``lvpnet.analysis``) say they cost now. Optimistic:
ideal adaptive flag costs, maximum-likelihood scales per class.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/min_edge_estimate.py train/pdd_CT_head_CQ500:0 \
        val/cs_CT_toshiba_CT2:0 val/fod_US_philips_iU22:0
"""
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
import numpy as np  # noqa: E402

from lvpnet import analysis  # noqa: E402
from lvpnet.model import prep  # noqa: E402
from lvpnet.model.prep import ORDERS  # noqa: E402

model = analysis.load_model()


def laplace_bits(r, b):
    # discretised Laplace(0, b) code length of integer r: P = CDF(r+.5)-CDF(r-.5)
    a = np.abs(r).astype(float)
    hi = 0.5 * np.exp(-np.maximum(a - 0.5, 0) / b)
    lo = 0.5 * np.exp(-(a + 0.5) / b)
    p = np.where(a == 0, 1 - np.exp(-0.5 / b), hi - lo)
    return -np.log2(np.maximum(p, 1e-12))


def run(name, fr):
    a = np.load(DATA / f"{name}.npz")["image"]
    s = a.reshape((-1,) + a.shape[-2:])[fr].astype(np.int64)
    maps = analysis.analyse_slice(s, model)
    bits = maps.pixel_bits.astype(np.float64)
    vmin, step, k = prep.to_grid(s)
    p, _ = prep.collapse_gaps(k)
    H, W = p.shape
    st = np.zeros((4, 4), int)
    for i, (di, dj) in enumerate(ORDERS[4]):
        st[di, dj] = i
    yy, xx = np.mgrid[:H, :W]
    S = st[yy % 4, xx % 4]
    P = np.pad(p, 1, constant_values=-1)  # -1: outside the plane
    SP = np.pad(S, 1, constant_values=99)
    nb, dec = [], []
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy == dx == 0:
                continue
            nb.append(P[1 + dy:1 + dy + H, 1 + dx:1 + dx + W])
            dec.append(SP[1 + dy:1 + dy + H, 1 + dx:1 + dx + W] < S)  # decoded before this pixel
    nb = np.stack(nb)
    dec = np.stack(dec) & (nb >= 0)
    nmin = ((nb == 0) & dec).sum(0)
    nnon = ((nb > 0) & dec).sum(0)
    B = (S >= 4) & (nmin > 0) & (nnon > 0)
    cur = bits[B].sum()
    # flag: is-min, context (nmin, nnon)
    ism = (p == 0)[B]
    ctx = (nmin * 9 + nnon)[B]
    fbits = 0.0
    for c in np.unique(ctx):
        m = ctx == c
        n1, n = ism[m].sum(), m.sum()
        for q in (n1, n - n1):
            if q:
                fbits -= q * np.log2(q / n)
        fbits += 0.5 * np.log2(max(n, 2))  # a parameter's cost, roughly
    # value: around the mean of non-min decoded nbrs, Laplace scale from their MAD, 6 classes, ML scale per class
    w = ((nb > 0) & dec).astype(float)
    mean = (nb * w).sum(0) / np.maximum(w.sum(0), 1)
    mad = (np.abs(nb - mean) * w).sum(0) / np.maximum(w.sum(0), 1)
    sel = B & (p > 0)
    r, md = (p - np.rint(mean))[sel], mad[sel]
    cls = np.minimum(np.floor(np.log2(md + 1)).astype(int), 7)
    vbits = 0.0
    for c in np.unique(cls):
        m = cls == c
        b = max(np.abs(r[m]).mean(), 0.3)
        vbits += laplace_bits(r[m], b).sum() + 16
    alt = fbits + vbits
    print(f"{name} fr{fr}: B {B.sum()} px ({B.mean():.4f}), min among them {ism.mean():.2f}; now {cur:.0f} bits "
          f"({cur / bits.sum():.3%} of slice, {cur / max(B.sum(), 1):.2f}/px); alt {alt:.0f} (flag {fbits:.0f} value {vbits:.0f}) "
          f"-> saves {(cur - alt) / bits.sum():.2%} of the slice", flush=True)


for arg in sys.argv[1:]:
    n, f = arg.rsplit(':', 1)
    run(n, int(f))
