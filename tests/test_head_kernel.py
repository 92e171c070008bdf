"""The fused head kernel (numba) gives the very integers of the torch head, on hostile inputs too."""

import numpy as np
import pytest
import torch

from lvpnet.model import head_kernel
from lvpnet.model.predictor import LIN_CLAMP, head_params, lin_index
from lvpnet.model.tables import build_scale_thresholds

pytest.importorskip("numba")


def _both(monkeypatch, raw, ctx_v, k, R, B, head, thr, lin):
    kw = dict(n_scales=80, per_octave=4, head=head, thr=thr, lin=lin)
    args = (raw, ctx_v, torch.ones((1, ctx_v.shape[1]), dtype=torch.bool), torch.tensor([False]),
            torch.tensor([R]), torch.tensor([B]))
    fused = head_params(*args, **kw)
    monkeypatch.setattr(head_kernel, "_KERNEL", False)  # the torch path
    ref = head_params(*args, **kw)
    monkeypatch.setattr(head_kernel, "_KERNEL", None)
    return fused, ref


@pytest.mark.parametrize("head", [2, 3])
# R 2**17 - 1: sums that could pass 2**31, so the kernel sums in int64 instead of int32 (``sums_type``)
@pytest.mark.parametrize("k,R", [(1, 1), (3, 255), (7, 4095), (15, 65535), (15, 3), (15, 2**17 - 1)])
@pytest.mark.parametrize("h,w", [(9, 13), (1, 1), (2, 3)])  # every edge-replicated border, one-pixel rows
def test_fused_equals_torch(monkeypatch, head, k, R, h, w):
    g = torch.Generator().manual_seed(k * 7 + head + R)
    B = max(1, int(R).bit_length())
    P = 2 + 9 * 15 + 12
    # raw outputs far outside the clamps as well as near them
    raw = torch.randint(-(2**22), 2**22, (1, P, h, w), generator=g).float()
    raw[:, 2:] = torch.where(torch.rand((1, P - 2, h, w), generator=g) < 0.5,
                             torch.randint(-(2**12), 2**18, (1, P - 2, h, w), generator=g).float(), raw[:, 2:])
    raw[:, -12:] = torch.randint(-2 * LIN_CLAMP, 2 * LIN_CLAMP, (1, 12, h, w), generator=g).float()
    ctx_v = torch.randint(0, R + 1, (1, k, h, w), generator=g)
    thr = torch.from_numpy(build_scale_thresholds(80, 4, 0.08))
    idx, ok = lin_index(4, True)
    lin = (idx[k : k + 1], ok[k : k + 1]) if head >= 3 else None
    (mu_f, s_f), (mu_t, s_t) = _both(monkeypatch, raw, ctx_v, k, R, B, head, thr, lin)
    assert torch.equal(mu_f, mu_t) and torch.equal(s_f, s_t)
    assert int(mu_f.min()) >= 0 and int(mu_f.max()) <= R
    assert head_kernel.sums_type(R, k, 127) == (np.int64 if R > 2**16 else np.int32)


def test_not_fused_where_it_does_not_apply(monkeypatch):
    raw = torch.zeros((1, 149, 4, 4))
    ctx_v = torch.zeros((1, 2, 4, 4), dtype=torch.int64)
    common = dict(head=3, thr=torch.arange(80), lin=None, nb=None, nb_has=None, n_scales=80, fw=10, act_frac=8,
                  amax=127, lin_clamp=LIN_CLAMP)
    one, R, B = torch.tensor([False]), torch.tensor([5]), torch.tensor([3])
    avail = torch.ones((1, 2), dtype=torch.bool)
    assert head_kernel.fused_params(raw, ctx_v, avail, one, R, B, soft=True, **common) is None  # training
    assert head_kernel.fused_params(raw, ctx_v, avail, torch.tensor([True]), R, B, soft=False, **common) is None
    assert head_kernel.fused_params(raw, ctx_v, avail & False, one, R, B, soft=False, **common) is None
    monkeypatch.setattr(head_kernel, "_KERNEL", False)  # numba missing: the caller keeps torch
    assert head_kernel.fused_params(raw, ctx_v, avail, one, R, B, soft=False, **common) is None


@pytest.mark.parametrize("head,R", [(2, 255), (3, 4095), (3, 65535)])
def test_fused_rows_equal_torch(monkeypatch, head, R):
    """Step 0 by rows (neighbours given: the row above), every row but the first."""
    from lvpnet.model.predictor import row_neighbours

    g = torch.Generator().manual_seed(R + head)
    w, n = 11, 4
    P = 2 + 9 * 15 + 12
    raw = torch.randint(-(2**20), 2**20, (1, P, n, w), generator=g).float()
    raw[:, 2:5] = torch.randint(-(2**12), 2**18, (1, 3, n, w), generator=g).float()
    raw[:, -12:] = torch.randint(-2 * LIN_CLAMP, 2 * LIN_CLAMP, (1, 12, n, w), generator=g).float()
    up = torch.randint(0, R + 1, (1, n, w), generator=g)
    nb, has = row_neighbours(up, 1)
    idx, ok = lin_index(4, True)
    kw = dict(n_scales=80, per_octave=4, head=head, thr=torch.from_numpy(build_scale_thresholds(80, 4, 0.08)),
              lin=(idx[:1], ok[:1]) if head >= 3 else None, nb=nb, nb_has=has)
    args = (raw, None, None, torch.tensor([True]), torch.tensor([R]), torch.tensor([max(1, R.bit_length())]))
    fused = head_params(*args, **kw)
    assert head_kernel._KERNEL  # the kernel ran
    monkeypatch.setattr(head_kernel, "_KERNEL", False)
    ref = head_params(*args, **kw)
    assert torch.equal(fused[0], ref[0]) and torch.equal(fused[1], ref[1])
