"""lvpnet.io on NIfTI files: stored integers, header kept, identical write-back."""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from lvpnet.errors import InputError
from lvpnet.io import read, write

NIB_DATA = Path(nib.__file__).parent / "tests" / "data"


def _reversed(raw: np.ndarray) -> np.ndarray:
    return raw.transpose(tuple(reversed(range(raw.ndim))))


def _content(path: Path) -> bytes:
    return gzip.open(path).read() if path.name.endswith(".gz") else path.read_bytes()


def _check_against_nibabel(path: Path):
    vol = read(path)
    img = nib.load(str(path))
    raw = np.asarray(img.dataobj.get_unscaled())
    assert vol.source_format == "nifti"
    assert vol.array.dtype == raw.dtype.newbyteorder("=")
    np.testing.assert_array_equal(vol.array, _reversed(raw))
    assert vol.spacing == tuple(float(z) for z in reversed(img.header.get_zooms()))
    np.testing.assert_array_equal(vol.affine, img.affine)
    assert vol.origin == tuple(float(v) for v in img.affine[:3, 3])
    cols = img.affine[:3, :3].T
    np.testing.assert_allclose(vol.direction, cols / np.linalg.norm(cols, axis=1)[:, None])
    assert vol.metadata["coordinate_system"] == "RAS"
    assert vol.metadata["modality"] is None
    json.dumps(vol.metadata)
    return vol, img


@pytest.mark.parametrize(
    "name",
    [
        "anatomical.nii",
        "example4d.nii.gz",
        "example_nifti2.nii.gz",
        "functional.nii",
        "standard.nii.gz",
        "resampled_anat_moved.nii",
    ],
)
def test_nibabel_files_read_and_write_back_identically(tmp_path, name):
    src = NIB_DATA / name
    vol, img = _check_against_nibabel(src)
    meta = vol.metadata["nifti"]
    assert (
        base64.b64decode(meta["header_b64"])
        == _content(src)[: len(base64.b64decode(meta["header_b64"]))]
    )
    assert meta["version"] == (2 if isinstance(img, nib.Nifti2Image) else 1)
    out = tmp_path / name
    write(vol, out)
    assert _content(out) == _content(src)
    again = read(out)
    assert again.array.dtype == vol.array.dtype
    assert again.array.tobytes() == vol.array.tobytes()  # NaN included
    np.testing.assert_array_equal(again.affine, vol.affine)
    assert again.metadata["nifti"] == meta


def test_4d_layout_and_extensions():
    vol, img = _check_against_nibabel(NIB_DATA / "example4d.nii.gz")
    assert img.shape == (128, 96, 24, 2)
    assert vol.array.shape == (2, 24, 96, 128) and vol.frame_shape == (2, 24)
    assert vol.spacing == pytest.approx((2000.0, 2.2, 2.0, 2.0), rel=1e-6)
    assert [e["code"] for e in vol.metadata["nifti"]["extensions"]] == [6, 6]


def test_big_endian_file_gives_native_array():
    vol, img = _check_against_nibabel(NIB_DATA / "anatomical.nii")
    assert img.get_data_dtype().byteorder == ">"
    assert vol.array.dtype.isnative and vol.metadata["nifti"]["dtype"] == ">i2"


def _save(path: Path, data: np.ndarray, slope=None, inter=None, zooms=None) -> None:
    affine = np.array([[-0.9, 0, 0, 90], [0, 1.1, 0, -120], [0, 0, 2.5, -60], [0, 0, 0, 1]])
    img = nib.Nifti1Image(data, affine)
    img.header.set_data_dtype(data.dtype)
    if zooms:
        img.header.set_zooms(zooms)
    if slope is not None:
        img.header.set_slope_inter(slope, inter)
    nib.save(img, str(path))


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_scaled_int16_full_range_keeps_stored_integers(tmp_path, suffix):
    data = np.random.default_rng(1).integers(-32768, 32768, (9, 7, 5), dtype=np.int16)
    data[0, 0, 0], data[1, 0, 0] = -32768, 32767
    plain = tmp_path / "plain.nii"
    _save(plain, data)
    # nibabel recomputes scaling when saving arrays, so patch scl_slope/scl_inter in the bytes
    raw = bytearray(plain.read_bytes())
    raw[112:120] = np.array([2.5, -1024.0], "<f4").tobytes()
    src = tmp_path / f"scaled{suffix}"
    src.write_bytes(gzip.compress(bytes(raw)) if suffix == ".nii.gz" else bytes(raw))
    img = nib.load(str(src))
    assert img.dataobj.slope == 2.5 and img.dataobj.inter == -1024.0
    vol, _ = _check_against_nibabel(src)
    assert vol.array.dtype == np.int16
    np.testing.assert_array_equal(vol.array, _reversed(np.asarray(img.dataobj.get_unscaled())))
    assert vol.metadata["nifti"]["scl_slope"] == 2.5
    assert vol.metadata["nifti"]["scl_inter"] == -1024.0
    out = tmp_path / f"out{suffix}"
    write(vol, out)
    assert _content(out) == _content(src)
    back = nib.load(str(out))
    assert back.dataobj.slope == 2.5 and back.dataobj.inter == -1024.0
    np.testing.assert_array_equal(
        np.asarray(back.dataobj.get_unscaled()), np.asarray(img.dataobj.get_unscaled())
    )


