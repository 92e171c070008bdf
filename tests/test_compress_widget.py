"""The Compress dock widget driven end to end in a real viewer."""

import re
from pathlib import Path

import numpy as np
import pytest
from conftest import smooth_image

import lvpnet

pytest.importorskip("napari")


@pytest.fixture
def widget_and_viewer(make_napari_viewer):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-lvpnet", "Compress")
    return viewer, widget


def test_compress_widget_writes_identical_file_and_shows_numbers(widget_and_viewer, qtbot, tmp_path, rng):
    viewer, w = widget_and_viewer
    a = smooth_image(rng, (4, 48, 40), -1000, 2000, np.int16)
    viewer.add_image(a, name="ct", scale=(3.0, 0.5, 0.5))
    w.layer.value = viewer.layers["ct"]
    out = tmp_path / "ct.lvp"
    w.output.value = out
    w.compare.value = True
    progress_seen = []
    w.run_button.changed.emit(True)
    w.worker.yielded.connect(lambda p: progress_seen.append(p.done))
    qtbot.waitUntil(lambda: w.last_result is not None and w.run_button.enabled, timeout=60000)
    assert np.array_equal(lvpnet.open(out).read_all(), a)
    text = w.summary.value
    assert f"{out.stat().st_size:,} bytes" in text and "bits/sample" in text and "JPEG-XL lossless" in text
    # JPEG-XL codes the slices alone: it is compared with the .lvp's slices, the header's bytes said apart
    lvp = lvpnet.open(out)
    slices = sum(lvp.chunk_bytes(i) for i in range(len(lvp)))
    assert f"of which the slices {slices:,} bytes" in text and f"metadata {out.stat().st_size - slices:,})" in text
    assert "the .lvp's slices are" in text and "verified in" in text
    assert not w.inspect_button.native.isHidden()  # shown once a result exists
    inspect = w.open_inspect()  # the result links to the inspection layers
    assert inspect.layer.value is viewer.layers["ct"]
    # a tab beside Compress (stacked under it, it was squeezed to a few lines), never shorter than its controls
    docks = viewer.window.dock_widgets  # name -> the widget; its dock is the native widget's parent
    compress_dock = next(w.native.parent() for name, w in docks.items() if name.startswith("Compress"))
    inspect_dock = next(w.native.parent() for name, w in docks.items() if name.startswith("Inspect"))
    assert inspect_dock in viewer.window._qt_window.tabifiedDockWidgets(compress_dock)
    assert inspect.native.minimumHeight() >= 260
    qtbot.waitUntil(lambda: inspect.run_button.enabled, timeout=60000)
    viewer.add_image(np.zeros((2, 8, 8), np.int16), name="other")
    w.layer.value = viewer.layers["other"]  # the summary and its Inspect button were about "ct"
    assert w.summary.value == "" and w.inspect_button.native.isHidden()


def test_progress_names_slices_and_time_left_and_cancel_stops_within_one_slice(widget_and_viewer, qtbot, tmp_path,
                                                                             rng, monkeypatch):
    viewer, w = widget_and_viewer
    viewer.add_image(smooth_image(rng, (40, 64, 64), 0, 4000, np.uint16), name="big")
    w.layer.value = viewer.layers["big"]
    w.output.value = tmp_path / "big.lvp"

    from lvpnet.codecs.fallback import FallbackCodec

    real = FallbackCodec.encode
    encoded = []

    def slow_encode(self, s):  # each slice takes a moment, so Cancel lands mid-run
        import time

        time.sleep(0.1)
        encoded.append(1)
        return real(self, s)

    monkeypatch.setattr(FallbackCodec, "encode", slow_encode)
    # in this process, where the slow encode is (a worker process's would take milliseconds a slice: the
    # time left under a second, which the bar leaves out)
    monkeypatch.setenv("LVPNET_WORKERS", "1")
    w.run_button.changed.emit(True)
    qtbot.waitUntil(lambda: w.progress.value >= 300, timeout=30000)  # in hundredths of a slice
    text = w.progress.native.format()
    done = int(re.search(r"encode: slice (\d+) of 40", text).group(1))
    assert 3 <= done < 40
    assert text.endswith(" left, then verify")  # the verify comes after the time left said
    w.cancel_button.changed.emit(True)
    at_cancel = len(encoded)
    assert not w.cancel_button.enabled  # pressed once: it says so and cannot be pressed again
    assert "cancelling" in w.summary.value
    qtbot.waitUntil(lambda: w.run_button.enabled, timeout=30000)
    assert len(encoded) - at_cancel <= 1  # the slice it was on, no more
    assert "cancelled" in w.summary.value
    assert list(tmp_path.iterdir()) == []


