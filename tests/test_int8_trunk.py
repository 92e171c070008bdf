"""The int8 trunk gives the float trunk's integers on the shipped weights, step by step."""

import numpy as np
import pytest
import torch

from lvpnet.model import IntegerDecoder, band_threads, exact_mm, int8_trunk, load_checkpoint, prep
from lvpnet.model.intnet import AMAX

pytest.importorskip("numba")


@pytest.fixture(params=exact_mm.KINDS, autouse=True)
def products(request):
    """Every test with each way of taking the trunk's exact products (``exact_mm``) this CPU has:
    ``torch._int_mm`` where exact, the compiled kernels (AVX-512 VNNI, AVX2) where built and the CPU
    runs them, and float32 GEMMs, which every CPU runs."""
    if not exact_mm.available(request.param):
        pytest.skip(f"no {request.param} products on this CPU")
    exact_mm.set_kind(request.param)
    yield request.param
    exact_mm.set_kind(None)


@pytest.mark.parametrize("rows, threads", [(None, 1), (1, 1), (5, 1), (1, 3), (5, 2), (None, 2)])
def test_shipped_weights_int8_equals_float(rows, threads, monkeypatch):
    """``rows``: the hidden layers' bands forced to that many rows (None: as the cache size sets
    them, one band on this small plane): one row, and bands that do not divide the plane's 24 rows,
    so a reused band buffer meets the plane's top and bottom edges in different bands. ``threads``:
    the bands shared by that many threads (``band_threads``, here on a plane below its usual size;
    the context conv by bands too), handed out as they free up."""
    if rows is not None:  # the head's bands too (``predict``'s fused path), and the context conv's
        monkeypatch.setattr(int8_trunk, "_band_rows", lambda K, w, h: min(h, rows))
        monkeypatch.setattr(int8_trunk, "_head_rows", lambda n_out, w, h: min(h, rows))
        monkeypatch.setattr(int8_trunk, "_BAND_BYTES", 4 * 32 * 16 * rows)  # 32 sums a pixel, 16 columns
    if threads > 1:
        monkeypatch.setattr(band_threads, "MIN_PIXELS", 0)
        monkeypatch.setattr(int8_trunk, "_CONV_BANDS_FROM", 0)
    with band_threads.allowed(threads):
        _int8_equals_float()


def _int8_equals_float():

    fast, ref = _decoders()
    assert fast.int8 and not ref.int8
    rng = np.random.default_rng(0)
    H, W = 70, 45  # padded to 96 x 64: every border of the 3x3 layers, odd grids
    yy, xx = np.mgrid[:H, :W]
    v = (2000 + 900 * np.sin(yy / 6) * np.cos(xx / 9) + rng.normal(0, 30, (H, W))).astype(np.int64)
    v -= v.min()
    R, B = int(v.max()), prep.bit_depth(int(v.max()))
    Hp, Wp = prep.padded_size(H, W, fast.cfg.stride)
    f = fast.f
    vp = prep.polyphase_pad(v, Hp, Wp, f)
    z = torch.from_numpy(rng.integers(-3, 4, fast_latent_shape(fast, Hp, Wp)))
    feats = fast.features(z)
    assert torch.equal(feats, ref.features(z))
    ctx = [torch.from_numpy(np.ascontiguousarray(vp[di::f, dj::f])) for di, dj in fast.order]
    for k in range(fast.steps):
        a, ctx_v, avail = fast._raw(feats, ctx, k, B)
        b = ref._raw(feats, ctx, k, B)[0]
        assert a.dtype == torch.int32 and torch.equal(a.to(b.dtype), b[:, fast._int8_steps[k].head_rows]), f"step {k}"
        if k:
            pa = fast._params(a, R, B, k, ctx_v=ctx_v, avail=avail)
            pb = ref._params(b, R, B, k, ctx_v=ctx_v, avail=avail)
            assert torch.equal(pa[0], pb[0]) and torch.equal(pa[1], pb[1]), f"step {k}"
            # the codec's path: the head's product by bands, each band through the fused kernel
            assert fast._banded(feats, ctx, k, R, B) is not None
            mu, s = fast.predict(feats, ctx, k, R, B)
            assert torch.equal(mu, pb[0][0]) and torch.equal(s, pb[1][0]), f"step {k}, by bands"


def _decoders():
    """The shipped weights' decoder on the int8 trunk and on the float trunk (its reference); the
    test is skipped without shipped weights or an int8 product on this CPU."""
    from lvpnet.codecs.weights import shipped_weights

    w = shipped_weights()
    if w is None or not int8_trunk.supported():
        pytest.skip("no shipped weights or no int8 product on this CPU")
    ck = load_checkpoint(w)
    return (IntegerDecoder(ck["decoder"], dtype=torch.float32),
            IntegerDecoder(ck["decoder"], dtype=torch.float32, int8=False))


