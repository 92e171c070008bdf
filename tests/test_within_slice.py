"""Progress and Cancel within one slice: a large image is one slice of many seconds of the learned
codec, during which the bars stood still and Cancel waited for the slice to end (``progress.tick``)."""

import io
import threading

import numpy as np
import pytest
from conftest import smooth_image

import lvpnet
from lvpnet.compressor import iter_compress_to_file
from lvpnet.progress import Progress, cancellable, run, within_slice


class _Control(threading.Event):
    """A cancel event that hears each tick, and is set at the ``stop_at``-th (None: never)."""

    def __init__(self, stop_at=None):
        super().__init__()
        self.parts, self.stop_at = [], stop_at

    def note_part(self, fraction):
        self.parts.append(fraction)
        if self.stop_at is not None and len(self.parts) >= self.stop_at:
            self.set()


def test_a_single_slice_encode_ticks_its_steps_and_cancel_stops_within_it(tmp_path, rng):
    image = smooth_image(rng, (300, 280), 0, 4000, np.uint16)
    whole = _Control()
    out = tmp_path / "a.lvp"
    assert run(cancellable(iter_compress_to_file(lvpnet.Volume(array=image), out, "lvpnet"), whole)) is not None
    encode = whole.parts[: next(i for i in range(1, len(whole.parts)) if whole.parts[i] < whole.parts[i - 1])]
    assert len(encode) >= 15 and encode == sorted(encode) and encode[-1] >= 0.9  # the encode's steps, in order
    assert max(whole.parts) <= 1.0
    stopped = _Control(stop_at=3)  # Cancel pressed at the encode's third tick
    out2 = tmp_path / "b.lvp"
    assert run(cancellable(iter_compress_to_file(lvpnet.Volume(array=image), out2, "lvpnet"), stopped)) is None
    assert len(stopped.parts) == 3  # it stopped at the next tick, not at the end of the slice
    assert list(tmp_path.iterdir()) == [out]  # nothing written, no temporary file left


def test_an_rgb_slice_ticks_through_its_three_planes(tmp_path, rng):
    image = np.stack([smooth_image(rng, (64, 60), 0, 250, np.uint8)] * 3, -1)
    image[..., 0] //= 2
    seen = _Control()
    run(cancellable(iter_compress_to_file(lvpnet.Volume(array=image, rgb=True), tmp_path / "c.lvp", "lvpnet",
                                          verify=False), seen))
    assert seen.parts == sorted(seen.parts) and seen.parts[-1] >= 0.9
    assert any(p < 1 / 3 for p in seen.parts) and any(1 / 3 < p < 2 / 3 for p in seen.parts)


def test_inspect_cancel_lands_within_the_slice(tiny_model_path, rng):
    from napari_lvpnet import _inspect_widget as iw

    stop = _Control(stop_at=2)
    image = smooth_image(rng, (200, 180), 0, 4000, np.uint16)
    assert run(iw._inspect_job(image, False, None, [0], tiny_model_path, False, 1, stop)) is None
    assert len(stop.parts) == 2


def test_the_terminal_bar_draws_the_slice_under_way():
    from lvpnet.cli import ProgressBar

    out = io.StringIO()
    bar = ProgressBar(enabled=True, stream=out)
    bar.part(0.5)  # before any progress: nothing to say it of
    assert out.getvalue() == ""
    bar(Progress("encode", 0, 1))
    bar.part(0.43)
    line = out.getvalue().rsplit("\r", 1)[-1]
    assert "0/1 slices (slice 1: 40%)" in line and "[############" in line
    bar(Progress("encode", 1, 1))
    bar.part(0.9)  # after the last slice: no part left to draw
    assert out.getvalue().rsplit("\r", 1)[-1].startswith(" encode [####")
    assert "slice 1:" not in out.getvalue().rsplit("\r", 1)[-1]


def test_the_terminal_times_a_stage_from_the_end_of_its_first_slice():
    """The first slice also loads the weights: the time left counts from its end, as before the stage's
    progress began at slice 0."""
    from lvpnet.cli import ProgressBar

    out, now = io.StringIO(), [0.0]
    bar = ProgressBar(enabled=True, stream=out, clock=lambda: now[0])
    for t, done in ((0.0, 0), (10.0, 1), (11.0, 2)):
        now[0] = t
        bar(Progress("encode", done, 4))
    assert out.getvalue().rsplit("\r", 1)[-1].strip().endswith("2/4 slices, 0:02 left")


def test_a_single_slice_shows_busy_until_its_steps_tick(make_napari_viewer):
    """'encode 0 of 1' set a fixed 0% bar where the dock showed it was busy; the fallback codec never ticks."""
    import pytest

    pytest.importorskip("napari")
    viewer = make_napari_viewer()
    _, w = viewer.window.add_plugin_dock_widget("napari-lvpnet", "Compress")
    w._stage = None
    w._on_progress(Progress("encode", 0, 1))
    assert w.progress.native.maximum() == 0  # busy
    w._cancel.part = 0.4
    w._show_part()
    assert (w.progress.native.maximum(), w.progress.native.value()) == (100, 40)
    assert w.progress.native.format() == "encode at 40%"
    w._on_progress(Progress("encode", 2, 8))
    w._cancel.part = 0.35
    w._show_part()
    assert w.progress.native.format().startswith("encode: slice 3 of 8 at 35%")


