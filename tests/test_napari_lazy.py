"""A .lvp in a real viewer (pytest-qt under Xvfb): slices decode off the main thread, damaged
slices are shown blank and named, never replaced by a neighbour."""

import threading
import time

import numpy as np
import pytest
from conftest import smooth_image

import lvpnet
from lvpnet.errors import LvpnetError

pytest.importorskip("napari")


def _flip_in_slice(path, i, out):
    f = lvpnet.open(path)
    rec = f._reader.records[i]
    data = bytearray(path.read_bytes())
    data[rec.offset + rec.length // 2] ^= 0x20
    out.write_bytes(bytes(data))
    return out


@pytest.fixture
def stack(tmp_path, rng):
    a = smooth_image(rng, (8, 64, 64), -1000, 1500, np.int16)
    path = tmp_path / "ct.lvp"
    lvpnet.compress_to_file(lvpnet.Volume(array=a, spacing=(2.5, 0.7, 0.7), metadata={"modality": "CT"}), path,
                            codec="fallback")
    return a, path


def _shown(layer):
    """The slice the canvas holds for ``layer`` now."""
    return np.asarray(layer._slice.image.raw)


def _settle(qtbot, layer, ms=3000):
    """Wait until the slice on screen is decoded (or failed) and the canvas holds it."""
    data = layer.data

    def drawn():
        (i,) = data.last_request
        if not data.loader.resolved(i):
            return False
        s = data.loader.get(i)
        if s is None and not data.feed._canvas_text:  # failed: blank as while decoding, so its words are the sign
            return False  # that the main thread took the news (the canvas read empty under load)
        return np.array_equal(_shown(layer), np.full(data.slice_shape, data.fill) if s is None else s)

    qtbot.waitUntil(drawn, timeout=ms)


def test_damaged_slice_is_blank_under_a_labels_layer_and_named(make_napari_viewer, qtbot, stack, tmp_path,
                                                                monkeypatch):
    a, path = stack
    damaged = _flip_in_slice(path, 5, tmp_path / "dmg.lvp")
    errors = []
    monkeypatch.setattr("napari.utils.notifications.show_error", errors.append)
    viewer = make_napari_viewer()
    (image,) = viewer.open(str(damaged), plugin="napari-lvpnet")
    marks = np.zeros(a.shape, np.uint8)
    marks[:, 10:20, 10:20] = np.arange(1, 9)[:, None, None]  # each slice its own label
    labels = viewer.add_labels(marks, scale=image.scale, name="mask")
    for step in (3, 4, 5, 6):
        viewer.dims.set_current_step(0, step)
        _settle(qtbot, image)
        assert viewer.dims.current_step[0] == step
        assert labels._slice.image.raw[15, 15] == step + 1  # the overlay is on this slice, and so is the image
        if step == 5:
            shown = _shown(image)
            assert (shown == image.data.fill).all()  # blank, never slice 4
            assert shown.max() <= image.contrast_limits[0]  # black
            assert viewer.canvas.overlays.text.visible and viewer.canvas.overlays.text.text.replace("\n", " ").startswith("Slice 5 is damaged: checksum mismatch (dmg.lvp)")
        else:
            np.testing.assert_array_equal(_shown(image), a[step])
            assert not viewer.canvas.overlays.text.visible
    assert len(errors) == 1  # once, when the slice was shown
    first = errors[0].splitlines()[0]
    assert first == "Slice 5 is damaged: checksum mismatch (dmg.lvp)"
    with pytest.raises(lvpnet.LvpnetError):  # exact reads say so too
        image.data.read(5)
    # the line goes with its layer: it stayed on an empty canvas, and over the next file opened
    viewer.dims.set_current_step(0, 5)
    _settle(qtbot, image)
    assert viewer.canvas.overlays.text.visible
    viewer.layers.remove(image)
    assert not viewer.canvas.overlays.text.visible and viewer.canvas.overlays.text.text == ""
    (again,) = viewer.open(str(path), plugin="napari-lvpnet")
    viewer.dims.set_current_step(0, 5)
    _settle(qtbot, again)
    assert not viewer.canvas.overlays.text.visible


def test_damaged_first_slice_opens_blank_with_notification(make_napari_viewer, qtbot, stack, tmp_path, monkeypatch):
    a, path = stack
    damaged = _flip_in_slice(path, 3, tmp_path / "mid.lvp")  # (8 - 1) // 2: the slice napari shows first
    errors = []
    monkeypatch.setattr("napari.utils.notifications.show_error", errors.append)
    viewer = make_napari_viewer()
    (image,) = viewer.open(str(damaged), plugin="napari-lvpnet")
    _settle(qtbot, image)
    qtbot.waitUntil(lambda: bool(errors), timeout=3000)
    assert viewer.dims.current_step[0] == 3 and (_shown(image) == image.data.fill).all()
    assert errors[0].startswith("Slice 3 is damaged: checksum mismatch (mid.lvp)\n")


def test_a_damaged_slice_of_a_4d_layer_is_named_as_its_sliders_name_it(make_napari_viewer, qtbot, tmp_path, rng,
                                                                        monkeypatch):
    """Flat slice 5 of two volumes of 4 slices is 'time 1, slice 1' (the reader names a 4-D layer's
    axes) on the canvas and in the notification; the core's words (the file's own numbering) follow
    in full."""
    a = smooth_image(rng, (2, 4, 32, 32), 0, 3000, np.uint16)
    path = tmp_path / "tz.lvp"
    lvpnet.compress_to_file(a, path, codec="fallback")
    damaged = _flip_in_slice(path, 5, tmp_path / "tz_dmg.lvp")
    errors = []
    monkeypatch.setattr("napari.utils.notifications.show_error", errors.append)
    viewer = make_napari_viewer()
    (image,) = viewer.open(str(damaged), plugin="napari-lvpnet")
    viewer.dims.set_current_step(0, 1)
    viewer.dims.set_current_step(1, 1)
    _settle(qtbot, image)
    qtbot.waitUntil(lambda: bool(errors), timeout=3000)
    said = viewer.canvas.overlays.text.text.replace("\n", " ")
    assert said.startswith("Time 1, slice 1 is damaged: checksum mismatch (tz_dmg.lvp)"), said
    first, full = errors[0].splitlines()[:2]
    assert first == "Time 1, slice 1 is damaged: checksum mismatch (tz_dmg.lvp)"
    assert "slice 5" in full
    assert image.get_status((1, 1, 5, 6))["coordinates"].endswith(": time 1, slice 1 is damaged: no value")
    # renamed in the sliders, the sliders' names are the ones said
    viewer.dims.axis_labels = ("echo", "z", "y", "x")
    image.data.feed.update_canvas_text()
    assert viewer.canvas.overlays.text.text.replace("\n", " ").startswith("Echo 1, z 1 is damaged")
    # in a 3-D view the cursor is on a ray through the slices, not on the damaged one: napari's value stands
    viewer.dims.ndisplay = 3
    qtbot.wait(50)
    said = image.get_status(viewer.cursor.position, view_direction=viewer.cursor._view_direction,
                            dims_displayed=list(viewer.dims.displayed), world=True)["coordinates"]
    assert "damaged" not in said


def test_damaged_slices_on_screen_together_are_all_named(make_napari_viewer, qtbot, tmp_path, rng):
    """Two damaged slices in a 3-D view: the first named in full, the other after it (not 'n more')."""
    a = smooth_image(rng, (6, 32, 32), 0, 3000, np.uint16)
    path = tmp_path / "two.lvp"
    lvpnet.compress_to_file(a, path, codec="fallback")
    _flip_in_slice(path, 2, tmp_path / "one.lvp")
    damaged = _flip_in_slice(tmp_path / "one.lvp", 4, tmp_path / "two_dmg.lvp")
    viewer = make_napari_viewer()
    (image,) = viewer.open(str(damaged), plugin="napari-lvpnet")
    viewer.dims.ndisplay = 3
    qtbot.waitUntil(lambda: all(image.data.loader.resolved(i) for i in range(6)), timeout=10000)
    image.data.feed.update_canvas_text()
    said = viewer.canvas.overlays.text.text.replace("\n", " ")
    assert said.startswith("Slice 2 is damaged: checksum mismatch (two_dmg.lvp)"), said
    assert said.endswith("shown blank; damaged too: slice 4"), said


def test_a_damaged_4d_labels_file_names_the_slice_as_its_sliders_would(make_napari_viewer, tmp_path, monkeypatch):
    """A labels .lvp is read whole, so a damaged slice opens nothing: the notification names it as the
    layer's sliders would have ('time 1, slice 2'), not by the file's flat number 8."""
    from napari_lvpnet._writer import write_labels_lvp

    marks = np.zeros((2, 6, 24, 24), np.uint8)
    marks[:, :, 5:15, 5:15] = np.arange(1, 13).reshape(2, 6, 1, 1)
    path = tmp_path / "marks.lvp"
    write_labels_lvp(str(path), marks, {"name": "marks"})
    damaged = _flip_in_slice(path, 8, tmp_path / "marks_dmg.lvp")
    errors = []
    monkeypatch.setattr("napari.utils.notifications.show_error", errors.append)
    viewer = make_napari_viewer()
    viewer.open(str(damaged), plugin="napari-lvpnet")
    assert errors and errors[0].splitlines()[0] == "Time 1, slice 2 is damaged: checksum mismatch (marks_dmg.lvp)"


@pytest.mark.parametrize("damage", ["truncated", "header"])
def test_damaged_header_or_truncated_file_says_what_verify_says(make_napari_viewer, stack, tmp_path, monkeypatch,
                                                                 capsys, damage):
    from lvpnet.cli import main
    from napari_lvpnet._reader import get_lvp_reader

    _, path = stack
    data = path.read_bytes()
    bad = tmp_path / "bad.lvp"
    bad.write_bytes(data[:-40] if damage == "truncated" else data[:-30] + bytes([data[-30] ^ 0xFF]) + data[-29:])
    assert get_lvp_reader(str(bad)) is not None  # it is a .lvp: this plugin speaks for it
    assert main(["verify", str(bad)]) == 1
    verify_says = capsys.readouterr().err.strip().removeprefix("lvpnet: ")
    errors = []
    monkeypatch.setattr("napari.utils.notifications.show_error", errors.append)
    viewer = make_napari_viewer()
    viewer.window._qt_viewer._qt_open([str(bad)], stack=False)  # what dropping the file does
    assert len(viewer.layers) == 0
    assert len(errors) == 1
    first, second = errors[0].splitlines()
    assert first.startswith("Cannot open bad.lvp: ") and verify_says.endswith(first.removeprefix("Cannot open bad.lvp: "))
    assert second == f"in full: {verify_says}"  # the same words as the command line, not its name


def test_slow_decodes_never_block_the_main_thread(make_napari_viewer, qtbot, stack, monkeypatch):
    """Each decode takes 0.4 s (a learned slice on a slow CPU, scaled down): a 20 ms timer on the
    main thread keeps ticking while the user steps through every slice, and every slice ends up
    shown exactly."""
    from qtpy.QtCore import QTimer

    a, path = stack
    real = lvpnet.LvpFile.read_slice

    on_main = []

    def slow(self, i):
        on_main.append(threading.current_thread() is threading.main_thread())
        time.sleep(0.4)
        return real(self, i)

    monkeypatch.setattr(lvpnet.LvpFile, "read_slice", slow)
    viewer = make_napari_viewer()
    (image,) = viewer.open(str(path), plugin="napari-lvpnet")
    ticks, statuses = [], []
    viewer.events.status.connect(lambda e: statuses.append(str(e.value)))
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(20)
    for step in range(8):
        viewer.dims.set_current_step(0, step)
        qtbot.wait(100)
    _settle(qtbot, image, ms=10000)
    timer.stop()
    np.testing.assert_array_equal(_shown(image), a[7])
    gaps = np.diff(ticks)
    assert gaps.max() < 0.3, f"the main thread stalled {gaps.max():.2f} s"
    assert on_main and not any(on_main)  # no decode ran on the main thread
    assert any(t.startswith("decoding slice ") and t.endswith(" of ct.lvp ...") for t in statuses)
    viewer.dims.set_current_step(0, 0)
    viewer.dims.set_current_step(0, 7)  # back to a decoded slice: from the cache, at once
    np.testing.assert_array_equal(_shown(image), a[7])


def test_prefetch_and_memory_bound(stack, monkeypatch):
    from napari_lvpnet._lazy import LazySlices, SliceLoader

    a, path = stack
    real = lvpnet.LvpFile.read_slice
    monkeypatch.setattr(lvpnet.LvpFile, "read_slice", lambda self, i: time.sleep(0.05) or real(self, i))
    slice_bytes = a[0].nbytes
    loader = SliceLoader(lvpnet.open(path), cache_bytes=3 * slice_bytes, prefetch=2)
    data = LazySlices(loader, -32768)
    assert (data.view(4) == -32768).all()  # napari's slicing: nothing decoded yet, the placeholder, at once
    deadline = time.time() + 10
    while time.time() < deadline and not all(loader.resolved(i) for i in (3, 4, 5)):
        time.sleep(0.01)
    time.sleep(0.2)
    cached = set(loader._cache)
    assert {4, 5, 3} <= cached and len(cached) <= 3 + 1  # the shown slice plus the bound
    np.testing.assert_array_equal(data.view(4), a[4])
    np.testing.assert_array_equal(data.view((4, slice(10, 20), slice(None, None, 2))), a[4, 10:20, ::2])
    np.testing.assert_array_equal(np.asarray(data), a)  # exact reads decode what is missing
    loader.close()


def test_sample_opens_in_a_ct_window_with_mm_units(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-lvpnet", "sample_ct")
    layer = viewer.layers[0]
    assert layer.contrast_limits == [-160.0, 240.0]  # CT soft tissue, 40 / 400 HU
    data = np.asarray(layer.data)
    # the slider reaches the lung and the bone, not only the window it opened in
    assert list(layer.contrast_limits_range) == [float(data.min()), float(data.max())]
    assert [str(u) for u in layer.units] == ["millimeter"] * 3
    assert viewer.dims.axis_labels == ("slice", "row", "column")


def test_a_stored_window_sets_the_limits_and_the_slider_reaches_the_values(make_napari_viewer, qtbot, tmp_path):
    """A CT stored with a soft-tissue window opens in it, and the contrast slider still reaches the
    slice's whole range once it decodes (bone or lung by dragging), not only the window."""
    import shutil

    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    from lvpnet.cli import main

    src = get_testdata_file("CT_small.dcm")
    (tmp_path / "s").mkdir()
    shutil.copy(src, tmp_path / "s" / "IM0.dcm")
    assert main(["compress", str(tmp_path / "s"), str(tmp_path / "ct.lvp"), "--codec", "fallback"]) == 0
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(tmp_path / "ct.lvp"), plugin="napari-lvpnet")
    window = list(layer.contrast_limits)
    values = dcmread(src).pixel_array
    want = [min(window[0], float(values.min())), max(window[1], float(values.max()))]
    qtbot.waitUntil(lambda: list(layer.contrast_limits_range) == want, timeout=20000)
    assert list(layer.contrast_limits) == window and want != window


def test_a_percentile_window_leaves_the_slider_the_slices_whole_range(make_napari_viewer, qtbot, tmp_path, rng):
    """Without a stored window the limits are the first slice's 0.5-99.5 percentiles; the slider still
    reaches its darkest and brightest pixels (napari would confine it to the percentiles)."""
    a = smooth_image(rng, (3, 40, 40), 0, 4000, np.uint16)
    a[:, 0, 0], a[:, 0, 1] = 0, 60000  # outliers beyond the percentiles, in whichever slice decodes first
    lvpnet.compress_to_file(a, tmp_path / "p.lvp", codec="fallback")
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(tmp_path / "p.lvp"), plugin="napari-lvpnet")
    qtbot.waitUntil(lambda: list(layer.contrast_limits_range) == [0.0, 60000.0], timeout=20000)
    lo, hi = layer.contrast_limits
    assert 0 <= lo < hi < 5000  # the percentiles, not the outliers


