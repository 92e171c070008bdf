"""``exact_mm``: the trunk's integer products are exact whichever way this CPU takes them."""

import platform

import numpy as np
import pytest
import torch

from lvpnet.model import exact_mm
from lvpnet.model.intnet import AMAX


@pytest.fixture(params=exact_mm.KINDS)
def kind(request):
    if not exact_mm.available(request.param):
        pytest.skip(f"no {request.param} products on this CPU")
    exact_mm.set_kind(request.param)
    yield request.param
    exact_mm.set_kind(None)


def _extreme(n, k, o, seed=0):
    """Activations at AMAX against weights at +-127 where sums grow most (every pair of inputs
    past 2**15, where a saturating 16-bit step would go wrong), random elsewhere."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(0, AMAX + 1, (n, k), dtype=torch.int8, generator=g)
    w = torch.randint(-127, 128, (k, o), dtype=torch.int8, generator=g)
    a[: n // 2] = AMAX
    w[:, : o // 3] = 127
    w[:, o // 3 : 2 * o // 3] = -127
    return a, w


@pytest.mark.parametrize("first", [False, True])
@pytest.mark.parametrize("n, k, o", [(1, 64, 48), (37, 576, 48), (300, 48, 17), (7, 6, 5), (513, 1024, 8)])
def test_products_are_the_int64_sums(kind, first, n, k, o):
    """Every shape the trunk takes (one pixel, row counts that are not a multiple of the kernel's
    four, outputs not a multiple of 16, inputs not a multiple of 4), both output layouts."""
    a, w = _extreme(n, k, o)
    want = a.to(torch.int64) @ w.to(torch.int64)
    m = exact_mm.Weights(w, first)
    x = a.to(torch.float32) if exact_mm.np_dtype() == np.float32 else a
    got = exact_mm.product(x, m)
    assert got.dtype == torch.int32 and got.is_contiguous()
    assert torch.equal(got.to(torch.int64), want.T if first else want)


@pytest.mark.parametrize("n, o", [(1, 3), (33, 50), (300, 149), (64, 8)])
def test_head_sums_with_bias_into_a_kept_buffer(kind, n, o):
    """The head's form (channels first) with its bias, into the band's buffer where given (the compiled
    kernels write there; a buffer of the wrong shape is not written past, a new one comes back): pixel
    counts that are not a multiple of the kernels' 16 or 32, outputs not a multiple of 8."""
    a, w = _extreme(n, 48, o, seed=o)
    bias = torch.randint(-(2**20), 2**20, (o,), dtype=torch.int32, generator=torch.Generator().manual_seed(n))
    want = (a.to(torch.int64) @ w.to(torch.int64) + bias.to(torch.int64)).T
    m = exact_mm.Weights(w, True)
    x = a.to(torch.float32) if exact_mm.np_dtype() == np.float32 else a
    buf = torch.full((o * n + 5,), -7, dtype=torch.int32)
    got = exact_mm.product(x, m, bias, buf[: o * n].view(o, n))
    assert torch.equal(got.to(torch.int64), want)
    if kind in exact_mm.KERNELS:
        assert got.data_ptr() == buf.data_ptr() and torch.equal(buf[o * n :], torch.full((5,), -7, dtype=torch.int32))
    small = torch.full((o, n - 1 if n > 1 else 2), -7, dtype=torch.int32)
    assert torch.equal(exact_mm.product(x, m, bias, small).to(torch.int64), want)
    assert (small == -7).all()


def test_float32_products_exact_at_reduced_matmul_precision():
    """A user's ``torch.set_float32_matmul_precision("medium")`` may let oneDNN multiply in bfloat16:
    the float path then multiplies in float64, still the exact sums."""
    a, w = _extreme(64, 576, 48, seed=1)
    want = a.to(torch.int64) @ w.to(torch.int64)
    before = torch.get_float32_matmul_precision()
    exact_mm.set_kind("float32")
    torch.set_float32_matmul_precision("medium")
    try:
        assert torch.equal(exact_mm.product(a, exact_mm.Weights(w)).to(torch.int64), want)
    finally:
        torch.set_float32_matmul_precision(before)
        exact_mm.set_kind(None)


def test_float_products_past_float32s_bound_take_float64():
    """A layer whose sums could pass 2**24 (AMAX times a row's sum of |w|) is multiplied in float64:
    here an odd sum past 2**24, which float32 cannot hold."""
    k = 1061
    w = torch.full((k, 1), 127, dtype=torch.int8)
    a = torch.full((1, k), AMAX, dtype=torch.int8)
    want = k * 127 * AMAX
    assert want > exact_mm.FLOAT_EXACT and int(np.float32(want)) != want
    exact_mm.set_kind("float32")
    try:
        m = exact_mm.Weights(w)
        assert m.m.dtype == torch.float64
        assert int(exact_mm.product(a, m)) == want
        assert exact_mm.Weights(w[:1000]).m.dtype == torch.float32  # 1000 * 127 * 127 < 2**24
    finally:
        exact_mm.set_kind(None)


