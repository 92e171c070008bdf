"""lvpnet.coding.latent_adapt: the latent's tables adapted to the slice, stage by stage (bitstream 5)."""

from pathlib import Path

import numpy as np
import pytest

from lvpnet.codecs.lvpnet_entropy import LatentCoder
from lvpnet.coding.latent_adapt import StagedTables, stage_bounds, staged_bits, staged_plan
from lvpnet.model.tables import TOTAL, quantize_probs

RESOURCES = Path(__file__).resolve().parents[1] / "resources"


@pytest.fixture(scope="module")
def tables():
    """Per-channel tables over 63 symbols, each peaked at a different value (like a trained prior)."""
    rng = np.random.default_rng(0)
    p = rng.random((6, 63)) * 0.2
    p[np.arange(6), rng.integers(20, 40, 6)] += 2.0
    return quantize_probs(p / p.sum(1, keepdims=True)).astype(np.int64)


def test_stage_edges_double():
    assert stage_bounds(1) == [0, 1]
    assert stage_bounds(2) == [0, 1, 2]
    assert stage_bounds(3) == [0, 1, 2, 3]
    assert stage_bounds(35) == [0, 1, 2, 4, 8, 16, 32, 35]
    assert stage_bounds(1849)[-2:] == [1024, 1849]


def test_each_stage_counts_the_stages_before(tables):
    syms = np.array([[5] * 8] * tables.shape[0])
    plan = staged_plan(tables, syms)
    assert [(a, b) for a, b, _t in plan] == [(0, 1), (1, 2), (2, 4), (4, 8)]
    for _a, _b, t in plan:
        assert t.dtype == np.int64 and (t >= 1).all() and (t.sum(1) == TOTAL).all()
    # the symbol seen grows likelier from stage to stage
    assert all(plan[i][2][0, 5] < plan[i + 1][2][0, 5] for i in range(len(plan) - 1))
    st = StagedTables(tables)
    st.add(syms[:, :4])
    assert np.array_equal(st.tables(), plan[3][2])


@pytest.mark.parametrize("n", [1, 2, 3, 35, 300])
def test_staged_round_trip_and_estimate(tables, n):
    rng = np.random.default_rng(n)
    C = tables.shape[0]
    syms = np.where(rng.random((C, n)) < 0.8, np.argmax(tables, 1)[:, None], rng.integers(0, 63, (C, n)))
    coder = LatentCoder(tables)
    words = coder.encode(syms.reshape(C, 1, n), staged=True)
    assert np.array_equal(coder.decode(words, (C, 1, n), staged=True).reshape(C, n), syms)
    est = coder.bits(syms.reshape(C, 1, n), staged=True)
    assert est == pytest.approx(staged_bits(tables, syms).sum())
    assert 32 * len(words) - 64 <= est + 64 and est <= 32 * len(words) + 64  # the stream is what was estimated


def test_a_constant_latent_costs_almost_nothing(tables):
    """What the trained GMSM gives (one value per channel over the slice): the staged tables learn
    it within a few symbols; the fixed tables pay for every block."""
    C, n = tables.shape[0], 1849  # a 1368 x 1350 slice has 43 x 43 blocks
    syms = np.tile(np.argmax(tables, 1)[:, None], (1, n))
    coder = LatentCoder(tables)
    staged = 32 * len(coder.encode(syms.reshape(C, 43, 43), staged=True))
    fixed = 32 * len(coder.encode(syms.reshape(C, 43, 43)))
    assert staged < fixed / 10


def test_damaged_staged_stream_is_refused(tables):
    rng = np.random.default_rng(1)
    C = tables.shape[0]
    syms = rng.integers(0, 63, (C, 2, 9))
    coder = LatentCoder(tables)
    words = coder.encode(syms, staged=True)
    with pytest.raises(ValueError, match="left over"):
        coder.decode(np.concatenate([words, words[:3]]), (C, 2, 9), staged=True)


@pytest.mark.usefixtures("one_torch_thread")
def test_the_shipped_model_pays_far_less_for_its_latent_from_version_5():
    """A real scan (one 512 x 512 slice of the bundled sample CT) with the shipped weights: the
    version 5 chunk decodes exactly, and its latent stream is far shorter than version 4's
    (10 words against 332 when written)."""
    nib = pytest.importorskip("nibabel")
    from lvpnet.codecs.lvpnet_codec import LVPNetCodec, unpack_chunk

    weights = RESOURCES / "lvpnet-v1.pt"
    if not weights.is_file():
        pytest.skip("shipped weights not present")
    x = np.asarray(nib.load(RESOURCES / "sample_ct.nii.gz").dataobj)[..., 0].T
    x = np.ascontiguousarray(x).astype(np.int16)
    v5 = LVPNetCodec(weights, device="cpu")
    v4 = LVPNetCodec(weights, device="cpu")
    v5.version, v4.version = 5, 4
    d5, d4 = v5.encode(x), v4.encode(x)
    assert np.array_equal(v5.decode(d5, x.shape, x.dtype, 5), x)
    lat5, lat4 = len(unpack_chunk(d5, 1, 5)[0].latent), len(unpack_chunk(d4, 1, 4)[0].latent)
    assert lat5 * 10 < lat4 and len(d5) < len(d4)
