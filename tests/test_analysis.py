"""lvpnet.analysis: bit-cost, latent and QCM error maps add up to the model's own code length."""

import numpy as np
import pytest
import torch
from conftest import smooth_image

import lvpnet
from lvpnet import analysis
from lvpnet.codecs.lvpnet_base import costs
from lvpnet.coding.estimate import slice_bits
from lvpnet.errors import InputError
from lvpnet.model import pixel_symbols
from lvpnet.model.prep import (
    collapse_gaps,
    padded_size,
    polyphase_pad,
    rgb_to_planes,
    slice_params,
    sub_real_shape,
    to_grid,
)
from lvpnet.progress import Progress, run


@pytest.fixture(scope="module")
def model(tiny_model_path):
    return analysis.load_model(tiny_model_path)


def _prepared(x, model):
    v = collapse_gaps(to_grid(x)[2])[0]  # what the codec codes (bitstream version 3)
    vmin, R, B = slice_params(v)
    Hp, Wp = padded_size(*v.shape, model.stride)
    return polyphase_pad(v - vmin, Hp, Wp, model.dec.f), R, B


@pytest.mark.parametrize("shape,lo,hi,dtype", [((45, 70), 0, 4095, np.uint16), ((64, 33), -1024, 3071, np.int16),
                                               ((20, 20), 0, 255, np.uint8)])
def test_maps_sum_to_slice_bits(model, rng, shape, lo, hi, dtype):
    x = smooth_image(rng, shape, lo, hi, dtype)
    m = analysis.analyse_slice(x, model)
    ref = slice_bits(model.net, model.dec, x, lattice_costs=costs)
    assert m.pixel_bits_total == pytest.approx(ref["pixel_bits"], rel=1e-12)
    assert m.latent_bits_total == pytest.approx(ref["latent_bits"], rel=1e-12)
    # the float32 maps account for every bit, up to float32 rounding
    assert m.pixel_bits.sum(dtype=np.float64) == pytest.approx(ref["pixel_bits"], rel=1e-6)
    assert m.latent_bits.sum(dtype=np.float64) == pytest.approx(ref["latent_bits"], rel=1e-6)
    assert m.total_bits_map().sum(dtype=np.float64) == pytest.approx(ref["pixel_bits"] + ref["latent_bits"], rel=1e-6)
    assert m.total_bits == pytest.approx(ref["pixel_bits"] + ref["latent_bits"], rel=1e-12)
    assert m.bits_per_pixel == pytest.approx(m.total_bits / x.size)


def test_shapes_dtypes_and_finite(model, rng):
    x = smooth_image(rng, (45, 70), 0, 4095, np.uint16)
    m = analysis.analyse_slice(x, model, index=7)
    blocks = (2, 3)
    assert m.index == 7 and m.shape == (45, 70) and m.n_pixels == 45 * 70
    assert m.pixel_bits.shape == (45, 70) and m.pixel_bits.dtype == np.float32
    for a in (m.latent_bits, m.qcm_before, m.qcm_after):
        assert a.shape == blocks and a.dtype == np.float32 and np.isfinite(a).all()
    assert m.z.shape == (model.channels, *blocks) and m.z.dtype == np.int8
    assert np.isfinite(m.pixel_bits).all() and (m.pixel_bits > 0).all() and (m.latent_bits > 0).all()
    assert (m.qcm_before >= 0).all() and (m.qcm_after >= 0).all()
    assert m.on_grid(m.qcm_after).shape == (45, 70)


