"""Whole folder trees of studies to ``.lvp`` and back, on dask.distributed (``lvpnet archive``,
``lvpnet restore``; ``lvpnet.archive(...)`` and ``lvpnet.restore(...)`` in Python). The package is
not called ``archive`` so that it never shadows the function ``lvpnet.archive``.

- :mod:`.walk`: what SOURCE holds (DICOM series, NIfTI and ``.npy`` files, other files) and the
  output name of each;
- :mod:`.ledger`: the SQLite ledger in DEST, written by the client only;
- :mod:`.tasks`: the idempotent per-item functions the workers run;
- :mod:`.engine`: the local cluster, or the client of an existing one;
- :mod:`.run`: the orchestration and the summary; :mod:`.bar`: the progress line.
"""

from __future__ import annotations

from .run import archive, restore

__all__ = ["archive", "restore"]
