"""The integer head of steps >= 1 as one fused CPU kernel (numba), the same integers as ``head_params``.

Why: ``predictor.head_params`` turns the raw head outputs of a step into ``(mu, s)`` with a
weighted average, an activity and up to 12 signed linear terms over the 3x3 neighbourhoods of
every decoded sub-image (up to 135 neighbours per pixel). In torch that is a dozen passes over
(135, h, w) float64 tensors: 54 ms for the last step of a 512 x 512 slice, a third of the
decoder's time, all of it memory traffic. One loop per pixel reads each neighbour once and keeps
the sums in registers, in integers (exact by construction, no float bound to argue): int32 where no
sum can pass 2**31 (every plane of 16 bits or fewer: twice the vector lanes of int64), else int64.

The codec's own path (``IntegerDecoder.predict`` on the CPU, int8 trunk) hands the head's sums over
band by band (``banded_params``): a whole step's are 10 MB for a 128 x 128 step, more than a core's
cache, and reading them back from memory was most of the kernel's time.

Only the cases the codec runs on the CPU are fused: head version >= 2, no training relaxation;
steps >= 1 with every listed context sub-image available, and step 0's rows below the first
(128 small calls a 512 x 512 slice, where torch's per-call cost dominated). ``fused_params``
returns None for anything else, and when numba is not installed, and the caller keeps the torch
path. Tests compare both on random and real inputs, and the banded path with the whole plane's.
"""

from __future__ import annotations

import numpy as np
import torch

from . import band_threads

_KERNEL = None  # compiled on first use; False when numba is not available


def _compile():
    """(steps >= 1 kernel, step-0 rows kernel), or False without numba."""
    global _KERNEL
    if _KERNEL is not None:
        return _KERNEL
    from .jit import BUILD_LOCK

    with BUILD_LOCK:  # the helpers below are replaced once, by one thread
        if _KERNEL is None:
            try:
                import numba  # noqa: F401 - only whether it is there
            except ImportError:  # the torch path is exact too, only slower
                _KERNEL = False
                return _KERNEL
            # the kernels call these helpers by their global names, so the compiled versions replace them
            # first; inlined, since they run per neighbour and pixel
            global _finish, _weight
            from .jit import njit

            inline = njit(inline="always")
            _finish, _weight = inline(_finish), inline(_weight)
            jit = njit()
            _KERNEL = (jit(_head), jit(_head_nb))
    return _KERNEL


def _finish(r0, r1, A, wavg, act_sum, lin_acc, has_lin, thr, R, fw, act_frac, n_scales):
    """One pixel's (mu, s) from its raw location ``r0`` and scale ``r1`` (integers), weight total
    ``A``, weighted average, weighted absolute deviation sum and linear-term sum (``has_lin``: head 3)."""
    act = (np.int64(act_sum) << act_frac) // max(np.int64(A), 1)
    # searchsorted(thr, act, right=True) - 1: thresholds at or below act, minus one
    lo, hi = 0, thr.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if thr[mid] <= act:
            lo = mid + 1
        else:
            hi = mid
    # floor(r1 / 2**(fw + 2)) and round(r0): integers, so a shift and the value itself
    s_corr = min(max(np.int64(r1) >> (fw + 2), -64), 63)
    s = min(max(lo - 1 + s_corr, 0), n_scales - 1)
    delta = (np.int64(r0) * act + (np.int64(1) << (fw + 3 + act_frac))) >> (fw + 4 + act_frac)
    if has_lin:
        delta += (lin_acc + (np.int64(1) << (fw + 3))) >> (fw + 4)
    return min(max(wavg + delta, 0), R), s


def _weight(a, fw, amax):
    """A neighbour's weight ``clamp(floor(a / 2**fw), 0, AMAX) + 1`` from its raw head integer."""
    return min(max(a >> fw, 0), amax) + 1


