"""Fixed integer frequency tables and the pixel <-> symbol mapping.

Pixel model (every bit depth, 1 to 16 bits, signed data shifted by the slice
minimum): per pixel the integer decoder gives a location ``mu`` (integer in
``[0, R]``) and a scale index ``s`` (integer in ``[0, S)``). Scale ``s`` means a
logistic of scale ``sigma_s = sigma_min * 2**(s / L)``, coded in bins of width
``2**b_s`` with ``b_s = max(0, floor(log2 sigma_s) - 2)`` (4 to 8 bins per
sigma, so the uniform low bits inside a bin cost almost nothing):

    h  = (2**b) >> 1
    r  = v - mu + h
    q  = r >> b                       (floor)
    low = r - (q << b)                in [0, 2**b): b raw bits (uniform)
    if -K <= q <= K: symbol = q + K   (table T[s], 2K+2 entries)
    else:            symbol = 2K+1    (escape) and then v itself, uniform over [0, R]

``T[s]`` is a fixed int32 table (sum ``2**PREC``, every entry >= 1) built once in
float64 and stored in the checkpoint; encoder and decoder look it up, they never
recompute it. So every value in ``[0, R]`` is codable (escape), and the tables
the codec uses are identical on every machine.

Latent model: per channel ``c`` an int32 table over ``z in [-zmax, zmax]``
(symbol ``z + zmax``), also stored in the checkpoint.
"""

from __future__ import annotations

import math

import numpy as np
import torch

PREC = 16  # frequency tables sum to 2**PREC
TOTAL = 1 << PREC


def quantize_probs(p: np.ndarray, prec: int = PREC) -> np.ndarray:
    """Probabilities (..., n) -> int32 frequencies, each >= 1, each row summing to 2**prec."""
    p = np.asarray(p, dtype=np.float64)
    p = np.maximum(p, 0.0)
    p = p / p.sum(axis=-1, keepdims=True)
    total = 1 << prec
    n = p.shape[-1]
    f = np.floor(p * (total - n)).astype(np.int64) + 1
    rem = total - f.sum(axis=-1)
    idx = np.argmax(p, axis=-1)
    np.put_along_axis(f, idx[..., None], np.take_along_axis(f, idx[..., None], -1) + rem[..., None], -1)
    assert (f >= 1).all() and (f.sum(-1) == total).all()
    return f.astype(np.int32)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def scale_sigmas(n_scales: int, per_octave: int, sigma_min: float) -> np.ndarray:
    return sigma_min * 2.0 ** (np.arange(n_scales, dtype=np.float64) / per_octave)


def bin_shifts(sigmas: np.ndarray) -> np.ndarray:
    return np.maximum(0, np.floor(np.log2(sigmas)).astype(np.int64) - 2)


def build_pixel_tables(n_scales: int = 80, per_octave: int = 4, sigma_min: float = 0.08, K: int = 64):
    """-> (tables int32 (S, 2K+2), shifts int64 (S,)); built in float64, stored in checkpoints."""
    sig = scale_sigmas(n_scales, per_octave, sigma_min)
    shifts = bin_shifts(sig)
    tabs = []
    for sigma, b in zip(sig, shifts):
        w = float(1 << int(b))
        h = float((1 << int(b)) >> 1)
        j = np.arange(-K, K + 2, dtype=np.float64)  # edges of bins -K..K
        edges = j * w - h - 0.5
        cdf = _sigmoid(edges / sigma)
        probs = np.diff(cdf)
        esc = cdf[0] + (1.0 - cdf[-1])
        tabs.append(np.concatenate([probs, [esc]]))
    return quantize_probs(np.stack(tabs)), shifts


ACT_FRAC = 8  # the neighbour activity enters the scale lookup as an integer with 8 fraction bits


def build_scale_thresholds(n_scales: int, per_octave: int, sigma_min: float) -> np.ndarray:
    """int64 (S,): scale s is chosen for a neighbour activity ``a`` (mean absolute deviation of
    the context neighbours from their weighted average) when ``a * 2**8 >= thr[s]``.

    A logistic of scale sigma has mean absolute deviation ``2 ln 2 sigma``, so ``thr[s]`` is
    that deviation for ``sigma_s``. Built once in float64 and stored with the decoder, like
    the pixel tables, so every machine looks up the same integers.
    """
    sig = scale_sigmas(n_scales, per_octave, sigma_min)
    return np.ceil(2.0 * math.log(2.0) * sig * (1 << ACT_FRAC)).astype(np.int64)


