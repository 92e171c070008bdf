"""Damaged, truncated and foreign files are detected, never decoded into a wrong image."""

import struct
import zlib

import numpy as np
import pytest

import lvpnet
from lvpnet.container import FORMAT_MAJOR, PREAMBLE, TRAILER
from lvpnet.errors import DamagedError, LvpnetError, NewerFormatError, NotLvpError


@pytest.fixture(scope="module")
def small_lvp():
    rng = np.random.default_rng(7)
    a = rng.integers(-200, 200, size=(2, 6, 5)).astype(np.int16)
    v = lvpnet.Volume(array=a, metadata={"k": "v"}, blobs=[b"blob-bytes"])
    return a, lvpnet.compress(v)


def _fully_read(data: bytes):
    f = lvpnet.LvpFile(data)
    run_verify = list(f.iter_verify())
    return f, run_verify


def test_every_flipped_byte_is_detected(small_lvp):
    _, data = small_lvp
    assert len(data) < 2000  # keep the loop small
    for flip in (0xFF, 0x01, 0x80):
        for pos in range(len(data)):
            damaged = bytearray(data)
            damaged[pos] ^= flip
            with pytest.raises(LvpnetError):
                _fully_read(bytes(damaged))


def test_flip_in_chunk_names_the_slice(small_lvp):
    _, data = small_lvp
    f = lvpnet.LvpFile(data)
    rec = f._reader.records[1]
    damaged = bytearray(data)
    damaged[rec.offset + rec.length // 2] ^= 0x10
    g = lvpnet.LvpFile(bytes(damaged))
    assert np.array_equal(g[0], small_lvp[0][0])  # the other slice still decodes alone
    with pytest.raises(DamagedError, match="slice 1: chunk checksum"):
        g[1]


@pytest.mark.parametrize("cut", [1, 10, 24, 25, 100])
def test_truncation_is_detected(small_lvp, cut):
    _, data = small_lvp
    with pytest.raises(DamagedError):
        _fully_read(data[:-cut])


@pytest.mark.parametrize(
    "content", [b"", b"hello, I am a text file\n", b"\x89PNG\r\n\x1a\n" + b"\0" * 100, b"\x89LVP"]
)
def test_foreign_files_are_not_lvp(content):
    with pytest.raises(NotLvpError, match="not an lvpnet file"):
        lvpnet.LvpFile(content)


def test_newer_major_version_is_refused(small_lvp):
    _, data = small_lvp
    newer = PREAMBLE.pack(b"\x89LVP\r\n\x1a\n", FORMAT_MAJOR + 1, 0) + data[PREAMBLE.size :]
    # a newer lvpnet writes a checksum that covers its version (an unchecked flip reads as damage)
    h_off, h_len, n, _crc, end = TRAILER.unpack(newer[-TRAILER.size :])
    crc = zlib.crc32(newer[h_off : -TRAILER.size], zlib.crc32(newer[: PREAMBLE.size]))
    newer = newer[: -TRAILER.size] + TRAILER.pack(h_off, h_len, n, crc, end)
    with pytest.raises(NewerFormatError, match="newer lvpnet"):
        lvpnet.LvpFile(newer)


def test_trailer_fields_are_checked(small_lvp):
    _, data = small_lvp
    trailer = bytearray(data[-24:])
    struct.pack_into("<I", trailer, 12, 5)  # claim 5 chunks
    with pytest.raises(DamagedError):
        lvpnet.LvpFile(data[:-24] + bytes(trailer))


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((4, 4), np.complex64), "complex"),
        (np.array([["a", "b"]], dtype=object), "not supported"),
        (np.zeros((0, 5), np.uint8), "empty"),
        (np.zeros((1, 1, 1, 1, 1, 2, 2), np.uint8), "dimensions"),
        (np.zeros(5, np.uint8), "not an image"),
        (np.array([["a", "b"]]), "not supported"),
        (np.zeros((4, 4), np.dtype([("a", "<i2"), ("b", "<i2")])), "not supported"),
    ] + ([(np.zeros((4, 4), np.longdouble), "at most 64 bits")] if np.dtype(np.longdouble).itemsize > 8 else []),
)
def test_bad_arrays_are_refused(array, message):
    """long double was coded, and the file it wrote could not be read back ('damaged' from info and verify)."""
    with pytest.raises(lvpnet.InputError, match=message):
        lvpnet.compress(array)


