"""The dask.distributed engine an archive runs on: a local cluster of worker processes, or an
existing cluster reached through its scheduler's address.

Local default: one single-threaded worker process per free core (``LocalCluster``); where PyTorch
sees GPUs (and ``--device`` is not ``cpu``), one worker per GPU, each seeing only its own device.
The same client code runs on a real cluster (dask-jobqueue, dask-kubernetes): docs/SCALE.md.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import InputError


def free_cores() -> int:
    """Cores this process may use, less those the load average says are busy (at least 1)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    try:
        busy = int(os.getloadavg()[0] + 0.5)
    except OSError:
        busy = 0
    return max(1, n - busy)


def gpu_count(device: str) -> int:
    if device == "cpu":
        return 0
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # no usable CUDA: CPU workers
        return 0


@contextmanager
def connect(workers: int | None = None, scheduler=None, device: str = "auto") -> Iterator[tuple[object, int]]:
    """Yield ``(client, number of workers)``; a local cluster is shut down on the way out."""
    from distributed import Client

    if scheduler is not None:
        if isinstance(scheduler, Client):  # the caller's own client: theirs to close
            n = _wait_for_workers(scheduler, str(scheduler.scheduler.address))
            _check_workers(scheduler)
            yield scheduler, n
            return
        try:
            client = Client(scheduler, timeout="30s")
        except (OSError, TimeoutError, ValueError) as e:
            raise InputError(f"--scheduler {scheduler} (scheduler={scheduler!r} in Python): cannot reach a dask scheduler there ({e})") from None
        try:
            n = _wait_for_workers(client, scheduler)
            _check_workers(client)
            yield client, n
        finally:
            client.close()
        return
    with _sigint_ignored():
        cluster, n = _local_cluster(workers, device)
    try:
        with Client(cluster) as client:
            client.run(_warm_up)
            yield client, n
    finally:
        cluster.close()


def _warm_up() -> str:
    """Import the codec stack in a fresh worker (torch takes seconds) before the first item, so
    that start-up and work are timed apart; returns the worker's lvpnet version."""
    from .. import __version__
    from . import tasks

    tasks._setup(None)
    return __version__


def _check_workers(client) -> None:
    """Every worker of an existing cluster must run this lvpnet: the tasks and the files they
    write are this version's."""
    from .. import __version__

    try:
        versions = client.run(_warm_up)
    except Exception as e:  # lvpnet missing on a worker, or a worker that cannot import it
        raise InputError(f"the cluster's workers cannot run lvpnet ({type(e).__name__}: {e}); "
                         "install napari-lvpnet on them") from None
    other = {w: v for w, v in versions.items() if v != __version__}
    if other:
        w, v = next(iter(other.items()))
        raise InputError(f"worker {w} runs lvpnet {v}, this is lvpnet {__version__}: install the same version on all")


@contextmanager
def _sigint_ignored():
    """Worker processes spawned meanwhile inherit SIGINT ignored: Ctrl-C at a terminal reaches every
    process of the foreground group, and only the client should act on it (it closes the cluster,
    which stops the workers) instead of each worker printing its own KeyboardInterrupt."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _wait_for_workers(client, address: str) -> int:
    try:
        client.wait_for_workers(1, timeout=120)
    except TimeoutError:
        raise InputError(f"--scheduler {address} (scheduler={address!r} in Python): no worker joined within 2 minutes") from None
    return len(client.scheduler_info().get("workers", {}))


def _local_cluster(workers: int | None, device: str):
    from distributed import LocalCluster

    from ..slice_pool import start_resource_tracker

    start_resource_tracker()  # a closed terminal's SIGHUP must not take it down (tracebacks under "interrupted")

    # no dashboard, and its HTTP server on any free port (a second run on the machine must not warn)
    common = {"threads_per_worker": 1, "processes": True, "dashboard_address": ":0",
              "scheduler_kwargs": {"dashboard": False}, "silence_logs": logging.CRITICAL}
    gpus = gpu_count(device)
    if not gpus:
        n = workers or free_cores()
        return LocalCluster(n_workers=n, **common), n
    # one worker per GPU, each seeing only its own (round robin if --workers asks for more)
    from distributed import Nanny, Scheduler, SpecCluster

    n = workers or gpus
    specs = {
        f"gpu-{i}": {"cls": Nanny, "options": {"nthreads": 1, "env": {"CUDA_VISIBLE_DEVICES": str(i % gpus)}}}
        for i in range(n)
    }
    scheduler = {"cls": Scheduler, "options": {"dashboard_address": ":0", "dashboard": False}}
    return SpecCluster(workers=specs, scheduler=scheduler, silence_logs=logging.CRITICAL), n
