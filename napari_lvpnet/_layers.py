"""Turn Volumes (or opened .lvp files) into napari layer data tuples.

Values stay the stored integers; geometry becomes ``scale`` (voxel spacing)
and ``translate`` (the origin projected on the volume's own axes, so layers of
one scan line up); contrast comes from the DICOM window, a CT soft-tissue
window, or the 0.5 to 99.5 percentiles.
"""

from __future__ import annotations

import json
import math

import numpy as np

from lvpnet import LvpFile, Volume, slice_pool

CT_SOFT_TISSUE = (40.0, 400.0)  # window centre and width in HU
LABELS_KEY = "napari_labels"  # in a .lvp's metadata: saved from a labels layer, opens as one


def _spatial_ndim(shape, rgb: bool) -> int:
    return len(shape) - (1 if rgb else 0)


def display_scale(spacing, ndim: int) -> list[float] | None:
    if spacing is None or len(spacing) != ndim:
        return None
    return [float(s) if s is not None and np.isfinite(s) and s > 0 else 1.0 for s in spacing]


def display_translate(origin, direction, ndim: int) -> list[float] | None:
    """Origin in the frame of the volume's axes: (..., slice, row, column)."""
    if origin is None or ndim < 2:
        return None
    o = np.asarray(origin, float)[:3]
    d = np.eye(3) if direction is None else np.asarray(direction, float)  # none given: the axes themselves
    if o.shape != (3,) or d.shape != (3, 3) or not np.isfinite(o).all() or not np.isfinite(d).all():
        return None
    # direction rows go with (column index, row index, slice index)
    along = [float(o @ d[2]), float(o @ d[1]), float(o @ d[0])]
    spatial = along[-min(ndim, 3):] if ndim >= 3 else along[1:]
    return [0.0] * (ndim - len(spatial)) + spatial


def _numbers(value, default: float, zero_ok: bool) -> np.ndarray:
    """A metadata entry (a number, or a list of them: one per file of a DICOM series whose files
    differ) as floats; a missing, unreadable or non-finite entry (and 0 where not ``zero_ok``) reads
    as ``default``."""
    out = []
    for v in value if isinstance(value, list) and value else [value]:
        try:
            f = float(v)
        except (TypeError, ValueError):
            f = default
        out.append(f if np.isfinite(f) and (zero_ok or f != 0) else default)
    return np.asarray(out, float)


def stored_rescale(metadata: dict) -> tuple[np.ndarray, np.ndarray]:
    """Slope and intercept from stored values to the scan's units (DICOM Rescale Slope and Intercept,
    NIfTI ``scl_slope`` / ``scl_inter``): arrays of one entry, or one per file where a DICOM series'
    files differ (a PET series' usually do); identity where the source gives none."""
    dicom = metadata.get("dicom") or {}
    nifti = metadata.get("nifti") or {}
    slope = _numbers(dicom.get("rescale_slope", nifti.get("scl_slope")), 1.0, zero_ok=False)
    inter = _numbers(dicom.get("rescale_intercept", nifti.get("scl_inter")), 0.0, zero_ok=True)
    if len(slope) != len(inter) and 1 not in (len(slope), len(inter)):
        return slope[:1], inter[:1]  # lists that do not pair up: the first file's
    slope, inter = np.broadcast_arrays(slope, inter)
    return slope, inter


def _first(v):
    while isinstance(v, (list, tuple)):  # multi-valued, or one value per file where the files differ
        v = v[0] if v else None
    return v


def window_limits(metadata: dict, rgb: bool) -> list[float] | None:
    """The stored DICOM window, or a CT soft-tissue window for CT, in stored values (None: no window)."""
    if rgb:
        return None
    slope, inter = stored_rescale(metadata)
    if np.ptp(slope) or np.ptp(inter):
        return None  # a window in the scan's units is other stored values on every slice: the percentiles
    slope, inter = float(slope[0]), float(inter[0])
    dicom = metadata.get("dicom") or {}
    centre, width = _first(dicom.get("window_center")), _first(dicom.get("window_width"))
    if centre is None and str(metadata.get("modality", "")).upper() == "CT":
        centre, width = CT_SOFT_TISSUE
    centre, width = _numbers(centre, np.nan, True)[0], _numbers(width, np.nan, True)[0]
    if np.isfinite(centre) and np.isfinite(width) and width > 0:
        lo, hi = centre - width / 2, centre + width / 2
        lo, hi = sorted(((lo - inter) / slope, (hi - inter) / slope))  # to stored values
        return [float(lo), float(hi)]
    return None


