"""numba, when it is installed, for the kernels that have an exact numpy twin.

Each kernel is a plain Python function whose numpy path gives the same integers; ``compiled``
hands back its numba build (compiled once per process, cached beside the package) or False,
so the caller takes the numpy path where numba is missing.
"""

from __future__ import annotations

from ..model.jit import BUILD_LOCK, compiled

__all__ = ["BUILD_LOCK", "compiled"]
