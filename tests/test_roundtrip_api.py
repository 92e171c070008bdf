"""Bit-exact round trips through the Python API for every kind of array we accept."""

import os

import numpy as np
import pytest
from conftest import smooth_image

import lvpnet


def _cases(rng):
    i16 = np.iinfo(np.int16)
    full_i16 = rng.integers(i16.min, i16.max, size=(40, 37), endpoint=True).astype(np.int16)
    full_i16[0, :2] = [i16.min, i16.max]
    twelve_in_16 = smooth_image(rng, (64, 48), 0, 4095, np.uint16)
    twelve_in_16[5, 5] = 0xF000 | 123  # overlay bits above BitsStored
    nan_f32 = rng.normal(size=(17, 19)).astype(np.float32)
    nan_f32[0, 0], nan_f32[1, 1], nan_f32[2, 2], nan_f32[3, 3] = np.nan, np.inf, -np.inf, -0.0
    nan_f32.view(np.uint32)[4, 4] = 0x7FC00001  # a NaN with a payload
    return {
        "uint8": smooth_image(rng, (50, 60), 0, 255, np.uint8),
        "int8": smooth_image(rng, (50, 60), -128, 127, np.int8),
        "uint16": smooth_image(rng, (50, 60), 0, 65535, np.uint16),
        "int16_full_range": full_i16,
        "12_bit_in_16": twelve_in_16,
        "1x1": np.array([[7]], np.int16),
        "513x511": smooth_image(rng, (513, 511), -1024, 3000, np.int16),
        "constant": np.full((31, 33), -1000, np.int16),
        "3d": smooth_image(rng, (4, 32, 40), 0, 2000, np.uint16),
        "4d": smooth_image(rng, (2, 3, 16, 24), -50, 900, np.int16),
        "5d": smooth_image(rng, (2, 2, 2, 8, 8), 0, 255, np.uint8),
        "rgb_uint8": rng.integers(0, 256, size=(2, 21, 23, 3)).astype(np.uint8),
        "float32_nan_inf": nan_f32,
        "float64": rng.normal(size=(3, 9, 10)),
        "bool": rng.random((12, 13)) > 0.5,
        "int32_wide": rng.integers(-(2**30), 2**30, size=(10, 10)).astype(np.int32),
        "uint64_high": (np.uint64(2**63) + rng.integers(0, 1000, size=(6, 7)).astype(np.uint64)),
        "big_endian": smooth_image(rng, (20, 20), -300, 300, np.int16).astype(">i2"),
    }


CASE_NAMES = list(_cases(np.random.default_rng(0)))


@pytest.mark.parametrize("name", CASE_NAMES)
def test_compress_decompress_bit_exact(name, rng):
    a = _cases(rng)[name]
    rgb = name.startswith("rgb")
    data = lvpnet.compress(a, rgb=rgb)
    back = lvpnet.decompress(data)
    assert back.shape == a.shape
    assert back.dtype == a.dtype.newbyteorder("<") if a.dtype.byteorder == ">" else back.dtype == a.dtype
    assert back.tobytes() == a.astype(a.dtype.newbyteorder("<")).tobytes()


def test_lazy_open_decodes_single_slices(tmp_path, rng):
    a = smooth_image(rng, (3, 4, 20, 30), 0, 3000, np.uint16)
    path = tmp_path / "v.lvp"
    lvpnet.compress_to_file(a, path)
    f = lvpnet.open(path)
    assert len(f) == 12 and f.shape == a.shape and f.dtype == a.dtype
    assert np.array_equal(f[7], a[1, 3])
    flat = a.reshape(12, 20, 30)
    assert np.array_equal(f[-1], flat[-1]) and np.array_equal(f[np.int64(-12)], flat[0])
    assert np.array_equal(f[2:5], flat[2:5]) and np.array_equal(f[::-5], flat[::-5])
    assert f[5:5].shape == (0, 20, 30) and f[5:5].dtype == a.dtype
    for bad in (12, -13):
        with pytest.raises(IndexError):
            f[bad]
    with pytest.raises(TypeError, match="slice numbers"):
        f[1.5]
    assert np.array_equal(f.read_all(), a)


