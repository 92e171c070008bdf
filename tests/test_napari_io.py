"""NIfTI and DICOM open in a real viewer through the plugin; image layers save to .lvp."""

import nibabel as nib
import numpy as np
import pytest
from conftest import smooth_image

import lvpnet

pytest.importorskip("napari")


def test_open_nifti_keeps_stored_integers_and_scale(make_napari_viewer, tmp_path, rng):
    data = smooth_image(rng, (30, 20, 6), -1000, 2000, np.int16)  # x, y, z on disk
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([0.5, 0.6, 2.5, 1.0])), path)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path), plugin="napari-lvpnet")
    assert layer.data.dtype == np.int16
    assert np.array_equal(layer.data, data.transpose(2, 1, 0))
    assert np.allclose(layer.scale, (2.5, 0.6, 0.5))
    assert layer.metadata["source_format"] == "nifti" and "nifti" in layer.metadata
    lo, hi = layer.contrast_limits
    assert -1000 <= lo < hi <= 2000  # percentiles of the stored values
    # ... and the slider reaches every value of the volume, not only the percentiles
    assert list(layer.contrast_limits_range) == [float(data.min()), float(data.max())]


def test_oblique_nifti_keeps_its_world_geometry_through_a_save(make_napari_viewer, tmp_path, rng):
    """Shown in its own plane (scale + translate); the world affine rides in the metadata and
    comes back in a .lvp saved from the layer."""
    data = smooth_image(rng, (20, 16, 4), 0, 3000, np.int16)
    c, s = np.cos(0.4), np.sin(0.4)
    aff = np.array([[0.8 * c, -0.9 * s, 0, 10.0], [0.8 * s, 0.9 * c, 0, -20.0], [0, 0, 3.0, 5.0], [0, 0, 0, 1]])
    path = tmp_path / "oblique.nii.gz"
    nib.save(nib.Nifti1Image(data, aff), path)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path), plugin="napari-lvpnet")
    assert np.allclose(layer.scale, (3.0, 0.9, 0.8))
    geo = layer.metadata["geometry"]
    assert np.allclose(geo["affine"], aff) and np.allclose(geo["origin"], aff[:3, 3])
    out = tmp_path / "saved.lvp"
    viewer.layers.save(str(out), plugin="napari-lvpnet")
    vol = lvpnet.read(out)
    assert np.array_equal(vol.array, data.transpose(2, 1, 0))
    assert np.allclose(vol.affine, aff) and np.allclose(vol.origin, aff[:3, 3])
    assert np.allclose(vol.direction, geo["direction"])


def test_open_dicom_uses_stored_window(make_napari_viewer):
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    path = get_testdata_file("CT_small.dcm")
    ds = dcmread(path)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(path, plugin="napari-lvpnet")
    assert np.array_equal(layer.data, ds.pixel_array) and layer.data.dtype == ds.pixel_array.dtype
    assert np.allclose(layer.scale, [float(x) for x in ds.PixelSpacing])
    assert layer.metadata["modality"] == "CT"
    slope, inter = float(ds.RescaleSlope), float(ds.RescaleIntercept)
    if "WindowCenter" in ds:
        c, w = float(np.ravel(ds.WindowCenter)[0]), float(np.ravel(ds.WindowWidth)[0])
    else:
        c, w = 40.0, 400.0
    assert np.allclose(layer.contrast_limits, [(c - w / 2 - inter) / slope, (c + w / 2 - inter) / slope])
    # the window sets the limits; the slider reaches the stored values beyond it (a bone or lung window)
    lo, hi = layer.contrast_limits
    assert list(layer.contrast_limits_range) == [min(lo, float(ds.pixel_array.min())), max(hi, float(ds.pixel_array.max()))]
    assert list(layer.contrast_limits_range) != [lo, hi]


