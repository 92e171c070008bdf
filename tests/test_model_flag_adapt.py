"""lvpnet.coding.flag_adapt: neighbour-repeat flags with prediction contexts, adaptive within a stage."""

import numpy as np
import pytest

from lvpnet.codecs.lvpnet_entropy import new_coder
from lvpnet.coding.flag_adapt import (
    CONTEXTS,
    N_DMU,
    N_SCALE,
    ROUND0,
    AdaptiveFlags,
    contexts,
    parent,
    rounds,
)
from lvpnet.coding.repeat import FLAG_CONTEXTS, FlagCounts
from lvpnet.model.tables import TOTAL


def _stages(rng, n_stages=5, size=3000, p_hit=0.95):
    """Random stages: contexts over every parent (some pixels without a flag), hits likelier
    where the location is on the candidate."""
    out = []
    for _ in range(n_stages):
        x = rng.integers(0, FLAG_CONTEXTS, size)
        mu = rng.integers(0, 300, size)
        cand = np.where(rng.random(size) < 0.5, mu, rng.integers(0, 300, size))
        s = rng.integers(0, 80, size)
        hit = np.where(mu == cand, rng.random(size) < p_hit, rng.random(size) < 0.3)
        out.append((hit, contexts(x, mu, cand, s)))
    return out


def _round_trip(stages):
    enc = AdaptiveFlags()
    plans = [enc.plan(h, c) for h, c in stages]
    coder = new_coder()
    for plan in reversed(plans):
        AdaptiveFlags.push(coder, plan)
    words = coder.get_compressed()
    dec, back = AdaptiveFlags(), new_coder(words)
    got = [dec.pop(back, c) for _h, c in stages]
    assert back.is_empty()
    assert abs(dec.coded_bits - enc.coded_bits) < 1e-6 * max(1.0, enc.coded_bits)  # the decoder's estimate too
    return plans, got, words


def test_contexts_cover_every_parent_and_split():
    x = np.arange(FLAG_CONTEXTS)
    c = contexts(x, np.zeros_like(x), np.zeros_like(x), np.zeros_like(x))
    assert c[0] == 0 and (c[1:] > 0).all() and (parent(c) == x).all()
    far = contexts(np.full(3, 4), np.array([0, 0, 0]), np.array([0, 5, 500]), np.array([0, 40, 79]))
    assert len(set(far.tolist())) == 3 and (parent(far) == 4).all()
    top = contexts(np.array([FLAG_CONTEXTS - 1]), np.array([0]), np.array([10**6]), np.array([10**4]))
    assert top[0] == CONTEXTS - 1  # the largest distance and scale land in the last context
    assert CONTEXTS == 1 + (FLAG_CONTEXTS - 1) * N_DMU * N_SCALE


def test_rounds_double_and_cover():
    assert rounds(0) == []
    assert rounds(10) == [(0, 10)]
    r = rounds(1000)
    assert r[0] == (0, ROUND0) and r[-1][1] == 1000
    assert all(b == a2 for (_a, b), (a2, _b) in zip(r, r[1:]))
    assert [b - a for a, b in r[:-1]] == [ROUND0 << i for i in range(len(r) - 1)]


def test_round_trip_random_stages():
    stages = _stages(np.random.default_rng(0))
    plans, got, words = _round_trip(stages)
    for (h, c), g in zip(stages, got):
        assert np.array_equal(g, h & (c > 0))
    # real bytes within 1% of the estimate (plus the coder's last words)
    est = sum(p.bits() for p in plans)
    assert abs(32 * words.size - est) <= 0.01 * est + 64