def _map_matches(m, model, x, weight):
    """Does every pixel of ``m.pixel_bits`` hold its own code length under the tables adapted at
    prior weight ``weight``, with some per-step scale offset (found here independently), around
    the locations and scales the encoder fits on the slice (``fitting.SliceFitting``), the tables
    counted per scale and distance from the minimum (bitstream 6, ``coding.edge``)? -> the fits,
    or None."""
    from lvpnet.coding import edge
    from lvpnet.coding.adapt import StepTables
    from lvpnet.coding.fitting import SliceFitting
    from lvpnet.model.tables import WIDE_OFFSET_MAX, scale_offset

    vp, R, B = _prepared(x, model)
    dec, f = model.dec, model.dec.f
    z = model.net.encode_slice(vp, B)
    feats = dec.features(z)
    vs = torch.from_numpy(vp)
    tabs = StepTables(edge.expand(dec.pixel_tables.numpy()), weight)
    cfg = dec.cfg
    thr = edge.thresholds(cfg.n_scales, cfg.per_octave, cfg.sigma_min)
    fits = SliceFitting(vp[: x.shape[0], : x.shape[1]], R, dec.order, dec.pixel_tables, dec.pixel_shifts, dec.K)
    ctx = []
    for k, (di, dj) in enumerate(dec.order):
        sub = vs[di::f, dj::f]
        mu, s = dec.predict(feats, ctx, k, R, B, known=sub)
        hr, wr = sub_real_shape(*x.shape, f, di, dj)
        mu_r, s_r = fits.tensor_step(k, (di, dj), sub[:hr, :wr], mu[:hr, :wr], s[:hr, :wr])
        got = m.pixel_bits[di::f, dj::f]
        tabs.start_step(k)
        for d in range(-WIDE_OFFSET_MAX, WIDE_OFFSET_MAX + 1):
            sd = scale_offset(s_r, d, dec.cfg.n_scales)
            sym, _low, nb, esc = pixel_symbols(sub[:hr, :wr], mu_r, sd, dec.pixel_shifts, dec.K)
            extra = np.where(esc.numpy(), np.log2(R + 1.0), nb.numpy())
            rows = edge.table_index(mu_r.numpy(), sd.numpy(), thr)
            want = (tabs.symbol_bits(sym.numpy(), rows) + extra).astype(np.float32)
            if np.array_equal(got, want):
                tabs.add(sym.numpy(), rows)
                break
        else:
            return None
        ctx.append(sub)
    return fits


@pytest.mark.parametrize("kind", ["smooth", "three levels, adapted"])
def test_pixel_map_is_each_pixels_code_length(model, rng, tiny_model_path, kind, monkeypatch):
    """Every pixel of the map holds the exact table bits (+ raw or escape bits) of that very pixel,
    at the scale the codec codes it with (the model's, moved by the step's offset) and with the
    tables adapted to the slice as the codec adapts them, and the maps add up to the codec's own
    estimate of the streams it writes. The three-level slice (like a palette ultrasound) is coded
    with adapted tables (forced on both sides: with bitstream version 4's refinement the fixed
    tables already fit this one), so the map must follow the adaptation. Neighbour-repeat flags
    are kept off on both sides (with version 5's flag levels the smooth slice would flag the few
    pixels whose neighbours agree); test_a_flagged_background_is_nearly_free_in_the_map covers them.
    So is bitstream 7's base layer; test_the_base_layer_in_the_map covers it."""
    import lvpnet.coding.adapt as adapt_mod
    from lvpnet.codecs import lvpnet_base
    from lvpnet.codecs.lvpnet_codec import LVPNetCodec
    from lvpnet.coding.adapt import ADAPT_WEIGHTS, WIDE_FLAG_LEVELS, side_bits
    from lvpnet.coding.profiles import PROFILES

    x = smooth_image(rng, (37, 50), 0, 1023, np.uint16)
    choose = adapt_mod.choose_plane_coding
    forced = lambda items, base, *levels: choose(items, base, 1)  # noqa: E731 (no flags: the map is table bits)
    if kind != "smooth":
        x = rng.choice(np.array([0, 1, 1023], np.uint16), size=x.shape, p=[0.45, 0.45, 0.1])
        forced = lambda items, base, *levels: (2, 0)  # noqa: E731
    monkeypatch.setattr(adapt_mod, "choose_plane_coding", forced)  # the engine's choice goes through adapt too
    monkeypatch.setattr(lvpnet_base, "options", lambda *a: {})
    m = analysis.analyse_slice(x, model)
    found = {w: _map_matches(m, model, x, w) for w in ADAPT_WEIGHTS}
    matches = [w for w, fits in found.items() if fits is not None]
    assert matches
    if kind != "smooth":
        assert matches == [ADAPT_WEIGHTS[2]], "the map should follow the tables adapted at weight 1024 only"
    eng = LVPNetCodec(tiny_model_path, device="cpu").engine()
    est = eng.encode_plane(collapse_gaps(to_grid(x)[2])[0], PROFILES[6], want_bits=True)[1]  # what the codec codes
    side = side_bits(model.dec.steps, refined=True, flag_levels=WIDE_FLAG_LEVELS) + found[matches[0]].side_bits()
    assert est == pytest.approx(m.total_bits + side, rel=1e-9)