def test_save_layer_as_lvp_and_decode(make_napari_viewer, tmp_path, rng):
    a = smooth_image(rng, (3, 24, 28), 0, 4000, np.uint16)
    viewer = make_napari_viewer()
    viewer.add_image(a, scale=(2.0, 0.5, 0.5), name="scan")
    out = tmp_path / "saved.lvp"
    viewer.layers.save(str(out), plugin="napari-lvpnet")
    f = lvpnet.open(out)
    assert np.array_equal(f.read_all(), a) and f.dtype == np.uint16
    assert f.header["spacing"] == [2.0, 0.5, 0.5]


def test_a_layer_from_a_dicom_archive_saves_as_its_values(make_napari_viewer, tmp_path):
    """A .lvp made from DICOM files opens as a layer of values; saving that layer writes those values
    with the series' metadata, not a claim to restore files it does not hold (which failed as damage)."""
    import shutil

    from pydicom.data import get_testdata_file

    from lvpnet.cli import main

    (tmp_path / "series").mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "series" / "IM0.dcm")
    assert main(["compress", str(tmp_path / "series"), str(tmp_path / "a.lvp"), "--codec", "fallback"]) == 0
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(tmp_path / "a.lvp"), plugin="napari-lvpnet")
    viewer.layers.save(str(tmp_path / "b.lvp"), selected=True, plugin="napari-lvpnet")
    f = lvpnet.open(tmp_path / "b.lvp")
    assert np.array_equal(f.read_all(), lvpnet.open(tmp_path / "a.lvp").read_all())
    meta = f.header["source"]["metadata"]["dicom"]
    assert "archive" not in meta and meta["modality"] == "CT"
    assert main(["verify", str(tmp_path / "b.lvp")]) == 0
    assert main(["decompress", str(tmp_path / "b.lvp"), str(tmp_path / "out")]) == 2  # no files to restore


def test_readers_decline_what_they_cannot_read(tmp_path):
    from napari_lvpnet._reader import get_dicom_reader, get_lvp_reader, get_nifti_reader

    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "fake.nii").write_text("hello")
    assert get_lvp_reader(str(tmp_path / "notes.txt")) is None
    assert get_dicom_reader(str(tmp_path / "notes.txt")) is None
    assert get_dicom_reader(str(tmp_path)) is None  # a folder without DICOM files
    assert get_nifti_reader(str(tmp_path / "missing.nii")) is None
    assert get_nifti_reader(str(tmp_path / "fake.nii")) is None
    assert get_lvp_reader([str(tmp_path / "a"), str(tmp_path / "b")]) is None


def test_reader_patterns_claim_only_what_the_plugin_reads(tmp_path):
    """A PNG gets no reader of this plugin (so no "Choose reader" dialog); a DICOM file without an
    extension does, once its preamble says DICOM; .lvp, .dcm and folders do."""
    import shutil

    from napari.plugins._npe2 import get_readers
    from pydicom.data import get_testdata_file

    from napari_lvpnet._reader import get_dicom_reader, read_volume

    png = tmp_path / "photo.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    assert "napari-lvpnet" not in get_readers(str(png))
    im = tmp_path / "IM000001"  # a DICOM media file ID
    shutil.copy(get_testdata_file("CT_small.dcm"), im)
    assert "napari-lvpnet" in get_readers(str(im)) and get_dicom_reader(str(im)) is read_volume
    notes = tmp_path / "README"
    notes.write_text("not an image")
    assert get_dicom_reader(str(notes)) is None
    for name in ("a.lvp", "b.dcm"):
        assert "napari-lvpnet" in get_readers(str(tmp_path / name))
    assert "napari-lvpnet" in get_readers(str(tmp_path))


def test_dicom_series_has_mm_units_and_labelled_axes(make_napari_viewer):
    from pydicom.data import get_testdata_file

    viewer = make_napari_viewer()
    (layer,) = viewer.open(get_testdata_file("CT_small.dcm"), plugin="napari-lvpnet")
    assert [str(u) for u in layer.units] == ["millimeter"] * 2
    assert viewer.dims.axis_labels == ("row", "column")


