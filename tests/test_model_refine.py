"""The per-slice refinement of the location (bitstream version 4, ``lvpnet.coding.refine``)."""

import numpy as np
import pytest
from conftest import stream_reader

from lvpnet.coding import refine
from lvpnet.model.prep import ORDERS
from lvpnet.model.tables import bin_shifts, scale_sigmas

ORDER = ORDERS[4]
SHIFTS = bin_shifts(scale_sigmas(80, 4, 0.08))  # the tables' bin shifts (80 scale indices)


def _random_refs(rng, order, n_scales=80):
    refs = [None]
    for k in range(1, len(order)):
        config = int(rng.integers(0, len(refine.CONFIGS)))
        classes, noff = refine.step_layout(order, k, config)
        if config == 0:
            refs.append(None)
            continue
        edges = np.sort(rng.integers(0, n_scales, classes - 1))
        lim = (1 << (refine.MAG_CLASSES - 1)) - 1
        coefs = rng.choice(np.array([0, 1, -1, 2, -3, 200, -4095, lim, -lim]), size=(classes, noff))
        refs.append(refine.StepRefinement(config, edges, coefs.astype(np.int64)))
    return refs


def test_side_information_reads_back(rng):
    for _ in range(20):
        refs = _random_refs(rng, ORDER)
        values, sizes = refine.side_symbols(refs, ORDER, 80)
        assert (sizes >= 2).all() and (values >= 0).all() and (values < sizes).all()
        pop, at = stream_reader(values, sizes)
        back = refine.read_side(pop, ORDER, 80)
        assert at[0] == len(values)
        for a, b in zip(refs, back):
            assert (a is None) == (b is None)
            if a is not None:
                assert a.config == b.config
                assert np.array_equal(a.edges, b.edges) and np.array_equal(a.coefs, b.coefs)
        assert refine.side_bits(refs, ORDER, 80) == pytest.approx(np.log2(sizes.astype(float)).sum())


def test_edges_out_of_order_are_refused(rng):
    refs = [None] * len(ORDER)
    refs[3] = refine.StepRefinement(6, np.array([40, 20, 50]), np.zeros((4, refine.step_layout(ORDER, 3, 6)[1]), np.int64))
    values, sizes = refine.side_symbols(refs, ORDER, 80)
    with pytest.raises(ValueError, match="edges"):
        refine.read_side(stream_reader(values, sizes)[0], ORDER, 80)


def test_bit_length_is_exact():
    a = np.arange(1 << (refine.MAG_CLASSES - 1))
    assert np.array_equal(refine.bit_length(a), [int(x).bit_length() for x in a])
    edges = np.array([(1 << k) + d for k in range(1, 53) for d in (-1, 0, 1)])  # around every power of two
    assert np.array_equal(refine.bit_length(edges), [int(x).bit_length() for x in edges])


def test_neighbours_are_decoded_before_the_step():
    f = 4
    for k in range(len(ORDER)):
        done = set(ORDER[:k])
        di, dj = ORDER[k]
        for radius in (1, 2, 3):
            offs = refine.neighbour_offsets(ORDER, k, radius)
            assert all(((di + dy) % f, (dj + dx) % f) in done for dy, dx in offs)
            assert all(max(abs(dy), abs(dx)) <= radius for dy, dx in offs)
    assert refine.neighbour_offsets(ORDER, 0, 3) == []
    assert len(refine.neighbour_offsets(ORDER, 15, 3)) <= 48


