"""Long work of a dock widget in a napari thread_worker, wired to its controls.

The widget provides ``run_button``, ``cancel_button``, ``progress``, ``summary``,
a ``threading.Event`` ``_cancel`` and ``_on_done(result)``. The job is a core
progress generator taking the cancel event as its last argument; it returns
None when cancelled.
"""

from __future__ import annotations

from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error

from lvpnet.progress import Progress


class BackgroundJobMixin:
    job_title = "Job"

    def _run_in_background(self, job, *args) -> None:
        self._cancel.clear()
        self.progress.value, self.progress.visible = 0, True
        self.run_button.enabled, self.cancel_button.enabled = False, True
        # ignore_errors: errors go to _on_error (a notification), not re-raised in the Qt event loop
        worker = thread_worker(job, start_thread=False, ignore_errors=True)(*args, self._cancel)
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(self._on_done)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        worker.start()

    def cancel(self, *_) -> None:
        self._cancel.set()
        self.summary.value = "cancelling ..."

    def _on_progress(self, p: Progress) -> None:
        self.progress.label = p.stage
        self.progress.max = max(p.total, 1)
        self.progress.value = p.done

    def _on_error(self, exc) -> None:
        self.summary.value = f"failed: {exc}"
        show_error(f"{self.job_title} failed: {exc}")

    def _on_finished(self) -> None:
        self.run_button.enabled, self.cancel_button.enabled = True, False
        self.progress.visible = False
