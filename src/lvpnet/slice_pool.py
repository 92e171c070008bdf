"""A volume's slices coded by worker processes, in order, with a bounded number in flight.

Why processes: the learned codec is one slice at a time on one core (one torch thread, numba
loops), and about a third of its time is Python and numpy glue that holds the GIL, so threads do
not scale; N processes on N free cores code N slices at once. Each worker loads the codec's
weights once and keeps them for every later volume of this process (the pool lives until exit).

Who uses it: ``compressor.encode_stream`` (slices, the safety net included) and
``LvpFile.iter_decode`` (runs of slices that decode without the one before them). A worker runs
the very code the serial path runs, so files and errors are the same with any number of workers.

How many: ``workers(n, requested, device, work)``: a number asked for, or with ``None`` (the command
line's default) ``LVPNET_WORKERS`` when set, else the cores this process may use (no more than the
memory free holds: ``lvpnet.ram``), and 1 for volumes
under ``MIN_SLICES`` slices or under ``MIN_WORK_S`` seconds of one core's work (a 10-slice 128 x 128
MR), where starting workers (about 3 s: torch, numba, weights) costs more than it saves. On a CUDA
device the automatic number is also bounded by the device's free memory (``GPU_BYTES_PER_WORKER``
each): on a GPU machine the per-slice fits, tables and entropy coding run on the CPU
(``docs/MODEL.md``, GPU), so one process leaves the GPU mostly idle.
On a CUDA device each process also walks its slices in lanes (``lanes``: a batch of slices in
lock-step, one network call per sub-image step for all of them, ``Engine.run_lanes``).

Where: the workers run the learned codec on this process's device (``device_env``: the parent's
codec device as ``LVPNET_DEVICE``), so ``--device cpu`` on a GPU machine stays on the CPU in the
workers too. The Python API asks for 1 unless told otherwise: workers are started with
``spawn``, which re-imports the caller's main module, so a script must guard its top level with
``if __name__ == "__main__":`` to use them (the ``lvpnet`` command and napari do).
"""

from __future__ import annotations

import ast
import atexit
import multiprocessing
import multiprocessing.context
import numbers
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool

from .errors import InputError, LvpnetError
from .progress import unplaced

ENV = "LVPNET_WORKERS"
DEVICE_ENV = "LVPNET_DEVICE"
MIN_SLICES = 8
#: one core's seconds of work below which starting workers does not pay: a pool of two took 2.9 s to
#: start and load the codec (64-slice decompress, ``benchmarks/workers.md``), which two workers win
#: back only from 2 x 2.9 s of work on; a pool already running costs nothing more
MIN_WORK_S = 6.0
#: one core's seconds for a slice of the learned codec, (per slice, per pixel), to weigh a volume's work
#: against ``MIN_WORK_S`` (``work_s``): measured on a Zen 3 core (``benchmarks/val_speed.md``), a
#: 512 x 512 CT slice encodes in about 1 s with the safety net and decodes in 0.35 s, a 256 x 256 MR
#: slice in 0.6 and 0.25 s, a 128 x 128 one in 0.35 and 0.12 s: much of the time is per slice
ENCODE_S = (0.4, 2.2e-6)
DECODE_S = (0.1, 1.0e-6)
#: what one worker on a CUDA device may take: its CUDA context, the weights and one slice's buffers
#: (an estimate with room to spare; benchmarks/volume_engine.py reports the measured peak per process)
GPU_BYTES_PER_WORKER = 3 * 2**30

LANES_ENV = "LVPNET_LANES"
MAX_LANES = 32  # 32 x 128 x 128 sub-image pixels a call fill a GPU; each walk holds its slice's host buffers
#: a lane's GPU memory per pixel of its slice: one step's features, context, hidden layers and head
#: of a 4 x 4 sub-image grid in float32 (about 1.5 kB a sub-image pixel), with room to spare
LANE_BYTES_PER_PIXEL = 512

_pool = None
_pool_key: tuple | None = None
_users = 0  # runs of ``ordered`` (threads of this process) using ``_pool`` now: it is not replaced under them
_single = 0  # runs of ``ordered`` under way (``_one_thread``)
_threads_before: int | None = None
_lock = threading.Lock()


