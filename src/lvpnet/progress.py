"""Progress reports of long work.

Long work in lvpnet is a generator that yields ``Progress`` and returns its
result (``StopIteration.value``): the CLI draws a bar from it, the napari
plugin feeds a ``thread_worker`` with it, tests drain it with ``run``.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    stage: str  # "encode", "verify", "decode"
    done: int
    total: int


def run(job: Generator[Progress, None, T], on_progress: Callable[[Progress], None] | None = None) -> T:
    """Drive a progress generator to the end and return its result.

    Whatever stops the drive early (Ctrl-C or SIGTERM while ``on_progress`` draws) closes ``job``
    here, so its cleanup (removing a temporary file) runs now, not whenever it is collected. A
    termination signal whose exception was swallowed stops it at the next slice (``atomic.caught_signal``)."""
    from .atomic import Interrupted, caught_signal

    try:
        while True:
            signum = caught_signal()
            if signum is not None:
                raise Interrupted(signum)
            try:
                p = next(job)
            except StopIteration as stop:
                return stop.value
            if on_progress is not None:
                on_progress(p)
    finally:
        job.close()


def cancellable(job: Generator[Progress, None, T], cancel) -> Generator[Progress, None, T | None]:
    """Pass ``job``'s progress through; stop it at the next slice once ``cancel.is_set()``.

    ``cancel`` is a ``threading.Event`` (or anything with ``is_set``). Stopping
    closes ``job`` in the thread that runs it, so its cleanup (removing a
    temporary file) is done before this generator returns None.
    """
    try:
        while not cancel.is_set():
            try:
                p = next(job)
            except StopIteration as stop:
                return stop.value
            yield p
        return None
    finally:
        job.close()