def test_kernels_built_on_x86():
    """``make install`` builds the kernels (``setup.py``); an x86 CPU runs each its instructions allow:
    AVX2, AVX-512 VNNI (the same sums in fewer instructions), and AMX's tiles for 3x3 layers."""
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("the compiled kernels are for x86")
    from lvpnet.model import _x86mm

    with open("/proc/cpuinfo") as f:
        flags = set(f.read().split())
    want = [k for k, need in (("avx2", {"avx2"}), ("vnni", {"avx2", "avx512f", "avx512_vnni"})) if need <= flags]
    got = _x86mm.kinds()
    assert [k for k in got if k != "amx"] == want
    # AMX also needs the kernel's leave (Linux 5.16 on), so it may be missing where the CPU has it
    assert "amx" not in got or ("vnni" in want and {"amx_tile", "amx_int8"} <= flags)
    for isa, k in enumerate(("avx2", "vnni", "amx")):
        if k in got:
            with pytest.raises(ValueError, match="multiple"):  # K not a multiple of 4: refused, nothing read
                _x86mm.gemm(isa, 1, 1, 6, 1, 16, 1)
        else:
            with pytest.raises(RuntimeError, match="does not run"):
                _x86mm.gemm(isa, 1, 1, 8, 1, 16, 1)


def test_the_choice_times_each_kind_on_the_same_layer():
    """``kind()`` times each kind on a band of a hidden 3x3 layer as the trunk runs it (``_band``): every
    kind computes the same activations there, those of the float convolution."""
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, AMAX + 1, (4, 9, 48), dtype=torch.int8, generator=g)
    weight = torch.randint(-127, 128, (48, 48, 3, 3), dtype=torch.int8, generator=g)
    bias = torch.randint(-(2**16), 2**16, (48,), dtype=torch.int32, generator=g)
    m = torch.zeros((448, 48), dtype=torch.int8)
    m[:432] = weight.permute(2, 3, 1, 0).reshape(432, 48)
    conv = torch.nn.functional.conv2d(x.permute(2, 0, 1)[None].double(), weight.double(), bias.double(), padding=1)
    want = torch.clamp(torch.div(conv[0].permute(1, 2, 0).reshape(-1, 48), 2**7, rounding_mode="floor"), 0, AMAX)
    kinds = [k for k in exact_mm.KINDS if exact_mm.available(k)]
    assert "float32" in kinds
    for k in kinds:
        assert torch.equal(exact_mm._band(k, x.numpy(), m, bias)().to(torch.float64), want), k


def test_kind_chosen_or_forced(monkeypatch):
    exact_mm.set_kind(None)
    try:
        monkeypatch.setenv("LVPNET_PRODUCTS", "float32")
        assert exact_mm.kind() == "float32"
        exact_mm.set_kind(None)
        monkeypatch.setenv("LVPNET_PRODUCTS", "")
        chosen = exact_mm.kind()
        assert exact_mm.available(chosen)  # never an inexact int8 product
        with pytest.raises(ValueError):
            exact_mm.set_kind("int4")
    finally:
        exact_mm.set_kind(None)


@pytest.fixture(params=sorted(exact_mm.KERNELS))
def kernel(request):
    """Each compiled kernel this CPU runs."""
    if not exact_mm.available(request.param):
        pytest.skip(f"no {request.param} kernel on this CPU")
    return request.param


@pytest.mark.parametrize("n, k, shift", [(1, 64, 0), (37, 448, 7), (258, 48, 12)])
def test_activation_fused_with_the_product(kernel, n, k, shift):
    """``activated``: clamp(floor((sums + bias) / 2**shift), 0, AMAX) as int8, the hidden layers'
    activation, in the kernel's pass: negative sums (floor, then 0), sums past AMAX, any row count."""
    a, w = _extreme(n, k, 48, seed=n)
    bias = torch.randint(-(2**20), 2**20, (48,), dtype=torch.int32, generator=torch.Generator().manual_seed(k))
    sums = a.to(torch.int64) @ w.to(torch.int64) + bias.to(torch.int64)
    want = torch.clamp(torch.div(sums, 2**shift, rounding_mode="floor"), 0, AMAX).to(torch.int8)
    assert (want == 0).any() and (want == AMAX).any()  # both ends of the clamp are met
    m = exact_mm.Weights(w, as_kind=kernel)
    assert exact_mm.fuses(m)
    out = np.full((n, 48), -1, np.int8)
    exact_mm.activated(a, m, bias, shift, AMAX, out)
    assert np.array_equal(out, want.numpy())
    with pytest.raises(ValueError):
        exact_mm.activated(a, m, bias, shift, AMAX, np.empty((n, 47), np.int8))  # the wrong size: refused