def workers(n_slices: int, requested: int | None = 1, device: str = "cpu", work: float | None = None,
            slice_bytes: int = 0) -> int:
    """How many worker processes code ``n_slices`` slices (1: in this process). ``requested``: a
    number, or None for automatic (module docstring); ``device``: where the learned codec runs
    ("auto", "cpu", "cuda"), which bounds the automatic number on a GPU; ``work``: one core's
    estimated seconds for the whole volume (``work_s``), under ``MIN_WORK_S`` of which the automatic
    number is 1 unless a pool is already running; ``slice_bytes``: one slice's working memory, which
    with each worker's own (``ram.WORKER_BASE_BYTES``) bounds the automatic number by the memory free."""
    check_requested(requested)
    if _daemonic():
        return 1  # a dask worker's task, a multiprocessing pool's: such a process may not start processes
    if requested is not None:
        return max(1, min(int(requested), n_slices))
    asked = _env_count(ENV, n_slices)
    if asked:
        return asked
    if n_slices < MIN_SLICES or (work is not None and work < MIN_WORK_S and _pool is None):
        return 1
    return max(1, min(cores(), n_slices // 2, _gpu_room(device), _ram_room(slice_bytes)))


def check_requested(requested) -> None:
    """A number of workers asked for in Python is what ``--workers`` takes, and ``LVPNET_WORKERS`` too
    (InputError if not), whether or not the volume turns out to need workers."""
    if requested is not None and (isinstance(requested, bool) or not isinstance(requested, numbers.Integral)
                                  or requested < 1):
        raise InputError(f"workers must be a whole number of at least 1 (or None: automatic), not {requested!r}")
    if requested is None:
        _env_count(ENV, 1)


def main_is_guarded() -> bool:
    """Whether worker processes may start from this process without running its main script's work
    again: spawn imports the main module in every worker, so its top level must only define things.
    True for an interactive main (a Python prompt, IPython, Jupyter: nothing is imported again), a
    package's ``__main__`` run with ``-m`` (spawn never runs one again: ``python -m napari``), and a
    main whose top level holds only imports, definitions, constants, docstrings and an
    ``if __name__ == "__main__":`` block (the ``napari`` and ``lvpnet`` commands); False for anything
    else (a script that opens a viewer at its top level, or defines a ``@magicgui(...)`` widget there,
    would do it again in every worker) and where the main file cannot be read. For callers that pick
    the number of workers themselves (the napari plugin): the Python API leaves that to its caller."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and (spec.name == "__main__" or spec.name.endswith(".__main__")):
        return True  # multiprocessing's spawn never imports such a module again
    path = getattr(spec, "origin", None) if spec is not None else getattr(main, "__file__", None)
    if main is None or path is None:
        return True  # interactive: spawn has no main file to import again
    try:
        with open(path, "rb") as f:
            tree = ast.parse(f.read())
    except (OSError, SyntaxError, ValueError):
        return False
    return all(_only_defines(node) for node in tree.body)


def automatic_if_safe() -> int | None:
    """``workers``' request for a caller that runs in someone else's main (the napari plugin): None
    (automatic) where workers can start (``main_is_guarded``), else 1 (this process)."""
    return None if main_is_guarded() else 1


def _runs_nothing(*exprs) -> bool:
    """No call (nor await, walrus or yield) in these expressions: evaluating them runs no one's code."""
    bad = (ast.Call, ast.Await, ast.NamedExpr, ast.Yield, ast.YieldFrom)
    return not any(isinstance(n, bad) for e in exprs if e is not None for n in ast.walk(e))


#: decorators that only wrap or mark what they decorate; any other is someone's code run at once (``@magicgui``
#: builds a widget, in every worker)
_PLAIN_DECORATORS = frozenset({"dataclass", "staticmethod", "classmethod", "property", "cached_property", "overload",
                               "abstractmethod", "cache", "lru_cache", "wraps", "total_ordering", "final"})


def _plain_decorator(d) -> bool:
    call = isinstance(d, ast.Call)
    f = d.func if call else d
    name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
    return name in _PLAIN_DECORATORS and (not call or _runs_nothing(*d.args, *(k.value for k in d.keywords)))


def _is_main_guard(test) -> bool:
    return (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)
            and {ast.dump(test.left), ast.dump(test.comparators[0])}
            == {ast.dump(ast.Name("__name__", ast.Load())), ast.dump(ast.Constant("__main__"))})


def _only_defines(node) -> bool:
    """A top-level statement that does nothing when executed but define (``main_is_guarded``): what a
    definition evaluates at once (decorators, default values, annotations, base classes, a class body)
    calls nothing either."""
    if isinstance(node, (ast.Import, ast.ImportFrom, ast.Pass)):
        return True
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        a = node.args
        annotations = [x.annotation for x in a.posonlyargs + a.args + a.kwonlyargs + [a.vararg, a.kwarg] if x]
        return (all(map(_plain_decorator, node.decorator_list))
                and _runs_nothing(*a.defaults, *a.kw_defaults, node.returns, *annotations))
    if isinstance(node, ast.ClassDef):
        return (all(map(_plain_decorator, node.decorator_list))
                and _runs_nothing(*node.bases, *(k.value for k in node.keywords))
                and all(_only_defines(n) for n in node.body))
    if isinstance(node, ast.Expr):
        return isinstance(node.value, ast.Constant)  # a docstring
    if isinstance(node, (ast.Assign, ast.AnnAssign)):  # constants: nothing runs
        return _runs_nothing(node)
    if isinstance(node, ast.If):
        if _is_main_guard(node.test):  # its body runs only in the main process; an else runs in every worker
            return all(_only_defines(n) for n in node.orelse)
        return _runs_nothing(node.test) and all(_only_defines(n) for n in node.body + node.orelse)
    if isinstance(node, ast.Try):  # try: import x / except ImportError: ...
        return (all(_runs_nothing(h.type) for h in node.handlers)
                and all(_only_defines(n) for n in node.body + node.orelse + node.finalbody
                        + [s for h in node.handlers for s in h.body]))
    return False


def _daemonic() -> bool:
    """Is this a daemonic process (a dask worker's, a ``multiprocessing`` pool's)? Python forbids those to
    start processes ("daemonic processes are not allowed to have children"), so its slices are coded in
    it, whatever number was asked for: the file is the same."""
    import multiprocessing

    return bool(multiprocessing.current_process().daemon)


def _ram_room(slice_bytes: int) -> int:
    """How many workers, each with its own torch and weights and one slice's working memory, the memory
    free now holds (a large number where it is unknown)."""
    from . import ram

    free = ram.available()
    return 1 << 30 if free is None else free // (ram.WORKER_BASE_BYTES + max(0, slice_bytes))


def work_s(n_slices: int, slice_pixels: int, rates: tuple[float, float]) -> float:
    """One core's estimated seconds for ``n_slices`` slices of ``slice_pixels`` pixels (every plane of an
    RGB slice counted) at ``rates`` (``ENCODE_S`` or ``DECODE_S``)."""
    return n_slices * (rates[0] + slice_pixels * rates[1])


def _env_count(name: str, most: int) -> int:
    """The count the environment variable ``name`` asks for, in ``1..most``; 0 if it is unset;
    InputError if it is not a positive whole number (as ``--workers`` would say)."""
    env = os.environ.get(name, "").strip()
    if not env:
        return 0
    try:
        n = int(env)
    except ValueError:
        n = 0
    if n < 1:
        raise InputError(f"{name}={env}: not a positive whole number")
    return max(1, min(n, most))


def cores() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def spare_core(requested: int | None) -> bool:
    """Whether a slice coded in this process may run a helper thread beside it (``compressor``: the
    safety net's JPEG-XL encode while the learned codec encodes): only with the automatic number of
    workers (``requested`` None, ``LVPNET_WORKERS`` unset; a worker process never does) and at least
    two cores for this process. A volume large enough for worker processes has none to spare."""
    return requested is None and not os.environ.get(ENV, "").strip() and cores() >= 2


def lanes(device: str, slice_pixels: int, processes: int = 1) -> int:
    """How many slices (chains of slices, on decode) one process walks in lock-step (``Engine.run_lanes``:
    one network call per step for all of them). ``LVPNET_LANES`` when set; else on a CUDA device as many
    as a quarter of its free memory holds at ``LANE_BYTES_PER_PIXEL``, shared by ``processes`` processes
    (at most ``MAX_LANES`` each), and 1 on the CPU, whose int8 trunk gains nothing from a batch
    (``Engine.batches``). With several processes on a GPU each walks its task's slices in lanes: the
    processes share the per-slice CPU stages out over the cores, the lanes fill the GPU."""
    asked = _env_count(LANES_ENV, MAX_LANES)
    if asked:
        return asked
    room = _gpu_room(device, LANE_BYTES_PER_PIXEL * max(1, slice_pixels) * 4 * max(1, processes))
    return 1 if room >= 1 << 30 else max(1, min(MAX_LANES, room))


def _gpu_room(device: str, each: int = GPU_BYTES_PER_WORKER) -> int:
    """How many workers (of ``each`` bytes) the CUDA device behind ``device`` has free memory for (a
    large number on the CPU)."""
    if str(device) == "cpu":
        return 1 << 30
    import torch

    if not torch.cuda.is_available():
        return 1 << 30  # "auto" without a GPU is the CPU
    index = torch.device(device).index if str(device).startswith("cuda:") else None
    free, _total = torch.cuda.mem_get_info(index)
    return max(1, free // each)


def device_env(codec) -> dict[str, str]:
    """What a worker needs to run ``codec`` where this process runs it: its device."""
    return {DEVICE_ENV: str(getattr(codec, "device", "auto"))}


_PARENT_POLL_S = 1.0


def _init(env: dict) -> None:
    """Worker start: the parent's codec settings; Ctrl-C is the parent's to handle."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.update(env)
    os.environ[ENV] = "1"  # a worker never starts a pool of its own
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True, name="lvpnet-parent-watch").start()
    import torch

    torch.set_num_threads(1)


def _exit_with_parent(parent: int) -> None:
    """A parent killed outright (SIGKILL, the OOM killer) cannot stop its workers, and a worker waiting for
    its next task may wait for ever (it holds both ends of the pool's pipe): it leaves when orphaned."""
    while os.getppid() == parent:
        time.sleep(_PARENT_POLL_S)
    os._exit(0)


class _QuietProcess(multiprocessing.context.SpawnProcess):
    """A spawned worker that starts with Ctrl-C blocked: a terminal's Ctrl-C goes to the whole process
    group, and a worker still importing lvpnet (before ``_init`` ignores SIGINT) printed a
    KeyboardInterrupt traceback under the parent's clean "interrupted" line. The block (a mask, per
    thread, inherited through exec) only delays the parent's own SIGINT until the worker has started;
    the worker keeps it (``_init`` ignores SIGINT anyway). Module level: spawn pickles the process."""

    def start(self):
        if not hasattr(signal, "pthread_sigmask"):  # Windows: no signal masks
            return super().start()
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            return super().start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


class _QuietSpawn(multiprocessing.context.SpawnContext):
    Process = _QuietProcess


def start_resource_tracker() -> None:
    """multiprocessing's resource tracker (one process per program, started with the first pool's locks: a slice
    pool's, a dask cluster's) blocks Ctrl-C and SIGTERM but not SIGHUP, so a closed terminal's SIGHUP to the
    process group killed it, and its successor printed a dozen KeyError tracebacks under the clean "interrupted
    (SIGHUP)" line. Started here first, with SIGHUP blocked too (a mask is inherited); it still ends with this
    process (its pipe closes). A no-op where it runs already or there are no signal masks."""
    if not hasattr(signal, "pthread_sigmask"):
        return
    from multiprocessing import resource_tracker

    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    try:
        resource_tracker.ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


_GUARD = ('put the script\'s top level under `if __name__ == "__main__":` (workers start by importing it '
          "again)")


def _executor(n: int, env: dict[str, str]):
    """The pool of ``n`` workers with settings ``env``, counted as used until ``_release_pool`` (None: another
    run of this process holds a pool of other settings; this run codes in its own process)."""
    global _pool, _pool_key, _users
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        # a worker importing a script that asks for workers at its top level: say so, in the worker, rather
        # than multiprocessing's "bootstrapping phase" RuntimeError (the parent then says it too)
        raise InputError(f"workers were asked for while a worker process was starting: {_GUARD}, or ask for workers=1")
    with _lock:
        if _pool is not None and _pool_key != (n, env):
            if _users:  # another thread's run holds it (the napari plugin: a 3-D view beside a Compress)
                if _pool_key[1] != env:
                    return None  # another device
                _users += 1
                return _pool  # of another size: shared, this run's window bounds its own tasks
            _pool.shutdown(wait=True, cancel_futures=True)
            _pool = None
        if _pool is None:
            from concurrent.futures import ProcessPoolExecutor

            keep = {k: v for k, v in os.environ.items() if k.startswith(("LVPNET_", "OMP_"))} | env
            start_resource_tracker()
            # spawn: a fresh interpreter per worker (forking a process that holds torch's threads
            # can deadlock); the codecs load their weights there on first use
            _pool = ProcessPoolExecutor(n, mp_context=_QuietSpawn(), initializer=_init, initargs=(keep,))
            _pool_key = (n, env)
        _users += 1
        return _pool


def shutdown() -> None:
    """Stop the workers (at exit, and when a run is cut short)."""
    global _pool
    with _lock:
        if _pool is not None:
            _pool.shutdown(wait=False, cancel_futures=True)
            _pool = None


atexit.register(shutdown)


def _stop_at_exit() -> None:
    """At the interpreter's exit, before ``concurrent.futures`` joins its workers: when no run holds the pool
    any more, a worker still coding a task of a run given up (Inspect's, closed as the viewer closed: "a worker
    finishes the one it holds") is stopped, not waited for (the process lingered 2-9 s after its window had
    gone). A worker writes nothing but its result, so stopping one loses nothing nobody asked for. A run still
    under way (a thread the interpreter will wait for, compressing after the script's end) keeps its workers."""
    global _pool
    with _lock:
        if _users:
            return
        pool, _pool = _pool, None
    if pool is None:
        return
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in processes:
        if p.is_alive():
            p.terminate()
    # the pool's manager thread closes its wake-up pipe as it ends; concurrent.futures' own exit wakes it too, and
    # writing as it closed printed "OSError: [Errno 9] Bad file descriptor" after a run that had succeeded
    manager = getattr(pool, "_executor_manager_thread", None)
    if manager is not None and manager is not threading.current_thread():
        manager.join(timeout=5)


# threading's exit calls run in reverse order of registration, before the interpreter joins threads and before
# ``atexit``: registered after ``concurrent.futures.process`` (imported above, which registers the join of its
# workers), this runs first
if hasattr(threading, "_register_atexit"):
    threading._register_atexit(_stop_at_exit)


def ordered(fn: Callable, tasks: Iterable[tuple], n: int, env: dict[str, str] | None = None) -> Iterator:
    """``fn(*task)`` for every task, results in task order, at most ``2 n + 8`` in flight (memory
    stays bounded by the window, not the volume). ``env``: settings the workers take
    (``device_env``); a pool started with others is replaced. ``n == 1``: in this process, no pool.

    Otherwise this process is one of the ``n``, on one torch thread. It codes the first task itself
    (the first result comes after one task, not after the workers' start). The ``n - 1`` workers each keep
    two tasks (one running, one queued, so a worker never waits for this process to hand it the
    next); whenever the next result in order is a worker's that is not ready, this process codes
    the next task itself instead of waiting. So it works while the workers start (about 2 s,
    when a slice decodes in a quarter of a second) and takes on more tasks whenever they are
    slower (a loaded core). Who codes a task changes nothing in its result, and an error is raised
    at its task's turn, after every result before it, as in one process."""
    if n <= 1:
        for task in tasks:
            yield fn(*task)
        return
    try:
        pool = _executor(n - 1, dict(env or {}))
    except OSError as e:  # no shared memory for the pool's locks (a read-only or missing /dev/shm)
        _in_this_process(e)
        pool = None
    held = pool is not None  # counted in ``_users`` until this run ends, whatever becomes of ``pool``
    todo = iter(tasks)
    # the first task is this process's, coded once the workers have theirs: its result (and its slice's
    # progress) comes after one task, not after the workers' start (seconds: each imports torch and the
    # weights), which Inspect showed as a bar standing at 0 for 15 s of a 39 s run
    first = next(todo, None)
    window: deque = deque()  # per task in order: a worker's future, or what this process got
    bound, depth = 2 * n + 8, 2 * (n - 1)
    _one_thread(+1)  # one core each: this process and every worker
    try:
        while True:
            if first is not None and pool is None:  # no workers: every task here, in order
                window.append(_here(fn, first))
                first = None
            while sum(isinstance(f, Future) and not f.done() for f in window) < depth and len(window) < bound:
                task = next(todo, None)
                if task is None:
                    break
                if pool is not None:
                    try:
                        window.append(pool.submit(fn, *task))
                        continue
                    except BrokenProcessPool:
                        raise
                    except (RuntimeError, OSError) as e:  # "can't start new thread" (ulimit -u): no workers at all
                        if any(isinstance(f, Future) for f in window):
                            raise
                        _in_this_process(e)
                        shutdown()
                        pool = None
                window.append(_here(fn, task))  # the workers could not start: every task here, one at a time
                break
            if first is not None:
                task, first = first, None
                window.appendleft(_here(fn, task))
            if not window:
                return
            head = window[0]
            if isinstance(head, Future) and not head.done() and len(window) < bound:
                task = next(todo, None)
                if task is not None:
                    with unplaced():  # ahead of its turn: a bar's share of the next slice is not this one's
                        window.append(_here(fn, task))
                    continue
            window.popleft()
            yield head.result() if isinstance(head, Future) else head.get()
    except BaseException as e:
        for f in window:  # queued slices are dropped; a worker finishes the one it holds
            if isinstance(f, Future):
                f.cancel()
        if isinstance(e, BrokenProcessPool):  # broken for every run that shares it
            shutdown()
        elif isinstance(e, KeyboardInterrupt):  # Ctrl-C, SIGTERM: do not wait for the workers
            _stop_unless_shared(held)
        if isinstance(e, BrokenProcessPool):  # at a submit or at a result
            if not main_is_guarded():  # the likely cause first: a worker ran the script's top level again
                raise LvpnetError("a worker process ended abruptly: the script's top level does more than define "
                                  f"things, and every worker runs it again: {_GUARD}, or ask for workers=1") from None
            raise LvpnetError("a worker process ended abruptly (killed, or out of memory): code in one process "
                              "with --workers 1 (workers=1 in Python)") from None
        raise
    finally:
        _one_thread(-1)
        if held:
            _release_pool()


def _stop_unless_shared(held: bool) -> None:
    """Stop the workers at once for a run cut short, unless another thread's run still uses them (the napari
    plugin: a 3-D view's decode beside a Compress): stopped under it, that run failed ("cannot schedule new
    futures after shutdown") for a Ctrl-C that was not its own. The pool then stays, as after any run, until
    the exit."""
    global _pool
    with _lock:
        if _users > (1 if held else 0):
            return
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)


def _release_pool() -> None:
    global _users
    with _lock:
        _users -= 1


def _one_thread(step: int) -> None:
    """Torch on one thread in each thread that runs ``ordered`` while it runs (threads of one process may run
    several: the plugin's 3-D view beside its Compress). torch's count is per thread (and the default of
    threads started after a change), so each run sets its own thread; every run gives its thread back the
    count the first run found, so interleaved ends never leave a thread (or napari's later ones) on one."""
    global _single, _threads_before
    import torch

    with _lock:
        if step > 0:
            if _single == 0:
                _threads_before = torch.get_num_threads()
            _single += 1
            torch.set_num_threads(1)
        else:
            _single = max(0, _single - 1)
            if _threads_before is not None:
                torch.set_num_threads(_threads_before)
            if _single == 0:
                _threads_before = None


def _in_this_process(e: BaseException) -> None:
    import warnings

    warnings.warn(f"worker processes cannot start here ({e}): coding in this process", stacklevel=3)


class _Here:
    """A task coded in this process ahead of its turn: its result, or the error it raised (raised
    at its turn, so errors come in task order whoever coded the task)."""

    def __init__(self, value=None, error: Exception | None = None):
        self.value, self.error = value, error

    def get(self):
        if self.error is not None:
            raise self.error
        return self.value


def _here(fn: Callable, task: tuple) -> _Here:
    try:
        return _Here(fn(*task))
    except Exception as e:  # noqa: BLE001 - raised at its turn (``_Here.get``)
        return _Here(error=e)
