"""The status bar's pixel value in the scan's own units, beside the stored integer.

Layers keep the stored integers (lossless, and what the writer saves), so a CT whose Rescale
Intercept is -1024 reads 1064 where the tissue is 40 HU. napari's Image has no display rescale,
so the layers the readers make answer ``get_status`` with the rescaled value added:
``[12 250 301]: 1064 (40 HU)``. The unit is the DICOM Rescale Type, HU for a CT that names none;
NIfTI's ``scl_slope`` / ``scl_inter`` give a value without a unit. A series whose files differ in
their rescale (PET) is rescaled with the shown slice's own slope and intercept.
"""

from __future__ import annotations

import numpy as np

from ._layers import stored_rescale


def units_of(metadata: dict) -> str:
    """The unit of the rescaled values ('' where the source does not say)."""
    kind = (metadata.get("dicom") or {}).get("rescale_type")
    kinds = {str(k).strip() for k in (kind if isinstance(kind, list) else [kind]) if k}
    if len(kinds) == 1 and kinds != {"US"}:  # US: "unspecified" in DICOM
        return kinds.pop()
    if not kinds and str(metadata.get("modality", "")).upper() == "CT" and metadata.get("dicom"):
        return "HU"  # DICOM: a CT's rescaled values are Hounsfield units
    return ""


def rescaled_text(value, i: int | None, slope: np.ndarray, inter: np.ndarray, unit: str) -> str | None:
    """'40 HU' for stored ``value`` on slice ``i`` (None: the slice is unknown, right only where every
    slice has the same rescale); None where there is nothing to say."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    if len(slope) > 1:
        if i is None or not 0 <= i < len(slope):
            return None
        slope, inter = slope[i : i + 1], inter[i : i + 1]
    x = float(value) * float(slope[0]) + float(inter[0])
    if not np.isfinite(x):
        return None
    whole = float(slope[0]).is_integer() and float(inter[0]).is_integer() and float(value).is_integer()
    text = f"{int(x)}" if whole else f"{x:.6g}"
    return f"{text} {unit}" if unit else f"= {text}"


def attach(layer) -> None:
    """Make ``layer`` (an Image from this plugin's readers) show its rescaled values in the status bar;
    nothing for RGB, or where the rescale is the identity."""
    if getattr(layer, "rgb", False) or getattr(layer, "_lvpnet_readout", False):
        return
    slope, inter = stored_rescale(layer.metadata)
    if np.all(slope == 1) and np.all(inter == 0):
        return
    unit = units_of(layer.metadata)
    plain = layer.get_status

    def get_status(position=None, **kw):
        status = plain(position, **kw)
        if position is None:
            return status
        try:
            text = _text(layer, position, kw, slope, inter, unit)
        except Exception:  # noqa: BLE001 - the readout must never take the status bar down with it
            text = None
        if text:
            status["value"] = f"{status.get('value', '')} ({text})"
            status["coordinates"] = f"{status.get('coordinates', '')} ({text})"
        return status

    layer.get_status = get_status
    layer._lvpnet_readout = True


def _text(layer, position, kw, slope, inter, unit) -> str | None:
    value = layer.get_value(position, view_direction=kw.get("view_direction"),
                            dims_displayed=kw.get("dims_displayed"), world=kw.get("world", False))
    i = None
    if len(slope) > 1 and layer.ndim == 3 and layer.data.shape[0] == len(slope):
        data_pos = layer.world_to_data(position) if kw.get("world", False) else np.asarray(position)
        i = int(np.round(np.asarray(data_pos)[-3]))
    return rescaled_text(value, i, slope, inter, unit)