def test_latent_and_qcm_follow_their_definitions(model, rng):
    x = smooth_image(rng, (64, 96), 0, 4095, np.uint16)
    m = analysis.analyse_slice(x, model)
    vp, R, B = _prepared(x, model)
    net = model.net
    z = net.encode_slice(vp, B)
    assert np.array_equal(m.z, z.numpy())  # the latent the codec stores
    with torch.no_grad():
        y, _, _ = net.latent(torch.from_numpy(vp).float()[None], torch.tensor([B]))
        yt = net.qcm(z[None].float())  # QAT forward == integer path (tests/test_model_intexact.py)
    q = model.q_step
    y, yt = y[0].double(), yt[0].double()
    before = (y - z.double() * q).abs().mean(0).numpy()
    after = (y - yt * q / 4).abs().mean(0).numpy()
    np.testing.assert_allclose(m.qcm_before, before, rtol=1e-6)
    np.testing.assert_allclose(m.qcm_after, after, rtol=1e-6)
    # floor quantisation: before QCM the error of an unclamped latent is below one step
    inside = (z.abs() < model.dec.zmax).all()
    if inside:
        assert (m.qcm_before <= q).all()


def test_rgb_planes_add_up(model, rng):
    x = np.stack([smooth_image(rng, (40, 33), 0, 255, np.uint8) for _ in range(3)], -1)
    m = analysis.analyse_slice(x, model, rgb=True)
    refs = [slice_bits(model.net, model.dec, p, lattice_costs=costs) for p in rgb_to_planes(x)]
    assert m.pixel_bits.shape == (40, 33)
    assert m.pixel_bits_total == pytest.approx(sum(r["pixel_bits"] for r in refs), rel=1e-12)
    assert m.latent_bits_total == pytest.approx(sum(r["latent_bits"] for r in refs), rel=1e-12)
    assert m.z.shape == (3 * model.channels, 2, 2)
    assert len(m.plane_bits) == 3


def test_grid_helpers():
    cells = np.arange(6, dtype=np.float32).reshape(2, 3)
    g = analysis.to_image_grid(cells, (40, 70), 32)
    assert g.shape == (40, 70) and g[0, 0] == 0 and g[31, 31] == 0 and g[32, 0] == 3 and g[39, 69] == 5
    assert analysis.to_image_grid(np.zeros((4, 2, 3)), (40, 70)).shape == (4, 40, 70)
    with pytest.raises(ValueError):
        analysis.to_image_grid(cells, (70, 70))
    counts = analysis.block_pixel_counts((40, 70))
    assert counts.tolist() == [[1024, 1024, 192], [256, 256, 48]] and counts.sum() == 40 * 70
    mosaic = analysis.tile_channels(np.arange(5 * 2 * 3).reshape(5, 2, 3))
    assert mosaic.shape == (2 * 2, 3 * 3) and mosaic[2, 0] == 3 * 6 and mosaic[2, 3] == 4 * 6 and mosaic[3, 8] == 0
    assert analysis.flat_index((1, 2), (3, 4)) == 6 and analysis.flat_index((9, -1), (3, 4)) == 8
    assert analysis.flat_index((), ()) == 0


def test_iter_analyse_volume_and_one_slice(model, rng):
    vol = smooth_image(rng, (3, 40, 33), -500, 1500, np.int16)
    seen = []
    res = run(analysis.iter_analyse(vol, model), seen.append)
    assert all(isinstance(p, Progress) for p in seen) and seen[-1].done == seen[-1].total == 3
    assert res.indices == [0, 1, 2] and res.frame_shape == (3,) and res.slice_shape == (40, 33) and res.n_slices == 3
    assert res.chunk_bits is None and res.has_model and len(res.maps) == 3
    for k in range(3):
        ref = slice_bits(model.net, model.dec, vol[k], lattice_costs=costs)
        assert res.estimated_bits[k] == pytest.approx(ref["pixel_bits"] + ref["latent_bits"], rel=1e-12)
    assert res.stack("pixel_bits").shape == (3, 40, 33)
    assert res.stack("z").shape == (3, model.channels, 2, 2)
    assert res.stack("qcm_before", on_grid=True).shape == (3, 40, 33)
    assert res.stack("total_bits").sum() == pytest.approx(res.estimated_bits.sum(), rel=1e-6)
    counts, edges = res.histogram(bins=20)
    assert counts.sum() == 3 * 40 * 33 and len(edges) == 21

    one = run(analysis.iter_analyse(vol, model, indices=[2]))
    assert one.indices == [2] and one.maps[0].index == 2
    np.testing.assert_array_equal(one.maps[0].pixel_bits, res.maps[2].pixel_bits)
    totals = run(analysis.iter_slice_totals(vol, model))
    assert totals.maps == [] and np.array_equal(totals.estimated_bits, res.estimated_bits)
    with pytest.raises(InputError):
        run(analysis.iter_analyse(vol, model, indices=[3]))


