"""The encoder's early level 2 (``coding.lattice_estimate``, ``Engine._lattice_first``'s ``early``) on
awkward planes: whatever the estimate says, taking level 2 before the walk must write the bytes the
exact choice writes when it takes level 2 too. The estimate's own guards keep such planes off the
early path; these tests force both paths to level 2, so the mechanism itself is checked on shapes
(1 row, 1 column, sides not multiples of 4), 16-bit extremes, negative int16 and RGB."""

import numpy as np
import pytest

from lvpnet.codecs.lvpnet_codec import LVPNetCodec
from lvpnet.coding import lattice, lattice_estimate

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def codec():
    c = LVPNetCodec(device="cpu")
    try:
        c.engine()
    except Exception as e:  # no shipped weights on this machine
        pytest.skip(f"no lvpnet engine: {e}")
    pytest.importorskip("imagecodecs")
    return c


def _both(codec, monkeypatch, x):
    """(bytes with level 2 taken early, bytes with level 2 chosen exactly)."""
    with monkeypatch.context() as m:
        m.setattr(lattice_estimate, "early_level", lambda *a: 2)
        early = codec.encode(x)
    with monkeypatch.context() as m:
        m.setattr(lattice_estimate, "early_level", lambda *a: 0)
        m.setattr(lattice, "choose_by_steps", lambda *a: 2)
        exact = codec.encode(x)
    return early, exact


def _smooth(shape, lo, hi, seed=0, dtype=np.uint16):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    base = (yy * 3 + xx * 5) % 97 + rng.integers(0, 9, shape)
    a = lo + (base - base.min()) * (hi - lo) // max(1, int(base.max() - base.min()))
    return a.astype(dtype)


@pytest.mark.parametrize("shape", [(1, 9), (9, 1), (2, 3), (5, 7), (6, 6), (13, 10), (18, 23)])
def test_early_level_2_is_the_exact_level_2_on_awkward_shapes(codec, monkeypatch, shape):
    x = _smooth(shape, 100, 3000)
    early, exact = _both(codec, monkeypatch, x)
    assert early == exact
    assert np.array_equal(codec.decode(early, x.shape, x.dtype, codec.version), x)


@pytest.mark.parametrize("lo, hi, dtype", [(0, 0xFFFF, np.uint16), (-32768, 32767, np.int16), (-900, -3, np.int16)])
def test_early_level_2_is_the_exact_level_2_at_the_extremes(codec, monkeypatch, lo, hi, dtype):
    x = _smooth((21, 19), lo, hi, seed=3, dtype=dtype)
    x[0, 0], x[-1, -1] = lo, hi
    early, exact = _both(codec, monkeypatch, x)
    assert early == exact
    assert np.array_equal(codec.decode(early, x.shape, x.dtype, codec.version), x)


def test_early_level_2_is_the_exact_level_2_on_rgb(codec, monkeypatch):
    x = np.stack([_smooth((17, 14), 0, 0xFFFF, seed=s) for s in range(3)], axis=-1)
    early, exact = _both(codec, monkeypatch, x)
    assert early == exact
    assert np.array_equal(codec.decode(early, x.shape, x.dtype, codec.version), x)


@pytest.mark.parametrize("shape", [(1, 70000), (3, 30000), (4, 16384), (255, 257), (256, 256), (259, 261)])
def test_early_level_guards_and_thin_planes(shape):
    """No error on thin or odd planes; below ``MIN_PIXELS`` or under 4 rows / columns: no early level."""
    v = _smooth(shape, 0, 4000).astype(np.int64)
    costs = {1: 1.0, 2: 1.0}  # JPEG-XL "free": the estimate would take level 2 wherever it looks
    order = [(0, 0), (2, 2), (0, 2), (2, 0)] + [(i, j) for i in range(4) for j in range(4) if i % 2 or j % 2]
    got = lattice_estimate.early_level(v, costs, order, 4)
    eligible = v.size >= lattice_estimate.MIN_PIXELS and min(shape) >= 4
    assert got == (2 if eligible else 0)
    e1, e2 = lattice_estimate.estimated_bits(v)
    assert 0 <= e1 <= e2 and np.isfinite(e2)


