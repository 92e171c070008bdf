"""lvpnet.coding.adapt: integer tables mixed from the model's and the slice's counts."""

import numpy as np
import pytest

from lvpnet.coding.adapt import (
    ADAPT_WEIGHTS,
    PlaneItem,
    StepTables,
    choose_plane_coding,
    mix_tables,
    plane_bits,
)
from lvpnet.model.tables import TOTAL, build_pixel_tables


@pytest.fixture(scope="module")
def base():
    return build_pixel_tables(n_scales=12, per_octave=4, sigma_min=0.5, K=8)[0].astype(np.int64)


def test_mixed_tables_are_valid_integer_tables(base):
    rng = np.random.default_rng(0)
    for counts in (rng.integers(0, 50, base.shape), np.zeros(base.shape, np.int64),
                   rng.integers(0, 1 << 30, base.shape)):  # huge counts: still exact in int64
        for w in ADAPT_WEIGHTS[1:]:
            f = mix_tables(base, counts, w)
            assert f.dtype == np.int64 and (f >= 1).all() and (f.sum(1) == TOTAL).all()


def test_mixing_moves_from_the_prior_to_the_counts(base):
    counts = np.zeros_like(base)
    counts[:, 3] = 10_000  # the slice only ever used symbol 3
    few, many = mix_tables(base, counts, 4096), mix_tables(base, counts * 100, 4096)
    assert (many[:, 3] > few[:, 3]).all() and (few[:, 3] > base[:, 3]).all()
    assert (many[:, 3] > 0.99 * TOTAL).all()
    # no counts: the prior itself, up to the rounding of the mix
    assert np.abs(mix_tables(base, np.zeros_like(base), 256) - base).max() <= base.shape[1]


def test_counts_enter_at_the_next_step_only(base):
    t = StepTables(base, 1024)
    t.start_step(0)
    sym, s = np.full(100, 3), np.full(100, 5)
    t.add(sym, s)
    assert not t.adapted(5) and np.array_equal(t.table(5), base[5])  # same step: fixed table
    t.start_step(0)  # rows of the same step: still nothing counted
    assert not t.adapted(5)
    t.start_step(1)
    assert t.adapted(5) and not t.adapted(4) and t.table(5)[3] > base[5][3]
    assert np.array_equal(t.table(4), base[4])


def test_weight_zero_is_the_fixed_tables_and_the_choice_is_the_cheapest(base):
    rng = np.random.default_rng(1)
    steps = [(k, rng.choice([2, 9], size=500), rng.integers(0, 12, 500)) for k in range(4)]
    fixed = sum(float(-np.log2(base[s, y] / TOTAL).sum()) for _k, y, s in steps)
    items = [PlaneItem(k, y, s, np.zeros(y.size)) for k, y, s in steps]
    assert sum(float(b.sum()) for b in plane_bits(items, base, 0, False)) == pytest.approx(fixed, rel=1e-12)
    costs = [sum(float(b.sum()) for b in plane_bits(items, base, w, False)) for w in range(len(ADAPT_WEIGHTS))]
    w, flags = choose_plane_coding(items, base)
    assert not flags  # no flag contexts in these items
    assert costs[w] == min(costs) and w > 0 and costs[w] < 0.8 * fixed


def _numpy_only(monkeypatch):
    """The adapt module as it runs without numba (the kernels' twins in numpy)."""
    import lvpnet.coding.adapt as adapt

    monkeypatch.setattr(adapt, "compiled", lambda fn: False)


def test_the_compiled_mix_gives_the_numpy_integers(base, monkeypatch):
    """``mix_tables`` by numba (a float quotient set right by the remainder) and by numpy (integer
    division) agree on every entry, the rounding's remainder included: ties for the largest entry,
    counts up to 2**30, every prior weight."""
    rng = np.random.default_rng(5)
    n = base.shape[1]
    tied = np.ones((3, n), np.int64)  # two equal largest entries (the second and the last), the rest small
    tied[:, 0] += (TOTAL - n) % 2
    tied[:, 1] = tied[:, -1] = (TOTAL - tied[:, :-1].sum(1) + 1) // 2
    assert (tied.sum(1) == TOTAL).all()
    rows = np.concatenate([base, tied])
    cases = [np.zeros(rows.shape, np.int64), rng.integers(0, 50, rows.shape),
             rng.integers(0, 1 << 30, rows.shape) * (rng.random(rows.shape) < 0.3)]
    got = [mix_tables(rows, c, w) for c in cases for w in (1, *ADAPT_WEIGHTS[1:])]
    _numpy_only(monkeypatch)
    want = [mix_tables(rows, c, w) for c in cases for w in (1, *ADAPT_WEIGHTS[1:])]
    assert all(np.array_equal(g, x) for g, x in zip(got, want))


def test_the_compiled_coding_choice_sums_what_numpy_sums(base, monkeypatch):
    """The coding choice's per-step table bits (``_table_bits_all``) by the numba kernel and by numpy:
    the same floats, bit for bit (the same terms in the same order), and the same choice."""
    from lvpnet.coding import adapt

    rng = np.random.default_rng(6)
    hists = {}
    for k in (0, 3, 1, 7, 2):  # decoding order, not step order
        h = np.zeros(base.shape, np.int64)
        rows = rng.choice(base.shape[0], 5, replace=False)
        h[rows] = rng.integers(0, 40, (5, base.shape[1])) * (rng.random((5, base.shape[1])) < 0.4)
        hists[k] = h
    hists[9] = np.zeros(base.shape, np.int64)  # a step that holds nothing
    steps = [(k, rng.choice([2, 9, 4], size=400), rng.integers(0, 12, 400)) for k in range(5)]
    items = [PlaneItem(k, y, s, np.zeros(y.size)) for k, y, s in steps]
    got, choice = adapt._table_bits_all(base, hists), choose_plane_coding(items, base)
    _numpy_only(monkeypatch)
    assert adapt._table_bits_all(base, hists) == got and choose_plane_coding(items, base) == choice
    assert got[0][9] == 0.0 and got[2][3] != got[0][3]  # step 3 sees step 0's counts at weight 1024


def test_the_coding_choice_kernel_comes_from_numba_s_cache_in_a_new_process():
    """The kernel calls ``_mix_rows`` by a module global, so numba caches it once: a kernel passed as an
    argument gave every process a new cache entry and a new compilation (2 s at its first plane, and
    an index file that grew with every run)."""
    import subprocess
    import sys

    code = (
        "import numpy as np; from lvpnet.coding import adapt; from lvpnet.model.tables import build_pixel_tables;"
        "base = build_pixel_tables(n_scales=12, per_octave=4, sigma_min=0.5, K=8)[0].astype(np.int64);"
        "adapt._table_bits_all(base, {0: np.ones(base.shape, np.int64), 1: np.ones(base.shape, np.int64)});"
        "print(sum(adapt._steps_kernel().stats.cache_hits.values()))"
    )
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True) for _ in range(2)]
    assert int(runs[1].stdout.split()[-1]) >= 1, runs[1].stderr
