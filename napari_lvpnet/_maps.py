"""What each Inspect map shows, in words a reader of the image understands, and in which unit.

The same words go in the layer name (title and unit, so napari's status bar reads
"ct bit cost [bits/pixel]: 3.2" under the cursor), over the map's colorbar and in the dock's
legend (one sentence each).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MapInfo:
    title: str
    unit: str
    colormap: str
    says: str


STEPS = "quantisation steps"
MAPS = {
    "bits": MapInfo(
        "bit cost", "bits/pixel", "inferno",
        "the bits the learned codec spends on each pixel (an estimate: -log2 of the probability the model "
        "gave its value). Bright: hard to predict (edges, vessels, noise); dark: cheap (air, flat areas)."),
    "latent_bits": MapInfo(
        "latent bits", "bits/pixel", "inferno",
        "the bits of each 32 x 32 block's latent code, shared over its pixels. The latent is nearly the same "
        "over a slice and coded block after block, so the first blocks (top left) carry most of it: that is "
        "the cost of the slice's summary, not of the image there."),
    "latent": MapInfo(
        "latent z", STEPS, "PiYG",
        "the encoder's quantised summary of each 32 x 32 block, one channel at a time (the channel is chosen "
        "in this dock); a whole number of steps, no physical unit."),
    "qcm_before": MapInfo(
        "latent rounding error", STEPS, "viridis",
        "how far rounding moved the latent in each 32 x 32 block (mean |y - y_hat| over the channels; "
        "0.5 is half a step)."),
    "qcm_after": MapInfo(
        "latent error after QCM", STEPS, "viridis",
        "the same error once the quantisation compensation module (QCM) has predicted and added back part "
        "of the rounding: where this is darker than the rounding error, the QCM helped."),
    "latent_saving": MapInfo(
        "latent saving", "bits/pixel", "PiYG",
        "the latent's ablation: how many more bits each 32 x 32 block costs when every latent channel is held "
        "at its most frequent value in the slice, shared over the block's pixels. Green: the latent pays for "
        "itself there; pink: its variation costs more than it saves; blank: it changes nothing."),
}
ORDER = ("bits", "latent_bits", "latent", "qcm_before", "qcm_after", "latent_saving")


def slice_words(i: int, frames: tuple = (), labels=None) -> str:
    """'slice 11', or on a 4-D layer 'time 1, slice 11' (the sliders' own words), not the flat index 35; a
    volume's one axis by its slider's name too ('frame 1' on a cine, not 'slice 1')."""
    if not frames:
        return f"slice {i}"
    names = lead_names(frames, labels)
    return ", ".join(f"{n} {int(v)}" for n, v in zip(names, np.unravel_index(i, frames), strict=True))


def lead_names(frames: tuple, labels=None) -> list[str]:
    """The names of a layer's leading axes (``frames``: their sizes) as its sliders show them (``labels``:
    every axis's, ``slider_labels``); napari's numbers ("-4", "-3"), a layer's axes without names of their
    own, read as the volume and the slice."""
    plain = ["slice", "volume"][: len(frames)][::-1]
    plain = [f"axis {k}" for k in range(len(frames) - len(plain))] + plain
    given = list(labels)[: len(frames)] if labels is not None and len(labels) >= len(frames) else plain
    return [p if _placeholder(g) else str(g) for g, p in zip(given, plain, strict=True)]


def slider_labels(layer, viewer=None) -> tuple | None:
    """The names the sliders show for ``layer``'s axes: the viewer's (renamed in its sliders, they are what
    the user reads), else the layer's own; None without either."""
    if layer is None:
        return None
    dims = getattr(viewer, "dims", None)
    labels = getattr(dims, "axis_labels", None)
    if labels is not None and len(labels) >= layer.ndim:
        return tuple(labels)[len(labels) - layer.ndim :]
    labels = getattr(layer, "axis_labels", None)
    return None if labels is None else tuple(labels)


def _placeholder(label) -> bool:
    """napari's default axis label: the axis number, counted from the end ("-4")."""
    try:
        int(str(label))
    except ValueError:
        return not str(label).strip()
    return True


def layer_name(base: str, kind: str, *, channel: int | None = None, slice_index: int | None = None,
               frames: tuple = (), labels=None) -> str:
    """'bit cost [bits/pixel] · ct', 'latent z, channel 5 [quantisation steps] · ct (slice 8)': what the map
    shows first (napari's layer list elides the middle of a long name, and its start says which map)."""
    info = MAPS[kind]
    title = info.title if channel is None else f"{info.title}, channel {channel}"
    where = "" if slice_index is None else f" ({slice_words(slice_index, frames, labels)})"
    return f"{title} [{info.unit}] · {base}{where}"


def legend(kinds) -> str:
    return "\n".join(f"{MAPS[k].title} [{MAPS[k].unit}]: {MAPS[k].says}" for k in ORDER if k in kinds)


def layer_colormap(kind: str):
    """The colormap of a map layer: the map's own, except that a diverging map (the latent saving) fades
    to transparent at its zero, so "blank: it changes nothing" shows the image, not a white wash."""
    info = MAPS[kind]
    if kind != "latent_saving":
        return info.colormap
    from matplotlib import colormaps
    from napari.utils.colormaps import Colormap

    t = np.linspace(0.0, 1.0, 65)
    rgba = colormaps[info.colormap](t)
    rgba[:, 3] = np.minimum(1.0, 2.0 * np.abs(t - 0.5)) ** 0.5  # 0 at the centre, quickly opaque away from it
    return Colormap(colors=rgba, controls=t, name=f"{info.colormap} (clear at 0)")
