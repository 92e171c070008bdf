"""Bitstream version 8: flags for the pixels that repeat the previous slice (``coding.reference``),
from the value mapping up to files whose slices are coded against the slice before them."""

import numpy as np
import pytest

import lvpnet
from lvpnet.codecs.lvpnet_codec import LVPNetCodec, unpack_chunk
from lvpnet.coding import reference
from lvpnet.coding.repeat import ring_for_step
from lvpnet.compressor import REFERENCE_RUN
from lvpnet.errors import DamagedError
from lvpnet.model import prep

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def cine(frames: int, shape=(40, 56), seed: int = 3) -> np.ndarray:
    """A cine-like uint8 loop: black, a static block of glyphs, a speckled region that changes."""
    rng = np.random.default_rng(seed)
    out = np.zeros((frames,) + shape, np.uint8)
    out[:, 2:8, 3:40] = rng.choice(np.array([0, 200, 255], np.uint8), size=(6, 37), p=[0.6, 0.2, 0.2])
    for t in range(frames):
        out[t, 12:34, 10:46] = rng.integers(20, 110, out[t, 12:34, 10:46].shape)
    return out


def test_reference_values_are_the_planes_coded_values():
    """The previous plane in this plane's coded values: the plane itself maps to what the codec
    codes; values off the grid, inside a removed run or outside the range have none."""
    rng = np.random.default_rng(0)
    plane = np.where(rng.random((30, 40)) < 0.5, -2000, 7 * rng.integers(0, 60, (30, 40)) + 14)
    vmin, step, k = prep.to_grid(plane)
    packed, gaps = prep.collapse_gaps(k)
    assert step == 1 or len(gaps)  # the padding's run is taken out
    R = int(packed.max())
    assert np.array_equal(reference.ref_values(plane, vmin, step, gaps, R), packed)
    odd = np.array([[vmin - 1, vmin + 1 if step > 1 else vmin + 10, int(plane.max()) + step, -2000]])
    got = reference.ref_values(odd, vmin, step, gaps, R)
    assert got[0, 0] == -1 and got[0, 2] == -1 and got[0, 3] == 0
    if len(gaps):  # a value inside the removed run
        inside = vmin + step * (int(gaps[0, 0]) + 1)
        assert reference.ref_values(np.array([[inside]]), vmin, step, gaps, R)[0, 0] == -1


def test_ring_repeats_and_contexts():
    order = [(0, 0), (2, 2), (0, 2), (2, 0), (1, 1), (1, 3), (3, 1), (3, 3),
             (0, 1), (0, 3), (2, 1), (2, 3), (1, 0), (1, 2), (3, 0), (3, 2)]
    v = np.arange(36).reshape(6, 6) % 5
    ref = v.copy()
    ref[0, 2] = 9  # a neighbour of pixel (1, 1) no longer repeats
    ref[4, 0] = 7  # and one of (5, 1); (1, 5) and (5, 5) have neighbours outside (they count as repeating)
    k = order.index((1, 1))
    assert ring_for_step(order, k) == ((-1, -1), (-1, 1), (1, -1), (1, 1))
    r, m, n = reference.item_reference(v, ref, (1, 1), 4, (2, 2), order, k)
    assert n == 4 and np.array_equal(r, ref[1::4, 1::4])
    assert np.array_equal(m, [[3, 4], [3, 4]])
    r2 = r.copy()
    r2[1, 1] = -1
    assert np.array_equal(reference.contexts(r2, m, n, 1, None), [[4, 5], [4, 0]])
    assert np.array_equal(reference.contexts(r2, m, n, 3, None), [[0, 5], [0, 0]])
    assert np.array_equal(reference.contexts(r2, m, n, 2, None), [[4, 5], [4, 0]])
    assert not reference.contexts(r2, m - 2, n, 2, None)[0, 0]
    assert not reference.contexts(r2, m, n, 0, None).any()
    assert reference.contexts(r, np.array([[0]]), 3, 1, 0)[0, 0] == reference.ROW0_CONTEXT


def test_a_repeating_frame_costs_less_and_decodes_exactly():
    codec = LVPNetCodec(device="cpu")
    a = cine(2)
    alone, against = codec.encode(a[1]), codec.encode(a[1], reference=a[0])
    v = codec.version
    assert codec.needs_reference(against, a[1].shape, v) and not codec.needs_reference(alone, a[1].shape, v)
    assert len(against) < 0.9 * len(alone)
    assert np.array_equal(codec.decode(against, a[1].shape, a.dtype, codec.version, reference=a[0]), a[1])
    with pytest.raises(ValueError, match="previous one"):
        codec.decode(against, a[1].shape, a.dtype, codec.version)
    with pytest.raises(ValueError, match="reference slice"):
        codec.decode(against, a[1].shape, a.dtype, codec.version, reference=a[0][:-1])
    # the estimate the decoder reports is the stream's length, near enough
    st = codec.chunk_stats(against, a[1].shape, a.dtype, codec.version, reference=a[0])
    assert abs(st["estimated_pixel_bits"] - st["pixel_bits"]) < 0.01 * st["pixel_bits"] + 64