def test_default_output_is_next_to_the_source_under_a_safe_name(widget_and_viewer, qtbot, tmp_path, rng,
                                                                monkeypatch):
    import nibabel as nib

    viewer, w = widget_and_viewer
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setattr("pathlib.Path.home", lambda: home)
    monkeypatch.chdir(tmp_path)
    scans = tmp_path / "scans"
    scans.mkdir()
    nib.save(nib.Nifti1Image(smooth_image(rng, (16, 12, 3), 0, 900, np.int16), np.eye(4)), scans / "knee mr.nii.gz")
    (opened,) = viewer.open(str(scans / "knee mr.nii.gz"), plugin="napari-lvpnet")
    w.layer.value = opened
    assert w.output.value == scans / "knee_mr.lvp"  # next to the source; no space in the name
    (scans / "knee_mr.lvp").write_bytes(b"someone's file")
    viewer.add_image(smooth_image(rng, (2, 16, 16), 0, 99, np.uint8), name="sample CT")  # in memory: no folder
    w.layer.value = viewer.layers["sample CT"]
    assert w.output.value == home / "sample_CT.lvp"
    w.layer.value = opened
    assert w.output.value == scans / "knee_mr-1.lvp"  # never an existing file
    w.output.value = ""  # emptied by the user: still the default, never the working folder
    w.run_button.changed.emit(True)
    qtbot.waitUntil(lambda: w.last_result is not None and w.run_button.enabled, timeout=30000)
    assert str(w.last_result["result"].path) == str(scans / "knee_mr-1.lvp"), w.last_result["result"].path
    assert (scans / "knee_mr-1.lvp").exists() and not list(tmp_path.glob("*.lvp"))
    assert w.summary.native.wordWrap()


def test_a_layer_opened_by_a_relative_path_never_has_its_file_overwritten(widget_and_viewer, qtbot, tmp_path, rng,
                                                                         monkeypatch):
    """Scripts open files by relative paths: the suggestion must still move on after a run and follow
    the chosen layer, so a second Compress on another layer cannot replace the first file."""
    viewer, w = widget_and_viewer
    monkeypatch.chdir(tmp_path)
    (tmp_path / "scans").mkdir()
    first = smooth_image(rng, (3, 16, 16), 0, 900, np.int16)
    np.save(tmp_path / "scans" / "pd.npy", first)
    (opened,) = viewer.open("scans/pd.npy", plugin="napari")  # napari keeps the relative path as the source
    w.layer.value = opened
    assert w.output.value == tmp_path / "scans" / "pd.lvp"
    w.run_button.changed.emit(True)
    qtbot.waitUntil(lambda: w.last_result is not None and w.run_button.enabled, timeout=30000)
    assert w.output.value == tmp_path / "scans" / "pd-1.lvp"  # the next run gets a new name
    other = viewer.add_image(np.full((2, 16, 16), 7, np.int16), name="other")
    w.layer.value = other
    assert w.output.value != tmp_path / "scans" / "pd.lvp"
    w.last_result = None
    w.run_button.changed.emit(True)
    qtbot.waitUntil(lambda: w.last_result is not None and w.run_button.enabled, timeout=30000)
    assert np.array_equal(lvpnet.open(tmp_path / "scans" / "pd.lvp").read_all(), first)


def test_unsupported_layer_gives_notification_not_crash(widget_and_viewer, tmp_path, monkeypatch):
    viewer, w = widget_and_viewer
    viewer.add_image(np.zeros((1, 1, 1, 2, 4, 4), np.uint8), name="six_d")
    w.layer.value = viewer.layers["six_d"]
    w.output.value = tmp_path / "c.lvp"
    errors = []
    monkeypatch.setattr("napari_lvpnet._compress_widget.show_error", errors.append)
    w.run_button.changed.emit(True)
    assert errors and "dimensions" in errors[0]
    assert w.worker is None and list(tmp_path.iterdir()) == []


