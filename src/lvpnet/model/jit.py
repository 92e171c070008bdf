"""numba as every kernel of lvpnet takes it (``njit``): with a cache folder it can write to.

The network's kernels (``model.head_kernel``, ``model.int8_trunk``) and the coding stages' (``coding.jit``,
``coding.refine``) all compile through here; ``model`` holds it because ``model`` never imports ``coding``.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

_CACHE: list[bool] = []  # whether numba has somewhere to keep its builds, worked out once

# One thread decorates lvpnet's kernels at a time: two viewer threads opening two files at once both
# built the head kernel, the second re-decorating a helper the first had already replaced by its jitted
# version (numba's TypeError), which killed that file's decode thread and left its layer blank.
BUILD_LOCK = threading.RLock()


def njit(**options):
    """``numba.njit`` as every kernel of lvpnet takes it: ``nogil``, and ``cache`` wherever numba can
    write its builds (``cache_ok``). numba must be importable (ImportError otherwise)."""
    import numba

    return numba.njit(cache=cache_ok(), nogil=True, **options)


_BUILT: dict = {}


def compiled(fn, **options):
    """``fn`` compiled by ``njit(**options)`` once a process (a kernel is always built with the same
    options), or False without numba: the caller then takes its exact numpy twin."""
    if fn not in _BUILT:
        with BUILD_LOCK:
            if fn not in _BUILT:
                try:
                    _BUILT[fn] = njit(**options)(fn)
                except ImportError:
                    _BUILT[fn] = False
    return _BUILT[fn]


def cache_ok() -> bool:
    """Make sure numba's ``cache=True`` has a folder to write to, and say whether it does.

    numba keeps a build in the ``__pycache__`` beside the module (where ``make demo`` leaves them),
    else in the user's cache (``$XDG_CACHE_HOME/numba`` or ``~/.cache/numba``); with neither
    writable (another user's install and a read-only home: a locked-down server) ``cache=True``
    raised "cannot cache function ... no locator available", and a good file read as damaged. Then
    the builds go to a folder of this user's in the temporary folder (``NUMBA_CACHE_DIR``), or are
    not kept at all (compiled in each process: slower to start, the same integers)."""
    if not _CACHE:
        _CACHE.append(_find_cache())
    return _CACHE[0]


def _find_cache() -> bool:
    if os.environ.get("NUMBA_CACHE_DIR"):  # the user's choice
        return True
    here = Path(__file__).resolve().parent.parent
    if all(_usable(d / "__pycache__") for d in (here / "model", here / "coding")):
        return True
    from numba.misc.appdirs import AppDirs

    if _usable(Path(AppDirs(appname="numba", appauthor=False).user_cache_dir)):
        return True
    own = Path(tempfile.gettempdir()) / f"lvpnet-numba-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
    try:
        own.mkdir(mode=0o700, exist_ok=True)
        mine = own.stat().st_uid == os.getuid() if hasattr(os, "getuid") else True
    except OSError:
        mine = False
    if mine and _usable(own):  # never a folder another user made for us to load code from
        import numba.core.config

        os.environ["NUMBA_CACHE_DIR"] = str(own)
        numba.core.config.CACHE_DIR = str(own)  # numba read the environment when it was imported
        return True
    return False


def _usable(folder: Path) -> bool:
    """numba's own test of a cache folder: it can be made, and a file written in it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
        return True
    except OSError:
        return False


