"""Neighbour-repeat flags (bitstream version 3, when the encoder switches them on for a plane).

Ultrasound and other scans with a flat background lose most of their bits at the background's
edge: a pixel next to content is either exactly the background value or something else, a
two-peaked law no single logistic fits (2.8 to 4.5 bits per pixel there on the val ultrasound).
So from step 1 on, each pixel gets a candidate value ``c``: the value most of its four nearest
decoded neighbours share (``candidates``), with a context ``x`` = how many of them share it
(1 to 4; 0 without a usable neighbour, then no flag); a pixel of sub-image 0, decoded row by
row, takes its candidate from the three pixels above it in that sub-image (``row_ring``). A binary flag says "the pixel is ``c``";
only pixels without the flag are coded with the model's tables. The flag's probability per
context adapts to the slice step by step (``FlagCounts``), like the pixel tables
(``coding.adapt``). Measured on val (estimate, shipped weights): palette ultrasound -37%, RGB
ultrasound -30%; MR and CT leave them off (the flag level is part of the plane's coding mode,
``coding.adapt``). Bitstream version 5 adds levels 3 and 4, which flag only pixels whose
neighbours mostly (x >= 3) or all agree (``MIN_CONTEXT``): measured on val (estimate, one to
three slices each), MIP -2.2%, CT -1.2%, PD -1.0%, shoulder -0.8%, as they now flag their
black background or padding without paying for flags in the tissue. Bitstream version 6 also
flags, at levels 3 and 4, every pixel whose candidate is the plane's minimum, and counts such
flags in contexts of their own (``flag_contexts``): the edge of a CT's padding.
"""

from __future__ import annotations

import numpy as np

from ..model.tables import TOTAL
from .jit import compiled

# The neighbour sets tried in turn: the first whose four phases are all decoded before step k.
RINGS = (
    ((-1, 0), (1, 0), (0, -1), (0, 1)),
    ((-1, -1), (-1, 1), (1, -1), (1, 1)),
    ((-2, 0), (2, 0), (0, -2), (0, 2)),
    ((-2, -2), (-2, 2), (2, -2), (2, 2)),
)
# Prior flag probability per context, in eighths (one pixel's weight): x = 1..4 for steps >= 1,
# 5..7 for the rows of sub-image 0 (1..3 of the three pixels above agree, ``ROW0_CONTEXT``).
PRIOR_HITS = (0, 1, 2, 4, 7, 1, 3, 6)
CONTEXTS = len(PRIOR_HITS)
ROW0_CONTEXT = 4  # added to a sub-image-0 row's x: its own contexts
# Bitstream version 6: a candidate at the plane's minimum (value 0: a CT's padding, an MR's or an
# ultrasound's black background) has contexts of its own, ``x + CONTEXTS``, with the same priors.
FLAG_CONTEXTS = 2 * CONTEXTS


def row_ring(f: int):
    """Neighbours of a pixel of sub-image 0 decoded row by row: the three pixels of the row above
    in that sub-image (``f`` pixels up, ``f`` left, straight up and ``f`` right)."""
    return ((-f, -f), (-f, 0), (-f, f))


def ring_for_step(order, k: int):
    """The four neighbour offsets step ``k`` of the sub-image ``order`` takes its candidate from
    (None for step 0, or when no ring is decoded yet)."""
    if k == 0:
        return None
    f = max(max(p) for p in order) + 1
    done = set(order[:k])
    di, dj = order[k]
    for ring in RINGS:
        if all(((di + dy) % f, (dj + dx) % f) in done for dy, dx in ring):
            return ring
    return None


def candidates(v: np.ndarray, pos: tuple[int, int], f: int, shape: tuple[int, int], ring):
    """Candidate value ``c`` and context ``x`` (int64, ``shape`` = the sub-image's real shape, or one
    row of it) for the pixels ``v[di::f, dj::f]`` of a plane ``v`` (int64, H x W) whose ``ring``
    neighbours are decoded. Neighbours outside the plane do not count. ``c`` is the first neighbour (in ring
    order) among those shared by the most neighbours; ``x`` how many share it (0: none inside)."""
    kernel = _candidates_kernel()
    if kernel and len(ring) and shape[0] * shape[1]:
        c, x = np.empty(shape, np.int64), np.empty(shape, np.int64)
        kernel(np.ascontiguousarray(v, np.int64), int(pos[0]), int(pos[1]), int(f),
               np.array([o[0] for o in ring], np.int64), np.array([o[1] for o in ring], np.int64), c, x)
        return c, x
    H, W = v.shape
    di, dj = pos
    rows = di + f * np.arange(shape[0])[:, None]
    cols = dj + f * np.arange(shape[1])[None, :]
    nbs, valid = [], []
    for dy, dx in ring:
        r, c = rows + dy, cols + dx
        ok = (r >= 0) & (r < H) & (c >= 0) & (c < W)
        nbs.append(v[np.clip(r, 0, H - 1), np.clip(c, 0, W - 1)])
        valid.append(np.broadcast_to(ok, shape))
    nb, ok = np.stack(nbs), np.stack(valid)
    eq = ((nb[:, None] == nb[None]) & ok[None] & ok[:, None]).sum(axis=1)  # per neighbour: how many share it
    best = np.argmax(eq, axis=0)
    c = np.take_along_axis(nb, best[None], 0)[0]
    x = np.take_along_axis(eq, best[None], 0)[0]
    return c.astype(np.int64), x.astype(np.int64)