def test_uint16_and_4d_written_by_nibabel(tmp_path):
    data = np.random.default_rng(2).integers(0, 65536, (6, 5, 4, 3), dtype=np.uint16)
    src = tmp_path / "u16.nii"
    _save(src, data, zooms=(0.9, 1.1, 2.5, 3.0))
    vol, _ = _check_against_nibabel(src)
    assert vol.array.shape == (3, 4, 5, 6) and vol.array.dtype == np.uint16
    assert vol.spacing == pytest.approx((3.0, 2.5, 1.1, 0.9))
    np.testing.assert_array_equal(vol.array[2, 1], data[:, :, 1, 2].T)  # slices are (y, x)
    out = tmp_path / "u16_out.nii"
    write(vol, out)
    assert out.read_bytes() == src.read_bytes()


def test_volume_from_numpy_is_written_through_nibabel(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    np.save(tmp_path / "a.npy", arr)
    vol = read(tmp_path / "a.npy")
    write(vol, tmp_path / "a.nii.gz")
    img = nib.load(str(tmp_path / "a.nii.gz"))
    assert img.shape == (4, 3, 2) and img.get_data_dtype() == np.int16
    np.testing.assert_array_equal(read(tmp_path / "a.nii.gz").array, arr)


def test_dicom_volume_gets_a_ras_affine(tmp_path):
    import pydicom

    path = Path(pydicom.__file__).parent / "data" / "test_files" / "CT_small.dcm"
    vol = read(path)
    write(vol, tmp_path / "ct.nii")
    img = nib.load(str(tmp_path / "ct.nii"))
    ds = pydicom.dcmread(path)
    x, y, z = (float(v) for v in ds.ImagePositionPatient)
    np.testing.assert_allclose(img.affine[:3, 3], (-x, -y, z))
    np.testing.assert_allclose(
        img.header.get_zooms()[:2], [float(v) for v in ds.PixelSpacing][::-1]
    )
    np.testing.assert_array_equal(read(tmp_path / "ct.nii").array, vol.array)


@pytest.mark.parametrize("content", [b"", b"not a nifti file at all" * 20])
def test_damaged_nifti_is_an_input_error(tmp_path, content):
    p = tmp_path / "bad.nii"
    p.write_bytes(content)
    with pytest.raises(InputError, match="bad.nii"):
        read(p)


def test_truncated_nifti_is_an_input_error(tmp_path):
    src = (NIB_DATA / "anatomical.nii").read_bytes()
    p = tmp_path / "cut.nii"
    p.write_bytes(src[: len(src) // 2])
    with pytest.raises(InputError, match="cut.nii"):
        read(p)


def test_geometry_that_is_not_finite_is_left_out_and_messages_name_the_output(tmp_path):
    """A volume (say, from a forged header) whose spacing or origin is NaN is written with unit
    spacing there, not refused with nibabel's affine error; a refusal names the file asked for, not
    the hidden temporary one."""
    from lvpnet.volume import Volume

    vol = Volume(array=np.arange(24, dtype=np.uint16).reshape(2, 3, 4), spacing=(float("nan"), 2.0, 0.0),
                 origin=(float("nan"), 1.0, 2.0))
    write(vol, tmp_path / "a.nii")
    img = nib.load(tmp_path / "a.nii")
    assert np.allclose(np.diag(img.affine)[:3], [1.0, 2.0, 1.0]) and np.allclose(img.affine[:3, 3], [0, 1, 2])
    rgba = Volume(array=np.zeros((3, 4, 3), np.uint16), rgb=True)
    with pytest.raises(InputError) as e:
        write(rgba, tmp_path / "b.nii")
    assert str(e.value).startswith(f"{tmp_path / 'b.nii'}:") and not list(tmp_path.glob(".*"))


def test_edited_geometry_is_written_and_the_headers_other_fields_kept(tmp_path):
    """A volume read from NIfTI comes back byte for byte while its geometry is the header's; a moved
    affine, or a new spacing, is what the written file says (it was silently the old header's)."""
    import dataclasses

    data = np.arange(6 * 16 * 20, dtype=np.int16).reshape(20, 16, 6)
    c, s = np.cos(0.3), np.sin(0.3)
    aff = np.array([[0.9 * c, -0.9 * s, 0, -100.5], [0.9 * s, 0.9 * c, 0, 20.25], [0, 0, 2.5, -33.3], [0, 0, 0, 1]])
    img = nib.Nifti1Image(data, aff)
    img.header["descrip"] = b"study 7"
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_slope_inter(2.0, -10.0)
    nib.save(img, tmp_path / "a.nii")
    vol = read(tmp_path / "a.nii")
    write(vol, tmp_path / "same.nii")
    assert (tmp_path / "same.nii").read_bytes() == (tmp_path / "a.nii").read_bytes()
    moved = vol.affine.copy()
    moved[:3, 3] += [5, 6, 7]
    write(dataclasses.replace(vol, affine=moved, origin=tuple(moved[:3, 3])), tmp_path / "moved.nii")
    write(dataclasses.replace(vol, spacing=(3.0, 1.0, 1.0)), tmp_path / "spaced.nii")
    for name, want_affine, want_zooms in (("moved", moved, (0.9, 0.9, 2.5)),
                                          ("spaced", None, (1.0, 1.0, 3.0))):
        out = nib.load(tmp_path / f"{name}.nii")
        assert np.allclose(out.header.get_zooms(), want_zooms)
        if want_affine is not None:
            assert np.allclose(out.affine, want_affine, atol=1e-5)
        else:  # the same rotation and origin, the new spacing
            assert np.allclose(out.affine[:3, 3], aff[:3, 3], atol=1e-5)
            assert np.allclose(out.affine[:3, :3] / [1.0, 1.0, 3.0], aff[:3, :3] / [0.9, 0.9, 2.5], atol=1e-5)
        assert out.header["descrip"].item() == b"study 7" and out.header.get_xyzt_units() == ("mm", "sec")
        assert np.array_equal(np.asarray(out.dataobj.get_unscaled()), data)
        assert (out.dataobj.slope, out.dataobj.inter) == (2.0, -10.0)  # the stored values keep their meaning


def test_a_spacing_that_is_not_positive_is_said_and_left_to_the_affine(tmp_path):
    from lvpnet import Volume
    from lvpnet.io.nifti import conversion_notes

    for spacing in ((float("nan"), 1.0, 1.0), (-1.0, 0.0, 1.0)):
        vol = Volume(array=np.zeros((3, 8, 8), np.uint16), spacing=spacing)
        write(vol, tmp_path / "s.nii")  # was: "cannot write uint16 data as NIfTI (zooms must be positive)"
        assert nib.load(tmp_path / "s.nii").header.get_zooms() == (1.0, 1.0, 1.0)
        assert any("not positive numbers" in n for n in conversion_notes(vol))
        (tmp_path / "s.nii").unlink()


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_bytes_after_the_data_come_back(tmp_path, suffix, monkeypatch, capsys):
    """A .nii with bytes after its image data came back 12 bytes short, with "(verified)" and no word (and the
    archive blamed a DICOM rewrite). Kept now; beyond TRAILING_KEPT, said and not kept."""
    import lvpnet
    from lvpnet.cli import main
    from lvpnet.io import nifti

    a = (np.arange(6 * 7 * 3).reshape(6, 7, 3) * 5).astype(np.int16)
    nib.save(nib.Nifti1Image(a, np.eye(4)), tmp_path / "b.nii")
    source = (tmp_path / "b.nii").read_bytes() + b"TRAILINGJUNK"
    src = tmp_path / f"x{suffix}"
    src.write_bytes(gzip.compress(source) if suffix == ".nii.gz" else source)
    lvpnet.compress_path(src, tmp_path / "x.lvp", codec="fallback")
    out = tmp_path / f"back{suffix}"
    write(lvpnet.open(tmp_path / "x.lvp").volume(), out)
    back = out.read_bytes()
    assert (gzip.decompress(back) if suffix == ".nii.gz" else back) == source
    monkeypatch.setattr(nifti, "TRAILING_KEPT", 8)  # more than is kept: said, and the data written without it
    assert main(["compress", str(src), str(tmp_path / "y.lvp"), "--codec", "fallback"]) == 0
    assert "12 bytes after the NIfTI image data are not kept" in capsys.readouterr().err
    assert main(["decompress", str(tmp_path / "y.lvp"), str(tmp_path / f"short{suffix}")]) == 0
    short = (tmp_path / f"short{suffix}").read_bytes()
    assert (gzip.decompress(short) if suffix == ".nii.gz" else short) == source[:-12]