def contrast_limits(sample: np.ndarray, metadata: dict, rgb: bool) -> list[float] | None:
    """Stored-value limits for display: the window, else the 0.5 to 99.5 percentiles of ``sample``
    (None: let napari decide, e.g. for RGB)."""
    if rgb or sample.dtype.kind not in "iuf":
        return None
    window = window_limits(metadata, rgb)
    if window is not None:
        return window
    finite = sample[np.isfinite(sample)] if sample.dtype.kind == "f" else sample
    if finite.size == 0:
        return None
    lo, hi = np.percentile(finite, [0.5, 99.5])
    if hi <= lo:
        hi = lo + 1
    return [float(lo), float(hi)]


def slider_span(limits: list[float], values: np.ndarray) -> list[float]:
    """The contrast slider's range: the limits widened to the values shown (napari confines the slider
    to the limits a layer starts with, so a CT opened in a soft-tissue window could never be set to a
    bone or lung window, nor a percentile window widened to the brightest pixels)."""
    lo, hi = limits
    planes = values.reshape(-1, *values.shape[-2:]) if values.ndim > 2 else [values]
    for part in planes:  # a plane at a time: no copy of a whole float volume for its finite values
        if part.dtype.kind == "f":
            part = part[np.isfinite(part)]
        if part.size:
            lo, hi = min(lo, float(part.min())), max(hi, float(part.max()))
    return [lo, hi]


def _json_safe(metadata: dict) -> dict:
    out = {}
    for k, v in metadata.items():
        try:
            json.dumps(v)
        except (TypeError, ValueError):
            continue
        out[k] = v
    return out


def geometry(spacing, origin, direction, affine) -> dict:
    """The source's geometry as plain lists for ``layer.metadata["geometry"]``.

    Layers are placed with ``scale`` and ``translate`` along the scan's own axes, not rotated
    into world space: an oblique acquisition is shown in its own plane (napari slices a
    rotated volume only approximately). The world affine stays here for whoever needs it
    (``layer.affine = ...``; the Inspect maps follow an affine set on the image), and the
    writer stores it again in a saved ``.lvp``."""
    def plain(v):
        return None if v is None else np.asarray(v, dtype=float).tolist()

    return {"spacing": plain(spacing), "origin": plain(origin), "direction": plain(direction), "affine": plain(affine)}


def axis_labels(ndim: int, metadata: dict) -> tuple[str, ...]:
    """Names for the dims sliders: the last two axes are the image, the one before it the slice
    (the frame of a DICOM cine, which has no slice spacing), a 4-D series (time, slice, ...);
    labelled so that no other layer's axis passes for them."""
    dicom = metadata.get("dicom") or {}
    third = "frame" if dicom and not dicom.get("slice_spacing") else "slice"
    # beyond (time, slice): a NIfTI's fifth axis is its components (a vector or tensor per voxel, NIfTI's dim[5]);
    # any further axis by its number (they were all numbered, time and slice too)
    extra = ["component"] if ndim - 2 >= 3 and metadata.get("nifti") else []
    extra = [f"axis {k}" for k in range(ndim - 4 - len(extra))] + extra
    names = {1: (third,)}.get(ndim - 2, (*extra, "time", third))
    return (*names, "row", "column")[-ndim:]


def display_units(spacing, ndim: int, metadata: dict) -> list[str] | None:
    """Millimetres on the axes whose spacing the source gives in mm (DICOM, NIfTI); None when unknown."""
    if spacing is None or len(spacing) != ndim:
        return None
    units = ["pixel"] * ndim
    nifti, dicom = metadata.get("nifti") or {}, metadata.get("dicom") or {}
    if nifti:
        space = (nifti.get("xyzt_units") or ["unknown"])[0]
        unit = {"mm": "mm", "micron": "um", "meter": "m", "unknown": "mm"}.get(str(space))  # NIfTI's default: mm
        if unit is None:
            return None
        for ax in range(max(0, ndim - 3), ndim):
            units[ax] = unit
        times = (nifti.get("xyzt_units") or ["unknown", "unknown"])[1:2] or ["unknown"]
        tunit = {"sec": "s", "msec": "ms", "usec": "us"}.get(str(times[0]))
        if ndim >= 4 and tunit is not None:  # the 4th NIfTI axis (the array's 4th from the end) is time
            units[ndim - 4] = tunit
    elif dicom:
        units[-2:] = ["mm", "mm"]
        if ndim >= 3 and dicom.get("slice_spacing"):  # a stack of positioned slices, not frames of a cine
            units[-3] = "mm"
    else:
        return None
    return units


