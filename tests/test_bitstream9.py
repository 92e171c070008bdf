"""Bitstream version 9: the decoder computes nothing for the steps a base lattice gives.

The golden head-3 weights (4x4 sub-images, step 0 row by row): on inputs whose encoder takes a
base lattice, the decoder must never run the network (step 0's head and rows, the trunk of the
lattice's steps) on those steps, and a file must decode the same on the reference paths (float
trunk, torch head, numpy refinement and feedback) as on the fast ones, and be written the same.
"""


import functools

import numpy as np
import pytest
from golden_sets import SETS, weights_of, writer

from lvpnet.codecs.lvpnet_chunk import unpack_chunk
from lvpnet.codecs.lvpnet_codec import LVPNetCodec
from lvpnet.coding import feedback, lattice, refine, repeat
from lvpnet.coding.profiles import PROFILES
from lvpnet.model import head_kernel

WEIGHTS = weights_of("b9")  # the head-3 weights every golden set from b2 on shares
_writer = functools.partial(writer, "b9")  # writes any version with these weights
# inputs of the golden sets on which these weights take a base lattice (level 1 and level 2)
INPUTS = {"blocks_uint8": 1, "padded_ct_int16": 2}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def codec():
    c = LVPNetCodec(WEIGHTS, device="cpu")
    assert PROFILES[9].lattice_skip
    c.version = 9  # the codec writes a later version now; these tests guard 9's walk
    return c


def _input(name):
    return np.load(SETS["b9"] / f"{name}.npy")


class _Counting:
    """Wraps the integer decoder's network entry points and records the steps they ran."""

    def __init__(self, dec, monkeypatch):
        self.steps, self.rows = [], 0
        predict, step0_head, step0_rows = dec.predict, dec.step0_head, dec.step0_rows

        def counted_predict(feats, ctx, k, *a, **kw):
            self.steps.append(k)
            return predict(feats, ctx, k, *a, **kw)

        def counted_head(*a, **kw):
            self.steps.append(0)
            return step0_head(*a, **kw)

        def counted_rows(*a, **kw):
            self.rows += 1
            return step0_rows(*a, **kw)

        monkeypatch.setattr(dec, "predict", counted_predict)
        monkeypatch.setattr(dec, "step0_head", counted_head)
        monkeypatch.setattr(dec, "step0_rows", counted_rows)


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_the_decoder_runs_no_network_on_lattice_steps(codec, monkeypatch, name):
    x = _input(name)
    data = codec.encode(x)
    (plane,) = unpack_chunk(data, 1, 9)
    assert plane.base_level == INPUTS[name]
    dec = codec.engine().dec
    known = lattice.steps(dec.order, lattice.stride(dec.f, plane.base_level))
    count = _Counting(dec, monkeypatch)
    assert np.array_equal(codec.decode(data, x.shape, x.dtype, 9), x)
    assert count.rows == 0 and 0 not in count.steps  # step 0 is always on the lattice
    assert sorted(count.steps) == [k for k in range(dec.steps) if k not in known]
    # version 8 ran every step: the counter sees them
    count = _Counting(dec, monkeypatch)
    assert np.array_equal(codec.decode(_writer(8).encode(x), x.shape, x.dtype, 8), x)
    assert count.rows > 0 and sorted(set(count.steps)) == list(range(dec.steps))




@pytest.fixture
def reference_paths(monkeypatch):
    """Every exact fast path off: float trunk, torch head, numpy refinement and feedback."""
    def switch(codec):
        monkeypatch.setattr(codec.engine().dec, "int8", False)
        monkeypatch.setattr(head_kernel, "_KERNEL", False)
        monkeypatch.setattr(refine, "_KERNELS", False)
        monkeypatch.setattr(feedback, "_buckets_kernel", lambda: False)
        monkeypatch.setattr(repeat, "_candidates_kernel", lambda: False)
    return switch


@pytest.mark.parametrize("name", sorted(INPUTS) + ["us_rgb_uint8", "texture_uint16"])
def test_reference_and_fast_paths_agree(name, reference_paths):
    x = _input(name)
    fast = _writer(9)
    data = fast.encode(x)
    assert np.array_equal(fast.decode(data, x.shape, x.dtype, 9), x)
    ref = _writer(9)
    reference_paths(ref)
    assert np.array_equal(ref.decode(data, x.shape, x.dtype, 9), x)
    assert ref.encode(x) == data


def test_lattice_residuals_are_loco_i():
    L = np.array([[5, 7, 7], [6, 9, 4], [6, 6, 8]])
    e = feedback.lattice_residuals(L)
    # (0, 0) predicts itself; the first row from the left, the first column from above
    assert e[0].tolist() == [0, 2, 0] and e[:, 0].tolist() == [0, 1, 0]
    # (1, 1): a=6, b=7, c=5 <= min -> max(a, b) = 7; (2, 2): a=6, b=4, c=9 >= max -> 4
    assert e[1, 1] == 2 and e[2, 2] == 4
    assert feedback.lattice_residuals(np.zeros((0, 3), np.int64)).shape == (0, 3)


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_the_maps_and_the_estimate_are_what_version_9_pays(codec, name):
    """The estimate's walk (``coding.estimate.plane_walk``, which the Inspect maps and the training
    estimate share) walks version 9 as the encoder does (the lattice chosen first, the steps after it
    fitted against its network-free residuals): ``slice_bits`` of version 9's profile gives the
    decoder's own estimate of the chunk (the maps follow the latest version: ``test_bitstream11``)."""
    from lvpnet import analysis
    from lvpnet.codecs.lvpnet_base import costs
    from lvpnet.coding.estimate import slice_bits

    x = _input(name)
    data = codec.encode(x)
    est = codec.chunk_stats(data, x.shape, x.dtype, 9)["estimated_bits"]
    model = analysis.load_model(WEIGHTS)
    est_model = slice_bits(model.net, model.dec, x, profile=PROFILES[9], lattice_costs=costs)
    assert sum(est_model[k] for k in ("pixel_bits", "latent_bits", "side_bits")) == pytest.approx(est, rel=1e-9)