def test_same_bytes_with_one_and_two_threads_against_the_previous_frame():
    import torch

    codec = LVPNetCodec(device="cpu")
    a = cine(2)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = codec.encode(a[1], reference=a[0])
        torch.set_num_threads(2)
        two = codec.encode(a[1], reference=a[0])
        back = codec.decode(one, a[1].shape, a.dtype, codec.version, reference=a[0])
    finally:
        torch.set_num_threads(old)
    assert one == two and codec.needs_reference(one, a[1].shape, codec.version) and np.array_equal(back, a[1])


def test_an_unrelated_reference_is_left_unused():
    """Where nothing repeats, the encoder picks reference level 0: the same bytes as alone."""
    codec = LVPNetCodec(device="cpu")
    rng = np.random.default_rng(9)
    x = rng.integers(0, 4096, (32, 48)).astype(np.uint16)
    other = rng.integers(0, 4096, (32, 48)).astype(np.uint16)
    data = codec.encode(x, reference=other)
    assert not codec.needs_reference(data, x.shape, codec.version)
    assert data == codec.encode(x)


def test_rgb_frames_repeat_plane_by_plane():
    codec = LVPNetCodec(device="cpu")
    g = cine(2, (24, 40), seed=5)
    rgb = np.stack([g, g // 2, 255 - g], -1)
    data = codec.encode(rgb[1], reference=rgb[0])
    assert [p.ref_level > 0 for p in unpack_chunk(data, 3, codec.version)] == [True] * 3
    assert np.array_equal(codec.decode(data, rgb[1].shape, rgb.dtype, codec.version, reference=rgb[0]), rgb[1])


# ------------------------------------------------------------------ files


@pytest.fixture(scope="module")
def cine_file():
    a = cine(REFERENCE_RUN + 3)
    return a, lvpnet.compress(a, codec="lvpnet", safety_net=False)


def _needs(f: lvpnet.LvpFile, i: int) -> bool:
    data, codec, version = f._chunk(i)
    return codec.needs_reference(data, f.slice_shape, version)


def test_a_cine_file_codes_each_frame_against_the_one_before(cine_file):
    a, data = cine_file
    f = lvpnet.LvpFile(data)
    assert [_needs(f, i) for i in range(len(f))] == [i % REFERENCE_RUN != 0 for i in range(len(f))]
    alone = lvpnet.compress(a[:1], codec="lvpnet", safety_net=False)
    assert f.chunk_bytes(1) < 0.9 * lvpnet.LvpFile(alone).chunk_bytes(0)
    assert np.array_equal(f.read_all(), a)


def test_info_counts_the_frames_coded_against_the_one_before_without_torch(cine_file, tmp_path):
    """``lvpnet info`` reads the learned codec's plane headers alone: no torch import (seconds)."""
    import json
    import subprocess
    import sys

    _, data = cine_file
    path = tmp_path / "cine.lvp"
    path.write_bytes(data)
    f = lvpnet.LvpFile(data)
    want = sum(_needs(f, i) for i in range(len(f)))
    code = (
        "import json, sys, lvpnet.cli as c;"
        f"d = c.info_dict({str(path)!r}); assert 'torch' not in sys.modules, 'torch imported';"
        "print(json.dumps(d['coded_against_previous']))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert json.loads(out.stdout) == want > 0


def test_any_frame_reads_alone_in_any_order(cine_file):
    a, data = cine_file
    f = lvpnet.LvpFile(data)  # a fresh file: slice 5 decodes 0..5 first
    for i in (5, REFERENCE_RUN + 2, 0, 3, 3, REFERENCE_RUN - 1, 1):
        assert np.array_equal(f[i], a[i])
    got = f[2]
    got[:] = 0  # a caller's changes do not reach the kept slice
    assert np.array_equal(f[2], a[2]) and np.array_equal(f[3], a[3])


def test_damage_before_a_frame_is_reported_when_reading_it(cine_file):
    """A frame coded against a damaged one is not decoded into a wrong image: the damage is named."""
    a, data = cine_file
    rec = lvpnet.LvpFile(data)._reader.records[2]
    damaged = bytearray(data)
    damaged[rec.offset + rec.length // 2] ^= 0x10
    g = lvpnet.LvpFile(bytes(damaged))
    assert np.array_equal(g[1], a[1])
    assert np.array_equal(g[REFERENCE_RUN], a[REFERENCE_RUN])  # a fresh run: unaffected
    with pytest.raises(DamagedError, match="slice 2"):
        g[4]
    assert g.coded_against_previous() == lvpnet.LvpFile(data).coded_against_previous() - 1  # info still reads


def test_a_frame_kept_by_the_fallback_is_a_reference_too():
    """With the safety net, a frame the fallback stores still serves the next one as its reference."""
    a = cine(3)
    a[1] = 0  # a black frame: the fallback codes it smaller
    a[1, 2:8, 3:40] = a[0, 2:8, 3:40]
    data = lvpnet.compress(a, codec="lvpnet")
    f = lvpnet.LvpFile(data)
    codecs = [f.header["codecs"][r.codec]["id"] for r in f._reader.records]
    assert np.array_equal(f.read_all(), a)
    if codecs[1] == "fallback" and codecs[2] == "lvpnet":
        assert _needs(f, 2) and np.array_equal(lvpnet.LvpFile(data)[2], a[2])


def test_the_map_of_a_frame_is_what_its_chunk_pays(cine_file):
    """The Inspect maps of a frame the writer codes against the one before count its reference
    flags as the decoder does: against the frame coded alone, map and decoder estimate move by
    the same number of bits (the side information, which maps leave out, is the same)."""
    from lvpnet import analysis

    a, data = cine_file
    f = lvpnet.LvpFile(data)
    model = analysis.load_model()
    res = lvpnet.progress.run(analysis.iter_analyse(f, model, indices=[1]))
    mapped = analysis.analyse_slice(a[1], model, reference=a[0]).total_bits
    alone = analysis.analyse_slice(a[1], model).total_bits
    assert res.maps[0].total_bits == pytest.approx(mapped, rel=1e-12) and mapped < 0.9 * alone
    codec = LVPNetCodec(device="cpu")
    est = codec.chunk_stats(f._chunk(1)[0], f.slice_shape, f.dtype, codec.version, reference=a[0])["estimated_bits"]
    est_alone = codec.chunk_stats(codec.encode(a[1]), f.slice_shape, f.dtype, codec.version)["estimated_bits"]
    assert est - mapped == pytest.approx(est_alone - alone, abs=1e-3)


def test_the_command_line_round_trip_of_a_cine(tmp_path):
    """``lvpnet compress --codec lvpnet`` on a cine: ``info`` counts the frames coded against the one
    before, ``verify`` and ``decompress`` give it back exactly."""
    from lvpnet.cli import main

    a = cine(4)
    np.save(tmp_path / "cine.npy", a)
    assert main(["compress", str(tmp_path / "cine.npy"), str(tmp_path / "c.lvp"), "--codec", "lvpnet"]) == 0
    from lvpnet.cli import info_dict

    info = info_dict(str(tmp_path / "c.lvp"))
    assert info["coded_against_previous"] == 3 and sum(info["codecs"].values()) == 4
    assert main(["verify", str(tmp_path / "c.lvp")]) == 0
    assert main(["decompress", str(tmp_path / "c.lvp"), str(tmp_path / "out.npy")]) == 0
    assert np.array_equal(np.load(tmp_path / "out.npy"), a)


def test_a_base_lattice_and_a_reference_in_one_plane(monkeypatch):
    """A plane may carry both a JPEG-XL base lattice (bitstream 7) and reference flags (the RGB train
    cine's G plane does); forced here: the lattice's sub-images read no reference flags, the
    others read them against pixels the lattice supplied, and the slice decodes exactly."""
    import nibabel as nib
    from lvpnet.resources import path

    from lvpnet.codecs import lvpnet_engine

    v = np.asarray(nib.load(path("sample_ct.nii.gz")).dataobj)
    frames = [np.ascontiguousarray(v[:96, :128, k]) for k in (5, 6)]
    frames[1][:40] = frames[0][:40]  # the top repeats, the rest changes
    monkeypatch.setattr(lvpnet_engine, "choose_lattice", lambda *a, **k: 2)  # bitstreams 7 and 8
    monkeypatch.setattr(lvpnet_engine.lattice, "choose_by_steps", lambda *a, **k: 2)  # bitstream 9
    codec = LVPNetCodec(device="cpu")
    data = codec.encode(frames[1], reference=frames[0])
    (plane,) = unpack_chunk(data, 1, codec.version)
    assert plane.base_level == 2 and plane.base and plane.ref_level > 0
    assert np.array_equal(codec.decode(data, frames[1].shape, frames[1].dtype, codec.version, reference=frames[0]), frames[1])


def test_bench_reports_a_cine_with_its_references(cine_file):
    """``lvpnet bench`` on a cine: the chunk figures of frames coded against the one before are
    computed against it (the decoder's estimate is within 1% of the real pixel bits)."""
    from lvpnet.bench import bench_volume

    a, _data = cine_file
    rec = bench_volume(lvpnet.Volume(array=a[:4]), "cine", codec="lvpnet", classical_ids=("jpegxl-e7",))
    ours = rec["lvpnet"]
    assert ours["lossless"] and ours["stats"]["slices"] == sum(ours["codecs"].get(k, 0) for k in ("lvpnet",))
    st = ours["stats"]
    assert abs(st["estimated_pixel_bits"] - st["pixel_bits"]) < 0.01 * st["pixel_bits"] + 64 * st["slices"]
