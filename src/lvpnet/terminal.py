"""One status line redrawn in place on a terminal: the progress bars of ``lvpnet compress`` and of
``lvpnet archive`` / ``restore`` draw through it (stderr, and only on a terminal)."""

from __future__ import annotations

import re
import sys


def printable(text: str, lines: bool = True) -> str:
    """``text`` safe to print on a terminal: control characters (an escape sequence in a crafted file's name
    would drive the terminal) and lone surrogates (which UTF-8 cannot print: exit 3) as backslash escapes;
    tabs and, with ``lines``, newlines kept (a message's own lines; not in one value of a listing)."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    control = r"[\x00-\x08\x0b-\x1f\x7f-\x9f]" if lines else r"[\x00-\x08\x0a-\x1f\x7f-\x9f]"  # C1 too
    return re.sub(control, lambda m: f"\\x{ord(m.group()):02x}", text)


def duration(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour on."""
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def time_left(seconds: float) -> str:
    """", 1:49 left" for a progress line, or nothing under a second: never "0:00 left" with slices to go
    (worker processes hand results over in bursts: Inspect said "slice 8 of 24, 0:00 left" right after
    its first)."""
    return f", {duration(seconds)} left" if seconds >= 1.0 else ""


def bar(done: int, total: int, width: int) -> str:
    filled = width * done // max(total, 1)
    return f"[{'#' * filled}{'.' * (width - filled)}]"


class StatusLine:
    def __init__(self, enabled: bool | None = None, stream=None):
        self.stream = sys.stderr if stream is None else stream
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._drawn = 0  # length of what the current terminal line shows

    def draw(self, line: str, final: bool) -> None:
        """Show ``line`` (starting with a carriage return) over the last one; ``final`` ends it."""
        self.stream.write(line.ljust(self._drawn))  # a shorter line wipes the longer one's tail
        self._drawn = len(line)
        if final:
            self.stream.write("\n")
            self._drawn = 0
        self.stream.flush()
