"""The Inspect dock widget driven end to end in a real viewer."""

import numpy as np
import pytest
from conftest import smooth_image

import lvpnet

pytest.importorskip("napari")

from lvpnet import analysis  # noqa: E402
from napari_lvpnet import _inspect_widget as iw  # noqa: E402

SCALE = (3.0, 0.5, 0.7)
TRANSLATE = (10.0, -5.0, 2.0)


@pytest.fixture
def widget_and_viewer(make_napari_viewer, tiny_model_path):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-lvpnet", "Inspect")
    widget.weights.value = tiny_model_path
    return viewer, widget


def _run(w, qtbot):
    w.run_button.changed.emit(True)
    assert w.worker is not None
    qtbot.waitUntil(lambda: w.run_button.enabled and w.progress.visible is False, timeout=30000)


def _aligned(new, image, lead=0):
    assert np.allclose(new.scale[lead:], image.scale) and np.allclose(new.translate[lead:], image.translate)


def test_all_slices_adds_aligned_maps_plot_and_scale(widget_and_viewer, qtbot, rng):
    viewer, w = widget_and_viewer
    a = smooth_image(rng, (3, 48, 40), -1000, 2000, np.int16)
    image = viewer.add_image(a, name="ct", scale=SCALE, translate=TRANSLATE)
    w.layer.value = image
    w.scope.value = iw.ALL
    w.show_latent.value = w.show_qcm.value = True
    _run(w, qtbot)
    res = w.last_result
    assert res is not None and res.indices == [0, 1, 2] and res.has_model

    bits = viewer.layers["ct bit cost"]
    assert bits.data.shape == (3, 48, 40) and np.isfinite(bits.data).all() and (bits.data > 0).all()
    _aligned(bits, image)
    assert bits.colormap.name == "inferno"
    assert bits.visible and not viewer.layers["ct latent z"].visible  # one map shown at a time
    assert list(w.layer.choices) == [image]  # maps are not offered for inspection
    assert bits.metadata["lvpnet_inspect"]["map"] == "bits"
    for name in ("ct QCM error before", "ct QCM error after", "ct latent bits"):
        layer = viewer.layers[name]
        assert layer.data.shape == (3, 48, 40) and np.isfinite(layer.data).all()
        _aligned(layer, image)
    z = viewer.layers["ct latent z"]
    channels = analysis.load_model(w.weights.value).channels
    assert z.data.shape == (channels, 3, 48, 40)
    _aligned(z, image, lead=1)
    # each latent cell covers its 32x32 block of the image grid
    block = np.asarray(z.data[5, 1])
    assert (block[:32, :32] == res.maps[1].z[5, 0, 0]).all() and (block[32:, 32:] == res.maps[1].z[5, 1, 1]).all()
    # the maps sum to the estimated totals
    assert bits.data.sum(dtype=np.float64) == pytest.approx(res.pixel_bits.sum(), rel=1e-6)

    text = w.summary.value
    assert "3 slices" in text and "bits/pixel" in text and "tiny.pt" in text
    assert w.colorbar_canvas.isVisibleTo(w.native) and len(w.colorbar_figure.axes) == 3
    ax = w.plot_figure.axes[0]
    assert w.plot_canvas.isVisibleTo(w.native) and ax.get_xlabel() == "slice" and len(ax.lines) == 1

    # a second run replaces the maps instead of piling them up
    w.show_latent.value = w.show_qcm.value = False
    _run(w, qtbot)
    assert [layer.name for layer in viewer.layers] == ["ct", "ct bit cost"]


def test_current_slice_sits_on_that_slice(widget_and_viewer, qtbot, rng):
    viewer, w = widget_and_viewer
    a = smooth_image(rng, (3, 48, 40), 0, 4000, np.uint16)
    image = viewer.add_image(a, name="mr", scale=SCALE, translate=TRANSLATE)
    viewer.dims.set_point(0, TRANSLATE[0] + 2 * SCALE[0])
    w.layer.value = image
    w.scope.value = iw.CURRENT
    w.show_qcm.value = True
    _run(w, qtbot)
    assert w.last_result.indices == [2]
    bits = viewer.layers["mr bit cost"]
    assert bits.data.shape == (1, 48, 40)
    assert np.allclose(bits.scale, image.scale)
    assert np.allclose(bits.translate, (TRANSLATE[0] + 2 * SCALE[0], *TRANSLATE[1:]))
    assert viewer.layers["mr QCM error after"].data.shape == (1, 48, 40)
    ref = analysis.analyse_slice(a[2], analysis.load_model(w.weights.value))
    np.testing.assert_array_equal(bits.data[0], ref.pixel_bits)
    assert "slice 2" in w.summary.value
    assert w.plot_figure.axes[0].get_xlabel() == "bits per pixel"  # one slice: histogram