def build_latent_tables(loc: np.ndarray, scale: np.ndarray, zmax: int) -> np.ndarray:
    """Per-channel discretised logistic over z in [-zmax, zmax] (bins [z, z+1), tails merged)."""
    loc = np.asarray(loc, np.float64)[:, None]
    scale = np.asarray(scale, np.float64)[:, None]
    z = np.arange(-zmax, zmax + 2, dtype=np.float64)[None, :]
    cdf = _sigmoid((z - loc) / scale)
    cdf[:, 0] = 0.0
    cdf[:, -1] = 1.0
    return quantize_probs(np.diff(cdf, axis=1))


# ---------------------------------------------------------------- pixel symbols (torch int64)


def pixel_symbols(v: torch.Tensor, mu: torch.Tensor, s: torch.Tensor, shifts: torch.Tensor, K: int):
    """Integer tensors -> (symbol, low, nbits_low, escape) all int64/bool, same shape.

    ``low``/``nbits_low`` are the raw low bits (0 where escaped); for an escape,
    the codec codes ``v`` uniformly over ``[0, R]`` instead.
    """
    v = v.long()
    mu = mu.long()
    b = shifts.to(v.device)[s.long()]
    h = (torch.ones_like(b) << b) >> 1
    r = v - mu + h
    q = r >> b
    low = r - (q << b)
    esc = (q < -K) | (q > K)
    sym = torch.where(esc, torch.full_like(q, 2 * K + 1), q + K)
    low = torch.where(esc, torch.zeros_like(low), low)
    nb = torch.where(esc, torch.zeros_like(b), b)
    return sym, low, nb, esc


def residual_bins(r: np.ndarray, b: np.ndarray) -> np.ndarray:
    """numpy: the bin of each residual ``r = v - mu`` in bins of ``2**b``, as ``pixel_symbols``
    makes them (before the escape test and the offset ``K``), for the encoder's estimates."""
    return (r + ((np.int64(1) << b) >> 1)) >> b


def values_from_symbols(sym, low, mu, s, shifts, K: int, escape_values=None):
    """Inverse of pixel_symbols. ``escape_values`` gives v where sym == 2K+1."""
    sym = sym.long()
    b = shifts.to(sym.device)[s.long()]
    h = (torch.ones_like(b) << b) >> 1
    v = mu.long() - h + ((sym - K) << b) + low.long()
    if escape_values is not None:
        v = torch.where(sym == 2 * K + 1, escape_values.long(), v)
    return v


def pixel_bits_exact(v, mu, s, R, tables: torch.Tensor, shifts: torch.Tensor, K: int) -> torch.Tensor:
    """Ideal code length (float64 bits) per pixel under the integer tables.

    ``R`` is a python int or a tensor broadcastable to ``v`` (the slice range).
    """
    sym, _low, nb, esc = pixel_symbols(v, mu, s, shifts, K)
    ncol = tables.shape[1]
    f = tables.to(v.device).reshape(-1)[s.long() * ncol + sym].to(torch.float64)
    R = torch.as_tensor(R, dtype=torch.float64, device=v.device)
    esc_bits = torch.log2(R + 1.0)
    return -torch.log2(f / TOTAL) + torch.where(esc, esc_bits.expand_as(f), nb.to(torch.float64))


OFFSET_MAX = 4  # per-step scale-index offsets chosen by the encoder lie in [-4, 4] (bitstream version 2)
# ... and in [-8, 8] from version 4 on: with the location refined on the slice (coding.refine) a
# CT's later steps want sharper tables than -4 reaches (measured: CT -2.1%, shoulder MR -1.5%)
WIDE_OFFSET_MAX = 8


def scale_offset(s: torch.Tensor, d: int, n_scales: int) -> torch.Tensor:
    """Scale indices moved by ``d`` quarter octaves, kept in the table range."""
    return s if d == 0 else (s + d).clamp(0, n_scales - 1)


def _numpy(a) -> np.ndarray:
    return np.asarray(a.cpu() if hasattr(a, "cpu") else a).astype(np.int64, copy=False)