@pytest.mark.parametrize("h, w, C, y0, y1", [(1, 1, 4, 0, 1), (5, 7, 48, 0, 5), (9, 13, 8, 3, 7), (6, 3, 48, 5, 6),
                                             (3, 17, 12, 0, 3), (2, 33, 64, 1, 2), (1, 16, 20, 0, 1), (4, 40, 16, 1, 3)])
def test_3x3_layer_read_straight_from_its_input(kernel, h, w, C, y0, y1):
    """``conv3x3``: a band of rows of a 3x3 layer with zero padding, read from the (h, w, C) input
    without unfolding: the exact sums (with the bias) and the activation, at every edge of the plane
    (a 1 x 1 plane, a band at the top, one inside, one at the bottom), and rows that are not whole tiles
    of 16 pixels, tap rows of 3 C bytes that do not fill chunks of 64 (AMX) or fill them exactly."""
    g = torch.Generator().manual_seed(h * 100 + C)
    x = torch.randint(0, AMAX + 1, (h, w, C), dtype=torch.int8, generator=g)
    x[: h // 2 + 1] = AMAX
    weight = torch.randint(-127, 128, (48, C, 3, 3), dtype=torch.int8, generator=g)
    weight[:16] = 127
    bias = torch.randint(-(2**16), 2**16, (48,), dtype=torch.int32, generator=g)
    conv = torch.nn.functional.conv2d(x.permute(2, 0, 1)[None].double(), weight.double(), bias.double(), padding=1)
    want = conv[0, :, y0:y1].permute(1, 2, 0).reshape(-1, 48).to(torch.int64)
    K = -(-9 * C // 64) * 64  # as ``int8_trunk._Layer`` pads the inputs
    m = torch.zeros((K, 48), dtype=torch.int8)
    m[: 9 * C] = weight.permute(2, 3, 1, 0).reshape(9 * C, 48)  # (tap row, tap column, channel) x outputs
    w8 = exact_mm.Weights(m, as_kind=kernel)
    assert exact_mm.reads_3x3(w8, C)
    xs = np.ascontiguousarray(x.numpy())
    assert torch.equal(exact_mm.conv3x3(xs, y0, y1, w8, bias).to(torch.int64), want)
    out = np.empty(((y1 - y0) * w, 48), np.int8)
    exact_mm.conv3x3(xs, y0, y1, w8, bias, 9, AMAX, out)
    assert np.array_equal(out, torch.clamp(torch.div(want, 2**9, rounding_mode="floor"), 0, AMAX).numpy())
    with pytest.raises(ValueError):
        exact_mm.conv3x3(xs[..., :3].copy(), y0, y1, w8, bias)  # channels not a multiple of 4: refused


def test_amx_weights_built_once_by_threads_at_once():
    """A layer's AMX tiles are built on first use, maybe by several band threads at once: they all get
    the same array, the one kept (a second build replacing the first freed it under the kernel that
    was reading it: wrong sums, seen in 7 of 10 runs with two band threads)."""
    import threading

    if not exact_mm.available("amx"):
        pytest.skip("no AMX on this CPU")
    m = torch.randint(-127, 128, (448, 48), dtype=torch.int8, generator=torch.Generator().manual_seed(5))
    for _ in range(20):
        w = exact_mm.Weights(m, as_kind="amx")
        start, got = threading.Barrier(4), []

        def build(w=w, start=start, got=got):
            start.wait()
            got.append(w.amx_taps(48))

        threads = [threading.Thread(target=build) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(got) == 4 and all(t is got[0] for t in got)


def test_inputs_of_another_shape_or_none_at_all(kind):
    """Every kind refuses an input whose width is not the weights' K, and a bias of another length (the
    compiled kernels would read past them), and takes an empty input to an empty result."""
    a, w = _extreme(5, 64, 48)
    for first in (False, True):
        m = exact_mm.Weights(w, first)
        x = a.to(torch.float32) if exact_mm.np_dtype() == np.float32 else a
        with pytest.raises(ValueError, match="shape"):
            exact_mm.product(x[:, :60], m)
        with pytest.raises(ValueError, match="shape"):
            exact_mm.product(x[0], m)
        got = exact_mm.product(x[:0], m)
        assert got.dtype == torch.int32 and tuple(got.shape) == ((48, 0) if first else (0, 48))
        with pytest.raises(ValueError, match="bias"):
            exact_mm.product(x, m, torch.zeros(47, dtype=torch.int32))
    if exact_mm.fuses(m := exact_mm.Weights(w)):
        out = np.empty((0, 48), np.int8)
        exact_mm.activated(a[:0], m, torch.zeros(48, dtype=torch.int32), 3, AMAX, out)
        with pytest.raises(ValueError, match="bias"):
            exact_mm.activated(a, m, torch.zeros(16, dtype=torch.int32), 3, AMAX, np.empty((5, 48), np.int8))
