"""Long work of a dock widget in a napari thread_worker, wired to its controls.

The widget provides ``run_button``, ``cancel_button``, ``progress``, ``summary``,
a ``JobControl`` ``_cancel`` and ``_on_done(result)``. The job is a core
progress generator taking the cancel event as its last argument; it returns
None when cancelled (the core checks the event between slices and, through
``lvpnet.progress.watching``, at each step of the learned codec within one, so
a 30-second mammogram stops within about a second; the same ticks move the bar).
"""

from __future__ import annotations

import functools
import inspect
import os
import threading
import time

from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error
from qtpy.QtWidgets import QApplication

from lvpnet.progress import Progress
from lvpnet.terminal import time_left

_CLOSE_WAIT_S = 120  # at most one slice of a learned encode on a slow CPU
_PART_MS = 200  # how often the bar shows how far the current slice is


class JobControl(threading.Event):
    """A job's cancel event that also hears how far its current slice is (``note_part``, from the job's
    thread; the dock reads ``part`` on a timer in the main thread)."""

    def __init__(self):
        super().__init__()
        self.part = 0.0

    def note_part(self, fraction: float | None) -> None:
        if fraction is not None:  # None: a slice coded ahead of its turn (``progress.unplaced``)
            self.part = fraction


def reason_first(message: str) -> str:
    """'/a/long/path/x.lvp: slice 5: checksum mismatch' as 'slice 5: checksum mismatch (x.lvp)': napari's
    notification shows one line cut to its width, where a long path left no room for the reason."""
    where, sep, reason = message.partition(": ")
    if not sep or "/" not in where and "\\" not in where:
        return message
    name = os.path.basename(where.rstrip("/\\")) or where
    return f"{reason} ({name})"


def wrap_text(*labels) -> None:
    """Long lines (a summary, an error) wrap instead of widening the dock over the canvas."""
    for label in labels:
        label.native.setWordWrap(True)


def full_width(*widgets) -> None:
    """Text without a label of its own (a summary, a legend) across the whole dock once it is in its
    container: the empty label column left it in a narrow column, wrapped at every few words."""
    from qtpy.QtWidgets import QSizePolicy

    for widget in widgets:
        row = widget._labeled_widget() if getattr(widget, "_labeled_widget_ref", None) else None
        if row is not None:
            row._label_widget.native.hide()
        widget.native.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)


def progress_text(p: Progress, started: float | None, done_at_start: int, now: float, part: float = 0.0,
                  then: dict | None = None) -> str:
    """'encode: slice 3 of 12, 0:25 left': slices done (the time left from the second slice of a stage on,
    timed from the end of its first, which also loaded the weights; ``started`` None before that). With
    ``part`` of the next slice under way: 'encode: slice 4 of 12 at 35%, 0:25 left' ("slice 0 of 8 (90% of
    slice 1)" read as a contradiction). ``then``: stage -> the stage after it, said while it runs ("then
    verify": the time left is the stage's)."""
    if part > 0.0 and p.done < p.total:
        text = f"{p.stage}: slice {p.done + 1} of {p.total} at {int(100 * part)}%" if p.total > 1 else \
            f"{p.stage} at {int(100 * part)}%"
    else:
        text = f"{p.stage}: slice {p.done} of {p.total}" if p.total > 1 and p.done else p.stage
    done = p.done - done_at_start
    if started is not None and done >= 1 and p.done >= 2 and p.done < p.total:
        text += time_left((now - started) / done * (p.total - p.done))
    later = (then or {}).get(p.stage)
    return f"{text}, then {later}" if later and p.done < p.total else text


def quietly_if_closed(method):
    """A worker's signal may arrive after the viewer closed and Qt deleted the dock's widgets
    ("wrapped C/C++ object ... has been deleted"): nothing is left to update then."""
    @functools.wraps(method)
    def guarded(self, *args):
        try:
            return method(self, *args)
        except RuntimeError as e:
            if "has been deleted" not in str(e):
                raise
    return guarded


