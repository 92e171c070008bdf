"""Atomic file output: a temporary file beside the target, renamed into place.

An interrupted, cancelled or failed write never leaves a partial file under
the final name, and an existing file of that name stays untouched until the
new one is complete.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_COMPOUND_SUFFIXES = (".nii.gz",)


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in _COMPOUND_SUFFIXES:
        if name.endswith(suffix):
            return path.name[-len(suffix) :]
    return path.suffix


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it to ``path`` on success.

    The temporary name keeps the target's extension (writers such as nibabel
    choose the format from it) and starts with a dot so file browsers hide it.
    """
    target = Path(path)
    if not target.parent.is_dir():
        from .errors import InputError

        raise InputError(f"{target}: the folder {target.parent} does not exist")
    suffix = _suffix(target)
    stem = target.name[: len(target.name) - len(suffix)] if suffix else target.name
    tmp = target.with_name(f".{stem}.partial-{secrets.token_hex(4)}{suffix}")
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, target)
    except BaseException:  # includes GeneratorExit and KeyboardInterrupt: never leave the temp behind
        tmp.unlink(missing_ok=True)
        raise


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
