"""Bitstream version 11: constant 8 x 8 blocks leave the pixel stream (``coding.blocks``), the map on
or off per plane in the coding mode (``coding.block_choice``).

The golden head-3 weights on the golden inputs: round trips (grey, RGB, empty and constant planes,
tiny and odd shapes), a plane that takes the map and one that does not, the estimate within 1% of
what the chunk pays, the training estimate (``slice_bits``) and the Inspect maps (``analysis``)
counting the same bits as the decoder, and every earlier version still written and read as before.
"""

import functools

import numpy as np
import pytest
from golden_sets import SETS, weights_of, writer

from lvpnet.codecs.lvpnet_codec import LVPNetCodec
from lvpnet.coding import blocks
from lvpnet.coding.profiles import LATEST, PROFILES

WEIGHTS = weights_of("b11")
_writer = functools.partial(writer, "b11")  # writes any version with these weights
MAPPED = "us_overlay_rgb_uint8"  # its chroma planes take the map under these weights
GREY = ["us_blocks_uint8", "flat_background_uint8", "padded_ct_int16", "blocks_uint8", "texture_uint16"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")




@pytest.fixture(scope="module")
def codec():
    c = LVPNetCodec(WEIGHTS, device="cpu")
    assert c.version == LATEST == 11 and PROFILES[11].block_map and not PROFILES[10].block_map
    assert set(range(1, 12)) <= set(c.reads_versions)
    return c


def _input(name):
    return np.load(SETS["b11"] / f"{name}.npy")


@pytest.fixture
def maps_read(monkeypatch):
    """The block maps the decoder reads (their counts of flagged blocks)."""
    seen, read = [], blocks.read

    def counted(*a, **kw):
        bmap = read(*a, **kw)
        seen.append(bmap.count)
        return bmap

    monkeypatch.setattr(blocks, "read", counted)
    return seen


def test_a_plane_takes_the_map_where_it_pays(codec, maps_read):
    x = _input(MAPPED)
    data = codec.encode(x)
    assert np.array_equal(codec.decode(data, x.shape, x.dtype, 11), x)
    assert maps_read and all(n > 0 for n in maps_read)
    old = _writer(10).encode(x)
    assert len(data) < len(old)  # the map pays here
    assert np.array_equal(codec.decode(old, x.shape, x.dtype, 10), x)


@pytest.mark.parametrize("name", GREY + ["us_rgb_uint8", "ct_int16", "xr_uint8_odd", "levels_uint16"])
def test_round_trip_and_never_more_than_the_mode_bit(codec, name):
    x = _input(name)
    data = codec.encode(x)
    assert np.array_equal(codec.decode(data, x.shape, x.dtype, 11), x)
    planes = 3 if x.ndim == 3 else 1
    assert len(data) <= len(_writer(10).encode(x)) + planes  # at worst a bit per plane, rounded up to a byte


@pytest.mark.parametrize("name", ["cine_uint8", "cine_rgb_uint8"])
def test_reference_slices_round_trip(codec, name):
    x, ref = _input(name), np.load(SETS["b11"] / f"{name}.ref.npy")
    data = codec.encode(x, reference=ref)
    assert np.array_equal(codec.decode(data, x.shape, x.dtype, 11, reference=ref), x)


@pytest.mark.parametrize("x", [
    np.zeros((19, 23), np.uint8),  # constant: no streams
    np.full((16, 16, 3), 77, np.uint8),  # constant RGB
    np.array([[7]], np.uint16),  # one pixel
    np.arange(40, dtype=np.uint8).reshape(1, 40) % 3,  # one row
    np.pad(np.eye(9, dtype=np.uint16) * 900, ((30, 1), (2, 40))),  # one diagonal on a wide flat plane
    np.pad(np.arange(12, dtype=np.uint8).reshape(3, 4), ((13, 0), (0, 17)), constant_values=5),
], ids=["constant", "constant_rgb", "pixel", "row", "diagonal", "corner"])
def test_edge_planes_round_trip(codec, x):
    data = codec.encode(x)
    assert np.array_equal(codec.decode(data, x.shape, x.dtype, 11), x)


def test_rgb_whose_chroma_is_flat_but_for_text(codec, maps_read):
    rng = np.random.default_rng(5)
    g = rng.integers(0, 200, (40, 56)).astype(np.uint8)
    x = np.repeat(g[..., None], 3, 2)
    x[3:7, 8:30, 0] = 255
    data = codec.encode(x)
    assert np.array_equal(codec.decode(data, x.shape, x.dtype, 11), x)


@pytest.mark.parametrize("name", [MAPPED, "us_blocks_uint8", "padded_ct_int16"])
def test_the_estimate_is_what_the_chunk_pays(codec, name):
    x = _input(name)
    data = codec.encode(x)
    st = codec.chunk_stats(data, x.shape, x.dtype, 11)
    assert abs(st["pixel_bits"] - st["estimated_pixel_bits"]) < 64 + 0.01 * st["estimated_pixel_bits"]


@pytest.mark.parametrize("version", [9, 10, 11])
def test_the_estimate_per_version(version):
    x = _input(MAPPED)
    c = _writer(version)
    data = c.encode(x)
    st = c.chunk_stats(data, x.shape, x.dtype, version)
    assert abs(st["pixel_bits"] - st["estimated_pixel_bits"]) < 64 + 0.01 * st["estimated_pixel_bits"]


@pytest.mark.parametrize("name", GREY)
def test_the_maps_and_the_estimate_are_what_version_11_pays(codec, name):
    """``slice_bits`` (training) and ``analysis`` (Inspect) walk version 11's block map: plus the
    side information, the decoder's own estimate of the chunk."""
    from lvpnet import analysis
    from lvpnet.codecs.lvpnet_base import costs
    from lvpnet.coding.estimate import slice_bits

    x = _input(name)
    data = codec.encode(x)
    est = codec.chunk_stats(data, x.shape, x.dtype, 11)["estimated_bits"]
    model = analysis.load_model(WEIGHTS)
    est_model = slice_bits(model.net, model.dec, x, lattice_costs=costs)
    assert sum(est_model[k] for k in ("pixel_bits", "latent_bits", "side_bits")) == pytest.approx(est, rel=1e-9)
    assert analysis.analyse_slice(x, model).total_bits + est_model["side_bits"] == pytest.approx(est, rel=1e-9)


def test_the_maps_count_a_mapped_rgb_as_the_decoder(codec):
    """The RGB input whose chroma planes take the map: the Inspect maps of each plane, plus the side
    information, are the decoder's estimate of the chunk."""
    from lvpnet import analysis
    from lvpnet.codecs.lvpnet_base import costs
    from lvpnet.coding.estimate import slice_bits
    from lvpnet.model.prep import rgb_to_planes

    x = _input(MAPPED)
    data = codec.encode(x)
    est = codec.chunk_stats(data, x.shape, x.dtype, 11)["estimated_bits"]
    model = analysis.load_model(WEIGHTS)
    side = sum(slice_bits(model.net, model.dec, p, lattice_costs=costs)["side_bits"] for p in rgb_to_planes(x))
    assert analysis.analyse_slice(x, model, rgb=True).total_bits + side == pytest.approx(est, rel=1e-9)


def test_the_map_with_reference_flags(codec, maps_read):
    """A frame coded against the one before whose chroma planes take the map: the map's pixels
    carry no reference flag either, and the decoder, given the frame before, reads it back."""
    rng = np.random.default_rng(3)
    x = _input(MAPPED)
    ref = x.copy()
    noisy = rng.random(x.shape[:2]) < 0.3
    ref[noisy] = rng.integers(0, 255, ref[noisy].shape)
    x[30:40, 10:30] = rng.integers(0, 255, x[30:40, 10:30].shape)
    data = codec.encode(x, reference=ref)
    assert codec.needs_reference(data, x.shape, 11)
    assert np.array_equal(codec.decode(data, x.shape, x.dtype, 11, reference=ref), x)
    assert maps_read and all(n > 0 for n in maps_read)
    st = codec.chunk_stats(data, x.shape, x.dtype, 11, reference=ref)
    assert abs(st["pixel_bits"] - st["estimated_pixel_bits"]) < 64 + 0.01 * st["estimated_pixel_bits"]
