"""npe2 readers. A reader returns None for anything it cannot read and never raises."""

from __future__ import annotations

from pathlib import Path

from ._layers import lazy_lvp_layer


def get_lvp_reader(path):
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    from lvpnet.container import looks_like_lvp

    if not looks_like_lvp(path):
        return None
    return read_lvp


def read_lvp(path):
    from lvpnet import LvpFile

    path = path[0] if isinstance(path, list) else path
    lvp = LvpFile(path)
    return [lazy_lvp_layer(lvp, Path(path).name.removesuffix(".lvp"))]
