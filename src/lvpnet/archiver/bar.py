"""The progress line of ``lvpnet archive`` / ``restore``: items done of total, bytes in and out,
failures and the time left, on stderr and only on a terminal (the style of ``lvpnet compress``'s
bar). The time left is estimated from the source bytes done, as items differ much in size."""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..terminal import StatusLine, bar, duration


@dataclass(frozen=True)
class ArchiveProgress:
    stage: str  # "archive", "restore", or "check" (archive --check reading the outputs it would skip)
    done: int  # items finished this run (failed ones included)
    total: int  # items this run
    bytes_in: int  # bytes read so far (sources, or archive files for a restore)
    bytes_out: int  # bytes written so far
    total_bytes_in: int  # bytes all this run's items will read
    failed: int  # for "check": the outputs found damaged


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"  # pragma: no cover - the loop returns


class ArchiveBar(StatusLine):
    def __init__(self, enabled: bool | None = None, clock=time.monotonic, stream=None):
        super().__init__(enabled, stream)
        self.clock = clock
        self._start: float | None = None
        self._stage = ""

    def __call__(self, p: ArchiveProgress) -> None:
        if not self.enabled:
            return
        now = self.clock()
        if self._start is None or p.stage != self._stage:  # each stage its own time left
            self._start, self._stage = now, p.stage
        line = f"\r{p.stage:>7} {bar(p.done, p.total, 24)} {p.done}/{p.total} items, "
        if p.stage == "check":
            line += f"{human_bytes(p.bytes_in)} read" + (f", {p.failed} damaged" if p.failed else "")
        else:
            line += f"{human_bytes(p.bytes_in)} -> {human_bytes(p.bytes_out)}" + (f", {p.failed} failed" if p.failed else "")
        if 0 < p.bytes_in < p.total_bytes_in and p.done < p.total:
            left = (now - self._start) / p.bytes_in * (p.total_bytes_in - p.bytes_in)
            line += f", {duration(left)} left"
        self.draw(line, final=p.done == p.total)