@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (2, 3), (3, 2), (3, 3), (2, 2)])
def test_estimate_of_tiny_planes_does_not_raise(shape):
    """``estimated_bits`` is public: a plane too small for some of the lattice's steps costs 0 for them."""
    v = np.arange(np.prod(shape), dtype=np.int64).reshape(shape) * 7
    e1, e2 = lattice_estimate.estimated_bits(v)
    assert 0 <= e1 <= e2 and np.isfinite(e2)


def test_early_level_2_is_the_exact_level_2_with_a_reference_slice(codec, monkeypatch):
    """Profiles with ``reference``: the previous slice's repeat flags ride on the items the early path
    keeps, as on those the exact choice keeps."""
    prev = _smooth((22, 26), 0, 4000, seed=5)
    x = prev.copy()
    x[5:12, 3:20] += 7  # most pixels repeat the reference
    with monkeypatch.context() as m:
        m.setattr(lattice_estimate, "early_level", lambda *a: 2)
        early = codec.encode(x, reference=prev)
    with monkeypatch.context() as m:
        m.setattr(lattice_estimate, "early_level", lambda *a: 0)
        m.setattr(lattice, "choose_by_steps", lambda *a: 2)
        exact = codec.encode(x, reference=prev)
    assert early == exact
    assert np.array_equal(codec.decode(early, x.shape, x.dtype, codec.version, reference=prev), x)


def test_rgb_chroma_at_the_widest_range_decodes(codec):
    """16-bit RGB whose R - G spans -65535..65535: the plane range is ``lvpnet_chunk.MAX_RANGE`` exactly,
    which the chunk reader's new bound must still accept."""
    from lvpnet.codecs import lvpnet_chunk

    x = np.stack([_smooth((12, 13), 0, 0xFFFF, seed=s) for s in range(3)], axis=-1)
    x[0, 0] = (0xFFFF, 0, 0)
    x[1, 1] = (0, 0xFFFF, 0)
    rg = x[..., 0].astype(np.int64) - x[..., 1]
    assert int(rg.max() - rg.min()) == lvpnet_chunk.MAX_RANGE
    data = codec.encode(x)
    assert np.array_equal(codec.decode(data, x.shape, x.dtype, codec.version), x)


def _sample_ct_slice(i=6):
    from pathlib import Path

    nib = pytest.importorskip("nibabel")
    path = Path(__file__).resolve().parents[1] / "resources" / "sample_ct.nii.gz"
    return np.ascontiguousarray(np.asarray(nib.load(path).dataobj)[:, :, i].T).astype(np.int16)


def test_pixels_repeating_the_reference_are_left_out_of_the_estimate():
    v = _sample_ct_slice().astype(np.int64)
    v -= v.min()
    e1, e2 = lattice_estimate.estimated_bits(v)
    clear = {1: e1, 2: e2 * (1 - 2 * lattice_estimate.MARGIN)}
    order = [(0, 0), (2, 2), (0, 2), (2, 0)] + [(i, j) for i in range(4) for j in range(4) if i % 2 or j % 2]
    assert lattice_estimate.early_level(v, clear, order, 4) == 2
    assert lattice_estimate.early_level(v, clear, order, 4, np.full_like(v, -1)) == 2  # no repeats: the same
    assert lattice_estimate.early_level(v, clear, order, 4, v) == 0  # all repeat: the learned bits near 0
    half = np.where(np.arange(v.shape[0])[:, None] < v.shape[0] // 2, v, -1)
    k1, k2 = lattice_estimate.estimated_bits(v, half != v)
    assert 0 < k2 < e2 and 0 < k1 < e1


def test_a_slice_repeating_its_reference_keeps_the_exact_choice(codec, monkeypatch):
    """The estimate knows no reference flags: a CT slice coded against itself was taken to level 2
    early (52,509 bytes) where the exact choice writes 1,243; its repeats now leave the estimate."""
    x = _sample_ct_slice()
    got = codec.encode(x, reference=x)
    monkeypatch.setattr(lattice_estimate, "early_level", lambda *a: 0)
    assert got == codec.encode(x, reference=x)
    assert len(got) < 5000