def _candidates(v, di, dj, f, dys, dxs, c_out, x_out):
    """``candidates`` row by row (the same values, ties to the first neighbour in ring order): a
    row's neighbours gathered per ring offset, then each offset's count of neighbours sharing its
    value as passes along the row, so they vectorise."""
    H, W = v.shape
    h, w = c_out.shape
    T = dys.size
    nb = np.empty((T, w), np.int64)
    ok = np.empty((T, w), np.bool_)
    cnt = np.empty(w, np.int64)
    for i in range(h):
        r0 = di + f * i
        for t in range(T):
            r = r0 + dys[t]
            inside = r >= 0 and r < H
            row = v[min(max(r, 0), H - 1)]
            for j in range(w):
                c = dj + f * j + dxs[t]
                ok[t, j] = inside and c >= 0 and c < W
                nb[t, j] = row[min(max(c, 0), W - 1)]
        for j in range(w):
            x_out[i, j] = -1
        for t in range(T):
            cnt[:] = 0
            for u in range(T):
                for j in range(w):
                    cnt[j] += ok[u, j] & (nb[u, j] == nb[t, j])
            for j in range(w):  # a strictly larger count only: ties stay with the earlier neighbour
                n = cnt[j] if ok[t, j] else 0
                if n > x_out[i, j]:
                    x_out[i, j] = n
                    c_out[i, j] = nb[t, j]


def _candidates_kernel():
    """``_candidates`` compiled by numba, or False without it (the numpy path, same values)."""
    return compiled(_candidates)


# The least context ``x`` a pixel needs to carry a flag, per flag level: (in sub-images 1 and
# later, in the rows of sub-image 0); None: no flags there. Levels 3 and 4 (bitstream version 5)
# flag only where most or all of the neighbours agree: a CT's padding or an MR's black
# background is then nearly free, while the tissue around it pays for no flags.
MIN_CONTEXT = ((None, None), (1, None), (1, 1 + ROW0_CONTEXT), (3, 2 + ROW0_CONTEXT), (4, 3 + ROW0_CONTEXT))


def flags_apply(level: int, row: int | None) -> bool:
    """Does a coded item carry flags at flag level ``level`` (0 none, 1 from step 1 on, 2 also the
    rows of sub-image 0, 3 and 4 as 2 where most or all neighbours agree; ``row`` is the item's
    row of sub-image 0, None for a sub-image)?"""
    return MIN_CONTEXT[level][row is not None] is not None


def flag_contexts(x: np.ndarray, level: int, row: int | None, at_min: np.ndarray | None = None) -> np.ndarray:
    """The contexts of the pixels that carry a flag at ``level`` (0 for those that do not).
    ``at_min`` (bitstream version 6): whether each pixel's candidate is the plane's minimum; such
    a pixel carries a flag at levels 3 and 4 whatever its ``x``, with the context ``x + CONTEXTS``.
    Measured on the val CT (a replay of the estimate): the padding's edge, where two neighbours are
    padding and two are air, cost 5 bits per pixel without a flag; with these flags and contexts,
    -1.5% (real bytes: -2.0%)."""
    need = MIN_CONTEXT[level][row is not None]
    if need is None:
        return np.zeros_like(x)
    if at_min is None:
        return np.where(x >= need, x, 0)
    return np.where((x >= need) | (at_min & (x > 0)), x + CONTEXTS * at_min, 0)


def item_flag_contexts(x: np.ndarray, cand: np.ndarray, level: int, row: int | None, min_flags: bool = False,
                       ref: np.ndarray | None = None, ref_x: np.ndarray | None = None,
                       ref_hit: np.ndarray | None = None, given: np.ndarray | None = None) -> np.ndarray:
    """The contexts of one item's neighbour-repeat flags at flag level ``level`` (0: no flag), from
    its candidates ``cand`` and their contexts ``x`` (``item_candidates``): by the level
    (``flag_contexts``; ``min_flags``, version 6: candidates at the plane's minimum flag in contexts
    of their own); none where a reference flag (version 8: ``ref`` the reference values, None where
    the item has no reference flags, ``ref_x`` their contexts, ``ref_hit`` those that hit) took the
    pixel, or missed on a reference value that is the candidate too (the neighbour flag would only
    repeat it); none where a block map gives the pixel (``given``, version 11). The encoder
    (``adapt.PlaneItem.flag_x``, the whole plane known) and the decoder (``item_stage``, the plane
    decoded so far) both call this, so their contexts are one computation."""
    x = flag_contexts(x, level, row, cand == 0 if min_flags else None)
    if ref is not None:
        x = np.where((ref_x > 0) & (ref_hit | (cand == ref)), 0, x)
    return x if given is None else np.where(given, 0, x)


