"""lvpnet.io on DICOM: pydicom's test files and series written here with pydicom."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from lvpnet.errors import InputError
from lvpnet.io import read

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def _local(name: str) -> Path:
    path = TEST_FILES / name
    if not path.exists():  # pydicom downloads some test files on demand: never here
        pytest.skip(f"{name} is not bundled with this pydicom")
    return path


def _raw_stored(ds: Dataset) -> np.ndarray:
    """The PixelData bytes of an uncompressed file as stored values (no masking)."""
    dt = np.dtype(f"{'i' if ds.PixelRepresentation else 'u'}{ds.BitsAllocated // 8}")
    n = ds.Rows * ds.Columns * ds.get("SamplesPerPixel", 1) * int(ds.get("NumberOfFrames", 1) or 1)
    return np.frombuffer(ds.PixelData, dt, count=n).reshape(ds.pixel_array.shape)


# ---------------------------------------------------------------- pydicom's files


def test_ct_small_values_geometry_and_metadata():
    path = _local("CT_small.dcm")
    vol = read(path)
    ds = pydicom.dcmread(path)
    assert vol.source_format == "dicom" and vol.rgb is False
    assert vol.array.dtype == np.int16 and vol.array.shape == (128, 128)
    np.testing.assert_array_equal(vol.array, _raw_stored(ds))
    np.testing.assert_array_equal(vol.array, ds.pixel_array)
    assert vol.spacing == tuple(float(v) for v in ds.PixelSpacing)
    assert vol.origin == tuple(float(v) for v in ds.ImagePositionPatient)
    iop = [float(v) for v in ds.ImageOrientationPatient]
    np.testing.assert_allclose(vol.direction, [iop[:3], iop[3:], np.cross(iop[:3], iop[3:])])
    assert vol.metadata["modality"] == "CT" and vol.metadata["coordinate_system"] == "LPS"
    meta = vol.metadata["dicom"]
    assert meta["series_uid"] == ds.SeriesInstanceUID
    assert meta["modality"] == "CT" and meta["photometric"] == "MONOCHROME2"
    assert (
        meta["bits_allocated"],
        meta["bits_stored"],
        meta["high_bit"],
        meta["pixel_representation"],
    ) == (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation)
    assert meta["rescale_slope"] == float(ds.RescaleSlope)
    assert meta["rescale_intercept"] == float(ds.RescaleIntercept)
    assert meta["transfer_syntaxes"] == [ExplicitVRLittleEndian]
    assert meta["sop_instance_uids"] == [ds.SOPInstanceUID]
    assert meta["files"] == ["CT_small.dcm"] and meta["skipped_files"] == []
    assert meta["slice_order"] == "single"
    assert vol.blobs == []
    (elements,) = meta["elements"]
    assert "7FE00010" not in elements
    assert elements["00080060"]["Value"] == ["CT"]
    assert elements["00020010"]["Value"] == [ExplicitVRLittleEndian]
    json.dumps(vol.metadata)


@pytest.mark.parametrize(
    "name",
    [
        "MR_small_bigendian.dcm",
        "MR_small_expb.dcm",
        "MR_small_implicit.dcm",
        "MR_small_padded.dcm",
        "MR_small_RLE.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_jp2klossless.dcm",
    ],
)
def test_every_encoding_of_mr_small_gives_the_same_stored_values(name):
    ref = read(_local("MR_small.dcm"))
    vol = read(_local(name))
    assert vol.array.dtype == np.int16 and vol.array.shape == (64, 64)
    np.testing.assert_array_equal(vol.array, ref.array)
    assert vol.spacing == ref.spacing and vol.origin == ref.origin
    assert vol.metadata["dicom"]["transfer_syntaxes"] == [
        str(pydicom.dcmread(_local(name), stop_before_pixels=True).file_meta.TransferSyntaxUID)
    ]


@pytest.mark.parametrize(
    "name",
    [
        "J2K_pixelrep_mismatch.dcm",
        "693_J2KI.dcm",
        "JPEG2000.dcm",
        "image_dfl.dcm",
        "examples_jpeg2k.dcm",
        "SC_rgb_gdcm_KY.dcm",
        "rtdose_rle.dcm",
    ],
)
def test_compressed_files_match_pydicom(name):
    path = _local(name)
    vol = read(path)
    expected = pydicom.dcmread(path).pixel_array  # pydicom can decode these with what is installed
    assert vol.array.dtype == expected.dtype
    np.testing.assert_array_equal(vol.array, expected)


def test_jpeg_lossless_rgb_matches_the_rle_copy():
    np.testing.assert_array_equal(
        read(_local("SC_rgb_jpeg_gdcm.dcm")).array, read(_local("SC_rgb_rle.dcm")).array
    )


@pytest.mark.parametrize(
    ("name", "planar"),
    [
        ("SC_rgb_small_odd.dcm", 0),
        ("examples_rgb_color.dcm", 0),
        ("ExplVR_BigEnd.dcm", 1),
        ("SC_rgb_rle_2frame.dcm", 0),
        ("SC_rgb_rle_16bit_2frame.dcm", 0),
    ],
)
def test_rgb_planar_0_and_1(name, planar):
    path = _local(name)
    ds = pydicom.dcmread(path)
    assert ds.PlanarConfiguration == planar
    vol = read(path)
    assert vol.rgb is True and vol.array.shape[-1] == 3
    np.testing.assert_array_equal(vol.array, ds.pixel_array)
    assert vol.metadata["dicom"]["samples_per_pixel"] == 3


def test_palette_keeps_indices_and_lookup_table():
    path = _local("examples_palette.dcm")
    ds = pydicom.dcmread(path)
    vol = read(path)
    assert vol.rgb is False and vol.array.dtype == np.uint8
    np.testing.assert_array_equal(vol.array, _raw_stored(ds))
    meta = vol.metadata["dicom"]
    assert meta["palette"] is True and meta["photometric"] == "PALETTE COLOR"
    assert "InlineBinary" in meta["elements"][0]["00281201"]  # red LUT data kept, even over 1 KiB


def test_overlay_bits_above_bits_stored_are_kept():
    path = _local("examples_overlay.dcm")
    ds = pydicom.dcmread(path)
    assert ds.BitsStored < ds.BitsAllocated
    vol = read(path)
    np.testing.assert_array_equal(vol.array, _raw_stored(ds))
    assert vol.metadata["dicom"]["bits_stored"] == ds.BitsStored


def test_multiframe_rtdose_uses_grid_frame_offsets():
    path = _local("rtdose.dcm")
    ds = pydicom.dcmread(path)
    vol = read(path)
    assert vol.array.shape == (15, 10, 10) and vol.array.dtype == np.uint32
    np.testing.assert_array_equal(vol.array, ds.pixel_array)
    offsets = [float(v) for v in ds.GridFrameOffsetVector]
    assert vol.spacing == (abs(offsets[1] - offsets[0]), *(float(v) for v in ds.PixelSpacing))
    assert vol.origin == tuple(float(v) for v in ds.ImagePositionPatient)
    meta = vol.metadata["dicom"]
    assert meta["slice_order"] == "stored" and meta["number_of_frames"] == 15
    assert len(meta["image_positions"]) == 15


def test_uncompressed_ybr_422_is_expanded_exactly():
    from pydicom.pixels import pixel_array

    path = _local("SC_ybr_full_422_uncompressed.dcm")
    vol = read(path)
    np.testing.assert_array_equal(vol.array, pixel_array(path, raw=True))
    assert vol.metadata["dicom"]["decoded_photometric"] == "YBR_FULL"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("MR_truncated.dcm", "truncated"),
        ("liver_1frame.dcm", "BitsAllocated 1"),
        ("rtplan.dcm", "without pixel data"),
        ("badVR.dcm", "badVR.dcm"),
    ],
)
def test_unusable_files_are_input_errors(name, message):
    with pytest.raises(InputError, match=message):
        read(_local(name))


def test_garbage_dcm_and_missing_path(tmp_path):
    (tmp_path / "x.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 50)
    with pytest.raises(InputError, match="x.dcm"):
        read(tmp_path / "x.dcm")
    with pytest.raises(InputError, match="not found"):
        read(tmp_path / "absent.dcm")


# ---------------------------------------------------------------- series written here


def _slice(
    path: Path,
    pixels: np.ndarray,
    *,
    series_uid: str,
    position,
    instance: int | None,
    desc: str = "test series",
    bits_stored: int = 16,
    iop=(1, 0, 0, 0, 1, 0),
) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesDescription = desc
    if instance is not None:
        ds.InstanceNumber = instance
    if position is not None:
        ds.ImagePositionPatient = [float(v) for v in position]
        ds.ImageOrientationPatient = [float(v) for v in iop]
    ds.PixelSpacing = [0.5, 0.75]
    ds.SliceThickness = 9.0
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.WindowCenter, ds.WindowWidth = [40, 400], [400, 1500]
    ds.PixelData = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return ds


def _images(n: int, shape=(6, 5)) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.integers(-2000, 3000, shape, dtype=np.int16) for _ in range(n)]


def test_series_is_ordered_by_position_not_file_name(tmp_path):
    uid = generate_uid()
    images = _images(5)
    z = [12.0, -3.0, 6.0, 0.0, 3.0]  # file order a..e; true order by z: b, d, e, c, a
    names = ["a.dcm", "b.dcm", "c.dcm", "d.dcm", "e"]  # one without extension: found by preamble
    written = [
        _slice(tmp_path / n, img, series_uid=uid, position=(-10, 20, zz), instance=i + 1)
        for i, (n, img, zz) in enumerate(zip(names, images, z, strict=True))
    ]
    vol = read(tmp_path)
    order = np.argsort(z)
    assert vol.array.shape == (5, 6, 5) and vol.array.dtype == np.int16
    np.testing.assert_array_equal(vol.array, np.stack([images[i] for i in order]))
    assert vol.spacing == (3.0, 0.5, 0.75)
    assert vol.origin == (-10.0, 20.0, -3.0)
    assert vol.direction == ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
    meta = vol.metadata["dicom"]
    assert meta["slice_order"] == "ImagePositionPatient"
    assert meta["files"] == [names[i] for i in order]
    assert meta["sop_instance_uids"] == [written[i].SOPInstanceUID for i in order]
    assert meta["image_positions"] == [[-10.0, 20.0, z[i]] for i in order]
    assert meta["rescale_intercept"] == -1024.0
    assert meta["window_center"] == [40.0, 400.0] and meta["window_width"] == [400.0, 1500.0]
    assert meta["slice_spacing_from"] == "positions"
    assert len(meta["elements"]) == 5
    assert meta["elements"][0]["00080018"]["Value"] == [written[order[0]].SOPInstanceUID]
    json.dumps(vol.metadata)


def test_oblique_series_is_ordered_along_the_normal(tmp_path):
    uid = generate_uid()
    c, s = np.cos(0.3), np.sin(0.3)
    iop = (1, 0, 0, 0, c, s)
    normal = np.cross(iop[:3], iop[3:])
    images = _images(3)
    steps = [2, 0, 1]
    for name, img, k in zip(["1.dcm", "2.dcm", "3.dcm"], images, steps, strict=True):
        _slice(
            tmp_path / name,
            img,
            series_uid=uid,
            position=np.array([5.0, 5.0, 5.0]) + 2.5 * k * normal,
            instance=None,
            iop=iop,
        )
    vol = read(tmp_path)
    np.testing.assert_array_equal(vol.array, np.stack([images[1], images[2], images[0]]))
    assert vol.spacing[0] == pytest.approx(2.5)
    np.testing.assert_allclose(vol.direction[2], normal, atol=1e-9)


def test_instance_number_is_the_fallback(tmp_path):
    uid = generate_uid()
    images = _images(3)
    for name, img, inst in zip(["a.dcm", "b.dcm", "c.dcm"], images, [3, 1, 2], strict=True):
        _slice(tmp_path / name, img, series_uid=uid, position=None, instance=inst)
    vol = read(tmp_path)
    np.testing.assert_array_equal(vol.array, np.stack([images[1], images[2], images[0]]))
    meta = vol.metadata["dicom"]
    assert meta["slice_order"] == "InstanceNumber"
    assert vol.origin is None and vol.direction is None
    assert vol.spacing == (9.0, 0.5, 0.75) and meta["slice_spacing_from"] == "SliceThickness"


def test_signed_12_bit_values_with_high_bits_are_kept(tmp_path):
    img = np.array([[-32768, 32767, 0x1000, -1], [0x7FF, -0x800, 0x4ABC, -0x1234]], dtype=np.int16)
    path = tmp_path / "high.dcm"
    _slice(path, img, series_uid=generate_uid(), position=(0, 0, 0), instance=1, bits_stored=12)
    vol = read(path)
    assert vol.array.dtype == np.int16
    np.testing.assert_array_equal(vol.array, img)  # not masked, not sign-extended from bit 11
    assert vol.metadata["dicom"]["bits_stored"] == 12 and vol.metadata["dicom"]["high_bit"] == 11


def test_unsigned_16_bit_full_range(tmp_path):
    img = np.array([[0, 65535], [32768, 1]], dtype=np.uint16)
    path = tmp_path / "u16.dcm"
    _slice(path, img, series_uid=generate_uid(), position=(0, 0, 0), instance=1)
    vol = read(path)
    assert vol.array.dtype == np.uint16
    np.testing.assert_array_equal(vol.array, img)


def test_two_series_are_refused_and_series_picks_one(tmp_path):
    uid_a, uid_b = generate_uid(), generate_uid()
    images = _images(5)
    for i in range(3):
        _slice(
            tmp_path / f"s{i}.dcm",
            images[i],
            series_uid=uid_a,
            position=(0, 0, i),
            instance=i + 1,
            desc="axial",
        )
    (tmp_path / "other").mkdir()
    for i in range(2):
        _slice(
            tmp_path / "other" / f"t{i}.dcm",
            images[3 + i],
            series_uid=uid_b,
            position=(0, 0, -i),
            instance=i + 1,
            desc="scout",
        )
    with pytest.raises(InputError) as err:
        read(tmp_path)
    message = str(err.value)
    assert uid_a in message and uid_b in message
    assert "'axial' (3 files)" in message and "'scout' (2 files)" in message
    assert "--series" in message
    vol = read(tmp_path, series=uid_b)
    np.testing.assert_array_equal(vol.array, np.stack([images[4], images[3]]))
    assert vol.metadata["dicom"]["files"] == ["other/t1.dcm", "other/t0.dcm"]
    assert read(tmp_path, series=uid_a).array.shape == (3, 6, 5)
    with pytest.raises(InputError, match="no series 1.2.3"):
        read(tmp_path, series="1.2.3")


def test_non_dicom_and_pixel_less_files_are_skipped(tmp_path):
    uid = generate_uid()
    images = _images(2)
    for i in range(2):
        _slice(
            tmp_path / f"im{i}.dcm", images[i], series_uid=uid, position=(0, 0, i), instance=i + 1
        )
    (tmp_path / "README.txt").write_text("scanned on a Tuesday")
    pydicom.dcmread(_local("rtplan.dcm")).save_as(tmp_path / "plan.dcm")
    vol = read(tmp_path)
    assert vol.array.shape == (2, 6, 5)
    skipped = {s["file"]: s["reason"] for s in vol.metadata["dicom"]["skipped_files"]}
    assert skipped["README.txt"] == "not DICOM"
    assert skipped["plan.dcm"].startswith("no pixel data")


def test_dicomdir_folder_skips_the_dicomdir(tmp_path):
    root = TEST_FILES / "dicomdirtests"
    if not (root / "DICOMDIR").exists():
        pytest.skip("dicomdirtests not bundled")
    with pytest.raises(InputError, match="series"):
        read(root)  # several series in there


def test_folder_without_images(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(InputError, match="no DICOM images"):
        read(tmp_path)


def test_enhanced_multiframe_uses_functional_groups(tmp_path):
    frames = _images(3, shape=(4, 6))
    ds = _slice(
        tmp_path / "mf.dcm", frames[0], series_uid=generate_uid(), position=None, instance=1
    )
    del ds.PixelSpacing, ds.SliceThickness
    ds.NumberOfFrames = 3
    measures = Dataset()
    measures.PixelSpacing = [0.4, 0.6]
    measures.SliceThickness = 1.0
    orient = Dataset()
    orient.ImageOrientationPatient = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]  # sagittal
    shared = Dataset()
    shared.PixelMeasuresSequence = Sequence([measures])
    shared.PlaneOrientationSequence = Sequence([orient])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    for k in range(3):
        pos = Dataset()
        pos.ImagePositionPatient = [10.0 + 1.5 * k, -4.0, 7.0]  # against the normal (-x)
        item = Dataset()
        item.PlanePositionSequence = Sequence([pos])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.PixelData = np.stack(frames).astype("<i2").tobytes()
    ds.save_as(tmp_path / "mf.dcm", enforce_file_format=True)
    vol = read(tmp_path / "mf.dcm")
    np.testing.assert_array_equal(vol.array, np.stack(frames))
    assert vol.spacing == (1.5, 0.4, 0.6)
    assert vol.origin == (10.0, -4.0, 7.0)
    assert vol.direction == ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0), (1.0, 0.0, 0.0))  # flipped normal
    assert vol.metadata["dicom"]["slice_order"] == "stored"


def test_single_file_series_mismatch(tmp_path):
    path = tmp_path / "one.dcm"
    _slice(path, _images(1)[0], series_uid="1.2.3.4", position=(0, 0, 0), instance=1)
    assert read(path, series="1.2.3.4").array.shape == (6, 5)
    with pytest.raises(InputError, match="series 9.9 not found"):
        read(path, series="9.9")


def test_nifti_from_a_dicom_series_carries_its_rescale_and_says_what_it_cannot_hold(tmp_path, capsys):
    """NIfTI has one spacing per axis and one scaling per file: a series' one rescale goes into
    ``scl_slope`` / ``scl_inter`` (a CT in HU, not 1024 off), and a series whose slices are not evenly
    spaced, or rescaled slice by slice, is written with a warning naming what the file cannot say."""
    import gzip

    import nibabel as nib

    from lvpnet.cli import main
    from lvpnet.io import write
    from lvpnet.io.nifti import conversion_notes

    def series(name, z, slopes=None):
        folder = tmp_path / name
        folder.mkdir()
        uid = generate_uid()
        for i, (img, zz) in enumerate(zip(_images(len(z)), z, strict=True)):
            ds = _slice(folder / f"{i}.dcm", img, series_uid=uid, position=(0, 0, zz), instance=i + 1)
            if slopes:
                ds.RescaleSlope = slopes[i]
                ds.save_as(folder / f"{i}.dcm", enforce_file_format=True)
        return read(folder)

    even = series("even", [0.0, 3.0, 6.0, 9.0])
    assert conversion_notes(even) == []
    write(even, tmp_path / "even.nii.gz")
    raw = (tmp_path / "even.nii.gz").read_bytes()
    assert raw[3] & 0x08 == 0  # no file name in the gzip header (it would be the temporary one)
    img = nib.Nifti1Image.from_bytes(gzip.decompress(raw))
    assert (img.dataobj.slope, img.dataobj.inter) == (1.0, -1024.0)
    np.testing.assert_array_equal(np.asarray(img.dataobj.get_unscaled()).T, even.array)
    assert np.allclose(np.asarray(img.dataobj)[0, 0, 0], even.array[0, 0, 0] - 1024.0)

    uneven = series("uneven", [0.0, 3.0, 6.0, 12.0])
    (note,) = conversion_notes(uneven)
    assert "not evenly spaced (3 to 6 mm apart)" in note and "up to 3 mm" in note
    # the note speaks of the spacing the file gets (the volume's), and of slices that share a position
    spacing = uneven.spacing[0]
    ideal = np.arange(4) * spacing
    off = np.abs(np.array([0.0, 3.0, 6.0, 12.0]) - ideal).max()
    assert f"places them {spacing:g} mm apart" in note and f"up to {off:.3g} mm" in note
    notes = conversion_notes(series("twice", [0.0, 0.0, 2.0, 2.0, 4.0, 4.0]))
    assert any("3 slices share a position with another" in n for n in notes)
    assert any("stacked by InstanceNumber, not by position" in n for n in notes)  # said, not silently stacked

    rescaled = series("rescaled", [0.0, 3.0, 6.0], slopes=[1, 2.5, 1])
    (note,) = conversion_notes(rescaled)
    assert "differ between slices (slope 1 to 2.5" in note
    write(rescaled, tmp_path / "r.nii")
    img = nib.load(tmp_path / "r.nii")
    assert (img.dataobj.slope, img.dataobj.inter) == (1.0, 0.0)

    # the command line says it, and still writes the file
    assert main(["compress", str(tmp_path / "uneven"), str(tmp_path / "u.lvp"), "--codec", "fallback"]) == 0
    capsys.readouterr()
    assert main(["decompress", str(tmp_path / "u.lvp"), str(tmp_path / "u.nii.gz")]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "not evenly spaced" in err and (tmp_path / "u.nii.gz").exists()
    assert main(["decompress", str(tmp_path / "u.lvp"), str(tmp_path / "u.npy")]) == 0
    assert "warning" not in capsys.readouterr().err


def test_an_image_file_cut_before_its_pixels_is_called_truncated(tmp_path):
    """pydicom stops quietly at an element cut short, so a CT cut after 600 bytes looked like a file
    without pixels; an image object without them is said to be truncated or damaged."""
    data = _local("CT_small.dcm").read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[:600])
    with pytest.raises(InputError, match=r"although it is an image object \(CT Image Storage\): truncated"):
        read(tmp_path / "cut.dcm")
    with pytest.raises(InputError, match=r"without pixel data \(RT Plan Storage\)$"):
        read(_local("rtplan.dcm"))  # not an image: no pixels is what it is
    (tmp_path / "notes.dcm").write_text("not dicom at all\n")  # was "DICOM file without pixel data (no SOP class)"
    with pytest.raises(InputError, match=r"not a DICOM image \(no SOP class and no pixel data"):
        read(tmp_path / "notes.dcm")


def test_a_slice_cut_before_its_pixels_in_a_series_folder_is_said(tmp_path, capsys):
    """A series whose slice was cut short in its header lost that slice from the volume without a word
    (the file was carried as one without pixels); now the command says so, and names the file."""
    import pydicom

    from lvpnet.cli import main

    ds = pydicom.dcmread(_local("CT_small.dcm"))
    folder = tmp_path / "series"
    folder.mkdir()
    for i in range(3):
        ds.InstanceNumber, ds.ImagePositionPatient = i + 1, [0.0, 0.0, 2.5 * i]
        ds.SOPInstanceUID = f"1.2.3.4.{i}"
        ds.save_as(folder / f"s{i}.dcm")
    (folder / "s1.dcm").write_bytes((folder / "s1.dcm").read_bytes()[:600])
    volume = read(folder)
    assert volume.array.shape[0] == 2
    (entry,) = volume.metadata["dicom"]["skipped_files"]
    assert entry["file"] == "s1.dcm" and entry["damaged"] and "truncated or damaged" in entry["reason"]
    assert main(["compress", str(folder), str(tmp_path / "s.lvp"), "--codec", "fallback"]) == 0
    err = capsys.readouterr().err
    assert "s1.dcm: not in the volume, kept as it is: DICOM file without pixel data, although it is an image " \
           "object (CT Image Storage): truncated or damaged?" in err, err


def test_npy_and_nifti_outputs_hold_pixel_values_within_bits_stored(tmp_path, capsys):
    """Words with bits above BitsStored (a 12-bit signed CT whose -1 is stored as 0x0FFF, an overlay bit)
    went to .npy and NIfTI as they were stored: 4095 where the CT reads -1. The outputs for analysis
    now hold the pixel values, said in a warning; the DICOM output keeps the words byte for byte."""
    import pydicom

    from lvpnet.cli import main

    ds = pydicom.dcmread(_local("CT_small.dcm"))
    a = np.clip(ds.pixel_array, -2048, 2047).astype(np.int16)
    a[:3, :5] = -1
    raw = a.copy()
    raw[:3, :5] = 0x0FFF
    raw[5, 5] |= np.int16(0x1000)  # an overlay bit
    ds.BitsStored, ds.HighBit, ds.PixelData = 12, 11, raw.tobytes()
    (tmp_path / "s").mkdir()
    ds.save_as(tmp_path / "s" / "IM0.dcm")
    assert main(["compress", str(tmp_path / "s"), str(tmp_path / "a.lvp"), "--codec", "fallback"]) == 0
    capsys.readouterr()
    assert main(["decompress", str(tmp_path / "a.lvp"), str(tmp_path / "a.npy")]) == 0
    assert "16 stored values use bits above BitsStored (12)" in capsys.readouterr().err
    assert np.array_equal(np.load(tmp_path / "a.npy"), pydicom.dcmread(tmp_path / "s" / "IM0.dcm").pixel_array)
    assert main(["decompress", str(tmp_path / "a.lvp"), str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "IM0.dcm").read_bytes() == (tmp_path / "s" / "IM0.dcm").read_bytes()
    # in Python: the words as stored in ``array``, the values viewers show from ``pixel_values()``
    import lvpnet

    for vol in (lvpnet.read(tmp_path / "s"), lvpnet.read(tmp_path / "a.lvp")):
        assert vol.array[0, 0] == 0x0FFF and vol.pixel_values()[0, 0] == -1
        assert np.array_equal(vol.pixel_values(), pydicom.dcmread(tmp_path / "s" / "IM0.dcm").pixel_array)
    assert np.array_equal(lvpnet.Volume(array=raw).pixel_values(), raw)  # not DICOM: the array as it is


def test_a_file_without_its_preamble_and_float_pixel_data_are_named(tmp_path):
    """A file starting with 'DICM' (its 128-byte preamble cut off) was 'not a DICOM image (no SOP class and
    no pixel data)'; FloatPixelData was 'no DICOM images found in this folder'. Both said as they are now,
    alone and in a folder."""
    pixels = _images(1)[0]
    _slice(tmp_path / "whole.dcm", pixels, series_uid=generate_uid(), position=(0, 0, 0), instance=1)
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "a.dcm").write_bytes((tmp_path / "whole.dcm").read_bytes()[128:])
    ds = pydicom.dcmread(tmp_path / "whole.dcm")
    ds.FloatPixelData = pixels.astype("<f4").tobytes()
    del ds.PixelData
    (tmp_path / "float").mkdir()
    ds.save_as(tmp_path / "float" / "f.dcm", enforce_file_format=True)
    for path, said in ((tmp_path / "cut" / "a.dcm", "without its 128-byte preamble"),
                       (tmp_path / "cut", "1 file: a DICOM file without its 128-byte preamble"),
                       (tmp_path / "float" / "f.dcm", "float pixel data"),
                       (tmp_path / "float", "1 file: float pixel data (FloatPixelData or DoubleFloatPixelData) is not")):
        with pytest.raises(InputError, match=re.escape(said)):
            read(path)


@pytest.mark.parametrize("case", ["slope 0", "slope NaN", "orientation zeros"])
def test_a_series_whose_geometry_or_rescale_nifti_cannot_hold_is_still_written(tmp_path, case):
    """A zero slope or a zero orientation made '.nii' output fail ('Slope cannot be 0', 'Could not
    decompose affine'); a NaN slope lost the intercept without a word. Written now, with a note."""
    import nibabel as nib
    from pydicom.valuerep import DS

    from lvpnet.io import write
    from lvpnet.io.nifti import conversion_notes

    uid = generate_uid()
    folder = tmp_path / "s"
    folder.mkdir()
    images = _images(2)
    for i, img in enumerate(images):
        ds = _slice(folder / f"{i}.dcm", img, series_uid=uid, position=(0, 0, 3.0 * i), instance=i + 1)
        if case == "slope 0":
            ds.RescaleSlope = 0
        elif case == "slope NaN":
            ds.RescaleSlope = DS("NaN", auto_format=False, validation_mode=pydicom.config.IGNORE)
        else:
            ds.ImageOrientationPatient = [0.0] * 6
        ds.save_as(folder / f"{i}.dcm", enforce_file_format=True)
    vol = read(folder)
    notes = conversion_notes(vol)
    said = "cannot be a NIfTI scaling" if case.startswith("slope") else "orientation is not usable"
    assert any(said in n for n in notes), notes
    write(vol, tmp_path / "x.nii")
    img = nib.load(tmp_path / "x.nii")
    np.testing.assert_array_equal(np.asarray(img.dataobj.get_unscaled()).T, vol.array)
    if case.startswith("slope"):
        assert (img.dataobj.slope, img.dataobj.inter) == (1.0, 0.0)  # the stored values, as the note says


def test_refusals_name_the_python_argument_too(tmp_path):
    """``lvpnet.read`` of a folder of two series said 'pick one with --series UID', a flag of the command
    line; a Python caller passes ``series=``."""
    import pydicom

    for i, name in enumerate(("CT_small.dcm", "MR_small.dcm")):
        ds = pydicom.dcmread(_local(name))
        ds.save_as(tmp_path / f"{i}.dcm")
    with pytest.raises(InputError, match=r"pick one with --series UID \(series=UID in Python\)"):
        read(tmp_path)
    np.save(tmp_path / "a.npy", np.zeros((4, 4), np.uint8))
    with pytest.raises(InputError, match=r"--rgb \(rgb=True in Python\) applies"):
        read(tmp_path / "0.dcm", rgb=True)
