"""Slices coded by worker processes: the same file and the same errors as in one process."""

import os
import signal

import numpy as np
import pytest

from lvpnet import slice_pool
from lvpnet.codecs.weights import shipped_weights
from lvpnet.compressor import compress
from lvpnet.errors import DamagedError
from lvpnet.lvpfile import LvpFile
from lvpnet.progress import run

needs_weights = pytest.mark.skipif(shipped_weights() is None, reason="no shipped weights")


def _volume(n=9, size=48):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    base = 600 + 300 * np.sin(yy / 5.0) * np.cos(xx / 7.0)
    return np.stack([base + 40 * k + rng.normal(0, 9, base.shape) for k in range(n)]).astype(np.int16)


def test_how_many_workers(monkeypatch):
    monkeypatch.delenv(slice_pool.ENV, raising=False)
    assert slice_pool.workers(100, 1) == 1 and slice_pool.workers(100, 3) == 3
    assert slice_pool.workers(2, 4) == 2  # never more than slices
    assert slice_pool.workers(slice_pool.MIN_SLICES - 1, None) == 1  # too short to pay for them
    assert slice_pool.workers(1000, None) == len(os.sched_getaffinity(0))
    # too little work to pay for starting them: ten 128 x 128 slices to decode (about 1 s), unless a
    # pool is already running; twelve 512 x 512 slices to encode (about 12 s) take them
    small = slice_pool.work_s(10, 128 * 128, slice_pool.DECODE_S)
    monkeypatch.setattr(slice_pool, "_pool", None)  # none running (an earlier test's pool lives until exit)
    assert small < slice_pool.MIN_WORK_S and slice_pool.workers(10, None, "cpu", small) == 1
    monkeypatch.setattr(slice_pool, "_pool", object())
    assert slice_pool.workers(10, None, "cpu", small) == min(5, len(os.sched_getaffinity(0)))
    monkeypatch.setattr(slice_pool, "_pool", None)
    big = slice_pool.work_s(12, 512 * 512, slice_pool.ENCODE_S)
    assert slice_pool.workers(12, None, "cpu", big) == min(6, len(os.sched_getaffinity(0)))
    monkeypatch.setenv(slice_pool.ENV, "1")
    assert slice_pool.workers(1000, None) == 1
    monkeypatch.setenv(slice_pool.ENV, "2")
    assert slice_pool.workers(1000, None) == 2 and slice_pool.workers(1000, 1) == 1  # asked for: asked for


@needs_weights
def test_two_workers_write_and_read_the_same_file():
    vol = _volume()
    one = compress(vol, codec="lvpnet", verify=False, workers=1)
    two = compress(vol, codec="lvpnet", verify=True, workers=2)  # the verifying decode in workers too
    assert one == two
    lvp = LvpFile(two)
    assert lvp.codec_counts().get("lvpnet", 0) > 0
    assert np.array_equal(run(lvp.iter_decode(workers=2)), vol)


@needs_weights
def test_a_worker_refuses_a_file_replaced_since_it_was_opened(tmp_path):
    """Workers open the file again by its name: one put in its place (the same size, another scan) is
    refused as the parent's own read would refuse it, not decoded under the first file's name."""
    from lvpnet.errors import InputError

    vol = _volume()
    path, other = tmp_path / "a.lvp", tmp_path / "b.lvp"
    path.write_bytes(compress(vol, codec="lvpnet", verify=False, workers=1))
    other.write_bytes(compress(vol[::-1].copy(), codec="lvpnet", verify=False, workers=1))
    lvp = LvpFile(path)
    os.utime(other, ns=(1, 1))  # another modification time, whatever the sizes
    os.replace(other, path)
    with pytest.raises(InputError, match="changed since it was opened"):
        list(lvp.read_slices(1, 9, workers=2))


