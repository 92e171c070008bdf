"""lvpnet.coding.blocks: the map of constant blocks ahead of a plane's pixels."""

import numpy as np
import pytest

from lvpnet.codecs.lvpnet_entropy import new_coder
from lvpnet.coding import blocks
from lvpnet.coding.blocks import BlockMap, lattice_view, plan, read, worth, write


def _plane(rng, H, W, R=255, flat_share=0.6):
    """A plane of noise with flat patches (some of one value, some of others)."""
    v = rng.integers(0, R + 1, (H, W))
    for _ in range(int(flat_share * H * W / 300)):
        y, x = rng.integers(0, H), rng.integers(0, W)
        h, w = rng.integers(4, 40, 2)
        v[y : y + h, x : x + w] = 0 if rng.random() < 0.7 else rng.integers(0, R + 1)
    return v


def _lattice(v, g):
    if g is None:
        return None, None
    m = np.zeros(v.shape, bool)
    m[::g, ::g] = True
    return np.where(m, v, 0), m


def _round_trip(v, R, g):
    kv, km = _lattice(v, g)
    bmap = plan(v, km)
    coder = new_coder()
    coder.encode_reverse(np.array([7], np.int32), blocks._UNIFORM, np.array([11], np.int32))  # read after the map
    est = write(coder, bmap, R, kv, km)
    words = coder.get_compressed()
    back = new_coder(words)
    got = read(back, v.shape, R, kv, km)
    assert back.decode(blocks._UNIFORM, np.array([11], np.int32))[0] == 7
    assert back.is_empty()
    assert np.array_equal(got.flags, bmap.flags)
    m = got.pixel_mask()
    assert np.array_equal(got.pixel_values()[m], v[m])  # every flagged pixel gets its value
    assert abs(est - blocks.bits(bmap, R, kv, km)) < 1e-6
    return bmap, est, words


@pytest.mark.parametrize("g", [None, 2, 4, 16])
@pytest.mark.parametrize("shape", [(64, 64), (77, 130), (8, 8), (5, 3)])
def test_round_trip(shape, g):
    rng = np.random.default_rng(hash((shape, g)) % 2**32)
    v = _plane(rng, *shape)
    bmap, est, words = _round_trip(v, 255, g)
    if g is not None:  # a block flagged with lattice pixels takes their value: they must agree
        has, agree, _ = lattice_view(*_lattice(v, g), v.shape)
        assert not (bmap.flags & ~agree).any()


def test_flags_every_constant_block_and_no_other():
    v = np.arange(24 * 32).reshape(24, 32) % 7
    v[:8, :16] = 3
    v[16:, 24:] = 0
    bmap = plan(v)
    expect = np.zeros((3, 4), bool)
    expect[0, :2] = expect[2, 3] = True
    assert np.array_equal(bmap.flags, expect)
    assert bmap.values[0, 0] == 3 and bmap.values[2, 3] == 0


def test_partial_edge_blocks_judged_on_their_pixels():
    v = np.zeros((10, 10), np.int64)
    v[0, 0] = 1
    bmap = plan(v)
    assert bmap.flags.tolist() == [[False, True], [True, True]]
    _round_trip(v, 1, None)


def test_constant_plane_costs_next_to_nothing():
    v = np.full((256, 256), 9)
    _bmap, est, _w = _round_trip(v, 255, None)
    assert est < 64  # 1024 flags that all hit and one value (8 bits)
    _bmap, est, _w = _round_trip(v, 255, 2)
    assert est < 64


def test_noise_has_no_flags_and_a_cheap_map():
    rng = np.random.default_rng(5)
    v = rng.integers(0, 4096, (128, 128))
    bmap, est, _w = _round_trip(v, 4095, None)
    assert bmap.count == 0 and est < 60
    assert not worth(bmap, 4095)


def test_real_bytes_follow_the_estimate():
    rng = np.random.default_rng(6)
    v = _plane(rng, 512, 512, flat_share=1.5)
    _bmap, est, words = _round_trip(v, 255, None)
    assert abs(32 * words.size - est) <= 0.01 * est + 96


def test_values_repeat_or_are_coded():
    v = np.zeros((16, 64), np.int64)
    v[:, 8:16] = 200
    v[:, 24:32] = 200
    v[:, 40:48] = 17
    v[8:, 56:] = 5  # the block above it holds two values
    v[0, 56] = 4
    bmap, _est, _w = _round_trip(v, 255, None)
    assert bmap.values[bmap.flags].tolist() == [0, 200, 0, 200, 0, 17, 0] + [0, 200, 0, 200, 0, 17, 0, 5]


def test_worth_with_pixel_costs():
    v = np.zeros((64, 64), np.int64)
    v[::2, ::3] = 1  # no constant block at all except none
    v[:32, :32] = 0
    bmap = plan(v)
    assert bmap.count == 16
    assert worth(bmap, 1, pixel_bits=np.full(v.shape, 0.5))
    assert not worth(bmap, 1, pixel_bits=np.zeros(v.shape))


def test_take_matches_the_sub_image():
    rng = np.random.default_rng(7)
    v = _plane(rng, 37, 45)
    bmap = plan(v)
    m = bmap.pixel_mask()
    for pos in [(0, 0), (1, 3), (3, 2)]:
        sub = m[pos[0] :: 4, pos[1] :: 4]
        assert np.array_equal(bmap.take(pos, 4, sub.shape), sub)
    row = bmap.take((5, 1), 4, (1, m[5, 1::4].size))
    assert np.array_equal(row[0], m[5, 1::4])
    vals = bmap.take((1, 3), 4, m[1::4, 3::4].shape, values=True)
    assert np.array_equal(vals[m[1::4, 3::4]], v[1::4, 3::4][m[1::4, 3::4]])


def test_other_range_never_gives_values_outside_it():
    """A stream read with another range (a damaged header) raises or stays inside the range."""
    bmap = BlockMap((32, 32), np.ones((4, 4), bool), np.arange(16).reshape(4, 4) * 60)
    coder = new_coder()
    write(coder, bmap, 1000, None, None)
    words = coder.get_compressed()
    assert np.array_equal(read(new_coder(words), (32, 32), 1000).values, bmap.values)
    try:
        got = read(new_coder(words), (32, 32), 255)
    except ValueError:
        return
    assert got.values.min() >= 0 and got.values.max() <= 255