def test_compressed_smaller_than_raw_for_scan_like_data(rng):
    a = smooth_image(rng, (4, 128, 128), -1024, 2000, np.int16)
    assert len(lvpnet.compress(a)) < a.nbytes * 0.75


def test_volume_metadata_travels(tmp_path, rng):
    v = lvpnet.Volume(
        array=smooth_image(rng, (2, 16, 16), 0, 100, np.int16),
        spacing=(2.5, 0.7, 0.7),
        origin=(1.0, 2.0, 3.0),
        direction=((1, 0, 0), (0, 1, 0), (0, 0, 1)),
        source_format="nifti",
        metadata={"modality": "CT", "note": "ü"},
        blobs=[b"first file", b""],
    )
    path = tmp_path / "m.lvp"
    lvpnet.compress_to_file(v, path)
    back = lvpnet.read(path)
    assert np.array_equal(back.array, v.array)
    assert back.spacing == v.spacing and back.origin == v.origin
    assert back.direction == tuple(tuple(float(x) for x in r) for r in v.direction)
    assert back.metadata == v.metadata and back.source_format == "nifti"
    assert back.blobs == v.blobs


def test_a_fallback_file_decodes_without_importing_the_learned_codec(tmp_path):
    """Reading a file the classical fallback wrote needs no torch: importing it took 1.6-2.6 s, which
    ``lvpnet bench`` counted as the fallback's decode time (0.16 Msamples/s instead of 10)."""
    import subprocess
    import sys

    a = np.arange(3 * 16 * 16, dtype=np.int16).reshape(3, 16, 16)
    lvpnet.compress_to_file(a, tmp_path / "f.lvp", codec="fallback")
    code = ("import sys, numpy as np; from lvpnet.lvpfile import LvpFile; "
            f"a = LvpFile(r'{tmp_path / 'f.lvp'}').read_all(); "
            "assert a.shape == (3, 16, 16) and int(a[2, 15, 15]) == 767; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_an_opened_file_behaves_as_a_file_handle(tmp_path):
    """np.asarray in the file's shape, with/close, pickling to another process, a readable repr; a file
    replaced or removed since it was opened is said so (it was called damaged, or a bare OSError)."""
    import pickle
    import time
    from concurrent.futures import ProcessPoolExecutor

    a = np.arange(2 * 3 * 8 * 8, dtype=np.uint16).reshape(2, 3, 8, 8)
    path = tmp_path / "r.lvp"
    lvpnet.compress_to_file(a, path, codec="fallback")
    f = lvpnet.open(path)
    assert np.asarray(f).shape == a.shape and np.array_equal(np.asarray(f, dtype=np.int32), a)
    assert "shape (2, 3, 8, 8) uint16, 6 slices" in repr(f)
    with ProcessPoolExecutor(1) as pool:
        assert np.array_equal(pool.submit(pickle.loads(pickle.dumps(f)).__getitem__, 4).result(), a[1, 1])
    with lvpnet.open(path) as g:
        assert np.array_equal(g[0], a[0, 0])
    with pytest.raises(ValueError, match="closed"):
        g[0]
    assert np.array_equal(f[2], a[0, 2])  # decoded and kept: the last slice read
    time.sleep(0.01)
    lvpnet.compress_to_file(a + 1, path, codec="fallback")  # replaced: another index
    for i in (2, 1):  # the slice kept from the old file was given out as the new file's
        with pytest.raises(lvpnet.InputError, match="changed since it was opened"):
            f[i]
    path.unlink()
    with pytest.raises(lvpnet.InputError, match="gone since it was opened"):
        f[3]


@pytest.mark.parametrize("bad", [None, 3, 2.5])
def test_open_says_what_it_takes(bad):
    with pytest.raises(lvpnet.InputError, match="expected a path or the bytes of a .lvp file"):
        lvpnet.open(bad)


def test_api_arguments_said_plainly(tmp_path):
    a = np.arange(64, dtype=np.uint8).reshape(8, 8)
    data = lvpnet.compress(a, codec="fallback")
    assert np.array_equal(lvpnet.decompress(np.frombuffer(data, np.uint8)), a)  # the bytes as numpy holds them
    assert lvpnet.compress_to_file(a, os.fsencode(tmp_path / "b.lvp"), codec="fallback").path == str(tmp_path / "b.lvp")
    with pytest.raises(lvpnet.InputError, match="name of another format"):
        lvpnet.compress_to_file(a, tmp_path / "a.npy", codec="fallback")
    with pytest.raises(lvpnet.InputError, match="the output must be a path"):
        lvpnet.compress_to_file(a, None, codec="fallback")
    with pytest.raises(lvpnet.InputError, match="rgb=True applies to an array"):
        lvpnet.compress(lvpnet.Volume(array=np.zeros((4, 4, 3), np.uint8)), rgb=True)


def test_a_file_opened_by_a_relative_name_pickles_to_another_folder(tmp_path, monkeypatch):
    """The pickle held the name as given: a worker started in another folder read 'the file is gone since it
    was opened' (or another file of that name: 'changed since it was opened')."""
    import pickle

    a = np.arange(2 * 8 * 8, dtype=np.uint16).reshape(2, 8, 8)
    (tmp_path / "here").mkdir()
    (tmp_path / "there").mkdir()
    lvpnet.compress_to_file(a, tmp_path / "here" / "scan.lvp", codec="fallback")
    lvpnet.compress_to_file(a + 1, tmp_path / "there" / "scan.lvp", codec="fallback")
    monkeypatch.chdir(tmp_path / "here")
    f = lvpnet.open("scan.lvp")
    assert f.name == "scan.lvp"  # messages name it as the user did
    state = pickle.dumps(f)
    monkeypatch.chdir(tmp_path / "there")
    assert np.array_equal(pickle.loads(state)[1], a[1])


def _read_in_worker(f):
    return np.asarray(f).sum()


def test_the_memory_limit_travels_with_a_pickled_file(tmp_path):
    """set_max_memory did not reach a dask worker reading a pickled LvpFile: the worker's refusal told the
    user to call set_max_memory, which they had."""
    from concurrent.futures import ProcessPoolExecutor

    path = tmp_path / "m.lvp"
    lvpnet.compress_to_file(np.ones((2, 64, 64), np.uint8), path, codec="fallback")
    lvpnet.limits._WRITTEN.clear()  # as a file another process wrote (this one may read back what it wrote)
    f = lvpnet.open(path)
    try:
        lvpnet.limits.set_max_memory("1K")  # a size as text works too
        with ProcessPoolExecutor(1) as pool:
            with pytest.raises(lvpnet.limits.LimitError, match="more than the limit set"):
                pool.submit(_read_in_worker, f).result()
        lvpnet.limits.set_max_memory(1 << 30)
        with ProcessPoolExecutor(1) as pool:
            assert pool.submit(_read_in_worker, f).result() == 2 * 64 * 64
    finally:
        lvpnet.limits.set_max_memory(None)


@pytest.mark.parametrize("bad", [-1, 0, 1.5, True, "lots"])
def test_a_memory_limit_that_is_not_a_size_is_refused(bad):
    with pytest.raises(lvpnet.LvpnetError, match="not a size|positive number of bytes"):
        lvpnet.limits.set_max_memory(bad)
    assert lvpnet.limits.explicit_limit() is None or lvpnet.limits._override is None


def test_the_python_api_refuses_what_the_command_line_refuses():
    """workers=0, -3 and 1.7 ran as 1 (the CLI refuses them); read_slice(1.5) and 'x in f' failed with
    numpy's or list's messages."""
    a = np.arange(2 * 8 * 8, dtype=np.uint8).reshape(2, 8, 8)
    for bad in (0, -3, 1.7, True):
        with pytest.raises(lvpnet.InputError, match="workers must be a whole number of at least 1"):
            lvpnet.compress(a, workers=bad)
    f = lvpnet.LvpFile(lvpnet.compress(a, codec="fallback"))
    with pytest.raises(TypeError, match="slice numbers are whole numbers, not 1.5"):
        f.read_slice(1.5)
    with pytest.raises(TypeError, match="'in' is not defined"):
        _ = 3 in f
    assert np.array_equal(f.read_slice(np.int64(1)), a[1])
    with pytest.raises(lvpnet.InputError, match="workers must be"):
        for _ in f.iter_decode(workers=0):
            pass


def test_a_refusal_shows_a_difference_rounding_would_hide():
    """'needs 2.0 MiB of memory, more than the limit set (2.0 MiB)'."""
    try:
        lvpnet.limits.set_max_memory(2_097_152)
        with pytest.raises(lvpnet.limits.LimitError, match=r"needs 2,121,728 bytes of memory, more than the limit set \(2,097,152 bytes\)"):
            lvpnet.limits.check(2_121_728, 10, "x")
    finally:
        lvpnet.limits.set_max_memory(None)


def test_a_file_indexes_as_its_array_and_feeds_dask():
    """dask.array.from_array(lvpnet.open(p), chunks=...) failed: no ndim, and tuples were refused."""
    import dask.array as da

    a = np.arange(2 * 3 * 8 * 10, dtype=np.int16).reshape(2, 3, 8, 10)
    f = lvpnet.LvpFile(lvpnet.compress(a, codec="fallback"))
    assert f.ndim == 4
    for key in [(0,), (1, 2), (..., 3), (slice(None), 1, slice(2, 5), 7), (-1, -1, -1, -1), (...,),
                (slice(0, 0),), (0, slice(None, None, -1)), (np.int64(1), ..., slice(1, 9, 3))]:
        assert np.array_equal(f[key], a[key]), key
    assert np.array_equal(f[...], a) and f[0].shape == (8, 10)  # one integer: still slice 0 of the flat order
    d = da.from_array(f, chunks=(1, 1, 8, 10))
    assert np.array_equal(d[1, :, 2:5].compute(), a[1, :, 2:5]) and np.array_equal(d.compute(), a)
    rgb = np.arange(2 * 4 * 5 * 3, dtype=np.uint8).reshape(2, 4, 5, 3)
    g = lvpnet.LvpFile(lvpnet.compress(rgb, rgb=True, codec="fallback"))
    assert np.array_equal(g[1, ..., 2], rgb[1, ..., 2]) and np.array_equal(g[:, 1:3, 2], rgb[:, 1:3, 2])
    with pytest.raises(IndexError, match="too many indices"):
        f[0, 0, 0, 0, 0]
    with pytest.raises(IndexError):
        f[5, 0]
    with pytest.raises(TypeError, match="whole numbers, ranges and"):
        f[0, [1, 2]]


def test_paths_are_asked_for_plainly(tmp_path):
    """``compress_path`` and ``read`` given an array or a number raised pathlib's TypeError; a ``.lvp`` as
    the source of ``compress_path`` said "unsupported input"; ``safety_net`` was refused by it alone."""
    a = np.arange(64, dtype=np.int16).reshape(8, 8)
    for call in (lambda: lvpnet.compress_path(a, tmp_path / "x.lvp"), lambda: lvpnet.read(a)):
        with pytest.raises(lvpnet.InputError, match="got ndarray: an array goes to lvpnet.compress"):
            call()
    for call in (lambda: lvpnet.compress_path(123, tmp_path / "x.lvp"), lambda: lvpnet.read(None)):
        with pytest.raises(lvpnet.InputError, match="expected the path of a file or folder"):
            call()
    np.save(tmp_path / "a.npy", a)
    with pytest.raises(lvpnet.InputError, match="the output must be a path"):
        lvpnet.compress_path(tmp_path / "a.npy", 5)
    r = lvpnet.compress_path(tmp_path / "a.npy", tmp_path / "a.lvp", codec="lvpnet", safety_net=False)
    assert r.codec_counts == {"lvpnet": 1}
    with pytest.raises(lvpnet.InputError, match="is already an lvpnet file"):
        lvpnet.compress_path(tmp_path / "a.lvp", tmp_path / "b.lvp")


def test_the_header_is_strict_json(tmp_path):
    """NaN and infinity in the geometry or the metadata were written as Python's NaN / Infinity, which strict
    JSON readers (JavaScript, Go, serde) refuse: refused before the encode, naming the field; a DICOM
    element's NaN is kept empty in the header (the file's record keeps its bytes)."""
    import io

    a = np.arange(64, dtype=np.int16).reshape(8, 8)
    for vol, said in ((lvpnet.Volume(a, spacing=(np.nan, 1.0)), "spacing holds nan"),
                      (lvpnet.Volume(a, origin=(0.0, np.inf, 0.0)), "origin holds inf"),
                      (lvpnet.Volume(a, metadata={"scan": {"f": float("nan")}}), "metadata 'scan.f' is nan")):
        with pytest.raises(lvpnet.InputError, match=said):
            lvpnet.compress(vol, codec="fallback")
    from lvpnet.io.dicom import _finite

    assert _finite({"00181050": {"vr": "DS", "Value": [float("nan"), 1.5]}}) == {"00181050": {"vr": "DS", "Value": [None, 1.5]}}
    from lvpnet.container import ContainerWriter

    with pytest.raises(ValueError):  # the writer's own guard, whatever reaches it
        ContainerWriter(io.BytesIO()).finish({"array_hash": "0" * 64, "shape": [8, 8], "dtype": "<i2", "rgb": False,
                                              "spacing": [float("nan"), 1.0]})


def test_an_opened_file_gives_its_geometry_without_decoding(tmp_path, monkeypatch):
    """``LvpFile`` had no ``spacing``, ``origin``, ``affine`` or ``metadata``: only ``volume()`` gave them, by
    decoding every slice."""
    a = np.arange(2 * 8 * 8, dtype=np.int16).reshape(2, 8, 8)
    vol = lvpnet.Volume(a, spacing=(2.0, 0.5, 0.5), origin=(1.0, 2.0, 3.0), metadata={"study": "x"})
    f = lvpnet.open(lvpnet.compress_to_file(vol, tmp_path / "g.lvp", codec="fallback").path)
    monkeypatch.setattr(f, "_decode", lambda *a, **k: pytest.fail("decoded"))
    assert f.spacing == (2.0, 0.5, 0.5) and f.origin == (1.0, 2.0, 3.0) and f.direction is None and f.affine is None
    assert f.metadata["study"] == "x"


def test_a_volume_read_gives_its_shape_and_dtype_as_a_file_does(tmp_path):
    """``lvpnet.read(path).shape`` raised AttributeError (``.array.shape`` was needed) where ``LvpFile.shape``
    works: a Volume says its shape and dtype too."""
    a = np.arange(2 * 6 * 5 * 3, dtype=np.uint8).reshape(2, 6, 5, 3)
    np.save(tmp_path / "a.npy", a)
    vol = lvpnet.read(tmp_path / "a.npy", rgb=True)
    assert vol.shape == (2, 6, 5, 3) and vol.dtype == np.uint8 and vol.n_slices == 2
    lvpnet.compress_to_file(vol, tmp_path / "a.lvp", codec="fallback")
    assert lvpnet.open(tmp_path / "a.lvp").shape == vol.shape
