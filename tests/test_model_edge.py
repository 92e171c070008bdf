"""lvpnet.coding.edge: table rows by scale and distance from the slice's minimum (bitstream 6)."""

from pathlib import Path

import numpy as np
import pytest

from lvpnet.coding import edge
from lvpnet.model.tables import build_pixel_tables, scale_sigmas

RESOURCES = Path(__file__).resolve().parents[1] / "resources"


def test_thresholds_are_far_from_rounding_on_every_machine():
    """``ceil(c sigma_s)`` for every scale of the shipped family: no ``c sigma_s`` within 1e-6 of an
    integer, so a last-place difference in ``2 ** x`` between machines cannot move a threshold."""
    sig = scale_sigmas(80, 4, 0.08)
    v = sig[:, None] * np.asarray(edge.EDGE_STEPS, np.float64)[None]
    assert np.abs(v - np.round(v)).min() > 1e-6
    thr = edge.thresholds(80, 4, 0.08)
    assert thr.shape == (80, len(edge.EDGE_STEPS)) and thr.dtype == np.int64
    assert (np.diff(thr, axis=0) >= 0).all() and (np.diff(thr, axis=1) >= 0).all()
    assert thr[0].tolist() == [1] * len(edge.EDGE_STEPS)  # sigma 0.08: any location above 0 is far
    assert thr[40].tolist() == [int(np.ceil(c * 0.08 * 1024)) for c in edge.EDGE_STEPS]


def test_table_index_counts_the_edges_below_the_location():
    thr = edge.thresholds(80, 4, 0.08)
    s = np.full(8, 40)  # sigma 81.92: edges at 82, 164, 246, 328, 492
    mu = np.array([0, 81, 82, 163, 164, 327, 491, 492])
    assert edge.table_index(mu, s, thr).tolist() == [40 * edge.CLASSES + c for c in (0, 0, 1, 1, 2, 3, 4, 5)]
    grid = edge.table_index(np.zeros((3, 4), np.int64), np.arange(12).reshape(3, 4), thr)
    assert grid.shape == (3, 4) and (grid == np.arange(12).reshape(3, 4) * edge.CLASSES).all()


def test_expanded_rows_repeat_each_scale():
    tables, shifts = build_pixel_tables()
    big = edge.expand(tables)
    assert big.shape == (80 * edge.CLASSES, tables.shape[1])
    for s in (0, 37, 79):
        for c in range(edge.CLASSES):
            assert (big[s * edge.CLASSES + c] == tables[s]).all()
    assert (edge.expand(shifts)[np.arange(80) * edge.CLASSES + 5] == shifts).all()


@pytest.mark.usefixtures("one_torch_thread")
def test_the_shipped_model_codes_magnitude_noise_shorter_from_version_6():
    """An MR-like slice of Rician magnitude noise around a brighter disc, with the shipped weights:
    version 6 decodes exactly, its stream is as long as estimated (and as ``slice_bits`` says),
    and it is over 0.5% shorter than version 5, which still decodes."""
    from lvpnet.codecs.lvpnet_codec import LVPNetCodec
    from lvpnet.coding.estimate import slice_bits
    from lvpnet.coding.profiles import PROFILES
    from lvpnet.model import prep

    weights = RESOURCES / "lvpnet-v1.pt"
    if not weights.is_file():
        pytest.skip("shipped weights not present")
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[:128, :160]
    disc = 900.0 * (np.hypot(yy - 64, xx - 80) < 50) * (1 + 0.3 * np.sin(xx / 9.0))
    x = np.round(np.hypot(disc + rng.normal(0, 60, yy.shape), rng.normal(0, 60, yy.shape))).astype(np.int64)
    x = prep.collapse_gaps(prep.to_grid(x)[2])[0]  # as the codec hands a plane to the engine
    x -= x.min()
    eng = LVPNetCodec(weights, device="cpu").engine()
    (v6, est6), (v5, _est5) = (eng.encode_plane(x, PROFILES[n], want_bits=True) for n in (6, 5))
    assert np.array_equal(eng.decode_plane(v6, *x.shape, PROFILES[6]), x)
    assert np.array_equal(eng.decode_plane(v5, *x.shape, PROFILES[5]), x)
    real6, real5 = (32 * (len(v.latent) + len(v.pixels)) for v in (v6, v5))
    assert abs(real6 - est6) <= 128
    est = slice_bits(eng.model(), eng.dec, x, profile=PROFILES[6])
    assert est["pixel_bits"] + est["latent_bits"] + est["side_bits"] == pytest.approx(est6, rel=1e-9)
    assert real6 < 0.995 * real5


def test_table_index_numba_equals_numpy(monkeypatch):
    """The compiled pass and the numpy path give the same row for every pixel: locations on, just
    below and just above every threshold, and far beyond them, at every scale."""
    pytest.importorskip("numba")
    thr = edge.thresholds(80, 4, 0.08)
    rng = np.random.default_rng(7)
    s = rng.integers(0, 80, (40, 33))
    pick = thr[s, rng.integers(0, thr.shape[1], s.shape)]
    mu = np.clip(pick + rng.integers(-1, 2, s.shape) + (rng.random(s.shape) < 0.2) * 10**6, 0, None)
    fast = edge.table_index(mu, s, thr)
    monkeypatch.setattr(edge, "_table_index_kernel", lambda: False)
    slow = edge.table_index(mu, s, thr)
    assert np.array_equal(fast, slow) and len(np.unique(fast % edge.CLASSES)) == edge.CLASSES