def test_lvp_chunk_bits_with_and_without_model(model, rng, tmp_path):
    vol = smooth_image(rng, (3, 40, 33), 0, 3000, np.uint16)
    path = tmp_path / "v.lvp"
    lvpnet.compress_to_file(vol, path, codec="fallback")  # classical chunks: no model in the file
    lvp = lvpnet.open(path)
    real = [8 * lvp.chunk_bytes(i) for i in range(3)]

    bare = run(analysis.iter_analyse(lvp, None))
    assert not bare.has_model and bare.maps == [] and bare.estimated_bits is None
    assert bare.chunk_bits.tolist() == real and bare.frame_shape == (3,)
    assert bare.chunk_codecs == ["fallback"] * 3

    res = run(analysis.iter_analyse(lvp, model, indices=[1]))  # works from the decoded slice
    ref = slice_bits(model.net, model.dec, vol[1], lattice_costs=costs)
    assert res.estimated_bits[0] == pytest.approx(ref["pixel_bits"] + ref["latent_bits"], rel=1e-12)
    assert res.chunk_bits.tolist() == real
    assert res.model_matches_file is None  # classical chunks: no model id in the header

    # a layer's own array plus the file it came from
    res2 = run(analysis.iter_analyse(vol, None, lvp=lvp))
    assert res2.chunk_bits.tolist() == real