class BackgroundJobMixin:
    job_title = "Job"
    then: dict = {}  # stage -> the stage after it (``progress_text``), set by the dock for its run
    _ended: threading.Event | None = None  # set when the running job's generator has finished

    def _run_in_background(self, job, *args) -> None:
        self._cancel.clear()
        self._cancel.part = 0.0
        self._stage, self._last = None, None
        self.progress.value, self.progress.visible = 0, True
        self.progress.native.setFormat("starting ...")
        if self.progress.max <= 1:  # one slice: until its steps tick (a learned codec's), show it is busy
            self.progress.native.setRange(0, 0)
        self._start_part_timer()
        self.run_button.enabled, self.cancel_button.enabled = False, True
        if self._ended is None:  # the viewer closing (or the app quitting) stops the job, as Cancel does
            self.native.destroyed.connect(self._stop_for_close)
            QApplication.instance().aboutToQuit.connect(self._stop_for_close)
        ended = self._ended = threading.Event()

        def run(*a):
            try:
                return (yield from job(*a))
            finally:
                ended.set()

        # ignore_errors: errors go to _on_error (a notification), not re-raised in the Qt event loop
        worker = thread_worker(run, start_thread=False, ignore_errors=True)(*args, self._cancel)
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(self._on_done)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        worker.start()

    def _stop_for_close(self, *_) -> None:
        """Cancel a running job and wait for it to stop (within a slice): its temporary file is removed
        by the job itself, which a thread killed with the process would have left behind."""
        ended = self._ended
        if ended is None or ended.is_set():
            return
        self._cancel.set()
        deadline = time.monotonic() + _CLOSE_WAIT_S
        while not ended.wait(0.05) and time.monotonic() < deadline:
            gen = getattr(self.worker, "_gen", None)
            # the worker's loop stops at the first progress it can no longer signal (its QObject deleted with
            # the window), leaving the job suspended between two slices: closed here, so its cleanup runs
            if (gen is not None and not self.worker.is_running
                    and inspect.getgeneratorstate(gen) == inspect.GEN_SUSPENDED):
                gen.close()

    def cancel(self, *_) -> None:
        self._cancel.set()
        self.cancel_button.enabled = False  # pressed once is enough: the job stops at its next step
        self.summary.value = "cancelling ..."

    def _start_part_timer(self) -> None:
        from qtpy.QtCore import QTimer

        if getattr(self, "_part_timer", None) is None:
            self._part_timer = QTimer(self.native)  # deleted with the dock, never after the application
            self._part_timer.setInterval(_PART_MS)
            self._part_timer.timeout.connect(self._show_part)
        self._part_timer.start()

    @quietly_if_closed
    def _show_part(self) -> None:
        """The bar at the slices done plus the share of the one under way (in hundredths of a slice)."""
        p, part = self._last, self._cancel.part
        if p is None or part <= 0.0 or p.done >= p.total:
            return
        self.progress.native.setRange(0, 100 * max(p.total, 1))
        self.progress.native.setValue(int(100 * (p.done + part)))
        self.progress.native.setFormat(progress_text(p, *self._stage_start, time.perf_counter(), part, self.then))

    @quietly_if_closed
    def _on_progress(self, p: Progress) -> None:
        now = time.perf_counter()
        if p.stage != self._stage:  # each stage (encode, verify, ...) has its own pace
            self._stage, self._stage_start = p.stage, (None, 0)
        if self._stage_start[0] is None and p.done >= 1:  # timed from the end of the first slice
            self._stage_start = (now, p.done)
        self._last, self._cancel.part = p, 0.0
        if p.done == 0 and p.total <= 1:  # one slice about to start: busy until its steps tick (a codec
            self.progress.native.setRange(0, 0)  # without ticks, the fallback, never does)
        else:
            self.progress.native.setRange(0, 100 * max(p.total, 1))  # in hundredths of a slice (``_show_part``)
            self.progress.native.setValue(100 * p.done)
        self.progress.native.setFormat(progress_text(p, *self._stage_start, now, then=self.then))

    @quietly_if_closed
    def _on_error(self, exc) -> None:
        self.summary.value = f"failed: {exc}"
        show_error(f"{self.job_title} failed: {reason_first(str(exc))}")

    @quietly_if_closed
    def _on_finished(self) -> None:
        if getattr(self, "_part_timer", None) is not None:
            self._part_timer.stop()
        self.run_button.enabled, self.cancel_button.enabled = True, False
        self.progress.visible = False