def test_rgb_without_a_colour_axis_says_so():
    with pytest.raises(lvpnet.InputError, match=r"RGB data needs rows, columns and a last axis of 3 colours"):
        lvpnet.compress(np.zeros((4, 4), np.uint8), rgb=True)  # it said "(4, 4) is not an image"


@pytest.mark.parametrize("kw, message", [
    (dict(spacing=(1.0,)), r"spacing has shape \(1,\), needs \(3,\) \(one value per axis"),
    (dict(affine=np.eye(3)), r"affine has shape \(3, 3\), needs \(4, 4\)"),
    (dict(affine=np.vstack([np.eye(4)[:3], [1, 1, 1, 1]])), r"affine's last row is \[1.0, 1.0, 1.0, 1.0\], needs \[0, 0, 0, 1\]"),
    (dict(origin=(1.0, 2.0)), r"origin has shape \(2,\), needs \(3,\)"),
    (dict(direction=np.eye(2)), r"direction has shape"),
    (dict(spacing=("a", 1, 1)), "spacing must be numbers"),
    (dict(metadata={"scanner": {"serial": b"x1"}}), "metadata 'scanner.serial' is a bytes"),
    (dict(metadata={"n": 10**5000}), "metadata 'n' is an integer of 16,610 bits"),  # failed after the encode
])
def test_geometry_and_metadata_a_file_could_not_keep_are_refused_before_coding(kw, message, tmp_path):
    """Geometry of the wrong shape was stored and silently dropped when the file became NIfTI; bytes
    in the metadata failed with a bare TypeError after the whole encode."""
    vol = lvpnet.Volume(array=np.zeros((3, 8, 8), np.uint16), **kw)
    with pytest.raises(lvpnet.InputError, match=message):
        lvpnet.compress_to_file(vol, tmp_path / "x.lvp", codec="fallback")
    assert not list(tmp_path.iterdir())


def test_numpy_values_in_metadata_are_stored_as_numbers_and_lists():
    meta = {"n": np.int64(3), "te": np.float32(0.5), "bvals": np.array([0, 1000]), "nested": [{"k": np.bool_(True)}]}
    data = lvpnet.compress(lvpnet.Volume(array=np.zeros((8, 8), np.uint8), metadata=meta), codec="fallback")
    assert lvpnet.open(data).header["source"]["metadata"] == {"n": 3, "te": 0.5, "bvals": [0, 1000],
                                                              "nested": [{"k": True}]}


def test_a_masked_array_is_refused_not_called_damaged():
    a = np.ma.array(np.arange(64, dtype=np.uint16).reshape(8, 8), mask=np.eye(8, dtype=bool))
    with pytest.raises(lvpnet.InputError, match="masked array: its mask would be lost"):
        lvpnet.compress(a, codec="fallback")


def test_rgb_needs_three_channels():
    with pytest.raises(lvpnet.InputError, match="last axis of 3"):
        lvpnet.compress(np.zeros((4, 4, 4), np.uint8), rgb=True)


def test_metadata_nested_too_deep_is_refused():
    """A RecursionError traceback came out of the header's conversion."""
    deep: dict = {}
    for _ in range(5000):
        deep = {"a": deep}
    loop: dict = {}
    loop["self"] = loop
    for meta in (deep, loop):
        with pytest.raises(lvpnet.InputError, match="nested too deeply"):
            lvpnet.compress(lvpnet.Volume(np.zeros((4, 4), np.uint8), metadata=meta), codec="fallback")
