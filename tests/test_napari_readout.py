"""The status bar reads a rescaled scan's values in its units (HU for CT) beside the stored integers,
and a DICOM series whose files differ in their rescale (PET) opens at all."""

import nibabel as nib
import numpy as np
import pytest
from conftest import smooth_image

import lvpnet

pytest.importorskip("napari")


def _series(folder, slopes, inters):
    """A 3-file CT series from pydicom's CT_small, each file with its own rescale."""
    from pydicom import dcmread
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    ds = dcmread(get_testdata_file("CT_small.dcm"))
    ds.SeriesInstanceUID = generate_uid()
    folder.mkdir()
    for i, (s, b) in enumerate(zip(slopes, inters)):
        ds.SOPInstanceUID, ds.InstanceNumber = generate_uid(), i + 1
        ds.ImagePositionPatient = [0.0, 0.0, 5.0 * i]
        ds.RescaleSlope, ds.RescaleIntercept = s, b
        ds.save_as(folder / f"IM{i}.dcm")
    return ds.pixel_array


def _shown(layer, pos):
    return layer.get_status(pos, world=False)["coordinates"]


def test_a_ct_reads_hounsfield_units_beside_its_stored_values(make_napari_viewer):
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    path = get_testdata_file("CT_small.dcm")
    ds = dcmread(path)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(path, plugin="napari-lvpnet")
    stored = int(ds.pixel_array[40, 50])
    hu = stored * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
    assert _shown(layer, (40, 50)).endswith(f": {stored} ({hu} HU)")
    assert layer.get_status(None)["value"] == ""  # no position: nothing added


def test_a_series_whose_files_differ_in_rescale_opens_and_reads_each_slice_s_own(make_napari_viewer, tmp_path):
    """Opening it raised TypeError (float() of the per-file list) in napari, from the folder and from
    its .lvp alike."""
    pixels = _series(tmp_path / "pet", [1, 2, 1], [-1024, -1000, -1024])
    out = tmp_path / "pet.lvp"
    lvpnet.compress_path(tmp_path / "pet", out, codec="fallback")
    viewer = make_napari_viewer()
    (folder,) = viewer.open(str(tmp_path / "pet"), plugin="napari-lvpnet")
    (packed,) = viewer.open(str(out), plugin="napari-lvpnet")
    v = int(pixels[20, 30])
    for layer in (folder, packed):
        lo, hi = layer.contrast_limits
        assert np.isfinite([lo, hi]).all() and lo < hi  # percentiles: no one window fits every slice
        for i in (1, 2):  # decoded now (a .lvp layer's slices arrive in the background)
            assert np.array_equal(layer.data.read(i) if hasattr(layer.data, "read") else layer.data[i], pixels)
        for step, hu in ((1, 2 * v - 1000), (2, v - 1024)):  # every file holds the same pixels
            viewer.dims.set_current_step(0, step)  # the cursor on that slice, as napari puts it there
            assert _shown(layer, (step, 20, 30)).endswith(f"{v} ({hu} HU)")


def test_a_rescaled_nifti_reads_its_scaled_value_and_an_unscaled_one_nothing_more(make_napari_viewer, tmp_path, rng):
    data = smooth_image(rng, (12, 10, 3), 0, 2000, np.int16)
    img = nib.Nifti1Image(data, np.eye(4))
    img.header.set_slope_inter(0.5, 10.0)
    nib.save(img, tmp_path / "scaled.nii.gz")
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "plain.nii.gz")
    viewer = make_napari_viewer()
    (scaled,) = viewer.open(str(tmp_path / "scaled.nii.gz"), plugin="napari-lvpnet")
    (plain,) = viewer.open(str(tmp_path / "plain.nii.gz"), plugin="napari-lvpnet")
    v = int(data[4, 5, 1])  # x, y, z on disk: the layer's (z, y, x) = (1, 5, 4)
    assert _shown(scaled, (1, 5, 4)).endswith(f": {v} (= {v * 0.5 + 10:.6g})")
    assert _shown(plain, (1, 5, 4)).endswith(f": {v}")


def test_the_readout_says_nothing_it_cannot_know():
    from napari_lvpnet._readout import rescaled_text, units_of

    one, zero = np.array([1.0]), np.array([-1024.0])
    assert rescaled_text(1064, None, one, zero, "HU") == "40 HU"
    assert rescaled_text(True, None, one, zero, "HU") is None  # a mask's value is not a CT number
    assert rescaled_text(None, None, one, zero, "HU") is None  # outside the image
    two = (np.array([1.0, 2.0]), np.array([0.0, 0.0]))
    assert rescaled_text(5, None, *two, "") is None and rescaled_text(5, 7, *two, "") is None  # which slice?
    assert rescaled_text(5, 1, *two, "") == "= 10"
    assert rescaled_text(3, None, np.array([0.25]), np.array([0.0]), "") == "= 0.75"
    assert units_of({"modality": "CT", "dicom": {"rescale_type": None}}) == "HU"
    assert units_of({"modality": "PT", "dicom": {"rescale_type": "BQML"}}) == "BQML"
    assert units_of({"modality": "MR", "dicom": {"rescale_type": "US"}}) == ""  # DICOM's "unspecified"
    assert units_of({"modality": "CT", "nifti": {"scl_slope": 1.0}}) == ""  # a NIfTI names no unit
