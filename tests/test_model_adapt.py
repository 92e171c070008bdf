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
