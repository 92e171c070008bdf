"""The one in-memory type every part of lvpnet passes around."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import slicing


@dataclass
class Volume:
    """Stored values of an image or volume plus what is known about its geometry.

    ``array`` keeps the values exactly as the source stored them (no rescale, no
    LUT, no MONOCHROME1 inversion) in layout ``(frames..., rows, cols)`` or, when
    ``rgb`` is true, ``(frames..., rows, cols, 3)``.

    ``spacing`` has one entry per non-colour axis of ``array`` (mm for space,
    the source's unit for time); ``origin`` is the position of the first voxel
    (x, y, z in patient/scanner mm) and ``direction`` a 3x3 matrix of direction
    cosines; ``affine`` is the source's 4x4 voxel-to-world matrix where it has
    one (NIfTI). Any of them may be ``None`` when the source does not say.

    ``metadata`` must be JSON-serialisable: it travels in the ``.lvp`` header.
    ``blobs`` are opaque per-source-file byte strings (for example everything
    of a DICOM file but its pixel data) stored beside the header.
    """

    array: np.ndarray
    rgb: bool = False
    spacing: tuple[float, ...] | None = None
    origin: tuple[float, ...] | None = None
    direction: tuple[tuple[float, ...], ...] | None = None
    affine: np.ndarray | None = None
    source_format: str = "numpy"
    metadata: dict[str, Any] = field(default_factory=dict)
    blobs: list[bytes] = field(default_factory=list)

    @property
    def slice_shape(self) -> tuple[int, ...]:
        """Shape of one 2-D slice (``(rows, cols)`` or ``(rows, cols, 3)``)."""
        return slicing.slice_shape(self.array.shape, self.rgb)

    @property
    def frame_shape(self) -> tuple[int, ...]:
        """Leading axes that are iterated slice by slice (may be empty)."""
        return tuple(self.array.shape[: self.array.ndim - len(self.slice_shape)])

    @property
    def n_slices(self) -> int:
        return slicing.n_slices(self.array.shape, self.rgb)