def fast_latent_shape(dec, Hp, Wp):
    return (int(dec.latent_tables.shape[0]), Hp // dec.cfg.stride, Wp // dec.cfg.stride)


def test_int8_caches_follow_the_slice_and_the_thread():
    """The features' product, the unfold buffers, the context sums and the head kernel's values are
    kept between steps (``FeatsProduct``, ``_columns``, ``ContextSums``, ``_kernel_values``): slices of
    two sizes walked in two threads at once still get the float trunk's integers at every step."""
    import threading

    fast, ref = _decoders()
    rng = np.random.default_rng(1)
    cases = []
    for H, W in ((70, 45), (40, 100)):
        Hp, Wp = prep.padded_size(H, W, fast.cfg.stride)
        vp = rng.integers(0, 4000, (Hp, Wp))
        feats = fast.features(torch.from_numpy(rng.integers(-3, 4, fast_latent_shape(fast, Hp, Wp))))
        ctx = [torch.from_numpy(np.ascontiguousarray(vp[di::fast.f, dj::fast.f])) for di, dj in fast.order]
        want = [ref._raw(feats, ctx, k, 12) for k in range(fast.steps)]
        params = [None] + [ref._params(raw, 3999, 12, k, ctx_v=ctx_v, avail=avail)
                           for k, (raw, ctx_v, avail) in enumerate(want) if k]
        cases.append((feats, ctx, [w[0] for w in want], params))
    bad = []

    def walk(first):
        for r in range(4):
            feats, ctx, want, params = cases[(first + r) % 2]
            for k in range(fast.steps):
                if r % 2 and k:  # the codec's path: the carried context, the head by bands
                    mu, s = fast.predict(feats, ctx, k, 3999, 12)
                    if not (torch.equal(mu, params[k][0][0]) and torch.equal(s, params[k][1][0])):
                        bad.append((first, r, k))
                    continue
                got = fast._raw(feats, ctx, k, 12)[0].to(want[k].dtype)
                if not torch.equal(got, want[k][:, fast._int8_steps[k].head_rows]):
                    bad.append((first, r, k))
            fast.end_slice()

    threads = [threading.Thread(target=walk, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not bad


def test_int8_mask_sums_kept_for_a_bounded_number_of_widths():
    """A process that decodes slices of many widths keeps at most ``_MASK_WIDTHS`` widths' mask
    sums per step, and a width dropped from the cache gives the same integers when it comes back."""
    fast = _decoders()[0]
    rng = np.random.default_rng(2)
    Hp, Wp = prep.padded_size(40, 40, fast.cfg.stride)
    vp = rng.integers(0, 4000, (Hp, Wp))
    feats = fast.features(torch.from_numpy(rng.integers(-3, 4, fast_latent_shape(fast, Hp, Wp))))
    ctx = [torch.from_numpy(np.ascontiguousarray(vp[di::fast.f, dj::fast.f])) for di, dj in fast.order]
    fast._raw(feats, ctx, 1, 12)  # builds step 1's int8 step
    step = fast._int8_steps[1]
    assert step is not None and hasattr(step, "_masks")
    n = int8_trunk._MASK_WIDTHS
    first = None
    for w_ in range(3, 3 + 2 * n + 1):
        acc = torch.zeros(2 * w_, step.mask_taps.shape[0], dtype=torch.int32)
        step._add_mask_sums(acc, 2, w_)
        if first is None:
            first = acc.clone()
        assert len(step._masks) <= n
    assert 3 not in step._masks  # evicted on the way
    again = torch.zeros_like(first)
    step._add_mask_sums(again, 2, 3)
    assert torch.equal(again, first)


def test_first_layer_unsplit_equals_float(monkeypatch):
    """The first layer taken as one product of its three inputs (features, context conv, masks:
    weights whose features part does not split off) gives the float trunk's integers: the
    columns of several parts, each in its own tap-major order."""
    monkeypatch.setattr(int8_trunk.Int8Step, "_split_first", lambda self, *a, **k: None)
    fast, ref = _decoders()
    rng = np.random.default_rng(5)
    Hp, Wp = prep.padded_size(37, 50, fast.cfg.stride)
    vp = rng.integers(0, 4000, (Hp, Wp))
    feats = fast.features(torch.from_numpy(rng.integers(-3, 4, fast_latent_shape(fast, Hp, Wp))))
    ctx = [torch.from_numpy(np.ascontiguousarray(vp[di::fast.f, dj::fast.f])) for di, dj in fast.order]
    # and features below zero, which the shipped model never makes (a relu's) and the compiled kernels,
    # reading unsigned bytes, cannot take: the first layer then takes the float32 product
    for f in (feats, feats - 1):
        for k in (1, 7, fast.steps - 1):
            got = fast._raw(f, ctx, k, 12)[0]
            assert fast._int8_steps[k].feats is None  # the unsplit path ran
            want = ref._raw(f, ctx, k, 12)[0][:, fast._int8_steps[k].head_rows]
            assert torch.equal(got.to(want.dtype), want), k


@pytest.mark.parametrize("band_rows", [None, 1, 2, 4])
def test_context_sums_carried_only_for_the_same_sub_images(monkeypatch, band_rows):
    """``ContextSums`` adds the new sub-images' sums to the last step's only when the earlier ones are
    the very tensors it saw, unchanged, at the same bit depth: a new tensor, one changed in place, or
    another ``B`` gives the full conv's values, as does every step of an in-order walk. The same by
    bands of ``band_rows`` rows (a large plane's path: the plane's edge rows, a last short band)."""
    from lvpnet.model.intnet import int_conv

    if band_rows is not None:
        monkeypatch.setattr(int8_trunk, "_CONV_BANDS_FROM", 0)
        monkeypatch.setattr(int8_trunk, "_BAND_BYTES", 4 * 8 * 11 * band_rows)  # 8 outputs, 11 columns

    g = torch.Generator().manual_seed(5)
    # small weights and a bias near the middle, so that few outputs sit at the clamp and a stale sum shows
    spec = {"weight": torch.randint(-2, 3, (8, 15, 3, 3), generator=g, dtype=torch.int32),
            "bias": torch.full((8,), 4000), "shift": 6, "pad": 1, "relu": True, "raw": False}
    sums = int8_trunk.ContextSums(spec)
    subs = [torch.randint(0, 2**12, (9, 11), generator=g) for _ in range(15)]

    def check(subs, n, B):
        ctx_u = prep.to_ctx(torch.stack(subs[:n])[None], B).double()
        keys = (B, *((c, c._version) for c in subs[:n]))
        cut = dict(spec, weight=spec["weight"][:, :n])
        want = int8_trunk.pixels_first(int_conv(ctx_u.float(), cut)[0])
        assert np.array_equal(sums(ctx_u, n, keys), want), (n, B)

    for n in range(1, 16):  # the walk: one more sub-image a step
        check(subs, n, 12)
    other = list(subs)
    bump = torch.zeros_like(subs[2])
    bump[3:6, 3:6] = 2000
    other[2] = subs[2] + bump  # a new tensor, at version 0 as the one it replaces
    check(subs, 4, 12)  # a walk started again
    check(other, 6, 12)  # a new tensor among the earlier ones
    check(other, 9, 12)
    other[5][2:7, 2:7] -= 1500  # changed in place
    check(other, 10, 12)
    check(other, 11, 13)  # another bit depth
    check(other, 3, 13)  # fewer sub-images than last time
    sums.clear()
    check(other, 15, 13)


def test_walk_threads_one_torch_thread_for_the_int8_walk():
    """``walk_threads``: one torch thread inside a walk on the int8 trunk, the caller's count after
    (also when the walk raises); the float trunk keeps the caller's."""
    fast, ref = _decoders()
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with fast.walk_threads():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError), fast.walk_threads():
            raise RuntimeError("damaged")
        assert torch.get_num_threads() == 2
        with ref.walk_threads():
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(old)


def test_kernel_values_carried_only_for_the_same_sub_images():
    """``IntegerDecoder._kernel_values`` copies in only the sub-images new to a step when the earlier
    ones are the very tensors it saw, unchanged; otherwise it copies every one."""
    from lvpnet.codecs.weights import shipped_weights

    w = shipped_weights()
    if w is None:
        pytest.skip("no shipped weights")
    dec = IntegerDecoder(load_checkpoint(w)["decoder"])
    g = torch.Generator().manual_seed(3)
    subs = [torch.randint(0, 4096, (6, 7), generator=g) for _ in range(15)]

    def check(subs, n, B=12, dtype=np.int32):
        keys = (B, *((c, c._version) for c in subs[:n]))
        got = dec._kernel_values(subs, n, keys, dtype)
        assert got.dtype == dtype and np.array_equal(got, torch.stack(subs[:n]).numpy()), n

    for n in range(1, 16):
        check(subs, n)
    check(subs, 3)  # a walk started again
    other = list(subs)
    other[1] = subs[1] + 1  # a new tensor, at version 0 as the one it replaces
    check(other, 5)
    other[2][0, 0] += 9  # changed in place
    check(other, 6)
    check(other, 7, dtype=np.int64)
    check([s[:5] for s in other], 8, dtype=np.int64)  # another size
    dec.end_slice()
    check(other, 2)


def test_features_product_exact_for_signed_features():
    """The features' product (``FeatsProduct``) gives the conv's exact sums even for features below
    zero, which the shipped model never makes (its features are a relu's) and the AVX2 kernel,
    reading unsigned bytes, cannot take: there it takes the float32 product."""
    g = torch.Generator().manual_seed(3)
    weight = torch.randint(-127, 128, (48, 8, 3, 3), generator=g)
    bias = torch.randint(-1000, 1000, (48,), generator=g)
    fp = int8_trunk.FeatsProduct(weight, bias)
    for lo in (0, -127):
        feats = torch.randint(lo, AMAX + 1, (1, 8, 10, 13), generator=g).to(torch.float32)
        want = torch.nn.functional.conv2d(feats.double(), weight.double(), bias.double(), padding=1)
        got = fp.acc(feats)  # (pixels, outputs)
        assert torch.equal(got.to(torch.float64), want[0].permute(1, 2, 0).reshape(-1, 48)), lo