def item_candidates(v: np.ndarray, at: tuple[int, int], f: int, shape, order, k: int, row: int | None = None):
    """``(c, x)`` for one coded item (``candidates`` with the item's ring; a row of sub-image 0,
    starting at pixel ``at``, gets ``row_ring`` and its own contexts), or None when step ``k``
    has no decoded ring."""
    ring = row_ring(f) if row is not None else ring_for_step(order, k)
    if ring is None:
        return None
    c, x = candidates(v, at, f, shape, ring)
    if row is not None:
        x = np.where(x > 0, x + ROW0_CONTEXT, 0)
    return c, x


class FlagCounts:
    """Adaptive flag probabilities of one plane: ``start_step(k)`` before each stage (flags
    ``add``-ed earlier then count; sub-image 0's rows are stages of their own, so its flags
    learn row by row), ``table(x)`` the integer ``[miss, hit]`` frequencies."""

    def __init__(self, priors=PRIOR_HITS + PRIOR_HITS):
        """``priors``: the prior hits per context, in eighths (the neighbour-repeat flags' by default;
        ``coding.reference`` counts its own flags with its own)."""
        self._prior = np.array(priors, np.int64)
        self.hits = np.zeros(len(priors), np.int64)
        self.total = np.zeros(len(priors), np.int64)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._step = None

    def start_step(self, k) -> None:
        """Before the flags of stage ``k`` (a step, or one row of sub-image 0: ``(0, row)``)."""
        if k == self._step:
            return
        n = len(self._prior)
        for hit, x in self._pending:
            self.hits += np.bincount(x[np.asarray(hit, bool)], minlength=n)  # hits may come as 0/1
            self.total += np.bincount(x, minlength=n)
        self._pending = []
        self._step = k

    def table(self, x: int) -> np.ndarray:
        """[miss, hit] summing to 2**16 (miss >= 2, hit >= 1): p(hit) = (8 hits + prior) / (8 total + 8)."""
        num = 8 * int(self.hits[x]) + int(self._prior[x])
        den = 8 * int(self.total[x]) + 8
        hit = 1 + num * (TOTAL - 2) // den
        return np.array([TOTAL - hit, hit], np.int64)

    def bits(self, hit: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Code length of each flag (0 where ``x`` is 0: no flag), float64, shaped like ``hit``:
        ``table`` for every pixel at once."""
        out = np.zeros(hit.shape, np.float64)
        m = x > 0
        if m.any():
            xs = x[m]
            num = 8 * self.hits[xs] + self._prior[xs]
            h = 1 + num * (TOTAL - 2) // (8 * self.total[xs] + 8)
            out[m] = -np.log2(np.where(hit[m], h, TOTAL - h) / TOTAL)
        return out

    def walk_bits(self, flags: list[tuple[np.ndarray, np.ndarray]], stages: np.ndarray) -> np.ndarray:
        """``bits(hit, x).sum()`` of each of a plane's flagged items (``(hit, x)`` in decoding order, item
        ``i`` in stage ``stages[i]``, stage numbers non-decreasing, the first above every stage
        already counted) as a walk from these counts would give them, every ``start_step`` and
        ``add`` in between, in a few array calls: an item sees the flags of earlier stages only.
        Leaves the counts as they are. The encoder's coding choice sums it over every flag of a
        plane at each flag level; the float sums may differ from ``bits``'s in the last bit."""
        n, m = len(self._prior), len(flags)
        if m == 0:
            return np.zeros(0, np.float64)
        xs = [x.reshape(-1) for _, x in flags]
        sizes = np.array([x.size for x in xs])
        item = np.repeat(np.arange(m), sizes)
        x = np.concatenate(xs).astype(np.int64)
        hit = np.concatenate([np.asarray(h, bool).reshape(-1) for h, _ in flags])
        keep = x > 0
        cell = item[keep] * n + x[keep]
        got = np.bincount(cell[hit[keep]], minlength=m * n).reshape(m, n)
        seen = np.bincount(cell, minlength=m * n).reshape(m, n)
        # the counts each item sees: those before its stage (items of one stage see the same)
        stages = np.asarray(stages, np.int64)
        first = np.searchsorted(stages, stages, side="left")  # each item's stage's first item
        cum_got = np.concatenate([np.zeros((1, n), np.int64), np.cumsum(got, axis=0)])[first] + self.hits
        cum_seen = np.concatenate([np.zeros((1, n), np.int64), np.cumsum(seen, axis=0)])[first] + self.total
        i, c = np.nonzero(seen)
        h = 1 + (8 * cum_got[i, c] + self._prior[c]) * (TOTAL - 2) // (8 * cum_seen[i, c] + 8)
        g, t = got[i, c], seen[i, c]
        bits = -(g * np.log2(h / TOTAL) + (t - g) * np.log2((TOTAL - h) / TOTAL))
        return np.bincount(i, weights=bits, minlength=m)

    def add(self, hit: np.ndarray, x: np.ndarray) -> None:
        m = x.reshape(-1) > 0
        self._pending.append((hit.reshape(-1)[m], x.reshape(-1)[m]))