def test_a_layer_placed_by_translate_saves_and_reopens_in_place(make_napari_viewer, tmp_path, rng):
    """A layer made in napari with scale and translate (no source geometry): the saved file kept the
    spacing but lost the translate, so it reopened at the origin, off the layers it lined up with."""
    a = smooth_image(rng, (3, 24, 28), 0, 4000, np.uint16)
    viewer = make_napari_viewer()
    viewer.add_image(a, scale=(6.9, 0.86, 0.86), translate=(10.0, -50.0, 20.0), name="mr")
    out = tmp_path / "mr.lvp"
    viewer.layers.save(str(out), plugin="napari-lvpnet")
    assert lvpnet.open(out).header["origin"] == [20.0, -50.0, 10.0]  # x (columns), y (rows), z (slices)
    (back,) = viewer.open(str(out), plugin="napari-lvpnet")
    assert np.allclose(back.translate, (10.0, -50.0, 20.0)) and np.allclose(back.scale, (6.9, 0.86, 0.86))


def test_monochrome1_opens_inverted(make_napari_viewer, tmp_path):
    """MONOCHROME1 (CR, DX): the smallest stored value is white; it opened as MONOCHROME2, bone black."""
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    ds = dcmread(get_testdata_file("CT_small.dcm"))
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(tmp_path / "m1.dcm")
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(tmp_path / "m1.dcm"), plugin="napari-lvpnet")
    assert layer.colormap.name == "gray_r" and np.array_equal(layer.data, ds.pixel_array)  # values as stored
    (plain,) = viewer.open(get_testdata_file("CT_small.dcm"), plugin="napari-lvpnet")
    assert plain.colormap.name == "gray"


def test_a_folder_of_several_series_opens_one_layer_each(make_napari_viewer, tmp_path):
    """It was refused with 'pick one with --series UID', an option napari does not have."""
    import shutil

    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    for i, (name, desc) in enumerate((("CT_small.dcm", "chest"), ("MR_small.dcm", "knee"))):
        ds = dcmread(get_testdata_file(name))
        ds.SeriesDescription = desc
        (tmp_path / "study" / f"s{i}").mkdir(parents=True)
        ds.save_as(tmp_path / "study" / f"s{i}" / "IM0.dcm")
    shutil.copy(tmp_path / "study" / "s0" / "IM0.dcm", tmp_path / "study" / "s0" / "IM1.dcm")
    viewer = make_napari_viewer()
    layers = viewer.open(str(tmp_path / "study"), plugin="napari-lvpnet")
    assert sorted(layer.name for layer in layers) == ["study chest", "study knee"]
    knee = next(layer for layer in layers if layer.name == "study knee")
    assert np.array_equal(knee.data, dcmread(get_testdata_file("MR_small.dcm")).pixel_array)