def test_maps_follow_a_world_affine(widget_and_viewer, qtbot, rng):
    """An image given a rotation (oblique scan placed in world space by the user): the maps keep it."""
    viewer, w = widget_and_viewer
    a = smooth_image(rng, (2, 40, 36), 0, 3000, np.uint16)
    c, s = np.cos(0.3), np.sin(0.3)
    aff = np.array([[1, 0, 0, 0], [0, c, -s, 4.0], [0, s, c, -2.0], [0, 0, 0, 1]])
    image = viewer.add_image(a, name="obl", scale=SCALE, translate=TRANSLATE, affine=aff)
    w.layer.value = image
    w.show_latent.value = True
    _run(w, qtbot)
    bits = viewer.layers["obl bit cost"]
    _aligned(bits, image)
    assert np.allclose(bits.affine.affine_matrix, aff)
    assert np.allclose(viewer.layers["obl latent z"].affine.affine_matrix[1:, 1:], aff)


def test_2d_rgb_image(widget_and_viewer, qtbot, rng):
    viewer, w = widget_and_viewer
    rgb = rng.integers(0, 256, (40, 36, 3)).astype(np.uint8)
    image = viewer.add_image(rgb, name="us", rgb=True, scale=(0.2, 0.3))
    w.layer.value = image
    w.show_latent.value = True
    _run(w, qtbot)
    bits = viewer.layers["us bit cost"]
    assert bits.data.shape == (40, 36) and np.allclose(bits.scale, (0.2, 0.3))
    assert viewer.layers["us latent z"].data.shape[1:] == (40, 36)
    assert "image:" in w.summary.value


def test_layer_opened_from_lvp(widget_and_viewer, qtbot, rng, tmp_path):
    viewer, w = widget_and_viewer
    a = smooth_image(rng, (3, 40, 33), -200, 1800, np.int16)
    path = tmp_path / "scan.lvp"
    lvpnet.compress_to_file(lvpnet.Volume(array=a, spacing=(2.0, 0.8, 0.8)), path)
    (image,) = viewer.open(path, plugin="napari-lvpnet")
    w.layer.value = image
    w.scope.value = iw.ALL
    _run(w, qtbot)
    res = w.last_result
    lvp = lvpnet.open(path)
    assert res.chunk_bits.tolist() == [8 * lvp.chunk_bytes(i) for i in range(3)]
    bits = viewer.layers["scan bit cost"]
    assert bits.data.shape == (3, 40, 33) and np.isfinite(bits.data).all()
    _aligned(bits, image)
    assert "stored, all 3 chunks" in w.summary.value
    ax = w.plot_figure.axes[0]
    assert len(ax.patches) == 3 and len(ax.lines) == 1  # real chunk bars + estimated line


def test_no_model_lvp_shows_notification_and_chunk_bits(widget_and_viewer, qtbot, rng, tmp_path, monkeypatch):
    viewer, w = widget_and_viewer
    monkeypatch.setattr(analysis, "default_model_path", lambda: None)
    warnings = []
    monkeypatch.setattr(iw, "show_warning", warnings.append)
    w.weights.value = ""
    a = smooth_image(rng, (4, 40, 33), 0, 1000, np.uint16)
    path = tmp_path / "plain.lvp"
    lvpnet.compress_to_file(a, path)
    (image,) = viewer.open(path, plugin="napari-lvpnet")
    w.layer.value = image
    w.scope.value = iw.CURRENT
    _run(w, qtbot)
    assert warnings and "no model" in warnings[0] and "chunk" in warnings[0]
    res = w.last_result
    assert not res.has_model and res.chunk_bits.shape == (4,)
    assert [layer.name for layer in viewer.layers] == ["plain"]  # no heatmaps without the model
    assert "no model" in w.summary.value and "stored" in w.summary.value
    ax = w.plot_figure.axes[0]
    assert len(ax.patches) == 4 and ax.get_xlabel() == "slice"


def test_no_model_plain_layer_bad_weights_and_bad_data_notify(widget_and_viewer, qtbot, rng, tmp_path, monkeypatch,
                                                               tiny_model_path):
    viewer, w = widget_and_viewer
    monkeypatch.setattr(analysis, "default_model_path", lambda: None)
    warnings, errors = [], []
    monkeypatch.setattr(iw, "show_warning", warnings.append)
    monkeypatch.setattr(iw, "show_error", errors.append)
    monkeypatch.setattr("napari_lvpnet._background.show_error", errors.append)  # errors inside the worker
    viewer.add_image(smooth_image(rng, (40, 33), 0, 255, np.uint8), name="xr")
    w.layer.value = viewer.layers["xr"]
    w.weights.value = ""
    _run(w, qtbot)
    assert warnings and "nothing to show" in warnings[0]
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    w.weights.value = bad
    _run(w, qtbot)
    assert errors and "model weights" in errors[-1] and "failed" in w.summary.value
    w.weights.value = tiny_model_path
    viewer.add_image(np.full((8, 8), 0.5), name="float")
    w.layer.value = viewer.layers["float"]
    _run(w, qtbot)
    assert "integer" in errors[-1]
    assert [layer.name for layer in viewer.layers] == ["xr", "float"]