def test_the_status_bar_gives_no_value_on_a_damaged_or_undecoded_slice(make_napari_viewer, qtbot, tmp_path, rng,
                                                                        monkeypatch):
    """A damaged slice's placeholder read '0 (-1024 HU)' under the cursor: air, on a slice with no data."""
    monkeypatch.setattr("napari.utils.notifications.show_error", lambda *a: None)
    a = smooth_image(rng, (8, 32, 32), 0, 3000, np.uint16)
    path = tmp_path / "ct.lvp"
    meta = {"modality": "CT", "dicom": {"rescale_slope": 1.0, "rescale_intercept": -1024.0}}
    lvpnet.compress_to_file(lvpnet.Volume(array=a, metadata=meta), path, codec="fallback")
    damaged = _flip_in_slice(path, 2, tmp_path / "dmg.lvp")
    viewer = make_napari_viewer()
    (image,) = viewer.open(str(damaged), plugin="napari-lvpnet")

    def status(step):  # the cursor on slice ``step``, as napari puts it there (the slice shown)
        viewer.dims.set_current_step(0, step)
        if step != 7:
            _settle(qtbot, image)
        return image.get_status((step, 5, 6))["coordinates"]

    assert status(1).endswith(f": {a[1, 5, 6]} ({int(a[1, 5, 6]) - 1024} HU)")
    assert status(2).endswith(": frame 2 is damaged: no value")  # its slider names it (DICOM, no slice spacing)
    image.data.loader.close()  # nothing more is decoded: slice 7 was never shown nor prefetched
    assert not image.data.loader.resolved(7) and status(7).endswith(": not decoded yet")


