"""The encoder's early base-lattice choice (``coding.lattice_estimate``): level 2 taken before the walk
where the network-free estimate is far from a tie, and then the chunk is the one the exact choice
of that level writes (the lattice's steps are neither walked nor fitted, nothing else changes)."""

import numpy as np
import pytest

from lvpnet.codecs import lvpnet_base, lvpnet_engine
from lvpnet.codecs.lvpnet_codec import LVPNetCodec
from lvpnet.coding import lattice_estimate

ORDER = [(0, 0), (2, 2), (0, 2), (2, 0), (1, 1), (1, 3), (3, 1), (3, 3),
         (0, 1), (0, 3), (2, 1), (2, 3), (1, 0), (1, 2), (3, 0), (3, 2)]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _noisy_ct(seed=0, n=256):
    """A smooth body in correlated noise on a 12-bit range."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n, :n] / n
    body = 1200.0 * ((yy - 0.5) ** 2 + (xx - 0.5) ** 2 < 0.15)
    noise = rng.normal(0, 18, (n + 2, n + 2))
    noise = (noise[1:-1, 1:-1] + 0.8 * (noise[:-2, 1:-1] + noise[2:, 1:-1] + noise[1:-1, :-2] + noise[1:-1, 2:])) / 2
    return np.clip(np.round(800 + body + noise), 0, 4095).astype(np.int64)


def test_estimate_of_a_constant_plane_is_nothing():
    assert lattice_estimate.estimated_bits(np.full((64, 64), 7, np.int64)) == (0.0, 0.0)


def test_estimate_grows_with_the_noise_and_covers_both_lattices():
    rng = np.random.default_rng(1)
    quiet = rng.integers(0, 4, (128, 128))
    loud = rng.integers(0, 256, (128, 128))
    (q1, q2), (l1, l2) = lattice_estimate.estimated_bits(quiet), lattice_estimate.estimated_bits(loud)
    assert 0 < q1 < q2 and 0 < l1 < l2 and l2 > 3 * q2
    # i.i.d. uniform 8-bit noise: about 8 bits a pixel, whatever the predictor (a geometric law is no
    # uniform one: within 15%)
    assert l2 == pytest.approx(8.0 * loud[::2, ::2].size, rel=0.15)


def test_early_level_only_where_clear():
    v = _noisy_ct()
    e1, e2 = lattice_estimate.estimated_bits(v)
    clear = {1: e1, 2: e2 * (1 - 2 * lattice_estimate.MARGIN)}  # level 2 saves 4%, level 1 nothing
    assert lattice_estimate.early_level(v, clear, ORDER, 4) == 2
    assert lattice_estimate.early_level(v, {1: e1, 2: e2}, ORDER, 4) == 0  # a tie: weighed exactly
    assert lattice_estimate.early_level(v, {1: 0.5 * e1, 2: clear[2]}, ORDER, 4) == 0  # level 1 saves more
    assert lattice_estimate.early_level(v, {2: clear[2]}, ORDER, 4) == 0  # not the levels it knows
    assert lattice_estimate.early_level(v, clear, ORDER[::-1], 4) == 0  # another order
    small = v[:128, :128]
    assert small.size < lattice_estimate.MIN_PIXELS
    assert lattice_estimate.early_level(small, {1: 1.0, 2: 1.0}, ORDER, 4) == 0


def _sample_ct_slice(i=6):
    """A slice of the bundled sample CT (512 x 512): its lattice's score is about 0.034."""
    from pathlib import Path

    nib = pytest.importorskip("nibabel")
    path = Path(__file__).resolve().parents[1] / "resources" / "sample_ct.nii.gz"
    return np.ascontiguousarray(np.asarray(nib.load(path).dataobj)[:, :, i].T).astype(np.int16)


def test_early_chunk_is_the_exact_choice_of_that_level(monkeypatch):
    """Taken early, level 2 writes the bytes the exact choice writes when it takes level 2 too,
    and the chunk decodes (the decoder is unchanged: the stream records the level)."""
    codec = LVPNetCodec(device="cpu")
    eng = codec.engine()
    x = _sample_ct_slice()
    v = x.astype(np.int64) - int(x.min())
    costs = lvpnet_base.costs(v, int(v.max()), eng.dec.f)
    assert lattice_estimate.early_level(v, costs, eng.dec.order, eng.dec.f) == 2
    walked = []
    walk = lvpnet_engine.Engine._walk

    def counted(self, *a, **kw):
        walked.append(kw.get("skip", frozenset()))
        return walk(self, *a, **kw)

    monkeypatch.setattr(lvpnet_engine.Engine, "_walk", counted)
    early = codec.encode(x)
    monkeypatch.setattr(lattice_estimate, "early_level", lambda *a: 0)
    exact = codec.encode(x)
    assert walked == [frozenset({0, 1, 2, 3}), frozenset()]
    assert early == exact
    assert np.array_equal(codec.decode(early, x.shape, x.dtype, codec.version), x)
