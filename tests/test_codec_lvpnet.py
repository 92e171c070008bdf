"""The learned codec: real constriction bitstreams, bit-exact round trips, registry and safety net.

Uses a small untrained model (configs/tiny-test.json, torch seed 0) saved to a temporary
checkpoint: the format and exactness do not depend on training.
"""

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from lvpnet import codecs
from lvpnet.codecs import weights
from lvpnet.codecs.lvpnet_codec import LVPNetCodec, Plane, pack_chunk, unpack_chunk
from lvpnet.coding.profiles import PROFILES
from lvpnet.compressor import compress
from lvpnet.errors import InputError
from lvpnet.lvpfile import LvpFile

ROOT = Path(__file__).resolve().parents[1]


def _checkpoint(path, seed=0, **over):
    from lvpnet.model import LVPNet, save_checkpoint

    cfg = json.loads((ROOT / "configs" / "tiny-test.json").read_text())["model"]
    cfg.update(over)
    torch.manual_seed(seed)
    save_checkpoint(path, LVPNet(cfg))
    return path


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return _checkpoint(tmp_path_factory.mktemp("lvpnet") / "tiny.pt")


@pytest.fixture(scope="module")
def codec(tiny):
    return LVPNetCodec(tiny, device="cpu")


def _smooth(rng, shape, lo, hi, dtype):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    base = (np.sin(yy / 7.0) + np.cos(xx / 11.0) + 2) / 4
    img = lo + base * (hi - lo) + rng.normal(0, (hi - lo) * 0.02, size=shape)
    return np.clip(np.round(img), lo, hi).astype(dtype)


def _cases():
    rng = np.random.default_rng(7)
    full = rng.integers(-32768, 32768, (40, 37)).astype(np.int16)
    full[0, 0], full[-1, -1] = -32768, 32767
    twelve = _smooth(rng, (48, 50), 0, 4095, np.uint16)
    twelve[5, :] |= 1 << 15  # overlay bits above BitsStored
    twelve[9, 3] = 65535
    return {
        "uint8": _smooth(rng, (40, 50), 0, 255, np.uint8),
        "uint8_noise": rng.integers(0, 256, (33, 35)).astype(np.uint8),
        "int8": rng.integers(-128, 128, (31, 29)).astype(np.int8),
        "uint16": _smooth(rng, (36, 64), 0, 65535, np.uint16),
        "int16_full_range": full,
        "int16_ct": _smooth(rng, (64, 64), -1024, 3071, np.int16),
        "uint16_12bit_overlay": twelve,
        "odd_1x1": np.array([[4242]], np.uint16),
        "odd_1x2": np.array([[-3, 9]], np.int16),
        "odd_3x5": rng.integers(-500, 500, (3, 5)).astype(np.int16),
        "odd_65x33": _smooth(rng, (65, 33), 0, 1000, np.uint16),
        "odd_2x70": rng.integers(0, 3, (2, 70)).astype(np.uint8),
        "constant": np.full((20, 30), -7, np.int16),
        "constant_max": np.full((5, 6), 65535, np.uint16),
        "two_values": (rng.random((30, 30)) < 0.5).astype(np.uint8) * 255,
        "rgb_uint8": np.stack([_smooth(rng, (30, 41), 0, 255, np.uint8) for _ in range(3)], -1),
        "rgb_uint8_grey": np.repeat(_smooth(rng, (17, 19), 0, 255, np.uint8)[..., None], 3, -1),
        "rgb_uint16": rng.integers(0, 65536, (9, 11, 3)).astype(np.uint16),
        "rgb_constant": np.full((4, 4, 3), 9, np.uint8),
    }


CASES = _cases()


@pytest.mark.parametrize("name", list(CASES))
def test_roundtrip_bit_exact(codec, name):
    x = CASES[name]
    data = codec.encode(x)
    y = codec.decode(data, x.shape, x.dtype, codec.version)
    assert y.dtype == x.dtype and y.shape == x.shape
    assert np.array_equal(x, y)
    planes = unpack_chunk(data, 3 if x.ndim == 3 else 1, codec.version)
    for p in planes:
        assert (p.R == 0) == (len(p.latent) == 0) == (len(p.pixels) == 0) and p.step >= 1 and p.gaps.shape[1] == 2
        assert (p.base_level == 0) == (p.base == b"")


def test_large_odd_slice(codec):
    x = _smooth(np.random.default_rng(3), (513, 511), -1000, 3000, np.int16)
    assert np.array_equal(codec.decode(codec.encode(x), x.shape, x.dtype, LVPNetCodec.version), x)


@pytest.mark.parametrize("name", ["uint8_noise", "int16_full_range", "uint16_12bit_overlay", "rgb_uint16", "odd_3x5"])
def test_roundtrip_perturbed_model(perturbed, name):
    x = CASES[name]
    assert np.array_equal(perturbed.decode(perturbed.encode(x), x.shape, x.dtype, LVPNetCodec.version), x)