@pytest.mark.parametrize("content", [b"", b"hello, not a scan\n", b"\x93NUMPY\x01\x00v\x00"])
def test_a_file_named_lvp_that_is_not_one_says_so(make_napari_viewer, tmp_path, monkeypatch, content):
    """An empty file, a text file or an .npy named .lvp got napari's 'the plugin refused the file, try
    associating another': now what `lvpnet verify` says, and nothing opens."""
    bad = tmp_path / "scan.lvp"
    bad.write_bytes(content)
    errors = []
    monkeypatch.setattr("napari.utils.notifications.show_error", errors.append)
    viewer = make_napari_viewer()
    viewer.window._qt_viewer._qt_open([str(bad)], stack=False)  # what dropping the file does
    assert len(viewer.layers) == 0 and len(errors) == 1
    assert "scan.lvp" in errors[0] and "not an lvpnet file" in errors[0]


def test_an_error_that_is_not_damage_fails_its_slice_not_the_loader(stack, monkeypatch):
    """Two files opened at once raced to build the learned codec's kernel; the loser's numba TypeError was
    not an LvpnetError and killed that file's decode thread: its layer stayed blank for good, unsaid. Such
    an error fails its slice (said, as damage is) and the thread decodes the others."""
    from napari_lvpnet._lazy import LazySlices, SliceLoader

    a, path = stack
    real = lvpnet.LvpFile.read_slice

    def flaky(self, i):
        if i == 2:
            raise TypeError("A jit decorator was called on an already jitted function")
        return real(self, i)

    monkeypatch.setattr(lvpnet.LvpFile, "read_slice", flaky)
    loader = SliceLoader(lvpnet.open(path), cache_bytes=10 * a[0].nbytes, prefetch=8)
    data = LazySlices(loader, -32768)
    data.view(2)
    deadline = time.time() + 10
    while time.time() < deadline and not all(loader.resolved(i) for i in range(8)):
        time.sleep(0.01)
    assert set(loader.failed) == {2} and "TypeError" in str(loader.failed[2]) and "slice 2" in str(loader.failed[2])
    np.testing.assert_array_equal(loader.get(5), a[5])
    loader.close()


