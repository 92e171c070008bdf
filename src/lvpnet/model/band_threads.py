"""A large plane's bands of rows shared among threads, inside one step of the int8 walk.

Why: a volume's slices go to worker processes (``slice_pool``), but a single large image (a
2272 x 1848 radiograph, a mammogram) is one plane, walked step by step on one core. Its steps'
work is mostly bands of rows that do not depend on each other: the 3x3 layers' unfold and int8
product (``int8_trunk._Layer.hidden``), the context conv (``int8_trunk.ContextSums``) and the
fused head (``head_kernel.banded_params``). Those run in numba kernels and torch ops that release
the GIL, so threads of one process can share a step's bands; every band's integers are the same
whoever computes them.

How many: the walk's caller decides (``allowed``, set by ``IntegerDecoder.walk_threads`` to the
torch thread count the caller had: ``OMP_NUM_THREADS=1``, a ``slice_pool`` worker and a process
coding a volume with workers all give 1). Planes below ``MIN_PIXELS`` stay on the calling thread:
a 512 x 512 slice's 128 x 128 steps are too short to share. The helpers are one pool per process,
each on one torch thread; bands are handed out one at a time as threads free up, so a busy core
takes fewer.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable

MIN_PIXELS = 1 << 16  # a step's plane (its sub-image) from which its bands are shared

_LOCAL = threading.local()
_POOL = None
_LOCK = threading.Lock()


@contextlib.contextmanager
def allowed(n: int):
    """Up to ``n`` threads (this one included) for the bands of this thread's steps, inside the block."""
    old = getattr(_LOCAL, "n", 1)
    _LOCAL.n = max(1, int(n))
    try:
        yield
    finally:
        _LOCAL.n = old


def threads(pixels: int) -> int:
    """How many threads share the bands of a plane of ``pixels`` in this thread now."""
    n = getattr(_LOCAL, "n", 1)
    return n if n > 1 and pixels >= MIN_PIXELS else 1


def _helpers():
    global _POOL
    with _LOCK:
        if _POOL is None:
            from concurrent.futures import ThreadPoolExecutor

            def one_torch_thread():
                import torch

                torch.set_num_threads(1)

            try:  # as ``slice_pool.cores``, which model/ does not import (the GPU run stages model/ alone)
                cores = len(os.sched_getaffinity(0))
            except AttributeError:  # not Linux
                cores = os.cpu_count() or 1
            _POOL = ThreadPoolExecutor(max(1, cores - 1), thread_name_prefix="lvpnet-bands",
                                       initializer=one_torch_thread)
        return _POOL


def run(worker: Callable[[], Callable[[int], None]], starts: Iterable[int], pixels: int) -> None:
    """``worker()`` gives a function that does one band (its first row ``y0``) with its own buffers;
    every start in ``starts`` is done once, by this thread and up to ``threads(pixels) - 1`` helpers,
    and ``run`` returns when all are (an error is raised after every thread has stopped)."""
    starts = list(starts)
    n = min(threads(pixels), len(starts))
    if n <= 1:
        one = worker()
        for y0 in starts:
            one(y0)
        return
    todo = iter(starts)
    lock = threading.Lock()
    failed = []

    def loop() -> None:
        one = worker()
        while not failed:
            with lock:
                y0 = next(todo, None)
            if y0 is None:
                return
            try:
                one(y0)
            except BaseException:
                failed.append(True)  # the others stop after their band
                raise

    futures = [_helpers().submit(loop) for _ in range(n - 1)]
    try:
        loop()
    finally:
        errors = [f.exception() for f in futures]  # waits: the bands write into the caller's arrays
    for e in errors:
        if e is not None:
            raise e
