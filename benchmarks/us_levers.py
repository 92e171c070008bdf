"""What would close the ultrasound gap: the shipped codec's per-pixel costs on every val slice (and the
train ultrasound), and what candidate bitstream mechanisms would save on them, per modality.

Two phases, so the expensive one runs once:

* ``collect``: per val array (all its slices, as ``run_val.py`` codes them, each volume slice
  against the one before as the writer does), per plane (grey, or G, R-G, B-G), the walk of
  ``lvpnet.analysis`` (network, refinement, feedback, offsets, adapted tables, flags, base
  lattice, reference) kept pixel by pixel: total bits as the file pays, flag bits, escape bits,
  the escape and flag masks, the step, the lattice's pixels. One ``.npz`` per plane in ``--cache``.
* ``estimate``: from the cache, each candidate's saving (bits) per modality and in total, and
  the learned-alone ratios of BENCHMARKS.md scaled by it.
* ``crossplane``: for the chroma planes of every cached RGB image, what a context from the planes
  decoded before them would save (flags, scale offsets, ``mu``, per class of their activity at the
  pixel; ``bitstream11_val.md``, "Left").

Run: OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/us_levers.py collect [--split val|trainus] [IDS]
     OMP_NUM_THREADS=1 .venv/bin/python benchmarks/us_levers.py estimate [--md benchmarks/us_levers.md]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path("/work/shared/data")
CACHE = Path("/tmp/us_levers_cache")


def manifest() -> list[dict]:
    return json.loads((DATA / "manifest.json").read_text())["items"]


def slices_of(it: dict, train_frames: bool) -> list[tuple[int, np.ndarray, np.ndarray | None]]:
    """(index, slice, reference) for every slice the codec codes (train: the middle frame only)."""
    from lvpnet.compressor import REFERENCE_RUN

    a = np.load(DATA / it["file"])["image"]
    nd = 3 if it.get("rgb") else 2
    lead = a.reshape((-1,) + a.shape[-nd:])
    if train_frames:
        m = lead.shape[0] // 2
        return [(m, lead[m], None)]
    return [(i, lead[i], lead[i - 1] if i % REFERENCE_RUN else None) for i in range(lead.shape[0])]


def plane_record(model, plane: np.ndarray, reference: np.ndarray | None) -> dict:
    """The per-pixel walk of one plane (int64 2-D), as ``analysis._plane`` and the codec make it."""
    import torch

    from lvpnet.codecs import lvpnet_base
    from lvpnet.coding import edge, lattice
    from lvpnet.coding.adapt import (
        WIDE_FLAG_LEVELS,
        choose_coding,
        lattice_bits,
        make_item,
        ref_flag_bits,
        side_bits,
        walk_plane,
    )
    from lvpnet.coding.estimate import fitted_steps
    from lvpnet.coding.latent_adapt import latent_code_bits
    from lvpnet.coding.reference import ref_values
    from lvpnet.coding.repeat import item_candidates
    from lvpnet.model.prep import collapse_gaps, padded_size, polyphase_pad, slice_params, to_grid
    from lvpnet.model.tables import pixel_symbols

    net, dec = model.net, model.dec
    cfg, f = dec.cfg, dec.f
    vmin0, step, plane = to_grid(plane)
    plane, gaps = collapse_gaps(plane)
    vmin, R, B = slice_params(plane)
    H, W = plane.shape
    if R == 0:
        return {"R": 0, "shape": (H, W)}
    ref = None if reference is None else ref_values(reference, vmin0, step, gaps, R)
    v = plane - vmin
    Hp, Wp = padded_size(H, W, cfg.stride)
    vp = polyphase_pad(v, Hp, Wp, f)
    with torch.no_grad():
        vt = torch.as_tensor(vp).to(net.encoder.stem.weight.dtype)[None]
        _y, z_hard, _ = net.latent(vt, torch.tensor([B]))
        z = z_hard[0].long()
        latent = float(latent_code_bits(dec, z).sum())
        feats = dec.features(z)
        steps, _level, fits = fitted_steps(dec, feats, v, vp, R, B)
    base = edge.expand(dec.pixel_tables.cpu().numpy())
    items, where, escs = [], [], []
    for k, vals, mu, s in steps:
        sym, _low, nb, esc = pixel_symbols(vals, mu, s, dec.pixel_shifts, dec.K)
        sym, s_, vals_n = sym.numpy(), s.long().numpy(), vals.numpy()
        s_ = edge.table_index(mu.numpy(), s_, edge.config_thresholds(cfg))
        esc = esc.numpy()
        extra = np.where(esc, np.log2(R + 1.0), nb.numpy().astype(np.float64))
        di, dj = dec.order[k]
        if k == 0 and cfg.step0_rows:
            for r in range(vals_n.shape[0]):
                items.append(make_item(0, sym[r], s_[r], extra[r], vals_n[r : r + 1], (di + r * f, dj), v, dec.order,
                                       f, row=r, min_flags=True, ref=ref))
                where.append((di + r * f, dj, 1, vals_n.shape[1]))
                escs.append(esc[r])
        else:
            items.append(make_item(k, sym, s_, extra, vals_n, (di, dj), v, dec.order, f, min_flags=True, ref=ref))
            where.append((di, dj) + vals_n.shape)
            escs.append(esc)
    w, flags, ref_level = choose_coding(items, base, WIDE_FLAG_LEVELS, ref is not None)
    costs = lvpnet_base.costs(v, R, f)
    prefix = lattice_bits(items, base, w, flags, lattice.candidate_steps(costs, dec.order, f))
    level = lattice.choose_from(items, prefix, costs, dec.order, f)
    known_k = lattice.steps(dec.order, lattice.stride(f, level)) if level else frozenset()
    shared = iter(lattice.map_share(items, prefix, known_k, costs[level]) if level else [])
    bits = np.zeros((H, W), np.float32)
    flagb = np.zeros((H, W), np.float32)
    escb = np.zeros((H, W), np.float32)
    escm = np.zeros((H, W), bool)
    hitm = np.zeros((H, W), bool)
    cand = np.zeros((H, W), np.int8)  # flag context x of the pixel (0: no flag), reference flags: -1
    stepm = np.zeros((H, W), np.uint8)
    symm = np.full((H, W), -1, np.int16)  # the table symbol of a pixel coded by the tables (-1: flagged or lattice)
    rowm = np.full((H, W), -1, np.int16)  # its table row (scale index and edge class)
    symb = np.zeros((H, W), np.float32)  # its adapted table bits (no low bits, no escape value)
    agree = np.zeros((H, W), np.int8)  # how many ring neighbours share the candidate (+8: it is the minimum)
    mum = np.zeros((H, W), np.int32)  # the location the codec codes around (refined)
    scm = np.zeros((H, W), np.int16)  # the scale index as coded (offsets, feedback)
    candm = np.full((H, W), -1, np.int32)  # the neighbour-repeat candidate (-1: none)
    for k, _vals, mu, s in steps:
        di, dj = dec.order[k]
        mum[di::f, dj::f] = mu.numpy()
        scm[di::f, dj::f] = s.numpy()
    known = np.zeros((H, W), bool)
    coded = [it for it in items if it.k not in known_k]
    walk = iter(walk_plane(coded, base, w, flags))

    def put(m, at, val):
        r0, c0, h, wd = at
        m[r0 : r0 + f * (h - 1) + 1 : f, c0 : c0 + f * (wd - 1) + 1 : f] = np.resize(np.asarray(val).reshape(-1), h * wd).reshape(h, wd)

    for it, at, esc in zip(items, where, escs):
        put(stepm, at, it.k)
        if it.k in known_k:
            put(bits, at, next(shared))
            put(known, at, True)
            continue
        it2, keep, tabs, counts, refs = next(walk)
        assert it2 is it
        fb = ref_flag_bits(it, refs)
        hit = it.ref_hit()
        x = np.zeros(it.sym.shape, np.int64)
        if it.flagged(flags):
            fb = fb + counts.bits(it.flag_hit(flags), it.flag_x(flags))
            hit = hit | it.flag_hit(flags)
            x = it.flag_x(flags)
        if it.ref_flagged:
            x = np.where(it.ref_x > 0, -1, x)
        b = fb.copy()
        sb = np.zeros(it.sym.shape, np.float64)
        sb[keep] = tabs.symbol_bits(it.sym[keep], it.s[keep])
        b[keep] += sb[keep] + it.extra_bits[keep]
        put(symm, at, np.where(keep, it.sym, -1))
        got = item_candidates(v, at[:2], f, at[2:], dec.order, it.k, it.row)
        if got is not None:
            put(candm, at, got[0])
        put(agree, at, np.zeros(it.sym.shape, np.int64) if it.x is None else it.x + 8 * ((it.cand == 0) & (it.x > 0)))
        put(rowm, at, np.where(keep, it.s, -1))
        put(symb, at, sb)
        eb = np.where(keep & esc.reshape(-1), it.extra_bits, 0.0)
        put(bits, at, b)
        put(flagb, at, fb)
        put(escb, at, eb)
        put(escm, at, keep & esc.reshape(-1))
        put(hitm, at, hit)
        put(cand, at, np.clip(x, -1, 127))
    side = fits.side_bits() + side_bits(dec.steps, True, True, True, WIDE_FLAG_LEVELS) + 64.0 * len(gaps)
    return {
        "R": int(R), "shape": (H, W), "v": v.astype(np.int32), "bits": bits, "flagbits": flagb, "escbits": escb,
        "esc": escm, "hit": hitm, "sym": symm, "row": rowm, "symbits": symb, "agree": agree, "mu": mum, "scale": scm, "cand": candm, "ctx": cand, "step": stepm, "known": known, "latent": latent, "side": float(side),
        "level": int(level), "lattice_bits": float(costs[level]) if level else 0.0, "w": int(w), "flags": int(flags),
        "ref_level": int(ref_level), "gaps": len(gaps),
    }


def collect(ids: list[str], split: str, cache: Path) -> None:
    from lvpnet.analysis import load_model
    from lvpnet.model.prep import rgb_to_planes

    model = load_model()
    cache.mkdir(parents=True, exist_ok=True)
    items = [it for it in manifest() if it["split"] == ("train" if split == "trainus" else "val")]
    if split == "trainus":
        items = [it for it in items if it["modality"] == "US"]
    if ids:
        items = [it for it in items if it["id"] in ids]
    for it in items:
        for i, x, ref in slices_of(it, split == "trainus"):
            planes = rgb_to_planes(x) if it.get("rgb") else [x]
            refs = [ref] if not it.get("rgb") else (rgb_to_planes(ref) if ref is not None else [None] * 3)
            for p, (pl, rp) in enumerate(zip(planes, refs)):
                out = cache / f"{split}__{it['id']}__{i}__{p}.npz"
                if out.exists():
                    continue
                t0 = time.time()
                rec = plane_record(model, np.asarray(pl).astype(np.int64), None if rp is None else np.asarray(rp))
                rec.update(id=it["id"], modality=it["modality"], slice=i, plane=p)
                np.savez_compressed(out, **{k: np.asarray(v) for k, v in rec.items()})
                print(f"{it['id']} slice {i} plane {p}: {time.time() - t0:.1f} s", flush=True)


# ------------------------------------------------------------------ estimates


def kt_binary(n1: np.ndarray, n: np.ndarray) -> float:
    """Bits of adaptive binary flags (Krichevsky-Trofimov: counts from 1/2): per context ``n``
    flags of which ``n1`` hit. KT's code length does not depend on the order of the flags, so
    the flags' decoding order need not be replayed."""
    from scipy.special import gammaln

    n1, n = np.asarray(n1, np.float64), np.asarray(n, np.float64)
    return float(-(gammaln(n1 + 0.5) + gammaln(n - n1 + 0.5) - 2 * gammaln(0.5) - gammaln(n + 1)).sum() / np.log(2))


