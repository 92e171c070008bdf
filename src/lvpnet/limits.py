"""How much memory a file may make lvpnet allocate.

A file states its own sizes (an array shape, a record length, a NIfTI header's
dimensions). Trusted as they are, a few hundred crafted bytes could ask for
gigabytes. So every size a reader is about to allocate is checked first
against a budget that follows the size of the file that asks for it:

    budget = max(256 MiB, 4096 x the file's size)

(65536 x, and at least 1 GiB, for a decoder's working memory on one slice; docs/FORMAT.md, "Limits"). A genuine file that decodes to more than that
(a large, nearly empty mask, say) is refused with a message saying how to
raise the limit: ``--max-memory SIZE`` on the command line or the environment
variable ``LVPNET_MAX_MEMORY``, either of which replaces the rule by one fixed
number of bytes. A file this process has just written from an array it holds
(``compress`` reads it back to verify it) may take what that array takes.
"""

from __future__ import annotations

import math
import numbers
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import InputError, LimitError

ENV = "LVPNET_MAX_MEMORY"
FLOOR = 256 << 20
RATIO = 4096
# A decoder's working memory for one slice follows the slice's size, not its content: the learned
# codec takes about 540 bytes per pixel, so a 13-megapixel mammogram coded at 0.5 bit per pixel
# needs 8,000 times its file. It gets a wider ratio; the floor still bounds a tiny crafted file.
WORK_RATIO = 65536
# ... and a wider floor: a 1024 x 1024 slice (515 MiB at 512 bytes a pixel) decodes whatever its file's
# size (a nearly empty mask compressed to 3 kB was refused in any process but the one that wrote it)
WORK_FLOOR = 1 << 30

_override: int | None = None  # --max-memory, set once by the command line
# files this process wrote from arrays it holds, by array hash -> bytes their reading back may take
_WRITTEN: dict[str, int] = {}
_WRITTEN_KEPT = 64
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_OWN = threading.local()  # .depth > 0: this thread reads back what it has just written from memory


@contextmanager
def own_output() -> Iterator[None]:
    """On this thread, reading back what this process has just written from what it holds in memory
    (``compress`` verifying its file): no file's word is taken here, so no limit applies (the DICOM
    archive's file records were refused under ``--max-memory`` although they were built from files
    just read). Worker processes decoding the slices get ``remember_written``'s allowance instead."""
    _OWN.depth = getattr(_OWN, "depth", 0) + 1
    try:
        yield
    finally:
        _OWN.depth -= 1


def parse_size(text: str) -> int:
    """``"8G"``, ``"512m"``, ``"1.5g"`` or a plain number of bytes -> bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*", str(text), re.IGNORECASE)
    if not m:
        raise LimitError(f"{text!r} is not a size (examples: 4G, 512M, 1000000)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def set_max_memory(size: int | str | None) -> None:
    """Replace the budget by a fixed number of bytes, or a size such as ``"8G"`` (None: back to the rule or
    the environment)."""
    global _override
    given = size
    if isinstance(size, str):
        size = parse_size(size)
    if size is not None and (isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1):
        said = f"{given!r}" + (f" ({size} bytes)" if isinstance(given, str) else "")  # '0.5' is 0 bytes
        raise InputError(f"max memory must be a positive number of bytes or a size such as '8G', not {said}")
    _override = None if size is None else int(size)


def explicit_limit() -> int | None:
    """The limit the user set (``--max-memory``, else ``LVPNET_MAX_MEMORY``), or None."""
    if _override is not None:
        return _override
    env = os.environ.get(ENV)
    if not env:
        return None
    try:
        return parse_size(env)
    except LimitError:
        raise LimitError(f"{ENV}={env!r} is not a size (examples: 4G, 512M)") from None


def remember_written(array_hash: str, shape: list[int], itemsize: int, rgb: bool) -> None:
    """A file this process has just written from an array it holds (``compress`` reads it back to
    verify it): reading that file may take what the array and one slice's decoding take, whatever
    the rule says, since the array is already in memory. Keyed by the array's hash, so only a file
    of the very same data gets the allowance."""
    rows, cols = shape[-3:-1] if rgb else shape[-2:]
    per_pixel = 512 + 3 * itemsize * (3 if rgb else 1)  # the learned codec's working memory, the most of any codec
    _WRITTEN[array_hash] = math.prod(shape) * itemsize + per_pixel * rows * cols
    while len(_WRITTEN) > _WRITTEN_KEPT:
        _WRITTEN.pop(next(iter(_WRITTEN)))


def state(array_hash: str | None) -> tuple[int | None, int]:
    """What another process needs to judge this file as this one does (``adopt``): the user's
    limit and the allowance of a file this process has just written."""
    return explicit_limit(), _WRITTEN.get(array_hash, 0) if isinstance(array_hash, str) else 0


def adopt(array_hash: str | None, st: tuple[int | None, int]) -> None:
    """Take over ``state(array_hash)`` of the process that hands this one a file to read."""
    limit, written = st
    set_max_memory(limit)
    if isinstance(array_hash, str) and written:
        _WRITTEN[array_hash] = written


def budget(file_bytes: int, array_hash: str | None = None, ratio: int = RATIO) -> int:
    """Bytes a file of ``file_bytes`` (whose header names ``array_hash``) may make a reader allocate
    (``ratio``: ``WORK_RATIO`` for a decoder's working memory)."""
    written = _WRITTEN.get(array_hash, 0) if isinstance(array_hash, str) else 0
    limit = explicit_limit()
    if limit is not None:  # the user's, for what files declare; a file just written from memory still reads back
        return max(limit, written)
    floor = WORK_FLOOR if ratio == WORK_RATIO else FLOOR
    return max(floor, ratio * int(file_bytes), written)


def check(nbytes: int, file_bytes: int, what: str, array_hash: str | None = None, ratio: int = RATIO) -> None:
    """Refuse to allocate ``nbytes`` for ``what`` (a file and the thing it declares) beyond the budget."""
    if getattr(_OWN, "depth", 0):
        return
    allowed = budget(file_bytes, array_hash, ratio)
    if nbytes > allowed:
        how = ("the limit set" if explicit_limit() is not None
               else f"the default limit for a file of {file_bytes:,} bytes")
        need, have = _human(nbytes), _human(allowed)
        if need == have:  # rounding would hide the difference
            need, have = f"{nbytes:,} bytes", f"{allowed:,} bytes"
        raise LimitError(
            f"{what} needs {need} of memory, more than {how} ({have}); "
            f"if the file is genuine, raise the limit with --max-memory SIZE or {ENV}=SIZE "
            "(in Python: lvpnet.limits.set_max_memory(bytes))"
        )


def _human(n: int) -> str:
    """'1.5 GiB', or '512.0 PiB' for a size a crafted header declares (it read '562949953421312.0 GiB')."""
    for unit, size in (("EiB", 1 << 60), ("PiB", 1 << 50), ("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20),
                       ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n} bytes"