def _head(raw, ctx, y0, mu, s, lin_idx, lin_ok, thr, R, fw, act_frac, amax, n_scales, lin_clamp):
    """Steps >= 1, rows ``y0`` to ``y0 + raw.shape[1]``: raw (P, rows, w) int32, those rows' raw head
    integers; ctx (n, h, w) the decoded sub-images, int32 (or int64 where a sum could pass 2**31,
    ``sums_type``) -> writes those rows of mu, s (h, w) int64. Mirrors ``head_params``
    (``neighbours``' channel order ``c * 9 + 3 * ki + kj``, edge-replicated; torch's floor division
    and arithmetic shifts). Row by row, each neighbour channel's pass running along the row, so the
    sums vectorise; the sums take ctx's integer type (twice the lanes of int64 in int32)."""
    n, h, w = ctx.shape
    P, rows = raw.shape[0], raw.shape[1]
    L = lin_idx.shape[0]
    A = np.empty(w, ctx.dtype)
    num = np.empty(w, ctx.dtype)
    wavg = np.empty(w, ctx.dtype)
    act = np.empty(w, ctx.dtype)
    lin = np.empty(w, np.int64)
    xs = np.empty((3, w), np.int64)  # the edge-replicated column of each kj
    for kj in range(3):
        for x in range(w):
            xs[kj, x] = min(max(x + kj - 1, 0), w - 1)
    wts = np.empty((9 * n, w), ctx.dtype)  # this row's neighbour weights, for both passes
    for yy in range(rows):
        y = y0 + yy
        A[:] = 0
        num[:] = 0
        for c in range(n):
            for ki in range(3):
                row = ctx[c, min(max(y + ki - 1, 0), h - 1)]
                for kj in range(3):
                    j = c * 9 + 3 * ki + kj
                    a = raw[2 + j, yy]
                    wj = wts[j]
                    for x in range(w):
                        wj[x] = _weight(a[x], fw, amax)
                        A[x] += wj[x]
                    # interior columns read row[x + kj - 1] directly (contiguous: vectorised), the
                    # two edge columns their replicated neighbour
                    for x in range(1, w - 1):
                        num[x] += wj[x] * row[x + kj - 1]
                    num[0] += wj[0] * row[xs[kj, 0]]
                    if w > 1:
                        num[w - 1] += wj[w - 1] * row[xs[kj, w - 1]]
        for x in range(w):
            wavg[x] = (np.int64(num[x]) + (A[x] >> 1)) // max(A[x], 1)
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
                a = raw[P - L + t, yy]
                for x in range(1, w - 1):
                    lin[x] += min(max(np.int64(a[x]), -lin_clamp), lin_clamp) * (row[x + kj - 1] - wavg[x])
                lin[0] += min(max(np.int64(a[0]), -lin_clamp), lin_clamp) * (row[xs[kj, 0]] - wavg[0])
                if w > 1:
                    lin[w - 1] += (min(max(np.int64(a[w - 1]), -lin_clamp), lin_clamp)
                                   * (row[xs[kj, w - 1]] - wavg[w - 1]))
        for x in range(w):
            mu[y, x], s[y, x] = _finish(raw[0, yy, x], raw[1, yy, x], A[x], np.int64(wavg[x]), act[x], lin[x],
                                        L > 0, thr, R, fw, act_frac, n_scales)


def _head_nb(raw, nb, lin_idx, lin_ok, thr, R, fw, act_frac, amax, n_scales, lin_clamp):
    """Step 0 by rows: the neighbours given, ``nb`` (n, h, w) int64 (``row_neighbours``), every
    pixel with a row above -> mu, s (h, w) int64."""
    nw, h, w = nb.shape
    P = raw.shape[0]
    L = lin_idx.shape[0]
    mu = np.empty((h, w), np.int64)
    s = np.empty((h, w), np.int64)
    for y in range(h):
        for x in range(w):
            A = 0
            num = 0
            for j in range(nw):
                wj = _weight(np.int64(raw[2 + j, y, x]), fw, amax)
                A += wj
                num += wj * nb[j, y, x]
            wavg = (num + (A >> 1)) // max(A, 1)
            act = 0
            for j in range(nw):
                act += _weight(np.int64(raw[2 + j, y, x]), fw, amax) * abs(nb[j, y, x] - wavg)
            lin = 0
            for t in range(L):
                if lin_ok[t]:
                    lin += min(max(np.int64(raw[P - L + t, y, x]), -lin_clamp), lin_clamp) * (nb[lin_idx[t], y, x] - wavg)
            mu[y, x], s[y, x] = _finish(raw[0, y, x], raw[1, y, x], A, wavg, act, lin, L > 0, thr, R, fw, act_frac,
                                        n_scales)
    return mu, s


def _integers(raw: torch.Tensor) -> np.ndarray:
    """The raw head integers as the kernels read them: int32 (the int8 trunk's) as they are, any
    other type (integer-valued floats, exact below 2**24) converted."""
    return np.ascontiguousarray((raw if raw.dtype == torch.int32 else raw.to(torch.int32)).numpy())