@needs_weights
def test_damage_is_named_by_a_worker_too():
    vol = _volume()
    data = bytearray(compress(vol, codec="lvpnet", verify=False, workers=1))
    lvp = LvpFile(bytes(data))
    rec = lvp._reader.records[5]
    data[rec.offset + rec.length // 2] ^= 0x40
    with pytest.raises(DamagedError, match="slice 5"):
        run(LvpFile(bytes(data)).iter_decode(workers=2))


def test_cli_refuses_a_bad_number_of_workers(tmp_path, capsys):
    from lvpnet.cli import main

    src = tmp_path / "v.npy"
    np.save(src, _volume(2, 16))
    with pytest.raises(SystemExit) as e:
        main(["compress", str(src), str(tmp_path / "v.lvp"), "--workers", "0"])
    assert e.value.code == 2
    assert "not a number of workers" in capsys.readouterr().err
    assert main(["compress", str(src), str(tmp_path / "v.lvp"), "--codec", "fallback", "--workers", "2"]) == 0
    assert main(["verify", str(tmp_path / "v.lvp"), "--workers", "2"]) == 0


def test_workers_run_where_the_parent_asks(monkeypatch):
    """The parent's device reaches the workers (``--device cpu`` on a GPU machine stays on the CPU
    there too), and a pool started with another device is replaced, not reused."""
    monkeypatch.delenv(slice_pool.DEVICE_ENV, raising=False)
    tasks = [(slice_pool.DEVICE_ENV,)] * 4  # os.getenv in the process that runs the task
    for device in ("cpu", "auto"):
        got = list(slice_pool.ordered(os.getenv, tasks, 2, {slice_pool.DEVICE_ENV: device}))
        # the first task is the parent's; the next two always go to the worker
        assert got[0] is None and got[1] == got[2] == device and set(got) <= {None, device}
    slice_pool.shutdown()


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="no signal masks")
def test_workers_start_with_ctrl_c_blocked_and_the_parent_gets_it_back():
    """A terminal's Ctrl-C reaches the whole process group: a worker still importing lvpnet printed a
    KeyboardInterrupt traceback under the parent's "interrupted; nothing was written"."""
    slice_pool.shutdown()
    tasks = [(signal.SIG_BLOCK, [])] * 2  # the signals blocked in the process that runs the task
    got = list(slice_pool.ordered(signal.pthread_sigmask, tasks, 2, {slice_pool.DEVICE_ENV: "cpu"}))
    assert signal.SIGINT in got[1]  # the second task always goes to a worker (the first is this process's)
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])  # this process: as it was
    slice_pool.shutdown()


def test_this_process_codes_while_the_worker_starts(monkeypatch):
    """A fresh worker takes seconds to start; meanwhile this process codes the first task (its result
    and progress come at once) and every task past the two the worker holds, instead of waiting for
    the worker's first result."""
    monkeypatch.delenv(slice_pool.DEVICE_ENV, raising=False)
    slice_pool.shutdown()
    tasks = [(slice_pool.DEVICE_ENV,)] * 10
    got = list(slice_pool.ordered(os.getenv, tasks, 2, {slice_pool.DEVICE_ENV: "cpu"}))
    assert got == [None, "cpu", "cpu"] + [None] * 7
    slice_pool.shutdown()


def test_errors_come_in_task_order_whoever_coded_the_task():
    """A task this process coded ahead of its turn raises at its turn: every result before it
    first, and the first failing task's error, whichever process ran into which."""
    slice_pool.shutdown()
    for tasks in (["1", "2", "3", "x4", "5", "x6"], ["x1", "2", "x3", "4", "5", "6", "7"]):
        got = []
        with pytest.raises(ValueError) as e:
            for v in slice_pool.ordered(int, [(t,) for t in tasks], 2):
                got.append(v)
        first = next(i for i, t in enumerate(tasks) if t.startswith("x"))
        assert got == [int(t) for t in tasks[:first]] and repr(tasks[first]) in str(e.value)
    assert list(slice_pool.ordered(int, [(str(i),) for i in range(30)], 2)) == list(range(30))
    slice_pool.shutdown()


