"""The status bar's pixel value in the scan's own units, beside the stored integer.

Layers keep the stored integers (lossless, and what the writer saves), so a CT whose Rescale
Intercept is -1024 reads 1064 where the tissue is 40 HU. napari's Image has no display rescale,
so the layers the readers make answer ``get_status`` with the rescaled value added:
``[12 250 301]: 1064 (40 HU)``. The unit is the DICOM Rescale Type, HU for a CT that names none;
NIfTI's ``scl_slope`` / ``scl_inter`` give a value without a unit. A series whose files differ in
their rescale (PET) is rescaled with the shown slice's own slope and intercept.

A ``.lvp`` layer's slices that are damaged or not decoded yet hold placeholders, not the scan: there
the status bar says so instead of a value (a placeholder read as -1024 HU looked like air).
"""

from __future__ import annotations

import weakref

import numpy as np

from ._layers import stored_rescale
from ._messages import blocked_by, plain_words, state


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
    """Make ``layer`` (an Image from this plugin's readers) show its rescaled values in the status bar,
    and name the slices a ``.lvp`` layer only has placeholders for; nothing for an RGB layer or an
    identity rescale read from an array in memory."""
    from ._lazy import LazySlices

    if getattr(layer, "_lvpnet_readout", False):
        return
    slope, inter = stored_rescale(layer.metadata)
    identity = bool(np.all(slope == 1) and np.all(inter == 0)) or getattr(layer, "rgb", False)
    lazy = layer.data if isinstance(layer.data, LazySlices) else None
    if identity and lazy is None:
        return
    unit = units_of(layer.metadata)
    plain = type(layer).get_status  # unbound, and the layer held weakly: no cycle keeps a removed layer alive
    me = weakref.ref(layer)

    def get_status(position=None, **kw):
        layer = me()
        status = plain(layer, position, **kw)
        if position is None:
            return status
        try:
            frame = _frame(layer, position, kw, lazy)
            text = None if identity else _text(layer, position, kw, frame, slope, inter, unit)
            absent = _placeholder(lazy, frame)
        except Exception:  # noqa: BLE001 - the readout must never take the status bar down with it
            text = absent = None
        if absent:  # no value: what is drawn there is not the scan
            status["value"] = absent
            status["coordinates"] = f"{status.get('coords', '')}: {absent}"
        elif text:
            status["value"] = f"{status.get('value', '')} ({text})"
            status["coordinates"] = f"{status.get('coordinates', '')} ({text})"
        return status

    layer.get_status = get_status
    layer._lvpnet_readout = True


def _frame(layer, position, kw, lazy) -> tuple[int, ...] | None:
    """The index of the slice under ``position`` on the layer's leading axes (None: outside them)."""
    n_lead = layer.ndim - 2
    if n_lead <= 0:
        return ()
    shown = kw.get("dims_displayed")  # the viewer's displayed axes; the layer's are its last ``layer.ndim``
    if shown is not None and any(0 <= d - (len(position) - layer.ndim) < n_lead for d in shown):
        return None  # a 3-D view across the slices: the cursor is on a ray, not on one slice
    data_pos = layer.world_to_data(position) if kw.get("world", False) else np.asarray(position)
    lead = tuple(int(np.round(v)) for v in np.asarray(data_pos)[-layer.ndim:][:n_lead])
    shape = lazy.frame_shape if lazy is not None else layer.data.shape[:n_lead]
    return lead if all(0 <= i < n for i, n in zip(lead, shape)) else None


def _placeholder(lazy, frame) -> str | None:
    """'damaged slice' or 'not decoded yet' where a ``.lvp`` layer shows a placeholder, else None."""
    if lazy is None or frame is None:
        return None
    i = int(np.ravel_multi_index(frame, lazy.frame_shape)) if frame else 0
    error = lazy.loader.failed.get(i)
    if error is not None:  # named as the sliders name it (a 4-D layer: 'time 1, slice 3')
        feed = getattr(lazy, "feed", None)
        words = plain_words if feed is None else feed.words
        damaged = blocked_by(error, lazy.loader.lvp.name, i)
        if damaged is not None:  # its own chunk is fine: it needs the slices before it back to a damaged one
            return f"{words(i)}: no value (it needs {words(damaged)}, which {state(error)})"
        return f"{words(i)} {state(error)}: no value"
    if lazy.loader.get(i) is None:
        return "not decoded yet"
    return None


def _text(layer, position, kw, frame, slope, inter, unit) -> str | None:
    value = layer.get_value(position, view_direction=kw.get("view_direction"),
                            dims_displayed=kw.get("dims_displayed"), world=kw.get("world", False))
    i = frame[0] if len(slope) > 1 and frame and len(frame) == 1 and layer.data.shape[0] == len(slope) else None
    return rescaled_text(value, i, slope, inter, unit)
