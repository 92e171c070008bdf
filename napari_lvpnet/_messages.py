"""Error messages for people looking at the viewer.

The core's messages start with the file's full path ("/long/folder/ct.lvp: slice 8: chunk
checksum mismatch (the file is damaged)"); a napari notification shows only its first line,
cut to about 40 characters, so that line would show a folder. Here the first line says which
slice and what is wrong before it names the file ("Slice 8 is damaged: checksum mismatch
(ct.lvp)"), and the second gives the core's words in full (what ``lvpnet verify`` prints).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from lvpnet.errors import DamagedError

_SLICE = re.compile(r"^slice (\d+):? (.*)$", re.DOTALL)


def _strip_name(text: str, name: str) -> str:
    for prefix in (f"{name}: ", f"{Path(name).name}: "):
        if text.startswith(prefix):
            return text[len(prefix):]
    return text


def error_slice(error: Exception, name: str) -> int | None:
    """The slice an error from ``LvpFile`` names, or None when it is about the whole file."""
    m = _SLICE.match(_strip_name(str(error), name))
    return int(m.group(1)) if m else None


def what_is_wrong(error: Exception, name: str) -> str:
    """The check that failed, in a few words ('checksum mismatch'), without the file or slice."""
    rest = _strip_name(str(error), name)
    m = _SLICE.match(rest)
    what = rest if m is None else m.group(2)
    return what.replace(" (the file is damaged)", "").replace("chunk checksum mismatch", "checksum mismatch")


def plain_words(i: int) -> str:
    """A slice as the file counts it ('slice 8'): a layer with one leading axis, or none."""
    return f"slice {i}"


def blocked_by(error: Exception, name: str, shown: int) -> int | None:
    """The slice whose damage keeps slice ``shown`` from being decoded when that is another slice (a slice
    coded against the one before it needs the whole run back to its start: the file's error names the run's
    damaged slice), else None."""
    i = error_slice(error, name)
    return i if i is not None and i < shown else None  # a slice needs only slices before it


def damaged_slice(error: Exception, name: str, shown: int) -> int:
    """The damaged slice behind slice ``shown``'s failure: the one it needs (``blocked_by``), else itself."""
    needed = blocked_by(error, name, shown)
    return shown if needed is None else needed


def state(error: Exception) -> str:
    """'is damaged' (the file's checks failed), or 'cannot be decoded' (anything else)."""
    return "is damaged" if isinstance(error, DamagedError) else "cannot be decoded"


def first_line(error: Exception, name: str, words: Callable[[int], str] = plain_words, shown: int | None = None) -> str:
    """One short line: which slice (or file), what is wrong, then the file's name; ``words`` names a
    slice by its flat number as the layer's sliders do ('time 1, slice 3' on a 4-D layer:
    ``_maps.slice_words``). ``shown``: the slice that could not be shown, said as the one that needs the
    damaged slice when the error names another ('Slice 5 cannot be shown: it needs slice 4, ...')."""
    file = Path(name).name
    i = error_slice(error, name)
    if i is None:
        return f"Cannot open {file}: {_strip_name(str(error), name)}"
    what = what_is_wrong(error, name)
    if shown is not None and blocked_by(error, name, shown) is not None:
        said = words(shown)
        return f"{said[:1].upper()}{said[1:]} cannot be shown: it needs {words(i)}, which {state(error)}: {what} ({file})"
    said = words(i)
    return f"{said[:1].upper()}{said[1:]} {state(error)}: {what} ({file})"


def notification(error: Exception, name: str, words: Callable[[int], str] = plain_words,
                 shown: int | None = None) -> str:
    """First line for the notification's collapsed view, then the core's words in full (the file's
    own numbering of slices: what ``lvpnet verify`` prints)."""
    return f"{first_line(error, name, words, shown)}\nin full: {error}"