def test_the_learned_kernels_build_once_whatever_threads_ask(tmp_path):
    """The race itself, in a fresh interpreter (the kernels are built once per process): eight threads
    build the head kernel at once."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import sys, threading
        sys.setswitchinterval(1e-6)
        from lvpnet.model import head_kernel
        from lvpnet.coding import refine
        from lvpnet.model import int8_trunk
        barrier, errors, got = threading.Barrier(8), [], []
        def build():
            barrier.wait()
            try:
                got.append((head_kernel._compile(), refine._kernels(), int8_trunk._kernels()))
            except Exception as e:
                errors.append(repr(e))
        threads = [threading.Thread(target=build) for _ in range(8)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert not errors, errors
        assert all(g == got[0] for g in got)
        print("ok")
    """)
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_a_costly_redraw_waits_longer_before_the_next(stack, monkeypatch):
    """A 3-D view redraws the whole volume at each partial refresh (3-9 s for 300 slices): refreshing every
    0.5 s while it filled froze the window for minutes. The next partial refresh waits four times as long
    as the last one took, and after one that took more than a quarter second only the complete volume is
    drawn; the complete one comes at once."""
    pytest.importorskip("qtpy")
    from napari_lvpnet._lazy import LayerFeed, LazySlices, SliceLoader

    a, path = stack
    loader = SliceLoader(lvpnet.open(path), cache_bytes=10 * a[0].nbytes, prefetch=0)
    data = LazySlices(loader, -32768)

    class Layer:
        refreshed = 0

        def refresh(self):
            time.sleep(0.3)
            self.refreshed += 1

    layer = Layer()
    feed = LayerFeed(layer, data, None)
    monkeypatch.setattr(feed, "_on_shown", lambda: None)
    data.last_request = tuple(range(8))  # the whole volume on screen, as in 3-D
    monkeypatch.setattr(loader, "resolved", lambda j: j < 2)
    feed._on_arrived(0)
    feed._on_arrived(1)  # 0.3 s later at most: within 4 x 0.3 s of the last redraw, none
    assert layer.refreshed == 1
    feed._last_refresh -= 10  # long after: still none, a redraw of this request froze the window once
    feed._on_arrived(1)
    assert layer.refreshed == 1
    monkeypatch.setattr(loader, "resolved", lambda j: True)
    loader.arrivals, loader.arrived_as = 8, {j: j + 1 for j in range(8)}
    feed._on_arrived(7)  # the last slice: redrawn at once
    assert layer.refreshed == 2
    # arrivals queued behind it (worker processes hand slices over in bursts) were each a redraw of the whole
    # volume again: 25 of 0.2 s froze the window for 5.6 s on an 80-slice volume already drawn whole
    feed._on_arrived(5)
    feed._on_arrived(6)
    assert layer.refreshed == 2
    loader.arrivals, loader.arrived_as[3] = 9, 9  # decoded again (evicted, then asked for): drawn again
    feed._on_arrived(3)
    assert layer.refreshed == 3
    loader.close()


