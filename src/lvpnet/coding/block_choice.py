"""Bitstream 11: whether a plane takes a constant-block map (``coding.blocks``), chosen by the encoder.

The map is one more bit of the plane's coding mode. The encoder plans the map on the plane and its
base lattice (the lattice's pixels are known to the decoder first, so a block whose lattice pixels
disagree is no candidate) and takes it when the map's pixels cost more now, at the plane's coding
choice, than the map and its mode bit: each pixel's code length as the stream codes it
(``adapt.plane_bits`` with the adaptive flags of version 10, which already make a flat pixel
cheap), one walk of the items. Then the coding choice is made again with the map (a flat
background the map takes no longer needs the flags that paid for it) and the whole plane weighed
once more, its map and mode bit included, against its bits without: the map is taken only when
that is smaller. A plane where the map does not pay keeps version 10's coding and pays one mode
bit. A lower bound (``blocks.worth``: 0.03 bits a mapped
pixel) stops most planes without a flat background before the walk.
"""

from __future__ import annotations

import numpy as np

from . import blocks
from .adapt import PlaneItem, choose_coding, plane_bits, set_reference_level


def lattice_mask(shape: tuple[int, int], g: int) -> np.ndarray | None:
    """The pixels a base lattice of stride ``g`` gives (None without a lattice: ``g`` 0)."""
    if not g:
        return None
    km = np.zeros(shape, bool)
    km[::g, ::g] = True
    return km


def apply(items: list[PlaneItem], bmap: blocks.BlockMap | None, f: int) -> None:
    """Each item's pixels the map gives (``PlaneItem.set_known``); None takes them back."""
    for it in items:
        it.set_known(None if bmap is None else bmap.take(it.at, f, it.shape))


def choose(items: list[PlaneItem], base: np.ndarray, levels: int, with_reference: bool, choice: tuple[int, int, int],
           v: np.ndarray, R: int, f: int, g: int, adaptive_flags: bool = True):
    """-> (the map or None, the coding choice (weight, flag level, reference level), the map's bits).
    ``choice``: the plane's coding choice without a map; ``g``: the base lattice's stride (0: none).
    The items are left as the answer codes them (their known pixels and reference level)."""
    km = lattice_mask(v.shape, g)
    kv = None if km is None else np.where(km, v, 0)
    bmap = blocks.plan(v, km)
    # the map's lower bound on what it saves (a flat pixel's flag) must pay for it first: most
    # planes without a flat background stop here, at the price of ``plan``
    if not items or not blocks.worth(bmap, R, kv, km):
        return None, choice, 0.0
    map_bits = blocks.bits(bmap, R, kv, km)
    # what the map's pixels cost now, at the plane's coding choice (one walk of the items)
    now = plane_bits(items, base, choice[0], choice[1], adaptive_flags)
    saved = sum(float(b[bmap.take(it.at, f, it.shape).reshape(-1)].sum()) for it, b in zip(items, now))
    if saved <= map_bits + 1.0:  # the map and its mode bit
        return None, choice, 0.0
    apply(items, bmap, f)
    # a flat background the map takes no longer needs the flags (or the prior weight) that paid for
    # it; the other pixels' bits move too (the adapted counts), so the whole plane is weighed again
    with_map = choose_coding(items, base, levels, with_reference)
    cost = sum(float(b.sum()) for b in plane_bits(items, base, with_map[0], with_map[1], adaptive_flags))
    if cost + map_bits + 1.0 < sum(float(b.sum()) for b in now):
        return bmap, with_map, map_bits
    apply(items, None, f)
    set_reference_level(items, choice[2])
    return None, choice, 0.0
