"""The Inspect dock widget driven end to end in a real viewer."""

import numpy as np
import pytest
from conftest import smooth_image

import lvpnet

pytest.importorskip("napari")

from lvpnet import analysis  # noqa: E402
from napari_lvpnet import _inspect_widget as iw  # noqa: E402
from napari_lvpnet._maps import layer_name  # noqa: E402

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


def _damage(path, i):
    """A byte flipped in the middle of slice ``i``'s chunk."""
    rec = lvpnet.open(path)._reader.records[i]
    data = bytearray(path.read_bytes())
    data[rec.offset + rec.length // 2] ^= 0x20
    path.write_bytes(bytes(data))


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

    bits = viewer.layers[layer_name("ct", "bits")]
    assert bits.name == "bit cost [bits/pixel] · ct"  # what it shows, in which unit
    assert bits.data.shape == (3, 48, 40) and np.isfinite(bits.data).all() and (bits.data > 0).all()
    _aligned(bits, image)
    assert bits.colormap.name == "inferno"
    z = viewer.layers[layer_name("ct", "latent", channel=0)]
    assert bits.visible and not z.visible  # one map shown at a time
    assert list(w.layer.choices) == [image]  # maps are not offered for inspection
    assert bits.metadata["lvpnet_inspect"]["map"] == "bits"
    for kind in ("qcm_before", "qcm_after", "latent_bits"):
        layer = viewer.layers[layer_name("ct", kind)]
        assert layer.data.shape == (3, 48, 40) and np.isfinite(layer.data).all()
        _aligned(layer, image)
    # the latent's channel is chosen in the dock: no extra dims axis, the slice axis stays the slice axis
    assert z.data.shape == (3, 48, 40) and viewer.dims.ndim == 3
    assert viewer.dims.axis_labels == image.axis_labels
    _aligned(z, image)
    channels = analysis.load_model(w.weights.value).channels
    assert w.channel.native.isVisibleTo(w.native) and w.channel.max == channels - 1
    w.channel.value = 5
    assert z.name == layer_name("ct", "latent", channel=5)
    # each latent cell covers its 32x32 block of the image grid
    block = np.asarray(z.data[1])
    assert (block[:32, :32] == res.maps[1].z[5, 0, 0]).all() and (block[32:, 32:] == res.maps[1].z[5, 1, 1]).all()
    # the maps sum to the estimated totals
    assert bits.data.sum(dtype=np.float64) == pytest.approx(res.pixel_bits.sum(), rel=1e-6)

    text = w.summary.value
    assert "3 slices" in text and "bits/pixel" in text and "tiny.pt" in text
    assert "latent bits [bits/pixel]: " in w.legend.value and "QCM" in w.legend.value
    # colorbars of the visible maps only, following the eye icons
    assert w.colorbar_canvas.isVisibleTo(w.native) and len(w.colorbar_figure.axes) == 1
    viewer.layers[layer_name("ct", "qcm_after")].visible = True
    assert len(w.colorbar_figure.axes) == 2
    assert w.colorbar_figure.axes[1].get_xlabel() == "latent error after QCM [quantisation steps]"
    image.visible = False  # the maps hide with their image, and their colorbars with them
    assert not bits.visible and not w.colorbar_canvas.isVisibleTo(w.native)
    image.visible = True
    assert bits.visible and len(w.colorbar_figure.axes) == 2
    bits.visible = False
    assert len(w.colorbar_figure.axes) == 1
    ax = w.plot_figure.axes[0]
    assert w.plot_canvas.isVisibleTo(w.native) and ax.get_xlabel() == "slice" and len(ax.lines) == 1
    assert all(float(t).is_integer() for t in ax.get_xticks())  # whole slices: no tick at slice 0.5

    # a second run replaces the maps instead of piling them up
    w.show_latent.value = w.show_qcm.value = False
    _run(w, qtbot)
    assert [layer.name for layer in viewer.layers] == ["ct", "bit cost [bits/pixel] · ct"]


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
    bits = viewer.layers[layer_name("mr", "bits", slice_index=2)]
    assert bits.data.shape == (1, 48, 40)
    assert np.allclose(bits.scale, image.scale)
    assert np.allclose(bits.translate, (TRANSLATE[0] + 2 * SCALE[0], *TRANSLATE[1:]))
    assert viewer.layers[layer_name("mr", "qcm_after", slice_index=2)].data.shape == (1, 48, 40)
    ref = analysis.analyse_slice(a[2], analysis.load_model(w.weights.value))
    np.testing.assert_array_equal(bits.data[0], ref.pixel_bits)
    assert "slice 2" in w.summary.value
    assert w.plot_figure.axes[0].get_xlabel() == "bits per pixel"  # one slice: histogram
    assert not w.hint.native.isVisibleTo(w.native)
    viewer.dims.set_point(0, TRANSLATE[0] + 1 * SCALE[0])  # elsewhere: the maps are gone, the dock says why
    assert w.hint.native.isVisibleTo(w.native) and "slice 2 only" in w.hint.value and "on slice 1" in w.hint.value


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
    bits = viewer.layers[layer_name("obl", "bits", slice_index=0)]
    _aligned(bits, image)
    assert np.allclose(bits.affine.affine_matrix, aff)
    assert np.allclose(viewer.layers[layer_name("obl", "latent", channel=0, slice_index=0)].affine.affine_matrix, aff)


def test_2d_rgb_image(widget_and_viewer, qtbot, rng):
    viewer, w = widget_and_viewer
    rgb = rng.integers(0, 256, (40, 36, 3)).astype(np.uint8)
    image = viewer.add_image(rgb, name="us", rgb=True, scale=(0.2, 0.3))
    w.layer.value = image
    w.show_latent.value = True
    _run(w, qtbot)
    bits = viewer.layers[layer_name("us", "bits")]
    assert bits.data.shape == (40, 36) and np.allclose(bits.scale, (0.2, 0.3))
    assert viewer.layers[layer_name("us", "latent", channel=0)].data.shape == (40, 36)
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
    bits = viewer.layers[layer_name("scan", "bits")]
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


def test_damaged_slice_is_skipped_and_named(widget_and_viewer, qtbot, rng, tmp_path, monkeypatch):
    viewer, w = widget_and_viewer
    warnings = []
    monkeypatch.setattr(iw, "show_warning", warnings.append)
    monkeypatch.setattr("napari.utils.notifications.show_error", lambda *a: None)
    a = smooth_image(rng, (4, 40, 33), 0, 3000, np.uint16)
    path = tmp_path / "scan.lvp"
    lvpnet.compress_to_file(lvpnet.Volume(array=a, spacing=(2.0, 0.8, 0.8)), path, codec="fallback")
    _damage(path, 2)
    (image,) = viewer.open(path, plugin="napari-lvpnet")
    w.layer.value = image
    w.scope.value = iw.ALL
    _run(w, qtbot)
    res = w.last_result
    # slice 3's chunk does not need slice 2 (the file says so), so it is mapped on its own: only 2 is skipped
    assert res.indices == [0, 1, 3] and sorted(w.skipped) == [2]
    assert warnings and warnings[-1].startswith("Inspect skipped damaged slice 2: checksum mismatch")
    assert "skipped damaged slice 2: checksum mismatch" in w.summary.value and "maps need" not in w.summary.value
    bits = viewer.layers[layer_name("scan", "bits")]
    assert bits.data.shape == (4, 40, 33) and (bits.data[[1, 3]] > 0).all()
    assert np.isnan(bits.data[2]).all()  # no map there: 0 read as 'cost nothing' under the cursor
    assert np.isfinite(bits.contrast_limits).all() and bits.contrast_limits[1] > 0
    ax = w.plot_figure.axes[0]
    x, y = ax.lines[0].get_xdata(), ax.lines[0].get_ydata()
    assert len(ax.patches) == 5 and list(x[np.isfinite(y)]) == [0, 1, 3]  # estimates where decoded
    assert np.isnan(y[2])  # the line breaks over the damaged slice
    hatched = [p for p in ax.patches if p.get_hatch()]  # its bar marked, not like a stored slice's
    assert len(hatched) == 1 and hatched[0].get_x() < 2 < hatched[0].get_x() + hatched[0].get_width()
    assert "not decoded (damaged)" in [t.get_text() for t in w.plot_figure.legends[0].get_texts()]
    # a single image whose only slice is damaged: its one bar at its one tick
    one = tmp_path / "one.lvp"
    lvpnet.compress_to_file(a[0], one, codec="fallback")
    _damage(one, 0)
    (single,) = viewer.open(one, plugin="napari-lvpnet")
    w.layer.value = single
    _run(w, qtbot)
    assert list(w.plot_figure.axes[0].get_xticks()) == [0]


def test_panels_follow_the_theme_and_keep_their_size(widget_and_viewer, qtbot, rng, tmp_path):
    """Dark panels on napari's dark theme, light on light; a second run and a contrast change redraw
    the colorbars over the whole canvas (the figure is the widget's size); one slice of a .lvp gets a
    histogram with the slice's mean estimated and stored bits; the legend sits above the axes."""
    viewer, w = widget_and_viewer
    a = smooth_image(rng, (3, 40, 33), 0, 3000, np.uint16)
    path = tmp_path / "scan.lvp"
    lvpnet.compress_to_file(a, path, codec="fallback")
    (image,) = viewer.open(path, plugin="napari-lvpnet")
    w.layer.value = image
    w.scope.value = iw.CURRENT
    _run(w, qtbot)
    _run(w, qtbot)
    bits = viewer.layers[layer_name("scan", "bits", slice_index=1)]
    bits.contrast_limits = [0.5, 3.0]
    fig, canvas = w.colorbar_figure, w.colorbar_canvas
    assert fig.axes[0].get_xlim() == (0.5, 3.0)
    dpr = canvas.device_pixel_ratio
    assert tuple(np.round(fig.get_size_inches() * fig.dpi / dpr)) == (canvas.width(), canvas.height())
    ax = w.plot_figure.axes[0]
    assert ax.get_xlabel() == "bits per pixel" and len(ax.lines) == 2  # estimated and stored, mean
    (legend,) = w.plot_figure.legends  # the figure's, above the axes: never over the bars
    w.plot_canvas.draw()
    box = legend.get_window_extent()
    assert box.y0 >= ax.get_window_extent().y1 - 1
    from matplotlib.colors import to_hex
    from napari.utils.theme import get_theme

    assert to_hex(w.plot_figure.get_facecolor()) == get_theme("dark").foreground.as_hex()
    viewer.theme = "light"
    assert to_hex(w.plot_figure.get_facecolor()) == get_theme("light").foreground.as_hex()
    assert w.summary.native.wordWrap() and w.legend.native.wordWrap()


def test_latent_ablation_map_and_words(widget_and_viewer, qtbot, rng):
    viewer, w = widget_and_viewer
    a = smooth_image(rng, (2, 64, 48), 0, 4000, np.uint16)
    image = viewer.add_image(a, name="mr")
    w.layer.value = image
    w.scope.value = iw.ALL
    w.show_ablation.value = True
    _run(w, qtbot)
    res = w.last_result
    saved = res.latent_saved_bits
    assert saved.shape == (2,) and res.ablated_bits is not None
    layer = viewer.layers[layer_name("mr", "latent_saving")]
    assert layer.name == "latent saving [bits/pixel] · mr" and layer.data.shape == (2, 64, 48)
    lo, hi = layer.contrast_limits
    assert lo == -hi and hi > 0 and layer.colormap.name.startswith("PiYG")  # centred: 0 is the middle colour
    # ... and there clear ("blank: it changes nothing"), not a white wash over the image
    assert layer.colormap.map(np.array([0.5]))[0, 3] == 0 and layer.colormap.map(np.array([0.0]))[0, 3] == 1
    # the map spreads each block's saving over its pixels: it sums back to the slices' totals
    assert layer.data.sum(axis=(1, 2), dtype=np.float64) == pytest.approx(saved, rel=1e-4, abs=1e-2)
    assert not layer.visible and viewer.layers[layer_name("mr", "bits")].visible
    assert "latent ablation" in w.summary.value
    assert "latent saving" in w.legend.value
    # without the box: no ablation, no map, no words
    w.show_ablation.value = False
    _run(w, qtbot)
    assert w.last_result.ablated_bits is None and "latent ablation" not in w.summary.value
    assert layer_name("mr", "latent_saving") not in [m.name for m in viewer.layers]


def test_ablation_text():
    assert "saves 120 bits (1.20%)" in iw.ablation_text(120.0, 10_000.0)
    assert "costs 50 bits (0.50%) more" in iw.ablation_text(-50.0, 10_000.0)
    assert "saves nothing (the same bits" in iw.ablation_text(0.0, 10_000.0)


def test_the_dock_scrolls_instead_of_growing_the_window_and_names_maps_first(make_napari_viewer, qtbot, rng):
    """On a laptop screen the Inspect dock (plots, legend) made the window taller than the screen; its map
    layers' names began with the image's, which the layer list cut to '... (slice 5)'."""
    from qtpy.QtWidgets import QScrollArea

    viewer = make_napari_viewer()
    viewer.add_image(smooth_image(rng, (2, 40, 36), 0, 900, np.uint16), name="ct")
    dock, w = viewer.window.add_plugin_dock_widget("napari-lvpnet", "Inspect")
    assert isinstance(w.native, QScrollArea) and dock.widget() is w.native  # napari docks the scroll area
    w.show_latent.value = w.show_qcm.value = True
    w.run_button.changed.emit(True)
    qtbot.waitUntil(lambda: w.last_result is not None and w.run_button.enabled, timeout=120000)
    assert w.native.minimumSizeHint().height() < 300  # the content scrolls; it does not set the window's height
    assert viewer.layers[-1].name.startswith("latent error after QCM [")
    assert w.native.minimumWidth() >= w.native.widget().minimumSizeHint().width()  # nothing cut on the right
    # the summary, hint and legend span the dock (an empty label column left them wrapped in a narrow column),
    # and a tall dock's spare height goes below the controls, not between them
    from qtpy.QtWidgets import QSizePolicy

    for text in (w.summary, w.hint, w.legend):
        assert text._labeled_widget()._label_widget.native.isHidden()
        assert text.native.sizePolicy().horizontalPolicy() == QSizePolicy.Policy.Expanding
    layout = w.native.widget().layout()
    assert layout.itemAt(layout.count() - 1).spacerItem() is not None  # spare height goes last


def test_a_4d_layer_is_spoken_of_in_its_sliders_words(make_napari_viewer, qtbot, rng):
    """Inspect on time 1, slice 2 of a (2, 3, h, w) layer said 'slice 5' (the flat index), in a summary,
    a layer name and a hint whose slice slider stops at 2."""
    viewer = make_napari_viewer()
    _, w = viewer.window.add_plugin_dock_widget("napari-lvpnet", "Inspect")
    a = smooth_image(rng, (2, 3, 32, 28), 0, 4000, np.uint16)
    image = viewer.add_image(a, name="fmri", axis_labels=("time", "slice", "row", "column"))
    viewer.dims.set_point(0, 1)
    viewer.dims.set_point(1, 2)
    w.layer.value = image
    w.scope.value = iw.CURRENT
    _run(w, qtbot)
    assert w.last_result.indices == [5]
    assert "time 1, slice 2:" in w.summary.value and "slice 5" not in w.summary.value
    assert viewer.layers[-1].name == "bit cost [bits/pixel] · fmri (time 1, slice 2)"
    viewer.dims.set_point(1, 0)
    qtbot.waitUntil(lambda: "the viewer is on time 1, slice 0" in w.hint.value, timeout=5000)


def test_the_summary_says_when_the_latent_maps_are_the_weights_not_the_image():
    """With the shipped weights the latent is one value in every block and the QCM raises the error it is there
    to lower: the ablation box said "the latent saves nothing" and the QCM maps showed a uniform worse error,
    both reading as findings about the image. The summary says they are the weights'."""
    from types import SimpleNamespace

    from napari_lvpnet._inspect_widget import latent_notes

    flat = SimpleNamespace(z=np.full((4, 3, 3), -31, np.int8), qcm_before=np.full((3, 3), 0.79, np.float32),
                           qcm_after=np.full((3, 3), 1.16, np.float32))
    said = latent_notes([flat])
    assert len(said) == 2 and "same in every block" in said[0] and "0.79 -> 1.16 steps" in said[1]
    live = SimpleNamespace(z=np.arange(36, dtype=np.int8).reshape(4, 3, 3), qcm_before=np.full((3, 3), 0.4),
                           qcm_after=np.full((3, 3), 0.1))
    assert latent_notes([live]) == [] and latent_notes([]) == []


def test_a_4d_layer_without_axis_names_is_spoken_of_as_volume_and_slice():
    """napari names a plain 4-D layer's axes "-4", "-3": the summary read "-4 0, -3 1"."""
    from napari_lvpnet._maps import slice_words

    assert slice_words(1, (2, 24), ("-4", "-3", "-2", "-1")) == "volume 0, slice 1"
    assert slice_words(30, (2, 24), ("time", "slice", "y", "x")) == "time 1, slice 6"
    assert slice_words(29, (2, 3, 5), None) == "axis 0 1, volume 2, slice 4"
    assert slice_words(3, (12,), ("-3",)) == "slice 3"


def test_a_run_without_maps_drops_the_maps_of_the_run_before(widget_and_viewer, qtbot, rng, tmp_path, monkeypatch):
    """Inspect on one layer, then on another layer's damaged slice: the hint said "the maps show slice 2
    only" of maps that belonged to the first layer, and its bit-cost words stayed."""
    viewer, w = widget_and_viewer
    monkeypatch.setattr(iw, "show_warning", lambda *a: None)
    viewer.add_image(smooth_image(rng, (4, 32, 30), 0, 3000, np.uint16), name="first")
    w.layer.value = viewer.layers["first"]
    w.scope.value = iw.CURRENT
    viewer.dims.set_point(0, 2)
    _run(w, qtbot)
    assert w.added_layers
    a = smooth_image(rng, (8, 40, 33), 0, 3000, np.uint16)
    path = tmp_path / "scan.lvp"
    lvpnet.compress_to_file(lvpnet.Volume(array=a), path, codec="fallback")
    _damage(path, 6)
    (image,) = viewer.open(path, plugin="napari-lvpnet")
    viewer.layers["first"].visible = False
    viewer.dims.set_point(0, 6)
    w.layer.value = image
    _run(w, qtbot)
    assert sorted(w.skipped) == [6]
    assert not w.added_layers and not any(layer_name("first", "bits") in lay.name for lay in viewer.layers)
    assert w.hint.value == "" and not w.hint.visible


def test_the_latent_notes_only_where_latent_maps_were_asked_for(widget_and_viewer, qtbot, rng):
    """The notes on the weights' latent and QCM appeared under the bit-cost map alone, where "latent" and
    "QCM" are unexplained and read like warnings about the scan."""
    viewer, w = widget_and_viewer
    viewer.add_image(smooth_image(rng, (40, 36), 0, 3000, np.uint16), name="xr")
    w.layer.value = viewer.layers["xr"]
    from lvpnet.codecs.weights import shipped_weights

    w.weights.value = shipped_weights()  # the shipped weights: a note each on their latent and QCM
    w.show_latent.value = w.show_qcm.value = w.show_ablation.value = False
    _run(w, qtbot)
    res = w.last_result
    expected = iw.latent_notes(res.maps)
    assert expected  # the shipped weights' latent and QCM: a note each
    assert all(note.strip() not in w.summary.value for note in expected)
    w.show_qcm.value = True
    _run(w, qtbot)
    assert all(note.strip() in w.summary.value for note in iw.latent_notes(w.last_result.maps))


def test_a_4d_layer_plot_says_how_its_slice_numbers_run(widget_and_viewer, qtbot, rng):
    """The per-slice plot of a (2, 3, h, w) layer ran 0-5 under "slice", where the sliders show volume
    0-1 and slice 0-2."""
    viewer, w = widget_and_viewer
    viewer.add_image(smooth_image(rng, (2, 3, 24, 20), 0, 4000, np.uint16), name="fmri")
    w.layer.value = viewer.layers["fmri"]
    w.scope.value = iw.ALL
    _run(w, qtbot)
    labels = [ax.get_xlabel() for ax in w.plot_figure.axes]
    assert "slice over every volume (volume x 3 + slice)" in labels
    ax = next(ax for ax in w.plot_figure.axes if ax.get_xlabel().startswith("slice over"))
    assert [t.get_text() for t in ax.texts] == ["volume 0", "volume 1"]  # each volume's run named
    # named in the sliders, the plot says their names
    viewer.dims.axis_labels = ("echo", "z", "y", "x")
    w._redraw()
    assert any(ax.get_xlabel() == "z over every echo (echo x 3 + z)" for ax in w.plot_figure.axes)


def test_inspect_keeps_the_names_the_user_gave_the_sliders(widget_and_viewer, qtbot, rng):
    """napari names its sliders after a new layer's axes: the maps, named after the image's own axes
    ('time', 'slice', as the reader names a 4-D file's), undid the user's renaming of the sliders."""
    viewer, w = widget_and_viewer
    viewer.add_image(smooth_image(rng, (2, 3, 24, 20), 0, 4000, np.uint16), name="t4",
                     axis_labels=("time", "slice", "row", "column"))
    viewer.dims.axis_labels = ("echo", "z", "y", "x")
    w.layer.value = viewer.layers["t4"]
    w.scope.value = iw.ALL
    _run(w, qtbot)
    assert tuple(viewer.dims.axis_labels) == ("echo", "z", "y", "x")
    assert any(ax.get_xlabel() == "z over every echo (echo x 3 + z)" for ax in w.plot_figure.axes)


def test_skipped_slices_are_named_as_the_sliders_name_them():
    """On a 4-D layer a skipped slice is 'time 1, slice 2', and so is the damaged one its maps need
    (the file's errors number slices flat: 6 and 5 of two volumes of 4)."""
    from lvpnet.errors import DamagedError
    from napari_lvpnet._maps import slice_words

    def words(i):
        return slice_words(i, (2, 4), ("time", "slice", "y", "x"))

    skipped = {5: DamagedError("scan.lvp: slice 5: chunk checksum mismatch (the file is damaged)"),
               6: DamagedError("scan.lvp: slice 5: chunk checksum mismatch (the file is damaged)")}
    assert iw.skipped_text(skipped, "scan.lvp", words).splitlines() == [
        "skipped damaged time 1, slice 1: checksum mismatch",
        "skipped time 1, slice 2: its maps need time 1, slice 1, which is damaged (checksum mismatch)"]
    assert iw.skipped_text(skipped, "scan.lvp").splitlines()[0] == "skipped damaged slice 5: checksum mismatch"


def test_results_go_with_their_layer_and_name_it(widget_and_viewer, qtbot, rng):
    """The summary, plot and colorbars of a run stayed when its layer was removed and another opened, and read
    as the new layer's (the summary did not name its layer); choosing another layer left them too."""
    viewer, w = widget_and_viewer
    first = viewer.add_image(smooth_image(rng, (2, 40, 33), -200, 1800, np.int16), name="first")
    w.layer.value = first
    w.scope.value = iw.ALL
    _run(w, qtbot)
    assert w.summary.value.startswith("layer: first\n") and w.plot_canvas.isVisibleTo(w.native)
    second = viewer.add_image(smooth_image(rng, (2, 40, 33), -200, 1800, np.int16), name="second")
    w.layer.value = second  # another layer chosen: the words and charts were the first one's
    assert w.summary.value == "" and not w.plot_canvas.isVisibleTo(w.native) and w.last_result is None
    assert layer_name("first", "bits") in viewer.layers  # its maps stay, named after it
    w.layer.value = first
    _run(w, qtbot)
    assert w.summary.value.startswith("layer: first\n")
    maps = [la for la in viewer.layers if la.name.startswith(layer_name("first", "bits"))]
    viewer.layers.remove(first)  # the results and the maps go with it
    # hidden at once, before any repaint: drawn once more without their volume, a one-slice map crashed vispy
    # (a segmentation fault under software OpenGL with the viewer on screen)
    assert maps and not any(m.visible for m in maps)
    qtbot.waitUntil(lambda: layer_name("first", "bits") not in viewer.layers, timeout=5000)
    assert w.summary.value == "" and not w.plot_canvas.isVisibleTo(w.native) and w.last_result is None
    assert not w.colorbar_canvas.isVisibleTo(w.native) and [la.name for la in viewer.layers] == ["second"]
    assert w.layer.value is second
    # removed while its run goes on: the run stops, and no maps are left over nothing
    w.scope.value = iw.ALL
    w.run_button.changed.emit(True)
    viewer.layers.remove(second)
    qtbot.waitUntil(lambda: w.run_button.enabled and w.progress.visible is False, timeout=30000)
    qtbot.wait(50)
    # its run's end and the removal come in either order: said, or cleared
    assert len(viewer.layers) == 0 and w.summary.value in ("cancelled", "second was removed", "")
    assert w.last_result is None and not w.plot_canvas.isVisibleTo(w.native)


def test_maps_go_with_the_image_they_sit_on_not_the_last_run_started(widget_and_viewer, qtbot, rng):
    """Removal was judged by the last run started: after a cancelled run on B, removing A left A's maps visible
    over nothing (the state that crashed vispy), and removing B took A's maps while A was still shown."""
    viewer, w = widget_and_viewer
    a = viewer.add_image(smooth_image(rng, (2, 40, 33), -200, 1800, np.int16), name="A")
    b = viewer.add_image(smooth_image(rng, (2, 40, 33), -200, 1800, np.int16), name="B")
    w.layer.value = a
    _run(w, qtbot)
    maps_a = [la for la in viewer.layers if la.name.startswith(layer_name("A", "bits"))]
    assert maps_a
    w.layer.value = b
    w.run_button.changed.emit(True)
    w.cancel()
    qtbot.waitUntil(lambda: w.run_button.enabled, timeout=60000)
    viewer.layers.remove(b)  # not the maps' image: they stay, shown
    qtbot.wait(100)
    assert all(m in viewer.layers and m.visible for m in maps_a)
    viewer.layers.remove(a)  # theirs: hidden at once, then removed
    assert not any(m.visible for m in maps_a)
    qtbot.waitUntil(lambda: len(viewer.layers) == 0, timeout=5000)