@pytest.mark.parametrize("shape", [(1, 1), (3, 2), (5, 9), (17, 13)])
def test_the_decoder_never_reads_a_pixel_it_has_not_decoded(rng, shape):
    """Refining from a plane whose later phases hold garbage (the decoder's state) gives what the
    encoder computes from the whole plane, and offsets off the plane keep their phase."""
    f = 4
    v = rng.integers(0, 4096, shape)
    for k in range(1, len(ORDER)):
        di, dj = ORDER[k]
        sub = v[di::f, dj::f]
        if sub.size == 0:
            continue
        state = rng.integers(-10**6, 10**6, shape)
        for p in ORDER[:k]:
            state[p[0] :: f, p[1] :: f] = v[p[0] :: f, p[1] :: f]
        mu = rng.integers(0, 4096, sub.shape)
        s = rng.integers(0, 80, sub.shape)
        for config in range(1, len(refine.CONFIGS)):
            classes, noff = refine.step_layout(ORDER, k, config)
            ref = refine.StepRefinement(config, np.sort(rng.integers(0, 80, classes - 1)),
                                        rng.integers(-300, 300, (classes, noff)))
            want = refine.refine_step(v, mu, s, (di, dj), f, ORDER, k, ref, 4095)
            got = refine.refine_step(state, mu, s, (di, dj), f, ORDER, k, ref, 4095)
            assert np.array_equal(got, want) and got.min() >= 0 and got.max() <= 4095


def test_the_float_sums_are_the_integer_formula(rng):
    """Extreme coefficients and neighbour differences: the float64 path equals exact integers."""
    lim = (1 << (refine.MAG_CLASSES - 1)) - 1
    n, m, R = 500, 48, 2**32 - 1  # beyond any real slice's range (16 bits): the bound of the docstring
    deltas = rng.choice(np.array([-R, R, -1, 0, 1, 12345]), size=(n, m)).astype(np.int64)
    coefs = rng.choice(np.array([-lim, lim, 0, 1, -1]), size=(3, m)).astype(np.int64)
    cls = rng.integers(0, 3, n)
    mu = rng.integers(0, R + 1, n)
    got = refine.apply_coefs(mu, deltas, cls, coefs, R)
    want = [min(max(int(mu[i]) + ((sum(int(deltas[i, t]) * int(coefs[cls[i], t]) for t in range(m)) + 128) >> 8), 0), R)
            for i in range(n)]
    assert np.array_equal(got, want)


def test_the_encoder_refines_a_texture_and_leaves_small_steps(rng):
    """A directional texture the 'model' (a flat guess here) misses: the encoder fits a refinement
    that brings the residual down; a step under 64 pixels is never refined."""
    f = 4
    yy, xx = np.mgrid[:128, :128]
    v = np.clip(2000 + 800 * np.sin((yy + 2 * xx) / 3.0) + rng.normal(0, 3, yy.shape), 0, 4095).astype(np.int64)
    k = 9
    di, dj = ORDER[k]
    vals = v[di::f, dj::f]
    mu = np.full(vals.shape, 2000, np.int64)
    s = np.full(vals.shape, 50, np.int64)
    ref, mu2 = refine.choose_step(v, vals, mu, s, (di, dj), f, ORDER, k, 4095, SHIFTS)
    assert ref is not None and ref.config > 0
    assert np.abs(vals - mu2).mean() < 0.2 * np.abs(vals - mu).mean()
    assert np.array_equal(mu2, refine.refine_step(v, mu, s, (di, dj), f, ORDER, k, ref, 4095))
    small = v[:16, :16]
    ref, same = refine.choose_step(small, small[di::f, dj::f], mu[:4, :4], s[:4, :4], (di, dj), f, ORDER, k, 4095, SHIFTS)
    assert ref is None and np.array_equal(same, mu[:4, :4])


