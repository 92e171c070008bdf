"""Repeats of the previous slice (bitstream version 8): a flag per pixel, "the pixel is what the
previous slice holds here".

A cine loop (ultrasound, most of all) repeats its text, scale, graphics and black background
exactly from frame to frame, and a classical codec coding one frame at a time pays for them in
every frame. Measured on the train cines (frame 4 against frame 3): 64-76% of the pixels repeat
and carry 26-75% of the learned codec's bits. So a plane may take the previous slice's plane as
its reference: before the neighbour-repeat flags (``coding.repeat``), each pixel whose reference
value the plane can code gets a flag saying it equals it. Its context is how many of its ring
neighbours (the ring ``coding.repeat`` takes candidates from, decoded already) equal their own
reference values: a static region flags itself nearly for free, a moving one learns to expect
misses. Flag probabilities adapt stage by stage as the neighbour-repeat flags do (``FlagCounts``,
with priors of their own). A pixel whose reference flag missed carries no neighbour-repeat flag
when its candidate is that same value (it cannot hit).

The encoder picks one of ``LEVELS`` per plane (0: no reference; 1: every pixel with a reference
value; 2: where at least half the ring repeats; 3: where all of it does); the decoder needs the
previous slice exactly, so the container decodes slices in order (``LvpFile``), and the writer
starts a fresh run of references every few slices to keep random access cheap.
"""

from __future__ import annotations

import numpy as np

from ..model.prep import expand_gaps
from .repeat import FlagCounts, ring_for_step, row_ring

LEVELS = 4  # 0 off, 1 all, 2 half the ring repeats, 3 all of the ring repeats
ROW0_CONTEXT = 6  # a row of sub-image 0 (three neighbours above): contexts 6..9; sub-images 1..5
# prior hits per context in eighths: index 0 is "no flag"; then m = 0..4 repeating neighbours of
# a sub-image's ring, m = 0..3 of a row's
PRIOR_HITS = (0, 1, 2, 4, 6, 7, 1, 3, 5, 7)
CONTEXTS = len(PRIOR_HITS)


def counts() -> FlagCounts:
    """The adaptive probabilities of a plane's reference flags."""
    return FlagCounts(PRIOR_HITS)


def ref_values(reference: np.ndarray, vmin: int, step: int, gaps: np.ndarray, R: int) -> np.ndarray:
    """The previous slice's plane (raw values, int) in this plane's coded values ``k`` (the
    plane is ``vmin + step * expand_gaps(k)``, ``k`` in ``[0, R]``), -1 where a value cannot be coded
    here (off the value grid, in a run of unused values, out of the range)."""
    u = np.asarray(reference, np.int64) - int(vmin)
    step = int(step)
    ok = (u >= 0) & (u % step == 0)
    k = np.where(ok, u // step, 0)
    gaps = np.asarray(gaps, np.int64).reshape(-1, 2)
    packed = k
    if len(gaps):
        before = np.concatenate([[0], np.cumsum(gaps[:, 1])])
        starts = gaps[:, 0] + before[:-1]  # per run, the value k just below it
        packed = k - before[np.searchsorted(starts, k, side="left")]
    ok &= (packed >= 0) & (packed <= R)
    ok &= expand_gaps(np.clip(packed, 0, None), gaps) == k
    return np.where(ok, packed, -1)


def item_reference(v: np.ndarray, ref: np.ndarray, at: tuple[int, int], f: int, shape, order, k: int,
                   row: int | None = None):
    """``(r, m, n)`` for the pixels ``v[di::f, dj::f]`` of one coded item (its real ``shape``; a row
    of sub-image 0 when ``row`` is not None) of the plane ``v`` decoded so far: ``r`` each pixel's
    reference value (-1: none), ``m`` how many of its ring neighbours repeat their own reference
    value (a neighbour outside the plane counts as repeating), ``n`` the ring's size. None when
    the item has no decoded ring."""
    ring = row_ring(f) if row is not None else ring_for_step(order, k)
    if ring is None:
        return None
    H, W = v.shape
    di, dj = at
    rows = di + f * np.arange(shape[0])[:, None]
    cols = dj + f * np.arange(shape[1])[None, :]
    m = np.zeros(tuple(shape), np.int64)
    for dy, dx in ring:
        r_, c_ = rows + dy, cols + dx
        inside = (r_ >= 0) & (r_ < H) & (c_ >= 0) & (c_ < W)
        r_, c_ = np.clip(r_, 0, H - 1), np.clip(c_, 0, W - 1)
        m += ~inside | (v[r_, c_] == ref[r_, c_])
    return ref[rows, cols], m, len(ring)  # the item's own pixels lie inside


def contexts(r: np.ndarray, m: np.ndarray, n: int, level: int, row: int | None,
             given: np.ndarray | None = None) -> np.ndarray:
    """The reference flags' contexts at ``level`` (0: no flag): pixels with a reference value whose
    ring repeats enough (level 2: at least half, level 3: all of it), not those a block map gives
    (``given``, version 11). The encoder (``adapt.PlaneItem.ref_x``) and the decoder
    (``item_stage.ReferenceFlags``) both call this."""
    if level <= 0:
        return np.zeros(np.shape(r), np.int64)
    need = (0, 0, (n + 1) // 2, n)[level]
    x = m + (ROW0_CONTEXT if row is not None else 1)
    x = np.where((r >= 0) & (m >= need), x, 0)
    return x if given is None else np.where(given, 0, x)
