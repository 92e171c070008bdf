"""Opening input files so that nothing but a regular file is ever read.

Opening a FIFO blocks until something writes to it, and a device such as
``/dev/zero`` never ends: a folder handed to lvpnet (or a link in it) must not
be able to hang it or fill its memory. Files are opened non-blocking and
checked with ``fstat`` on the open descriptor, so a name swapped for something
else between a check and the open is caught too.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import InputError


def input_path(path) -> str | os.PathLike:
    """``path`` when it is a path (bytes decoded as the file system does), else InputError saying what is
    taken: a bare TypeError from deep in pathlib told a caller who passed an array nothing."""
    if isinstance(path, bytes):
        return os.fsdecode(path)
    if isinstance(path, (str, os.PathLike)):
        return path
    hint = ": an array goes to lvpnet.compress or lvpnet.compress_to_file" if hasattr(path, "__array__") else ""
    raise InputError(f"expected the path of a file or folder, got {type(path).__name__}{hint}")


def kind(path: str | os.PathLike, follow_symlinks: bool = True) -> str:
    """``"file"``, ``"folder"``, ``"link"`` (only when not following), ``"missing"`` or the
    special kind (``"FIFO"``, ``"device"``, ``"socket"``), without opening anything."""
    try:
        st = os.stat(path, follow_symlinks=follow_symlinks)
    except FileNotFoundError:
        return "broken link" if os.path.islink(path) else "missing"
    except OSError:
        return "unreadable"
    return kind_of(st.st_mode)


def kind_of(mode: int) -> str:
    """The kind ``kind`` names, from a stat mode."""
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISLNK(mode):
        return "link"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "device"


def open_regular(path: str | os.PathLike, *, follow_symlinks: bool = True):
    """A binary file object for ``path``, refused (InputError) unless it is a regular file.
    Opened non-blocking, then checked with fstat: a FIFO cannot hang the open, and a name swapped
    after a walk is caught too; ``follow_symlinks=False`` refuses a final symbolic link as well."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    if not follow_symlinks:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        what = kind_of(os.fstat(fd).st_mode)
        if what != "file":
            raise InputError(f"{path}: not a regular file (a {what}); only regular files are read")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_head(path: str | os.PathLike, n: int, offset: int = 0) -> bytes:
    """Up to ``n`` bytes of a regular file from ``offset``; b"" for anything else (a sniffing read)."""
    try:
        with open_regular(path) as f:
            f.seek(offset)
            return f.read(n)
    except (InputError, OSError):
        return b""


def read_bytes(path: str | os.PathLike) -> bytes:
    """The whole of a regular file (InputError for anything else)."""
    with open_regular(path) as f:
        try:
            return f.read()
        except OSError as e:
            raise InputError(f"{path}: cannot read ({e.strerror or e})") from None


def require_regular(path: str | os.PathLike) -> Path:
    """``path`` when it names a regular file (links followed: the user named it), else InputError."""
    path = input_path(path)
    what = kind(path)
    if what == "missing":
        raise InputError(f"{path}: not found")
    if what not in ("file", "folder"):
        raise InputError(f"{path}: not a regular file (a {what}); only regular files and folders are read")
    return Path(path)


def iter_folder(root: Path, follow_symlinks: bool = False):
    """``(relative posix name, path, None)`` for every regular file under ``root`` and
    ``(relative name, path, reason)`` for what is skipped: FIFOs, devices, sockets, and symbolic
    links unless ``follow_symlinks`` (then a link to a folder is walked, once per real folder)."""
    seen = {os.path.realpath(root)}
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            names = sorted(os.listdir(folder))
        except OSError as e:
            yield Path(folder).relative_to(root).as_posix(), Path(folder), f"folder unreadable ({e.strerror or e})"
            continue
        subfolders = []
        for name in names:
            p = Path(folder) / name
            rel = p.relative_to(root).as_posix()
            what = kind(p, follow_symlinks=False)
            if what == "link":
                if not follow_symlinks:
                    yield rel, p, "symbolic link, not followed (--follow-symlinks follows links)"
                    continue
                what = kind(p)
            if what == "folder":
                real = os.path.realpath(p)
                if real in seen:
                    yield rel, p, "link to a folder already read"
                else:
                    seen.add(real)
                    subfolders.append(p)
            elif what == "file":
                yield rel, p, None
            else:
                yield rel, p, f"not a regular file (a {what})"
        stack.extend(reversed(subfolders))