def test_write_error_becomes_notification(widget_and_viewer, qtbot, tmp_path, rng, monkeypatch):
    viewer, w = widget_and_viewer
    viewer.add_image(smooth_image(rng, (2, 16, 16), 0, 99, np.uint8), name="small")
    w.layer.value = viewer.layers["small"]
    w.output.value = tmp_path / "no_such_folder" / "x.lvp"
    errors = []
    monkeypatch.setattr("napari_lvpnet._background.show_error", errors.append)
    w.run_button.changed.emit(True)
    qtbot.waitUntil(lambda: w.run_button.enabled and bool(errors), timeout=30000)
    assert "Compress failed" in errors[0] and "failed" in w.summary.value
    assert list(tmp_path.iterdir()) == []


def test_device_choice_reaches_the_learned_codec(widget_and_viewer, qtbot, tmp_path, rng):
    from lvpnet import codecs

    viewer, w = widget_and_viewer
    assert "CUDA" not in w.device.choices or __import__("torch").cuda.is_available()
    viewer.add_image(smooth_image(rng, (1, 8, 8), 0, 9, np.uint8), name="tiny")
    w.layer.value = viewer.layers["tiny"]
    w.output.value = tmp_path / "t.lvp"
    w.device.value = "CPU"
    w.run_button.changed.emit(True)
    qtbot.waitUntil(lambda: w.run_button.enabled, timeout=30000)  # set in the worker (loading the codec: torch)
    assert codecs.get_codec("lvpnet").device == "cpu"
    codecs.get_codec("lvpnet").device = "auto"


def test_a_lvp_layer_is_decoded_off_the_main_thread(widget_and_viewer, qtbot, tmp_path, rng, monkeypatch):
    import threading

    viewer, w = widget_and_viewer
    a = smooth_image(rng, (4, 24, 20), 0, 3000, np.uint16)
    src = tmp_path / "in.lvp"
    lvpnet.compress_to_file(a, src, codec="fallback")
    (layer,) = viewer.open(str(src), plugin="napari-lvpnet")
    on_main = []
    real = lvpnet.LvpFile.read_slice

    def watched(self, i):
        on_main.append(threading.current_thread() is threading.main_thread())
        return real(self, i)

    monkeypatch.setattr(lvpnet.LvpFile, "read_slice", watched)
    w.layer.value = layer
    w.output.value = tmp_path / "out.lvp"
    w.codec.value = "fallback"
    w.run_button.changed.emit(True)
    qtbot.waitUntil(lambda: w.last_result is not None and w.run_button.enabled, timeout=30000)
    assert on_main and not any(on_main)
    assert np.array_equal(lvpnet.open(tmp_path / "out.lvp").read_all(), a)


def test_a_layer_switched_during_a_run_leaves_inspect_and_the_file_to_the_compressed_one(widget_and_viewer, qtbot,
                                                                                           tmp_path, rng):
    """Choosing another layer while a run went on made "Inspect where the bits go" open that other
    layer; a folder as "save as" replaced a file of the layer's name already there; the translate of
    the layer was lost."""
    viewer, w = widget_and_viewer
    a = smooth_image(rng, (3, 32, 32), 0, 999, np.uint16)
    viewer.add_image(a, name="A", translate=(0.0, 5.0, -7.0))
    viewer.add_image(a[:, ::-1].copy(), name="B")
    (tmp_path / "A.lvp").write_bytes(b"someone else's file")
    w.layer.value = viewer.layers["A"]
    w.output.value = tmp_path  # a folder
    w.run_button.changed.emit(True)
    w.layer.value = viewer.layers["B"]
    qtbot.waitUntil(lambda: w.last_result is not None and w.run_button.enabled, timeout=60000)
    assert (tmp_path / "A.lvp").read_bytes() == b"someone else's file"
    f = lvpnet.open(tmp_path / "A-1.lvp")
    assert np.array_equal(f.read_all(), a) and f.header["origin"] == [-7.0, 5.0, 0.0]
    assert w.summary.value.startswith("layer: A\n")
    inspect = w.open_inspect()
    assert inspect.layer.value is viewer.layers["A"]
    qtbot.waitUntil(lambda: inspect.run_button.enabled, timeout=60000)


