"""Error feedback on the scale (bitstream version 4, ``lvpnet.coding.feedback``) and the encoder's
walk of the version-4 fits (``lvpnet.coding.fitting``)."""

import numpy as np
import pytest
from conftest import stream_reader

from lvpnet.coding import feedback
from lvpnet.coding.fitting import SliceFitting
from lvpnet.model.prep import ORDERS
from lvpnet.model.tables import bin_shifts, build_pixel_tables, scale_sigmas

ORDER = ORDERS[4]


def test_side_information_reads_back(rng):
    steps = len(ORDER)
    for _ in range(10):
        choices = [None] + [rng.integers(-4, 5, feedback.BUCKETS) if rng.random() < 0.5 else None
                            for _ in range(steps - 1)]
        values, sizes = feedback.side_symbols(choices, steps)
        assert (values >= 0).all() and (values < sizes).all() and (sizes >= 2).all()
        pop, at = stream_reader(values, sizes)
        back = feedback.read_side(pop, steps)
        assert at[0] == len(values)
        for a, b in zip(choices, back):
            assert (a is None and b is None) or np.array_equal(a, b)
        assert feedback.side_bits(choices, steps) == pytest.approx(np.log2(sizes.astype(float)).sum())


def test_buckets_follow_the_nearest_decoded_residuals():
    """A pixel's bucket is the bit length of the mean absolute residual of its nearest decoded
    neighbours; a plane with no residuals gives bucket 0 everywhere."""
    f = 4
    ep = feedback.ErrorPlane((16, 16), ORDER)
    v = np.zeros((16, 16), np.int64)
    v[0::f, 0::f] = 12  # step 0's pixels missed by 12, so bit_length(12) = 4
    ep.record((0, 0), v[0::f, 0::f], np.zeros((4, 4), np.int64))
    k = 1  # sub-image (2, 2): its nearest decoded neighbours are the diagonal (0, 0) pixels
    assert feedback.ring(ORDER, k) == [(-2, -2), (-2, 2), (2, -2), (2, 2)]
    assert (ep.buckets(k, ORDER[k], (4, 4)) == 4).all()
    assert (feedback.ErrorPlane((16, 16), ORDER).buckets(k, ORDER[k], (4, 4)) == 0).all()
    big = feedback.ErrorPlane((16, 16), ORDER)
    big.record((0, 0), np.full((4, 4), 60000), np.zeros((4, 4), np.int64))
    assert (big.buckets(k, ORDER[k], (4, 4)) == feedback.BUCKETS - 1).all()


@pytest.mark.parametrize("H,W", [(37, 29), (9, 1), (9, 2), (9, 3), (1, 6), (3, 7), (16, 16)])
def test_buckets_numba_equals_numpy(monkeypatch, H, W):
    """The compiled kernel and the numpy path give the same bucket at every pixel of every step,
    the plane's edges included: neighbours of a phase the plane has no row or column of (a plane
    narrower than the sub-image grid) are not counted."""
    pytest.importorskip("numba")
    rng = np.random.default_rng(H + W)
    ep = feedback.ErrorPlane((H, W), ORDER)
    ep.e[:] = rng.integers(0, 2**rng.integers(0, 12, (H, W)))  # residuals of every bit length
    for k in range(1, len(ORDER)):
        di, dj = ORDER[k]
        shape = (len(range(di, H, 4)), len(range(dj, W, 4)))
        fast = ep.buckets(k, ORDER[k], shape)
        monkeypatch.setattr(feedback, "_buckets_kernel", lambda: False)
        slow = ep.buckets(k, ORDER[k], shape)
        monkeypatch.undo()
        assert np.array_equal(fast, slow), k


def test_rows_of_sub_image_0_are_recorded_in_place():
    ep = feedback.ErrorPlane((9, 10), ORDER)
    ep.record((0, 0), np.array([[5, 6, 7]]), np.array([[1, 1, 1]]), row=2)
    assert ep.e[8, 0::4].tolist() == [4, 5, 6] and ep.e.sum() == 15


def test_offsets_move_scales_within_the_tables():
    s = np.array([0, 40, 79, 3])
    b = np.array([0, 1, 2, 5])
    d = np.array([-4, 2, 4, 0, 0, -1])
    assert feedback.apply(s, b, d, 80).tolist() == [0, 42, 79, 2]
    assert feedback.apply(s, b, None, 80) is s


