"""The encoder's network-free look at the base lattice (bitstream 9 and later): take level 2 before
the network runs on its steps when that choice is clear.

The exact choice (``Engine._lattice_first``, ``lattice.choose_by_steps``) needs the learned bits of
the lattices' steps, so the network, the refinement fits and the coding-mode sums run on a
quarter of the plane's pixels (steps 0-3 of the 4 x 4 order, step 0 row by row) only to be thrown
away when the lattice is taken: 0.12 s of a 512 x 512 CT slice's 0.67 s encode. Here those bits
are estimated from the plane alone, as a simple context coder would spend them: step 0 (stride
4) by the median edge detector of LOCO-I, steps 1-3 (the rest of the stride-2 lattice) by the
mean of their four decoded neighbours; each residual costs the entropy of a two-sided geometric
law whose mean is that of its context (24 classes of the neighbours' local activity). 2 ms.

The estimate is off by a few per cent (learned / estimate on the val lattices: CT 0.97-0.99, MR
0.99-1.11; ultrasound 0.37-1.06, where JPEG-XL wins by far anyway), so it only decides where it
is far from a tie: level 2 is taken early when its estimated saving beats both no lattice and
level 1 by more than ``MARGIN`` of its JPEG-XL bits; everywhere else (most MR) the encoder makes
the exact choice as before, and so does every plane under ``MIN_PIXELS`` (the golden sets' small
synthetic planes fooled it: a 44 x 52 flat background scored above the margin and paid 2.7% for
level 2). On the val split (62 planes with lattice options) the planes whose exact choice is
not level 2 score 0.012 at most (DWI mosaics, level 1), the next plane up 0.049 (a CT; above it
ultrasound and the MIP, all level 2 exactly): ``MARGIN`` 0.02 sits between, so no val plane
changes its choice (level-2 planes below the margin keep the exact choice). The middle slices of
the train arrays, not used to choose, agree: 0.011 at most, level 2 for all from 0.022 up. The
bundled sample CT's slices score 0.032-0.037 (level 2, as exactly).
"""

from __future__ import annotations

import numpy as np

from ..model.prep import med_of

MARGIN = 0.02  # of the level-2 lattice's JPEG-XL bits; val: not level 2 at 0.012 at most, level 2 above
MIN_PIXELS = 1 << 16  # smaller planes keep the exact choice: few pixels to estimate from, little time to save
_CLASSES = 24  # activity contexts: 1.5 per octave of the neighbours' spread


def _geometric_bits(absres: np.ndarray, ctx: np.ndarray) -> float:
    """Bits of residuals ``absres`` (|e|, float64) under a two-sided geometric law per context,
    its parameter from the context's mean |e|: the ideal adaptive coder of that model."""
    n = np.bincount(ctx, minlength=_CLASSES).astype(np.float64)
    m = np.bincount(ctx, weights=absres, minlength=_CLASSES) / np.maximum(n, 1.0)
    on = m > 0
    m = m[on]
    theta = (np.sqrt(1.0 + m * m) - 1.0) / m  # P(e) ~ theta**|e| has mean |e| = m
    h = np.log2((1.0 + theta) / (1.0 - theta)) - m * np.log2(theta)
    return float((n[on] * h).sum())


def _context(spread: np.ndarray) -> np.ndarray:
    return np.minimum((np.log2(spread.astype(np.float64) + 1.0) * 1.5).astype(np.int64), _CLASSES - 1).ravel()


def _kept(absres: np.ndarray, ctx: np.ndarray, keep: np.ndarray | None) -> float:
    """``_geometric_bits`` of the pixels ``keep`` marks (all with None): those repeating the
    reference slice cost the coder next to nothing (its reference flags), so they are left out."""
    if keep is None:
        return _geometric_bits(absres, ctx)
    keep = keep.ravel()
    return _geometric_bits(absres[keep], ctx[keep])


def _raster_bits(g: np.ndarray, keep: np.ndarray | None = None) -> float:
    """A LOCO-I-like coder's bits for grid ``g`` in raster order (median edge detector)."""
    if g.size == 0:
        return 0.0
    p = np.pad(g, ((1, 0), (1, 0)), mode="edge")
    a, b, c = p[1:, :-1], p[:-1, 1:], p[:-1, :-1]
    pred = med_of(p)
    return _kept(np.abs(g - pred).ravel().astype(np.float64), _context(np.abs(a - c) + np.abs(b - c)), keep)


