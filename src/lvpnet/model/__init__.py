"""LVPNet model: float GMSM encoder, learned latent prior, integer-exact decoder side.

The network only: the coding stages (tables adapted to the slice, flags, refinement, feedback,
lattice, the code-length estimate ``slice_bits``) are in ``lvpnet.coding``, which imports this
package and never the other way round.

Only torch and numpy are needed (no constriction, imagecodecs or Qt).
See docs/MODEL.md for the design and the codec-facing API.
"""

from .lvpnet import FORMAT, IntegerDecoder, LVPNet, ModelConfig, load_checkpoint, save_checkpoint
from .prep import (
    ORDERS,
    grey_slices,
    pad_edge,
    padded_size,
    planes_to_rgb,
    polyphase_pad,
    rgb_to_planes,
    slice_params,
    sub_real_shape,
)
from .tables import PREC, TOTAL, pixel_bits_exact, pixel_symbols, values_from_symbols

__all__ = [
    "FORMAT",
    "IntegerDecoder",
    "LVPNet",
    "ModelConfig",
    "ORDERS",
    "PREC",
    "TOTAL",
    "grey_slices",
    "load_checkpoint",
    "pad_edge",
    "padded_size",
    "pixel_bits_exact",
    "pixel_symbols",
    "planes_to_rgb",
    "polyphase_pad",
    "rgb_to_planes",
    "save_checkpoint",
    "slice_params",
    "sub_real_shape",
    "values_from_symbols",
]