def test_the_encoder_uses_feedback_where_residuals_cluster(rng):
    """Half the pixels sit next to large residuals and are noisy themselves, half next to exact
    predictions and exact: separate offsets for the two buckets pay, and the walk of the fits
    records what the next steps need."""
    tables, shifts = build_pixel_tables()
    f = 4
    H = W = 64
    v = np.zeros((H, W), np.int64)
    noisy = np.zeros((H, W), bool)
    noisy[:, W // 2 :] = True
    v[noisy] = rng.integers(0, 400, int(noisy.sum()))
    mu = np.zeros((H, W), np.int64)
    s = np.full((H, W), 30, np.int64)
    fits = SliceFitting(v, 400, ORDER, tables, shifts, 64)
    for k, (di, dj) in enumerate(ORDER):
        vals, m, sk = v[di::f, dj::f], mu[di::f, dj::f], s[di::f, dj::f]
        _mu2, s2 = fits.step(k, (di, dj), vals, m, sk)
        assert s2.shape == sk.shape
    used = [k for k in range(1, len(ORDER)) if fits.fbs[k] is not None]
    assert used, "expected the feedback to separate the noisy half from the exact one"
    k = used[0]
    d = fits.fbs[k]
    b = fits.errors.buckets(k, ORDER[k], v[ORDER[k][0] :: f, ORDER[k][1] :: f].shape)
    half = b.shape[1] // 2  # columns away from the boundary between the halves
    assert d[b[:, : half - 1]].max() < d[b[:, half + 1 :]].min()  # sharper where exact
    assert np.array_equal(fits.errors.e, np.abs(v - mu))
    assert fits.side_bits() > 0


def test_small_steps_get_no_feedback():
    tables, shifts = build_pixel_tables()
    vals = np.arange(12).reshape(3, 4)
    assert feedback.choose(vals, vals * 0, vals * 0 + 20, vals * 0, 20, tables, shifts, 64) is None
    assert len(bin_shifts(scale_sigmas(80, 4, 0.08))) == len(shifts)


def test_numba_buckets_equal_numpy(monkeypatch):
    """``ErrorPlane.buckets`` through numba gives the numpy path's buckets, borders and large errors too."""
    pytest.importorskip("numba")
    from lvpnet.coding import feedback
    from lvpnet.model.prep import ORDERS

    rng = np.random.default_rng(3)
    order = ORDERS[4]
    plane = feedback.ErrorPlane((23, 30), order)
    plane.e[:] = rng.integers(0, 2**20, plane.e.shape) >> rng.integers(0, 21, plane.e.shape)
    for k in range(1, 16):
        pos = order[k]
        shape = (len(range(pos[0], 23, 4)), len(range(pos[1], 30, 4)))
        fast = plane.buckets(k, pos, shape)
        with monkeypatch.context() as m:
            m.setattr(feedback, "_buckets_kernel", lambda: False)  # the numpy path
            assert np.array_equal(fast, plane.buckets(k, pos, shape)), k


def test_numba_offset_bits_equal_numpy():
    """The encoder's bits per (offset, bucket) through numba are the numpy path's to the last bit
    (the same summation order), so the offsets chosen are too: 8- and 16-bit ranges, escapes,
    scales at both ends of the tables."""
    pytest.importorskip("numba")
    from lvpnet.coding.jit import compiled

    tables, shifts = build_pixel_tables()
    logt = -np.log2(np.asarray(tables, np.float64) / feedback.TOTAL)
    sh = np.asarray(shifts, np.int64)
    rng = np.random.default_rng(4)
    n_off = 2 * feedback.WIDE_OFFSET_MAX + 1
    for R in (255, 4095, 65535):
        n = 5000
        r = rng.integers(-R, R + 1, n) >> rng.integers(0, 17, n)
        s = rng.integers(0, len(sh), n)
        s[:50], s[50:100] = 0, len(sh) - 1
        b = rng.integers(0, feedback.BUCKETS, n)
        args = (r, s, b, sh, logt, 64, float(np.log2(R + 1.0)), n_off, feedback.BUCKETS)
        fast = compiled(feedback._offset_bits)(*args)
        assert np.array_equal(fast, feedback._offset_bits_numpy(*args)), R