def layer_kwargs(*, shape, rgb, spacing, origin, direction, metadata, name, sample, affine=None) -> dict:
    """Keyword arguments of ``Image`` (``sample``: the slice for the percentile contrast, or None)."""
    ndim = _spatial_ndim(shape, rgb)
    metadata = {**metadata, "geometry": geometry(spacing, origin, direction, affine)}
    kwargs: dict = {"name": name, "rgb": rgb, "metadata": metadata, "axis_labels": axis_labels(ndim, metadata)}
    scale = display_scale(spacing, ndim)
    if scale is not None:
        kwargs["scale"] = scale
        units = display_units(spacing, ndim, metadata)
        if units is not None:
            kwargs["units"] = units
    translate = display_translate(origin, direction, ndim)
    if translate is not None:
        kwargs["translate"] = translate
    limits = window_limits(metadata, rgb) if sample is None else contrast_limits(sample, metadata, rgb)
    shown = saved_display(metadata, rgb)
    limits = shown.get("contrast_limits", limits)  # the window the layer was saved in
    if limits is not None:
        kwargs["contrast_limits"] = limits
    photometric = str((metadata.get("dicom") or {}).get("photometric", "")).upper()
    if not rgb and photometric == "MONOCHROME1":
        kwargs["colormap"] = "gray_r"  # the smallest value is white (a radiograph's bone), as DICOM says
    if not rgb and photometric == "PALETTE COLOR":
        palette = palette_colormap(metadata)
        if palette is not None:  # the indices stay the values; the colours are the palette's
            kwargs["colormap"], kwargs["contrast_limits"] = palette
    for key in ("colormap", "gamma"):
        if key in shown:
            kwargs[key] = shown[key]
    kwargs.update(saved_view(metadata, ndim))
    return kwargs