def test_accepts_integers_up_to_16_bits(codec):
    for dt in ("u1", "i1", "<u2", "<i2"):
        assert codec.accepts(np.dtype(dt), False) and codec.accepts(np.dtype(dt), True)
    for dt in ("<i4", "<u4", "<i8", "<f4", "<f8", "?", "<f2"):
        assert not codec.accepts(np.dtype(dt), False)


def test_constant_slice_has_no_streams(codec):
    data = codec.encode(np.full((8, 9), 3, np.uint8))
    assert len(data) == 1 + 22  # the plane header alone


def test_chunk_stats_real_and_estimated(codec):
    x = CASES["int16_ct"]
    data = codec.encode(x)
    st = codec.chunk_stats(data, x.shape, x.dtype, LVPNetCodec.version)
    assert st["latent_bits"] + st["pixel_bits"] + 8 * (1 + 22) == 8 * len(data)  # + plane count and header
    assert st["estimated_bits"] == pytest.approx(st["estimated_latent_bits"] + st["estimated_pixel_bits"])
    # real ANS streams within 32 bits per stream (+ a hair) of the ideal code length
    assert abs(st["latent_bits"] - st["estimated_latent_bits"]) < 64 + 0.01 * st["estimated_latent_bits"]
    assert abs(st["pixel_bits"] - st["estimated_pixel_bits"]) < 64 + 0.005 * st["estimated_pixel_bits"]


@pytest.mark.parametrize("version", sorted(PROFILES))
def test_the_estimate_is_what_every_version_pays(tiny, version):
    """``chunk_stats``' estimate (the engine's, the walk training and Inspect rebuild) against the real
    streams of a chunk written in each bitstream version: within an ANS stream's flush."""
    writer = LVPNetCodec(tiny, device="cpu")
    writer.version = version
    for x in (CASES["int16_ct"], CASES["rgb_uint8"]):
        data = writer.encode(x)
        st = writer.chunk_stats(data, x.shape, x.dtype, version)
        planes = 3 if x.ndim == 3 else 1
        assert abs(st["latent_bits"] - st["estimated_latent_bits"]) < planes * 64 + 0.01 * st["estimated_latent_bits"]
        assert abs(st["pixel_bits"] - st["estimated_pixel_bits"]) < planes * 64 + 0.005 * st["estimated_pixel_bits"]


@pytest.fixture(scope="module")
def perturbed(tmp_path_factory):
    """Random in-range integer weights everywhere (as in test_model_intexact), so no path is trivial."""
    from lvpnet.model import LVPNet, save_checkpoint
    from lvpnet.model.intnet import IntConv2d

    cfg = json.loads((ROOT / "configs" / "tiny-test.json").read_text())["model"]
    torch.manual_seed(3)
    model = LVPNet(cfg)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, IntConv2d):
                mod.weight.copy_(torch.randint(-127, 128, mod.weight.shape, generator=g).float() * 2.0**-mod.fw)
                mod.bias.copy_(torch.randint(-5000, 5000, mod.bias.shape, generator=g).float() * 2.0 ** -(mod.fw + mod.f_in))
    path = tmp_path_factory.mktemp("lvpnet") / "perturbed.pt"
    save_checkpoint(path, model)
    return LVPNetCodec(path, device="cpu")


@pytest.mark.parametrize("which", ["tiny", "perturbed"])
@pytest.mark.parametrize("name", ["int16_ct", "uint8_noise", "int16_full_range", "rgb_uint16"])
def test_float32_integer_path_equals_float64(codec, perturbed, which, name):
    """The codec's float32 integer path gives the same (mu, s) as float64 (exact under 2**24)."""
    from lvpnet.model import IntegerDecoder, prep

    eng = (codec if which == "tiny" else perturbed).engine()
    dec64 = IntegerDecoder(eng._ck["decoder"], device="cpu", dtype=torch.float64)
    dec32 = eng.dec
    assert dec32.dtype == torch.float32
    x = CASES[name]
    x = (prep.rgb_to_planes(x)[1] if x.ndim == 3 else x).astype(np.int64)  # RGB: a 17-bit R-G plane
    vmin, R, B = prep.slice_params(x)
    v = x - vmin
    H, W = v.shape
    Hp, Wp = prep.padded_size(H, W, dec32.cfg.stride)
    vp = prep.polyphase_pad(v, Hp, Wp, dec32.f)
    z = eng.model().encode_slice(vp, B)
    f32, f64 = dec32.features(z), dec64.features(z)
    assert torch.equal(f32.double(), f64)
    ctx = []
    for k, (di, dj) in enumerate(dec32.order):
        a = dec32.predict(f32, ctx, k, R, B)
        b = dec64.predict(f64, ctx, k, R, B)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        ctx.append(torch.from_numpy(vp[di :: dec32.f, dj :: dec32.f]))