@pytest.mark.parametrize("case", ["empty", "no_flags", "all_hit", "all_miss", "one", "shape2d"])
def test_round_trip_edge_cases(case):
    rng = np.random.default_rng(1)
    if case == "empty":
        stages = [(np.zeros(0, bool), np.zeros(0, np.int64))]
    elif case == "no_flags":
        stages = [(np.ones(50, bool), np.zeros(50, np.int64))]
    elif case == "all_hit":
        stages = [(np.ones(5000, bool), np.full(5000, 1 + 3 * N_DMU * N_SCALE))] * 3
    elif case == "all_miss":
        stages = [(np.zeros(5000, bool), np.full(5000, CONTEXTS - 1))] * 2
    elif case == "one":
        stages = [(np.array([True]), np.array([7]))]
    else:
        x = rng.integers(0, FLAG_CONTEXTS, (40, 30))
        stages = [(rng.random((40, 30)) < 0.9, contexts(x, x, x * 0, x))]
    _plans, got, _w = _round_trip(stages)
    for (h, c), g in zip(stages, got):
        assert g.shape == np.shape(c) and np.array_equal(g, np.asarray(h, bool) & (np.asarray(c) > 0))


def test_probabilities_stay_codable_and_learn():
    af = AdaptiveFlags()
    c = np.arange(1, CONTEXTS)
    q = af.freqs(c)
    assert (q >= 1).all() and (q <= TOTAL - 1).all()
    # before any flag a fine context takes its parent's prior, as repeat.FlagCounts starts
    fc = FlagCounts()
    assert abs(int(af.freqs(np.array([1 + 3 * N_DMU * N_SCALE]))[0]) - int(fc.table(4)[1])) <= 2
    af.add(np.ones(100_000, np.int64), np.full(100_000, 5))
    assert af.freqs(np.array([5]))[0] == TOTAL - 1 or af.freqs(np.array([5]))[0] > 0.999 * TOTAL
    af.add(np.zeros(100_000, np.int64), np.full(100_000, 6))
    assert af.freqs(np.array([6]))[0] < 0.001 * TOTAL


def test_adapts_within_a_stage_where_repeat_counts_do_not():
    """One stage of 20 000 flags, 99% hits: FlagCounts codes it all at its prior, these flags learn."""
    rng = np.random.default_rng(2)
    n = 20_000
    hit = rng.random(n) < 0.99
    x = np.full(n, 2)
    ours = AdaptiveFlags().bits(hit, contexts(x, np.zeros(n), np.zeros(n), np.zeros(n)))
    fc = FlagCounts()
    fc.start_step(1)
    theirs = float(fc.bits(hit, x).sum())
    assert ours < 0.5 * theirs


def test_prediction_contexts_pay_when_they_separate():
    """Hits only where the location is on the candidate: the split contexts code them for less
    than the parent context alone would."""
    rng = np.random.default_rng(3)
    n = 40_000
    mu = rng.integers(0, 100, n)
    cand = np.where(rng.random(n) < 0.7, mu, mu + 20)
    hit = mu == cand
    x = np.full(n, 3)
    split = AdaptiveFlags().bits(hit, contexts(x, mu, cand, np.zeros(n)))
    flat = AdaptiveFlags().bits(hit, contexts(x, mu, mu, np.zeros(n)))
    assert split < 0.2 * flat


def test_contexts_numba_equals_numpy(monkeypatch):
    """The compiled pass and the numpy path give the same context for every pixel: no flag (x 0),
    distances on and beside every edge, every scale bucket."""
    from lvpnet.coding import flag_adapt

    pytest.importorskip("numba")
    rng = np.random.default_rng(11)
    shape = (37, 29)
    x = rng.integers(0, FLAG_CONTEXTS, shape)
    cand = rng.integers(0, 5000, shape)
    edges = np.concatenate([flag_adapt.DMU_EDGES, [100]])
    d = edges[rng.integers(0, edges.size, shape)] + rng.integers(-1, 2, shape)
    mu = np.clip(cand + np.where(rng.random(shape) < 0.5, d, -d), 0, None)
    s = rng.integers(0, 80, shape)
    fast = contexts(x, mu, cand, s)
    monkeypatch.setattr(flag_adapt, "_contexts_kernel", lambda: False)
    slow = contexts(x, mu, cand, s)
    assert np.array_equal(fast, slow) and (fast[x == 0] == 0).all() and len(np.unique(fast)) > 100