def test_device_bounds_workers_only_on_a_gpu(monkeypatch):
    import torch

    monkeypatch.delenv(slice_pool.ENV, raising=False)
    cores = len(os.sched_getaffinity(0))
    assert slice_pool.workers(1000, None, "cpu") == cores
    if not torch.cuda.is_available():
        assert slice_pool.workers(1000, None, "auto") == cores  # auto without a GPU is the CPU
    assert slice_pool.workers(1000, 3, "cuda") == 3  # asked for: asked for


def test_learned_codec_device_from_the_environment(monkeypatch):
    import torch

    from lvpnet.codecs.lvpnet_codec import LVPNetCodec
    from lvpnet.errors import InputError

    monkeypatch.setenv(slice_pool.DEVICE_ENV, "cpu")
    assert LVPNetCodec().device == "cpu"
    assert LVPNetCodec(device="auto").device == "auto"  # an explicit device wins
    monkeypatch.setenv(slice_pool.DEVICE_ENV, "gpu")
    codec = LVPNetCodec()
    if codec.is_available():
        with pytest.raises(InputError, match="LVPNET_DEVICE"):
            codec.engine()
    if codec.is_available() and not torch.cuda.is_available():  # the device's fault, not the weights'
        monkeypatch.setenv(slice_pool.DEVICE_ENV, "cuda")
        with pytest.raises(InputError, match=r"device is cuda \(LVPNET_DEVICE\), but no CUDA device is available"):
            LVPNetCodec().engine()
    monkeypatch.delenv(slice_pool.DEVICE_ENV)
    assert LVPNetCodec().device == "auto"


def test_a_spare_core_only_with_automatic_workers(monkeypatch):
    monkeypatch.delenv(slice_pool.ENV, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1})
    assert slice_pool.spare_core(None)
    assert not slice_pool.spare_core(1) and not slice_pool.spare_core(2)  # asked for: nothing more
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0})
    assert not slice_pool.spare_core(None)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1, 2})
    monkeypatch.setenv(slice_pool.ENV, "1")  # the user's setting, and every worker process's
    assert not slice_pool.spare_core(None)


@needs_weights
def test_the_safety_net_beside_the_encoder_gives_the_same_chunks(monkeypatch):
    """``code_slice`` with ``overlap`` (the safety net's JPEG-XL in a helper thread) chooses the same
    codec and bytes as without, where the learned codec wins and where the fallback does; an error
    of the learned encoder is raised as it is, and the helper serves the next slice."""
    from lvpnet import compressor

    smooth = _volume(1)[0]
    noise = np.random.default_rng(1).integers(0, 2, (40, 40)).astype(np.uint8) * 255  # JPEG-XL wins
    for s in (smooth, noise):
        assert compressor.code_slice("lvpnet", s, None, True, True) == compressor.code_slice("lvpnet", s, None, True)
    real = compressor.codecs.get_codec("lvpnet").encode

    def broken(*a, **k):
        raise RuntimeError("encoder failed")

    monkeypatch.setattr(compressor.codecs.get_codec("lvpnet"), "encode", broken)
    with pytest.raises(RuntimeError, match="encoder failed"):
        compressor.code_slice("lvpnet", smooth, None, True, True)
    monkeypatch.setattr(compressor.codecs.get_codec("lvpnet"), "encode", real)
    used = {compressor.code_slice("lvpnet", s, None, True, True)[0] for s in (smooth, noise)}
    assert used == {"lvpnet", "fallback"}
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1})
    monkeypatch.delenv(slice_pool.ENV, raising=False)
    assert compress(smooth, verify=False, workers=None) == compress(smooth, verify=False, workers=1)


@pytest.mark.parametrize("value", ["xyz", "0", "-2", "1.5"])
def test_a_workers_variable_that_is_not_a_count_is_refused(monkeypatch, value):
    """LVPNET_WORKERS=xyz is refused as --workers xyz would be, not quietly taken as 1."""
    from lvpnet.errors import InputError

    monkeypatch.setenv("LVPNET_WORKERS", value)
    with pytest.raises(InputError, match=f"LVPNET_WORKERS={value}: not a positive whole number"):
        slice_pool.workers(16, None)
    # also where the file needs no workers (fallback slices only): it was silently ignored there
    data = compress(np.zeros((2, 8, 8), np.uint8), codec="fallback", verify=False, workers=1)
    with pytest.raises(InputError, match="LVPNET_WORKERS"):
        for _ in LvpFile(data).iter_decode(workers=None):
            pass
    monkeypatch.setenv("LVPNET_WORKERS", "3")
    assert slice_pool.workers(16, None) == 3 and slice_pool.workers(2, None) == 2