def _palette_dicom(path, lut_data=True):
    """An 8-bit PALETTE COLOR image whose 256-entry, 16-bit palette shows index i as (i, 255 - i, min(2i, 255))."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.6.1", generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = generate_uid(), generate_uid(), "US"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 24, 32, 1, "PALETTE COLOR"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    i = np.arange(256)
    for colour, values in zip(("Red", "Green", "Blue"), (i, 255 - i, np.minimum(2 * i, 255))):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, 16])
        if lut_data:
            setattr(ds, f"{colour}PaletteColorLookupTableData", (values * 257).astype("<u2").tobytes())
    pixels = (np.arange(24 * 32) % 256).astype(np.uint8).reshape(24, 32)
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return pixels


def test_palette_colour_shows_its_colours_and_keeps_its_indices(make_napari_viewer, tmp_path):
    """PALETTE COLOR (old ultrasound, nuclear medicine) opened as grey indices; the palette is applied for
    display only: the layer's values stay the stored indices, from the DICOM and from its .lvp alike."""
    pixels = _palette_dicom(tmp_path / "pal.dcm")
    lvpnet.compress_path(tmp_path / "pal.dcm", tmp_path / "pal.lvp", codec="fallback")
    # the tables travel in the file's record only (``elements_in_record``): the reader takes them from there
    assert "elements" not in lvpnet.open(tmp_path / "pal.lvp").header["source"]["metadata"]["dicom"]
    viewer = make_napari_viewer()
    for name in ("pal.dcm", "pal.lvp"):
        (layer,) = viewer.open(str(tmp_path / name), plugin="napari-lvpnet")
        assert np.array_equal(np.asarray(layer.data).reshape(pixels.shape), pixels)
        assert layer.colormap.name == "DICOM palette" and layer.contrast_limits == [-0.5, 255.5]
        shown = layer.colormap.map((np.array([0, 100, 255]) + 0.5) / 256)[:, :3]
        assert np.allclose(shown * 255, [[0, 255, 0], [100, 155, 200], [255, 0, 255]], atol=0.01)
    # tables missing: the indices show grey, as before, and the file still opens
    _palette_dicom(tmp_path / "bare.dcm", lut_data=False)
    (layer,) = viewer.open(str(tmp_path / "bare.dcm"), plugin="napari-lvpnet")
    assert layer.colormap.name == "gray"


def test_a_moved_layer_saves_where_it_was_seen(tmp_path):
    """A DICOM or NIfTI layer whose translate the user changed kept its scale and lost its translate: the
    stored origin won. The origin follows the translate now, also on oblique axes."""
    from napari_lvpnet._layers import display_translate, layer_to_volume

    c, s = np.cos(0.3), np.sin(0.3)
    direction = [[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]]
    geo = {"origin": [10.0, -20.0, 5.0], "direction": direction, "affine": np.eye(4).tolist()}
    data = np.zeros((3, 8, 8), np.int16)
    seen = display_translate(geo["origin"], direction, 3)
    kept = layer_to_volume(data, {"metadata": {"geometry": geo}, "scale": (2.0, 1.0, 1.0), "translate": seen})
    assert kept.origin == (10.0, -20.0, 5.0) and kept.affine is not None  # not moved: the source's geometry
    moved = layer_to_volume(data, {"metadata": {"geometry": geo}, "scale": (5.0, 0.7, 0.7), "translate": (0, 0, 0)})
    assert np.allclose(display_translate(moved.origin, moved.direction, 3), (0, 0, 0))
    assert moved.spacing == (5.0, 0.7, 0.7) and moved.affine is None  # the old world affine no longer says where
    lvpnet.compress_to_file(moved, tmp_path / "m.lvp", codec="fallback")
    back = lvpnet.open(tmp_path / "m.lvp").volume()
    assert np.allclose(display_translate(back.origin, back.direction, 3), (0, 0, 0))


def test_a_saved_layer_reopens_as_it_was_shown(make_napari_viewer, tmp_path, rng):
    """A bone window, a magma colormap and a gamma set on a layer came back as the soft-tissue (or
    percentile) window in grey after a save and reopen."""
    data = smooth_image(rng, (4, 32, 32), -1000, 2000, np.int16)
    viewer = make_napari_viewer()
    layer = viewer.add_image(data, name="ct", colormap="magma", contrast_limits=(-1000, 300), gamma=0.8)
    path = tmp_path / "ct.lvp"
    viewer.layers.save(str(path), selected=False, plugin="napari-lvpnet")
    viewer.layers.clear()
    (back,) = viewer.open(str(path), plugin="napari-lvpnet")
    assert back.colormap.name == "magma" and back.gamma == pytest.approx(0.8)
    assert list(back.contrast_limits) == [-1000.0, 300.0]
    del layer


