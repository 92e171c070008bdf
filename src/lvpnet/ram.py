"""How much memory this machine can give now, so work is sized to it before it starts.

The learned codec's working memory follows a slice's size (``benchmarks/codec_memory.md``: about
240 bytes a pixel to encode and 140 to decode, numpy's arrays and torch's together), and each
``slice_pool`` worker process holds its own, on top of torch, the weights and the numba kernels. A
digital breast tomosynthesis volume (4.6-megapixel slices) on 16 cores would ask for about 25 GB
at once; run as it is, the kernel's out-of-memory killer ends it (or a neighbour) with no word.
So the automatic number of workers is bounded by what is free (``slice_pool.workers``), and a
slice the learned codec cannot encode in what is free is said before the encode
(``compressor.encode_stream``).

What is free: Linux's ``MemAvailable`` (what can be allocated without swapping), and what the
limits of this process's memory cgroups leave (a container's, a systemd unit's ``MemoryMax=``, a
SLURM job's ``--mem``); None where neither can be read (not Linux), and then nothing is bounded.
"""

from __future__ import annotations

from pathlib import Path

#: one worker process before its first slice: torch, the weights, numba's kernels (measured 0.35-0.4 GB)
WORKER_BASE_BYTES = 450 << 20

_MEMINFO = Path("/proc/meminfo")
_CGROUP = Path("/sys/fs/cgroup")
_PROC_CGROUP = Path("/proc/self/cgroup")


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
    """What this process's memory cgroups may still take (each one's limit less its use, the least of
    them; cgroup v2 or v1), or None without a limit."""
    rooms = []
    for limit, used in _cgroup_files():
        try:
            cap = limit.read_text().strip()
            if cap == "max" or int(cap) >= 1 << 60:  # v1 writes "no limit" as a number near 2**63
                continue
            rooms.append(max(0, int(cap) - int(used.read_text().strip())))
        except (OSError, ValueError):
            continue
    return min(rooms) if rooms else None


def _cgroup_files() -> list[tuple[Path, Path]]:
    """(limit file, usage file) of the cgroup the mount shows at its root (a container's own) and of this
    process's own memory cgroup (``/proc/self/cgroup``) and every one above it: systemd's ``MemoryMax=``
    and SLURM's ``--mem`` limit a cgroup below the root, which the root's files do not show."""
    own = {"v2": ["/"], "v1": ["/"]}
    try:
        for line in _PROC_CGROUP.read_text().splitlines():
            hierarchy, controllers, path = line.split(":", 2)
            if hierarchy == "0" and not controllers:
                own["v2"].append(path)
            elif "memory" in controllers.split(","):
                own["v1"].append(path)
    except (OSError, ValueError):
        pass
    out: list[tuple[Path, Path]] = []
    for base, paths, names in ((_CGROUP, own["v2"], ("memory.max", "memory.current")),
                               (_CGROUP / "memory", own["v1"], ("memory.limit_in_bytes", "memory.usage_in_bytes"))):
        for path in paths:
            parts = [p for p in path.split("/") if p and p not in (".", "..")]
            for k in range(len(parts) + 1):  # the cgroup and each one above it
                folder = base.joinpath(*parts[:k])
                if (folder / names[0], folder / names[1]) not in out:
                    out.append((folder / names[0], folder / names[1]))
    return out


def human(n: int) -> str:
    """``n`` bytes in words: 1.2 GB, 450 MB."""
    if n >= 10**9:
        return f"{n / 10**9:.1f} GB"
    return f"{max(1, round(n / 10**6))} MB"