def residual_pairs(r: np.ndarray, s: np.ndarray):
    """The distinct (residual, scale index) pairs of a step and how many pixels hold each (float64):
    every offset's bits depend on nothing else, and a step's residuals are concentrated (a 512 x 512
    CT step: about a tenth as many pairs as pixels). The pixels as they are where that saves little."""
    if r.size == 0:
        return r, s, np.ones(0)
    rlo, slo = int(r.min()), int(s.min())
    span = int(r.max()) - rlo + 1
    cells = span * (int(s.max()) - slo + 1)
    if cells > 4 * r.size:
        return r, s, np.ones(r.size)
    count = np.bincount((s - slo) * span + (r - rlo), minlength=cells)
    key = np.flatnonzero(count)
    if 2 * key.size > r.size:
        return r, s, np.ones(r.size)
    return key % span + rlo, key // span + slo, count[key].astype(np.float64)


def best_scale_offset(v, mu, s, R, tables: torch.Tensor, shifts: torch.Tensor, K: int, omax: int = OFFSET_MAX) -> int:
    """The offset ``d`` in ``[-omax, omax]`` for which ``scale_offset(s, d)`` codes the values ``v``
    in the fewest bits (ties: the smallest |d|): the encoder's per-step calibration of the model's
    confidence for one slice. Beyond +-4 the search goes on outwards only while the bits keep
    dropping (the bits are close to convex in ``d``). ``d`` is stored, so this choice need not be
    reproducible."""
    n_scales = tables.shape[0]
    # ``pixel_bits_exact`` summed, in numpy on the step's residuals: the same bits (up to the
    # order of the float sum), without torch's per-call overhead on every offset tried
    r = _numpy(v).reshape(-1) - _numpy(mu).reshape(-1)
    s0 = _numpy(s).reshape(-1)
    r, s0, n = residual_pairs(r, s0)  # pixels alike in (residual, scale) are counted once, weighted
    logt = -np.log2(_numpy(tables).astype(np.float64) / TOTAL)
    sh = _numpy(shifts)
    esc_bits = math.log2(float(R) + 1.0)

    def bits(d):
        sd = np.clip(s0 + d, 0, n_scales - 1) if d else s0
        b = sh[sd]
        q = (r + ((np.int64(1) << b) >> 1)) >> b
        esc = (q < -K) | (q > K)
        return float(n @ logt[sd, np.where(esc, 2 * K + 1, q + K)] + n @ np.where(esc, esc_bits, b))

    best = (math.inf, 0)
    for d in sorted(range(-min(omax, OFFSET_MAX), min(omax, OFFSET_MAX) + 1), key=abs):
        b = bits(d)
        if b < best[0]:
            best = (b, d)
    while OFFSET_MAX <= abs(best[1]) < omax:
        d = best[1] + (1 if best[1] > 0 else -1)
        b = bits(d)
        if b >= best[0]:
            break
        best = (b, d)
    return best[1]


def calibrated_scales(v, mu, s, R, tables: torch.Tensor, shifts: torch.Tensor, K: int, omax: int = OFFSET_MAX):
    """The scale indices the codec codes one step's pixels with: ``s`` moved by its best offset."""
    return scale_offset(s, best_scale_offset(v, mu, s, R, tables, shifts, K, omax), tables.shape[0])


def latent_bits_exact(z: torch.Tensor, tables: torch.Tensor, zmax: int) -> torch.Tensor:
    """Bits of z (C, h, w) or (N, C, h, w) under per-channel int tables (C, 2zmax+1)."""
    C = tables.shape[0]
    zz = z.long().clamp(-zmax, zmax) + zmax
    ch = torch.arange(C, device=z.device).view(C, 1, 1)
    if zz.dim() == 4:
        ch = ch.unsqueeze(0)
    f = tables.to(z.device)[ch.expand_as(zz), zz].to(torch.float64)
    return -torch.log2(f / TOTAL)


def _log_bin(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log(sigmoid(b) - sigmoid(a)) for a < b, numerically stable in both tails (training relaxation)."""
    import torch.nn.functional as F

    hi = torch.where(a > 0, F.logsigmoid(-a), F.logsigmoid(b))
    lo = torch.where(a > 0, F.logsigmoid(-b), F.logsigmoid(a))
    d = torch.clamp(lo - hi, max=-1e-6)
    return hi + torch.log1p(-torch.exp(d))
