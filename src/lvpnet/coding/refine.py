"""Per-slice linear refinement of the predicted location (bitstream version 4).

The network's location ``mu`` is right for the training data on average, not for one slice:
a CT's noise grain, a shoulder MR's texture. So from step 1 on, the encoder may correct it
with a linear predictor over the decoded neighbours, fitted on the slice itself and sent as
integers (forward adaptive, as the classical MRP and TMW coders do):

    mu' = clamp(mu + floor((sum_t q[c, t] * (n_t - mu) + 2**7) / 2**8), 0, R)

* ``n_t``: the decoded pixels at ``neighbour_offsets(order, k, radius)``, the offsets of the
  (2 radius + 1)^2 window whose sub-image phase is decoded before step ``k``. Outside the
  plane an offset moves by multiples of ``f`` back onto it along each axis (so it keeps its
  phase); where no such pixel exists, its term is 0.
* ``c``: the pixel's class, the number of the step's class edges at or below its scale index
  ``s`` (as the network gives it, before the step's scale offset).
* per step the encoder picks ``CONFIGS[i] = (radius, classes)`` (index 0: no refinement) by
  estimated bits, its side information included, and fits ``q`` by iteratively reweighted
  least squares (close to the least absolute residual, which is what a logistic's code length
  follows).

Integer-exact: ``|q| < 2**13``, ``|n - mu| <= R < 2**32`` and at most 48 terms keep every
sum below 2**51 (``apply_coefs``). Measured on one val slice each (estimate, shipped weights,
side information included): CT -8.8%, shoulder MR -9%, DWI mosaic -0.5%, FLAIR -0.3%; small
slices choose small or no refinement (``docs/MODEL.md`` section 2c).

Side information (``side_symbols`` / ``read_side``), all coded uniformly at the head of the
pixel stream, in this order: the config index of steps ``1..steps-1``; the class edges of
each such step (``classes - 1`` values in ``[0, S)``, non-decreasing); for every coefficient
in step, class, offset order its magnitude class ``m = bit_length(|q|)`` in ``[0, 14)``; then
the ``m - 1`` bits of ``|q|`` below its leading one for every ``m >= 2``; then a sign for
every ``m >= 1`` (1: negative).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

from ..model.tables import residual_bins
from .jit import compiled

CONFIGS = ((0, 1), (1, 1), (2, 1), (2, 2), (3, 1), (3, 2), (3, 4), (3, 8))  # (radius, classes)
COEF_FRAC = 8  # coefficients in units of 2**-8
MAG_CLASSES = 14  # |q| < 2**13
_FIT_PIXELS = 8192  # the encoder fits on at most this many pixels of a step (DWI: 0.06% worse than 32768)
_CHOICE_PIXELS = 8192  # ... and compares configs on the same sample
_IRLS = 3  # weighted fits: from the network's residual, then twice from the finest model's (2: CT +0.27% on val)


@dataclass
class StepRefinement:
    """One step's refinement: ``CONFIGS[config]``, its class edges and coefficients (int64)."""

    config: int
    edges: np.ndarray  # (classes - 1,)
    coefs: np.ndarray  # (classes, offsets)


def plane_f(order) -> int:
    return max(max(p) for p in order) + 1


def neighbour_offsets(order, k: int, radius: int) -> list[tuple[int, int]]:
    """Offsets (row-major) within ``radius`` whose phase is decoded before step ``k``."""
    if k == 0 or radius == 0:
        return []
    f = plane_f(order)
    done = set(order[:k])
    di, dj = order[k]
    r = range(-radius, radius + 1)
    return [(dy, dx) for dy in r for dx in r if ((di + dy) % f, (dj + dx) % f) in done]


def step_layout(order, k: int, config: int) -> tuple[int, int]:
    """(classes, offsets) of step ``k`` under ``config``: the shape of its coefficients."""
    radius, classes = CONFIGS[config]
    return classes, len(neighbour_offsets(order, k, radius))


