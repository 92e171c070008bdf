"""The bundled sample scan as napari sample data."""

from __future__ import annotations

from ._layers import volume_layer


def sample_ct():
    """The 12-slice chest CT (a NIfTI in Hounsfield units whose header names no modality): opened
    as CT, so it gets the CT soft-tissue window (40 / 400 HU) like any CT."""
    from lvpnet.resources import SAMPLE_CT, path

    import lvpnet

    volume = lvpnet.read(path(SAMPLE_CT))
    volume.metadata["modality"] = "CT"
    return [volume_layer(volume, "sample CT")]