def test_a_4d_nifti_time_axis_has_its_unit(tmp_path, rng):
    """An fMRI run (xyzt_units mm / sec) showed its time axis in 'pixel'."""
    from napari_lvpnet._layers import volume_layer

    img = nib.Nifti1Image(smooth_image(rng, (8, 8, 3, 5), 0, 900, np.int16), np.eye(4))
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_zooms((2.0, 2.0, 3.0, 2.5))
    nib.save(img, tmp_path / "f.nii.gz")
    _, kwargs, _ = volume_layer(lvpnet.read(tmp_path / "f.nii.gz"), "f")
    assert kwargs["units"] == ["s", "mm", "mm", "mm"] and kwargs["scale"][0] == 2.5
    # a fifth NIfTI axis holds components (its sliders were 'axis 0, axis 1, axis 2': time and slice unnamed)
    five = nib.Nifti1Image(smooth_image(rng, (8, 8, 3, 2, 3), 0, 900, np.int16), np.eye(4))
    nib.save(five, tmp_path / "five.nii.gz")
    _, kwargs, _ = volume_layer(lvpnet.read(tmp_path / "five.nii.gz"), "five")
    assert tuple(kwargs["axis_labels"]) == ("component", "time", "slice", "row", "column")


def test_a_painted_labels_layer_saves_as_lvp_and_reopens_as_labels(make_napari_viewer, tmp_path, rng):
    """'napari-lvpnet is not a valid writer' for labels: a segmentation could not be kept beside its scan."""
    viewer = make_napari_viewer()
    seg = np.zeros((3, 40, 36), np.uint8)
    seg[1, 10:20, 5:30] = 2
    labels = viewer.add_labels(seg, name="seg", scale=(2.5, 0.7, 0.7), translate=(10.0, -5.0, 3.0))
    labels.paint((1, 30, 30), 3, refresh=True)  # a brush stroke, as a user paints
    out = tmp_path / "seg.lvp"
    viewer.layers.selection = {labels}
    viewer.layers.save(str(out), selected=True, plugin="napari-lvpnet")
    assert np.array_equal(lvpnet.open(out).read_all(), labels.data)
    (back,) = viewer.open(str(out), plugin="napari-lvpnet")
    assert back._type_string == "labels" and np.array_equal(back.data, labels.data)
    assert np.allclose(back.scale, labels.scale) and np.allclose(back.translate, labels.translate)
    # an image layer of the same data saves and opens as an image
    viewer.add_image(back.data.astype(np.int16), name="as image", metadata=dict(back.metadata))
    viewer.layers.selection = {viewer.layers["as image"]}
    viewer.layers.save(str(tmp_path / "img.lvp"), selected=True, plugin="napari-lvpnet")
    (img,) = viewer.open(str(tmp_path / "img.lvp"), plugin="napari-lvpnet")
    assert img._type_string == "image"