def fold(idx: np.ndarray, n: int, f: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices moved by multiples of ``f`` into ``[0, n)``; (index, valid)."""
    idx = idx.copy()
    neg = idx < 0
    idx[neg] += f * ((f - 1 - idx[neg]) // f)
    high = idx >= n
    idx[high] -= f * ((idx[high] - n) // f + 1)
    ok = (idx >= 0) & (idx < n)
    return np.where(ok, idx, 0), ok


def neighbours(plane: np.ndarray, pos, shape: tuple[int, int], f: int, offset) -> tuple[np.ndarray, np.ndarray]:
    """(values, ok), both ``shape``: the pixels at ``offset`` from those of ``plane[di::f, dj::f]``
    (``shape`` their real shape), folded back onto the plane; ``ok`` False where none exists."""
    (di, dj), (dy, dx) = pos, offset
    ry, oky = fold(di + f * np.arange(shape[0]) + dy, plane.shape[0], f)
    rx, okx = fold(dj + f * np.arange(shape[1]) + dx, plane.shape[1], f)
    return plane[np.ix_(ry, rx)], oky[:, None] & okx[None, :]


def neighbour_deltas(plane: np.ndarray, mu: np.ndarray, pos, f: int, offsets, idx: np.ndarray | None = None) -> np.ndarray:
    """int64 (pixels, offsets): ``n_t - mu`` for the pixels of ``plane[di::f, dj::f]`` (``mu`` their
    real shape), 0 where an offset has no pixel; with ``idx``, only the pixels at those flat indices."""
    kernels = _kernels()
    if kernels and len(offsets):
        plane, mu = np.ascontiguousarray(plane, np.int64), np.ascontiguousarray(mu, np.int64)
        folded = fold_offsets(plane.shape, mu.shape, pos, f, offsets)
        if idx is not None:
            return kernels[3](plane, mu, *folded, np.ascontiguousarray(idx, np.int64),
                              *interior(plane.shape, mu.shape, pos, f, offsets))
        return kernels[0](plane, mu, *folded)
    out = np.zeros((mu.size, len(offsets)), np.int64)
    for t, offset in enumerate(offsets):
        n, ok = neighbours(plane, pos, mu.shape, f, offset)
        out[:, t] = np.where(ok, n - mu, 0).reshape(-1)
    return out if idx is None else out[idx]


def _deltas(plane, mu, ry, oky, rx, okx):
    """``neighbour_deltas`` from the folded indices: (T, h) rows, (T, w) columns and their masks."""
    T, h = ry.shape
    w = rx.shape[1]
    out = np.zeros((h * w, T), np.int64)
    for i in range(h):
        for j in range(w):
            p = i * w + j
            for t in range(T):
                if oky[t, i] and okx[t, j]:
                    out[p, t] = plane[ry[t, i], rx[t, j]] - mu[i, j]
    return out


def _deltas_at(plane, mu, ry, oky, rx, okx, idx, rin, cin, flat):
    """``_deltas`` of the pixels at the flat indices ``idx`` of the sub-image only (the encoder's
    sample). A pixel whose row and column are both interior (``rin``, ``cin``: every offset lands
    on the plane unfolded) reads its neighbours at fixed distances ``flat`` in the flat plane; the
    others through the folded indices, pixel-major (the inner loop over offsets then reads them in
    a row)."""
    T = ry.shape[0]
    w = rx.shape[1]
    W = plane.shape[1]
    pf = plane.reshape(-1)
    out = np.empty((idx.size, T), np.int64)
    for p in range(idx.size):
        i = idx[p] // w
        j = idx[p] % w
        m = mu[i, j]
        if rin[i] >= 0 and cin[j] >= 0:
            base = rin[i] * W + cin[j]
            for t in range(T):
                out[p, t] = pf[base + flat[t]] - m
        else:
            for t in range(T):
                if oky[t, i] and okx[t, j]:
                    out[p, t] = plane[ry[t, i], rx[t, j]] - m
                else:
                    out[p, t] = 0
    return out


def interior(shape, sub_shape, pos, f: int, offsets):
    """For ``_deltas_at``: each sub-image row's plane row where every offset lands on the plane
    unfolded (-1 elsewhere), the same for columns, and each offset's distance in the flat plane;
    kept like ``fold_offsets``."""
    return _interior(tuple(shape), tuple(sub_shape), tuple(pos), int(f), tuple(tuple(o) for o in offsets))


@functools.lru_cache(maxsize=512)
def _interior(shape, sub_shape, pos, f, offsets):
    (di, dj), (h, w), (H, W) = pos, sub_shape, shape
    dy = np.array([o[0] for o in offsets], np.int64)
    dx = np.array([o[1] for o in offsets], np.int64)
    rows, cols = di + f * np.arange(h), dj + f * np.arange(w)
    inside_r = (rows + dy.min(initial=0) >= 0) & (rows + dy.max(initial=0) < H)
    inside_c = (cols + dx.min(initial=0) >= 0) & (cols + dx.max(initial=0) < W)
    rin, cin, flat = np.where(inside_r, rows, -1), np.where(inside_c, cols, -1), dy * W + dx
    for a in (rin, cin, flat):
        a.flags.writeable = False
    return rin, cin, flat


def fold_offsets(shape, sub_shape, pos, f: int, offsets):
    """Every offset's folded rows (T, h) and columns (T, w) with their masks (``fold``); read-only
    arrays, kept for the next call with the same geometry (each step of every plane asks again)."""
    return _folded(tuple(shape), tuple(sub_shape), tuple(pos), int(f), tuple(tuple(o) for o in offsets))


@functools.lru_cache(maxsize=512)
def _folded(shape, sub_shape, pos, f, offsets):
    (di, dj), (h, w) = pos, sub_shape
    dy = np.array([o[0] for o in offsets], np.int64).reshape(-1, 1)
    dx = np.array([o[1] for o in offsets], np.int64).reshape(-1, 1)
    ry, oky = fold(di + f * np.arange(h)[None, :] + dy, shape[0], f)
    rx, okx = fold(dj + f * np.arange(w)[None, :] + dx, shape[1], f)
    for a in (ry, oky, rx, okx):
        a.flags.writeable = False
    return ry, oky, rx, okx


def _refined(plane, mu, ry, oky, rx, okx, cls, coefs, R, frac, rin, cin, flat):
    """``apply_coefs`` of the deltas without building them: ``mu + round(sum_t q[c, t] (n_t - mu))``
    per pixel in int64 (exact; the float64 path is exact too, below 2**51). Pixel by pixel, the
    offsets' sum in registers: an interior pixel (``rin``, ``cin``: ``interior``) reads its
    neighbours at fixed distances ``flat`` in the flat plane, the others through the folded
    indices (half the time of passes along each row, whose stride-``f`` reads did not vectorise)."""
    T, h = ry.shape
    w = rx.shape[1]
    W = plane.shape[1]
    pf = plane.reshape(-1)
    out = np.empty((h, w), np.int64)
    half = np.int64(1) << (frac - 1)
    for i in range(h):
        for j in range(w):
            c = cls[i * w + j]
            m = mu[i, j]
            acc = np.int64(0)
            if rin[i] >= 0 and cin[j] >= 0:
                base = rin[i] * W + cin[j]
                for t in range(T):
                    acc += coefs[c, t] * (pf[base + flat[t]] - m)
            else:
                for t in range(T):
                    if oky[t, i] and okx[t, j]:
                        acc += coefs[c, t] * (plane[ry[t, i], rx[t, j]] - m)
            out[i, j] = min(max(m + ((acc + half) >> frac), 0), R)
    return out


def _applied(mu, deltas, cls, coefs, R, frac):
    """``apply_coefs`` over flat pixels: ``mu + round(sum_t q[c, t] d_t)`` in int64."""
    n, T = deltas.shape
    out = np.empty(n, np.int64)
    half = np.int64(1) << (frac - 1)
    for p in range(n):
        c = cls[p]
        acc = np.int64(0)
        for t in range(T):
            acc += coefs[c, t] * deltas[p, t]
        out[p] = min(max(mu[p] + ((acc + half) >> frac), 0), R)
    return out


def _config_counts(mu, deltas, coefs, cls, R, frac, vals, b, row, qmax, counts):
    """``_Estimate``'s histogram of one config without its refined ``mu``: per pixel ``apply_coefs``
    (``coefs`` as wide as ``deltas``, 0 where the config has no offset: a whole row's products, which
    vectorise, where gathering the config's columns did not), the residual's bin as
    ``residual_bins`` makes it, clipped to ``qmax``, counted at ``row + bin + qmax`` in ``counts``."""
    n = mu.size
    T = coefs.shape[1]
    half = np.int64(1) << (frac - 1)
    counts[:] = 0
    for p in range(n):
        c = cls[p]
        acc = np.int64(0)
        for t in range(T):
            acc += coefs[c, t] * deltas[p, t]
        m = min(max(mu[p] + ((acc + half) >> frac), 0), R)
        bb = b[p]
        q = min(max((vals[p] - m + ((np.int64(1) << bb) >> 1)) >> bb, -qmax), qmax)
        counts[row[p] + q + qmax] += 1


_KERNELS = None


def _kernels():
    """(``_deltas``, ``_refined``, ``_applied``, ``_deltas_at``, ``_eliminate``, ``_config_counts``) compiled
    by numba, or False without numba (the numpy path, the same integers and the same fits to the last bit)."""
    global _KERNELS
    if _KERNELS is None:
        from ..model.jit import BUILD_LOCK

        with BUILD_LOCK:
            if _KERNELS is None:
                try:
                    from ..model.jit import njit

                    jit = njit()
                    _KERNELS = (jit(_deltas), jit(_refined), jit(_applied), jit(_deltas_at), jit(_eliminate),
                                jit(_config_counts))
                except ImportError:
                    _KERNELS = False
    return _KERNELS


def classes_of(s: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.asarray(edges, np.int64), s.reshape(-1), side="right")


def apply_coefs(mu: np.ndarray, deltas: np.ndarray, cls: np.ndarray, coefs: np.ndarray, R: int) -> np.ndarray:
    """``mu'`` (int64, ``mu``'s shape) from the integer coefficients (the formula above). The
    sums run in float64 for speed, exact: every term and partial sum is an integer below 2**51
    (2**51 > 48 * 2**13 * 2**32), so no rounding happens in any order of summation; with numba,
    one int64 pass that sums only each pixel's own class."""
    kernels = _kernels()
    if kernels and deltas.shape[1]:
        return kernels[2](np.ascontiguousarray(mu, np.int64).reshape(-1), np.ascontiguousarray(deltas, np.int64),
                          np.ascontiguousarray(cls, np.int64).reshape(-1), np.ascontiguousarray(coefs, np.int64),
                          int(R), COEF_FRAC).reshape(mu.shape)
    num = _mm(deltas.astype(np.float64), coefs.astype(np.float64).T)  # (pixels, classes)
    num = np.take_along_axis(num, cls.reshape(-1, 1), 1)[:, 0].astype(np.int64)
    half = 1 << (COEF_FRAC - 1)
    return np.clip(mu.reshape(-1) + ((num + half) >> COEF_FRAC), 0, R).reshape(mu.shape)


def refine_step(plane, mu, s, pos, f: int, order, k: int, ref: StepRefinement | None, R: int) -> np.ndarray:
    """Decoder and encoder: step ``k``'s ``mu`` refined (``mu`` itself without refinement)."""
    if ref is None or ref.config == 0 or mu.size == 0:
        return mu
    offsets = neighbour_offsets(order, k, CONFIGS[ref.config][0])
    if not offsets:
        return mu
    cls = classes_of(s, ref.edges)
    kernels = _kernels()
    if kernels:  # one pass: the sums per pixel in int64, no (pixels, offsets) matrix
        folded = fold_offsets(plane.shape, mu.shape, pos, f, offsets)
        out = kernels[1](np.ascontiguousarray(plane, np.int64), np.ascontiguousarray(mu, np.int64), *folded,
                         cls.astype(np.int64), np.ascontiguousarray(ref.coefs, np.int64), int(R), COEF_FRAC,
                         *interior(plane.shape, mu.shape, pos, f, offsets))
        return out
    deltas = neighbour_deltas(plane, mu, pos, f, offsets)
    return apply_coefs(mu, deltas, cls, ref.coefs, R)


# ------------------------------------------------------------------ side information


def coef_bits(q: np.ndarray) -> float:
    m = bit_length(np.abs(q))
    return float(q.size * math.log2(MAG_CLASSES) + np.maximum(m - 1, 0).sum() + (m >= 1).sum())


def _mm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Matrix product through torch: numpy's BLAS threads would spin beside torch's
    and slow its convolutions down (measured: decode +0.4 s on a 512 x 512 slice)."""
    return torch.matmul(torch.from_numpy(a), torch.from_numpy(b)).numpy()


def bit_length(a: np.ndarray) -> np.ndarray:
    """``int.bit_length`` of non-negative integers below 2**53, elementwise: the binary exponent
    ``frexp`` reads off the float64 (exact, no rounding; ``floor(log2)`` could land an ulp low
    at a power of two on some machine's libm, and the decoder must agree everywhere)."""
    return np.frexp(np.asarray(a, np.int64).astype(np.float64))[1].astype(np.int64)


def side_symbols(refs: list, order, n_scales: int) -> tuple[np.ndarray, np.ndarray]:
    """(values, alphabet sizes) of a plane's refinement, in decoding order (``refs[k]`` for steps
    ``1..steps-1``; None for no refinement). Every size is at least 2."""
    steps = len(order)
    refs = [refs[k] if refs[k] is not None else StepRefinement(0, np.zeros(0, np.int64), np.zeros((1, 0), np.int64))
            for k in range(1, steps)]
    vals = [np.array([r.config for r in refs], np.int64)]
    sizes = [np.full(len(refs), len(CONFIGS), np.int64)]
    vals.append(np.concatenate([r.edges for r in refs]).astype(np.int64) if refs else np.zeros(0, np.int64))
    sizes.append(np.full(vals[-1].size, n_scales, np.int64))
    q = np.concatenate([r.coefs.reshape(-1) for r in refs]).astype(np.int64) if refs else np.zeros(0, np.int64)
    a = np.abs(q)
    m = bit_length(a)
    vals.append(m)
    sizes.append(np.full(m.size, MAG_CLASSES, np.int64))
    big = m >= 2
    vals.append(a[big] - (np.int64(1) << (m[big] - 1)))
    sizes.append(np.int64(1) << (m[big] - 1))
    nz = m >= 1
    vals.append((q[nz] < 0).astype(np.int64))
    sizes.append(np.full(int(nz.sum()), 2, np.int64))
    return np.concatenate(vals), np.concatenate(sizes)


def read_side(pop, order, n_scales: int) -> list:
    """Inverse of ``side_symbols``: ``pop(sizes) -> values`` reads from the stream. Returns
    ``refs`` indexed by step (None for step 0 and unrefined steps). Raises ValueError on
    values a valid stream never holds."""
    steps = len(order)
    configs = pop(np.full(steps - 1, len(CONFIGS), np.int64))
    layout = [step_layout(order, k, int(c)) for k, c in zip(range(1, steps), configs)]
    n_edges = sum(c - 1 for c, _ in layout)
    edges = pop(np.full(n_edges, n_scales, np.int64))
    n_coefs = sum(c * m for c, m in layout)
    m = pop(np.full(n_coefs, MAG_CLASSES, np.int64))
    big = m >= 2
    low = pop(np.int64(1) << (m[big] - 1))
    nz = m >= 1
    neg = pop(np.full(int(nz.sum()), 2, np.int64))
    a = np.zeros(n_coefs, np.int64)
    a[big] = (np.int64(1) << (m[big] - 1)) + low
    a[m == 1] = 1
    negative = np.zeros(n_coefs, bool)
    negative[np.flatnonzero(nz)] = neg.astype(bool)
    q = np.where(negative, -a, a)
    refs: list = [None] * steps
    ei = qi = 0
    for k, ((classes, noff), config) in enumerate(zip(layout, configs), start=1):
        e = edges[ei : ei + classes - 1]
        ei += classes - 1
        if np.any(np.diff(e) < 0):
            raise ValueError("refinement class edges out of order (damaged stream or other weights)")
        c = q[qi : qi + classes * noff].reshape(classes, noff)
        qi += classes * noff
        if config:
            refs[k] = StepRefinement(int(config), e, c)
    return refs


def side_bits(refs: list, order, n_scales: int) -> float:
    _vals, sizes = side_symbols(refs, order, n_scales)
    return float(np.log2(sizes.astype(np.float64)).sum())


# ------------------------------------------------------------------ the encoder's choice


# The fits below give the same coefficients on every machine: a file's bytes must not depend on
# which CPU wrote it (``tests/test_encoder_portable.py``). Float products of BLAS and LAPACK are
# summed in an order that depends on the CPU's vector width, and a coefficient that lands near a
# rounding boundary then flips (measured: the same slice gave coefficients one apart on an
# AVX-512 Intel and an AMD machine). So every sum here is of integers, exact in float64 in any
# order, and the systems are solved by a fixed sequence of elementwise operations.
_WEIGHT_BITS = 10  # IRLS weights are integers round(2**W / max(|r|, 1)) in [1, 2**W]
_EXACT_BITS = 52  # every product sum of the fits stays below 2**52: exact in float64


def _fit_scale(A: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Deltas ``A`` (n, T) and residuals ``y`` (n,), integers, as one float64 matrix ``[A | y]``,
    shifted right where their size would take a weighted sum of products past ``_EXACT_BITS``
    (only wide-range planes: a fit is a proposal, judged afterwards by its bits); the weight bits
    that keep every sum exact; and the fraction bits of the grid ``_residual`` puts coefficients
    on to keep ``A a`` exact."""
    n, T = A.shape
    top = int(max(A.max(initial=0), -A.min(initial=0), y.max(initial=0), -y.min(initial=0)))
    room = _EXACT_BITS - int(n).bit_length()
    shift = max(0, -(-(2 * top.bit_length() + 4 - room) // 2))  # leaves at least 4 weight bits
    bits = (top >> shift).bit_length()
    wbits = min(_WEIGHT_BITS, room - 2 * bits)
    fbits = _EXACT_BITS - int(T).bit_length() - bits - 5  # |a| < 2**5 after the clip, T terms
    Ay = np.empty((n, T + 1))
    Ay[:, :T], Ay[:, T] = (A >> shift, y >> shift) if shift else (A, y)
    return Ay, wbits, fbits


def _int_weights(r: np.ndarray, wbits: int) -> np.ndarray:
    """IRLS weights towards the least absolute residual, ``1 / max(|r|, 1)`` as integers."""
    return np.maximum(np.rint(np.ldexp(1.0, wbits) / np.maximum(np.abs(r), 1.0)), 1.0)


def _residual(A: np.ndarray, y: np.ndarray, a: np.ndarray, fbits: int) -> np.ndarray:
    """``y - A a``, with ``a`` first rounded to multiples of ``2**-fbits`` (and to the
    coefficients' range): integer products, exact in any order of summation."""
    q, grid = _on_grid(a, fbits)
    return y - _mm(A, q) / grid


def _on_grid(a: np.ndarray, fbits: int) -> tuple[np.ndarray, float]:
    """Coefficients ``a`` clipped to the coefficients' range and rounded to multiples of
    ``2**-fbits``, as integers (float64) and the grid ``2**fbits`` they count in."""
    lim = ((1 << (MAG_CLASSES - 1)) - 1) / (1 << COEF_FRAC)
    grid = np.ldexp(1.0, fbits)
    return np.rint(np.clip(a, -lim, lim) * grid), grid


def _solve(G: np.ndarray, b: np.ndarray, weight) -> np.ndarray:
    """``G a = b`` with a ridge of 1e-3 times the mean squared feature (``weight``: the
    weighted pixel count), so a rare neighbour pattern cannot blow a coefficient up. Also for a
    stack of systems (``G`` (n, T, T), ``b`` (n, T), ``weight`` (n,)) at once. ``G``, ``b``,
    ``weight``: exact integer sums (float64); the same result on every machine (see above)."""
    G = np.asarray(G, np.float64)
    trace = np.diagonal(G, axis1=-2, axis2=-1).astype(np.int64).sum(-1)  # integers: any order
    lam = 1e-3 * trace / np.maximum(np.asarray(weight, np.float64), 1e-9) + 1e-6
    T = G.shape[-1]
    M = np.ascontiguousarray(G + lam[..., None, None] * np.eye(T))
    return _spd_solve(M, np.array(b, np.float64, order="C"))


def _spd_solve(M: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Gaussian elimination of symmetric positive definite systems (a ridge makes them so: no
    pivoting), stacked, in place. Each operation is one IEEE multiply, subtract or divide,
    rounded once, in an order fixed here (no library's blocking, no fused multiply-add: numba
    fuses none without fastmath), so every machine gets the same bits; ``_eliminate`` with numba
    (0.2 ms a step), these numpy lines without it (the same operations in the same order)."""
    kernels = _kernels()
    if kernels:
        kernels[4](M.reshape(-1, *M.shape[-2:]), x.reshape(-1, x.shape[-1]))
        return x
    T = M.shape[-1]
    for i in range(T):
        f = M[..., i + 1 :, i] / M[..., i, i, None]
        M[..., i + 1 :, i + 1 :] -= f[..., :, None] * M[..., None, i, i + 1 :]
        x[..., i + 1 :] -= f * x[..., i, None]
    for i in range(T - 1, -1, -1):
        acc = x[..., i]
        for j in range(i + 1, T):
            acc = acc - M[..., i, j] * x[..., j]
        x[..., i] = acc / M[..., i, i]
    return x


def _eliminate(M, x):
    """``_spd_solve``'s operations for numba, system by system: (n, T, T) and (n, T), in place."""
    n, T = x.shape
    for s in range(n):
        for i in range(T):
            for r in range(i + 1, T):
                f = M[s, r, i] / M[s, i, i]
                for c in range(i + 1, T):
                    M[s, r, c] -= f * M[s, i, c]
                x[s, r] -= f * x[s, i]
        for i in range(T - 1, -1, -1):
            acc = x[s, i]
            for j in range(i + 1, T):
                acc = acc - M[s, i, j] * x[s, j]
            x[s, i] = acc / M[s, i, i]


def _quantise(a: np.ndarray) -> np.ndarray:
    lim = (1 << (MAG_CLASSES - 1)) - 1
    return np.clip(np.round(a * (1 << COEF_FRAC)), -lim, lim).astype(np.int64)


def _nested_edges(s: np.ndarray) -> np.ndarray:
    """Seven class edges at the octiles of ``s``; 2 and 4 classes use every 4th and 2nd of them,
    so the classes of each config are unions of the 8 finest.

    ``floor(np.quantile(s, k / 8))`` (its linear method), in integers: the octile lies ``r / 8``
    of the way from the sorted ``s``'s value at ``floor(k (n - 1) / 8)`` to the next, ``r = k (n -
    1) mod 8``, and numpy's float arithmetic there is exact (eighths of integers below 2**50), so
    the floor is ``a + (b - a) r // 8``. The order statistics by counting where the scale indices
    are small (their usual case), else by sorting."""
    s = np.asarray(s, np.int64).reshape(-1)
    n = s.size
    k = np.arange(1, 8, dtype=np.int64)
    at, r = np.divmod(k * (n - 1), 8)
    ranks = np.concatenate([at, np.minimum(at + 1, n - 1)])
    lo = int(s.min())
    if int(s.max()) - lo < 4 * n:
        ends = np.cumsum(np.bincount(s - lo))  # value v + lo holds the ranks below ends[v]
        ab = np.searchsorted(ends, ranks, side="right") + lo
    else:
        ab = np.sort(s)[ranks]
    a, b = ab[:7], ab[7:]
    return a + (b - a) * r // 8


_EDGE_PICK = {1: [], 2: [3], 4: [1, 3, 5], 8: list(range(7))}
_QMAX = 65  # the tables' 2K + 1 bins and an escape on each side (K = 64)


class _Estimate:
    """Bits of one step's sample as the adapted tables (``coding.adapt``) come to code it,
    roughly: the empirical entropy of the binned residual (bins of ``2**shifts[s]``, as
    ``tables.pixel_symbols`` makes them) given the scale index, plus the raw low bits. The
    model's fixed tables would not do: their offsets saturate on a CT whose residual is
    sharper than any of them, where the adapted tables follow it. Called with each ``mu`` that
    ``choose_step`` weighs, or with a config's coefficients (``config``: with numba, the refined
    ``mu`` never built); what depends on the scale indices alone (their bins, the per-index
    entropy term, the raw low bits) is made once."""

    def __init__(self, vals, s, shifts: np.ndarray):
        self.vals, self.b = vals, shifts[s]
        self.row = s * (2 * _QMAX + 1)
        groups = np.bincount(s)
        groups = groups[groups > 0]
        self.groups, self.low = (groups * np.log2(groups)).sum(), self.b.sum()
        self._counts = None

    def __call__(self, mu) -> float:
        q = np.clip(residual_bins(self.vals - mu, self.b), -_QMAX, _QMAX) + _QMAX
        return self._bits(np.bincount(self.row + q))

    def config(self, mu, deltas, cols: np.ndarray, cls, coefs, R: int) -> float:
        """``self(apply_coefs(mu, deltas[:, cols], cls, coefs, R))``, the same float."""
        wide = np.zeros((coefs.shape[0], deltas.shape[1]), np.int64)  # the same sums: 0 times a delta is 0
        wide[:, cols] = coefs
        kernels = _kernels()
        if not kernels:
            return self(apply_coefs(mu, deltas, cls, wide, R))
        if self._counts is None:
            self._counts = np.empty(int(self.row.max(initial=0)) + 2 * _QMAX + 1, np.int64)
        kernels[5](mu, deltas, wide, cls, int(R), COEF_FRAC, self.vals, self.b, self.row, _QMAX, self._counts)
        return self._bits(self._counts)

    def _bits(self, counts) -> float:
        counts = counts[counts > 0]  # the same counts in the same order however long the histogram
        return float(-(counts * np.log2(counts)).sum() + self.groups + self.low)


def choose_step(plane, vals, mu, s, pos, f: int, order, k: int, R: int, shifts: np.ndarray):
    """The encoder's refinement of step ``k`` (pixels ``vals``, network ``mu``, ``s``, numpy):
    -> (StepRefinement or None, refined mu). Fits every config and keeps the one with the fewest
    estimated bits, its side information included (``shifts``: the tables' bin shifts, numpy)."""
    n_scales = len(shifts)
    n = vals.size
    offs3 = neighbour_offsets(order, k, 3)
    if k == 0 or n < 64 or not offs3:
        return None, mu
    # the fits and the choice of config look at one sample of the step (evenly spaced), taken in
    # the order of its 8 fine classes (int8 labels: numpy's radix sort, a stable order), so each
    # class is a run of rows; nothing below depends on the sample's order but through those runs
    sample = np.arange(0, n, max(1, n // min(_FIT_PIXELS, _CHOICE_PIXELS)))
    s_c = s.reshape(-1)[sample]
    E8 = _nested_edges(s_c)
    lab8 = classes_of(s_c, E8)
    by_class = np.argsort(lab8.astype(np.int8), kind="stable")
    sample, s_c, lab8 = sample[by_class], s_c[by_class], lab8[by_class]
    bounds = np.concatenate([[0], np.cumsum(np.bincount(lab8, minlength=8))])  # each class's start and end
    D = neighbour_deltas(plane, mu, pos, f, offs3, sample)  # (sample, offsets), int64
    v_c, mu_c = vals.reshape(-1)[sample], mu.reshape(-1)[sample]
    # integers as float64, every sum of products exact: the same fit on every machine (``_solve``),
    # in any order of summation, so the products below are free to group their sums as they like
    Ay, wbits, fbits = _fit_scale(D, v_c - mu_c)
    T = Ay.shape[1] - 1
    A, y = Ay[:, :T], Ay[:, T]
    # weights towards the least absolute residual (IRLS), starting from the network's residual;
    # one product of [A | y] gives a class's normal equations: G = P[:T, :T], b = P[:T, T]
    Ayt = torch.from_numpy(Ay)
    Ayw = torch.empty_like(Ayt)  # the weighted rows, one buffer for every pass (3 MB: no fresh pages each)
    parts = [slice(bounds[c], bounds[c + 1]) for c in range(8)]
    w = _int_weights(y, wbits)
    torch.mul(Ayt, torch.from_numpy(w)[:, None], out=Ayw)
    P = torch.matmul(Ayw.T, Ayt).numpy()
    w = _int_weights(_residual(A, y, _solve(P[:T, :T], P[:T, T], w.sum()), fbits), wbits)
    for it in range(_IRLS):
        torch.mul(Ayt, torch.from_numpy(w)[:, None], out=Ayw)
        P8 = torch.stack([torch.matmul(Ayw[p].T, Ayt[p]) for p in parts]).numpy()
        G8, b8 = P8[:, :T, :T], P8[:, :T, T]
        w8 = np.array([w[p].sum() for p in parts])
        if it + 1 < _IRLS:  # reweight by the residual of the finest model (8 classes, radius 3)
            w = _int_weights(_class_residual(Ay, _solve(G8, b8, w8), lab8, fbits), wbits)
    # configs compared on the sample, against no refinement with the same estimate
    scale = n / sample.size
    estimate = _Estimate(v_c, s_c, shifts)
    base = estimate(mu_c) * scale
    # a config's classes from the 8 fine ones: its edges are some of E8 (sorted), so the count of
    # them at or below a pixel's s is the count of picked indices below its fine class; a coarse
    # class is the union of a run of fine ones (``_EDGE_PICK``: 8 // classes of them each)
    nested = bool(np.all(E8[1:] >= E8[:-1]))
    grouped = {c: (G8.reshape(c, 8 // c, T, T).sum(1), b8.reshape(c, 8 // c, T).sum(1), w8.reshape(c, 8 // c).sum(1))
               for c in sorted({classes for _, classes in CONFIGS[1:]})}
    systems = {}  # config -> (radius, classes, edges, G, b, weights, cols): each config's normal equations
    for config in range(1, len(CONFIGS)):
        radius, classes = CONFIGS[config]
        cols = _columns(order, k, radius)
        if not cols.size:
            continue
        G, b, wc = grouped[classes]
        systems[config] = (radius, classes, E8[_EDGE_PICK[classes]], G[:, cols[:, None], cols], b[:, cols], wc, cols)
    # the configs of one radius share their size: one stacked solve each (the same system by system)
    solved = {}
    for radius in dict.fromkeys(spec[0] for spec in systems.values()):
        mine = [c for c in systems if systems[c][0] == radius]
        a = _solve(*(np.concatenate([systems[c][i] for c in mine]) for i in (3, 4, 5)))
        at = np.cumsum([0] + [systems[c][1] for c in mine])
        solved.update({c: a[at[i] : at[i + 1]] for i, c in enumerate(mine)})
    best = (base, None)
    for config, (_radius, classes, edges, _G, _b, _w, cols) in systems.items():
        q = _quantise(solved[config])
        cls = _coarse(lab8, classes) if nested else classes_of(s_c, edges)
        est = estimate.config(mu_c, D, cols, cls, q, R) * scale
        est += (classes - 1) * math.log2(n_scales) + coef_bits(q)
        if est < best[0]:
            best = (est, StepRefinement(config, edges, q))
    ref = best[1]
    if ref is None:
        return None, mu
    return ref, refine_step(plane, mu, s, pos, f, order, k, ref, R)


def _class_residual(Ay: np.ndarray, a8: np.ndarray, lab: np.ndarray, fbits: int) -> np.ndarray:
    """``_residual`` of each row of ``[A | y]`` (``_fit_scale``'s) under its own class's coefficients
    (``a8[lab]``): each row's product with its class's coefficients on the grid (integers below 2**52:
    exact in any order of summation), by numba where it is (``_own_products``), else one product with
    every class's and each row's own taken."""
    q, grid = _on_grid(a8, fbits)  # (8, T)
    q = np.ascontiguousarray(q)
    T = q.shape[1]
    kernel = compiled(_own_products, fastmath={"reassoc"})
    if kernel:
        num = np.empty(Ay.shape[0])
        kernel(np.ascontiguousarray(Ay), q, np.ascontiguousarray(lab, np.int64), num)
    else:
        num = np.take_along_axis(_mm(Ay[:, :T], np.ascontiguousarray(q.T)), lab.reshape(-1, 1), 1)[:, 0]
    return Ay[:, T] - num / grid


def _own_products(Ay, q, lab, out):
    """``out[p] = Ay[p, :T] . q[lab[p]]`` (T: ``q``'s width). Integers in float64, every partial sum
    exact, so the sum may be reassociated (numba's ``reassoc``: it vectorises) without changing a bit."""
    n = out.size
    T = q.shape[1]
    for p in range(n):
        c = lab[p]
        acc = 0.0
        for t in range(T):
            acc += Ay[p, t] * q[c, t]
        out[p] = acc


def _coarse(lab8: np.ndarray, classes: int) -> np.ndarray:
    """The class among ``classes`` of each fine class of 8 (``_EDGE_PICK``: runs of 8 // classes)."""
    return lab8 // (8 // classes)


@functools.lru_cache(maxsize=256)
def _columns_of(order: tuple, k: int, radius: int) -> np.ndarray:
    offs3 = neighbour_offsets(order, k, 3)
    cols = np.array([offs3.index(o) for o in neighbour_offsets(order, k, radius)], np.int64)
    cols.flags.writeable = False
    return cols


def _columns(order, k: int, radius: int) -> np.ndarray:
    """The columns of step ``k``'s radius-3 deltas that are its radius-``radius`` offsets."""
    return _columns_of(tuple(tuple(p) for p in order), k, radius)
