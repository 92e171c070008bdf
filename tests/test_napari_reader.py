"""The napari plugin in a real viewer (pytest-qt under Xvfb): .lvp opens lazily."""

import threading
import traceback
from pathlib import Path

import numpy as np
import pytest
from conftest import smooth_image

import lvpnet

pytest.importorskip("napari")


@pytest.fixture
def volume_lvp(tmp_path, rng):
    v = lvpnet.Volume(
        array=smooth_image(rng, (5, 40, 30), -1000, 1500, np.int16),
        spacing=(3.0, 0.7, 0.6),
        source_format="numpy",
        metadata={"modality": "CT"},
    )
    path = tmp_path / "vol.lvp"
    lvpnet.compress_to_file(v, path)
    return v, path


def test_open_lvp_in_viewer_is_lazy_and_exact(make_napari_viewer, volume_lvp, monkeypatch):
    v, path = volume_lvp
    decoded = []
    real = lvpnet.LvpFile.read_slice

    def counting(self, i):
        decoded.append(i)
        return real(self, i)

    monkeypatch.setattr(lvpnet.LvpFile, "read_slice", counting)
    viewer = make_napari_viewer()
    layers = viewer.open(str(path), plugin="napari-lvpnet")
    assert len(layers) == 1
    layer = layers[0]
    assert layer.data.shape == v.array.shape and layer.data.dtype == np.int16
    assert set(decoded) <= {0, 1, 2, 3, 4}  # the slice shown and its neighbours (prefetch), nothing else
    assert np.allclose(layer.scale, v.spacing)
    assert layer.metadata["modality"] == "CT"
    assert np.array_equal(np.asarray(layer.data), v.array)


def test_open_decodes_the_first_shown_slice_first_and_once(make_napari_viewer, qtbot, tmp_path, rng, monkeypatch):
    """An even number of slices: napari starts at slice (n - 1) // 2; the reader starts decoding that
    slice before the layer exists, then its neighbours (prefetch); every slice is decoded once."""
    path = tmp_path / "six.lvp"
    a = smooth_image(rng, (6, 24, 20), 0, 3000, np.uint16)
    lvpnet.compress_to_file(a, path, codec="fallback")
    decoded, callers = [], []
    real = lvpnet.LvpFile._decode

    def counting(self, i, *args):
        decoded.append(i)
        # who asked, for the message should this ever fail again (it did once, under heavy load, unexplained)
        frames = traceback.extract_stack(limit=12)[:-1]
        callers.append((i, threading.current_thread().name, [f"{Path(f.filename).name}:{f.name}" for f in frames]))
        return real(self, i, *args)

    monkeypatch.setattr(lvpnet.LvpFile, "_decode", counting)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path), plugin="napari-lvpnet")
    qtbot.waitUntil(lambda: layer.data.loader.resolved(2), timeout=5000)
    qtbot.wait(50)
    assert viewer.dims.current_step[0] == 2
    assert decoded[0] == 2, callers
    np.testing.assert_array_equal(layer._slice.image.raw, a[2])
    assert len(decoded) == len(set(decoded))


def test_reader_declines_foreign_files_unless_named_lvp(tmp_path):
    """A file named .lvp is this plugin's to explain ("not an lvpnet file"; no other plugin reads .lvp);
    other names are claimed only with the lvpnet magic."""
    from napari_lvpnet._reader import get_lvp_reader

    (tmp_path / "x.lvp").write_text("not really")
    (tmp_path / "x.bin").write_text("not really")
    assert get_lvp_reader(str(tmp_path / "x.lvp")) is not None
    assert get_lvp_reader(str(tmp_path / "x.bin")) is None
    assert get_lvp_reader(str(tmp_path / "missing.lvp")) is None


def test_sample_data_opens(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-lvpnet", "sample_ct")
    layer = viewer.layers[0]
    assert layer.data.shape == (12, 512, 512) and layer.data.dtype == np.int16
    assert np.allclose(layer.scale, (5.0, 0.6269531, 0.6269531))


def test_reader_claims_every_lvp_and_only_those(tmp_path):
    """A file with the lvpnet magic gets this plugin's reader even when damaged (which then says so)."""
    from napari_lvpnet._reader import get_lvp_reader, read_lvp

    path = tmp_path / "x.lvp"
    lvpnet.compress_to_file(np.zeros((2, 8, 8), np.uint8), path, codec="fallback")
    path.write_bytes(path.read_bytes()[:-10])
    assert get_lvp_reader(str(path)) is read_lvp
