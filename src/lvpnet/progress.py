"""Progress reports of long work.

Long work in lvpnet is a generator that yields ``Progress`` and returns its
result (``StopIteration.value``): the CLI draws a bar from it, the napari
plugin feeds a ``thread_worker`` with it, tests drain it with ``run``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    stage: str  # "encode", "verify", "decode"
    done: int
    total: int


# ---------------------------------------------------------------- within one slice

_here = threading.local()  # the handler of this thread's ticks (``within_slice``)


class Cancelled(BaseException):
    """Raised by a tick once the job's cancel event is set (``cancellable``): a BaseException, so that
    no ``except Exception`` on the way out takes it for the slice's failure."""


@contextmanager
def within_slice(handler: Callable[[float | None], None]):
    """Inside, long work on one slice calls ``handler(fraction)`` as it goes (``tick``): the learned
    codec's walk at each sub-image step (``None``: work whose place is unknown, ``unplaced``). A
    13-megapixel mammogram is 30 s of one slice: without this neither a bar nor a Cancel button moved
    until it was done."""
    before = getattr(_here, "handler", None)
    _here.handler = handler
    try:
        yield
    finally:
        _here.handler = before


def also(handler: Callable[[float | None], None]):
    """Inside, each tick calls ``handler`` too, before the handler already listening (a job's Cancel keeps
    working where a reader adds its own stop)."""
    before = getattr(_here, "handler", None)

    def both(fraction: float | None) -> None:
        handler(fraction)
        if before is not None:
            before(fraction)

    return within_slice(both)


def unplaced():
    """Inside, ticks say nothing of where the work is, but may still stop it (a cancelled job raises):
    for a slice coded ahead of its turn (``slice_pool.ordered``: this process takes the next task while
    a worker holds the one in order), whose share is not that of the slice a bar shows next. Its
    handler hears ``None`` instead of a fraction."""
    before = getattr(_here, "handler", None)
    return nullcontext() if before is None else within_slice(lambda fraction: before(None))


def span(lo: float, hi: float):
    """Inside, ticks fill ``lo`` to ``hi`` of the slice's share (work in parts, each ticking 0 to 1 on its
    own: Inspect decodes a ``.lvp`` slice, then analyses it, and its bar went back to 0 in between)."""
    before = getattr(_here, "handler", None)
    if before is None:
        return nullcontext()
    return within_slice(lambda fraction: before(None if fraction is None else lo + (hi - lo) * fraction))


def tick(fraction: float) -> None:
    """How far this thread's work on its current slice is (0 to 1); where a handler raises (a
    cancelled job), the work stops here. Nothing when no one listens."""
    handler = getattr(_here, "handler", None)
    if handler is not None:
        handler(min(max(float(fraction), 0.0), 1.0))


def watching(cancel):
    """``within_slice`` for a job that ``cancel`` (anything with ``is_set``) may stop: a tick raises
    ``Cancelled`` once it is set, and otherwise tells ``cancel.note_part(fraction)`` where it has one."""
    note = getattr(cancel, "note_part", None)

    def inside(fraction: float | None) -> None:
        if cancel.is_set():
            raise Cancelled
        if note is not None and fraction is not None:
            note(fraction)

    return within_slice(inside)


def part_ticker(planes: int = 1, plane: int = 0):
    """``tick`` of plane ``plane`` of ``planes`` (an RGB slice's three), its own fraction mapped into
    the slice's."""
    return lambda fraction: tick((plane + min(max(fraction, 0.0), 1.0)) / planes)


def run(job: Generator[Progress, None, T], on_progress: Callable[[Progress], None] | None = None) -> T:
    """Drive a progress generator to the end and return its result.

    Whatever stops the drive early (Ctrl-C or SIGTERM while ``on_progress`` draws) closes ``job``
    here, so its cleanup (removing a temporary file) runs now, not whenever it is collected. A
    termination signal whose exception was swallowed stops it at the next slice (``atomic.caught_signal``).
    An ``on_progress`` with a ``part(fraction)`` method hears the ticks within a slice too (``tick``)."""
    from .atomic import Interrupted, caught_signal

    part = getattr(on_progress, "part", None)
    try:
        while True:
            signum = caught_signal()
            if signum is not None:
                raise Interrupted(signum)
            try:
                if part is None:
                    p = next(job)
                else:
                    with within_slice(part):
                        p = next(job)
            except StopIteration as stop:
                return stop.value
            if on_progress is not None:
                on_progress(p)
    finally:
        job.close()


def cancellable(job: Generator[Progress, None, T], cancel) -> Generator[Progress, None, T | None]:
    """Pass ``job``'s progress through; stop it once ``cancel.is_set()``: at the next slice, or inside
    one at its next ``tick`` (a large image's learned encode, step by step).

    ``cancel`` is a ``threading.Event`` (or anything with ``is_set``); where it has a ``note_part``
    method, that hears each tick's fraction of the current slice. Stopping closes ``job`` in the
    thread that runs it, so its cleanup (removing a temporary file) is done before this generator
    returns None.
    """
    try:
        while not cancel.is_set():
            try:
                with watching(cancel):  # only while the job runs: not while this generator is suspended
                    p = next(job)
            except StopIteration as stop:
                return stop.value
            except Cancelled:  # raised through the job, whose own cleanup has run on the way out
                return None
            yield p
        return None
    finally:
        job.close()
