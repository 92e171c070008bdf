"""The integer head of steps >= 1 as one fused CPU kernel (numba), the same integers as ``head_params``.

Why: ``predictor.head_params`` turns the raw head outputs of a step into ``(mu, s)`` with a
weighted average, an activity and up to 12 signed linear terms over the 3x3 neighbourhoods of
every decoded sub-image (up to 135 neighbours per pixel). In torch that is a dozen passes over
(135, h, w) float64 tensors: 54 ms for the last step of a 512 x 512 slice, a third of the
decoder's time, all of it memory traffic. One loop per pixel reads each neighbour once and keeps
the sums in registers, in int64 (exact by construction, no float bound to argue).

Only the cases the codec runs on the CPU are fused: head version >= 2, no training relaxation;
steps >= 1 with every listed context sub-image available, and step 0's rows below the first
(128 small calls a 512 x 512 slice, where torch's per-call cost dominated). ``fused_params``
returns None for anything else, and when numba is not installed, and the caller keeps the torch
path. Tests compare both on random and real inputs.
"""

from __future__ import annotations

import numpy as np
import torch

_KERNEL = None  # compiled on first use; False when numba is not available


def _compile():
    """(steps >= 1 kernel, step-0 rows kernel), or False without numba."""
    global _KERNEL
    if _KERNEL is None:
        try:
            import numba
        except ImportError:  # the torch path is exact too, only slower
            _KERNEL = False
            return _KERNEL
        # the kernels call these helpers by their global names, so the compiled versions replace them
        # first; inlined, since they run per neighbour and pixel
        global _finish, _weight, _lin_coef
        inline = numba.njit(cache=True, nogil=True, inline="always")
        _finish, _weight, _lin_coef = inline(_finish), inline(_weight), inline(_lin_coef)
        jit = numba.njit(cache=True, nogil=True)
        _KERNEL = (jit(_head), jit(_head_nb))
    return _KERNEL


def _finish(raw, y, x, A, wavg, act_sum, lin_acc, has_lin, thr, R, fw, sscale, act_frac, n_scales, mu, s):
    """One pixel's (mu, s) from its weight total ``A``, weighted average, weighted absolute
    deviation sum and linear-term sum (``has_lin``: head 3)."""
    act = (act_sum << act_frac) // max(A, 1)
    # searchsorted(thr, act, right=True) - 1: thresholds at or below act, minus one
    lo, hi = 0, thr.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if thr[mid] <= act:
            lo = mid + 1
        else:
            hi = mid
    s_raw = np.floor(np.float64(raw[1, y, x]) * sscale)
    s_corr = np.int64(min(max(s_raw, -64.0), 63.0))
    s[y, x] = min(max(lo - 1 + s_corr, 0), n_scales - 1)
    m_int = np.int64(np.round(np.float64(raw[0, y, x])))
    delta = (m_int * act + (np.int64(1) << (fw + 3 + act_frac))) >> (fw + 4 + act_frac)
    if has_lin:
        delta += (lin_acc + (np.int64(1) << (fw + 3))) >> (fw + 4)
    mu[y, x] = min(max(wavg + delta, 0), R)


def _weight(a, wscale, amax):
    """A neighbour's weight ``clamp(floor(a / 2**fw), 0, AMAX) + 1`` from its raw head output
    (``wscale = 2**-fw``, exact: a power of two)."""
    a = np.floor(np.float64(a) * wscale)
    return np.int64(min(max(a, 0.0), amax)) + 1


def _lin_coef(a, lin_clamp):
    """A linear term's coefficient ``clamp(round(a), +-LIN_CLAMP)`` (``a`` integer-valued)."""
    return np.int64(min(max(np.round(np.float64(a)), -lin_clamp), lin_clamp))


