"""npe2 writers: an image or labels layer to a verified, atomically written .lvp."""

from __future__ import annotations

from ._layers import LABELS_KEY, layer_to_volume


def write_lvp(path: str, data, attributes: dict) -> list[str]:
    import lvpnet

    if not str(path).lower().endswith(".lvp"):
        path = f"{path}.lvp"
    from lvpnet import slice_pool

    # napari's Save waits for this on its main thread: every free core where workers can start
    lvpnet.compress_to_file(layer_to_volume(data, attributes), path, workers=slice_pool.automatic_if_safe())
    return [path]


def write_labels_lvp(path: str, data, attributes: dict) -> list[str]:
    """A labels layer (a segmentation): its integers exactly, marked so that it opens as labels again."""
    metadata = {**(attributes.get("metadata") or {}), LABELS_KEY: True}
    keep = {k: attributes.get(k) for k in ("scale", "translate", "name", "affine", "rotate", "shear")}  # no window
    return write_lvp(path, data, {**keep, "rgb": False, "metadata": metadata, "labels": True})