def test_the_3d_view_reads_the_volume_with_worker_processes(make_napari_viewer, qtbot, tmp_path, rng, monkeypatch):
    """A 3-D view asks for the whole volume: it is read in runs by worker processes (one per free core, here
    LVPNET_WORKERS=2), exactly, and a damaged slice in it is failed and named while the others are shown."""
    from lvpnet import slice_pool

    a = smooth_image(rng, (10, 40, 32), 0, 3000, np.uint16)
    path = tmp_path / "mr.lvp"
    lvpnet.compress_to_file(a, path, codec="lvpnet")
    damaged = _flip_in_slice(path, 6, tmp_path / "damaged.lvp")
    monkeypatch.setenv(slice_pool.ENV, "2")
    asked = []
    real = slice_pool.ordered
    monkeypatch.setattr(slice_pool, "ordered", lambda fn, tasks, n, env=None: asked.append(n) or real(fn, tasks, n, env))
    viewer = make_napari_viewer()
    for p in (path, damaged):
        (image,) = viewer.open(str(p), plugin="napari-lvpnet")
        viewer.dims.ndisplay = 3
        loader = image.data.loader
        qtbot.waitUntil(lambda loader=loader: all(loader.resolved(i) for i in range(10)), timeout=120000)
        assert 2 in asked
        for i in range(10):
            if p == damaged and i == 6:
                assert loader.get(i) is None and "slice 6" in str(loader.failed[i])
            else:
                np.testing.assert_array_equal(loader.get(i), a[i])
        viewer.dims.ndisplay = 2
        asked.clear()
    assert set(loader.failed) == {6}