def _head(raw, ctx, lin_idx, lin_ok, thr, R, fw, act_frac, amax, n_scales, lin_clamp):
    """Steps >= 1: raw (P, h, w) float32 integer-valued or int32, ctx (n, h, w) int64 decoded sub-images
    -> mu, s (h, w) int64. Mirrors ``head_params`` (``neighbours``' channel order
    ``c * 9 + 3 * ki + kj``, edge-replicated; torch's floor division and arithmetic shifts).
    Row by row, each neighbour channel's pass running along the row, so the sums vectorise."""
    n, h, w = ctx.shape
    P = raw.shape[0]
    L = lin_idx.shape[0]
    mu = np.empty((h, w), np.int64)
    s = np.empty((h, w), np.int64)
    wscale, sscale = 2.0 ** -fw, 2.0 ** -(fw + 2)
    A = np.empty(w, np.int64)
    num = np.empty(w, np.int64)
    wavg = np.empty(w, np.int64)
    act = np.empty(w, np.int64)
    lin = np.empty(w, np.int64)
    xs = np.empty((3, w), np.int64)  # the edge-replicated column of each kj
    for kj in range(3):
        for x in range(w):
            xs[kj, x] = min(max(x + kj - 1, 0), w - 1)
    wts = np.empty((9 * n, w), np.int64)  # this row's neighbour weights, for both passes
    for y in range(h):
        A[:] = 0
        num[:] = 0
        for c in range(n):
            for ki in range(3):
                row = ctx[c, min(max(y + ki - 1, 0), h - 1)]
                for kj in range(3):
                    j = c * 9 + 3 * ki + kj
                    a = raw[2 + j, y]
                    wj = wts[j]
                    for x in range(w):
                        wj[x] = _weight(a[x], wscale, amax)
                        A[x] += wj[x]
                    # interior columns read row[x + kj - 1] directly (contiguous: vectorised), the
                    # two edge columns their replicated neighbour
                    for x in range(1, w - 1):
                        num[x] += wj[x] * row[x + kj - 1]
                    num[0] += wj[0] * row[xs[kj, 0]]
                    if w > 1:
                        num[w - 1] += wj[w - 1] * row[xs[kj, w - 1]]
        for x in range(w):
            wavg[x] = (num[x] + (A[x] >> 1)) // max(A[x], 1)
        act[:] = 0
        for c in range(n):
            for ki in range(3):
                row = ctx[c, min(max(y + ki - 1, 0), h - 1)]
                for kj in range(3):
                    wj = wts[c * 9 + 3 * ki + kj]
                    for x in range(1, w - 1):
                        act[x] += wj[x] * abs(row[x + kj - 1] - wavg[x])
                    act[0] += wj[0] * abs(row[xs[kj, 0]] - wavg[0])
                    if w > 1:
                        act[w - 1] += wj[w - 1] * abs(row[xs[kj, w - 1]] - wavg[w - 1])
        lin[:] = 0
        for t in range(L):
            if lin_ok[t]:
                j = lin_idx[t]
                c, ki, kj = j // 9, (j % 9) // 3, j % 3
                row = ctx[c, min(max(y + ki - 1, 0), h - 1)]
                a = raw[P - L + t, y]
                xk = xs[kj]
                for x in range(w):
                    lin[x] += _lin_coef(a[x], lin_clamp) * (row[xk[x]] - wavg[x])
        for x in range(w):
            _finish(raw, y, x, A[x], wavg[x], act[x], lin[x], L > 0, thr, R, fw, sscale, act_frac, n_scales, mu, s)
    return mu, s


def _head_nb(raw, nb, lin_idx, lin_ok, thr, R, fw, act_frac, amax, n_scales, lin_clamp):
    """Step 0 by rows: the neighbours given, ``nb`` (n, h, w) int64 (``row_neighbours``), every
    pixel with a row above -> mu, s (h, w) int64."""
    nw, h, w = nb.shape
    P = raw.shape[0]
    L = lin_idx.shape[0]
    mu = np.empty((h, w), np.int64)
    s = np.empty((h, w), np.int64)
    wscale, sscale = 2.0 ** -fw, 2.0 ** -(fw + 2)
    for y in range(h):
        for x in range(w):
            A = 0
            num = 0
            for j in range(nw):
                wj = _weight(raw[2 + j, y, x], wscale, amax)
                A += wj
                num += wj * nb[j, y, x]
            wavg = (num + (A >> 1)) // max(A, 1)
            act = 0
            for j in range(nw):
                act += _weight(raw[2 + j, y, x], wscale, amax) * abs(nb[j, y, x] - wavg)
            lin = 0
            for t in range(L):
                if lin_ok[t]:
                    lin += _lin_coef(raw[P - L + t, y, x], lin_clamp) * (nb[lin_idx[t], y, x] - wavg)
            _finish(raw, y, x, A, wavg, act, lin, L > 0, thr, R, fw, sscale, act_frac, n_scales, mu, s)
    return mu, s


def _integers(raw: torch.Tensor) -> torch.Tensor:
    """The raw head integers as the kernels read them: int32 (the int8 trunk's) as they are, any
    other type as float32 (integer-valued, exact below 2**24); every read goes through float64."""
    return raw if raw.dtype == torch.int32 else raw.to(torch.float32)


def fused_params(raw, ctx_v, avail, first, R, B, *, head, thr, lin, soft, nb, nb_has, n_scales, fw, act_frac, amax,
                 lin_clamp):
    """``head_params``' (mu, s) from a fused kernel, or None where none applies: the codec's CPU
    cases, head version >= 2, one slice, no training relaxation; steps >= 1 with every listed
    context sub-image available, or step 0's rows that all have a row above."""
    if soft or head < 2 or thr is None or raw.device.type != "cpu" or raw.shape[0] != 1:
        return None
    if nb is not None:
        if nb_has is None or not bool(nb_has.all()):
            return None
        which, values = 1, nb[0]
    else:
        if ctx_v is None or ctx_v.shape[1] == 0 or bool(first.any()):
            return None
        if avail is not None and not bool(avail.all()):
            return None
        which, values = 0, ctx_v[0]
    kernels = _compile()
    if not kernels:
        return None
    lin_idx = np.zeros(0, np.int64) if lin is None or head < 3 else lin[0][0].cpu().numpy().astype(np.int64)
    lin_ok = np.zeros(0, np.bool_) if lin is None or head < 3 else lin[1][0].cpu().numpy().astype(np.bool_)
    mu, s = kernels[which](
        np.ascontiguousarray(_integers(raw[0].detach()).numpy()),
        np.ascontiguousarray(values.to(torch.int64).numpy()),
        lin_idx, lin_ok, np.ascontiguousarray(thr.cpu().numpy().astype(np.int64)),
        int(R.reshape(-1)[0]), fw, act_frac, float(amax), n_scales, lin_clamp,
    )
    return torch.from_numpy(mu)[None], torch.from_numpy(s)[None]
