"""How much memory this machine can give now, so work is sized to it before it starts.

The learned codec's working memory follows a slice's size (``benchmarks/codec_memory.md``: about
240 bytes a pixel to encode and 140 to decode, numpy's arrays and torch's together), and each
``slice_pool`` worker process holds its own, on top of torch, the weights and the numba kernels. A
digital breast tomosynthesis volume (4.6-megapixel slices) on 16 cores would ask for about 25 GB
at once; run as it is, the kernel's out-of-memory killer ends it (or a neighbour) with no word.
So the automatic number of workers is bounded by what is free (``slice_pool.workers``), and a
slice the learned codec cannot encode in what is free is said before the encode
(``compressor.encode_stream``).

What is free: Linux's ``MemAvailable`` (what can be allocated without swapping), and, inside a
container, what its cgroup's limit leaves; None where neither can be read (not Linux), and then
nothing is bounded.
"""

from __future__ import annotations

from pathlib import Path

#: one worker process before its first slice: torch, the weights, numba's kernels (measured 0.35-0.4 GB)
WORKER_BASE_BYTES = 450 << 20

_MEMINFO = Path("/proc/meminfo")
_CGROUP = Path("/sys/fs/cgroup")


def available() -> int | None:
    """Bytes this process could allocate now without swapping, or None if unknown."""
    free = [n for n in (_meminfo_available(), _cgroup_room()) if n is not None]
    return min(free) if free else None


def _meminfo_available() -> int | None:
    try:
        for line in _MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_room() -> int | None:
    """What the container's memory cgroup may still take (its limit less its use; cgroup v2 or v1), or
    None without a limit."""
    for limit, used in ((_CGROUP / "memory.max", _CGROUP / "memory.current"),
                        (_CGROUP / "memory" / "memory.limit_in_bytes", _CGROUP / "memory" / "memory.usage_in_bytes")):
        try:
            cap = limit.read_text().strip()
            if cap == "max" or int(cap) >= 1 << 60:  # v1 writes "no limit" as a number near 2**63
                return None
            return max(0, int(cap) - int(used.read_text().strip()))
        except (OSError, ValueError):
            continue
    return None


def human(n: int) -> str:
    """``n`` bytes in words: 1.2 GB, 450 MB."""
    if n >= 10**9:
        return f"{n / 10**9:.1f} GB"
    return f"{max(1, round(n / 10**6))} MB"