def test_closing_the_viewer_mid_run_stops_the_job_and_leaves_no_file(widget_and_viewer, qtbot, tmp_path, rng,
                                                                      monkeypatch):
    """The window closed while Compress ran: the worker's loop stopped at its next progress (its QObject
    gone), leaving the job suspended and its hidden temporary .lvp behind, and the late signals raised
    'wrapped C/C++ object ... has been deleted'. Now the job is closed like Cancel and nothing is left."""
    import time

    from lvpnet.codecs.fallback import FallbackCodec

    viewer, w = widget_and_viewer
    viewer.add_image(smooth_image(rng, (40, 64, 64), 0, 4000, np.uint16), name="big")
    w.layer.value = viewer.layers["big"]
    w.output.value = tmp_path / "big.lvp"
    real = FallbackCodec.encode
    monkeypatch.setattr(FallbackCodec, "encode", lambda self, s: (time.sleep(0.1), real(self, s))[1])
    w.run_button.changed.emit(True)
    qtbot.waitUntil(lambda: w.progress.value >= 200, timeout=30000)  # in hundredths of a slice
    assert any(p.name.startswith(".big.lvp.partial-") for p in tmp_path.iterdir())
    ended = w._ended
    viewer.close()
    qtbot.waitUntil(ended.is_set, timeout=30000)
    qtbot.wait(200)
    assert list(tmp_path.iterdir()) == []


def test_a_failure_notification_gives_the_reason_before_the_path():
    """napari's notification is one line cut to its width: 'Compress failed: /tmp/a/long/...' hid why."""
    from napari_lvpnet._background import reason_first

    assert reason_first("/data/scans/x.lvp: slice 5: chunk checksum mismatch") == "slice 5: chunk checksum mismatch (x.lvp)"
    assert reason_first("/tmp/nowhere/x.lvp: the folder /tmp/nowhere does not exist") == \
        "the folder /tmp/nowhere does not exist (x.lvp)"
    assert reason_first("layer 'ct': the array is empty") == "layer 'ct': the array is empty"  # no path: as it was


def test_one_large_slice_shows_a_busy_bar_not_a_still_one(widget_and_viewer, qtbot, tmp_path, rng, monkeypatch):
    """Progress comes per slice, so a single slice showed 'starting ...' on a still bar for all its seconds."""
    import time

    from lvpnet.codecs.fallback import FallbackCodec

    viewer, w = widget_and_viewer
    viewer.add_image(smooth_image(rng, (64, 64), 0, 4000, np.uint16), name="dx")
    w.layer.value = viewer.layers["dx"]
    w.output.value = tmp_path / "dx.lvp"
    real = FallbackCodec.encode
    monkeypatch.setattr(FallbackCodec, "encode", lambda self, s: (time.sleep(0.5), real(self, s))[1])
    w.run_button.changed.emit(True)
    assert w.progress.native.maximum() == 0  # Qt's busy indicator
    qtbot.waitUntil(lambda: w.last_result is not None and w.run_button.enabled, timeout=30000)


def test_a_float_layer_says_why_jpeg_xl_was_not_run(widget_and_viewer, qtbot, tmp_path, rng):
    """'also run JPEG-XL' was skipped without a word for a float layer."""
    viewer, w = widget_and_viewer
    viewer.add_image(rng.normal(size=(2, 16, 16)).astype(np.float32), name="t1map")
    w.layer.value = viewer.layers["t1map"]
    w.output.value = tmp_path / "f.lvp"
    w.compare.value = True
    w.run_button.changed.emit(True)
    qtbot.waitUntil(lambda: w.last_result is not None and w.run_button.enabled, timeout=60000)
    assert "JPEG-XL: not run: float32 data (the classical codecs take integers only)" in w.summary.value
    # a uint32 layer spanning more than 16 bits: the file was written, then the comparison failed the run
    viewer.add_image((np.arange(2 * 16 * 16, dtype=np.uint32) * 1000).reshape(2, 16, 16), name="wide")
    w.layer.value = viewer.layers["wide"]
    w.output.value = tmp_path / "wide.lvp"
    w.run_button.changed.emit(True)
    qtbot.waitUntil(lambda: w.last_result is not None and w.run_button.enabled and "wide" in w.summary.value,
                    timeout=60000)
    assert "JPEG-XL: not run: a slice spans more than 16 bits" in w.summary.value
    assert "failed" not in w.summary.value