def sums_type(R: int, n: int, amax: int):
    """The sums' integer type: int32 where none can pass 2**31 (every value at most ``R``, ``9 n``
    neighbours of weight at most ``amax + 1``; any plane of 16 bits or fewer), else int64."""
    return np.int32 if 9 * n * (amax + 1) * (R + 1) < 2**31 else np.int64


def _applies(head, thr) -> bool:
    """The model cases the kernels compute: head version >= 2, with its scale thresholds."""
    return head >= 2 and thr is not None


def kernel_ready(head, thr) -> bool:
    """Whether ``banded_params`` runs for a model of head version ``head`` with thresholds ``thr``."""
    return _applies(head, thr) and bool(_compile())


def _lin_rows(lin, head):
    if lin is None or head < 3:
        return np.zeros(0, np.int64), np.zeros(0, np.bool_)
    return lin[0][0].cpu().numpy().astype(np.int64), lin[1][0].cpu().numpy().astype(np.bool_)


def banded_params(bands, ctx: np.ndarray, R: int, *, head, thr, lin, n_scales, fw, act_frac, amax, lin_clamp):
    """Steps >= 1: ``head_params``' (mu, s) (h, w) int64 from the raw head integers given band by band,
    ``bands`` yielding (first row, (P, rows, w) int32), with ``ctx`` (n, h, w) int32 or int64 the
    decoded sub-images (all available). Each band goes through the kernel while its sums are still in
    the core's cache (``int8_trunk.Int8Step.head_bands``): a whole step's raw sums (10 MB for
    128 x 128) are not. None where the kernel does not apply (then the caller takes the whole-plane
    path)."""
    if not kernel_ready(head, thr) or ctx.shape[0] == 0:
        return None
    kernels = _compile()
    n, h, w = ctx.shape
    if ctx.dtype != np.int64 and sums_type(R, n, int(amax)) == np.int64:
        ctx = ctx.astype(np.int64)  # int32 sums could overflow: the kernel sums in the values' type
    ctx = np.ascontiguousarray(ctx)
    lin_idx, lin_ok = _lin_rows(lin, head)
    thr = np.ascontiguousarray(thr.cpu().numpy().astype(np.int64))
    mu, s = np.empty((h, w), np.int64), np.empty((h, w), np.int64)

    def band(y0, raw):
        kernels[0](raw.numpy(), ctx, y0, mu, s, lin_idx, lin_ok, thr, R, fw, act_frac, int(amax), n_scales,
                   lin_clamp)

    if hasattr(bands, "raw"):  # ``int8_trunk.HeadBands``: its bands may go to several threads
        band_threads.run(lambda: lambda y0: band(y0, bands.raw(y0)), bands.starts, h * w)
    else:
        for y0, raw in bands:
            band(y0, raw)
    return torch.from_numpy(mu), torch.from_numpy(s)


def fused_params(raw, ctx_v, avail, first, R, B, *, head, thr, lin, soft, nb, nb_has, n_scales, fw, act_frac, amax,
                 lin_clamp):
    """``head_params``' (mu, s) from a fused kernel, or None where none applies: the codec's CPU
    cases, head version >= 2, one slice, no training relaxation; steps >= 1 with every listed
    context sub-image available, or step 0's rows that all have a row above."""
    if soft or not _applies(head, thr) or raw.device.type != "cpu" or raw.shape[0] != 1:
        return None
    if nb is not None:
        if nb_has is None or not bool(nb_has.all()):
            return None
    else:
        if ctx_v is None or ctx_v.shape[1] == 0 or bool(first.any()):
            return None
        if avail is not None and not bool(avail.all()):
            return None
    kernels = _compile()
    if not kernels:
        return None
    R = int(R.reshape(-1)[0])
    if nb is None:
        ctx = ctx_v[0].cpu().numpy()
        ctx = ctx.astype(sums_type(R, ctx.shape[0], int(amax)))
        return tuple(t[None] for t in banded_params(((0, torch.from_numpy(_integers(raw[0].detach()))),), ctx, R,
                                                    head=head, thr=thr, lin=lin, n_scales=n_scales, fw=fw,
                                                    act_frac=act_frac, amax=amax, lin_clamp=lin_clamp))
    lin_idx, lin_ok = _lin_rows(lin, head)
    mu, s = kernels[1](
        _integers(raw[0].detach()), np.ascontiguousarray(nb[0].to(torch.int64).numpy()),
        lin_idx, lin_ok, np.ascontiguousarray(thr.cpu().numpy().astype(np.int64)),
        R, fw, act_frac, int(amax), n_scales, lin_clamp,
    )
    return torch.from_numpy(mu)[None], torch.from_numpy(s)[None]