@pytest.mark.parametrize("head", [1, 2])
def test_same_bytes_with_one_and_two_threads(codec, tmp_path, head):
    if head == 2:  # the shipped kind: 4x4 sub-images, step 0 row by row
        codec = LVPNetCodec(_checkpoint(tmp_path / "v2.pt", head=2, subimage=4, ctx_bits=9, step0_rows=True))
    x = CASES["uint16_12bit_overlay"]
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = codec.encode(x)
        torch.set_num_threads(2)
        two = codec.encode(x)
    finally:
        torch.set_num_threads(old)
    assert one == two


def test_the_float_encoder_runs_on_one_thread_whatever_the_process_has(codec, monkeypatch):
    """``z`` is the floor of oneDNN's float sums, whose order follows the thread count: a ``y`` at a
    bin's edge fell on either side with one and two threads, and a val MR slice got other bytes from
    ``lvpnet compress`` in one process than with two workers. The encoder runs on one thread (the
    caller's count restored), so the test above cannot pass by luck of the slice."""
    model = codec.engine().model()
    seen = []
    latent = type(model).latent

    def spy(self, *a, **k):
        seen.append(torch.get_num_threads())
        return latent(self, *a, **k)

    monkeypatch.setattr(type(model), "latent", spy)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        codec.encode(CASES["uint16_12bit_overlay"])
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(old)
    assert seen == [1] and after == 2


def test_damaged_chunks_are_refused(codec):
    x = CASES["uint8"]
    data = codec.encode(x)
    for bad in (data[:-4], data + b"\0\0\0\0", b"\x03" + data[1:], data[:10]):
        with pytest.raises(ValueError):
            codec.decode(bad, x.shape, x.dtype, LVPNetCodec.version)
    with pytest.raises(ValueError):
        codec.decode(data, x.shape, x.dtype, LVPNetCodec.version + 1)


def test_pack_unpack():
    lat = np.array([1, 2], np.uint32)
    pix = np.array([3, 4, 5], np.uint32)
    data = pack_chunk([Plane(-5, 300, lat, pix)], version=1)
    (got,) = unpack_chunk(data, 1, version=1)
    assert got == Plane(-5, 300, lat, pix) and got.gaps.shape == (0, 2)
    data = pack_chunk([Plane(-5, 300, lat, pix, 16)], version=2)
    (got,) = unpack_chunk(data, 1, version=2)
    assert got == Plane(-5, 300, lat, pix, 16) and got.gaps.shape == (0, 2)
    with pytest.raises(ValueError):
        unpack_chunk(data, 1, version=1)  # the other layout does not tile the chunk
    g = np.array([[10, 900], [200, 70]])
    data = pack_chunk([Plane(-5, 300, lat, pix, 16, g)], version=3)
    (got,) = unpack_chunk(data, 1, version=3)
    assert (got.vmin, got.R, got.step) == (-5, 300, 16) and np.array_equal(got.gaps, g) and np.array_equal(got.pixels, pix)
    for bad in ([[10, 900], [10, 70]], [[10, 0]], [[300, 5]]):  # not increasing, empty run, beyond R
        with pytest.raises(ValueError, match="gaps"):
            unpack_chunk(pack_chunk([Plane(-5, 300, lat, pix, 16, np.array(bad))], version=3), 1, version=3)
    with pytest.raises(ValueError):
        pack_chunk([Plane(-5, 300, lat, pix, 16, g)], version=2)
    # version 7: the base level beside the gap count, the base layer (u32 length + bytes) after the words
    planes = [Plane(-5, 300, lat, pix, 16, g, 2, b"jxl!\x01"), Plane(0, 7, lat, pix, 1, g[:0])]
    data = pack_chunk(planes, version=7)
    assert len(data) == 1 + 2 * 22 + 4 * (4 + 2 + 3) + 4 + 5 + 4 * (2 + 3)
    got = unpack_chunk(data, 2, version=7)
    assert [(p.base_level, p.base) for p in got] == [(2, b"jxl!\x01"), (0, b"")] and np.array_equal(got[0].gaps, g)
    assert np.array_equal(got[1].pixels, pix) and got == planes
    one = pack_chunk(planes[:1], version=7)
    for bad in (one[:-1], one[:-6], one + b"\0"):  # truncated base layer, its length cut, trailing byte
        with pytest.raises(ValueError):
            unpack_chunk(bad, 1, version=7)
    with pytest.raises(ValueError, match="base level"):
        unpack_chunk(pack_chunk([Plane(0, 0, lat[:0], pix[:0], 1, g[:0])], 7)[:19] + bytes([0, 0, 1, 0]), 1, version=7)
    for bad_plane, version in ((Plane(-5, 300, lat, pix, 16, g, 2, b"x"), 6), (Plane(-5, 300, lat, pix, 16, g, 2, b""), 7),
                               (Plane(-5, 300, lat, pix, 16, g, 0, b"x"), 7), (Plane(-5, 300, lat, pix, 16, g, 256, b"x"), 7)):
        with pytest.raises(ValueError, match="base layer"):
            pack_chunk([bad_plane], version)