def test_a_worker_leaves_when_its_parent_is_killed_outright():
    """`compress --workers 2` killed with SIGKILL left its spawned worker waiting for ever on the pool's
    pipe (it holds both ends); a worker's watch thread makes it exit once it is orphaned."""
    import signal
    import subprocess
    import sys
    import time

    child = ("from lvpnet.slice_pool import _exit_with_parent; import os; _exit_with_parent(os.getppid())")
    parent = subprocess.Popen([sys.executable, "-c", f"import subprocess, sys, time; p = subprocess.Popen("
                               f"[sys.executable, '-c', {child!r}]); print(p.pid, flush=True); time.sleep(120)"],
                              stdout=subprocess.PIPE, text=True)
    pid = int(parent.stdout.readline())
    time.sleep(0.5)
    parent.send_signal(signal.SIGKILL)
    parent.wait()

    def alive() -> bool:
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().split(")")[-1].split()[0] != "Z"  # a zombie has exited
        except FileNotFoundError:
            return False

    deadline = time.time() + 10
    while alive() and time.time() < deadline:
        time.sleep(0.1)
    assert not alive()


def _compress_in_a_daemon(queue, workers):
    try:
        vol = _volume(n=2, size=16)
        queue.put(len(compress(vol, codec="fallback", verify=False, workers=workers)) > 0
                  and slice_pool.workers(100, workers) == 1 and slice_pool.workers(100, None) == 1)
    except BaseException as e:  # noqa: BLE001 - reported to the test
        queue.put(repr(e))


@pytest.mark.parametrize("workers", [None, 2])
def test_a_daemonic_process_codes_its_slices_itself(workers):
    """A dask worker's task asking for workers (or for the automatic number) failed with 'daemonic
    processes are not allowed to have children'."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_compress_in_a_daemon, args=(queue, workers), daemon=True)
    proc.start()
    got = queue.get(timeout=120)
    proc.join(30)
    assert got is True


def test_a_script_without_a_main_guard_is_told_so(tmp_path):
    """Workers start by importing the calling script again: one whose top level asks for workers ran its top
    level twice and ended on multiprocessing's 'bootstrapping phase' RuntimeError and a BrokenProcessPool.
    The worker and the script now both say what to do."""
    import subprocess
    import sys

    script = tmp_path / "noguard.py"
    script.write_text("import numpy as np, lvpnet\n"
                      "a = (np.arange(8 * 40 * 40) % 997).astype(np.int16).reshape(8, 40, 40)\n"
                      "lvpnet.compress(a, codec='lvpnet', workers=2, verify=False)\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=tmp_path)
    assert proc.returncode == 1
    assert "workers were asked for while a worker process was starting" in proc.stderr  # the worker
    said = proc.stderr.rsplit("lvpnet.errors.LvpnetError: ", 1)[-1]  # the script's own error, the cause first
    assert said.startswith("a worker process ended abruptly: the script's top level does more than define")
    assert 'if __name__ == "__main__":' in said and "out of memory" not in said
    assert "bootstrapping phase" not in proc.stderr


def test_numba_keeps_its_builds_where_it_can_write(monkeypatch, tmp_path):
    """With the package's folders and the user's cache both read-only (another user's install, a read-only
    home), ``cache=True`` raised "cannot cache function" and a good file read as damaged: the builds go to a
    folder of this user's in the temporary folder, or are not kept."""
    import numba.core.config

    from lvpnet.model import jit

    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setattr(numba.core.config, "CACHE_DIR", numba.core.config.CACHE_DIR)
    monkeypatch.setattr(jit.tempfile, "gettempdir", lambda: str(tmp_path))
    real = jit._usable
    monkeypatch.setattr(jit, "_usable", lambda folder: str(folder).startswith(str(tmp_path)) and real(folder))
    assert jit._find_cache() is True
    own = os.environ["NUMBA_CACHE_DIR"]
    assert own.startswith(str(tmp_path)) and numba.core.config.CACHE_DIR == own
    assert (os.stat(own).st_mode & 0o777) == 0o700
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    monkeypatch.setattr(jit, "_usable", lambda folder: False)  # nowhere at all: compiled, not kept
    assert jit._find_cache() is False


