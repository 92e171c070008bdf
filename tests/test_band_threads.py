"""``band_threads``: a plane's bands shared among threads, each done once, errors raised after all stop."""

import threading
import time

import pytest

from lvpnet.model import band_threads


def _record(done, lock, delay=0.0):
    def worker():
        mine = []  # a per-thread buffer, as the layers' columns

        def one(y0):
            time.sleep(delay)
            mine.append(y0)
            with lock:
                done.append((y0, threading.current_thread().name))
        return one
    return worker


@pytest.mark.parametrize("n", [1, 2, 5])
def test_every_band_once(n):
    done, lock = [], threading.Lock()
    with band_threads.allowed(n):
        band_threads.run(_record(done, lock, 0.002), range(0, 40, 3), band_threads.MIN_PIXELS)
    assert sorted(y for y, _ in done) == list(range(0, 40, 3))
    if n == 1:
        assert {t for _, t in done} == {threading.current_thread().name}


def test_small_planes_and_the_default_stay_on_this_thread():
    done, lock = [], threading.Lock()
    band_threads.run(_record(done, lock), range(8), band_threads.MIN_PIXELS)  # nothing allowed: 1
    with band_threads.allowed(4):
        assert band_threads.threads(band_threads.MIN_PIXELS - 1) == 1
        band_threads.run(_record(done, lock), range(8), band_threads.MIN_PIXELS - 1)
        assert band_threads.threads(band_threads.MIN_PIXELS) == 4
    assert band_threads.threads(band_threads.MIN_PIXELS) == 1  # the block's end restores it
    assert {t for _, t in done} == {threading.current_thread().name}


@pytest.mark.parametrize("where", ["caller", "helper"])
def test_an_error_is_raised_after_every_thread_stopped(where):
    caller = threading.current_thread()
    running = []

    def worker():
        count = []

        def one(y0):
            running.append(1)
            time.sleep(0.01)
            count.append(y0)
            if (threading.current_thread() is caller) == (where == "caller") and len(count) == 2:
                raise ValueError(f"band {y0}")  # this thread's second band
            running.pop()
        return one

    with band_threads.allowed(2), pytest.raises(ValueError, match="band"):
        band_threads.run(worker, range(10), band_threads.MIN_PIXELS)
    time.sleep(0.05)
    assert len(running) <= 1  # only the failed band never finished: no thread still at work
