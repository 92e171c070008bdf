"""``prep``'s fast paths against numpy: ``used_values`` (``np.unique`` by a histogram where the value span is small)
and ``med_of`` (the median edge detector in one pass)."""

import numpy as np
import pytest

from lvpnet.model import prep
from lvpnet.model.prep import used_values


@pytest.mark.parametrize("a", [
    np.random.default_rng(0).integers(-3000, 3000, (64, 64)),
    np.random.default_rng(1).integers(0, 65535, (7, 9)).astype(np.uint16),
    np.array([5]),
    np.random.default_rng(2).integers(-2**40, 2**40, 100),  # a wide span: np.unique itself
    np.zeros(0, np.int64),
    np.random.default_rng(3).integers(0, 10, (3, 4)).astype(np.int32),
])
def test_used_values_is_unique(a):
    u, n = np.unique(a, return_counts=True)
    got, counts = used_values(a, counts=True)
    assert got.dtype == u.dtype and np.array_equal(got, u) and np.array_equal(counts, n)
    assert np.array_equal(used_values(a), np.unique(a))


@pytest.mark.parametrize("span", [300, 5000, 1 << 20])
def test_gap_packing_by_table_is_the_binary_search(span):
    """``prep._below`` (a table over the used values, or the binary search on a sparse span) gives
    what ``before[searchsorted(u[big], k)]`` gives, pixel by pixel."""
    rng = np.random.default_rng(span)
    k = rng.choice(rng.integers(0, span, 60), (40, 50)).astype(np.int64)
    u = prep.used_values(k)
    big = np.nonzero(np.diff(u) > 3)[0]
    before = np.concatenate([[0], np.cumsum(np.diff(u)[big] - 1)])
    assert np.array_equal(prep._below(u, big, before, k), before[np.searchsorted(u[big], k, side="left")])



@pytest.mark.parametrize("span", [300, 5000, 1 << 20])
def test_gap_expansion_inverts_the_packing(span):
    rng = np.random.default_rng(span)
    k = rng.choice(rng.integers(0, span, 60), (40, 50)).astype(np.int64)
    k -= k.min()
    packed, gaps = prep.collapse_gaps(k)
    assert len(gaps) and np.array_equal(prep.expand_gaps(packed, gaps), k)


@pytest.mark.parametrize("span", [50, 3000, 1 << 18, 1 << 40])
def test_gap_expansion_by_table_is_the_binary_search(span):
    """``prep.expand_gaps`` (a table over the packed values, or the binary search where their span
    is wide) adds what ``before[searchsorted(gaps[:, 0], packed)]`` adds, pixel by pixel."""
    rng = np.random.default_rng(span % 997)
    packed = rng.integers(0, span, (30, 40)).astype(np.int64)
    gaps = np.stack([np.sort(rng.choice(span, 9, replace=False)), rng.integers(1, 1000, 9)], axis=1)
    before = np.concatenate([[0], np.cumsum(gaps[:, 1])])
    want = packed + before[np.searchsorted(gaps[:, 0], packed, side="left")]
    assert np.array_equal(prep.expand_gaps(packed, gaps), want)


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.int64])
def test_the_median_edge_detector_in_one_pass_is_numpys(dtype, monkeypatch):
    """``med_of`` (numba, one pass over the plane) gives ``med_predict``'s values on the three shifted
    views, at every size down to one row or column, with the values' own type (int16 sums wrap as numpy's);
    without numba it is numpy's."""
    rng = np.random.default_rng(int(np.dtype(dtype).itemsize))
    lo, hi = np.iinfo(dtype).min // 2, np.iinfo(dtype).max // 2
    for shape in [(512, 512), (37, 29), (2, 2), (1, 7), (7, 1), (0, 4)]:
        p = rng.integers(lo, hi, shape).astype(dtype)
        want = prep.med_predict(p[1:, :-1], p[:-1, 1:], p[:-1, :-1])
        got = prep.med_of(p)
        assert got.dtype == want.dtype and np.array_equal(got, want), shape
        assert np.array_equal(prep.med_of(p.T), prep.med_predict(p.T[1:, :-1], p.T[:-1, 1:], p.T[:-1, :-1]))
    monkeypatch.setattr(prep, "compiled", lambda fn, **options: False)
    p = rng.integers(lo, hi, (9, 11)).astype(dtype)
    assert np.array_equal(prep.med_of(p), prep.med_predict(p[1:, :-1], p[:-1, 1:], p[:-1, :-1]))