def kt_symbols(values: np.ndarray, alphabet: int) -> float:
    """Bits of ``values`` coded by an adaptive KT histogram over ``alphabet`` symbols (order-free)."""
    from scipy.special import gammaln

    if values.size == 0:
        return 0.0
    _u, c = np.unique(values, return_counts=True)
    a, n = float(alphabet), float(values.size)
    ln = gammaln(c + 0.5).sum() - c.size * gammaln(0.5) + gammaln(a / 2) - gammaln(n + a / 2)
    return float(-ln / np.log(2))


def flat_mask(v: np.ndarray) -> np.ndarray:
    """Pixels whose four axial neighbours (edge-replicated) equal them."""
    p = np.pad(v, 1, mode="edge")
    return (p[:-2, 1:-1] == v) & (p[2:, 1:-1] == v) & (p[1:-1, :-2] == v) & (p[1:-1, 2:] == v)


def blocks_estimate(d, n: int) -> tuple[float, dict]:
    """(a) constant ``n`` x ``n`` blocks leave every coded step: saved bits (net of the map) and details.
    With a base lattice the decoder knows the block's lattice pixels first, so only blocks whose
    lattice pixels agree carry a flag and the value is theirs; without one, every block carries a
    flag and a flagged block's value is coded by an adaptive histogram. Flags: adaptive binary,
    context = the left and upper blocks' flags (4 contexts)."""
    v, b, known = d["v"], d["bits"].astype(np.float64), d["known"]
    H, W = v.shape
    hb, wb = -(-H // n), -(-W // n)
    P = np.pad(v, ((0, hb * n - H), (0, wb * n - W)), mode="edge").reshape(hb, n, wb, n)
    const = (P == P[:, :1, :, :1]).all(axis=(1, 3))
    cost_in = np.pad(np.where(known, 0.0, b), ((0, hb * n - H), (0, wb * n - W))).reshape(hb, n, wb, n).sum((1, 3))
    if known.any():
        K = np.pad(known, ((0, hb * n - H), (0, wb * n - W))).reshape(hb, n, wb, n)
        kv = np.where(K, P, P[:, :1, :, :1])
        cand = (kv == P[:, :1, :, :1]).all(axis=(1, 3))  # the lattice pixels agree (always true where none)
        value_bits = 0.0
    else:
        cand = np.ones((hb, wb), bool)
        value_bits = kt_symbols(P[:, 0, :, 0][const], int(d["R"]) + 1)
    f = const.astype(np.int64)
    left = np.pad(f, ((0, 0), (1, 0)))[:, :-1]
    up = np.pad(f, ((1, 0), (0, 0)))[:-1]
    ctx = (left + 2 * up)[cand]
    hits = f[cand]
    n1 = np.bincount(ctx, weights=hits, minlength=4)
    nn = np.bincount(ctx, minlength=4)
    map_bits = kt_binary(n1, nn)
    saved = float(cost_in[const].sum())
    mask = np.repeat(np.repeat(const, n, 0), n, 1)[:H, :W]
    return saved - map_bits - value_bits, {"blocks": int(const.sum()), "of": int(cand.sum()), "saved": saved,
                                            "map": map_bits + value_bits, "mask": mask}


def flags_on_estimate(d, order) -> float:
    """(g) planes that code no neighbour-repeat flag now (flag level 0): the best of levels 1-4 with
    ``coding.flag_adapt``'s flags, saving each hit pixel's bits now (its table, low and escape bits)
    less every flag's bits. 0 for planes that have flags (their choice stays)."""
    from lvpnet.coding.flag_adapt import AdaptiveFlags, contexts
    from lvpnet.coding.repeat import flag_contexts

    if int(d["flags"]) or not (d["cand"] >= 0).any():
        return 0.0
    f = max(max(p) for p in order) + 1
    b = d["bits"].astype(np.float64)
    best = 0.0
    for level in range(1, 5):
        flags, saved = AdaptiveFlags(), 0.0
        for k, (di, dj) in enumerate(order):
            known = d["known"][di::f, dj::f]
            if known.all():
                continue
            ag = d["agree"][di::f, dj::f].astype(np.int64)
            x = flag_contexts(ag % 8, level, 0 if k == 0 else None, (ag >= 8))
            x = np.where(known | (d["cand"][di::f, dj::f] < 0), 0, x)
            if not (x > 0).any():
                continue
            hit = (d["cand"][di::f, dj::f] == d["v"][di::f, dj::f]) & (x > 0)
            ctx = contexts(x, d["mu"][di::f, dj::f], d["cand"][di::f, dj::f], d["scale"][di::f, dj::f])
            saved += float(b[di::f, dj::f][hit].sum()) - flags.bits(hit, ctx)
        best = max(best, saved - 1.0)
    return best


def blocks_built_estimate(d) -> tuple[float, np.ndarray | None]:
    """(a), built: ``coding.blocks`` on the plane (its lattice known first, as the decoder has it):
    the bits of the flagged blocks' coded pixels against the map's exact bits, when that pays
    (``blocks.worth``; else no map, one bit). Returns (saved bits, the map's pixel mask or None)."""
    from lvpnet.coding import blocks

    known = d["known"]
    kv = np.where(known, d["v"], 0)
    bmap = blocks.plan(d["v"], known)
    b = np.where(known, 0.0, d["bits"].astype(np.float64))
    if not blocks.worth(bmap, int(d["R"]), kv, known, pixel_bits=b):
        return -1.0, None
    m = bmap.pixel_mask()
    return float(b[m].sum()) - blocks.bits(bmap, int(d["R"]), kv, known) - 1.0, m


def blocks_and_flags_estimate(d, order) -> float:
    """(a) + (f), built: the constant blocks leave first (``blocks_built_estimate``), then
    ``coding.flag_adapt`` codes the flags of the pixels left (the flagged blocks' go with them)."""
    net, mask = blocks_built_estimate(d)
    if mask is None:
        return flag_adapt_estimate(d, order)
    left = dict(d)
    left["ctx"] = np.where(mask, 0, d["ctx"])
    left["flagbits"] = np.where(mask, 0, d["flagbits"])
    return net + flag_adapt_estimate(left, order)


def escapes_estimate(d) -> float:
    """(b) escaped values by an adaptive histogram instead of uniform over [0, R], chosen per plane
    (one bit): saved bits."""
    esc = d["esc"]
    if not esc.any():
        return 0.0
    uniform = float(d["escbits"].sum())
    return max(0.0, uniform - kt_symbols(d["v"][esc], int(d["R"]) + 1)) - 1.0


def flat_bound(d) -> tuple[float, float, float]:
    """(c) what a perfect run / zero-residual mode could at most save: the bits of the coded (not
    lattice) flat pixels, of which flag bits; and the lattice's share on flat pixels (JPEG-XL's)."""
    fl = flat_mask(d["v"])
    b, known = d["bits"].astype(np.float64), d["known"]
    return float(b[fl & ~known].sum()), float(d["flagbits"][fl & ~known].sum()), float(b[fl & known].sum())


def dm_tables(sym: np.ndarray, ctx: np.ndarray, row: np.ndarray, prior: np.ndarray, weight: float) -> float:
    """Bits of symbols coded by one adaptive histogram per context, each starting from its table
    row's probabilities ``prior[row]`` with the weight of ``weight`` pixels (Dirichlet-multinomial:
    the codec's adapted tables mix the fixed row and the counts this way; order-free)."""
    from scipy.special import gammaln

    if sym.size == 0:
        return 0.0
    A = prior.shape[1]
    key = ctx.astype(np.int64) * A + sym
    uk, nk = np.unique(key, return_counts=True)
    uc, inv = np.unique(ctx, return_inverse=True)
    nc = np.bincount(inv)
    crow = np.zeros(uc.size, np.int64)
    crow[inv] = row  # every context lies in one row
    a = weight * prior[crow[np.searchsorted(uc, uk // A)], uk % A]
    ln = gammaln(weight) * uc.size - gammaln(weight + nc).sum() + (gammaln(a + nk) - gammaln(a)).sum()
    return float(-ln / np.log(2))


ACT_EDGES = np.array([0, 2, 8, 32])  # ring range buckets: 0, 1-2, 3-8, 9-32, > 32


def ring_activity(v: np.ndarray, step: np.ndarray, order) -> np.ndarray:
    """Per pixel, the range (max - min) of the four neighbours its step's candidate ring reads
    (``coding.repeat``), bucketed by ``ACT_EDGES``; -1 where the step has no ring (step 0)."""
    from lvpnet.coding.repeat import ring_for_step

    H, W = v.shape
    out = np.full((H, W), -1, np.int64)
    f = max(max(p) for p in order) + 1
    pad = np.pad(v.astype(np.int64), 2 * f, mode="edge")
    for k in range(len(order)):
        ring = ring_for_step(order, k)
        if ring is None:
            continue
        di, dj = order[k]
        ys, xs = np.arange(di, H, f), np.arange(dj, W, f)
        Y, X = np.meshgrid(ys + 2 * f, xs + 2 * f, indexing="ij")
        nb = np.stack([pad[Y + dy, X + dx] for dy, dx in ring])
        out[di::f, dj::f] = np.searchsorted(ACT_EDGES, nb.max(0) - nb.min(0), side="left")
    return out


def tables_context_estimate(d, order, prior: np.ndarray, which: str, weight: float = 1024.0) -> float:
    """(e) the adapted tables of each table row split further by a context of the decoded
    neighbourhood: ``x`` (how many ring neighbours share the candidate, and whether it is the
    minimum: what the flags see), ``act`` (the ring's range, as JPEG-XL's tree splits on local
    gradients) or both. Saved bits = adaptive bits per row - adaptive bits per (row, context), both
    starting from the fixed row (``dm_tables``), over the pixels the tables code (flagged and
    lattice pixels excluded)."""
    m = (d["sym"] >= 0) & ~d["known"]
    if not m.any():
        return 0.0
    sym, row = d["sym"][m].astype(np.int64), d["row"][m].astype(np.int64)
    ag = d["agree"][m].astype(np.int64)
    xcls = np.select([ag == 0, (ag % 8) <= 2, (ag % 8) == 3], [0, 1, 2], 3) + 4 * (ag >= 8)
    act = ring_activity(d["v"], d["step"], order)[m] + 1
    ctx = {"x": xcls, "act": act, "x+act": xcls * 8 + act}[which]
    base = dm_tables(sym, row, row, prior, weight)
    split = dm_tables(sym, row * 64 + ctx, row, prior, weight)
    return base - split - 1.0


DMU_EDGES = np.array([0, 1, 3, 7, 15, 31])  # |mu - candidate| buckets
SCALE_EDGES = np.array([4, 8, 12, 16, 24, 32, 48])  # scale index buckets


def flags_estimate(d, which: str) -> float:
    """(f) the neighbour-repeat flags coded as now (same pixels carry a flag) but with
    probabilities that adapt within a step (``x``: the codec's contexts; the codec's ``FlagCounts``
    only learn between steps, so with a base lattice the first coded step pays the priors), and
    with contexts from the network's prediction as well (``x,mu``: the distance of the location
    from the candidate; ``x,mu,s``: and the scale). KT per context (order-free) against the flag
    bits the codec pays now: saved bits."""
    ctx = d["ctx"].astype(np.int64)
    m = (ctx > 0) & ~d["known"]
    if not m.any():
        return 0.0
    hit, c = d["hit"][m], ctx[m]
    if which != "x":
        dmu = np.searchsorted(DMU_EDGES, np.abs(d["mu"][m].astype(np.int64) - d["cand"][m]))
        c = c * 8 + dmu
        if which == "x,mu,s":
            c = c * 8 + np.searchsorted(SCALE_EDGES, d["scale"][m].astype(np.int64))
    n1, nn = np.bincount(c, weights=hit), np.bincount(c)
    return float(d["flagbits"][m].sum()) - kt_binary(n1[nn > 0], nn[nn > 0])


def flag_adapt_estimate(d, order) -> float:
    """(f), built: ``coding.flag_adapt`` run on the plane's flags stage by stage (a step's flags in
    raster order; sub-image 0 as one stage), against the flag bits the codec pays now: saved bits."""
    from lvpnet.coding.flag_adapt import AdaptiveFlags, contexts

    x = d["ctx"].astype(np.int64)
    m = (x > 0) & ~d["known"]
    if not m.any():
        return 0.0
    f = max(max(p) for p in order) + 1
    ctx = np.where(m, contexts(np.maximum(x, 0), d["mu"], d["cand"], d["scale"]), 0)
    flags, bits = AdaptiveFlags(), 0.0
    for di, dj in order:
        c = ctx[di::f, dj::f]
        if (c > 0).any():
            bits += flags.bits(d["hit"][di::f, dj::f], c)
    return float(d["flagbits"][m].sum()) - bits


def load_cache(cache: Path, split: str) -> dict:
    """id -> {"modality", "planes": [record dicts]} for the split's cached planes."""
    out: dict = {}
    for fn in sorted(cache.glob(f"{split}__*.npz")):
        d = dict(np.load(fn))
        ident = str(d["id"])
        out.setdefault(ident, {"modality": str(d["modality"]), "planes": []})["planes"].append(d)
    return out


def learned_alone(md: Path) -> dict[str, tuple[float, float]]:
    """id -> (learned-alone bits per sample, baseline best) from BENCHMARKS.md's learned-alone table."""
    out = {}
    rows = md.read_text().split("ratio alone |")[1].splitlines()
    for line in rows:
        c = [x.strip() for x in line.strip().strip("|").split("|")]
        if len(c) == 6 and c[1] in ("CT", "MR", "CR", "MG", "US", "NM"):
            out[c[0]] = (float(c[2]), float(c[4]))
    return out


def candidates(order, prior) -> dict:
    """name -> per-plane saving (bits; the encoder takes a candidate on a plane only where it pays)."""
    cands = {"(a) 8x8 blocks (KT)": lambda d: blocks_estimate(d, 8)[0],
             "(a) 16x16 blocks (KT)": lambda d: blocks_estimate(d, 16)[0],
             "(a) built: coding.blocks (8x8)": lambda d: blocks_built_estimate(d)[0],
             "(b) escape histogram": escapes_estimate,
             "(c) flat pixels free (bound)": lambda d: flat_bound(d)[0]}
    for which in ("x", "x,mu", "x,mu,s"):
        cands[f"(f) flags by {which}, adaptive in a step (KT)"] = (lambda w: lambda d: flags_estimate(d, w))(which)
    cands["(f) built: coding.flag_adapt"] = lambda d: flag_adapt_estimate(d, order)
    cands["(a) + (f) built"] = lambda d: blocks_and_flags_estimate(d, order)
    cands["(g) flags on where a plane has none, coding.flag_adapt"] = lambda d: flags_on_estimate(d, order)
    for which in ("x", "act", "x+act"):
        cands[f"(e) tables split by {which}"] = (lambda w: lambda d: tables_context_estimate(d, order, prior, w))(which)
    return cands


def components(d) -> dict:
    """Where a plane's bits go (estimate, bits): the base lattice's share, flags, table symbols,
    raw low bits, escaped values, latent and side information; and the flat pixels' bits."""
    if not int(d["R"]):
        return dict.fromkeys(COMPONENTS, 0.0)
    b, known = d["bits"].astype(np.float64), d["known"]
    out = {"lattice": float(b[known].sum()), "flags": float(d["flagbits"].sum()), "tables": float(d["symbits"].sum()),
           "escapes": float(d["escbits"].sum()), "latent+side": float(d["latent"]) + float(d["side"])}
    out["low bits"] = float(b[~known].sum()) - out["flags"] - out["tables"] - out["escapes"]
    out["flat px (in the above)"] = float(b[flat_mask(d["v"])].sum())
    return out


COMPONENTS = ("lattice", "flags", "tables", "low bits", "escapes", "latent+side", "flat px (in the above)")


def jxl_e7(x: np.ndarray) -> float:
    """JPEG-XL effort 7 bits of one slice or plane (minus its minimum), as the baselines code it."""
    import imagecodecs

    x = np.asarray(x).astype(np.int64)
    x = x - x.min()
    x = x.astype(np.uint8 if x.max() < 256 else np.uint16)
    return 8.0 * len(imagecodecs.jpegxl_encode(np.ascontiguousarray(x), lossless=True, effort=7, numthreads=1))


def estimate(cache: Path, md_out: str | None) -> None:
    from lvpnet.analysis import load_model
    from lvpnet.coding import edge
    from lvpnet.model.prep import rgb_to_planes

    items = {it["id"]: it for it in manifest()}
    real = learned_alone(Path(__file__).resolve().parents[1] / "BENCHMARKS.md")
    dec = load_model().dec
    tab = edge.expand(dec.pixel_tables.cpu().numpy()).astype(np.float64)
    cands = candidates(dec.order, tab / tab.sum(1, keepdims=True))
    out = {"val": {}, "trainus": {}}
    for split in out:
        for ident, rec in load_cache(cache, split).items():
            planes = [d for d in rec["planes"] if int(d["R"])]
            est = sum(float(d["bits"].sum()) + float(d["latent"]) + float(d["side"]) for d in planes)
            row = {"modality": rec["modality"], "est": est, "samples": 0,
                   "components": [components(d) for d in rec["planes"]], "saved": {}}
            for name, fn in cands.items():
                row["saved"][name] = sum(max(0.0, fn(d)) for d in planes)
            if split == "val":
                row["samples"] = int(np.prod(items[ident]["shape"]))
                row["real"], row["best"] = real[ident][0] * row["samples"], real[ident][1] * row["samples"]
            if rec["modality"] == "US":  # JPEG-XL e7 on each plane and on the slice as the baselines code it
                it = items[ident]
                a = np.load(DATA / it["file"])["image"]
                lead = a.reshape((-1,) + a.shape[-(3 if it.get("rgb") else 2):])
                x = lead[int(rec["planes"][0]["slice"])]
                row["jxl_planes"] = [jxl_e7(p) for p in (rgb_to_planes(x) if it.get("rgb") else [x])]
                row["jxl_slice"] = jxl_e7(x)
                row["samples"] = row["samples"] or int(x.size)
            out[split][ident] = row
            print(split, ident, f"{est:.0f}", flush=True)
    if md_out:
        Path(md_out).write_text(json.dumps(out, indent=1))


MODS = ("CT", "MR", "CR", "MG", "US")


# ------------------------------------------------------------------ extras: what JPEG-XL does that the planes miss


def jxl_bits(x: np.ndarray, effort: int) -> float:
    import imagecodecs

    x = np.asarray(x).astype(np.int64)
    x = (x - x.min()).astype(np.uint8 if x.max() - x.min() < 256 else np.uint16)
    return 8.0 * len(imagecodecs.jpegxl_encode(np.ascontiguousarray(x), lossless=True, effort=effort, numthreads=1))


def med_residual(p: np.ndarray) -> np.ndarray:
    """LOCO-I median (MED) prediction residuals of a plane in raster order (edge-replicated)."""
    a = np.pad(p.astype(np.int64), ((1, 0), (1, 0)), mode="edge")
    W, N, NW = a[1:, :-1], a[:-1, 1:], a[:-1, :-1]
    pred = np.where(NW >= np.maximum(W, N), np.minimum(W, N), np.where(NW <= np.minimum(W, N), np.maximum(W, N), W + N - NW))
    return p - pred


def entropy_bits(r: np.ndarray) -> float:
    _u, c = np.unique(r, return_counts=True)
    return float(-(c * np.log2(c / c.sum())).sum())


def tile_classes(d, T: int = 64) -> list[tuple[float, float, float]]:
    """64 x 64 tiles of a plane: (learned bits, JPEG-XL e7 bits less an empty tile's, share of pixels
    off the tile's most frequent value). JPEG-XL codes each tile alone (no image-wide statistics)."""
    v, b = d["v"], d["bits"].astype(np.float64)
    empty = jxl_bits(np.zeros((T, T), np.uint8), 7)
    out = []
    for y in range(0, v.shape[0] - T + 1, T):
        for x in range(0, v.shape[1] - T + 1, T):
            t = v[y : y + T, x : x + T]
            mode = np.bincount((t - t.min()).ravel()).argmax() + t.min()
            out.append((float(b[y : y + T, x : x + T].sum()), jxl_bits(t, 7) - empty, float((t != mode).mean())))
    return out


def context_model_bits(d, order) -> tuple[float, float]:
    """The fine steps (4-15) of a plane: (learned bits, a classical context model in the same
    order: residual from the median of the step's 4-ring, contexts = ring range (7 buckets) x
    agreement (1-4); zero flag by KT, then the magnitude's octave by KT, sign and raw bits)."""
    from scipy.special import gammaln

    from lvpnet.coding.repeat import ring_for_step

    v, b = d["v"].astype(np.int64), d["bits"].astype(np.float64)
    H, W = v.shape
    f = max(max(p) for p in order) + 1
    pad = np.pad(v, 2 * f, mode="edge")
    res, ctx, learned = [], [], 0.0
    for k in range(4, len(order)):
        di, dj = order[k]
        Y, X = np.meshgrid(np.arange(di, H, f) + 2 * f, np.arange(dj, W, f) + 2 * f, indexing="ij")
        nb = np.sort(np.stack([pad[Y + dy, X + dx] for dy, dx in ring_for_step(order, k)]), 0)
        act = np.searchsorted(np.array([0, 1, 3, 7, 15, 31, 63]), nb[3] - nb[0])
        agree = (nb[:, None] == nb[None]).sum(1).max(0)
        res.append((v[di::f, dj::f] - (nb[1] + nb[2] + 1) // 2).ravel())
        ctx.append((act * 5 + agree).ravel())
        learned += float(b[di::f, dj::f].sum())
    r, c = np.concatenate(res), np.concatenate(ctx)
    z = r == 0
    n1, nn = np.bincount(c, weights=z), np.bincount(c)
    bits = kt_binary(n1[nn > 0], nn[nn > 0])
    a, c2 = np.abs(r[~z]), c[~z]
    octave = np.floor(np.log2(a)).astype(np.int64)
    _k, kc = np.unique(c2 * 17 + octave, return_counts=True)
    _c, cc = np.unique(c2, return_counts=True)
    ln = gammaln(kc + 0.5).sum() - kc.size * gammaln(0.5) + cc.size * gammaln(8.5) - gammaln(cc + 8.5).sum()
    return learned, bits - ln / np.log(2) + a.size + float(octave.sum())


def grey_mask_bits(g: np.ndarray, c1: np.ndarray, c2: np.ndarray) -> float:
    """A per-pixel "R = G = B" mask in raster order, adaptive binary (KT) in contexts of the mask's
    W, N, NW and NE neighbours."""
    m = ((c1 == 0) & (c2 == 0)).astype(np.int64)
    p = np.pad(m, ((1, 0), (1, 1)), constant_values=1)
    ctx = p[1:, :-2] + 2 * p[:-1, 1:-1] + 4 * p[:-1, :-2] + 8 * p[:-1, 2:]
    n1, nn = np.bincount(ctx.ravel(), weights=m.ravel(), minlength=16), np.bincount(ctx.ravel(), minlength=16)
    return kt_binary(n1[nn > 0], nn[nn > 0])


def cooccurrence_estimate(prev: np.ndarray, d) -> tuple[float, float]:
    """A chroma plane's pixels flagged as "the value most often seen with this value of the plane
    before" (whole-image co-occurrence counts: optimistic, no learning cost), adaptive binary (KT) in
    contexts of the pixel's neighbour agreement and whether that value is the plane's most frequent;
    misses keep their bits. (coded bits now, with the flag) over the coded (not lattice) pixels."""
    cur = d["v"].astype(np.int64)
    p = prev.astype(np.int64) - prev.min()
    key = p * (int(cur.max()) + 1) + cur
    uk, cnt = np.unique(key, return_counts=True)
    pk, ck = uk // (int(cur.max()) + 1), uk % (int(cur.max()) + 1)
    order = np.lexsort((-cnt, pk))
    first = np.r_[True, pk[order][1:] != pk[order][:-1]]
    best = np.zeros(int(p.max()) + 1, np.int64)
    best[pk[order][first]] = ck[order][first]
    hit = best[p] == cur
    m = ~d["known"]
    b = d["bits"].astype(np.float64)
    ctx = (np.clip(d["agree"].astype(np.int64), 0, 15) * 2 + (best[p] == np.bincount(cur.ravel()).argmax()))[m]
    n1, nn = np.bincount(ctx, weights=hit[m]), np.bincount(ctx)
    return float(b[m].sum()), kt_binary(n1[nn > 0], nn[nn > 0]) + float(b[m & ~hit].sum())


def extras(cache: Path) -> str:
    """JPEG-XL per plane and jointly on the US, tiles by sparsity, a classical context model in the
    learned codec's order, colour transforms, the grey mask: markdown."""
    from lvpnet.analysis import load_model
    from lvpnet.model.prep import rgb_to_planes

    order = load_model().dec.order
    items = {it["id"]: it for it in manifest()}
    real = learned_alone(Path(__file__).resolve().parents[1] / "BENCHMARKS.md")
    L = ["### JPEG-XL on each plane the learned codec codes, val ultrasound (bits per sample)", "",
         "| image | e7 planes | e9 planes | e7 jointly (RGB) | best (baselines) | learned alone | e7 planes / best |",
         "|---|---|---|---|---|---|---|"]
    tot = np.zeros(4)
    us_val = [i for i, it in items.items() if it["split"] == "val" and it["modality"] == "US"]
    for ident in us_val:
        x = np.load(DATA / items[ident]["file"])["image"].astype(np.int64)
        rgb = bool(items[ident].get("rgb"))
        planes = rgb_to_planes(x) if rgb else [x]
        e7, e9 = sum(jxl_bits(p, 7) for p in planes), sum(jxl_bits(p, 9) for p in planes)
        joint = jxl_bits(x, 7) if rgb else e7
        n = x.size
        L.append(f"| {ident} | {e7 / n:.4f} | {e9 / n:.4f} | {joint / n:.4f} | {real[ident][1]:.3f} | {real[ident][0]:.3f} | "
                 f"{e7 / n / real[ident][1]:.3f} |")
        tot += [e7, e9, real[ident][1] * n, real[ident][0] * n]
    L.append(f"| **US** | {tot[0] / tot[2]:.3f}x | {tot[1] / tot[2]:.3f}x | | 1 | {tot[3] / tot[2]:.3f}x | |")
    L += ["", "### 64 x 64 tiles by their share of pixels off the tile's most frequent value: learned bits / "
          "JPEG-XL e7 (tile alone, less an empty tile's 152 bits)", "",
          "| split | image (plane) | empty | < 5% | 5-30% | 30-70% | >= 70% |", "|---|---|---|---|---|---|---|"]
    edges = (0.0, 1e-9, 0.05, 0.3, 0.7, 1.01)
    for fn in sorted(cache.glob("*US*.npz")):
        d = dict(np.load(fn))
        if not int(d["R"]):
            continue
        t = np.array(tile_classes(d))
        cells = []
        for lo, hi in zip(edges[:-1], edges[1:]):
            m = (t[:, 2] >= lo) & (t[:, 2] < hi)
            cells.append(f"{t[m, 0].sum() / 1e3:.1f}k / {t[m, 1].sum() / 1e3:.1f}k" if m.any() else "")
        L.append(f"| {fn.name.split('__')[0]} | {d['id']} ({int(d['plane'])}) | " + " | ".join(cells) + " |")
    L += ["", "### Fine steps (4-15): learned bits against a classical context model in the same order", "",
          "| plane | learned | context model | ratio |", "|---|---|---|---|"]
    for name in ("val__deid_US_rgb_image__0__0", "val__deid_US_rgb_image__0__1", "val__pdd_US_palette_OBXXXX1A__0__0",
                 "val__fod_US_philips_iU22__0__0", "val__fsl_MR_shoulder_ax__0__0", "val__cs_CT_toshiba_CT2__0__0"):
        d = dict(np.load(cache / f"{name}.npz"))
        lb, cb = context_model_bits(d, order)
        L.append(f"| {d['id']} ({int(d['plane'])}) | {lb:.0f} | {cb:.0f} | {cb / lb:.3f} |")
    L += ["", "### RGB: reversible colour transforms (JPEG-XL e7 per plane, kbit) and the grey mask", "",
          "| image | G,R-G,B-G | G,R-G,B-R | R,G-R,B-R | B,R-B,G-B | YCoCg-R | joint RGB | grey mask (R=G=B) | "
          "chroma bits on grey pixels, coded steps |", "|---|---|---|---|---|---|---|---|---|"]
    for ident in [i for i, it in items.items() if it["modality"] == "US" and it.get("rgb")]:
        it = items[ident]
        a = np.load(DATA / it["file"])["image"]
        split = "val" if it["split"] == "val" else "trainus"
        lead = a.reshape((-1,) + a.shape[-3:])
        i = 0 if split == "val" else lead.shape[0] // 2
        x = lead[i].astype(np.int64)
        R, G, B = x[..., 0], x[..., 1], x[..., 2]
        co = R - B
        t = B + (co >> 1)
        cg = G - t
        ts = {"g": [G, R - G, B - G], "gr": [G, R - G, B - R], "r": [R, G - R, B - R], "b": [B, R - B, G - B],
              "y": [t + (cg >> 1), co, cg]}
        cells = [f"{sum(jxl_bits(p, 7) for p in pl) / 1e3:.0f}" for pl in ts.values()]
        mask = grey_mask_bits(G, R - G, B - G)
        grey = (R == G) & (B == G)
        on_grey = 0.0
        for p in (1, 2):
            d = dict(np.load(cache / f"{split}__{ident}__{i}__{p}.npz"))
            if int(d["R"]):
                on_grey += float(d["bits"][grey & ~d["known"]].sum())
        L.append(f"| {ident} | " + " | ".join(cells) + f" | {jxl_bits(x, 7) / 1e3:.0f} | {mask / 1e3:.1f} | {on_grey / 1e3:.1f} |")
    L += ["", "### 8. RGB: chroma pixels flagged as the co-occurring value of the plane before (optimistic), kbit", "",
          "| image | R-G given G: now -> with flag | B-G given R-G: now -> with flag |", "|---|---|---|"]
    for ident in [i for i, it in items.items() if it["modality"] == "US" and it.get("rgb")]:
        split = "val" if items[ident]["split"] == "val" else "trainus"
        fn = sorted(cache.glob(f"{split}__{ident}__*__0.npz"))[0]
        stem = fn.name[: -len("0.npz")]
        P = [dict(np.load(cache / f"{stem}{p}.npz")) for p in range(3)]
        cells = []
        for p in (1, 2):
            now, new = cooccurrence_estimate(P[p - 1]["v"], P[p]) if int(P[p]["R"]) else (0.0, 0.0)
            cells.append(f"{now / 1e3:.1f} -> {new / 1e3:.1f} ({(new - now) / max(now, 1) * 100:+.0f}%)")
        L.append(f"| {ident} | " + " | ".join(cells) + " |")
    return "\n".join(L)


def report(path: Path) -> str:
    """The markdown tables of ``benchmarks/us_levers.md`` from the estimate's JSON."""
    res = json.loads(Path(path).read_text())
    val, tr = res["val"], res["trainus"]
    L = ["### Where the bits go (val, estimate, share of each modality's estimated bits)", "",
         "| modality | images | real bits/sample (learned alone) | estimate / real | " + " | ".join(COMPONENTS) + " |",
         "|---|---|---|---|" + "---|" * len(COMPONENTS)]
    for m in MODS:
        rows = [r for r in val.values() if r["modality"] == m]
        est, realb, n = sum(r["est"] for r in rows), sum(r["real"] for r in rows), sum(r["samples"] for r in rows)
        comp = {c: sum(p[c] for r in rows for p in r["components"]) for c in COMPONENTS}
        L.append(f"| {m} | {len(rows)} | {realb / n:.4f} | {est / realb:.3f} | "
                 + " | ".join(f"{comp[c] / est * 100:.1f}%" for c in COMPONENTS) + " |")
    L += ["", "### Ultrasound planes against JPEG-XL e7 on the same plane (estimate, bits per pixel)", "",
          "| split | image (plane) | learned | JPEG-XL e7 | ratio | lattice | flags | tables | low bits | escapes | "
          "latent+side | flat px |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for split, group in (("val", val), ("train", tr)):
        for ident, r in group.items():
            if r["modality"] != "US":
                continue
            npl = len(r["jxl_planes"])
            px = r["samples"] // npl
            for i, (c, j) in enumerate(zip(r["components"], r["jxl_planes"])):
                tot = sum(c[k] for k in COMPONENTS[:-1])
                name = ident + (f" ({i})" if npl > 1 else "")
                L.append(f"| {split} | {name} | {tot / px:.3f} | {j / px:.3f} | {tot / j:.3f} | "
                         + " | ".join(f"{c[k] / px:.3f}" for k in COMPONENTS) + " |")
            if npl > 1:
                L.append(f"| {split} | {ident} (RGB) | {r['est'] / px:.3f} | {r['jxl_slice'] / px:.3f} "
                         f"(planes {sum(r['jxl_planes']) / px:.3f}) | {r['est'] / r['jxl_slice']:.3f} | | | | | | | |")
    names = list(next(iter(val.values()))["saved"])
    L += ["", "### Candidates on val: bits saved (share of the modality's real learned-alone bytes) and the "
          "learned-alone ratio to the per-image best classical codec, now -> with the candidate", "",
          "| candidate | " + " | ".join(MODS) + " | total |", "|---|" + "---|" * (len(MODS) + 1)]
    for name in names:
        cells = []
        for m in MODS + ("total",):
            rows = [r for r in val.values() if m in ("total", r["modality"])]
            saved = sum(r["saved"][name] * r["real"] / r["est"] for r in rows)  # scaled onto real bytes
            realb, best = sum(r["real"] for r in rows), sum(r["best"] for r in rows)
            cells.append(f"{saved / realb * 100:.2f}% ({realb / best:.3f} -> {(realb - saved) / best:.3f})")
        L.append(f"| {name} | " + " | ".join(cells) + " |")
    L += ["", "### Candidates per ultrasound image (share of its estimated bits saved)", "",
          "| split | image | learned / JPEG-XL e7 | " + " | ".join(names) + " |", "|---|---|---|" + "---|" * len(names)]
    for split, group in (("val", val), ("train", tr)):
        for ident, r in group.items():
            if r["modality"] == "US":
                L.append(f"| {split} | {ident} | {r['est'] / r['jxl_slice']:.3f} | "
                         + " | ".join(f"{r['saved'][n] / r['est'] * 100:.1f}%" for n in names) + " |")
    return "\n".join(L)


# ------------------------------------------------------------------ cross-plane (bitstream 11's question)


def _highpass(q: np.ndarray) -> np.ndarray:
    """A plane less the mean of its 4 neighbours (edges replicated): its local activity, signed."""
    p = np.pad(q.astype(np.float64), 1, mode="edge")
    return q - (p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:]) / 4.0


ACT_EDGES = np.array([0.0, 1.0, 4.0, 16.0])  # |high-pass| classes: exactly flat, <= 1, <= 4, <= 16, above


def kt_by(ctx: np.ndarray, hit: np.ndarray) -> float:
    """Adaptive binary code length (KT) of ``hit`` per context ``ctx`` (int64)."""
    _u, inv = np.unique(ctx, return_inverse=True)
    n = np.bincount(inv).astype(np.float64)
    n1 = np.bincount(inv, weights=hit.astype(np.float64))
    return kt_binary(n1, n)


def crossplane_estimate(planes: list, tables, shifts, K: int) -> dict:
    """Bits the chroma planes (1: R-G given G; 2: B-G given G and R-G) would save with a context
    from the planes decoded before them, each candidate taken per plane only where it pays:
    (i) the flags' contexts split by the class of the earlier planes' activity at the pixel (KT);
    (ii) per step and class a scale offset in [-4, 4] (fixed tables; 3.17 bits each);
    (iii) per step, the earlier planes' high-pass at the pixel added to ``mu`` with fitted
    coefficients in 1/8 (fixed tables; 8 bits each)."""
    import torch

    from lvpnet.model.tables import pixel_bits_exact

    by = {int(d["plane"]): d for d in planes}
    out = {"i": 0.0, "ii": 0.0, "iii": 0.0, "chroma": 0.0}
    for p in (1, 2):
        if p not in by or 0 not in by or by[0]["v"].shape != by[p]["v"].shape:
            continue
        d = by[p]
        hp = [_highpass(by[q]["v"]) for q in range(p)]
        act = np.max([np.abs(h) for h in hp], axis=0)
        cls = np.searchsorted(ACT_EDGES, act, side="left")  # 0: act == 0, ..., 4: act > 16
        out["chroma"] += float(d["bits"].sum())
        # (i) flags
        fl = d["ctx"] > 0
        if fl.any():
            base = d["step"][fl].astype(np.int64) * 256 + d["ctx"][fl]
            hit = d["hit"][fl]
            out["i"] += max(0.0, kt_by(base, hit) - kt_by(base * 8 + cls[fl], hit))
        coded = d["row"] >= 0
        if not coded.any():
            continue
        R = int(d["R"])
        v_, mu_, s_ = (torch.from_numpy(d[k][coded].astype(np.int64)) for k in ("v", "mu", "scale"))
        st, cl = d["step"][coded], cls[coded]

        def bits(mu, s, v_=v_, R=R):
            return pixel_bits_exact(v_, mu, s.clamp(0, tables.shape[0] - 1), R, tables, shifts, K).numpy()

        b0 = bits(mu_, s_)
        # (ii) scale offsets per step and class
        per_o = {o: bits(mu_, s_ + o) for o in range(-4, 5)}
        save = 0.0
        for k in np.unique(st):
            for c in range(len(ACT_EDGES) + 1):
                m = (st == k) & (cl == c)
                if m.any():
                    best = min(float(per_o[o][m].sum()) for o in per_o)
                    save += max(0.0, float(b0[m].sum()) - best - np.log2(9.0))
        out["ii"] += save
        # (iii) co-located high-pass terms in mu, per step, least squares, coefficients in 1/8
        H = np.stack([h[coded] for h in hp], 1)
        r = (v_ - mu_).numpy().astype(np.float64)
        mu2 = mu_.numpy().copy()
        side = 0.0
        for k in np.unique(st):
            m = st == k
            coef, *_ = np.linalg.lstsq(H[m], r[m], rcond=None)
            q = np.clip(np.round(coef * 8) / 8, -4, 4)
            if np.any(q != 0):
                mu2[m] = np.clip(mu2[m] + np.round(H[m] @ q).astype(np.int64), 0, R)
                side += 8.0 * len(q)
        b3 = bits(torch.from_numpy(mu2), s_)
        step_save = 0.0
        for k in np.unique(st):  # per step, only where it pays
            m = st == k
            step_save += max(0.0, float(b0[m].sum() - b3[m].sum()) - 8.0 * H.shape[1])
        out["iii"] += step_save
    return out


def crossplane(cache: Path) -> str:
    from lvpnet.analysis import load_model

    model = load_model()
    dec = model.dec
    tables, shifts, K = dec.pixel_tables.cpu(), dec.pixel_shifts.cpu(), dec.K
    rows = ["| split | image | chroma bits (est.) | image bits (est.) | (i) flags by class | (ii) offsets by class"
            " | (iii) high-pass in mu |", "|---|---|---|---|---|---|---|"]
    for split in ("val", "trainus"):
        for ident, rec in load_cache(cache, split).items():
            planes = rec["planes"]
            if len({int(d["plane"]) for d in planes}) < 3:
                continue
            total = sum(float(d["bits"].sum()) + float(d["latent"]) + float(d["side"]) for d in planes)
            e = crossplane_estimate(planes, tables, shifts, K)

            def pct(x, total=total):
                return f"{x / 1000:.1f} kbit ({100 * x / total:.2f}%)"

            rows.append(f"| {split} | {ident} | {e['chroma'] / 1000:.1f} kbit | {total / 1000:.1f} kbit | {pct(e['i'])}"
                        f" | {pct(e['ii'])} | {pct(e['iii'])} |")
            print(rows[-1], flush=True)
    return "\n".join(rows)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("phase", choices=("collect", "estimate", "report", "extras", "crossplane"))
    ap.add_argument("ids", nargs="*")
    ap.add_argument("--split", choices=("val", "trainus"), default="val")
    ap.add_argument("--cache", type=Path, default=CACHE)
    ap.add_argument("--json", help="estimate: where to write every figure")
    a = ap.parse_args(argv)
    if a.phase == "collect":
        collect(a.ids, a.split, a.cache)
    elif a.phase == "extras":
        print(extras(a.cache))
    elif a.phase == "crossplane":
        print(crossplane(a.cache))
    elif a.phase == "report":
        print(report(Path(a.json)))
    else:
        estimate(a.cache, a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
