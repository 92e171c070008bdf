"""The one interface every slice codec implements.

A codec turns one 2-D slice (``(rows, cols)`` or ``(rows, cols, 3)`` for RGB)
into bytes and back. The container stores the codec id and version of every
chunk and hands ``shape`` and ``dtype`` back on decode, so a chunk need not
repeat them. Any change to what ``encode`` writes for the same input is a
format change: bump ``version`` and keep decoding the old one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class Codec(ABC):
    #: short stable name written into every chunk record
    id: str = ""
    #: version of the chunk bitstream this class writes
    version: int = 1
    #: versions of the chunk bitstream this class can read
    reads_versions: tuple[int, ...] = (1,)

    def accepts(self, dtype: np.dtype, rgb: bool) -> bool:
        """Whether this codec can code slices of this dtype losslessly."""
        return True

    @abstractmethod
    def encode(self, slice_: np.ndarray) -> bytes:
        """Code one slice losslessly."""

    @abstractmethod
    def decode(self, data: bytes, shape: tuple[int, ...], dtype: np.dtype, version: int) -> np.ndarray:
        """Decode one chunk written by ``encode`` (of the given bitstream ``version``)."""

    def model_id(self) -> str | None:
        """sha256 of the weights the codec uses, or None for a classical codec."""
        return None