#: a layer's own view transform in napari besides scale and translate: (matrix shape from ndim, what is no change)
_VIEW = {"affine": (lambda n: (n + 1, n + 1), lambda n: np.eye(n + 1)),
         "rotate": (lambda n: (n, n), lambda n: np.eye(n)),
         "shear": (lambda n: (n * (n - 1) // 2,), lambda n: np.zeros(n * (n - 1) // 2))}


def view_transform(attributes: dict, ndim: int, origin=None, direction=None) -> dict:
    """What of the ``ndim``-dimensional layer's view the file's geometry would not give back, as lists: its
    ``affine``, ``rotate`` and ``shear`` where they are not the identity (a rotation set in napari); its
    ``scale`` where an axis is flipped or flat (a spacing is positive); its ``translate`` where the origin
    (``origin``, ``direction``: three spatial axes) does not give it (a time axis's); its axis names and units
    where they are not napari's defaults. Kept in ``metadata["napari"]`` (``layer_to_volume``), given back on
    open (``saved_view``): a 4-D layer at t = 100 s came back at 0, its axes unnamed and in pixels."""
    out = {}
    for key, (shape, identity) in _VIEW.items():
        value = attributes.get(key)
        if value is None:
            continue
        m = np.asarray(getattr(value, "affine_matrix", value), np.float64)
        if m.shape == shape(ndim) and not np.allclose(m, identity(ndim)):
            out[key] = m.tolist()
    scale = _floats(attributes.get("scale"), ndim)
    if scale is not None and any(v <= 0 for v in scale):
        out["scale"] = scale
    translate = _floats(attributes.get("translate"), ndim)
    if translate is not None and any(translate):
        given = display_translate(origin, direction, ndim) if origin is not None else None
        if given is None or len(given) != ndim or not np.allclose(given, translate):
            out["translate"] = translate
    labels = attributes.get("axis_labels")
    if labels is not None and len(labels) == ndim and tuple(map(str, labels)) != tuple(str(k) for k in range(-ndim, 0)):
        out["axis_labels"] = [str(v) for v in labels]
    units = attributes.get("units")
    if units is not None and len(units) == ndim and any(str(u) != "pixel" for u in units):
        out["units"] = [str(u) for u in units]
    return out


def _floats(value, n: int) -> list[float] | None:
    """``value`` as ``n`` finite floats, or None."""
    try:
        out = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    return out if len(out) == n and all(math.isfinite(v) for v in out) else None


def saved_view(metadata: dict, ndim: int) -> dict:
    """Keyword arguments of a layer for the view transform saved with it (``view_transform``), those that
    still fit its ``ndim``: finite, of the right shape, the matrices invertible ({} for none)."""
    saved = metadata.get("napari")
    out = {}
    if isinstance(saved, dict):
        scale = _floats(saved.get("scale") or (), ndim)
        if scale is not None and all(scale):
            out["scale"] = scale
        translate = _floats(saved.get("translate") or (), ndim)
        if translate is not None:
            out["translate"] = translate
        for key in ("axis_labels", "units"):
            got = saved.get(key)
            if isinstance(got, list) and len(got) == ndim and all(isinstance(v, str) for v in got):
                out[key] = got
        if "units" in out:
            try:  # a unit this napari (pint) does not know: the file's own units stand
                from napari.layers import Image

                Image(np.zeros((1,) * ndim), units=out["units"])
            except Exception:
                del out["units"]
    for key, (shape, _identity) in _VIEW.items():
        got = saved.get(key) if isinstance(saved, dict) else None
        try:
            m = np.asarray(got, np.float64)
        except (TypeError, ValueError):
            continue
        if got is None or m.shape != shape(ndim) or not np.isfinite(m).all():
            continue
        if m.ndim == 2 and abs(np.linalg.det(m)) < 1e-12:
            continue
        out[key] = m.tolist()
    return out


def saved_display(metadata: dict, rgb: bool) -> dict:
    """How a layer was shown when it was saved (``layer_to_volume`` keeps its contrast limits, colormap and
    gamma in ``metadata["display"]``): the entries that still make sense ({} for none)."""
    from napari.utils.colormaps import AVAILABLE_COLORMAPS

    shown = metadata.get("display")
    if rgb or not isinstance(shown, dict):
        return {}
    out = {}
    limits = shown.get("contrast_limits")
    if (isinstance(limits, list) and len(limits) == 2 and all(isinstance(v, (int, float)) for v in limits)
            and np.isfinite(limits).all() and limits[0] < limits[1]):
        out["contrast_limits"] = [float(limits[0]), float(limits[1])]
    if isinstance(shown.get("colormap"), str) and shown["colormap"] in AVAILABLE_COLORMAPS:
        out["colormap"] = shown["colormap"]
    gamma = shown.get("gamma")
    if isinstance(gamma, (int, float)) and 0.2 <= gamma <= 2.0:
        out["gamma"] = float(gamma)
    return out


def palette_colormap(metadata: dict):
    """A PALETTE COLOR series' colours as a napari colour map over its stored indices: (Colormap, contrast
    limits), from the first file's lookup tables (kept in ``metadata["dicom"]["elements"]``); None where
    they are missing or cannot be read (the indices then show grey)."""
    from napari.utils.colormaps import Colormap

    elements = (metadata.get("dicom") or {}).get("elements") or [None]
    try:
        import pydicom
        from pydicom.pixels import apply_color_lut

        ds = pydicom.Dataset.from_json(elements[0])
        count, first = int(ds.RedPaletteColorLookupTableDescriptor[0]) or 65536, int(ds.RedPaletteColorLookupTableDescriptor[1])
        rgb = np.asarray(apply_color_lut(np.arange(first, first + count, dtype=np.uint16), ds), np.float64)
    except Exception:  # noqa: BLE001 - no palette, a damaged one, one pydicom cannot read: grey
        return None
    if rgb.shape != (count, 3):
        return None
    top = 65535.0 if rgb.max() > 255 else 255.0
    colours = np.concatenate([np.clip(rgb / top, 0, 1), np.ones((count, 1))], axis=1)
    # one colour per index: index first + i shows colours[i] over [first + i - 0.5, first + i + 0.5)
    cmap = Colormap(colours, controls=np.linspace(0.0, 1.0, count + 1), interpolation="zero", name="DICOM palette")
    return cmap, [first - 0.5, first + count - 0.5]


def _middle(array: np.ndarray, rgb: bool) -> np.ndarray:
    lead = array.shape[: array.ndim - (3 if rgb else 2)]
    return array[tuple((n - 1) // 2 for n in lead)]  # the slice napari shows first


def volume_layer(volume: Volume, name: str) -> tuple:
    meta = {"source_format": volume.source_format, **volume.metadata}
    kwargs = layer_kwargs(
        shape=volume.array.shape, rgb=volume.rgb, spacing=volume.spacing, origin=volume.origin,
        direction=volume.direction, metadata=meta, name=name, sample=_middle(volume.array, volume.rgb),
        affine=volume.affine,
    )
    return (volume.array, kwargs, "image")


def volume_image(volume: Volume, name: str):
    """The reader's layer: ``volume_layer`` as an Image whose contrast slider reaches every value of
    the volume (``slider_span``), which a layer data tuple cannot ask of napari, and whose status bar
    reads values in the scan's units too (``_readout``)."""
    from napari.layers import Image

    from ._readout import attach

    data, kwargs, _ = volume_layer(volume, name)
    layer = Image(data, **kwargs)
    attach(layer)
    limits = kwargs.get("contrast_limits")
    if limits is not None and data.dtype.kind in "iuf" and not volume.rgb:
        layer.contrast_limits_range = slider_span(limits, data)
        layer.contrast_limits = limits
    return layer


def _blank(dtype: np.dtype, limits) -> object:
    """The placeholder value of a slice not decoded yet (or damaged): the bottom of the window, black."""
    if dtype.kind == "b":
        return False
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return info.min if limits is None else int(np.clip(np.floor(limits[0]), info.min, info.max))
    return np.nan


def lazy_lvp_layer(lvp: LvpFile, name: str, metadata: dict | None = None):
    """An Image layer over ``lvp`` whose slices decode in the background (``_lazy``); ``metadata``: the
    source's (``lvp.metadata`` when None).

    The slice napari shows first, ``(n - 1) // 2`` on every leading axis, starts decoding at
    once; the contrast comes from the stored window, or from that slice when it arrives."""
    from napari.layers import Image

    from ._lazy import LayerFeed, LazySlices, SliceLoader
    from ._readout import attach

    frames = lvp.frame_shape
    h = lvp.header
    source = h.get("source", {})
    meta = {
        "source_format": source.get("format"),
        **(lvp.metadata if metadata is None else metadata),
        "lvp": {"file": lvp.name, "codecs": lvp.codec_counts(), "bits_per_sample": lvp.bits_per_sample,
                "file_bytes": lvp.file_bytes},
    }
    kwargs = layer_kwargs(
        shape=lvp.shape, rgb=lvp.rgb, spacing=h.get("spacing"), origin=h.get("origin"),
        direction=h.get("direction"), metadata=meta, name=name, sample=None, affine=h.get("affine"),
    )
    loader = SliceLoader(lvp, workers=slice_pool.automatic_if_safe())  # workers for a 3-D view's volume
    middle = int(np.ravel_multi_index(tuple((n - 1) // 2 for n in frames), frames)) if frames else 0
    loader.want([middle])
    window = kwargs.get("contrast_limits")
    later = None
    if window is not None and not lvp.rgb:
        later = lambda s: (window, slider_span(window, s))  # noqa: E731
    if window is None and not lvp.rgb:
        # until the first slice gives percentiles: the dtype's range, so the blank placeholder is black
        info = np.iinfo(lvp.dtype) if lvp.dtype.kind in "iu" else None
        kwargs["contrast_limits"] = [float(info.min), float(info.max)] if info else [0.0, 1.0]

        def later(s):
            limits = contrast_limits(s, meta, False)
            return None if limits is None else (limits, slider_span(limits, s))
    data = LazySlices(loader, _blank(lvp.dtype, window))
    layer = Image(data, **kwargs)
    attach(layer)
    data.feed = LayerFeed(layer, data, later)  # held by the data, so it lives as long as the layer
    return layer


def labels_layer(lvp: LvpFile, name: str, metadata: dict | None = None):
    """A .lvp saved from a labels layer, as a Labels layer again: read whole (labels are edited, so not a
    lazy placeholder array), with the geometry and metadata an image from it would have; ``metadata``: the
    source's (``lvp.metadata`` when None)."""
    from napari.layers import Labels

    h = lvp.header
    source = h.get("source", {})
    meta = {"source_format": source.get("format"), **(lvp.metadata if metadata is None else metadata)}
    kwargs = layer_kwargs(shape=lvp.shape, rgb=False, spacing=h.get("spacing"), origin=h.get("origin"),
                          direction=h.get("direction"), metadata=meta, name=name, sample=None, affine=h.get("affine"))
    keep = ("name", "metadata", "axis_labels", "scale", "units", "translate", *_VIEW)  # no window or colormap
    return Labels(lvp.read_all(), **{k: v for k, v in kwargs.items() if k in keep})


def _origin_of(translate) -> tuple[float, float, float] | None:
    """The (x, y, z) origin of a layer placed by ``translate`` alone (no source geometry): the inverse
    of ``display_translate`` with the identity direction (x along columns, y rows, z slices)."""
    if translate is None:
        return None
    t = [float(v) for v in translate]
    if len(t) < 2 or not any(t) or not all(np.isfinite(t)):
        return None
    return _moved_origin((0.0, 0.0, 0.0), None, t, len(t))


def _moved_origin(origin, direction, translate, ndim: int) -> tuple[float, float, float]:
    """The origin whose ``display_translate`` is ``translate``: the inverse of its projection on the
    direction's rows (a 2-D layer keeps the origin's part along the slice normal)."""
    o = np.asarray(origin, float)
    d = np.eye(3) if direction is None else np.asarray(direction, float)
    want = d @ o  # along (columns, rows, slices)
    t = [float(v) for v in translate]
    want[0], want[1] = t[-1], t[-2]
    if ndim >= 3:
        want[2] = t[-3]
    try:
        return tuple(float(v) for v in np.linalg.solve(d, want))
    except np.linalg.LinAlgError:  # a direction that is no basis: the axes themselves
        return (want[0], want[1], want[2])


def layer_to_volume(data, attributes: dict) -> Volume:
    """A napari image layer (data + attributes, as npe2 writers get them) as a Volume. A multiscale layer
    gives its full resolution (``np.asarray`` of napari's multiscale data is its smallest level: a layer
    saved at a quarter of its pixels, said to be lossless); the layer's own affine (a rotation set in
    napari) travels in ``metadata["napari"]`` (``view_transform``) and comes back on open."""
    if attributes.get("multiscale") or type(data).__name__ == "MultiScaleData" or isinstance(data, (list, tuple)):
        data = data[0]
    array = np.asarray(data)
    rgb = bool(attributes.get("rgb", False))
    meta = dict(attributes.get("metadata") or {})
    meta.pop("lvp", None)
    if isinstance(meta.get("dicom"), dict) and "archive" in meta["dicom"]:
        # a layer holds the values, not the source files a DICOM archive restores: the new file is no archive
        meta["dicom"] = {k: v for k, v in meta["dicom"].items() if k != "archive"}
    source_format = meta.pop("source_format", None) or "numpy"
    geo = meta.pop("geometry", None) or {}
    meta.pop("display", None)
    meta.pop("napari", None)
    if not attributes.get("labels"):
        meta.pop(LABELS_KEY, None)  # an image made from a labels layer's data opens as an image
    if not rgb and not attributes.get("labels"):  # what the user set the layer to look like, back when opened
        display = {"contrast_limits": attributes.get("contrast_limits"), "colormap": attributes.get("colormap"),
                   "gamma": attributes.get("gamma")}
        limits = display["contrast_limits"]
        display["contrast_limits"] = None if limits is None else [float(v) for v in limits]
        cmap = display["colormap"]  # a name, a Colormap, or (from a layer data tuple) its dict
        display["colormap"] = (cmap if isinstance(cmap, str) else
                               cmap.get("name") if isinstance(cmap, dict) else getattr(cmap, "name", None))
        meta["display"] = {k: v for k, v in display.items() if v is not None}
    scale = attributes.get("scale")
    spacing = tuple(float(s) for s in scale) if scale is not None else None
    # origin, direction and world affine of the source survive a save (scale is the layer's own)
    translate = attributes.get("translate")
    origin = tuple(geo["origin"]) if geo.get("origin") is not None else _origin_of(translate)
    direction = tuple(tuple(r) for r in geo["direction"]) if geo.get("direction") is not None else None
    affine = np.asarray(geo["affine"], dtype=np.float64) if geo.get("affine") is not None else None
    ndim = array.ndim - (1 if rgb else 0)
    if geo.get("origin") is not None and translate is not None:
        shown = display_translate(origin, direction, ndim)
        if shown is not None and len(shown) == len(translate) and not np.allclose(shown, translate):
            # the layer was moved since it was opened: what was seen is saved (the scale was already), so the
            # origin follows the translate and the source's world affine, which no longer says where, goes
            origin, affine = _moved_origin(origin, direction, translate, ndim), None
    view = view_transform(attributes, ndim, origin, direction)
    if view:
        meta["napari"] = view
    return Volume(array=array, rgb=rgb, spacing=spacing, source_format=source_format, metadata=_json_safe(meta),
                  origin=origin, direction=direction, affine=affine)
