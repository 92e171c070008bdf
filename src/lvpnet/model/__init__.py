"""LVPNet model: float GMSM encoder, learned latent prior, integer-exact decoder side.

The network only: the coding stages (tables adapted to the slice, flags, refinement, feedback,
lattice, the code-length estimate ``slice_bits``) are in ``lvpnet.coding``, which imports this
package and never the other way round.

Only torch and numpy are needed (no constriction, imagecodecs or Qt).
See docs/MODEL.md for the design and the codec-facing API.
"""

import importlib

# name -> the submodule that defines it. Imported when first asked for (PEP 562): the submodules
# that need torch bring it in then, so ``lvpnet.model.prep`` alone (the chunk reader's, which
# ``lvpnet info`` runs) costs no torch import.
_WHERE = {
    **dict.fromkeys(("FORMAT", "IntegerDecoder", "LVPNet", "ModelConfig", "load_checkpoint", "load_error",
                     "save_checkpoint"), "lvpnet"),
    **dict.fromkeys(("ORDERS", "grey_slices", "pad_edge", "padded_size", "planes_to_rgb", "polyphase_pad",
                     "rgb_to_planes", "slice_params", "sub_real_shape"), "prep"),
    **dict.fromkeys(("PREC", "TOTAL", "pixel_bits_exact", "pixel_symbols", "values_from_symbols"), "tables"),
}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *_WHERE})


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
    "load_error",
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