def test_unused_value_runs_are_taken_out(codec):
    """A CT with padding at -2000 next to air near -1000 (nothing in between): the chunk lists the
    run of unused values, codes a smaller range, and decodes exactly; runs among a few outliers
    are kept; a run that would leave the dtype is refused."""
    from lvpnet.model.prep import GAP_MIN

    rng = np.random.default_rng(5)
    x = _smooth(rng, (40, 52), -1000, 200, np.int16)
    yy, xx = np.mgrid[:40, :52]
    x[np.hypot(yy - 20, xx - 26) > 22] = -2000
    x[5, 5:8] = [25000, 26000, 30000]  # a few bright outliers: the runs between them stay
    data = codec.encode(x)
    (plane,) = unpack_chunk(data, 1, codec.version)
    vmin, R, step, gaps = plane.vmin, plane.R, plane.step, plane.gaps
    assert vmin == -2000 and step == 1 and len(gaps) == 1 and gaps[0, 0] == 0
    assert gaps[0, 1] == int(x[x > -2000].min()) + 2000 - 1 > GAP_MIN and R == int(x.max()) + 2000 - gaps[0, 1]
    assert R > 30000
    assert np.array_equal(codec.decode(data, x.shape, x.dtype, codec.version), x)
    big = np.array([[0, 40000]])  # a run that takes the values beyond int16: refused
    with pytest.raises(ValueError, match="range"):
        codec.decode(pack_chunk([replace(plane, gaps=big)], codec.version), x.shape, x.dtype, codec.version)


def test_a_sparse_histogram_lists_only_its_longest_gaps(codec):
    """A small slice of random 16-bit values has hundreds of qualifying runs of unused values;
    the chunk lists only the GAP_MAX longest (each costs 8 bytes), and still decodes exactly."""
    from lvpnet.model.prep import GAP_MAX, GAP_MIN, GAP_SIDE, collapse_gaps

    x = np.random.default_rng(3).integers(0, 60000, (37, 45)).astype(np.uint16)
    u, n = np.unique(x.astype(np.int64), return_counts=True)
    below = np.cumsum(n)[:-1]
    inside = (below >= GAP_SIDE * x.size) & (x.size - below >= GAP_SIDE * x.size)
    runs = (np.diff(u) - 1)[inside]  # the runs the side rule lets through
    assert (runs > GAP_MIN).sum() > 10 * GAP_MAX
    _packed, gaps = collapse_gaps(x.astype(np.int64) - int(x.min()))
    assert len(gaps) == GAP_MAX and gaps[:, 1].min() >= np.sort(runs)[-GAP_MAX]
    data = codec.encode(x)
    assert len(unpack_chunk(data, 1, codec.version)[0].gaps) == GAP_MAX
    assert np.array_equal(codec.decode(data, x.shape, x.dtype, codec.version), x)


