"""``prep.used_values``: ``np.unique`` by a histogram where the value span is small."""

import numpy as np
import pytest

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