def test_a_typed_file_is_not_replaced_without_asking(widget_and_viewer, qtbot, tmp_path, rng, monkeypatch):
    """A path typed in "save as" replaced the file there without a word, and stayed in the field for the
    next layer chosen, whose run would have replaced the first layer's file."""
    from napari_lvpnet import _compress_widget

    viewer, w = widget_and_viewer
    viewer.add_image(smooth_image(rng, (2, 24, 24), 0, 900, np.int16), name="a")
    viewer.add_image(smooth_image(rng, (2, 24, 24), 0, 900, np.int16), name="b")
    w.layer.value = viewer.layers["a"]
    target = tmp_path / "kept.lvp"
    target.write_bytes(b"someone's file")
    w.output.value = target
    asked = []
    monkeypatch.setattr(_compress_widget, "confirm_replace", lambda p: asked.append(p) or False)
    w.run_button.changed.emit(True)
    assert asked == [target] and target.read_bytes() == b"someone's file"
    assert "exists and was kept" in w.summary.value
    monkeypatch.setattr(_compress_widget, "confirm_replace", lambda p: asked.append(p) or True)
    w.run_button.changed.emit(True)
    qtbot.waitUntil(lambda: w.last_result is not None and w.run_button.enabled, timeout=60000)
    assert np.array_equal(lvpnet.open(target)[:], viewer.layers["a"].data)
    w.layer.value = viewer.layers["b"]  # the typed file was the other layer's: the field suggests anew
    assert Path(str(w.output.value)) != target


def test_the_widget_keeps_the_display_as_file_save_does(widget_and_viewer, qtbot, tmp_path, rng):
    """The widget passed only rgb, scale, translate and metadata: the window, colormap and gamma the user
    set (which File > Save keeps) were lost, and the file reopened in the source's window."""
    viewer, w = widget_and_viewer
    viewer.add_image(smooth_image(rng, (2, 24, 20), 0, 2000, np.uint16), name="mr", contrast_limits=(100, 900),
                     colormap="bone", gamma=1.3)
    w.layer.value = viewer.layers["mr"]
    w.codec.value = "fallback"
    w.output.value = tmp_path / "mr.lvp"
    w.run_button.changed.emit(True)
    qtbot.waitUntil(lambda: w.last_result is not None and w.run_button.enabled, timeout=60000)
    viewer.layers.save(str(tmp_path / "saved.lvp"), selected=False, plugin="napari-lvpnet")
    shown = [lvpnet.open(tmp_path / n).header["source"]["metadata"]["display"] for n in ("mr.lvp", "saved.lvp")]
    assert shown[0] == shown[1] == {"contrast_limits": [100.0, 900.0], "colormap": "bone", "gamma": 1.3}


def test_a_small_dicom_is_measured_against_its_file_too(widget_and_viewer, qtbot, tmp_path):
    """A 64 x 64 MR's .lvp holds its header, 5 kB: "ratio 0.90" and 17.8 bits per sample read as the
    compressor making files bigger, though the .lvp is smaller than the .dcm. The summary gives the
    slices' own bits per sample and the ratio to the source file beside the ratio to the values."""
    import pydicom.data

    viewer, w = widget_and_viewer
    src = Path(pydicom.data.get_testdata_file("MR_small.dcm"))
    layer = viewer.open(src, plugin="napari-lvpnet")[0]
    w.layer.value = layer
    out = tmp_path / "mr.lvp"
    w.output.value = out
    w.run_button.changed.emit(True)
    qtbot.waitUntil(lambda: w.last_result is not None and w.run_button.enabled, timeout=120000)
    text = w.summary.value
    lvp = lvpnet.open(out)
    slices = sum(lvp.chunk_bytes(i) for i in range(len(lvp)))
    ratio = src.stat().st_size / out.stat().st_size
    assert f"of which the slices {slices:,} bytes, {8 * slices / 4096:.3f} bits/sample" in text
    assert f"{ratio:.2f} to the source MR_small.dcm ({src.stat().st_size:,} bytes)" in text
    assert "values: 8,192 bytes" in text