def test_the_3d_view_counts_its_slices_and_stops_when_the_layer_goes(make_napari_viewer, qtbot, stack, monkeypatch):
    """While a 3-D view fills, the status bar counts the slices and gives the time left; removing the layer
    (closing the viewer removes them all) stops the decoding and drops the cache: it went on for minutes."""
    a, path = stack
    real = lvpnet.LvpFile.read_slice
    monkeypatch.setattr(lvpnet.LvpFile, "read_slice", lambda self, i: time.sleep(0.3) or real(self, i))
    viewer = make_napari_viewer()
    statuses = []
    viewer.events.status.connect(lambda e: statuses.append(str(e.value)))
    (image,) = viewer.open(str(path), plugin="napari-lvpnet")
    loader = image.data.loader
    viewer.dims.ndisplay = 3
    qtbot.waitUntil(lambda: sum(loader.resolved(i) for i in range(8)) >= 5, timeout=20000)
    assert any(t.startswith("decoding ct.lvp: ") and " of 8 slices" in t for t in statuses)
    assert any(t.endswith(" left ...") for t in statuses)
    viewer.layers.remove(image)
    qtbot.wait(1000)  # the slice under way ends
    decoded = len(loader._cache)
    qtbot.wait(1500)
    assert len(loader._cache) == decoded <= 1 and loader._wanted == ()


def _counting_slow_reads(monkeypatch, seconds=0.05):
    calls = []
    real = lvpnet.LvpFile.read_slice

    def slow(self, i):
        calls.append(i)
        time.sleep(seconds)
        return real(self, i)

    monkeypatch.setattr(lvpnet.LvpFile, "read_slice", slow)
    return calls


def test_two_whole_volume_readers_decode_each_slice_once_and_a_2d_slice_waits_one_slice(tmp_path, rng, monkeypatch):
    """A Compress of a layer while its 3-D view fills read the volume twice over; and a run held the file's lock
    across its yields, so a 2-D slice (or Inspect) waited for the whole run."""
    from napari_lvpnet._lazy import SliceLoader

    a = smooth_image(rng, (40, 24, 20), 0, 3000, np.uint16)
    path = tmp_path / "v.lvp"
    lvpnet.compress_to_file(a, path, codec="fallback")
    calls = _counting_slow_reads(monkeypatch)
    loader = SliceLoader(lvpnet.open(path), cache_bytes=100 * a[0].nbytes)
    got = {}

    def whole(key):
        got[key] = [i for i, _ in loader.iter_read(range(40))]

    readers = [threading.Thread(target=whole, args=(k,)) for k in "ab"]
    for t in readers:
        t.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    np.testing.assert_array_equal(loader.read(30), a[30])  # a 2-D view's slice, far ahead of the runs
    waited = time.monotonic() - t0
    for t in readers:
        t.join(60)
    assert got == {"a": list(range(40)), "b": list(range(40))}
    assert len(calls) <= 40 + 2, len(calls)  # each slice once, give or take the slices in flight
    assert waited < 0.5, waited  # one slice's decode (0.05 s) and its own, not the rest of a run
    loader.close()


def test_an_error_that_is_no_slices_own_blames_no_slice(stack, monkeypatch):
    """A bad LVPNET_WORKERS (or workers that cannot run) failed the run at its first slice, and each retry blamed
    the next: 8 healthy slices kept as damaged. The 3-D view now reads them one at a time instead, and a whole
    read says the setting."""
    from lvpnet.errors import InputError
    from napari_lvpnet._lazy import SliceLoader

    a, path = stack
    monkeypatch.setenv("LVPNET_WORKERS", "four")
    loader = SliceLoader(lvpnet.open(path), workers=None)
    with pytest.raises(InputError, match="LVPNET_WORKERS=four"):
        list(loader.iter_read(range(8)))
    assert not loader.failed
    loader._wanted = tuple(range(8))
    loader._decode_volume(loader._wanted)
    assert not loader.failed and all(np.array_equal(loader.get(i), a[i]) for i in range(8))
    loader.close()
    closed = SliceLoader(lvpnet.open(path))
    closed.close()
    with pytest.raises(LvpnetError, match="closed"):  # np.asarray of a closed file: an error, not np.empty's bytes
        list(closed.iter_read(range(8)))