def test_values_on_a_grid_are_coded_by_their_step(codec):
    """12-bit values stored times 16 (and an RGB plane quantised by 8): coded as k in min + step * k."""
    from lvpnet.model.prep import value_step

    x = CASES["uint16_12bit_overlay"] & 0x0FFF
    x16 = (x.astype(np.uint16) << 4) + 32
    data = codec.encode(x16)
    ((vmin, step),) = [(p.vmin, p.step) for p in unpack_chunk(data, 1, codec.version)]
    assert step == 16 * int(np.gcd.reduce(np.diff(np.unique(x)))) and vmin == int(x16.min())
    assert np.array_equal(codec.decode(data, x16.shape, x16.dtype, codec.version), x16)
    assert len(data) < len(codec.encode(x16 + (np.arange(x16.size).reshape(x16.shape) % 2).astype(np.uint16)))
    rgb = (CASES["rgb_uint8"] // 8 * 8).astype(np.uint8)
    assert np.array_equal(codec.decode(codec.encode(rgb), rgb.shape, rgb.dtype, codec.version), rgb)
    assert value_step(np.array([[5, 5], [5, 5]])) == 1 and value_step(np.array([[-7, 5], [17, -7]])) == 12


def test_missing_weights_give_a_clear_error(tmp_path):
    c = LVPNetCodec(tmp_path / "nope.pt")
    assert not c.is_available()
    with pytest.raises(InputError, match="weights"):
        c.encode(np.zeros((4, 4), np.uint8))


def test_cuda_request_without_cuda(tiny):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(InputError, match="CUDA"):
        LVPNetCodec(tiny, device="cuda").encode(np.zeros((4, 4), np.uint8) + np.eye(4, dtype=np.uint8))


def test_registry_and_default(monkeypatch, tiny):
    monkeypatch.setattr(codecs, "shipped_weights", lambda: None)
    monkeypatch.setattr(weights, "shipped_weights", lambda: None)
    monkeypatch.delenv("LVPNET_WEIGHTS", raising=False)
    assert codecs.default_codec_name(np.dtype("<i2"), False) == "fallback"
    assert "lvpnet" not in codecs.available()
    assert isinstance(codecs.get_codec("lvpnet"), LVPNetCodec)  # known, so files name the missing weights
    monkeypatch.setattr(codecs, "shipped_weights", lambda: Path(tiny))
    monkeypatch.setattr(weights, "shipped_weights", lambda: Path(tiny))
    monkeypatch.setattr(codecs, "shipped_is_default", lambda: False)  # weights that lose on val
    assert codecs.default_codec_name(np.dtype("<i2"), False) == "fallback"
    assert "lvpnet" in codecs.available()
    monkeypatch.setattr(codecs, "shipped_is_default", lambda: True)
    for dt, rgb in (("u1", False), ("i1", False), ("<u2", False), ("<i2", False), ("u1", True), ("<u2", True)):
        assert codecs.default_codec_name(np.dtype(dt), rgb) == "lvpnet"
    for dt in ("<i4", "<f4", "?"):
        assert codecs.default_codec_name(np.dtype(dt), False) == "fallback"
    assert "lvpnet" in codecs.available()


@pytest.fixture
def registered(monkeypatch, codec):
    monkeypatch.setitem(codecs._INSTANCES, "lvpnet", codec)
    return codec


def test_container_safety_net(registered):
    rng = np.random.default_rng(5)
    vol = np.stack([
        _smooth(rng, (40, 48), 0, 4000, np.int16),
        np.full((40, 48), 12, np.int16),            # constant: fallback's 3-byte chunk wins
        rng.integers(-30000, 30000, (40, 48)).astype(np.int16),
    ])
    own = compress(vol, codec="lvpnet", safety_net=False)
    net = compress(vol, codec="lvpnet")
    a, b = LvpFile(own), LvpFile(net)
    assert a.codec_counts() == {"lvpnet": 3}
    assert sum(b.codec_counts().values()) == 3 and b.codec_counts().get("fallback", 0) >= 1
    assert len(net) <= len(own)
    assert np.array_equal(a.read_all(), vol) and np.array_equal(b.read_all(), vol)
    assert a.header["model"] == registered.model_id()
    for i in range(3):  # every chunk is the smaller of the two codecs
        assert b.chunk_bytes(i) <= a.chunk_bytes(i)


def test_safety_net_keeps_the_smallest_jpeg_xl_effort(registered):
    """Where the fallback wins a slice, the chunk is the smallest of JPEG-XL efforts 7, 9 and,
    on 8-bit data, 10 (an ultrasound-like frame, on which effort 10 is smallest), and it decodes
    exactly. Wider data is not tried at effort 10."""
    from lvpnet.codecs.fallback import FallbackCodec

    rng = np.random.default_rng(8)
    frame = np.zeros((96, 128), np.uint8)
    frame[20:70, 30:100] = np.clip(rng.normal(40, 12, (50, 70)), 0, 255).astype(np.uint8)
    frame[5:9, 10:60] = 230  # a text bar
    fb = FallbackCodec()
    sizes = {e: len(fb.encode(frame, effort=e)) for e in (7, 9, 10)}
    assert sizes[10] < min(sizes[7], sizes[9])  # so the test sees the third try kept
    b = LvpFile(compress(frame[None], codec="lvpnet"))
    assert b.codec_counts() == {"fallback": 1}
    assert b.chunk_bytes(0) == sizes[10]
    assert np.array_equal(b.read_all(), frame[None])
    assert fb.thorough_efforts(frame) == (9, 10) and fb.thorough_efforts(frame.astype(np.int16) * 2) == (9,)


def test_file_from_other_weights_is_refused(registered, monkeypatch, tmp_path):
    vol = _smooth(np.random.default_rng(1), (20, 20), 0, 900, np.uint16)
    data = compress(vol, codec="lvpnet", safety_net=False)
    other = LVPNetCodec(_checkpoint(tmp_path / "other.pt", seed=1), device="cpu")
    monkeypatch.setitem(codecs._INSTANCES, "lvpnet", other)
    with pytest.raises(InputError, match="weights"):
        LvpFile(data).read_all()


def test_file_from_earlier_shipped_weights_still_opens(monkeypatch):
    """After an upgrade of the shipped weights, files the earlier ones wrote open with them
    (resources/retired, picked by the header's sha256); the shared codec keeps the new ones."""
    from lvpnet.codecs.weights import retired_dir, shipped_weights, weights_for_model

    monkeypatch.delenv("LVPNET_WEIGHTS", raising=False)
    retired = sorted(retired_dir().glob("lvpnet-*.pt"))
    assert retired, "no retired weights shipped"
    old = LVPNetCodec(retired[0], device="cpu")
    assert weights_for_model(old.model_id()) == retired[0]
    rng = np.random.default_rng(3)
    vol = np.stack([_smooth(rng, (40, 48), 0, 3000, np.int16) for _ in range(2)])
    monkeypatch.setitem(codecs._INSTANCES, "lvpnet", old)
    data = compress(vol, codec="lvpnet", safety_net=False)
    current = LVPNetCodec(shipped_weights(), device="cpu")
    assert current.model_id() != old.model_id()
    monkeypatch.setitem(codecs._INSTANCES, "lvpnet", current)
    f = LvpFile(data)
    assert f.header["model"] == old.model_id() and f.codec_counts() == {"lvpnet": 2}
    assert np.array_equal(f.read_all(), vol)
    assert codecs.get_codec("lvpnet") is current


def test_retired_weights_are_named_by_their_sha256():
    import hashlib

    from lvpnet.codecs.weights import retired_dir

    for p in retired_dir().glob("*.pt"):
        sha = hashlib.sha256(p.read_bytes()).hexdigest()
        assert p.name == f"lvpnet-{sha[:16]}.pt"
        assert p.with_suffix(".json").is_file() and p.with_suffix(".md").is_file()


def test_rgb_volume_through_container(registered):
    vol = np.stack([CASES["rgb_uint8"], CASES["rgb_uint8"][::-1]])
    data = compress(vol, codec="lvpnet", rgb=True, safety_net=False)
    assert np.array_equal(LvpFile(data).read_all(), vol)


def test_one_pass_model_roundtrip(tmp_path):
    """configs/lvpnet-v1-onepass.json's mode (subimage 1): no context sub-images."""
    c = LVPNetCodec(_checkpoint(tmp_path / "onepass.pt", subimage=1), device="cpu")
    assert c.engine().dec.steps == 1
    for name in ("int16_ct", "odd_3x5", "rgb_uint8", "int16_full_range"):
        x = CASES[name]
        assert np.array_equal(c.decode(c.encode(x), x.shape, x.dtype, LVPNetCodec.version), x)


def test_default_follows_the_shipped_card(monkeypatch, tmp_path, tiny):
    """The learned codec is the default only when the card beside the shipped weights says it won on val."""
    w = tmp_path / "lvpnet-v1.pt"
    w.write_bytes(Path(tiny).read_bytes())
    monkeypatch.setattr(weights, "shipped_weights", lambda: w)
    assert weights.shipped_card() == {} and not weights.shipped_is_default()
    card = tmp_path / weights.CARD_NAME
    card.write_text('{"default_codec": false, "val_ratio": 1.2}')
    assert not weights.shipped_is_default()
    card.write_text('{"default_codec": true, "val_ratio": 0.9}')
    assert weights.shipped_is_default()
    card.write_text("{not json")
    assert not weights.shipped_is_default()


@pytest.mark.parametrize("subimage", [4, 2])
def test_v2_head_row_step0_roundtrip(tmp_path, subimage):
    """Head version 2 with 4x4 (configs/lvpnet-v2-cpu.json's mode) or 2x2 sub-images and step 0
    decoded row by row: every case decodes exactly, and the stream is as long as estimated."""
    p = _checkpoint(tmp_path / "v2.pt", head=2, subimage=subimage, ctx_bits=9, step0_rows=True)
    c = LVPNetCodec(p, device="cpu")
    eng = c.engine()
    assert eng.dec.steps == subimage**2 and eng.dec.cfg.step0_rows
    for name in CASES:
        x = CASES[name]
        assert np.array_equal(c.decode(c.encode(x), x.shape, x.dtype, LVPNetCodec.version), x), name
    x = CASES["int16_ct"].astype(np.int64)
    plane, est = eng.encode_plane(x, PROFILES[6], want_bits=True)
    assert np.array_equal(eng.decode_plane(plane, *x.shape, PROFILES[6]), x)
    assert 32 * (len(plane.latent) + len(plane.pixels)) <= est + 64 + 64


def test_per_step_scale_offsets(perturbed):
    """Bitstream version 2: the encoder's per-step scale offsets never cost more than they save
    (beyond their own few bits), decode exactly, and version 1 streams still decode."""
    eng = perturbed.engine()
    x = CASES["uint16_12bit_overlay"].astype(np.int64)
    (v2, est2), (v1, est1) = (eng.encode_plane(x, PROFILES[n], want_bits=True) for n in (2, 1))
    assert est2 <= est1 + eng.dec.steps * np.log2(9) + 1e-6
    assert np.array_equal(eng.decode_plane(v2, *x.shape, PROFILES[2]), x)
    assert np.array_equal(eng.decode_plane(v1, *x.shape, PROFILES[1]), x)


def test_adapted_tables(perturbed):
    """Bitstream version 3: tables adapted to the slice never cost more than the fixed ones
    (beyond the log2(20) bits of the coding mode), pay off on a few-level slice, decode exactly, and
    version 2 streams still decode."""
    from lvpnet.coding.adapt import WIDE_FLAG_LEVELS, modes

    eng = perturbed.engine()
    rng = np.random.default_rng(3)
    levels = rng.choice(np.array([0, 1, 1023]), size=(48, 61), p=[0.45, 0.45, 0.1])
    for x in (CASES["uint16_12bit_overlay"].astype(np.int64), levels):
        (v3, est3), (v2, est2) = (eng.encode_plane(x, PROFILES[n], want_bits=True) for n in (3, 2))
        assert est3 <= est2 + np.log2(modes(WIDE_FLAG_LEVELS)) + 1e-6
        assert np.array_equal(eng.decode_plane(v3, *x.shape, PROFILES[3]), x)
        assert np.array_equal(eng.decode_plane(v2, *x.shape, PROFILES[2]), x)
        assert 32 * (len(v3.latent) + len(v3.pixels)) <= est3 + 64 + 64
    assert est3 < 0.9 * est2  # the few-level slice: adaptation saves more than 10%


def test_every_coding_mode_decodes_every_shape(tmp_path, monkeypatch):
    """The codec's bitstream, forced into each of its 20 coding modes (prior weight x flag level):
    slices of awkward shapes (one pixel, one row, one column, empty sub-images), flat ones with
    a few values (flags everywhere), 16-bit ranges and RGB all decode exactly; and version 4's
    12 modes still do. Each mode codes three of the eight slices, in turn, so every slice meets
    every flag level and most prior weights (each pair took 0.08 s: all 256 were 20 s of the suite)."""
    import lvpnet.coding.adapt as adapt_mod
    from lvpnet.coding.adapt import ADAPT_WEIGHTS, FLAG_LEVELS, WIDE_FLAG_LEVELS, modes

    p = _checkpoint(tmp_path / "v3.pt", head=3, subimage=4, ctx_bits=9, step0_rows=True)
    c = LVPNetCodec(p, device="cpu")
    rng = np.random.default_rng(11)
    flat = np.zeros((21, 26), np.uint8)
    flat[6:12, 4:15] = rng.integers(0, 3, (6, 11))
    shapes = [
        np.array([[7, 9]], np.uint16), rng.integers(0, 50, (1, 9)).astype(np.uint16),
        rng.integers(0, 50, (9, 1)).astype(np.uint16), rng.integers(0, 3, (2, 3)).astype(np.uint8), flat,
        np.where(rng.random((19, 23)) < 0.3, -2000, rng.integers(-1000, 1000, (19, 23))).astype(np.int16),
        rng.integers(0, 65536, (13, 17)).astype(np.uint16),
        np.pad(rng.integers(0, 255, (6, 7, 3)).astype(np.uint8), ((5, 4), (3, 9), (0, 0))),
    ]
    for version, levels in ((LVPNetCodec.version, WIDE_FLAG_LEVELS), (4, FLAG_LEVELS)):
        c.version = version
        for mode in range(modes(levels)):
            forced = (mode % len(ADAPT_WEIGHTS), mode // len(ADAPT_WEIGHTS))
            monkeypatch.setattr(adapt_mod, "choose_plane_coding", lambda items, base, lv, m=forced: m)  # the encoder's choice
            for x in (shapes[(mode + i) % len(shapes)] for i in (0, 3, 5)):
                y = c.decode(c.encode(x), x.shape, x.dtype, version)
                assert np.array_equal(y, x), (version, mode, x.shape)


def test_rgb_chunk_beyond_the_dtype_is_refused(codec):
    """A chunk whose colour planes add up beyond uint8 (a forged or damaged header) is refused,
    not wrapped around."""
    x = CASES["rgb_uint8"]
    planes = unpack_chunk(codec.encode(x), 3, codec.version)
    planes[1] = replace(planes[1], vmin=planes[1].vmin + 300, ref_level=0)  # R-G shifted far up
    with pytest.raises(ValueError, match="outside the dtype"):
        codec.decode(pack_chunk(planes, codec.version), x.shape, x.dtype, codec.version)


def test_refined_locations(perturbed):
    """Bitstream version 4: on a texture the model misses, refining the locations on the slice
    saves more than 10%; both versions decode exactly, and the stream is as long as estimated."""
    eng = perturbed.engine()
    yy, xx = np.mgrid[:96, :88]
    rng = np.random.default_rng(5)
    x = np.clip(1500 + 900 * np.sin((yy + 2 * xx) / 3.0) + rng.normal(0, 4, yy.shape), 0, 4095).astype(np.int64)
    (v4, est4), (v3, est3) = (eng.encode_plane(x, PROFILES[n], want_bits=True) for n in (4, 3))
    assert est4 < 0.9 * est3
    assert np.array_equal(eng.decode_plane(v4, *x.shape, PROFILES[4]), x)
    assert np.array_equal(eng.decode_plane(v3, *x.shape, PROFILES[3]), x)
    assert 32 * (len(v4.latent) + len(v4.pixels)) <= est4 + 64 + 64


def test_every_refinement_config_decodes_every_shape(tmp_path, monkeypatch):
    """Each step forced into each refinement config, with coefficients up to the limit, and random
    error-feedback offsets: awkward shapes (one pixel, one row, one column, empty sub-images),
    16-bit ranges and RGB decode exactly."""
    from lvpnet.coding import feedback, refine

    p = _checkpoint(tmp_path / "v3.pt", head=3, subimage=4, ctx_bits=9, step0_rows=True)
    c = LVPNetCodec(p, device="cpu")
    rng = np.random.default_rng(12)
    shapes = [
        np.array([[7, 9]], np.uint16), rng.integers(0, 50, (1, 9)).astype(np.uint16),
        rng.integers(0, 50, (9, 1)).astype(np.uint16), rng.integers(0, 3, (2, 3)).astype(np.uint8),
        np.where(rng.random((19, 23)) < 0.3, -2000, rng.integers(-1000, 1000, (19, 23))).astype(np.int16),
        rng.integers(0, 65536, (13, 17)).astype(np.uint16),
        np.pad(rng.integers(0, 255, (6, 7, 3)).astype(np.uint8), ((5, 4), (3, 9), (0, 0))),
    ]
    lim = (1 << (refine.MAG_CLASSES - 1)) - 1

    def forced(plane, vals, mu, s, pos, f, order, k, R, shifts, config):
        classes, noff = refine.step_layout(order, k, config)
        coefs = rng.choice(np.array([0, 3, -200, lim, -lim]), size=(classes, noff)).astype(np.int64)
        ref = refine.StepRefinement(config, np.sort(rng.integers(0, len(shifts), classes - 1)), coefs)
        return ref, refine.refine_step(plane, mu, s, pos, f, order, k, ref, R)

    monkeypatch.setattr(feedback, "choose", lambda vals, *a: rng.integers(-4, 5, feedback.BUCKETS) if vals.size else None)
    for config in range(1, len(refine.CONFIGS)):
        monkeypatch.setattr(refine, "choose_step", lambda *a, c=config: forced(*a, config=c))
        for x in shapes:
            y = c.decode(c.encode(x), x.shape, x.dtype, LVPNetCodec.version)
            assert np.array_equal(y, x), (config, x.shape)


def test_the_engine_holds_a_plane_to_its_profile(codec):
    """A plane that carries more than its bitstream version can code is refused, not misread: a
    base layer under version 6, a reference level under version 7, a reference slice handed to an
    encoder of version 7; without the reference slice a plane coded against one is refused too."""
    eng = codec.engine()
    x = CASES["int16_ct"].astype(np.int64)
    x -= x.min()
    plane = eng.encode_plane(x, PROFILES[7])
    forged = replace(plane, base_level=1, base=b"jxl")
    with pytest.raises(ValueError, match="base layer needs bitstream version 7"):
        eng.decode_plane(forged, *x.shape, PROFILES[6])
    with pytest.raises(ValueError, match="reference level 1 is not valid"):
        eng.decode_plane(replace(plane, ref_level=1), *x.shape, PROFILES[7], ref_plane=x)
    with pytest.raises(ValueError, match="previous one"):
        eng.decode_plane(replace(plane, ref_level=1), *x.shape, PROFILES[8])
    with pytest.raises(ValueError, match="codes no reference"):
        eng.encode_plane(x, PROFILES[7], ref_plane=x)
    assert np.array_equal(eng.decode_plane(plane, *x.shape, PROFILES[7]), x)


@pytest.mark.parametrize("content", [b"", b"\x93NUMPY not weights", b"PK\x03\x04 half a zip", b'{"format": 1}',
                                     b"root:x:0:0:root:/root:/bin/bash\nbin:x:1:1::/:/sbin/nologin\n"])
def test_weights_that_are_not_weights_get_one_clear_line(tmp_path, content):
    """LVPNET_WEIGHTS pointing at the wrong file is the user's mistake, named with the file, not a
    paragraph of torch.load's or an internal error."""
    path = tmp_path / "w.pt"
    path.write_bytes(content)
    with pytest.raises(InputError) as e:
        LVPNetCodec(path, device="cpu").engine()
    text = str(e.value)
    assert text.startswith(f"{path}: not") and "\n" not in text and len(text) < 300


def test_the_command_line_names_missing_weights_for_codec_lvpnet(tmp_path, monkeypatch):
    """``--codec lvpnet`` without weights: the message says which file is missing (argparse's choice
    list would say only that 'lvpnet' is not one)."""
    np.save(tmp_path / "a.npy", np.arange(64, dtype=np.int16).reshape(8, 8))
    env = {**os.environ, "LVPNET_WEIGHTS": str(tmp_path / "none.pt")}
    exe = os.path.join(os.path.dirname(sys.executable), "lvpnet")
    proc = subprocess.run([exe, "compress", str(tmp_path / "a.npy"), str(tmp_path / "a.lvp"), "--codec", "lvpnet"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and "none.pt is missing" in proc.stderr and "invalid choice" not in proc.stderr


def test_a_checkpoint_missing_its_parts_is_named_not_a_bare_key(tmp_path):
    """A file with lvpnet's format mark but no model: the message says what is missing, not "(105)"."""
    from lvpnet import analysis
    from lvpnet.model import FORMAT

    path = tmp_path / "w.pt"
    torch.save({"format": FORMAT}, path)
    for load in (lambda: LVPNetCodec(path, device="cpu").engine(), lambda: analysis.load_model(path)):
        with pytest.raises(InputError) as e:
            load()
        assert str(e.value).startswith(f"{path}: not usable") and "no entry" in str(e.value), str(e.value)
