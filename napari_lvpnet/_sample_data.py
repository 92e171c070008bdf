"""The bundled sample scan as napari sample data."""

from __future__ import annotations

from ._layers import volume_layer


def sample_ct():
    from lvpnet.resources import SAMPLE_CT, path

    import lvpnet

    return [volume_layer(lvpnet.read(path(SAMPLE_CT)), "sample CT")]
