"""Bitstream version 10: neighbour-repeat flags coded in contexts of the prediction, adapting within a
stage (``coding.flag_adapt``).

The golden head-3 weights on the golden inputs whose planes carry flags: the encoder and the decoder
walk the same flag contexts (round trip, reference paths), the estimate is what the chunk pays,
the training estimate (``slice_bits``) and the Inspect maps (``analysis``) count the same bits, and
a version 9 reader of the same planes does not (the flags' coding is the version's).
"""


import functools

import numpy as np
import pytest
from golden_sets import SETS, weights_of, writer

from lvpnet.coding import flag_adapt
from lvpnet.coding.profiles import LATEST, PROFILES

WEIGHTS = weights_of("b10")  # the head-3 weights every golden set from b2 on shares
_writer = functools.partial(writer, "b10")  # writes any version with these weights
# inputs whose planes carry neighbour-repeat flags under these weights (v10 writes them otherwise than v9)
FLAGGED = ["flat_background_uint8", "padded_ct_int16"]
GREY = FLAGGED + ["blocks_uint8", "levels_uint16", "texture_uint16"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")




@pytest.fixture(scope="module")
def codec():
    c = _writer(10)
    assert LATEST >= 10 and PROFILES[10].adaptive_flags and not PROFILES[9].adaptive_flags
    assert set(range(1, 11)) <= set(c.reads_versions)
    return c


def _input(name):
    return np.load(SETS["b10"] / f"{name}.npy")


@pytest.mark.parametrize("name", FLAGGED + ["us_rgb_uint8"])
def test_flags_round_trip_and_differ_from_version_9(codec, name):
    x = _input(name)
    data = codec.encode(x)
    assert np.array_equal(codec.decode(data, x.shape, x.dtype, 10), x)
    old = _writer(9).encode(x)
    assert np.array_equal(codec.decode(old, x.shape, x.dtype, 9), x)
    if name in FLAGGED:
        assert data != old  # the flags are coded otherwise


@pytest.mark.parametrize("name", FLAGGED)
def test_the_estimate_is_what_the_chunk_pays(codec, name):
    x = _input(name)
    data = codec.encode(x)
    st = codec.chunk_stats(data, x.shape, x.dtype, 10)
    assert abs(st["pixel_bits"] - st["estimated_pixel_bits"]) < 64 + 0.01 * st["estimated_pixel_bits"]


@pytest.mark.parametrize("name", GREY)
def test_the_estimate_is_what_version_10_pays(codec, name):
    """``slice_bits`` (training) of version 10's profile walks version 10's flags: plus the
    side information, the decoder's own estimate of the chunk (the Inspect maps walk the latest
    version: ``test_bitstream11``)."""
    from lvpnet.codecs.lvpnet_base import costs
    from lvpnet.coding.estimate import slice_bits

    x = _input(name)
    data = codec.encode(x)
    est = codec.chunk_stats(data, x.shape, x.dtype, 10)["estimated_bits"]
    from lvpnet import analysis

    model = analysis.load_model(WEIGHTS)
    est_model = slice_bits(model.net, model.dec, x, profile=PROFILES[10], lattice_costs=costs)
    assert sum(est_model[k] for k in ("pixel_bits", "latent_bits", "side_bits")) == pytest.approx(est, rel=1e-9)


def test_adaptive_flags_pixel_bits_are_the_plan():
    """The per-pixel maps' flag bits (``AdaptiveFlags.pixel_bits``) sum to what ``plan`` codes."""
    rng = np.random.default_rng(0)
    ctx = flag_adapt.contexts(rng.integers(0, 3, (7, 40)), rng.integers(0, 60, (7, 40)),
                              rng.integers(0, 60, (7, 40)), rng.integers(0, 80, (7, 40)))
    hit = (rng.random((7, 40)) < 0.6) & (ctx > 0)
    a, b = flag_adapt.AdaptiveFlags(), flag_adapt.AdaptiveFlags()
    per_pixel = a.pixel_bits(hit, ctx)
    assert per_pixel.shape == ctx.shape and (per_pixel[ctx == 0] == 0).all()
    assert per_pixel.sum() == pytest.approx(b.plan(hit, ctx).bits(), rel=1e-12)