def test_a_damaged_dicom_record_opens_the_slices_with_a_warning(tmp_path):
    """The first file's DICOM elements are read from its record (``elements_in_record``): a damaged record
    refused the whole file in the viewer, though its slices are intact. They open, grey, with a warning
    naming the damage."""
    from napari.utils import notifications

    from napari_lvpnet._reader import read_lvp

    pixels = _palette_dicom(tmp_path / "pal.dcm")
    lvpnet.compress_path(tmp_path / "pal.dcm", tmp_path / "pal.lvp", codec="fallback")
    blob = lvpnet.open(tmp_path / "pal.lvp").header["blobs"][0]
    data = bytearray((tmp_path / "pal.lvp").read_bytes())
    data[blob["offset"] + blob["length"] // 2] ^= 1
    (tmp_path / "bad.lvp").write_bytes(bytes(data))
    said = []
    notifications.notification_manager.notification_ready.connect(lambda n: said.append(str(n.message)))
    (layer,) = read_lvp(str(tmp_path / "bad.lvp"))
    assert layer.colormap.name == "gray"
    assert np.array_equal(np.asarray(layer.data).reshape(pixels.shape), pixels)
    assert any("blob 0, the record of pal.dcm: checksum mismatch" in s and "Opened without" in s for s in said), said


def test_a_multiscale_layer_saves_its_full_resolution(make_napari_viewer, tmp_path, rng):
    """np.asarray of napari's multiscale data is its smallest level: File > Save and Compress wrote a quarter of
    the pixels and called it lossless."""
    from napari_lvpnet._layers import layer_to_volume

    ct = smooth_image(rng, (64, 48), -1000, 1500, np.int16)
    viewer = make_napari_viewer()
    layer = viewer.add_image([ct, ct[::2, ::2]], multiscale=True, name="pyramid")
    viewer.layers.selection = {layer}
    viewer.layers.save(str(tmp_path / "p.lvp"), selected=True, plugin="napari-lvpnet")
    np.testing.assert_array_equal(lvpnet.open(tmp_path / "p.lvp").read_all(), ct)
    assert layer_to_volume(layer.data, layer.as_layer_data_tuple()[1]).shape == ct.shape  # the Compress dock's


def test_a_layer_rotated_in_napari_keeps_its_affine_through_a_save(make_napari_viewer, tmp_path, rng):
    """A rotation set on the layer (its affine, or napari's rotate and shear; a labels layer's too) was dropped on
    save (scale and translate were kept)."""
    a = smooth_image(rng, (4, 32, 24), 0, 900, np.uint16)
    c, s = np.cos(np.pi / 6), np.sin(np.pi / 6)
    rot = [[1, 0, 0, 0], [0, c, -s, 0], [0, s, c, 0], [0, 0, 0, 1]]
    viewer = make_napari_viewer()
    layer = viewer.add_image(a, scale=(3, 0.5, 0.75), translate=(4, 10, -20), affine=rot, name="mr")
    viewer.layers.selection = {layer}
    viewer.layers.save(str(tmp_path / "r.lvp"), selected=True, plugin="napari-lvpnet")
    (back,) = viewer.open(str(tmp_path / "r.lvp"), plugin="napari-lvpnet")
    np.testing.assert_allclose(back.affine.affine_matrix, layer.affine.affine_matrix)
    np.testing.assert_allclose(back.scale, layer.scale)
    np.testing.assert_allclose(back.translate, layer.translate)
    np.testing.assert_array_equal(np.asarray(back.data), a)
    turned = viewer.add_image(a, rotate=30, shear=[0.1, 0, 0.2], name="turned")  # napari's own rotate and shear
    labels = viewer.add_labels((a > 450).astype(np.int32), scale=(3, 0.5, 0.75), affine=rot, name="seg")
    for layer, name in ((turned, "t.lvp"), (labels, "l.lvp")):
        viewer.layers.selection = {layer}
        viewer.layers.save(str(tmp_path / name), selected=True, plugin="napari-lvpnet")
        (back,) = viewer.open(str(tmp_path / name), plugin="napari-lvpnet")
        assert type(back) is type(layer)
        np.testing.assert_allclose(back._data_to_world.affine_matrix, layer._data_to_world.affine_matrix, atol=1e-9)
    plain = viewer.add_image(a, name="plain")  # no rotation: nothing stored
    viewer.layers.selection = {plain}
    viewer.layers.save(str(tmp_path / "p.lvp"), selected=True, plugin="napari-lvpnet")
    assert "napari" not in lvpnet.open(tmp_path / "p.lvp").metadata


def test_a_series_one_spacing_misplaces_is_said_when_opened(make_napari_viewer, tmp_path, monkeypatch):
    """A series with a slice missing, or a localiser's images in three planes, opened evenly stacked without a
    word: every slice after the gap 2.5 mm from where it belongs, planes at right angles shown as parallel
    slices. The layer still opens (napari has one spacing per axis); a warning says what is off, for the
    folder and for the .lvp made from it."""
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    said = []
    monkeypatch.setattr("napari.utils.notifications.show_warning", said.append)
    gap, planes = tmp_path / "gap", tmp_path / "planes"
    gap.mkdir()
    planes.mkdir()
    ds = dcmread(get_testdata_file("CT_small.dcm"))
    for i in (0, 1, 2, 4, 5):  # slice 3 missing
        ds.InstanceNumber, ds.ImagePositionPatient, ds.SOPInstanceUID = i + 1, [0.0, 0.0, 2.5 * i], f"1.2.3.{i}"
        ds.save_as(gap / f"IM{i}.dcm")
    for i, iop in enumerate(([1, 0, 0, 0, 1, 0], [0, 1, 0, 0, 0, -1], [1, 0, 0, 0, 0, -1])):  # axial, sagittal, coronal
        ds.InstanceNumber, ds.ImageOrientationPatient, ds.SOPInstanceUID = i + 1, iop, f"1.2.4.{i}"
        ds.ImagePositionPatient = [0.0, 0.0, 0.0]
        ds.save_as(planes / f"IM{i}.dcm")
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(gap), plugin="napari-lvpnet")
    assert layer.data.shape[0] == 5 and len(said) == 1
    assert said[0].startswith("gap: the slices are not evenly spaced (2.5 to 5 mm apart); a napari layer has one "
                              "spacing, so the viewer shows them 2.5 mm apart"), said[0]
    viewer.open(str(planes), plugin="napari-lvpnet")
    assert len(said) >= 2 and said[1].startswith("planes: the slices were stacked by InstanceNumber, not by position")
    lvpnet.compress_path(gap, tmp_path / "gap.lvp", codec="fallback")
    before = len(said)
    viewer.open(str(tmp_path / "gap.lvp"), plugin="napari-lvpnet")
    assert len(said) == before + 1 and said[-1].startswith("gap: the slices are not evenly spaced"), said[-1]
    viewer.open(get_testdata_file("CT_small.dcm"), plugin="napari-lvpnet")  # one slice: nothing to say
    assert len(said) == before + 1


