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
coder lives in ``codecs.lvpnet_base``.
"""

from __future__ import annotations

import numpy as np

from .adapt import PlaneItem, plane_bits


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


def choose(items: list[PlaneItem], base: np.ndarray, weight_index: int, flags: int, costs: dict[int, float],
           order, f: int) -> int:
    """The base level whose classical bits ``costs[level]`` save most over what the learned codec
    spends on that lattice's items at the coding choice ``(weight_index, flags)`` (0: none saves).
    The lattices' steps come first in the decoding order, so only that prefix of ``items`` is walked."""
    if not costs:
        return 0
    return choose_from(items, learned_bits(items, base, weight_index, flags, candidate_steps(costs, order, f)), costs,
                       order, f)


def candidate_steps(costs: dict[int, float], order, f: int) -> frozenset[int]:
    """The steps of every lattice in ``costs`` (its keys: base levels)."""
    return frozenset().union(*(steps(order, stride(f, c)) for c in costs))


def learned_bits(items: list[PlaneItem], base: np.ndarray, weight_index: int, flags: int, ks) -> list[np.ndarray]:
    """Each pixel's learned code length (``adapt.plane_bits``) for the items up to the last one
    whose step is in ``ks`` (that prefix of the decoding order)."""
    last = max((i for i, it in enumerate(items) if it.k in ks), default=-1)
    return plane_bits(items[: last + 1], base, weight_index, flags)


def choose_from(items: list[PlaneItem], bits: list[np.ndarray], costs: dict[int, float], order, f: int) -> int:
    """``choose`` given ``learned_bits`` of a prefix holding every candidate lattice's items."""
    best, saving = 0, 0.0
    for c in sorted(costs):
        ks = steps(order, stride(f, c))
        learned = sum(float(b.sum()) for it, b in zip(items, bits) if it.k in ks)
        if learned - costs[c] > saving:
            best, saving = c, learned - costs[c]
    return best


def map_share(items: list[PlaneItem], bits: list[np.ndarray], ks, total: float) -> list[np.ndarray]:
    """For the bit-cost maps: the lattice's ``total`` bits shared out over the pixels of the items
    in ``ks``, in proportion to their ``learned_bits`` (what the learned codec would have spent on
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
