"""Turn a Volume (or an opened .lvp) into napari layer data tuples."""

from __future__ import annotations

import numpy as np

from lvpnet import LvpFile, Volume


def _display_scale(spacing, ndim: int) -> list[float] | None:
    if spacing is None or len(spacing) != ndim:
        return None
    return [float(s) if s and np.isfinite(s) and s > 0 else 1.0 for s in spacing]


def layer_kwargs(spacing, rgb: bool, ndim: int, metadata: dict, name: str) -> dict:
    kwargs: dict = {"name": name, "rgb": rgb, "metadata": metadata}
    scale = _display_scale(spacing, ndim)
    if scale is not None:
        kwargs["scale"] = scale
    return kwargs


def volume_layer(volume: Volume, name: str) -> tuple:
    ndim = volume.array.ndim - (1 if volume.rgb else 0)
    meta = {"source_format": volume.source_format, **volume.metadata}
    return (volume.array, layer_kwargs(volume.spacing, volume.rgb, ndim, meta, name), "image")


def lazy_lvp_layer(lvp: LvpFile, name: str) -> tuple:
    """A dask array whose chunks are single slices, decoded when napari asks for them."""
    import dask.array as da

    frames = lvp.frame_shape
    slice_shape = lvp.slice_shape
    if not frames:
        data = lvp.read_slice(0)
    else:
        def load(block_id):
            lead = block_id[: len(frames)]
            flat = int(np.ravel_multi_index(lead, frames))
            return lvp.read_slice(flat).reshape((1,) * len(frames) + slice_shape)

        chunks = tuple((1,) * n for n in frames) + tuple((n,) for n in slice_shape)
        data = da.map_blocks(load, dtype=lvp.dtype, chunks=chunks, meta=np.empty((0,) * len(lvp.shape), lvp.dtype))
    h = lvp.header
    meta = {"source_format": h.get("source", {}).get("format"), **h.get("source", {}).get("metadata", {}),
            "lvp": {"file": lvp.name, "codecs": lvp.codec_counts(), "bits_per_sample": lvp.bits_per_sample}}
    ndim = len(lvp.shape) - (1 if lvp.rgb else 0)
    return (data, layer_kwargs(h.get("spacing"), lvp.rgb, ndim, meta, name), "image")
