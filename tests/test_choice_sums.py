"""The coding choice's sums in a few array calls equal the walks they replace (``repeat.FlagCounts.walk_bits``,
``adapt._table_bits_all``)."""

import numpy as np

from lvpnet.coding import adapt
from lvpnet.coding.repeat import FlagCounts


def test_walk_bits_is_the_walk():
    rng = np.random.default_rng(0)
    n = len(FlagCounts()._prior)
    for _ in range(100):
        m = int(rng.integers(1, 12))
        flags = []
        for _ in range(m):
            size = int(rng.integers(0, 40))
            flags.append((rng.random(size) < 0.6, rng.integers(0, n, size)))
        stages = np.sort(rng.integers(0, 6, m))
        counts, want = FlagCounts(), []
        for (hit, x), st in zip(flags, stages):
            counts.start_step(int(st))
            want.append(float(counts.bits(hit, x).sum()))
            counts.add(hit, x)
        assert np.allclose(FlagCounts().walk_bits(flags, stages), want, rtol=1e-12, atol=1e-9)


def test_table_bits_all_is_every_weight():
    rng = np.random.default_rng(1)
    S, n = 12, 9
    base = rng.integers(1, 50, (S, n))
    base[:, 0] += adapt.TOTAL - base.sum(1)  # rows of 2**16
    for _ in range(20):
        hists = {}
        for k in rng.permutation(8)[: int(rng.integers(1, 8))]:
            h = np.zeros((S, n), np.int64)
            rows = rng.choice(S, int(rng.integers(0, 4)), replace=False)
            h[rows] = rng.integers(0, 30, (len(rows), n))
            hists[int(k)] = h
        got = adapt._table_bits_all(base, hists)
        for w in range(len(adapt.ADAPT_WEIGHTS)):
            want = adapt._table_bits(base, w, hists)
            assert got[w].keys() == want.keys()
            assert all(abs(got[w][k] - want[k]) <= 1e-9 * max(1.0, want[k]) for k in want)


def test_residual_pairs_count_every_pixel():
    from lvpnet.model.tables import residual_pairs

    rng = np.random.default_rng(2)
    for r, s in ((rng.integers(-5, 6, 5000), rng.integers(10, 14, 5000)),  # concentrated: pairs
                 (rng.integers(-10**6, 10**6, 300), rng.integers(0, 80, 300)),  # spread: the pixels
                 (np.zeros(0, np.int64), np.zeros(0, np.int64))):
        ru, su, n = residual_pairs(r, s)
        got = {(a, b): c for a, b, c in zip(ru.tolist(), su.tolist(), n.tolist()) if c}
        want = {}
        for a, b in zip(r.tolist(), s.tolist()):
            want[(a, b)] = want.get((a, b), 0) + 1
        if len(ru) == len(r):  # the pixels as they are
            assert np.array_equal(ru, r) and np.array_equal(su, s) and (n == 1).all()
        else:
            assert got == want
