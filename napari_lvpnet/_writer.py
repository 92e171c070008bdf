"""npe2 writer: an image layer to a verified, atomically written .lvp."""

from __future__ import annotations

from ._layers import layer_to_volume


def write_lvp(path: str, data, attributes: dict) -> list[str]:
    import lvpnet

    if not str(path).lower().endswith(".lvp"):
        path = f"{path}.lvp"
    lvpnet.compress_to_file(layer_to_volume(data, attributes), path)
    return [path]
