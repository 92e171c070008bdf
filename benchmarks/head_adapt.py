"""Does adapting the head to the scan pay? (issue 17): the encoder fits a correction of the head's
location (``m``) and scale (``s``) channels, linear in the 48 last-hidden activations, per slice or
per volume, and the whole bitstream-10 encoder runs after it (refinement, error feedback, scale
offsets, adapted tables, flags, lattice); real chunk bytes plus the correction's side bits.

    OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/head_adapt.py code --variant base --json base.json
    OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/head_adapt.py code --variant mu --json mu.json
    ...  --variant s | mus | zero   [--per volume]
    .venv/bin/python benchmarks/head_adapt.py compare base.json mu.json s.json mus.json

What the correction is, for a step ``k >= 1`` (step 0 keeps the network's):

* location, added to the raw ``m`` channel before ``head_params``: ``dm = 2**G * sum_c q_c x_c``,
  ``x`` = the 48 last-hidden activations (7-bit) and a constant 127 (the bias); head 2/3 moves
  ``mu`` by ``round(m * act / 2**22)``, so the correction is in units of the neighbour activity
  ``act`` and is exactly 0 where the neighbours agree, like the network's own. ``q`` is fitted by
  IRLS towards the least ``|residual| / sigma`` (the logistic code length's slope) on an evenly
  spaced sample of the step, then quantised at the step ``2**G`` (G chosen per step);
* scale, added to the raw ``s`` channel: ``ds = 2**G * sum_c p_c x_c`` (``s`` moves by
  ``floor(ds / 2**12)`` quarter octaves), ``p`` fitted by Newton steps on the exact code length of
  the model's tables (gradient and curvature from the neighbouring scale indices).

Each step is adapted only where the estimate (bits of the sample at its best scale offset, scaled
to the step) drops by more than the side information; the side bits charged per plane and step: a
choice of ``1 + len(shifts)`` (off or the step ``G``) per channel, and for every coefficient
``refine.coef_bits`` (magnitude class, mantissa, sign), as the refinement's coefficients are coded.
``--per volume`` fits one set for all slices of a volume on a sample of its slices (``--fit-slices``
evenly spaced) and charges its side bits once; single-slice arrays are then coded per slice.

Every slice of every ``val`` array is coded alone (no previous-slice reference), as
``bitstream9_val.py`` codes them. ``zero`` runs the adapted path with a zero correction: its bytes
must equal ``base``'s (the check that the hidden activations and raw outputs here are the codec's).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"

FW, ACT_FRAC, AMAX = 10, 8, 127
M_UNIT = 2.0 ** -(FW + 4 + ACT_FRAC)  # mu moves by m * act * M_UNIT (head 2/3, steps >= 1)
S_UNIT = 2.0 ** -(FW + 2)  # s moves by floor(raw_s * S_UNIT) quarter octaves
MU_SHIFTS = (0, 2, 4)  # the location coefficients' step 2**G in raw units, chosen per step
S_SHIFTS = (3, 5, 7)
QLIM = (1 << 13) - 1  # refine's coefficient range (14 magnitude classes)
SAMPLE = 32768  # fitting and choice sample per step (evenly spaced)
OMAX = 8  # the per-step scale offsets of bitstream >= 4
MARGIN = 1.0  # a channel is adapted where its estimated saving exceeds MARGIN x its coefficients' bits


# ------------------------------------------------------------------ code lengths of the model's tables
class Bits:
    """Per-pixel code length (bits) of residuals ``r`` at scale indices ``s`` under the fixed tables,
    as ``tables.best_scale_offset`` sums it."""

    def __init__(self, dec, R: int):
        from lvpnet.model.tables import TOTAL

        self.logt = -np.log2(dec.pixel_tables.cpu().numpy().astype(np.float64) / TOTAL)
        self.sh = dec.pixel_shifts.cpu().numpy().astype(np.int64)
        self.K, self.S = int(dec.K), self.logt.shape[0]
        self.esc = math.log2(R + 1.0)

    def pixels(self, r: np.ndarray, s: np.ndarray) -> np.ndarray:
        s = np.clip(s, 0, self.S - 1)
        b = self.sh[s]
        q = (r + ((np.int64(1) << b) >> 1)) >> b
        esc = (q < -self.K) | (q > self.K)
        return self.logt[s, np.where(esc, 2 * self.K + 1, q + self.K)] + np.where(esc, self.esc, b)

    def best(self, r: np.ndarray, s: np.ndarray) -> float:
        """Total at the best per-step offset in [-OMAX, OMAX] (what the encoder adds anyway)."""
        return min(float(self.pixels(r, s + d).sum()) for d in range(-OMAX, OMAX + 1))


# ------------------------------------------------------------------ one step's sample and its fits
class StepSample:
    """What the fits read of one step's sample pixels: features ``X`` (n, 49), the activity, the
    network's ``m`` integer and raw ``s``, its scale base, ``mu0``/``s0`` and the true values."""

    FIELDS = ("X", "act", "m", "s_raw", "s_base", "mu0", "s0", "v", "mu_t", "s_t")

    def __init__(self, **kw):
        kw.setdefault("mu_t", kw["mu0"])  # the target: what the rest of the encoder makes of mu0, s0
        kw.setdefault("s_t", kw["s0"])
        for f in self.FIELDS:
            setattr(self, f, kw[f])
        self.n_total = kw["n_total"]
        self.pick = kw.get("pick")

    @classmethod
    def join(cls, parts: list, limit: int = SAMPLE) -> StepSample:
        kw = {f: np.concatenate([getattr(p, f) for p in parts]) for f in cls.FIELDS}
        n = kw["v"].size
        pick = np.arange(0, n, max(1, n // limit))
        kw = {f: a[pick] for f, a in kw.items()}
        return cls(n_total=sum(p.n_total for p in parts), **kw)

    def mu_with(self, dm: np.ndarray, R: int) -> np.ndarray:
        """The target location moved as adding ``dm`` to the ``m`` channel moves mu (exact on mu0
        unless it was clamped at 0 or R; on the refined target, assuming the refinement keeps it)."""
        h = np.int64(1) << (FW + 3 + ACT_FRAC)
        d0 = (self.m * self.act + h) >> (FW + 4 + ACT_FRAC)
        d1 = ((self.m + dm) * self.act + h) >> (FW + 4 + ACT_FRAC)
        return np.clip(self.mu_t - d0 + d1, 0, R)

    def s_with(self, ds: np.ndarray, S: int) -> np.ndarray:
        """The target scale moved as adding ``ds`` to the raw ``s`` channel moves the network's."""
        corr = np.clip(np.floor((self.s_raw + ds) * S_UNIT), -64, 63).astype(np.int64)
        s_net = np.clip(self.s_base + corr, 0, S - 1)
        return np.clip(self.s_t + s_net - self.s0, 0, S - 1)


def _solve(G: np.ndarray, b: np.ndarray) -> np.ndarray:
    lam = 1e-4 * np.trace(G) / G.shape[0] + 1e-9
    return np.linalg.solve(G + lam * np.eye(G.shape[0]), b)


def _sigmas(dec, s: np.ndarray) -> np.ndarray:
    c = dec.cfg
    return c.sigma_min * 2.0 ** (s / c.per_octave)


def fit_mu(d: StepSample, dec, bits: Bits, R: int):
    """-> (G, q int64 (49,), estimated saving in bits with the side bits paid) or None."""
    from lvpnet.coding.refine import coef_bits

    X = d.X.astype(np.float64)
    A = X * (d.act * M_UNIT)[:, None]  # mu per unit of m
    e0 = (d.v - d.mu_t).astype(np.float64)
    sig = _sigmas(dec, d.s_t)
    e, c = e0, np.zeros(X.shape[1])
    for _ in range(4):  # IRLS towards sum |e| / sigma
        w = 1.0 / (sig * np.maximum(np.abs(e), 1.0))
        Aw = A * w[:, None]
        c = _solve(Aw.T @ A, Aw.T @ e0)
        e = e0 - A @ c
    scale = d.n_total / d.v.size
    base = bits.best(d.v - d.mu_t, d.s_t) * scale
    best = None
    for G in MU_SHIFTS:
        q = np.clip(np.round(c / 2.0**G), -QLIM, QLIM).astype(np.int64)
        if not q.any():
            continue
        dm = (d.X.astype(np.int64) @ q) << G
        est = bits.best(d.v - d.mu_with(dm, R), d.s_t) * scale + MARGIN * coef_bits(q)
        if best is None or est < best[0]:
            best = (est, G, q)
    if best is None or best[0] >= base:
        return None
    return best[1], best[2], base - best[0]


def fit_s(d: StepSample, dec, bits: Bits, R: int, mu: np.ndarray):
    """-> (G, p int64 (49,), estimated saving) or None: Newton steps on the tables' code length."""
    from lvpnet.coding.refine import coef_bits

    X = d.X.astype(np.float64)
    a = X * S_UNIT  # quarter octaves per unit of raw s
    r = d.v - mu
    S = bits.S
    scale = d.n_total / d.v.size
    base = bits.best(r, d.s_t) * scale
    c = np.zeros(X.shape[1])
    cur = (float(bits.pixels(r, d.s_t).sum()), c)
    for _ in range(6):
        s = d.s_with(X @ c, S)
        c0 = bits.pixels(r, s)
        cp, cm = bits.pixels(r, np.minimum(s + 1, S - 1)), bits.pixels(r, np.maximum(s - 1, 0))
        g = 0.5 * (cp - cm)
        h = np.maximum(cp - 2 * c0 + cm, 0.05)
        step = _solve((a * h[:, None]).T @ a, -(a.T @ g))
        c_new = c + step
        t = float(bits.pixels(r, d.s_with(X @ c_new, S)).sum())
        if t < cur[0]:
            cur, c = (t, c_new), c_new
        else:
            c = 0.5 * (c + c_new)  # damped
    c = cur[1]
    best = None
    for G in S_SHIFTS:
        p = np.clip(np.round(c / 2.0**G), -QLIM, QLIM).astype(np.int64)
        if not p.any():
            continue
        ds = (d.X.astype(np.int64) @ p) << G
        est = bits.best(r, d.s_with(ds, S)) * scale + MARGIN * coef_bits(p)
        if best is None or est < best[0]:
            best = (est, G, p)
    if best is None or best[0] >= base:
        return None
    return best[1], best[2], base - best[0]


def choose(d: StepSample, dec, R: int, which: str) -> dict:
    """One step's corrections: {"m": (G, q), "s": (G, p)}, the channels that pay on the estimate."""
    bits = Bits(dec, R)
    out = {}
    mu = d.mu_t
    if "mu" in which or which == "mus":
        got = fit_mu(d, dec, bits, R)
        if got is not None:
            out["m"] = got[:2]
            mu = d.mu_with((d.X.astype(np.int64) @ got[1]) << got[0], R)
    if which in ("s", "mus"):
        got = fit_s(d, dec, bits, R, mu)
        if got is not None:
            out["s"] = got[:2]
    return out


def side_bits(corr: dict, which: str) -> float:
    """The corrections of one plane (or volume): per step >= 1 and channel adapted in this variant,
    the choice among off and the shifts, plus the coefficients' bits."""
    from lvpnet.coding.refine import coef_bits

    chans = {"mu": ("m",), "s": ("s",), "mus": ("m", "s")}[which]
    total = 0.0
    for c in corr.values():
        for ch in chans:
            total += math.log2(1 + len(MU_SHIFTS if ch == "m" else S_SHIFTS))
            if ch in c:
                total += coef_bits(c[ch][1])
    return total


# ------------------------------------------------------------------ the engine, with the head adapted
class Adapter:
    """Wraps one ``Engine``: ``encode_plane`` codes each plane twice, first with the network's
    head (recording, per step, a sample of the last hidden layer and what the refinement and the
    feedback make of mu and s: the fits' target), then with the corrections fitted on it;
    ``dec.predict`` of steps >= 1 computes the last hidden layer (exact float path) and gives
    ``head_params``' integers of the corrected raw outputs."""

    def __init__(self, engine, which: str, target: str = "refined"):
        from lvpnet.coding import fitting

        self.eng, self.dec, self.which, self.target = engine, engine.dec, which, target
        self._encode, self._predict = engine.encode_plane, engine.dec.predict
        self.fixed: dict | None = None  # per volume: the corrections of every step
        self.collect: dict | None = None  # per volume, fitting pass: k -> [StepSample]
        self.corr: dict | None = None  # None: the recording pass
        self.after: dict = {}
        self.shared = False  # one correction for all steps >= 1 (fitted on their pooled samples)
        # keep the adapted plane only where the engine's estimate (side bits added) is smaller, one
        # flag bit per plane; else every channel of every step is adapted where the fit says it pays
        self.keep_better = False
        self.side = 0.0
        self.used = {"m": 0, "s": 0, "steps": 0}
        engine.encode_plane = self.encode_plane
        engine.dec.predict = self.predict
        step, ad = fitting.SliceFitting.step, self

        def recorded(fits, k, pos, vals, mu, s, row=None):
            out = step(fits, k, pos, vals, mu, s, row)
            if row is None and k > 0:
                ad.after[k] = out
            return out

        fitting.SliceFitting.step = recorded

    def encode_plane(self, x, profile, want_bits=False, ref_plane=None):
        from lvpnet.model import prep

        x = np.asarray(x).astype(np.int64)
        self.vmin, self.R, _ = prep.slice_params(x)
        self.v = x - self.vmin
        if self.which == "zero" or self.fixed is not None:
            self.corr = {} if self.which == "zero" else self.fixed
            return self._encode(x, profile, want_bits, ref_plane)
        self.samples, self.after, self.corr = {}, {}, None
        plain = self._encode(x, profile, True, ref_plane)  # (plane, the engine's estimate)
        for k, d in self.samples.items():
            if self.target == "refined" and k in self.after:
                d.mu_t, d.s_t = (np.asarray(a).reshape(-1)[d.pick] for a in self.after[k])

        def give(o):
            return o if want_bits else o[0]

        if self.collect is not None:
            for k, d in self.samples.items():
                self.collect.setdefault(k, []).append(d)
            return give(plain)
        if not self.R or not self.samples:
            return give(plain)
        self.corr = self.fit(self.samples, self.R)
        side = self.side_of(self.corr)
        if not any(self.corr.values()):
            self.side += 1.0 if self.keep_better else side
            return give(plain)
        new = self._encode(x, profile, True, ref_plane)
        if self.keep_better:
            self.side += 1.0  # the plane's flag
            if new[1] + side >= plain[1]:
                return give(plain)
        self.side += side
        self._count(self.corr)
        return give(new)

    def _count(self, corr: dict) -> None:
        for c in corr.values():
            self.used["steps"] += 1
            for ch in c:
                self.used[ch] += 1

    def _hidden_raw(self, feats, ctx, k: int, B: int):
        import torch

        from lvpnet.model.intnet import ExactMode, int_conv
        from lvpnet.model.predictor import step_spec
        from lvpnet.model.prep import to_ctx

        dec = self.dec
        h, w = feats.shape[-2:]
        nctx = dec.steps - 1
        navail = min(k, nctx)
        ctx_v = torch.zeros((1, nctx, h, w), dtype=torch.int64)
        for c in range(navail):
            ctx_v[0, c] = torch.as_tensor(ctx[c]).long()
        avail = (torch.arange(nctx) < k)[None]
        ctx_u = to_ctx(ctx_v, B, dec.cfg.ctx_bits).to(dec.dtype)
        spec = step_spec(dec.pred, k, dec.P)
        with ExactMode():
            c = int_conv(ctx_u, spec["ctx"])
            m = (avail.to(feats.dtype) * AMAX)[:, :, None, None].expand(-1, -1, h, w)
            x = torch.cat([feats, c, m], dim=1)
            for layer in spec["layers"]:
                x = int_conv(x, layer)
            raw = int_conv(x, spec["head"])
        return x, raw, ctx_v[:, :navail], avail[:, :navail]

    def _sample(self, k, x, raw, ctx_v, mu0, s0, R) -> StepSample:
        """The step's real pixels, evenly spaced, with everything the fits read."""
        import torch

        from lvpnet.model.predictor import neighbours
        from lvpnet.model.prep import sub_real_shape

        dec, f = self.dec, self.dec.f
        di, dj = dec.order[k]
        H, W = self.v.shape
        hr, wr = sub_real_shape(H, W, f, di, dj)
        n = hr * wr
        pick = np.arange(0, n, max(1, n // SAMPLE))
        yy, xx = pick // wr, pick % wr
        X = x[0, :, yy, xx].numpy().astype(np.int64).T  # (n, 48)
        X = np.concatenate([X, np.full((X.shape[0], 1), AMAX, np.int64)], 1)
        r = raw[0][:, yy, xx].double()
        nb = neighbours(ctx_v)[0][:, yy, xx].double()
        nw = nb.shape[0]
        wts = torch.clamp(torch.floor(r[2 : 2 + nw] * 2.0**-FW), 0, AMAX) + 1.0
        A = wts.sum(0).long()
        wavg = torch.div((wts * nb).sum(0).long() + (A >> 1), A.clamp_min(1), rounding_mode="floor")
        act = (wts * (nb - wavg[None].double()).abs()).sum(0).long()
        act = torch.div(act << ACT_FRAC, A.clamp_min(1), rounding_mode="floor")
        s_base = torch.searchsorted(dec.scale_thresholds.cpu(), act.contiguous(), right=True) - 1
        return StepSample(
            X=X, act=act.numpy(), m=torch.round(r[0]).long().numpy(), s_raw=r[1].numpy(),
            s_base=s_base.numpy(), mu0=mu0[yy, xx].numpy(), s0=s0[yy, xx].numpy(),
            v=self.v[di::f, dj::f][yy, xx], n_total=n, pick=pick,
        )

    def predict(self, feats, ctx, k, R, B, known=None):
        if k == 0:
            return self._predict(feats, ctx, k, R, B, known)
        dec = self.dec
        x, raw, ctx_v, avail = self._hidden_raw(feats, ctx, k, B)
        mu0, s0 = dec._params(raw, R, B, k, ctx_v=ctx_v, avail=avail)
        mu0, s0 = mu0[0], s0[0]
        if self.corr is None:  # the recording pass
            self.samples[k] = self._sample(k, x, raw, ctx_v, mu0, s0, R)
            return mu0, s0
        corr = self.corr.get(k, {})
        if not corr:
            return mu0, s0
        import torch

        feat = torch.cat([x[0], torch.full_like(x[0][:1], AMAX)], 0).double()  # (49, h, w)
        raw = raw.clone()
        for ch, row in (("m", 0), ("s", 1)):
            if ch in corr:
                G, q = corr[ch]
                delta = torch.einsum("c,chw->hw", torch.from_numpy(q.astype(np.float64)), feat) * 2.0**G
                raw[0, row] += delta.to(raw.dtype)
        mu, s = dec._params(raw, R, B, k, ctx_v=ctx_v, avail=avail)
        return mu[0], s[0]

    def fit(self, samples: dict, R: int) -> dict:
        """Samples per step -> the corrections per step; ``shared``: one set for all steps, the
        dict's first key carrying it (the side bits count it once)."""
        if not self.shared:
            return {k: choose(d, self.dec, R, self.which) for k, d in samples.items()}
        c = choose(StepSample.join(list(samples.values())), self.dec, R, self.which)
        self.shared_corr = c
        return {k: c for k in samples}

    def fit_volume(self, R: int) -> dict:
        """The pooled samples of the fitting pass -> one correction per step (``fixed``)."""
        out = self.fit({k: StepSample.join(parts) for k, parts in self.collect.items()}, R)
        self._count(out)
        return out

    def side_of(self, corr: dict) -> float:
        if self.shared and corr:
            return side_bits({0: next(iter(corr.values()))}, self.which)
        return side_bits(corr, self.which)


# ------------------------------------------------------------------ the val split
def val_arrays(data: Path):
    man = json.loads((data / "manifest.json").read_text())
    for it in man["items"]:
        if it["split"] != "val":
            continue
        with np.load(data / it["file"]) as f:
            a = f["image"]
        frame = a.shape[-3:] if it.get("rgb") else a.shape[-2:]
        yield it["id"], it["modality"], a.reshape((-1,) + tuple(frame))


def code(args) -> int:
    import torch

    torch.set_num_threads(1)
    from lvpnet.codecs.lvpnet_codec import LVPNetCodec

    codec = LVPNetCodec(device="cpu")
    codec.version = 10
    ad = None if args.variant == "base" else Adapter(codec.engine(), args.variant, args.target)
    if ad is not None:
        ad.shared = args.shared
        ad.keep_better = args.keep_better
    global MARGIN
    MARGIN = args.margin
    out = {"variant": args.variant, "per": args.per, "target": args.target, "shared": args.shared,
           "keep_better": args.keep_better,
           "margin": args.margin,
           "label": args.label or f"{args.variant}-{args.per}",
           "arrays": {}}
    t0 = time.perf_counter()
    only = set(args.ids or [])
    for name, modality, slices in val_arrays(Path(args.data)):
        if only and name not in only:
            continue
        t = time.perf_counter()
        side0 = ad.side if ad else 0.0
        used0 = dict(ad.used) if ad else {}
        if ad is not None and args.per == "volume" and len(slices) > 1 and not slices.shape[-1] == 3:
            # fitting pass on evenly spaced slices; the volume's values share one range for the fit
            ad.collect = {}
            for i in np.linspace(0, len(slices) - 1, min(args.fit_slices, len(slices))).round().astype(int):
                codec.encode(slices[i])
            R = int(slices.max()) - int(slices.min())
            fixed = ad.fit_volume(R)
            ad.collect = None
            ad.fixed = fixed
            ad.side += ad.side_of(fixed)
        nbytes = sum(len(codec.encode(x)) for x in slices)
        if ad is not None and ad.fixed is not None:
            if args.keep_better:  # the volume's flag: its slices coded with or without the correction
                side = ad.side - side0
                ad.fixed = {}
                plain = sum(len(codec.encode(x)) for x in slices)
                if 8 * plain < 8 * nbytes + side:
                    nbytes, ad.side = plain, side0
                ad.side += 1.0
            ad.fixed = None
        rec = {"modality": modality, "bytes": nbytes, "samples": int(slices.size),
               "side_bits": (ad.side - side0) if ad else 0.0, "seconds": time.perf_counter() - t}
        if ad is not None:
            rec["adapted"] = {c: ad.used[c] - used0[c] for c in ad.used}
        out["arrays"][name] = rec
        bps = (8 * nbytes + rec["side_bits"]) / rec["samples"]
        print(f"{name} {modality} {bps:.4f} bpsp side {rec['side_bits']:.0f} b {rec.get('adapted', '')} "
              f"{rec['seconds']:.1f} s", flush=True)
    out["seconds"] = time.perf_counter() - t0
    Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


# ------------------------------------------------------------------ tables
def totals(rep: dict) -> dict:
    acc: dict = {}
    for a in rep["arrays"].values():
        for key in (a["modality"], "all"):
            t = acc.setdefault(key, [0.0, 0])
            t[0] += 8 * a["bytes"] + a["side_bits"]
            t[1] += a["samples"]
    return acc


def compare(paths: list[str], out: str | None) -> int:
    reps = [json.loads(Path(p).read_text()) for p in paths]
    tots = [totals(r) for r in reps]
    names = [r["label"] for r in reps]
    lines = ["| modality | " + " | ".join(f"{n} bits/sample" for n in names) + " | "
             + " | ".join(f"{n} vs {names[0]}" for n in names[1:]) + " |",
             "|" + "---|" * (2 * len(reps))]
    for key in sorted(tots[0], key=lambda k: (k == "all", k)):
        bps = [t[key][0] / t[key][1] for t in tots]
        ch = [f"{100 * (b / bps[0] - 1):+.3f}%" for b in bps[1:]]
        lines.append(f"| {key} | " + " | ".join(f"{b:.4f}" for b in bps) + " | " + " | ".join(ch) + " |")
    lines += ["", "| array | " + " | ".join(names[1:]) + " |", "|" + "---|" * len(reps)]
    for name, a in reps[0]["arrays"].items():
        b0 = 8 * a["bytes"] + a["side_bits"]
        cells = []
        for r in reps[1:]:
            x = r["arrays"].get(name)
            cells.append("-" if x is None else
                         f"{100 * ((8 * x['bytes'] + x['side_bits']) / b0 - 1):+.2f}% ({x['side_bits']:.0f} b side)")
        lines.append(f"| {name} ({a['modality']}) | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    print(text)
    if out:
        Path(out).write_text(text + "\n")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("code")
    c.add_argument("--variant", choices=("base", "zero", "mu", "s", "mus"), required=True)
    c.add_argument("--per", choices=("slice", "volume"), default="slice")
    c.add_argument("--fit-slices", type=int, default=5)
    c.add_argument("--shared", action="store_true", help="one correction for all steps >= 1")
    c.add_argument("--keep-better", action="store_true",
                   help="per plane (per volume with --per volume) keep the smaller of adapted and plain, one flag bit")
    c.add_argument("--margin", type=float, default=1.0,
                   help="adapt a step only where its estimated saving is margin x its side bits")
    c.add_argument("--target", choices=("refined", "network"), default="refined",
                   help="fit to what the refinement and feedback make of mu, s (default) or to the network's")
    c.add_argument("--label")
    c.add_argument("--data", default=str(DATA))
    c.add_argument("--json", required=True)
    c.add_argument("ids", nargs="*")
    p = sub.add_parser("compare")
    p.add_argument("paths", nargs="+")
    p.add_argument("--out")
    args = ap.parse_args(argv)
    if args.cmd == "compare":
        return compare(args.paths, args.out)
    return code(args)


if __name__ == "__main__":
    sys.exit(main())
