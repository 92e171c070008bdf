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


def learned_takes(dtype: np.dtype) -> bool:
    """The data the learned codec codes: integers of at most 16 bits (grey or RGB). Here, torch-free, so
    choosing the codec for floats or wide integers does not import torch (1.5 s) only to say no."""
    dtype = np.dtype(dtype)
    return dtype.kind in "iu" and dtype.itemsize <= 2


class Codec(ABC):
    #: short stable name written into every chunk record
    id: str = ""
    #: version of the chunk bitstream this class writes
    version: int = 1
    #: versions of the chunk bitstream this class can read
    reads_versions: tuple[int, ...] = (1,)
    #: whether ``encode`` and ``decode`` take ``reference=``, the slice before this one in the file
    #: (a chunk coded against it decodes only with it: ``needs_reference``)
    takes_reference: bool = False

    def accepts(self, dtype: np.dtype, rgb: bool) -> bool:
        """Whether this codec can code slices of this dtype losslessly."""
        return True

    @abstractmethod
    def encode(self, slice_: np.ndarray) -> bytes:
        """Code one slice losslessly."""

    @abstractmethod
    def decode(self, data: bytes, shape: tuple[int, ...], dtype: np.dtype, version: int) -> np.ndarray:
        """Decode one chunk written by ``encode`` (of the given bitstream ``version``)."""

    def decode_walk(self, data: bytes, shape: tuple[int, ...], dtype: np.dtype, version: int, **kw):
        """``decode`` as a walk generator: a learned codec's yields its network's asks, so that the
        walks of many slices can share the network's calls (``LVPNetCodec``, ``Engine.run_lanes``); a
        classical codec's asks nothing and returns the slice."""
        return self.decode(data, shape, dtype, version, **kw)
        yield  # never reached: it makes this function a generator

    def drive(self, walk):
        """Runs a walk generator of this codec's here: its return value."""
        try:
            next(walk)
        except StopIteration as stop:
            return stop.value
        raise RuntimeError(f"{self.id} codec: a walk asked for a network it does not have")

    def needs_reference(self, data: bytes, shape: tuple[int, ...], version: int) -> bool:
        """Whether this chunk decodes only with ``reference=`` (never, unless ``takes_reference``)."""
        return False

    def model_id(self) -> str | None:
        """sha256 of the weights the codec uses, or None for a classical codec."""
        return None

    def chunk_stats(
        self, data: bytes, shape: tuple[int, ...], dtype: np.dtype, version: int
    ) -> dict[str, float] | None:
        """Optional figures about one chunk this codec wrote, for ``lvpnet bench``; None when it has none.

        Known keys (any subset; ``bench`` shows a column only when some chunk reports it):

        - ``latent_bits``: real bits of the latent stream in this chunk;
        - ``pixel_bits``: real bits of the pixel stream in this chunk;
        - ``estimated_bits``: the model's estimate (sum of -log2 p) of latent plus pixels;
        - ``estimated_latent_bits``, ``estimated_pixel_bits``: the estimate, part by part.

        ``8 * len(data)`` minus ``latent_bits + pixel_bits`` is the chunk's own header.
        Other numeric keys are summed and passed through to ``bench --json``.
        Called outside the timed encode and decode, so it may decode or run the model.
        """
        return None