def _between_bits(g: np.ndarray, around: list[np.ndarray], keep: np.ndarray | None = None) -> float:
    """Bits for ``g`` predicted by the mean of its decoded neighbours ``around`` (same shape)."""
    if g.size == 0:
        return 0.0
    st = np.stack(around)
    pred = (st.sum(0) + len(around) // 2) // len(around)
    return _kept(np.abs(g - pred).ravel().astype(np.float64), _context(st.max(0) - st.min(0)), keep)


def _edge_to(a: np.ndarray, h: int, w: int, top: int = 0, left: int = 0) -> np.ndarray:
    """``a`` edge-padded by ``top`` / ``left`` and then up to at least (h, w)."""
    a = np.pad(a, ((top, 0), (left, 0)), mode="edge")
    return np.pad(a, ((0, max(0, h - a.shape[0])), (0, max(0, w - a.shape[1]))), mode="edge")


def _flag_bits(rep: np.ndarray) -> float:
    """Bits of a grid's repeat flags ``rep`` (bool), each in the context of its left neighbour's."""
    left = np.zeros_like(rep)
    left[:, 1:] = rep[:, :-1]
    total = 0.0
    for c in (False, True):
        n, k = int((left == c).sum()), int(rep[left == c].sum())
        if 0 < k < n:
            p = k / n
            total -= n * (p * np.log2(p) + (1 - p) * np.log2(1 - p))
    return total


def estimated_bits(v: np.ndarray, keep: np.ndarray | None = None) -> tuple[float, float]:
    """(level 1, level 2): estimated learned bits of the stride-4 lattice (sub-image 0) and of the
    whole stride-2 lattice of plane ``v`` (int64, values from 0). ``keep`` (bool, v's shape): False
    where a pixel repeats the reference slice; the coder may flag those (``coding.reference``), so
    each level costs the less of its bits without flags and its flags plus the other pixels' bits
    (chance repeats in noise flag at a loss and change nothing; a slice much like the one before
    costs little)."""
    e1, e2 = _lattice_bits(v, None)
    if keep is not None:
        k1, k2 = _lattice_bits(v, keep)
        e1 = min(e1, k1 + _flag_bits(~keep[::4, ::4]))
        e2 = min(e2, k2 + _flag_bits(~keep[::2, ::2]))
    return e1, e2


def _lattice_bits(v: np.ndarray, keep: np.ndarray | None) -> tuple[float, float]:
    """``estimated_bits`` without flags, of the pixels ``keep`` marks (None: all)."""
    def kept(di, dj):
        return None if keep is None else keep[di::4, dj::4]

    s0 = v[::4, ::4]
    e0 = _raster_bits(s0, kept(0, 0))
    s1 = v[2::4, 2::4]  # the centres of the stride-4 cells: their four corners are decoded
    h, w = s1.shape
    c = _edge_to(s0, h + 1, w + 1)
    e1 = _between_bits(s1, [c[:h, :w], c[1 : h + 1, :w], c[:h, 1 : w + 1], c[1 : h + 1, 1 : w + 1]], kept(2, 2))
    # a plane of under 3 rows or columns has no centres (s1 empty, nothing to edge-pad): steps 2
    # and 3 then see their two step-0 neighbours alone (``early_level`` never asks; callers may)
    s2 = v[::4, 2::4]  # between two step-0 pixels in a row, two centres above and below
    h, w = s2.shape
    c = _edge_to(s0, h, w + 1)
    m = _edge_to(s1, h + 1, w, top=1) if s1.size and s2.size else None
    e2 = _between_bits(s2, [c[:h, :w], c[:h, 1 : w + 1]] + ([] if m is None else [m[:h, :w], m[1 : h + 1, :w]]),
                       kept(0, 2))
    s3 = v[2::4, ::4]  # between two step-0 pixels in a column, two centres left and right
    h, w = s3.shape
    c = _edge_to(s0, h + 1, w)
    m = _edge_to(s1, h, w + 1, left=1) if s1.size and s3.size else None
    e3 = _between_bits(s3, [c[:h, :w], c[1 : h + 1, :w]] + ([] if m is None else [m[:h, :w], m[:h, 1 : w + 1]]),
                       kept(2, 0))
    return e0, e0 + e1 + e2 + e3


def early_level(v: np.ndarray, costs: dict[int, float], order, f: int, ref: np.ndarray | None = None) -> int:
    """2 when the stride-2 lattice (JPEG-XL bits ``costs[2]``, level 1's ``costs[1]``) clearly saves
    most, else 0: the encoder then chooses exactly (``Engine._lattice_first``). Only for the
    4 x 4 order whose steps 0-3 are that lattice, step 0 its stride-4 part. ``ref``: the previous
    slice in ``v``'s values (``reference.ref_values``, -1: none), whose repeats are left out of the
    learned bits (measured on a CT slice against itself: taken early without this, 52,509 bytes
    where the exact choice, no lattice, writes 1,243)."""
    if f != 4 or set(costs) != {1, 2} or [tuple(p) for p in order[:4]] != [(0, 0), (2, 2), (0, 2), (2, 0)]:
        return 0
    if np.size(v) < MIN_PIXELS or min(np.shape(v)) < 4:
        return 0
    v = np.asarray(v, np.int64)
    keep = None if ref is None else np.asarray(ref) != v
    e1, e2 = estimated_bits(v, None if keep is None or keep.all() else keep)
    save2, save1 = e2 - costs[2], e1 - costs[1]
    return 2 if min(save2, save2 - save1) > MARGIN * costs[2] else 0
