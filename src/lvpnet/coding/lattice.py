"""The base lattice of bitstream version 7: which sub-images a classical coder may take over.

Measured on val (``docs/MODEL.md`` section 2f): the sub-images decoded first see their nearest
decoded neighbours 2 to 4 pixels away, where a raster coder on the same coarse lattice sees
them 1 lattice step away. On the val CT the lattice of every second pixel (steps 0-3, a
quarter of the pixels) costs 4.47 bits per pixel with the learned codec and 4.06 with
JPEG-XL effort 7. So version 7 lets the encoder hand such a lattice to JPEG-XL, per plane,
when that is smaller; the learned codec then codes the other sub-images with the lattice as
context, exactly as if it had decoded it itself.

The coding choice (prior weight, flag level) stays the one made for the whole plane: making it
again without the lattice's items changed no choice on six val slices, and cost 0.1 s a slice.

Level ``c`` (1, 2, ...) is the lattice of stride ``f >> (c - 1)``: level 1 is sub-image 0 alone,
level 2 (4x4 models) the four sub-images on even rows and columns. Numpy only: the classical
coder lives in ``codecs.lvpnet_base``; what the learned codec would spend on a lattice, and so
the choice (``choose_lattice``), lives in ``coding.adapt``, which builds on this module's geometry.
"""

from __future__ import annotations

import numpy as np


def stride(f: int, level: int) -> int:
    """The lattice stride of base level ``level`` (>= 1) for sub-image factor ``f``."""
    g = f >> (level - 1) if level >= 1 else 0
    if g < 2 or g * (1 << (level - 1)) != f:
        raise ValueError(f"base level {level} does not exist for sub-images of {f} x {f}")
    return g


def levels(f: int) -> list[int]:
    """The base levels a model with sub-image factor ``f`` offers (none in one-pass mode)."""
    out = []
    while (f >> len(out)) >= 2 and (f >> len(out)) << len(out) == f:
        out.append(len(out) + 1)
    return out


def steps(order, g: int) -> frozenset[int]:
    """The steps whose sub-images lie on the lattice of stride ``g``."""
    return frozenset(k for k, (di, dj) in enumerate(order) if di % g == 0 and dj % g == 0)


def candidate_steps(costs: dict[int, float], order, f: int) -> frozenset[int]:
    """The steps of every lattice in ``costs`` (its keys: base levels)."""
    return frozenset().union(*(steps(order, stride(f, c)) for c in costs))


def choose_from(items: list, bits: list[np.ndarray], costs: dict[int, float], order, f: int) -> int:
    """The base level whose classical bits ``costs[level]`` save most over what the learned codec
    spends on that lattice's items (0: none saves), given ``bits``, each pixel's learned code
    length for a prefix of ``items`` (``adapt.PlaneItem``, decoding order) holding every
    candidate lattice's items (``adapt.lattice_bits``)."""
    best, saving = 0, 0.0
    for c in sorted(costs):
        ks = steps(order, stride(f, c))
        learned = sum(float(b.sum()) for it, b in zip(items, bits) if it.k in ks)
        if learned - costs[c] > saving:
            best, saving = c, learned - costs[c]
    return best


def choose_by_steps(step_bits: dict, costs: dict[int, float], order, f: int) -> int:
    """``choose_from`` given the learned bits of each step (``{k: bits}``, e.g. from the coding
    choice, ``adapt.choose_coding``'s ``step_bits``) instead of every pixel's."""
    best, saving = 0, 0.0
    for c in sorted(costs):
        ks = steps(order, stride(f, c))
        learned = sum(b for k, b in step_bits.items() if k in ks)
        if learned - costs[c] > saving:
            best, saving = c, learned - costs[c]
    return best


def map_share(items: list, bits: list[np.ndarray], ks, total: float) -> list[np.ndarray]:
    """For the bit-cost maps: the lattice's ``total`` bits shared out over the pixels of the items
    in ``ks``, in proportion to their ``adapt.lattice_bits`` (what the learned codec would have spent on
    each: JPEG-XL gives no per-pixel lengths; evenly where that is all 0). One array per such item."""
    would = [b for it, b in zip(items, bits) if it.k in ks]
    spent = sum(float(b.sum()) for b in would)
    n = sum(b.size for b in would)
    return [b * (total / spent) if spent > 0 else np.full(b.shape, total / n) for b in would]


def known_plane(lattice: np.ndarray, shape: tuple[int, int], g: int) -> np.ndarray:
    """An (H, W) int64 plane holding the lattice's values at its positions (0 elsewhere)."""
    out = np.zeros(shape, np.int64)
    out[::g, ::g] = lattice
    return out