def test_indexing_a_lvp_layer_outside_napari_gives_the_exact_values(make_napari_viewer, qtbot, tmp_path, rng):
    """``layer.data[2:5]`` in a script gave placeholders for the slices not decoded yet: added as a layer and
    saved, a "lossless" file of zeros. Only napari's own slicing gets placeholders now; a script, the console
    and dask get the values, and a damaged slice raises."""
    a = smooth_image(rng, (12, 24, 20), 0, 3000, np.int16)
    path = tmp_path / "mr.lvp"
    lvpnet.compress_to_file(a, path, codec="fallback")
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path), plugin="napari-lvpnet")
    np.testing.assert_array_equal(layer.data[2:5], a[2:5])
    np.testing.assert_array_equal(layer.data[-1, 3:9, ::-2], a[-1, 3:9, ::-2])
    np.testing.assert_array_equal(layer.data[[7, 1, 7]], a[[7, 1, 7]])
    crop = viewer.add_image(layer.data[2:5], name="crop")
    viewer.layers.selection = {crop}
    viewer.layers.save(str(tmp_path / "crop.lvp"), selected=True, plugin="napari-lvpnet")
    np.testing.assert_array_equal(lvpnet.open(tmp_path / "crop.lvp").read_all(), a[2:5])
    (broken,) = viewer.open(str(_flip_in_slice(path, 9, tmp_path / "broken.lvp")), plugin="napari-lvpnet")
    with pytest.raises(LvpnetError, match="slice 9"):
        broken.data[8:11]
    _settle(qtbot, layer)  # napari's own drawing still never waits


def test_napari_operations_other_than_drawing_get_the_values(make_napari_viewer, qtbot, tmp_path, rng):
    """Only napari's slicing gets placeholders: its Split Stack took them for data (blank layers for good), its
    Duplicate Layer could not copy the lazy data (a lock), and a duplicate was never redrawn."""
    from napari.layers.utils.stack_utils import split_channels

    a = smooth_image(rng, (6, 24, 20), 0, 3000, np.int16)
    path = tmp_path / "mr.lvp"
    lvpnet.compress_to_file(a, path, codec="fallback")
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path), plugin="napari-lvpnet")
    for k, (data, _, _) in enumerate(split_channels(layer.data, 0)):
        np.testing.assert_array_equal(np.asarray(data), a[k])
    from napari.layers._layer_actions import _duplicate_layer  # what the layer list's "Duplicate Layer" runs

    viewer.layers.selection = {layer}
    _duplicate_layer(viewer.layers)
    copy = viewer.layers[-1]
    assert copy is not layer and copy.data is layer.data
    viewer.layers.remove(layer)  # the duplicate still shows the file: it goes on decoding and is redrawn
    viewer.dims.set_current_step(0, 4)
    qtbot.waitUntil(lambda: np.array_equal(np.asarray(copy._slice.image.raw), a[4]), timeout=10000)


def test_a_layer_moved_to_another_viewer_decodes_there(make_napari_viewer, qtbot, stack):
    a, path = stack
    first, second = make_napari_viewer(), make_napari_viewer()
    (layer,) = first.open(str(path), plugin="napari-lvpnet")
    first.layers.remove(layer)
    second.add_layer(layer)
    second.dims.set_current_step(0, 5)
    qtbot.waitUntil(lambda: np.array_equal(np.asarray(layer._slice.image.raw), a[5]), timeout=10000)


def test_a_closed_loader_stops_within_the_slice_under_way(stack, monkeypatch):
    """Closing the viewer mid-decode waited for the run of slices under way (3-4 s more before napari exited):
    the loader's thread now stops at the learned walk's next step, quietly."""
    from lvpnet.progress import tick
    from napari_lvpnet._lazy import SliceLoader

    a, path = stack
    real = lvpnet.LvpFile.read_slice

    def slow(self, i):  # a long learned slice: it ticks at each step
        for k in range(100):
            time.sleep(0.05)
            tick(k / 100)
        return real(self, i)

    monkeypatch.setattr(lvpnet.LvpFile, "read_slice", slow)
    errors = []
    monkeypatch.setattr(threading, "excepthook", lambda args: errors.append(args.exc_value))
    loader = SliceLoader(lvpnet.open(path))
    loader.want([3])
    time.sleep(0.3)
    t0 = time.monotonic()
    loader.close()
    loader._thread.join(3)
    assert not loader._thread.is_alive() and time.monotonic() - t0 < 1.0 and not errors


