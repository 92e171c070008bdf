"""The bundled sample scan as napari sample data."""

from __future__ import annotations

from ._layers import slider_span, volume_layer


def sample_ct():
    """The 12-slice chest CT (a NIfTI in Hounsfield units whose header names no modality): opened
    as CT, so it gets the CT soft-tissue window (40 / 400 HU) like any CT."""
    from lvpnet.resources import SAMPLE_CT, path

    import lvpnet

    volume = lvpnet.read(path(SAMPLE_CT))
    volume.metadata["modality"] = "CT"
    data, kwargs, kind = volume_layer(volume, "sample CT")
    _widen_slider_once_added(data, kwargs.get("contrast_limits"))
    return [(data, kwargs, kind)]


def _widen_slider_once_added(data, limits) -> None:
    """A sample must be a layer data tuple, and napari confines the contrast slider of a layer made
    from one to the limits it starts with: the sample's soft-tissue window could never be widened to
    bone or lung. So once the current viewer has the layer (its data is ``data``), its slider is set
    to reach every value (``slider_span``, as the readers' layers do)."""
    import napari

    viewer = napari.current_viewer()
    if viewer is None or limits is None:
        return
    span = slider_span(limits, data)

    def added(event) -> None:
        layer = event.value
        if getattr(layer, "data", None) is not data:
            return
        viewer.layers.events.inserted.disconnect(added)
        layer.contrast_limits_range = span
        layer.contrast_limits = limits

    viewer.layers.events.inserted.connect(added)