def test_the_bars_say_a_stage_comes_after_and_keep_the_time_left_within_a_slice():
    """The encode's "0:04 left" ended a minute before the run did (the verify came after, unsaid); and the
    time left went away while a slice's share was drawn."""
    from lvpnet.cli import ProgressBar
    from napari_lvpnet._background import progress_text

    out, now = io.StringIO(), [0.0]
    bar = ProgressBar(enabled=True, stream=out, clock=lambda: now[0], then={"encode": "verify"})
    for t, done in ((0.0, 0), (10.0, 1), (11.0, 2)):
        now[0] = t
        bar(Progress("encode", done, 4))
    assert out.getvalue().rsplit("\r", 1)[-1].strip().endswith("2/4 slices, 0:02 left, then verify")
    bar.part(0.5)
    assert out.getvalue().rsplit("\r", 1)[-1].strip().endswith("(slice 3: 50%), 0:02 left, then verify")
    bar(Progress("verify", 1, 4))
    assert out.getvalue().rsplit("\r", 1)[-1].strip().endswith("1/4 slices")  # nothing after the verify
    bar(Progress("encode", 4, 4))
    assert "then" not in out.getvalue().rsplit("\r", 1)[-1]  # done
    assert progress_text(Progress("encode", 2, 4), 10.0, 1, 11.0, then={"encode": "verify"}) == \
        "encode: slice 2 of 4, 0:02 left, then verify"
    assert progress_text(Progress("verify", 2, 4), 10.0, 1, 11.0, then={"encode": "verify"}) == \
        "verify: slice 2 of 4, 0:02 left"
    # results in a burst (worker processes): never "0:00 left" with slices to go
    assert progress_text(Progress("inspect", 8, 24), 10.0, 2, 10.05) == "inspect: slice 8 of 24"


def test_a_slice_coded_ahead_of_its_turn_ticks_for_cancel_only():
    """With workers, this process codes the next task while a worker holds the one in order: its share is not
    the next slice's (the bar cycled 0-100% eight times on one slice number), but Cancel still stops it."""
    from lvpnet.progress import Cancelled, tick, unplaced, watching

    heard = []
    with within_slice(heard.append):
        tick(0.25)
        with unplaced():
            tick(0.5)
        tick(0.75)
    assert heard == [0.25, None, 0.75]

    class Control(threading.Event):
        part = 0.0

        def note_part(self, fraction):
            self.part = fraction

    control = Control()
    with watching(control):
        tick(0.3)
        with unplaced():
            tick(0.6)  # the bar keeps the share of the slice in order
        assert control.part == 0.3
        control.set()
        with unplaced(), pytest.raises(Cancelled):
            tick(0.9)
    out = io.StringIO()
    from lvpnet.cli import ProgressBar

    bar = ProgressBar(enabled=True, stream=out)
    bar(Progress("verify", 3, 9))
    drawn = out.getvalue()
    bar.part(None)
    assert out.getvalue() == drawn


def test_a_second_listener_keeps_the_first():
    """A reader's own stop (the napari loader's, when its file closes) is added to a job's Cancel, not put in
    its place: the Compress dock's Cancel went deaf while it decoded a .lvp layer's slices."""
    from lvpnet.progress import also, tick

    heard = []
    with within_slice(lambda f: heard.append(("job", f))):
        with also(lambda f: heard.append(("reader", f))):
            tick(0.5)
        tick(0.7)
    assert heard == [("reader", 0.5), ("job", 0.5), ("job", 0.7)]


def test_a_run_of_slices_inspected_in_one_pass_ticks_no_share(tiny_model_path, rng):
    """Inspect's worker path hands this process runs of several slices, counted when a run ends: each slice's
    ticks (0 to 100%, one after the other) were shown as the share of the next slice, and the bar slid back
    every second ('slice 1 of 80 at 85%', then 'at 6%'). They are unplaced now; one slice still ticks."""
    from lvpnet import analysis

    model = analysis.load_model(tiny_model_path)
    image = smooth_image(rng, (3, 64, 60), 0, 4000, np.uint16)
    heard = []
    with within_slice(heard.append):
        part, skipped = analysis._analyse_run(None, [0, 1, 2], model, image, False, None, False)
    assert part is not None and not skipped and heard and all(h is None for h in heard)
    heard.clear()
    with within_slice(heard.append):
        analysis._analyse_run(None, [1], model, image, False, None, False)
    assert heard and all(h is not None for h in heard)


def test_a_run_of_slices_decoded_in_one_task_ticks_no_share(tmp_path, rng):
    """verify with worker processes: this process decodes runs of slices too, counted when a run ends, and its
    slices' ticks were shown as the next slice's share ('slice 1' at 20, 60, 100, 30, 70%)."""
    from lvpnet import limits
    from lvpnet.lvpfile import decode_run
    from lvpnet.progress import run as drive

    a = np.stack([smooth_image(rng, (48, 40), 0, 4000, np.uint16) for _ in range(3)])
    path = tmp_path / "v.lvp"
    drive(iter_compress_to_file(lvpnet.Volume(array=a), path, "lvpnet", verify=False))
    f = lvpnet.open(path)
    heard = []
    with within_slice(heard.append):
        out, error = decode_run(str(path), f.name, f.header.get("array_hash"), limits.state(None), 0, 3)
    assert error is None and len(out) == 3 and heard and all(h is None for h in heard)
    heard.clear()
    with within_slice(heard.append):
        decode_run(str(path), f.name, f.header.get("array_hash"), limits.state(None), 1, 2)
    assert heard and all(h is not None for h in heard)