def _dies_in_a_worker(i):
    import multiprocessing
    import time

    if multiprocessing.parent_process() is not None:
        os._exit(9)  # what the out-of-memory killer does to a worker
    time.sleep(0.2)  # in the command's own process: slow enough that the worker's result is waited for
    return i


def test_a_worker_killed_outright_is_said_plainly():
    """A worker killed (the OOM killer) gave "internal error: BrokenProcessPool" (exit 3)."""
    from lvpnet.errors import LvpnetError

    with pytest.raises(LvpnetError, match=r"a worker process ended abruptly \(killed, or out of memory\).*--workers 1"):
        list(slice_pool.ordered(_dies_in_a_worker, [(i,) for i in range(8)], 2))
    slice_pool.shutdown()


def _square(i):
    return i * i


@pytest.mark.parametrize("where", ["pool", "submit"])
def test_workers_that_cannot_start_leave_the_work_to_this_process(monkeypatch, where):
    """A read-only /dev/shm (the pool's locks: "Read-only file system") or a process limit (ulimit -u:
    "can't start new thread", then a hang) stopped the command: the slices are coded here, with a warning."""
    from concurrent.futures import ProcessPoolExecutor

    slice_pool.shutdown()
    if where == "pool":
        monkeypatch.setattr(slice_pool, "_executor", lambda n, env: (_ for _ in ()).throw(OSError(30, "Read-only file system")))
    else:
        monkeypatch.setattr(ProcessPoolExecutor, "submit", lambda self, *a, **k: (_ for _ in ()).throw(
            RuntimeError("can't start new thread")))
    with pytest.warns(UserWarning, match="worker processes cannot start here .*: coding in this process"):
        assert list(slice_pool.ordered(_square, [(i,) for i in range(12)], 2)) == [i * i for i in range(12)]
    slice_pool.shutdown()


