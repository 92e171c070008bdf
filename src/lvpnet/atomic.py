"""Atomic file output: a temporary file beside the target, renamed into place.

An interrupted, cancelled or failed write never leaves a partial file under
the final name, and an existing file of that name stays untouched until the
new one is complete.

The temporary name, ``.NAME.partial-HOST-PID-XXXXXXXX.EXT`` (``.NAME.lvp.partial-HOST-PID-XXXXXXXX`` for a
``.lvp``), says which machine (a hash of its name and of its PID namespace) and which process wrote it. A process killed outright
(SIGKILL, the OOM killer) cannot remove its own: the next write into that
folder removes every such file of this machine whose process is gone
(``clean_debris``). SIGTERM and SIGHUP are turned into an exception by
``signals_interrupt`` (the command line installs it), so the usual cleanup runs.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import signal
import socket
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import InputError

_COMPOUND_SUFFIXES = (".nii.gz",)


def _host() -> str:
    """This machine, as temporary names tell it: its name and its process-ID namespace (containers that
    share a host name and a volume, with their own PIDs, cannot tell each other's processes alive, and one
    swept the other's file in the middle of its write)."""
    try:
        space = os.readlink("/proc/self/ns/pid")
    except OSError:  # not Linux: the name alone
        space = ""
    return hashlib.sha256(f"{socket.gethostname()}{'|' + space if space else ''}".encode()).hexdigest()[:6]


_HOST = _host()
_PARTIAL = re.compile(r"\..+\.partial-(?P<host>[0-9a-f]{6})-(?P<pid>[0-9]+)-[0-9a-f]{8}(\.[A-Za-z0-9.]+)?")


def is_partial_name(name: str) -> bool:
    """Whether ``name`` is one of ``partial_name``'s temporary names (from any machine or process)."""
    return _PARTIAL.fullmatch(name) is not None


_NAME_MAX = 255  # bytes of one file name: Linux, and the file systems most used with it


def partial_name(target: Path, suffix: str = "") -> Path:
    """A fresh hidden temporary name beside ``target`` that ``clean_debris`` can tell is ours. Its stem is
    cut (at a character) where the whole name would pass the file system's 255 bytes: a target named
    with 225 of them (allowed) could not be written, nor restored from an archive, at all."""
    stem = target.name[: len(target.name) - len(suffix)] if suffix else target.name
    tail = f".partial-{_HOST}-{os.getpid()}-{secrets.token_hex(4)}{suffix}"
    room = _NAME_MAX - 1 - len(os.fsencode(tail))
    while len(os.fsencode(stem)) > room:
        stem = stem[:-1]
    return target.with_name(f".{stem}{tail}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):  # someone else's process, or no pid we can ask
        pass
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """A killed process its parent has not reaped yet (Linux; a container whose first process never
    reaps keeps it so for ever): it writes nothing more, though ``kill(pid, 0)`` still finds it."""
    try:
        with open(f"/proc/{int(pid)}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError, ValueError):
        return False
    return state in (b"Z", b"X")


_SWEPT: dict[str, float] = {}  # folder -> when this process last swept it
_WAITING: set[str] = set()  # folders whose last sweep left debris of another process still running
_SWEEP_EVERY = 60.0  # seconds: a batch writing thousands of files into one folder lists it once a minute


def _sweep(folder: Path) -> None:
    """``clean_debris`` of ``folder``, at most once a minute per process."""
    key, now = os.path.abspath(folder), time.monotonic()
    if now - _SWEPT.get(key, -_SWEEP_EVERY) >= _SWEEP_EVERY:
        _SWEPT[key] = now
        clean_debris(folder)


def clean_debris(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files (and DICOM output folders) that an lvpnet killed outright left
    in ``folder``: only names of our own pattern, written on this machine, by a process that is
    no longer running. Returns what was removed."""
    removed, waiting = [], False
    try:
        entries = [e for e in os.scandir(folder) if e.name.startswith(".")]
    except OSError:
        return removed
    for entry in entries:
        m = _PARTIAL.fullmatch(entry.name)
        if m is None or m["host"] != _HOST:
            continue
        if _alive(int(m["pid"])):
            waiting = waiting or int(m["pid"]) != os.getpid()
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:  # gone already, or not ours to remove: leave it
            continue
    (_WAITING.add if waiting else _WAITING.discard)(os.path.abspath(folder))
    return removed


def check_writable(path: str | os.PathLike) -> None:
    """Refuse, before any work, an output path that cannot be written: a folder, a missing
    parent folder, a folder without write permission (or on a read-only file system)."""
    target = Path(path)
    if target.is_dir():
        raise InputError(f"{target}: is a folder; give the name of the file to write")
    parent = target.parent
    if not parent.is_dir():
        raise InputError(f"{target}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{target}: its folder is not writable")  # the reason first, short: a notification cuts a path
    try:
        st = target.stat()
    except OSError:
        return
    if stat.S_ISREG(st.st_mode) and not st.st_mode & 0o222:  # made read-only to keep it: not replaced behind that
        raise InputError(f"{target}: exists and is read-only (mode {stat.S_IMODE(st.st_mode):o}); make it writable "
                         "(chmod u+w) or remove it to replace it")


class Interrupted(KeyboardInterrupt):
    """A termination signal (SIGTERM, SIGHUP, SIGINT) turned into an exception, so that every
    ``finally`` and every temporary file's cleanup runs as for Ctrl-C."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def signals_interrupt(signums=(signal.SIGINT, signal.SIGTERM, signal.SIGHUP)) -> Iterator[None]:
    """While inside, those signals raise ``Interrupted``, every time, as Ctrl-C does: Python drops
    an exception raised while a finaliser runs, and a later signal must still stop the run (what
    a signal during the cleanup itself leaves, the next write's ``clean_debris`` removes). A
    no-op outside the main thread (where signals cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        _CAUGHT.append(signum)  # for ``caught_signal``: the raise below can be swallowed
        raise Interrupted(signum)

    old = {s: signal.signal(s, handler) for s in signums}
    _CAUGHT.clear()
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        _CAUGHT.clear()


_CAUGHT: list[int] = []  # signals ``signals_interrupt`` turned into exceptions, newest last


def caught_signal() -> int | None:
    """A signal caught by ``signals_interrupt`` and not yet acted on, taken. A handler's exception that
    lands while C code swallows errors (numpy probing an attribute, a finaliser) is lost with no trace
    (measured: a SIGHUP during a 2000-slice compress, exit 0 after the whole run): ``progress.run``
    asks here between slices, so the run still stops at the next one."""
    return _CAUGHT.pop() if _CAUGHT else None


def _suffix(path: Path) -> str:
    """The extension the temporary name keeps: a writer may choose its format by it (nibabel) or add one
    when it is missing (``np.save``). Not ``.lvp``: a job killed outright leaves its temporary file,
    and one still named ``*.lvp`` is taken for a finished file by ``Path.rglob("*.lvp")``."""
    name = path.name.lower()
    for suffix in _COMPOUND_SUFFIXES:
        if name.endswith(suffix):
            return path.name[-len(suffix) :]
    return "" if name.endswith(".lvp") else path.suffix


@contextmanager
def atomic_path(path: str | os.PathLike, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it to ``path`` on success.

    The temporary name keeps the target's extension (writers such as nibabel
    choose the format from it) and starts with a dot so file browsers hide it.
    ``mode``: the permission bits the file gets (an archive's copy of a source file, the source's); its
    temporary file is made owner-only before the caller writes a byte (writers open it "wb", which keeps
    its bits), so a patient file kept private is never readable by others, even for a moment. None: a
    file replaced keeps its own bits, a new one the umask's.
    """
    target = Path(path)
    if not target.parent.is_dir():
        raise InputError(f"{target}: the folder {target.parent} does not exist")
    _sweep(target.parent)
    tmp = partial_name(target, _suffix(target))
    try:
        if mode is not None:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        yield tmp
        _fsync(tmp)
        if mode is None:
            _keep_mode(target, tmp)
        else:
            os.chmod(tmp, mode)
        os.replace(tmp, target)
        if os.path.abspath(target.parent) in _WAITING:  # a run killed just before this one had not ended yet
            clean_debris(target.parent)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.errno is not None and (e.filename is None or os.fspath(e.filename) == os.fspath(tmp)):
            e.filename = os.fspath(target)  # messages name the user's path, not the hidden temporary one
        raise
    except BaseException:  # includes GeneratorExit and KeyboardInterrupt: never leave the temp behind
        tmp.unlink(missing_ok=True)
        raise


def _keep_mode(target: Path, tmp: Path) -> None:
    """A file replaced keeps its permissions: a patient file kept private (600) turned world-readable (the
    new file's umask mode) when an output replaced it. Not for a new file, nor a folder."""
    try:
        st = target.stat()
    except OSError:
        return
    if stat.S_ISREG(st.st_mode) and tmp.is_file():
        os.chmod(tmp, stat.S_IMODE(st.st_mode))


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