def test_slices_that_need_a_damaged_one_are_said_as_such_and_notified_once(make_napari_viewer, qtbot, tmp_path, rng,
                                                                            monkeypatch):
    """A learned slice coded against the one before it cannot be decoded when that one is damaged, and the
    file's error names the damaged slice: on such a slice the canvas said the damaged slice's line as if it
    were the one shown, the status bar called the slice itself damaged, and each step through the run raised
    the same notification again."""
    vol = smooth_image(rng, (7, 40, 33), 0, 3000, np.uint16)  # opened on slice 3
    vol[3] = vol[4] = vol[2]  # the learned codec codes slices 3 and 4 against the one before them
    path = tmp_path / "run.lvp"
    lvpnet.compress_to_file(vol, path, codec="lvpnet")
    assert [lvpnet.open(path).needs_previous(i) for i in (3, 4)] == [True, True]
    damaged = _flip_in_slice(path, 2, tmp_path / "run_dmg.lvp")
    errors = []
    monkeypatch.setattr("napari.utils.notifications.show_error", errors.append)
    viewer = make_napari_viewer()
    (image,) = viewer.open(str(damaged), plugin="napari-lvpnet")
    said = {}
    for step in (3, 4, 2, 1):
        viewer.dims.set_current_step(0, step)
        _settle(qtbot, image, ms=20000)
        said[step] = viewer.canvas.overlays.text.text.replace("\n", " ") if viewer.canvas.overlays.text.visible else ""
    assert said[3].startswith("Slice 3 cannot be shown: it needs slice 2, which is damaged: checksum mismatch "
                              "(run_dmg.lvp)"), said[3]
    assert said[4].startswith("Slice 4 cannot be shown: it needs slice 2"), said[4]
    assert said[2].startswith("Slice 2 is damaged: checksum mismatch (run_dmg.lvp)"), said[2]
    assert said[1] == ""
    assert len(errors) == 1 and errors[0].splitlines()[0].startswith("Slice 3 cannot be shown: it needs slice 2")
    status = image.get_status((3, 5, 6))["coordinates"]
    assert status.endswith(": slice 3: no value (it needs slice 2, which is damaged)"), status
    assert image.get_status((2, 5, 6))["coordinates"].endswith(": slice 2 is damaged: no value")
    # a 3-D view: the damaged slice named, the ones that need it counted
    viewer.dims.ndisplay = 3
    qtbot.waitUntil(lambda: all(image.data.loader.resolved(i) for i in range(7)), timeout=20000)
    image.data.feed.update_canvas_text()
    text = viewer.canvas.overlays.text.text.replace("\n", " ")
    assert text.startswith("Slice 2 is damaged: checksum mismatch (run_dmg.lvp)"), text
    assert text.endswith("shown blank; blank too: 2 slices that need it"), text
    assert len(errors) == 1


@pytest.mark.parametrize("lanes", ["1", "4"])
def test_a_damaged_chunk_read_ahead_is_its_own_slices_not_the_one_waited_for(tmp_path, rng, monkeypatch, lanes):
    """Chains decoded in lanes (a GPU's default) read chunks ahead, so slice 2's damage was raised while slice 0
    was waited for: intact slices 0 and 1 were kept as failed ("Slice 0 cannot be shown: it needs slice 2").
    The damage is slice 2's; 0, 1, 5 and 6 decode; 3 and 4, coded against the slice before them, need it."""
    from napari_lvpnet._lazy import SliceLoader
    from napari_lvpnet._messages import blocked_by

    vol = smooth_image(rng, (7, 40, 33), 0, 3000, np.uint16)
    vol[3] = vol[4] = vol[2]
    path = tmp_path / "run.lvp"
    lvpnet.compress_to_file(vol, path, codec="lvpnet")
    damaged = _flip_in_slice(path, 2, tmp_path / "run_dmg.lvp")
    monkeypatch.setenv("LVPNET_LANES", lanes)
    loader = SliceLoader(lvpnet.open(damaged), workers=1)
    try:
        loader._wanted = tuple(range(7))
        loader._decode_volume(tuple(range(7)))
        assert sorted(loader.failed) == [2, 3, 4] and sorted(loader._cache) == [0, 1, 5, 6]
        assert [blocked_by(loader.failed[i], loader.lvp.name, i) for i in (2, 3, 4)] == [None, 2, 2]
        for i in (0, 1, 5, 6):
            np.testing.assert_array_equal(loader.get(i), vol[i])
    finally:
        loader.close()