def test_a_layer_made_in_napari_reopens_with_its_own_view(make_napari_viewer, tmp_path, rng):
    """A 4-D layer at t = 100 s came back at 0, a flipped axis (negative scale) came back unflipped, and the
    axis names and units set in napari came back as (time, slice, row, column) in pixels."""
    from napari_lvpnet._writer import write_lvp

    viewer = make_napari_viewer()
    a = smooth_image(rng, (2, 3, 16, 16), 0, 900, np.uint16)
    kw = dict(scale=(2.0, -3.0, 0.7, 0.4), translate=(100.0, 4.0, 5.0, 6.0), axis_labels=("t", "z", "y", "x"),
              units=("second", "millimeter", "millimeter", "millimeter"))
    layer = viewer.add_image(a, name="v4", **kw)
    write_lvp(str(tmp_path / "v4.lvp"), layer.data, layer.as_layer_data_tuple()[1])
    (back,) = viewer.open(str(tmp_path / "v4.lvp"), plugin="napari-lvpnet")
    np.testing.assert_array_equal(np.asarray(back.data), a)
    np.testing.assert_allclose(back.scale, kw["scale"])
    np.testing.assert_allclose(back.translate, kw["translate"])
    assert tuple(back.axis_labels) == kw["axis_labels"] and tuple(map(str, back.units)) == kw["units"]
    # a plain array's layer keeps the file's own names (napari's defaults are not saved over them)
    plain = viewer.add_image(a[0], name="plain")
    write_lvp(str(tmp_path / "plain.lvp"), plain.data, plain.as_layer_data_tuple()[1])
    (again,) = viewer.open(str(tmp_path / "plain.lvp"), plugin="napari-lvpnet")
    assert tuple(again.axis_labels) == ("slice", "row", "column")
