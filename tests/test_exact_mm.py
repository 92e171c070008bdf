"""``exact_mm``: the trunk's integer products are exact whichever way this CPU takes them."""

import numpy as np
import pytest
import torch

from lvpnet.model import exact_mm
from lvpnet.model.intnet import AMAX


def _extreme(n, k, o, seed=0):
    """Activations at AMAX against weights at +-127 where sums grow most, random elsewhere."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(0, AMAX + 1, (n, k), dtype=torch.int8, generator=g)
    w = torch.randint(-127, 128, (k, o), dtype=torch.int8, generator=g)
    a[: n // 2] = AMAX
    w[:, : o // 3] = 127
    w[:, o // 3 : 2 * o // 3] = -127
    return a, w


@pytest.mark.parametrize("kind", ["int8", "float32"])
@pytest.mark.parametrize("n, k, o", [(1, 64, 48), (37, 576, 48), (300, 48, 17), (513, 1024, 8)])
def test_products_are_the_int64_sums(kind, n, k, o):
    if kind == "int8" and not exact_mm._int8_exact():
        pytest.skip("torch._int_mm is not exact on this CPU")
    a, w = _extreme(n, k, o)
    want = a.to(torch.int64) @ w.to(torch.int64)
    assert k * 127 * AMAX < exact_mm.FLOAT_EXACT  # every case here within float32's bound
    exact_mm.set_kind(kind)
    try:
        m = exact_mm.weights(w)
        assert m.dtype == (torch.int8 if kind == "int8" else torch.float32)
        got = exact_mm.mm(a if kind == "int8" else a.to(torch.float32), m)
        assert got.dtype == torch.int32 and torch.equal(got.to(torch.int64), want)
        # the head's form, weights first against a transposed view; and int8 activations as they come
        got_t = exact_mm.mm(exact_mm.weights(w.T.contiguous()), a.T)
        assert torch.equal(got_t.to(torch.int64), want.T)
        assert exact_mm.np_dtype() == (np.int8 if kind == "int8" else np.float32)
    finally:
        exact_mm.set_kind(None)


def test_float32_products_exact_at_reduced_matmul_precision():
    """A user's ``torch.set_float32_matmul_precision("medium")`` may let oneDNN multiply in bfloat16:
    the float path then multiplies in float64, still the exact sums."""
    a, w = _extreme(64, 576, 48, seed=1)
    want = a.to(torch.int64) @ w.to(torch.int64)
    before = torch.get_float32_matmul_precision()
    exact_mm.set_kind("float32")
    torch.set_float32_matmul_precision("medium")
    try:
        assert torch.equal(exact_mm.mm(a, exact_mm.weights(w)).to(torch.int64), want)
    finally:
        torch.set_float32_matmul_precision(before)
        exact_mm.set_kind(None)


def test_fits_float32_is_the_sum_bound():
    """The bound is AMAX times a row's sum of |w|: one past 2**24 no longer fits."""
    limit = (exact_mm.FLOAT_EXACT - 1) // AMAX  # the largest row sum of |w| that fits
    w = torch.zeros((2, limit // 127 + 2), dtype=torch.int64)
    w[0, : limit // 127] = -127
    w[0, limit // 127] = limit % 127
    assert exact_mm.fits_float32(w.view(2, -1, 1, 1))
    w[0, -1] = 1  # row 0 one past the bound (row 1, all zero, fits)
    assert not exact_mm.fits_float32(w.view(2, -1, 1, 1))


def test_kind_forced_by_environment(monkeypatch):
    exact_mm.set_kind(None)
    try:
        monkeypatch.setenv("LVPNET_PRODUCTS", "float32")
        assert exact_mm.kind() == "float32"
        exact_mm.set_kind(None)
        monkeypatch.setenv("LVPNET_PRODUCTS", "")
        assert exact_mm.kind() in ("int8", "float32")
        if not exact_mm._int8_exact():
            assert exact_mm.kind() == "float32"  # never an inexact int8 product
        with pytest.raises(ValueError):
            exact_mm.set_kind("int4")
    finally:
        exact_mm.set_kind(None)