def test_numba_kernels_give_the_numpy_integers(monkeypatch):
    """``refine_step``, ``neighbour_deltas`` and ``apply_coefs`` through numba equal the numpy path, at every border."""
    pytest.importorskip("numba")
    from lvpnet.coding import refine

    rng = np.random.default_rng(0)
    plane = rng.integers(0, 2**16, (37, 29)).astype(np.int64)
    order = ORDERS[4]
    for k in (1, 5, 15):
        pos = order[k]
        h, w = len(range(pos[0], 37, 4)), len(range(pos[1], 29, 4))
        mu, s = rng.integers(0, 2**16, (h, w)), rng.integers(0, 80, (h, w))
        for config in range(1, len(refine.CONFIGS)):
            radius, classes = refine.CONFIGS[config]
            offs = refine.neighbour_offsets(order, k, radius)
            ref = refine.StepRefinement(config, np.sort(rng.integers(0, 80, classes - 1)),
                                        rng.integers(-(2**13) + 1, 2**13, (classes, len(offs))))
            fast = refine.refine_step(plane, mu, s, pos, 4, order, k, ref, 2**16 - 1)
            d_fast = refine.neighbour_deltas(plane, mu, pos, 4, offs)
            some = rng.permutation(mu.size)[: mu.size // 2]  # the encoder's sample: interior and border pixels
            assert np.array_equal(refine.neighbour_deltas(plane, mu, pos, 4, offs, some), d_fast[some])
            cls = refine.classes_of(s, ref.edges)
            a_fast = refine.apply_coefs(mu, d_fast, cls, ref.coefs, 2**16 - 1)
            monkeypatch.setattr(refine, "_KERNELS", False)
            assert np.array_equal(a_fast, refine.apply_coefs(mu, d_fast, cls, ref.coefs, 2**16 - 1))
            assert np.array_equal(fast, refine.refine_step(plane, mu, s, pos, 4, order, k, ref, 2**16 - 1))
            assert np.array_equal(d_fast, refine.neighbour_deltas(plane, mu, pos, 4, offs))
            assert np.array_equal(d_fast[some], refine.neighbour_deltas(plane, mu, pos, 4, offs, some))
            monkeypatch.setattr(refine, "_KERNELS", None)


@pytest.mark.parametrize("top", [0, 1, 4095, 65535, 2**31 - 1])
def test_the_fits_sums_stay_exact(top):
    """Whatever the plane's range, every weighted sum of products of the fits stays below 2**52, so
    float64 adds it exactly in any order (``refine._fit_scale``): the same fit on every CPU."""
    rng = np.random.default_rng(top)
    n, T = 8192, 24
    A = rng.integers(-top, top + 1, (n, T), dtype=np.int64)
    y = rng.integers(-top, top + 1, n, dtype=np.int64)
    Ay, wbits, fbits = refine._fit_scale(A, y)
    big = float(np.abs(Ay).max())
    assert wbits >= 4 and n * 2.0**wbits * big**2 < 2.0**52
    assert T * big * 2.0 ** (fbits + 5) <= 2.0**52  # ``_residual``'s products on its grid


def test_the_solve_gives_the_same_bits_with_and_without_numba(monkeypatch):
    """``_spd_solve``: numba's loops and numpy's lines do the same operations in the same order."""
    rng = np.random.default_rng(5)
    A = rng.integers(-3000, 3000, (6, 400, 9)).astype(np.float64)
    G = np.einsum("nij,nik->njk", A, A)
    b = np.einsum("nij,ni->nj", A, rng.integers(-50, 50, (6, 400)).astype(np.float64))
    w = np.full(6, 400.0)
    fast = refine._solve(G, b, w)
    monkeypatch.setattr(refine, "_KERNELS", False)
    plain = refine._solve(G, b, w)
    assert fast is not plain and np.array_equal(fast, plain)
    ridge = (1e-3 * np.trace(G, axis1=1, axis2=2) / w + 1e-6)[:, None, None] * np.eye(9)
    assert np.allclose(fast, np.linalg.solve(G + ridge, b[..., None])[..., 0], rtol=1e-9, atol=1e-12)


def test_a_configs_estimate_without_its_mu_is_the_same_float(monkeypatch):
    """``_Estimate.config`` (numba: the refined ``mu`` and its bins in one pass, never built) gives
    the float ``_Estimate`` gives on the refined ``mu``, with and without numba, on a wide range
    where the bins clip and on one where they do not."""
    rng = np.random.default_rng(3)
    order = ORDERS[4]
    k = 15
    cols3 = refine._columns(order, k, 3)
    for R, spread in ((4095, 40), (2**16 - 1, 30000)):
        n = 5000
        vals = rng.integers(0, R + 1, n).astype(np.int64)
        mu = np.clip(vals + rng.integers(-spread, spread + 1, n), 0, R).astype(np.int64)
        s = rng.integers(0, 80, n).astype(np.int64)
        D = rng.integers(-spread, spread + 1, (n, cols3.size)).astype(np.int64)
        est = refine._Estimate(vals, s, SHIFTS)
        for radius, classes in refine.CONFIGS[1:]:
            cols = refine._columns(order, k, radius)
            coefs = rng.integers(-(2**13) + 1, 2**13, (classes, cols.size)).astype(np.int64)
            cls = rng.integers(0, classes, n).astype(np.int64)
            want = est(refine.apply_coefs(mu, np.ascontiguousarray(D[:, cols]), cls, coefs, R))
            assert est.config(mu, D, cols, cls, coefs, R) == want
            monkeypatch.setattr(refine, "_KERNELS", False)
            assert est.config(mu, D, cols, cls, coefs, R) == want
            monkeypatch.setattr(refine, "_KERNELS", None)


@pytest.mark.parametrize("numba", [True, False])
def test_the_residual_of_every_class_at_once_is_each_classs_own(rng, numba, monkeypatch):
    """``_class_residual``: each row under its own class's coefficients (numba's reassociated sums, or
    one product with every class's and each row's own taken) is ``_residual`` class by class, to the
    bit, at ``_fit_scale``'s extremes too (the largest values, the finest grid)."""
    if not numba:
        monkeypatch.setattr(refine, "compiled", lambda fn, **options: False)
    for top, n, T in ((4000, 3000, 24), (2**20, 8191, 48), (2**31 - 1, 4096, 48)):
        Ay, _wbits, fbits = refine._fit_scale(rng.integers(-top, top + 1, (n, T)), rng.integers(-top, top + 1, n))
        A, y = Ay[:, :T], Ay[:, T]
        lab = np.sort(rng.integers(0, 8, n))
        a8 = rng.normal(0, 3, (8, T)) * 8.0  # some beyond the clip
        got = refine._class_residual(Ay, a8, lab, fbits)
        for c in range(8):
            p = lab == c
            assert np.array_equal(got[p], refine._residual(A[p], y[p], a8[c], fbits)), (top, c)


def test_the_encoders_choice_is_the_same_with_and_without_numba(monkeypatch, rng):
    """``choose_step`` on a texture, each step of the order: the same config, edges and coefficients
    and the same refined ``mu`` through the numba kernels and the numpy path."""
    f = 4
    yy, xx = np.mgrid[:96, :128]
    v = np.clip(2000 + 800 * np.sin((yy + 2 * xx) / 3.0) + rng.normal(0, 20, yy.shape), 0, 4095).astype(np.int64)
    for k in (1, 6, 15):
        di, dj = ORDER[k]
        vals = v[di::f, dj::f]
        mu = np.clip(2000 + rng.integers(-60, 61, vals.shape), 0, 4095).astype(np.int64)  # a poor guess
        s = rng.integers(20, 70, vals.shape).astype(np.int64)
        fast, mu_fast = refine.choose_step(v, vals, mu, s, (di, dj), f, ORDER, k, 4095, SHIFTS)
        monkeypatch.setattr(refine, "_KERNELS", False)
        plain, mu_plain = refine.choose_step(v, vals, mu, s, (di, dj), f, ORDER, k, 4095, SHIFTS)
        monkeypatch.setattr(refine, "_KERNELS", None)
        assert fast is not None and plain is not None
        assert (fast.config, fast.edges.tolist(), fast.coefs.tolist()) == (plain.config, plain.edges.tolist(),
                                                                          plain.coefs.tolist())
        assert np.array_equal(mu_fast, mu_plain)


def test_the_class_edges_are_numpys_octiles_to_the_integer(rng):
    """``_nested_edges`` in integers equals ``floor(np.quantile(s, k / 8))``: every sample size
    mod 8, small and wide scale indices, ties, one value, negative values."""
    cases = [rng.integers(0, 80, n) for n in (1, 2, 3, 7, 8, 9, 15, 16, 17, 100, 1001, 8191, 8192)]
    cases += [rng.integers(-5, 5, 333), np.full(50, 7), rng.integers(0, 2**40, 999), np.array([0, 2**40]),
              np.repeat([3, 9, 60], [5, 1, 9])]
    for s in cases:
        want = np.floor(np.quantile(s, np.arange(1, 8) / 8.0)).astype(np.int64)
        assert np.array_equal(refine._nested_edges(s), want), s