@needs_weights
def test_a_range_of_slices_reads_alike_with_any_workers(tmp_path):
    """``LvpFile.read_slices``: the napari 3-D view's volume by worker processes; any range, runs cut where the
    writer starts one (an in-memory file goes in runs), damage raised at its slice's turn."""
    vol = _volume(n=11)
    data = compress(vol, codec="lvpnet", verify=False, workers=1)
    path = tmp_path / "v.lvp"
    path.write_bytes(data)
    for source in (path, data):
        for a, b in ((0, 11), (3, 10), (5, 6), (7, 7)):
            for w in (1, 2):
                got = list(LvpFile(source).read_slices(a, b, workers=w))
                assert len(got) == b - a and all(np.array_equal(s, vol[a + k]) for k, s in enumerate(got)), (a, b, w)
    slices = LvpFile(path).read_slices(workers=2)
    assert np.array_equal(next(slices), vol[0])
    slices.close()  # early: the queued slices are dropped
    with pytest.raises(IndexError, match="out of range"):
        LvpFile(path).read_slices(2, 12)
    broken = bytearray(data)
    rec = LvpFile(data)._reader.records[6]
    broken[rec.offset + rec.length // 2] ^= 0x40
    got = []
    with pytest.raises(DamagedError, match="slice 6"):
        for s in LvpFile(bytes(broken)).read_slices(4, 11, workers=2):
            got.append(s)
    assert len(got) == 2 and np.array_equal(got[1], vol[5])


@pytest.mark.parametrize("script, guarded", [
    ('"""doc"""\nimport sys\nfrom napari._main import main\nif __name__ == "__main__":\n    sys.exit(main())\n', True),
    ("import napari\nSIZE = (2, 3)\nx: int = 4\ndef f():\n    napari.run()\nclass C:\n    pass\n"
     "try:\n    import torch\nexcept ImportError:\n    torch = None\nif '__main__' == __name__:\n    f()\n", True),
    ("import napari\nviewer = napari.Viewer()\nnapari.run()\n", False),  # opens a viewer: it would again, per worker
    ("import napari\nnapari.run()\n", False),
    ("import os\nif os.environ.get('X'):\n    import sys\n", False),  # a test that calls: anything may run
    ("def broken(:\n", False),  # a main that does not parse: not known to be safe
    ("from magicgui import magicgui\n@magicgui(call_button='go')\ndef w(x: int = 1):\n    pass\n", False),
    ("import napari\ndef f(v=napari.Viewer()):\n    pass\n", False),  # a default value runs at once
    ("import os\nclass C:\n    here = os.getcwd()\n", False),  # so does a class body
    ("import sys\nif __name__ == '__main__':\n    pass\nelse:\n    sys.exit(1)\n", False),  # the else: workers
    ("if (n := 3):\n    pass\n", False),
    ("from magicgui import magicgui\n@magicgui\ndef w(x: int = 1):\n    pass\n", False),  # a bare decorator runs too
    ("from dataclasses import dataclass\n@dataclass(frozen=True)\nclass P:\n    x: int = 0\n", True),
    ("import functools\n@functools.cache\ndef f(x: int = 2) -> int:\n    return x\nclass C(object):\n"
     "    \"\"\"doc\"\"\"\n    size = 3\n    def g(self):\n        return print(self)\n", True),
])
def test_workers_start_only_from_a_main_that_only_defines(tmp_path, monkeypatch, script, guarded):
    """The napari plugin asks for workers where spawn's import of the main module runs nothing again."""
    import types

    main = types.ModuleType("__main__")
    main.__file__ = str(tmp_path / "main.py")
    (tmp_path / "main.py").write_text(script)
    monkeypatch.setitem(__import__("sys").modules, "__main__", main)
    assert slice_pool.main_is_guarded() is guarded
    assert slice_pool.automatic_if_safe() == (None if guarded else 1)
    main.__file__ = str(tmp_path / "gone.py")
    assert slice_pool.main_is_guarded() is False  # unreadable: not known to be safe
    del main.__file__
    assert slice_pool.main_is_guarded() is True  # interactive (a prompt, Jupyter): nothing is imported again
    main.__spec__ = types.SimpleNamespace(name="tool", origin=str(tmp_path / "main.py"))  # python -m tool
    assert slice_pool.main_is_guarded() is guarded
    main.__spec__ = types.SimpleNamespace(name="napari.__main__", origin=str(tmp_path / "main.py"))
    assert slice_pool.main_is_guarded() is True  # python -m napari: spawn never runs a package's __main__ again


def test_two_threads_share_the_pool_and_the_torch_threads_come_back():
    """The napari plugin runs ``ordered`` from two threads at once (a 3-D view's decode beside a Compress): the
    second, asking another number of workers, shut the first's pool under it ("cannot schedule new futures
    after shutdown"), and their interleaved restores left torch on one thread for good."""
    import threading

    import torch

    slice_pool.shutdown()
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    results, errors = {}, []

    def run(n, key):
        try:
            results[key] = list(slice_pool.ordered(int, [(str(i),) for i in range(40)], n))
        except Exception as e:  # noqa: BLE001 - the test reports it
            errors.append(e)

    threads = [threading.Thread(target=run, args=(n, n)) for n in (3, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    try:
        assert not errors and results == {3: list(range(40)), 2: list(range(40))}
        assert torch.get_num_threads() == 3 and slice_pool._users == 0
    finally:
        torch.set_num_threads(before)
        slice_pool.shutdown()


_GIVEN_UP = '''
import threading, time, sys
from lvpnet import slice_pool


def slow(seconds):
    time.sleep(seconds)
    return seconds


def finish():
    print("thread got", list(slice_pool.ordered(slow, [(0.01,), (3.0,), (0.01,)], 2)), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "given up":
        runs = slice_pool.ordered(slow, [(0.01,), (60.0,), (60.0,)], 2)
        next(runs)  # this process's first task
        time.sleep(3)  # the worker holds a 60 s task
        runs.close()  # given up, as Inspect's run when the viewer closes: nobody reads the rest
    else:  # a run the interpreter waits for (a thread compressing after the script's end) keeps its worker
        threading.Thread(target=finish).start()
        time.sleep(1)
    print("main done", flush=True)
'''


@pytest.mark.parametrize("case", ["given up", "still wanted"])
def test_at_exit_a_worker_of_a_run_given_up_is_stopped_one_still_wanted_is_not(tmp_path, case):
    """Closing napari during Inspect's run left Python waiting, at exit, for the worker to finish the task
    it held (2-9 s; here 60): with no run holding the pool, its workers are stopped at exit, and nothing is
    said. A thread's run still under way at the script's end keeps its worker and finishes."""
    import subprocess
    import sys
    import time

    script = tmp_path / "at_exit.py"
    script.write_text(_GIVEN_UP)
    t = time.monotonic()
    proc = subprocess.run([sys.executable, str(script), case], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=tmp_path)
    took = time.monotonic() - t
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "terminated abruptly" not in proc.stderr, proc.stderr
    if case == "given up":
        assert proc.stdout.split() == ["main", "done"]
        assert took < 40, f"waited {took:.0f} s for the worker's task"
    else:
        assert proc.stdout.splitlines() == ["main done", "thread got [0.01, 3.0, 0.01]"]


def test_ctrl_c_in_one_run_leaves_another_threads_run_its_workers():
    """A run cut short by Ctrl-C (or SIGTERM) stops the workers at once, but not under another thread's run
    that shares them: that run failed ("cannot schedule new futures after shutdown") for an interrupt that was
    not its own. Alone, an interrupted run still stops them."""
    import threading
    import time

    def interrupted():
        yield (1,)
        yield (-2,)
        raise KeyboardInterrupt

    slice_pool.shutdown()
    results, errors = [], []

    def other():
        try:
            results.extend(slice_pool.ordered(time.sleep, [(0.1,)] * 40, 2))
        except Exception as e:  # noqa: BLE001 - the test reports it
            errors.append(e)

    thread = threading.Thread(target=other)
    thread.start()
    deadline = time.monotonic() + 60
    while slice_pool._users == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        with pytest.raises(KeyboardInterrupt):
            list(slice_pool.ordered(abs, interrupted(), 2))
        assert slice_pool._pool is not None  # still there for the other run
        thread.join(120)
        assert not errors and results == [None] * 40
        with pytest.raises(KeyboardInterrupt):  # alone: the workers are stopped
            list(slice_pool.ordered(abs, interrupted(), 2))
        assert slice_pool._pool is None and slice_pool._users == 0
    finally:
        thread.join(120)
        slice_pool.shutdown()


def test_the_resource_tracker_outlives_a_hangup():
    """A closed terminal's SIGHUP to the process group killed multiprocessing's resource tracker (it blocks only
    Ctrl-C and SIGTERM), and its successor printed a dozen KeyError tracebacks under "interrupted (SIGHUP)".
    The pools start it with SIGHUP blocked too."""
    import subprocess
    import sys

    script = ("import os, signal, time\n"
              "from multiprocessing import resource_tracker\n"
              "from lvpnet import slice_pool\n"
              "slice_pool.start_resource_tracker()\n"
              "pid = resource_tracker._resource_tracker._pid\n"
              "os.kill(pid, signal.SIGHUP)\n"
              "time.sleep(0.5)\n"
              "blocked = int(next(l for l in open(f'/proc/{pid}/status') if l.startswith('SigBlk')).split()[1], 16)\n"
              "print('hup blocked', bool(blocked & (1 << (signal.SIGHUP - 1))), 'alive', os.waitpid(pid, os.WNOHANG) == (0, 0))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert "hup blocked True alive True" in out.stdout, (out.stdout, out.stderr)
