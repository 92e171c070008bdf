"""The integer head of steps >= 1 as one fused CPU kernel (numba), the same integers as ``head_params``.

Why: ``predictor.head_params`` turns the raw head outputs of a step into ``(mu, s)`` with a
weighted average, an activity and up to 12 signed linear terms over the 3x3 neighbourhoods of
every decoded sub-image (up to 135 neighbours per pixel). In torch that is a dozen passes over
(135, h, w) float64 tensors: 54 ms for the last step of a 512 x 512 slice, a third of the
decoder's time, all of it memory traffic. One loop per pixel reads each neighbour once and keeps
the sums in registers, in int64 (exact by construction, no float bound to argue).

Only the case the codec runs on the CPU is fused: head version >= 2, every listed context
sub-image available, neighbours taken from the context sub-images (not step 0's rows), no
training relaxation. ``fused_params`` returns None for anything else, and when numba is not
installed, and the caller keeps the torch path. Tests compare both on random and real inputs.
"""

from __future__ import annotations

import numpy as np
import torch

_KERNEL = None  # compiled on first use; False when numba is not available


def _compile():
    global _KERNEL
    if _KERNEL is None:
        try:
            import numba
        except ImportError:  # the torch path is exact too, only slower
            _KERNEL = False
            return _KERNEL
        _KERNEL = numba.njit(cache=True, nogil=True)(_head)
    return _KERNEL


def _head(raw, ctx, lin_idx, lin_ok, thr, R, B, fw, act_frac, amax, n_scales, lin_clamp):
    """raw (P, h, w) float32 integer-valued; ctx (n, h, w) int64 -> mu, s (h, w) int64.

    Mirrors ``head_params`` line by line (``neighbours``' channel order ``c * 9 + 3 * ki + kj``,
    edge-replicated; torch's floor division and arithmetic shifts)."""
    n, h, w = ctx.shape
    nw = 9 * n
    L = lin_idx.shape[0]
    P = raw.shape[0]
    mu = np.empty((h, w), np.int64)
    s = np.empty((h, w), np.int64)
    wscale = 2.0 ** -fw
    sscale = 2.0 ** -(fw + 2)
    nbv = np.empty(nw, np.int64)
    wt = np.empty(nw, np.int64)
    for y in range(h):
        for x in range(w):
            A = 0
            num = 0
            for c in range(n):
                for ki in range(3):
                    yy = min(max(y + ki - 1, 0), h - 1)
                    for kj in range(3):
                        xx = min(max(x + kj - 1, 0), w - 1)
                        j = c * 9 + 3 * ki + kj
                        a = np.floor(np.float64(raw[2 + j, y, x]) * wscale)
                        a = min(max(a, 0.0), amax)
                        wj = np.int64(a) + 1
                        v = ctx[c, yy, xx]
                        nbv[j] = v
                        wt[j] = wj
                        A += wj
                        num += wj * v
            Ac = max(A, 1)
            wavg = (num + (A >> 1)) // Ac
            act = 0
            for j in range(nw):
                act += wt[j] * abs(nbv[j] - wavg)
            act = (act << act_frac) // Ac
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
            acc = 0
            for t in range(L):
                if lin_ok[t]:
                    c_t = np.int64(min(max(np.round(np.float64(raw[P - L + t, y, x])), -lin_clamp), lin_clamp))
                    acc += c_t * (nbv[lin_idx[t]] - wavg)
            if L:
                delta += (acc + (np.int64(1) << (fw + 3))) >> (fw + 4)
            mu[y, x] = min(max(wavg + delta, 0), R)
    return mu, s


def fused_params(raw, ctx_v, avail, first, R, B, *, head, thr, lin, soft, nb, nb_has, n_scales, fw, act_frac, amax,
                 lin_clamp):
    """``head_params``' (mu, s) from the fused kernel, or None where it does not apply."""
    if soft or head < 2 or nb is not None or nb_has is not None or ctx_v is None or thr is None:
        return None
    if raw.device.type != "cpu" or raw.shape[0] != 1 or ctx_v.shape[1] == 0 or bool(first.any()):
        return None
    if avail is not None and not bool(avail.all()):
        return None
    kernel = _compile()
    if not kernel:
        return None
    lin_idx = np.zeros(0, np.int64) if lin is None else lin[0][0].cpu().numpy().astype(np.int64)
    lin_ok = np.zeros(0, np.bool_) if lin is None else lin[1][0].cpu().numpy().astype(np.bool_)
    if head < 3:
        lin_idx, lin_ok = lin_idx[:0], lin_ok[:0]
    mu, s = kernel(
        np.ascontiguousarray(raw[0].detach().to(torch.float32).numpy()),
        np.ascontiguousarray(ctx_v[0].to(torch.int64).numpy()),
        lin_idx, lin_ok, np.ascontiguousarray(thr.cpu().numpy().astype(np.int64)),
        int(R.reshape(-1)[0]), int(B.reshape(-1)[0]), fw, act_frac, float(amax), n_scales, lin_clamp,
    )
    return torch.from_numpy(mu)[None], torch.from_numpy(s)[None]