def _damage_slice(path, i):
    rec = lvpnet.open(path)._reader.records[i]
    data = bytearray(path.read_bytes())
    data[rec.offset + rec.length // 2] ^= 0x20
    path.write_bytes(bytes(data))


def test_a_slice_after_a_damaged_one_is_mapped_unless_its_chunk_needs_it(model, rng, tmp_path):
    """The maps of slice i are made against slice i - 1 where the writer offers it; when i - 1 is damaged,
    slice i is still mapped if its own chunk does not decode against i - 1 (the file says which)."""
    from lvpnet.errors import DamagedError

    vol = smooth_image(rng, (4, 40, 33), 0, 3000, np.uint16)
    vol[3] = vol[2]  # the learned codec codes slice 3 against slice 2
    for codec, needs in (("fallback", False), ("lvpnet", True)):
        path = tmp_path / f"{codec}.lvp"
        lvpnet.compress_to_file(vol, path, codec=codec)
        _damage_slice(path, 2)
        lvp = lvpnet.open(path)
        assert lvp.needs_previous(3) is needs and lvp.needs_previous(1) is False
        if needs:
            with pytest.raises(DamagedError, match="slice 2"):
                run(analysis.iter_analyse(lvp, model, indices=[3]))
        else:
            res = run(analysis.iter_analyse(lvp, model, indices=[3]))
            assert res.indices == [3] and res.estimated_bits[0] > 0


def test_rgb_volume_layout(model, rng):
    vol = rng.integers(0, 256, (2, 20, 24, 3)).astype(np.uint8)
    res = run(analysis.iter_analyse(vol, model, rgb=True))
    assert res.frame_shape == (2,) and res.slice_shape == (20, 24)
    assert res.stack("pixel_bits").shape == (2, 20, 24)


def test_load_model(tiny_model_path, tmp_path, monkeypatch):
    a = analysis.load_model(tiny_model_path)
    assert analysis.load_model(str(tiny_model_path)) is a  # cached
    assert a.path == str(tiny_model_path.resolve()) and len(a.sha256) == 64 and a.stride == 32
    monkeypatch.setenv("LVPNET_WEIGHTS", str(tiny_model_path))  # the codec's override applies here too
    assert analysis.default_model_path() == tiny_model_path and analysis.load_model(None) is a
    monkeypatch.setattr(analysis, "default_model_path", lambda: None)
    assert analysis.load_model(None) is None and analysis.load_model("") is None
    with pytest.raises(InputError, match="not found"):
        analysis.load_model(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="model weights"):
        analysis.load_model(bad)


def test_refuses_what_the_model_cannot_code(model):
    with pytest.raises(InputError, match="integer"):
        analysis.analyse_slice(np.full((8, 8), 0.5), model)
    with pytest.raises(InputError, match="16 bits"):
        analysis.analyse_slice(np.array([[0, 70000]], np.int32), model)
    with pytest.raises(InputError):
        analysis.analyse_slice(np.zeros((2, 3, 4)), model)
    m = analysis.analyse_slice(np.array([[0.0, 3.0], [2.0, 1.0]]), model)  # integral floats are fine
    assert m.pixel_bits.shape == (2, 2)


def test_maps_follow_the_codecs_value_step(model, rng, tiny_model_path):
    """12-bit values stored times 16: the maps are what the codec pays for the values' indices."""
    from lvpnet.codecs.lvpnet_codec import LVPNetCodec
    from lvpnet.coding.adapt import WIDE_FLAG_LEVELS, side_bits
    from lvpnet.coding.estimate import slice_bits

    x = smooth_image(rng, (40, 44), 0, 4095, np.uint16) << 4
    m = analysis.analyse_slice(x, model)
    assert m.total_bits == pytest.approx(analysis.analyse_slice(x >> 4, model).total_bits, rel=1e-12)
    codec = LVPNetCodec(tiny_model_path, device="cpu")
    st = codec.chunk_stats(codec.encode(x), x.shape, x.dtype, codec.version)
    side = slice_bits(model.net, model.dec, x, lattice_costs=costs)["side_bits"]  # coding mode, offsets, refinement
    assert side > side_bits(model.dec.steps, refined=True, flag_levels=WIDE_FLAG_LEVELS)
    assert st["estimated_bits"] == pytest.approx(m.total_bits + side, rel=1e-9)


def test_a_flagged_background_is_nearly_free_in_the_map(model, tiny_model_path):
    """A CT-like slice (a ramp inside -2000 padding) that the codec codes with neighbour-repeat
    flags only where the neighbours agree (bitstream 5's flag level 3): the map shows most of the
    padding away from the tissue at a small fraction of a bit per pixel (this untrained model
    still pays for the first rows, before the flags' counts adapt), and it adds up to the codec's
    estimate."""
    from lvpnet.codecs.lvpnet_codec import LVPNetCodec, unpack_chunk
    from lvpnet.codecs.lvpnet_entropy import new_coder
    from lvpnet.coding.adapt import ADAPT_WEIGHTS, WIDE_FLAG_LEVELS, modes
    from lvpnet.coding.estimate import slice_bits

    yy, xx = np.mgrid[:96, :112]
    out = np.hypot(yy - 48, xx - 56) > 44
    x = np.where(out, -2000, 100 + yy + xx).astype(np.int16)
    codec = LVPNetCodec(tiny_model_path, device="cpu")
    data = codec.encode(x)
    pix = unpack_chunk(data, 1, codec.version)[0].pixels
    n = modes(WIDE_FLAG_LEVELS)  # bitstream 11: twice as many, the block map's bit on top
    mode = int(codec.engine().pixels.pop_offsets(new_coder(pix), 1, 2 * n if codec.version >= 11 else n)[0])
    assert mode % n // len(ADAPT_WEIGHTS) >= 3
    m = analysis.analyse_slice(x, model)
    far = out.copy()  # padding whose 5 x 5 neighbourhood is all padding (the corners wrap onto padding)
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            far &= np.roll(np.roll(out, dy, 0), dx, 1)
    far &= out
    assert np.median(m.pixel_bits[far]) < 0.05
    assert np.median(m.pixel_bits[~out]) > 1.0
    side = slice_bits(model.net, model.dec, x, lattice_costs=costs)["side_bits"]
    st = codec.chunk_stats(data, x.shape, x.dtype, codec.version)
    assert st["estimated_bits"] == pytest.approx(m.total_bits + side, rel=1e-9)


def test_the_base_layer_in_the_map(model, tiny_model_path, monkeypatch):
    """Bitstream 7: where the encoder hands a lattice to JPEG-XL, the map shares the codestream's
    bits over the lattice's pixels in proportion to what the learned codec would have spent on
    each (the other pixels keep their own code lengths), and the map's total is the estimate with
    the lattice costs. Without the base layer, the lattice's pixels show those very lengths."""
    from lvpnet.codecs import lvpnet_base
    from lvpnet.codecs.lvpnet_codec import LVPNetCodec, unpack_chunk
    from lvpnet.coding import lattice

    yy, xx = np.mgrid[:70, :90]
    x = np.where(np.hypot(yy - 35, xx - 45) < 30, 900, 100).astype(np.uint16)
    x = x + ((yy // 3 + xx // 5) % 7 * 37).astype(np.uint16)  # a pattern the untrained model does not know
    data = LVPNetCodec(tiny_model_path, device="cpu").encode(x)
    (plane,) = unpack_chunk(data, 1, 7)
    level, code = plane.base_level, plane.base
    assert level > 0
    g = lattice.stride(model.dec.f, level)
    m = analysis.analyse_slice(x, model)
    on = np.zeros(x.shape, bool)
    on[::g, ::g] = True
    assert m.pixel_bits[on].sum(dtype=np.float64) == pytest.approx(lvpnet_base.bits(code), rel=1e-6)
    assert len(np.unique(m.pixel_bits[on])) > 10 and len(np.unique(m.pixel_bits[~on])) > 10
    ref = slice_bits(model.net, model.dec, x, lattice_costs=costs)
    assert m.pixel_bits_total == pytest.approx(ref["pixel_bits"], rel=1e-12)
    monkeypatch.setattr(lvpnet_base, "options", lambda *a: {})
    learned = analysis.analyse_slice(x, model).pixel_bits[on].astype(np.float64)
    share = m.pixel_bits[on].astype(np.float64)
    np.testing.assert_allclose(share, learned * (share.sum() / learned.sum()), rtol=1e-5, atol=1e-6)


def test_channel_mode():
    z = np.array([[[3, 3], [1, 3]], [[-2, 5], [5, -2]]], np.int64)  # channel 1 ties: the smaller value
    m = analysis.channel_mode(z)
    assert m.shape == z.shape and m.dtype == z.dtype
    assert (m[0] == 3).all() and (m[1] == -2).all()


def test_latent_ablation_is_the_slice_coded_with_each_channels_mode(model, rng, monkeypatch):
    x = smooth_image(rng, (64, 96), 0, 4095, np.uint16)
    m = analysis.analyse_slice(x, model, ablation=True)
    assert m.latent_saving.shape == (2, 3) and m.latent_saving.dtype == np.float32
    assert np.unique(m.z.reshape(m.z.shape[0], -1), axis=1).shape[1] > 1  # the untrained latent varies
    assert m.ablated_bits_total != pytest.approx(m.total_bits, rel=1e-4)
    assert m.latent_saved_bits == pytest.approx(m.ablated_bits_total - m.total_bits)
    assert m.latent_saving.sum(dtype=np.float64) == pytest.approx(m.latent_saved_bits, rel=1e-5, abs=1e-3)
    plain = analysis.analyse_slice(x, model)  # the ablation changes nothing of the real maps
    assert plain.total_bits == m.total_bits and plain.latent_saving is None and plain.latent_saved_bits is None

    # the same slice with the encoder's z replaced by each channel's mode costs exactly the ablated bits
    real = model.net.latent

    def held(v, B):
        y, z, rest = real(v, B)
        return y, torch.from_numpy(analysis.channel_mode(z[0].numpy()))[None].to(z.dtype), rest

    monkeypatch.setattr(model.net, "latent", held)
    const = analysis.analyse_slice(x, model, ablation=True)
    assert const.total_bits == pytest.approx(m.ablated_bits_total, rel=1e-12)
    assert (const.latent_saving == 0).all() and const.latent_saved_bits == 0  # a constant latent saves nothing


def test_iter_analyse_carries_the_ablation(model, rng):
    a = smooth_image(rng, (2, 40, 40), 0, 1000, np.uint16)
    res = run(analysis.iter_analyse(a, model, ablation=True))
    assert res.ablated_bits.shape == (2,)
    assert res.latent_saved_bits == pytest.approx([m.latent_saved_bits for m in res.maps])
    assert run(analysis.iter_analyse(a, model, maps=False)).ablated_bits is None


@pytest.mark.parametrize("kind", ["lvp", "array"])
def test_runs_in_worker_processes_give_the_serial_analysis(model, rng, tmp_path, kind):
    """``analysed_runs`` with two worker processes (Inspect's "all slices"): the same totals and maps
    as one process, slice by slice, from a .lvp (each worker reads its runs from the file) or from an
    array layer (each run's slices and the one before travel with it); a damaged slice, and the one
    coded against it, skipped and named either way."""
    from lvpnet.errors import DamagedError

    vol = smooth_image(rng, (11, 40, 33), 0, 3000, np.uint16)
    vol[5] = vol[4]  # the learned codec codes slice 5 against slice 4
    path = tmp_path / "v.lvp"
    lvpnet.compress_to_file(vol, path, codec="lvpnet")
    if kind == "lvp":
        _damage_slice(path, 4)
    lvp = lvpnet.open(path) if kind == "lvp" else None

    def collect(workers):
        res, skipped, done, yields = None, {}, 0, 0
        for part, bad, n in analysis.analysed_runs(lvp if lvp is not None else vol, model, range(11), lvp=lvp,
                                                   workers=workers):
            skipped.update(bad)
            if part is not None:
                res = part if res is None else analysis.merge(res, part)
            done, yields = done + n, yields + 1
        assert done == 11
        return res, skipped, yields

    serial, parallel = collect(1), collect(2)
    assert serial[2] == 11 and parallel[2] < 11  # one slice at a time, then runs of them
    want = [4, 5] if kind == "lvp" else []
    for res, skipped, _ in (serial, parallel):
        assert sorted(skipped) == want and all(isinstance(e, DamagedError) for e in skipped.values())
        assert res.indices == [i for i in range(11) if i not in want]
    assert np.array_equal(serial[0].pixel_bits, parallel[0].pixel_bits)
    assert np.array_equal(serial[0].latent_bits, parallel[0].latent_bits)
    for a, b in zip(serial[0].maps, parallel[0].maps, strict=True):
        assert a.index == b.index and np.array_equal(a.pixel_bits, b.pixel_bits) and np.array_equal(a.z, b.z)


def test_workers_refuse_a_lvp_replaced_since_the_layer_opened_it(model, rng, tmp_path):
    """Inspect's workers read a .lvp layer's slices from the file: one put in its place since is refused
    (as a read in this process is), not analysed under the layer's name."""
    import os

    vol = smooth_image(rng, (9, 40, 33), 0, 3000, np.uint16)
    path, other = tmp_path / "v.lvp", tmp_path / "w.lvp"
    lvpnet.compress_to_file(vol, path, codec="lvpnet")
    lvpnet.compress_to_file(vol[::-1].copy(), other, codec="lvpnet")
    lvp = lvpnet.open(path)
    os.utime(other, ns=(1, 1))
    os.replace(other, path)
    with pytest.raises(lvpnet.InputError, match="changed since it was opened"):
        for _ in analysis.analysed_runs(lvp, model, range(9), lvp=lvp, workers=2):
            pass


def test_a_lvp_slices_share_of_the_bar_never_goes_back(model, rng, tmp_path):
    """Inspect decodes a learned .lvp slice, then analyses it, each ticking 0 to 1 on its own: the bar's part
    of a slice went back to 0 in between. Now the decode fills the first part and the analysis the rest."""
    vol = smooth_image(rng, (3, 48, 40), 0, 3000, np.uint16)
    path = tmp_path / "learned.lvp"
    lvpnet.compress_to_file(vol, path, codec="lvpnet")
    parts: list = [[]]

    class Bar:
        def __call__(self, p):
            parts.append([])

        def part(self, fraction):
            if fraction is not None:
                parts[-1].append(fraction)

    run(analysis.iter_analyse(lvpnet.open(path), model, indices=[1, 2]), Bar())
    ticked = [p for p in parts if p]
    assert len(ticked) == 2
    for p in ticked:
        assert p == sorted(p), p
        assert min(p) < analysis.DECODE_SHARE < max(p)  # both parts ticked, each in its own share
