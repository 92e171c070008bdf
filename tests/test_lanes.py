"""Slices walked in lock-step (``Engine.run_lanes``): one network call per step for a batch of slices,
on the float trunk a GPU runs. The same integers as one slice at a time, so the same files and values;
a damaged slice still named at its turn.

The CPU's int8 trunk walks one slice at a time (``Engine.batches``); these tests switch the engine to
the float trunk (``IntegerDecoder.int8 = False``), the path a GPU takes, so the batched calls run here.
"""

import numpy as np
import pytest
import torch

from lvpnet import slice_pool
from lvpnet.codecs import get_codec
from lvpnet.codecs.weights import shipped_weights
from lvpnet.compressor import compress
from lvpnet.errors import DamagedError, InputError
from lvpnet.lvpfile import LvpFile
from lvpnet.model import prep
from lvpnet.progress import run

pytestmark = pytest.mark.skipif(shipped_weights() is None, reason="no shipped weights")


def _volume(n=9, size=40, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    base = 600 + 300 * np.sin(yy / 5.0) * np.cos(xx / 7.0)
    vol = np.stack([base + 40 * k + rng.normal(0, 9, base.shape) for k in range(n)]).astype(np.int16)
    vol[3] = vol[2]  # a slice that repeats the one before: coded against it (a reference)
    vol[4, :, :20] = vol[3, :, :20]
    return vol


@pytest.fixture
def float_trunk(monkeypatch):
    """The learned codec's engine on the float trunk (a GPU's path), counting its network calls."""
    engine = get_codec("lvpnet").engine()
    calls = {"one": 0, "many": 0}
    predict, many = engine.dec.predict, engine.dec.predict_many

    def counted_one(*a, **k):
        calls["one"] += 1
        return predict(*a, **k)

    def counted_many(asks):
        calls["many"] += len(asks) > 1  # a lone ask goes to ``predict``, counted there
        return many(asks)

    monkeypatch.setattr(engine.dec, "int8", False)
    monkeypatch.setattr(engine.dec, "predict", counted_one)
    monkeypatch.setattr(engine.dec, "predict_many", counted_many)
    return calls


def test_predict_many_gives_each_slice_its_own_integers():
    engine = get_codec("lvpnet").engine()
    from lvpnet.model import IntegerDecoder

    dec = IntegerDecoder(engine._ck["decoder"], device="cpu", dtype=torch.float32, int8=False)
    gemm = IntegerDecoder(engine._ck["decoder"], device="cpu", dtype=torch.float32, int8=False, impl="gemm")
    rng = np.random.default_rng(1)
    asks = []
    for R in (4095, 255, 1000):
        feats = dec.features(torch.from_numpy(rng.integers(-5, 5, engine.latent_shape(96, 96))))
        ctx = [torch.from_numpy(rng.integers(0, R + 1, feats.shape[-2:])) for _ in range(dec.steps - 1)]
        asks.append((feats, ctx, R, prep.bit_depth(R)))
    for k in (1, 6, dec.steps - 1):
        batch = [(f, c[:k], k, R, B) for f, c, R, B in asks]
        one = [dec.predict(*a) for a in batch]
        # the convolutions as unfold + product too: what a GPU's batch runs (``predict_many``)
        for many in (dec.predict_many(batch), gemm.predict_many(batch)):
            for (mu, s), (mu1, s1) in zip(many, one):
                assert torch.equal(mu, mu1) and torch.equal(s, s1)
    with pytest.raises(ValueError, match="one step"):
        dec.predict_many([(asks[0][0], asks[0][1][:1], 1, 4095, 12), (asks[1][0], asks[1][1][:2], 2, 255, 8)])


def test_lanes_write_and_read_the_same_file(monkeypatch, float_trunk):
    vol = _volume()
    monkeypatch.delenv(slice_pool.LANES_ENV, raising=False)
    one = compress(vol, codec="lvpnet", verify=False)
    assert float_trunk["many"] == 0  # one lane: every ask answered on its own
    monkeypatch.setenv(slice_pool.LANES_ENV, "4")
    lanes = compress(vol, codec="lvpnet", verify=False)
    assert lanes == one
    assert float_trunk["many"] > 0
    lvp = LvpFile(lanes)
    assert lvp.coded_against_previous() > 0  # the runs' references are walked too
    # one network call a step for a batch of slices: fewer calls than one slice at a time
    monkeypatch.delenv(slice_pool.LANES_ENV)
    before = dict(float_trunk)
    assert np.array_equal(run(lvp.iter_decode()), vol)
    alone = float_trunk["one"] - before["one"]
    monkeypatch.setenv(slice_pool.LANES_ENV, "4")
    before = dict(float_trunk)
    assert np.array_equal(run(lvp.iter_decode()), vol)
    calls = sum(float_trunk.values()) - sum(before.values())  # a lone ask left in a round goes alone
    assert float_trunk["many"] > before["many"] and calls < 0.75 * alone


def test_lanes_match_the_int8_trunk_on_the_cpu(monkeypatch):
    """The default CPU path (int8 trunk, one slice at a time) and lock-step walks on the float trunk
    give the same file."""
    vol = _volume(n=6, seed=2)
    monkeypatch.delenv(slice_pool.LANES_ENV, raising=False)
    cpu = compress(vol, codec="lvpnet", verify=False)
    monkeypatch.setattr(get_codec("lvpnet").engine().dec, "int8", False)
    monkeypatch.setenv(slice_pool.LANES_ENV, "3")
    assert compress(vol, codec="lvpnet", verify=False) == cpu


def test_a_damaged_slice_is_named(monkeypatch, float_trunk):
    vol = _volume()
    data = bytearray(compress(vol, codec="lvpnet", verify=False))
    lvp = LvpFile(bytes(data))
    i = next(j for j in range(len(vol) - 1, 0, -1) if lvp._chunk(j)[1].id == "lvpnet")
    rec = lvp._reader.records[i]
    data[rec.offset + rec.length // 2] ^= 0x40
    monkeypatch.setenv(slice_pool.LANES_ENV, "3")
    with pytest.raises(DamagedError, match=f"slice {i}"):
        run(LvpFile(bytes(data)).iter_decode())


def test_how_many_lanes(monkeypatch):
    monkeypatch.delenv(slice_pool.LANES_ENV, raising=False)
    assert slice_pool.lanes("cpu", 512 * 512) == 1  # the int8 trunk gains nothing from a batch
    monkeypatch.setenv(slice_pool.LANES_ENV, "8")
    assert slice_pool.lanes("cpu", 512 * 512) == 8
    monkeypatch.setenv(slice_pool.LANES_ENV, "1000")
    assert slice_pool.lanes("cpu", 512 * 512) == slice_pool.MAX_LANES
    monkeypatch.setenv(slice_pool.LANES_ENV, "many")  # refused, as LVPNET_WORKERS=many is
    with pytest.raises(InputError, match="LVPNET_LANES=many: not a positive whole number"):
        slice_pool.lanes("cpu", 512 * 512)


def test_run_lanes_hands_each_walk_its_own_outcome(float_trunk):
    """A walk that fails mid-way (a damaged pixel stream: no checksum in the way here) fails alone;
    the walks beside it in lock-step finish with their values."""
    codec = get_codec("lvpnet")
    vol = _volume(n=6, seed=3)[[0, 1, 5]]
    chunks = [codec.encode(s) for s in vol]
    bad = bytearray(chunks[1])
    bad[len(bad) // 2 :] = bytes(len(bad) - len(bad) // 2)  # the stream's second half zeroed
    walks = [codec.decode_walk(c, vol[0].shape, vol.dtype, codec.version) for c in (chunks[0], bytes(bad), chunks[2])]
    out = codec.engine().run_lanes(walks)
    assert np.array_equal(out[0][0], vol[0]) and out[0][1] is None
    assert np.array_equal(out[2][0], vol[2]) and out[2][1] is None
    assert out[1][0] is None and isinstance(out[1][1], Exception)
    assert float_trunk["many"] > 0


def test_worker_processes_walk_their_tasks_in_lanes(monkeypatch, float_trunk):
    """Processes and lanes together (a GPU machine: the processes share the per-slice CPU stages out
    over the cores, each walks its task's slices in lock-step): the same file and values."""
    vol = _volume(n=9, seed=4)
    monkeypatch.delenv(slice_pool.LANES_ENV, raising=False)
    one = compress(vol, codec="lvpnet", verify=False)
    monkeypatch.setenv(slice_pool.LANES_ENV, "3")  # the workers take it from the environment too
    two = compress(vol, codec="lvpnet", verify=False, workers=2)
    assert two == one
    assert np.array_equal(run(LvpFile(two).iter_decode(workers=2)), vol)
