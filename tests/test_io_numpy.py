"""lvpnet.io on .npy files, plus the dispatching rules of read/write."""

from __future__ import annotations

import numpy as np
import pytest

from lvpnet.errors import InputError
from lvpnet.io import read, write


@pytest.mark.parametrize(
    "arr",
    [
        np.arange(-128, 128, dtype=np.int8).reshape(16, 16),
        np.array([[0, 65535], [1, 2]], dtype=np.uint16),
        np.random.default_rng(0).integers(-32768, 32768, (3, 5, 7), dtype=np.int16),
        np.arange(2 * 3 * 4 * 5, dtype=np.uint8).reshape(2, 3, 4, 5),
        np.array([[np.nan, np.inf], [-np.inf, -0.0]], dtype=np.float32),
    ],
    ids=["int8", "uint16", "int16-3d", "uint8-4d", "float32-nan"],
)
def test_round_trip_is_byte_identical(tmp_path, arr):
    src, out = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(src, arr)
    vol = read(src)
    assert vol.source_format == "numpy"
    assert vol.array.dtype == arr.dtype and vol.array.shape == arr.shape
    assert vol.array.tobytes() == arr.tobytes()
    assert vol.rgb is False and vol.spacing is None
    assert vol.metadata["modality"] is None
    write(vol, out)
    assert out.read_bytes() == src.read_bytes()


def test_big_endian_and_fortran_order_come_back(tmp_path):
    arr = np.asfortranarray((np.arange(12).reshape(3, 4) - 6).astype(">i2"))
    src, out = tmp_path / "be.npy", tmp_path / "out.npy"
    np.save(src, arr)
    vol = read(src)
    assert vol.array.dtype == np.dtype("int16") and vol.array.dtype.isnative
    np.testing.assert_array_equal(vol.array, arr)
    assert vol.metadata["numpy"] == {"dtype": ">i2", "fortran_order": True, "axes": 2}
    write(vol, out)
    assert out.read_bytes() == src.read_bytes()


def test_rgb_needs_last_axis_of_three(tmp_path):
    ok, bad = tmp_path / "rgb.npy", tmp_path / "bad.npy"
    np.save(ok, np.zeros((2, 4, 5, 3), np.uint8))
    np.save(bad, np.zeros((4, 5, 4), np.uint8))
    vol = read(ok, rgb=True)
    assert vol.rgb and vol.slice_shape == (4, 5, 3) and vol.frame_shape == (2,)
    with pytest.raises(InputError, match="last axis of 3"):
        read(bad, rgb=True)


def test_object_arrays_are_refused_without_unpickling(tmp_path):
    p = tmp_path / "obj.npy"
    np.save(p, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="obj.npy"):
        read(p)


@pytest.mark.parametrize("content", [b"", b"hello, not numpy", b"\x93NUMPY\x01\x00garbage"])
def test_damaged_npy_is_an_input_error(tmp_path, content):
    p = tmp_path / "x.npy"
    p.write_bytes(content)
    with pytest.raises(InputError, match="x.npy"):
        read(p)


def test_one_dimensional_array_is_refused(tmp_path):
    p = tmp_path / "line.npy"
    np.save(p, np.arange(5))
    with pytest.raises(InputError, match="2 dimensions"):
        read(p)


def test_missing_and_unsupported_inputs(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read(tmp_path / "nope.npy")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="unsupported input"):
        read(tmp_path / "notes.txt")


def test_write_refuses_dicom_and_unknown_targets(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((2, 2), np.uint8))
    vol = read(tmp_path / "a.npy")
    with pytest.raises(InputError, match="DICOM output comes in a later version"):
        write(vol, tmp_path)
    with pytest.raises(InputError, match="unsupported output"):
        write(vol, tmp_path / "a.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy"]


# ------------------------------------------------------------------ .npz (one array)


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_an_npz_of_one_array_reads_as_that_array(tmp_path, save):
    arr = np.random.default_rng(3).integers(-2000, 3000, (3, 20, 24)).astype(">i2")  # big-endian too
    save(tmp_path / "a.npz", scan=arr)
    vol = read(tmp_path / "a.npz")
    assert vol.source_format == "numpy" and vol.array.dtype == np.int16 and np.array_equal(vol.array, arr)
    write(vol, tmp_path / "b.npy")  # decompresses to the array's own .npy
    back = np.load(tmp_path / "b.npy")
    assert back.dtype == arr.dtype and np.array_equal(back, arr)
    rgb = np.zeros((2, 5, 6, 3), np.uint8)
    np.savez(tmp_path / "c.npz", rgb)
    assert read(tmp_path / "c.npz", rgb=True).rgb


def test_an_npz_is_refused_clearly_when_it_is_not_one_readable_array(tmp_path):
    np.savez(tmp_path / "two.npz", first=np.zeros((2, 2)), second=np.ones((3, 3)))
    with pytest.raises(InputError, match=r"holds 2 arrays \(first, second\).*save the one to keep as \.npy"):
        read(tmp_path / "two.npz")
    np.savez(tmp_path / "none.npz")
    with pytest.raises(InputError, match="holds no array"):
        read(tmp_path / "none.npz")
    np.savez(tmp_path / "obj.npz", o=np.array([1, "a", None], dtype=object))
    with pytest.raises(InputError, match="Python objects"):
        read(tmp_path / "obj.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file" * 10)
    with pytest.raises(InputError, match="not a readable .npz"):
        read(tmp_path / "junk.npz")


def test_an_npz_declaring_a_huge_array_is_refused_before_it_is_inflated(tmp_path):
    """A compressed member may declare any size: it is held to the memory limit (``lvpnet.limits``)
    from its header, before a byte of the array is allocated."""
    import io
    import zipfile

    from lvpnet.errors import LimitError

    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": "<u2", "fortran_order": False, "shape": (4096, 4096, 64)})
    with zipfile.ZipFile(tmp_path / "bomb.npz", "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("arr_0.npy", head.getvalue() + bytes(1 << 20))  # 1 MiB of the 2 GiB it declares
    assert (tmp_path / "bomb.npz").stat().st_size < 20_000
    with pytest.raises(LimitError, match=r"4096x4096x64 uint16\) needs 2.0 GiB"):
        read(tmp_path / "bomb.npz")


def test_a_npy_declaring_more_data_than_it_holds_is_refused_before_anything_is_allocated(tmp_path):
    import io

    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": "<u2", "fortran_order": False, "shape": (40000, 40000, 10)})
    (tmp_path / "huge.npy").write_bytes(head.getvalue() + bytes(1000))  # 32 GB declared: numpy would try to allocate it
    with pytest.raises(InputError, match=r"declares 32,000,000,000 bytes .* holds 1,000: truncated"):
        read(tmp_path / "huge.npy")


def test_a_npy_header_that_does_not_parse_is_unreadable_input(tmp_path):
    """numpy parses the header's dictionary with the tokenizer: an unclosed bracket raised its
    TokenError, which the command reported as an internal error (exit 3) instead of bad input."""
    np.save(tmp_path / "a.npy", np.zeros((2, 3), np.int16))
    data = bytearray((tmp_path / "a.npy").read_bytes())
    data[10] = 0x0C  # the header dictionary loses its opening brace (found by fuzzing)
    (tmp_path / "a.npy").write_bytes(bytes(data))
    with pytest.raises(InputError, match="not a readable .npy file"):
        read(tmp_path / "a.npy")