def test_building_the_dock_does_not_import_torch():
    """Whether to offer CUDA was asked of torch as the dock was built: importing it froze the window for
    seconds (9 s on a busy machine) before the dock showed."""
    import subprocess
    import sys

    code = ("import sys; import napari_lvpnet._compress_widget as c; c.cuda_available(); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr[-1000:]


def test_a_volume_is_compressed_by_worker_processes(widget_and_viewer, qtbot, tmp_path, rng, monkeypatch):
    """napari runs from a main that only defines (its command, pytest's): the dock asks for the automatic
    number of workers, one per free core (here LVPNET_WORKERS=2), and the file is the one a single
    process writes (its slices). A volume of minutes on one core takes a workstation's cores."""
    from lvpnet import slice_pool

    viewer, w = widget_and_viewer
    a = smooth_image(rng, (3, 40, 32), 0, 3000, np.uint16)
    viewer.add_image(a, name="mr")
    monkeypatch.setenv(slice_pool.ENV, "2")
    asked = []
    real = slice_pool.ordered
    monkeypatch.setattr(slice_pool, "ordered", lambda fn, tasks, n, env=None: asked.append(n) or real(fn, tasks, n, env))
    w.layer.value = viewer.layers["mr"]
    w.output.value = out = tmp_path / "mr.lvp"
    w.codec.value = "lvpnet"
    w.run_button.changed.emit(True)
    qtbot.waitUntil(lambda: w.last_result is not None and w.run_button.enabled, timeout=120000)
    assert asked and set(asked) == {2}  # the encode and the verifying decode
    got, alone = lvpnet.open(out), lvpnet.open(lvpnet.compress(a, codec="lvpnet", verify=False, workers=1))
    assert np.array_equal(got.read_all(), a)
    assert [got.chunk_bytes(i) for i in range(3)] == [alone.chunk_bytes(i) for i in range(3)]
    learned = got.codec_counts().get("lvpnet", 0)  # the summary says which codec kept the slices, in words
    assert f"{learned} slice{'s' if learned > 1 else ''} by the learned codec" in w.summary.value
    if learned < 3:
        assert "by the fallback codec (JPEG-XL) where it was smaller: the safety net" in w.summary.value


def test_a_dask_layer_is_computed_off_the_main_thread(widget_and_viewer, qtbot, tmp_path, rng):
    """A dask layer was computed whole on the main thread when Compress was clicked (a 10-block layer froze the
    window 5 s); the worker reads it now, and the file holds its values."""
    import threading

    import dask
    import dask.array as da

    viewer, w = widget_and_viewer
    a = smooth_image(rng, (4, 16, 16), 0, 900, np.uint16)
    threads = []

    def block(x):
        threads.append(threading.current_thread())
        return x

    lazy = da.from_array(a, chunks=(1, 16, 16)).map_blocks(block, dtype=a.dtype)
    viewer.add_image(lazy, name="lazy")
    w.layer.value = viewer.layers["lazy"]
    w.codec.value = "fallback"
    w.output.value = tmp_path / "lazy.lvp"
    threads.clear()  # napari draws a slice of it when it is added
    with dask.config.set(scheduler="synchronous"):  # blocks computed in the thread that reads them
        w.run_button.changed.emit(True)
        assert threading.main_thread() not in threads  # nothing read on the click
        qtbot.waitUntil(lambda: w.run_button.enabled and (tmp_path / "lazy.lvp").exists(), timeout=30000)
    assert threads and threading.main_thread() not in threads
    np.testing.assert_array_equal(lvpnet.open(tmp_path / "lazy.lvp")[:], a)


def test_a_layer_written_over_its_own_file_is_measured_against_that_file(widget_and_viewer, qtbot, tmp_path, rng,
                                                                          monkeypatch):
    """Compressing a .lvp layer onto the file it was opened from said "1.00 to the source": the source's size
    was read after the run had replaced it."""
    from napari_lvpnet import _compress_widget

    viewer, w = widget_and_viewer
    path = tmp_path / "ct.lvp"
    lvpnet.compress_to_file(smooth_image(rng, (2, 24, 24), 0, 900, np.int16), path, codec="fallback")
    path.write_bytes(path.read_bytes())  # the same file
    before = path.stat().st_size
    (layer,) = viewer.open(str(path), plugin="napari-lvpnet")
    w.layer.value = layer
    w.output.value = path
    w.codec.value = "lvpnet"
    monkeypatch.setattr(_compress_widget, "confirm_replace", lambda p: True)
    w.run_button.changed.emit(True)
    qtbot.waitUntil(lambda: w.last_result is not None and w.run_button.enabled, timeout=60000)
    assert path.stat().st_size != before and f"({before:,} bytes)" in w.summary.value, w.summary.value


def test_the_codec_list_fits_the_layer_and_the_safety_net_can_be_switched_off(widget_and_viewer, qtbot, tmp_path,
                                                                             rng):
    """A float layer was offered the learned codec, which then failed after the click; and the dock had no way to
    see the learned codec's own figures (the command line's --no-safety-net)."""
    viewer, w = widget_and_viewer
    viewer.add_image(rng.normal(size=(2, 16, 16)).astype(np.float32), name="t1map")
    w.layer.value = viewer.layers["t1map"]
    assert "lvpnet" not in w.codec.choices and "fallback" in w.codec.choices and not w.safety_net.enabled
    # constant slices: the fallback codes them smaller (466 bytes against 567), so the safety net would take them
    a = np.full((2, 32, 32), 5, np.int16)
    viewer.add_image(a, name="ct")
    w.layer.value = viewer.layers["ct"]
    assert "lvpnet" in w.codec.choices and w.safety_net.enabled
    w.codec.value = "fallback"
    assert not w.safety_net.enabled
    w.codec.value = "lvpnet"
    assert w.safety_net.enabled
    w.safety_net.value = False
    w.output.value = tmp_path / "alone.lvp"
    w.run_button.changed.emit(True)
    qtbot.waitUntil(lambda: w.last_result is not None and w.run_button.enabled, timeout=120000)
    lvp = lvpnet.open(tmp_path / "alone.lvp")
    assert np.array_equal(lvp.read_all(), a)
    assert w.last_result["result"].codec_counts == {"lvpnet": 2}
    w.safety_net.value = True  # on: the same layer's slices go to the fallback
    w.output.value = tmp_path / "net.lvp"
    w.last_result = None
    w.run_button.changed.emit(True)
    qtbot.waitUntil(lambda: w.last_result is not None and w.run_button.enabled, timeout=120000)
    assert w.last_result["result"].codec_counts == {"fallback": 2}
    w.layer.value = viewer.layers["t1map"]  # the learned codec chosen, then a layer it cannot take: auto again
    assert w.codec.value.startswith("auto") and "lvpnet" not in w.codec.choices


def test_the_summary_says_the_time_spent_loading_the_learned_codec():
    """The encode's time leaves out loading the learned codec (``load_seconds``); the dock's total included it
    without a word (9.81 s: encoded in 6.77 s, verified in 2.48 s)."""
    from lvpnet.compressor import CompressResult
    from napari_lvpnet._compress_widget import format_summary

    r = CompressResult(shape=(2, 8, 8), dtype="<i2", slices=2, raw_bytes=256, lvp_bytes=100, encode_seconds=1.0,
                       verify_seconds=0.5, codec_counts={"lvpnet": 2}, load_seconds=1.25)
    text = format_summary({"result": r, "seconds": 2.8})
    assert "time: 2.80 s: encoded in 1.00 s, verified in 0.50 s, 1.25 s loading the learned codec" in text
    r.load_seconds = 0.0
    assert "loading" not in format_summary({"result": r, "seconds": 1.55})
    # decoding a .lvp layer first and the JPEG-XL comparison: said apart, not left out of the wait
    text = format_summary({"result": r, "seconds": 1.55, "read_seconds": 20.0, "jxl_seconds": 14.0})
    assert text.splitlines()[-1].endswith("; besides: reading the layer 20.00 s, JPEG-XL 14.00 s")
