"""Pixel tables that adapt to the slice (bitstream version 3).

The model's fixed table ``T[s]`` for scale index ``s`` is a discretised logistic: right
for the training data on average, not for one slice (a CT's smooth noise, an ultrasound's
few grey levels). So from step 1 on, a pixel with scale index ``s`` is coded with ``T[s]``
mixed with the symbols already decoded *in this slice* at the same ``s`` (the counts of all
earlier sub-image steps, a Dirichlet posterior with ``T[s]`` as its prior):

    p_i = (w * T[s]_i / 2**16 + c_i) / (w + n)          n = sum_i c_i

with a prior weight ``w`` the encoder picks per plane from ``ADAPT_WEIGHTS`` (index 0: the
fixed tables), together with a level of neighbour-repeat flags (``coding.repeat``: off, from
step 1 on, or also in sub-image 0's rows): one of 12 coding modes, so a slice never pays more
than the 3.6 bits of the choice. Counts grow only
between steps, so every pixel of a step sees the same tables and a step is still coded in
a few batched calls. Everything is integer (``mix_tables``), so encoder and decoder build
the same tables on every machine. Measured on val (shipped weights, estimate): CT -7%,
ultrasound -3%, MR -0.3 to -0.8%.

``plane_bits`` gives every pixel's code length under one mode, ``choose_plane_coding`` the
encoder's choice. Numpy only, except ``adapted_pixel_bits`` (the per-pixel code lengths ``slice_bits``, the
training evaluation and the bit-cost maps report, from the integer decoder's tensors).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..model.prep import used_values
from ..model.tables import OFFSET_MAX, TOTAL, WIDE_OFFSET_MAX, pixel_symbols
from . import edge, flag_adapt, lattice, reference
from .jit import compiled
from .repeat import FlagCounts, flags_apply, item_candidates, item_flag_contexts

ADAPT_WEIGHTS = (0, 256, 1024, 4096)  # prior weights in pixels; the index is coded per plane
FLAG_LEVELS = 3  # neighbour-repeat flags (coding.repeat): 0 off, 1 from step 1 on, 2 also in sub-image 0's rows
WIDE_FLAG_LEVELS = 5  # bitstream version 5: 3 and 4 as 2, only where most or all neighbours agree
MODES = FLAG_LEVELS * len(ADAPT_WEIGHTS)  # the plane's coding mode: weight index + 4 * flag level (versions 3, 4)


_MAX_COUNT = 1 << 30  # counts of a scale index are halved beyond this (keeps mix_tables in int64)


def modes(flag_levels: int = FLAG_LEVELS) -> int:
    """How many coding modes a plane chooses from (the size of its uniform mode symbol)."""
    return flag_levels * len(ADAPT_WEIGHTS)


def side_bits(
    steps: int, calibrated: bool = True, adaptive: bool = True, refined: bool = False, flag_levels: int = FLAG_LEVELS
) -> float:
    """Bits at the head of a plane's pixel stream: the coding mode (version 3: prior-weight
    index and flag level, of ``flag_levels``) and one scale offset per step (version 2 and later;
    wider from version 4, ``refined``), each coded uniformly (version 4's refinement side
    information not included)."""
    bits = steps * math.log2(2 * offset_max(refined) + 1) if calibrated else 0.0
    return bits + (math.log2(modes(flag_levels)) if calibrated and adaptive else 0.0)


def flag_levels(wide: bool) -> int:
    """How many flag levels a plane's coding mode holds: 3 up to bitstream version 4, 5 from
    version 5 on (``wide``)."""
    return WIDE_FLAG_LEVELS if wide else FLAG_LEVELS


def offset_max(refined: bool) -> int:
    """The per-step scale offsets' bound: +-4 up to bitstream version 3, +-8 in version 4."""
    return WIDE_OFFSET_MAX if refined else OFFSET_MAX


def mix_tables(base: np.ndarray, counts: np.ndarray, weight: int) -> np.ndarray:
    """Integer tables (G, n) summing to 2**16, every entry >= 1: ``base`` rows (each summing to
    2**16) mixed with symbol ``counts`` (G, n) at prior weight ``weight`` (> 0). Exact in int64:
    numerators are below (weight + 2**30) * 2**16, times 2**16. With numba one pass a row
    (``_mix_rows``); the numpy lines below give the same integers."""
    kernel = compiled(_mix_rows)
    if kernel and base.ndim == 2:
        out = np.empty(base.shape, np.int64)
        kernel(np.ascontiguousarray(base, np.int64), np.ascontiguousarray(counts, np.int64), int(weight), TOTAL, out)
        return out
    base = base.astype(np.int64)
    counts = counts.astype(np.int64)
    ncol = base.shape[-1]
    num = weight * base + counts * TOTAL
    den = num.sum(axis=-1, keepdims=True)
    f = 1 + (num * (TOTAL - ncol)) // den
    rem = TOTAL - f.sum(axis=-1)
    idx = np.argmax(num, axis=-1)
    np.put_along_axis(f, idx[..., None], np.take_along_axis(f, idx[..., None], -1) + rem[..., None], -1)
    return f


def _mix_rows(base, counts, weight, total, out):
    """``mix_tables`` row by row into ``out`` (numba): the same integers without the numpy
    version's (G, n) temporaries, whose allocation cost more than the arithmetic (a plane's coding
    choice mixes some 2,000 rows per prior weight and flag level)."""
    G, n = base.shape
    for g in range(G):
        den = 0
        top = 0
        at = 0
        for j in range(n):
            v = weight * base[g, j] + counts[g, j] * total
            den += v
            if v > top:  # the first largest entry takes the rounding's remainder (``np.argmax``)
                top = v
                at = j
        kept = 0
        inv = 1.0 / den
        for j in range(n):
            # a // den by a float quotient (a < 2**62, the quotient below 2**16: off by at most one)
            # set right by the integer remainder, which costs less than an integer division
            a = (weight * base[g, j] + counts[g, j] * total) * (total - n)
            q = np.int64(a * inv)
            r = a - q * den
            q = q - 1 if r < 0 else (q + 1 if r >= den else q)
            out[g, j] = 1 + q
            kept += 1 + q
        out[g, at] += total - kept


class StepTables:
    """The tables of one plane, step by step: ``start_step(k)`` before coding step ``k``'s
    symbols (the counts then take in every symbol ``add``-ed during earlier steps), ``table(s)``
    the integer row for scale index ``s``."""

    def __init__(self, base: np.ndarray, weight: int):
        self.base = np.asarray(base)
        self.weight = int(weight)
        self.counts = np.zeros(self.base.shape, dtype=np.int64)
        self._pending = np.zeros(self.base.shape, dtype=np.int64)
        self._step: int | None = None
        self.models: dict[int, object] = {}  # the coder's models of this step's adapted rows

    def start_step(self, k: int) -> None:
        if k == self._step:
            return
        self.counts += self._pending
        self._pending[:] = 0
        over = self.counts.sum(axis=1) > _MAX_COUNT
        if over.any():
            self.counts[over] >>= 1
        self._step = k
        self.models = {}

    def adapted(self, s: int) -> bool:
        """False where ``table(s)`` is the fixed table (no prior weight, or no counts yet)."""
        return bool(self.adapted_rows(np.array([s]))[0])

    def adapted_rows(self, present: np.ndarray) -> np.ndarray:
        """``adapted`` for each of the scale indices ``present`` (bool array)."""
        if self.weight == 0:
            return np.zeros(len(present), bool)
        return self.counts[present].any(axis=1)

    def rows(self, present: np.ndarray) -> np.ndarray:
        """The integer rows (len, n) of the scale indices ``present``, adapted ones mixed in one call."""
        rows = self.base[present]
        if self.weight > 0:
            mixed = self.adapted_rows(present)
            if mixed.any():
                rows = rows.copy()
                rows[mixed] = mix_tables(self.base[present[mixed]], self.counts[present[mixed]], self.weight)
        return rows

    def table(self, s: int) -> np.ndarray:
        return self.rows(np.array([s]))[0]

    def add(self, sym: np.ndarray, s: np.ndarray) -> None:
        """Symbols of the current step (any shape; ``s`` alike): counted from the next step on."""
        if self.weight == 0:
            return
        if np.size(sym) * 16 < self._pending.size:  # a row of sub-image 0: counted in place, no whole-table histogram
            n = self.base.shape[1]
            np.add.at(self._pending.reshape(-1), np.asarray(s).reshape(-1).astype(np.int64) * n
                      + np.asarray(sym).reshape(-1), 1)
            return
        self.add_counts(symbol_counts(sym, s, self.base.shape))

    def add_counts(self, hist: np.ndarray) -> None:
        """A histogram (S, n) of the current step's symbols per scale index (``symbol_counts``)."""
        if self.weight > 0:
            self._pending += hist

    def hist_bits(self, hist: np.ndarray) -> float:
        """Total code length of a histogram (S, n) of symbols at the current step."""
        present = np.nonzero(hist.any(axis=1))[0]
        if present.size == 0:
            return 0.0
        rows, h = self.rows(present), hist[present]
        m = h > 0
        return float(-(h[m] * np.log2(rows[m] / TOTAL)).sum())

    def symbol_bits(self, sym: np.ndarray, s: np.ndarray) -> np.ndarray:
        """-log2 of each symbol's table entry (float64, shaped like ``sym``) at the current step."""
        flat_s, flat_sym = s.reshape(-1), sym.reshape(-1)
        if flat_s.size == 0:  # every pixel of the item flagged as a repeat
            return np.zeros(sym.shape, np.float64)
        present = used_values(flat_s)  # np.unique's, by counting
        f = self.rows(present)[np.searchsorted(present, flat_s), flat_sym]
        return (-np.log2(f / TOTAL)).reshape(sym.shape)


def symbol_counts(sym: np.ndarray, s: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Histogram (S, n) int64 of symbols ``sym`` per scale index ``s``."""
    flat = np.asarray(s).reshape(-1).astype(np.int64) * shape[1] + np.asarray(sym).reshape(-1)
    return np.bincount(flat, minlength=shape[0] * shape[1]).reshape(shape).astype(np.int64)


@dataclass
class PlaneItem:
    """One coded item of a plane in decoding order (a sub-image, or a row of sub-image 0):
    its pixels' symbols, scale indices as coded (bitstream 6: their ``coding.edge`` table rows),
    raw low or escape bits (all flattened), and
    with neighbour-repeat flags possible, each pixel's flag context ``x`` and whether it
    equals its candidate (``hit``, only where ``x > 0``; ``coding.repeat``)."""

    k: int
    sym: np.ndarray
    s: np.ndarray
    extra_bits: np.ndarray
    hit: np.ndarray | None = None
    x: np.ndarray | None = None
    row: int | None = None  # the row of sub-image 0 decoded row by row
    min_flags: bool = False  # bitstream 6: candidates at the plane's minimum flag in contexts of their own
    # bitstream 8 (``coding.reference``): each pixel's reference value (-1: none), its ring's repeats,
    # the ring's size, whether it equals its reference value, whether its candidate does; and the
    # plane's reference level (``set_reference_level``)
    ref: np.ndarray | None = None
    ref_m: np.ndarray | None = None
    ref_n: int = 0
    ref_eq: np.ndarray | None = None
    ref_level: int = 0
    # bitstream 10 (``coding.flag_adapt``): each pixel's location (refined) and scale index (shifted)
    # as the decoder has them before the flags, and its neighbour-repeat candidate
    mu: np.ndarray | None = None
    scale: np.ndarray | None = None
    cand: np.ndarray | None = None
    # bitstream 11 (``coding.blocks``): the item's first pixel in the plane and its shape, and the
    # pixels a constant-block map gives (no flag, not coded; ``set_known``)
    at: tuple[int, int] | None = None
    shape: tuple[int, int] | None = None
    known: np.ndarray | None = None
    # what follows from the fields above, the plane's reference level and the known pixels (flag contexts and
    # hits per level, the reference's hits, the kept pixels): the coding choice asks for them many times a
    # plane; ``set_known`` and ``set_reference_level`` empty it (x, cand, row are set first)
    _derived: dict = field(default_factory=dict, repr=False)
    _ref_x: np.ndarray | None = field(default=None, repr=False)  # ref_x at ref_level

    @property
    def stage(self) -> tuple[int, int]:
        """What the flag counts adapt between: a step, or one row of sub-image 0."""
        return (self.k, -1 if self.row is None else self.row)

    def flagged(self, flags: int) -> bool:
        """Does this item carry flags at flag level ``flags``?"""
        return self.hit is not None and flags_apply(flags, self.row)

    def flag_x(self, flags: int) -> np.ndarray:
        """The contexts of the pixels that carry a flag at level ``flags`` (0: no flag): not those a
        reference flag took, nor those whose candidate is the reference value that flag missed."""
        key = ("x", flags)
        if key not in self._derived:
            ref = self.ref if self.ref_flagged else None
            self._derived[key] = item_flag_contexts(self.x, self.cand, flags, self.row, self.min_flags, ref,
                                                    self.ref_x if ref is not None else None,
                                                    self.ref_hit() if ref is not None else None, self.known)
        return self._derived[key]

    @property
    def ref_flagged(self) -> bool:
        """Does this item carry reference flags (bitstream 8) at the plane's reference level?"""
        return self.ref_level > 0 and self.ref is not None

    @property
    def ref_x(self) -> np.ndarray:
        """The reference flags' contexts at the plane's level (0: no flag)."""
        if self._ref_x is None:
            self._ref_x = reference.contexts(self.ref, self.ref_m, self.ref_n, self.ref_level, self.row, self.known)
        return self._ref_x

    def set_known(self, known: np.ndarray | None) -> None:
        """Bitstream 11: the item's pixels a block map gives (flattened bool; None: none)."""
        self.known = None if known is None or not known.any() else np.asarray(known, bool).reshape(-1)
        self._derived.clear()
        self._ref_x = None

    def ref_hit(self) -> np.ndarray:
        """The pixels flagged as repeats of the reference (not to be written to: kept)."""
        got = self._derived.get("ref_hit")
        if got is None:
            got = self.ref_eq & (self.ref_x > 0) if self.ref_flagged else np.zeros(self.sym.shape, bool)
            self._derived["ref_hit"] = got
        return got

    def adaptive_ctx(self, flags: int) -> np.ndarray:
        """Bitstream 10: the flags' contexts split by ``|mu - cand|`` and the scale (``flag_adapt.contexts``)."""
        key = ("ctx", flags)
        got = self._derived.get(key)
        if got is None:
            got = self._derived[key] = flag_adapt.contexts(self.flag_x(flags), self.mu, self.cand, self.scale)
        return got

    def flag_hit(self, flags: int) -> np.ndarray:
        """The pixels flagged as repeats at level ``flags`` (not to be written to: kept)."""
        key = ("hit", flags)
        got = self._derived.get(key)
        if got is None:
            got = self._derived[key] = self.hit & (self.flag_x(flags) > 0)
        return got

    def keep(self, flags: int) -> np.ndarray:
        """The pixels coded with the tables at flag level ``flags`` (``kept_pixels``; not to be written to: kept)."""
        key = ("keep", flags)
        got = self._derived.get(key)
        if got is None:
            got = self._derived[key] = kept_pixels(self.ref_hit(), self.flag_hit(flags) if self.flagged(flags) else None,
                                                   self.known)
        return got


def kept_pixels(ref_hit: np.ndarray, hit: np.ndarray | None = None, given: np.ndarray | None = None) -> np.ndarray:
    """The pixels of an item coded with the tables: all but the flagged repeats of the reference
    (``ref_hit``) or of a neighbour (``hit``; None: the item carries no neighbour flags) and those a
    block map gives (``given``; None: none). The encoder's ``PlaneItem.keep`` and the decoder's
    ``item_stage.ItemSymbols.read`` both ask here, so the two agree by construction."""
    keep = ~ref_hit
    if hit is not None:
        keep &= ~hit
    if given is not None:
        keep &= ~given
    return keep


def set_reference_level(items: list[PlaneItem], level: int) -> None:
    """The plane's reference level (``coding.reference``) on each of its items."""
    for it in items:
        if it.ref_level != level:
            it.ref_level = level
            it._derived.clear()
            it._ref_x = None


def make_item(
    k, sym, s, extra_bits, values, pos, v, order, f: int, flags: bool = True, row: int | None = None,
    min_flags: bool = False, ref: np.ndarray | None = None, mu: np.ndarray | None = None,
    scale: np.ndarray | None = None,
) -> PlaneItem:
    """A ``PlaneItem`` from numpy arrays of one sub-image (``values`` its real pixels, the first
    at ``pos`` of the plane ``v``, which holds every pixel decoded before them); with ``flags``,
    the candidates and contexts of ``repeat.item_candidates``. ``row``: the item is that row of
    sub-image 0. ``min_flags`` (bitstream version 6): candidates at the plane's minimum flag as
    ``repeat.flag_contexts`` says. ``ref`` (bitstream version 8): the plane's reference values
    (``reference.ref_values``), for the reference flags. ``mu``, ``scale`` (bitstream version 10):
    the pixels' location and scale index as coded, for ``coding.flag_adapt``'s contexts."""
    item = PlaneItem(k, np.asarray(sym).reshape(-1).astype(np.int64), np.asarray(s).reshape(-1).astype(np.int64),
                     np.asarray(extra_bits, np.float64).reshape(-1), row=row, at=tuple(pos), shape=np.shape(values))
    found = item_candidates(v, pos, f, np.shape(values), order, k, row) if flags and np.size(values) else None
    if found is not None:
        c, x = found
        item.x = x.reshape(-1)
        item.cand = c.reshape(-1)
        if mu is not None:
            item.mu, item.scale = np.asarray(mu).reshape(-1), np.asarray(scale).reshape(-1)
        item.hit = (np.asarray(values).reshape(-1) == c.reshape(-1)) & (item.x > 0)
        item.min_flags = min_flags
    got = None
    if flags and ref is not None and np.size(values):
        got = reference.item_reference(v, ref, pos, f, np.shape(values), order, k, row)
    if got is not None:
        r, m, item.ref_n = got
        item.ref, item.ref_m = r.reshape(-1), m.reshape(-1)
        item.ref_eq = np.asarray(values).reshape(-1) == item.ref
    return item


def walk_plane(items: list[PlaneItem], base: np.ndarray, weight_index: int, flags: int, tables: bool = True):
    """The coding state item by item, in decoding order, at one coding choice (prior-weight
    index, flag level): yields ``(item, keep, tables, flag counts, reference flag counts)`` as
    they stand when the item is coded, and counts the item once the caller is done with it.
    ``tables`` False: the flags' state alone (the tables yielded as None, not kept)."""
    tabs = StepTables(base, ADAPT_WEIGHTS[weight_index]) if tables else None
    counts, refs = FlagCounts(), reference.counts()
    for it in items:
        if tabs is not None:
            tabs.start_step(it.k)
        counts.start_step(it.stage)
        refs.start_step(it.stage)
        keep = it.keep(flags)
        yield it, keep, tabs, counts, refs
        if it.ref_flagged:
            refs.add(it.ref_hit(), it.ref_x)
        if it.flagged(flags):
            counts.add(it.flag_hit(flags), it.flag_x(flags))
        if tabs is not None:
            tabs.add(it.sym[keep], it.s[keep])


def ref_flag_bits(it: PlaneItem, refs) -> np.ndarray:
    """Code length of each of the item's reference flags (0 where none), as ``refs`` stands."""
    return refs.bits(it.ref_hit(), it.ref_x) if it.ref_flagged else np.zeros(it.sym.shape, np.float64)


def plane_bits(items: list[PlaneItem], base: np.ndarray, weight_index: int, flags: int,
               adaptive_flags: bool = False) -> list[np.ndarray]:
    """Per item, every pixel's code length (float64) at one coding choice: flag bits (``flags``: the level;
    ``adaptive_flags``: coded by ``coding.flag_adapt``, bitstream 10), then for the unflagged pixels the
    adapted table bits and the raw low / escape bits."""
    # the flags' state moves item by item (``walk_plane``); the tables only between steps, so the table
    # bits of a step's items (the rows of sub-image 0) are looked up in one call (the same values, element
    # by element) and counted in one, when the step is over
    af = flag_adapt.AdaptiveFlags() if adaptive_flags else None
    tabs = StepTables(base, ADAPT_WEIGHTS[weight_index])
    out, step = [], []  # step: (bits, item, kept pixels) of the current step's items, their table bits to come

    def end_step():
        if not step:
            return
        sym = np.concatenate([it.sym[keep] for _b, it, keep in step])
        sc = np.concatenate([it.s[keep] for _b, it, keep in step])
        table, at = tabs.symbol_bits(sym, sc), 0
        for b, it, keep in step:
            n = int(np.count_nonzero(keep))
            b[keep] += table[at : at + n] + it.extra_bits[keep]
            at += n
        tabs.add(sym, sc)
        step.clear()

    for it, keep, _none, counts, refs in walk_plane(items, base, weight_index, flags, tables=False):
        if step and it.k != step[-1][1].k:
            end_step()
        tabs.start_step(it.k)
        b = ref_flag_bits(it, refs)
        if it.flagged(flags) and af is not None:
            b += af.pixel_bits(it.flag_hit(flags), it.adaptive_ctx(flags))
        elif it.flagged(flags):
            b += counts.bits(it.flag_hit(flags), it.flag_x(flags))
        out.append(b)
        step.append((b, it, keep))
    end_step()
    return out


def choose_plane_coding(items: list[PlaneItem], base: np.ndarray, flag_levels: int = FLAG_LEVELS) -> tuple[int, int]:
    """(prior-weight index, flag level below ``flag_levels``) that code the plane in the fewest
    bits (ties: the lower level, then the lower index). Stored in the stream, so the choice need
    not be reproducible. Works on per-step histograms, so the modes cost little more than one.
    A level is tried only when some pixel would carry a flag at it."""
    levels = [0] + [lv for lv in range(1, flag_levels)
                    if any(it.flagged(lv) and bool((it.flag_x(lv) > 0).any()) for it in items)]
    unflagged = _unflagged(items, base)
    best = None
    for flags in levels:
        fixed, hists, rows = _fixed_and_hists(items, base, flags, unflagged)
        for w, table in enumerate(_table_bits_all(rows, hists)):
            cost = sum(fixed.values()) + sum(table.values())
            if best is None or cost < best[0] - 1e-9:
                best = (cost, w, flags)
    return best[1], best[2]


def _unflagged(items: list[PlaneItem], base: np.ndarray) -> tuple:
    """Per step, what holds at every flag level before its flags take pixels out: the reference
    flags' bits plus the raw low and escape bits of the pixels they leave, and the histogram
    (rows, symbols) of those pixels' symbols; then ``base``'s rows that the plane's pixels use
    (ascending) and each scale index's place among them: the histograms hold those rows only (a plane uses
    about half of the tables' rows, and the choice sums over every row it is given)."""
    used = used_values(np.concatenate([it.s.reshape(-1) for it in items])) if items else np.zeros(0, np.int64)
    place = np.zeros(base.shape[0], np.int64)
    place[used] = np.arange(used.size)
    fixed, kept = {}, {}
    refs = reference.counts()
    for it in items:
        refs.start_step(it.stage)
        b = float(ref_flag_bits(it, refs).sum())
        if it.ref_flagged:
            refs.add(it.ref_hit(), it.ref_x)
        keep = it.keep(0)  # level 0: no neighbour flags; not the reference's nor a block map's pixels
        fixed[it.k] = fixed.get(it.k, 0.0) + b + float(it.extra_bits[keep].sum())
        kept.setdefault(it.k, []).append(place[it.s[keep]] * base.shape[1] + it.sym[keep])
    rows = base[used]
    hists = {k: np.bincount(np.concatenate(f), minlength=rows.size) for k, f in kept.items()}
    return fixed, hists, rows, place


def _fixed_and_hists(items: list[PlaneItem], base: np.ndarray, flags: int, unflagged=None) -> tuple[dict, dict, np.ndarray]:
    """Per step at flag level ``flags``: the bits that do not depend on the tables (reference and
    neighbour-repeat flags, raw low and escape bits) and the histogram (rows, symbols) of the
    symbols the tables code, over the rows the plane uses, which come third (``base``'s rows);
    ``unflagged``: ``_unflagged``'s, when already at hand."""
    fixed, hists, rows, place = unflagged if unflagged is not None else _unflagged(items, base)
    fixed, taken = dict(fixed), {}
    stages, flagged, stage, last = [], [], -1, None
    for it in items:  # the flags' counts move on at every new stage, flagged or not (``walk_plane``)
        if it.stage != last:
            stage, last = stage + 1, it.stage
        if it.flagged(flags):
            flagged.append(it)
            stages.append(stage)
    bits = FlagCounts().walk_bits([(it.flag_hit(flags), it.flag_x(flags)) for it in flagged], np.array(stages))
    for it, b in zip(flagged, bits):  # the neighbour-repeat flags take their hits out (never a reference flag's pixel)
        hit = it.flag_hit(flags)
        fixed[it.k] += float(b) - float(it.extra_bits[hit].sum())
        taken.setdefault(it.k, []).append(place[it.s[hit]] * base.shape[1] + it.sym[hit])
    out = {}
    for k, h in hists.items():
        if k in taken:
            h = h - np.bincount(np.concatenate(taken[k]), minlength=rows.size)
        out[k] = h.reshape(rows.shape)
    return fixed, out, rows


def _table_bits(base: np.ndarray, weight_index: int, hists: dict) -> dict:
    """Per step, the adapted tables' bits of its histogram at prior weight ``weight_index``."""
    tabs, out = StepTables(base, ADAPT_WEIGHTS[weight_index]), {}
    for k, h in hists.items():  # decoding order: items come in it
        tabs.start_step(k)
        out[k] = tabs.hist_bits(h)
        tabs.add_counts(h)
    return out


def _table_bits_all(base: np.ndarray, hists: dict) -> list[dict]:
    """``_table_bits`` at every prior weight (a list by weight index), in one pass over every step's
    rows: the counts before a step are the sum of the histograms of the steps before it, so the
    adapted rows of all steps and weights are mixed in a few array calls (the same integer rows as
    ``StepTables``; the float sums may differ from ``hist_bits``'s in the last bit)."""
    ks = list(hists)
    if not ks:
        return [{} for _ in ADAPT_WEIGHTS]
    kernel = _steps_kernel()
    if kernel:
        H = np.stack([np.asarray(hists[k], np.int64).reshape(base.shape) for k in ks])
        bits = np.zeros((len(ADAPT_WEIGHTS), len(ks)))
        if not kernel(H, np.ascontiguousarray(base, np.int64), np.array(ADAPT_WEIGHTS, np.int64), TOTAL, _MAX_COUNT,
                      bits):
            return [_table_bits(base, w, hists) for w in range(len(ADAPT_WEIGHTS))]
        return [dict(zip(ks, map(float, b))) for b in bits]
    hs = [np.asarray(hists[k], np.int64) for k in ks]
    used = np.flatnonzero(np.logical_or.reduce([h.any(axis=1) for h in hs]))  # rows some step holds
    H = np.stack([h[used] for h in hs])  # (steps, used rows, symbols), decoding order
    C = np.cumsum(H, axis=0) - H  # each step's counts: its histogram counts from the next step on
    if (C.sum(axis=-1) > _MAX_COUNT).any():  # StepTables would halve counts: its own walk
        return [_table_bits(base, w, hists) for w in range(len(ADAPT_WEIGHTS))]
    t, r = np.nonzero(H.any(axis=-1))  # each step's present rows, in order
    h, c, b = H[t, r], C[t, r], np.asarray(base, np.int64)[used[r]]
    nz = h > 0
    hv, step_of = h[nz].astype(np.float64), np.broadcast_to(t[:, None], h.shape)[nz]
    mixed = c.any(axis=1)
    # only the present symbols' entries are read: the base rows' once (prior weight 0, and every row
    # without counts yet), the mixed rows' per weight, in the same order (row-major) as ``nz``
    fixed = np.log2(b[nz] / TOTAL)
    in_mixed = np.repeat(mixed, nz.sum(axis=1))
    bm, cm, nzm = b[mixed], c[mixed], nz[mixed]
    out = []
    for weight in ADAPT_WEIGHTS:
        logs = fixed
        if weight > 0 and mixed.any():
            logs = fixed.copy()
            logs[in_mixed] = np.log2(mix_tables(bm, cm, weight)[nzm] / TOTAL)
        bits = np.bincount(step_of, weights=-(hv * logs), minlength=len(ks))
        present = np.zeros(len(ks), bool)
        present[t] = True
        out.append({k: float(bits[i]) if present[i] else 0.0 for i, k in enumerate(ks)})
    return out


_mix_rows_compiled = None  # ``_mix_rows`` as numba built it, which ``_steps_bits`` calls (``_steps_kernel``)


def _steps_kernel():
    """``_steps_bits`` compiled, or False without numba. The kernel it calls is compiled first and
    named by a module global, as numba resolves a kernel's callees (a kernel passed as an argument
    instead would give every process a new cache entry, compiled again: 2 s at its first plane)."""
    global _mix_rows_compiled
    from .jit import BUILD_LOCK

    with BUILD_LOCK:
        mix = compiled(_mix_rows)
        if not mix:
            return False
        _mix_rows_compiled = mix  # before ``_steps_bits`` compiles: numba reads it then
        return compiled(_steps_bits)


def _steps_bits(H, base, weights, total, max_count, out) -> bool:
    """``_table_bits_all``'s sums for numba, the same terms added in the same order (each step's rows,
    then symbols): ``out[w, t]``, the bits of step ``t``'s histogram ``H[t]`` (S, n) under the tables
    at prior weight ``weights[w]`` after the steps before it (mixed by ``_mix_rows``). False where a
    row's counts pass ``max_count`` (``StepTables`` would halve them)."""
    steps, S, n = H.shape
    counts = np.zeros((S, n), np.int64)
    mixed = np.zeros((1, n), np.int64)
    logs = np.empty(n)
    for t in range(steps):
        for s in range(S):
            present = False
            for j in range(n):
                if H[t, s, j] > 0:
                    logs[j] = np.log2(base[s, j] / total)
                    present = True
            if not present:
                continue
            counted = False
            for j in range(n):
                counted = counted or counts[s, j] > 0
            for w in range(weights.shape[0]):
                if weights[w] > 0 and counted:
                    _mix_rows_compiled(base[s : s + 1], counts[s : s + 1], weights[w], total, mixed)
                    for j in range(n):
                        if H[t, s, j] > 0:
                            out[w, t] += -(H[t, s, j] * np.log2(mixed[0, j] / total))
                else:
                    for j in range(n):
                        if H[t, s, j] > 0:
                            out[w, t] += -(H[t, s, j] * logs[j])
        for s in range(S):
            row = 0
            for j in range(n):
                counts[s, j] += H[t, s, j]
                row += counts[s, j]
            if row > max_count and t + 1 < steps:
                return False
    return True


def coding_step_bits(items: list[PlaneItem], base: np.ndarray, weight_index: int, flags: int) -> dict:
    """Each step's bits (``{k: bits}``) at one coding choice: the sums of ``plane_bits`` per step
    (up to the order of the float sums), from histograms."""
    fixed, hists, rows = _fixed_and_hists(items, base, flags)
    table = _table_bits_all(rows, hists)[weight_index]
    return {k: fixed[k] + table.get(k, 0.0) for k in fixed}


def choose_reference(items: list[PlaneItem], base: np.ndarray, weight_index: int, flags: int) -> int:
    """The reference level (``coding.reference``) that codes the plane in the fewest bits, judged on
    every pixel's code length without references at the coding choice given: a level's flags plus
    the bits of the pixels they do not take. Sets it on the items and returns it (0: none, also
    when no item has reference values). Stored in the stream, so it need not be reproducible."""
    set_reference_level(items, 0)
    if not any(it.ref is not None for it in items):
        return 0
    bits = plane_bits(items, base, weight_index, flags)
    best, best_cost = 0, sum(float(b.sum()) for b in bits)
    for level in range(1, reference.LEVELS):
        set_reference_level(items, level)
        refs, cost = reference.counts(), 0.0
        for it, b in zip(items, bits):
            refs.start_step(it.stage)
            hit = it.ref_hit()
            if it.ref_flagged:
                cost += float(refs.bits(hit, it.ref_x).sum())
                refs.add(hit, it.ref_x)
            cost += float(b[~hit].sum())
        if cost < best_cost - 1e-9:
            best, best_cost = level, cost
    set_reference_level(items, best)
    return best


def choose_coding(items: list[PlaneItem], base: np.ndarray, flag_levels: int, with_reference: bool,
                  step_bits: dict | None = None) -> tuple[int, int, int]:
    """The plane's coding choice, as the encoder makes it: prior-weight index and flag level
    (``choose_plane_coding``), then, ``with_reference``, the reference level (``choose_reference``)
    and, where one is taken, the first two again with its flags in place. The choice starts from
    no reference on every item, whatever an earlier choice left on them (bitstream 9 chooses on
    the lattice's items first)."""
    set_reference_level(items, 0)
    w, flags = choose_plane_coding(items, base, flag_levels)
    ref_level = choose_reference(items, base, w, flags) if with_reference else 0
    if ref_level:
        w, flags = choose_plane_coding(items, base, flag_levels)
    if step_bits is not None:  # each step's bits at the choice (``coding_step_bits``)
        step_bits.update(coding_step_bits(items, base, w, flags))
    return w, flags, ref_level


def choose_lattice(items: list[PlaneItem], base: np.ndarray, weight_index: int, flags: int,
                   costs: dict[int, float], order, f: int) -> int:
    """Bitstream version 7: the base level whose classical bits ``costs[level]`` save most over
    what the learned codec spends on that lattice's items at the coding choice
    ``(weight_index, flags)`` (0: none saves; ``coding.lattice``). The lattices' steps come first
    in the decoding order, so only that prefix of ``items`` is walked."""
    if not costs:
        return 0
    bits = lattice_bits(items, base, weight_index, flags, lattice.candidate_steps(costs, order, f))
    return lattice.choose_from(items, bits, costs, order, f)


def lattice_bits(items: list[PlaneItem], base: np.ndarray, weight_index: int, flags: int, ks) -> list[np.ndarray]:
    """Each pixel's learned code length (``plane_bits``) for the items up to the last one whose
    step is in ``ks`` (that prefix of the decoding order): what a base lattice would replace."""
    last = max((i for i, it in enumerate(items) if it.k in ks), default=-1)
    return plane_bits(items[: last + 1], base, weight_index, flags)


def adapted_pixel_bits(
    steps, R: int, tables, shifts, K: int, v: np.ndarray, order, rows0: bool = False, flag_levels: int = FLAG_LEVELS,
    edge_thr: np.ndarray | None = None, min_flags: bool = False, base_costs: dict[int, float] | None = None,
    ref: np.ndarray | None = None, adaptive_flags: bool = False, block_lattice: int | None = None,
    early_level: int = 0,
) -> tuple[list[np.ndarray], tuple]:
    """Per item ``(k, values, mu, s)`` of a plane (integer tensors, decoding order, ``s`` as
    coded; ``v`` the whole plane, numpy; ``rows0``: sub-image 0 is decoded row by row): every
    pixel's code length in float64 bits as the codec writes it in bitstream version 3 (with
    ``flag_levels`` = ``WIDE_FLAG_LEVELS``: version 5; with the ``coding.edge`` thresholds
    ``edge_thr`` and ``min_flags`` as well: version 6; with ``base_costs``, the bits of each base
    level's codestream: version 7, the chosen lattice's bits shared over its pixels by
    ``lattice.map_share``; with ``ref``, the previous slice's values as ``reference.ref_values`` gives
    them: version 8; with ``adaptive_flags``, the flags coded by ``coding.flag_adapt``: version 10; the
    coding choice is still judged with the flag counts of version 9; with ``block_lattice``, the
    stride of the base lattice already taken out of ``steps`` (0: none), the constant-block map as
    ``coding.block_choice`` chooses it: version 11, its bits shared over the pixels it gives), and
    the encoder's choice (weight index, flag level, base level, reference level). ``early_level``:
    the base level the encoder takes before weighing (``coding.lattice_estimate``; 0: it weighs)."""
    base = tables.cpu().numpy()
    if edge_thr is not None:
        base = edge.expand(base)
    f = max(max(p) for p in order) + 1
    items, rows_of = [], []
    for k, vals, mu, s in steps:
        sym, _low, nb, esc = pixel_symbols(vals, mu, s, shifts, K)
        sym, s_, vals = sym.cpu().numpy(), s.long().cpu().numpy(), vals.cpu().numpy()
        mu_, sc = (mu.long().cpu().numpy(), s_) if adaptive_flags else (None, None)
        if edge_thr is not None:  # the table rows by scale and distance from the minimum
            s_ = edge.table_index(mu.cpu().numpy(), s_, edge_thr)
        extra = np.where(esc.cpu().numpy(), np.log2(float(R) + 1.0), nb.cpu().numpy().astype(np.float64))
        di, dj = order[k]
        if k == 0 and rows0:  # the codec's items: one per row
            for r in range(vals.shape[0]):
                items.append(make_item(0, sym[r], s_[r], extra[r], vals[r : r + 1], (di + r * f, dj), v, order, f, row=r,
                                       min_flags=min_flags, ref=ref, mu=None if mu_ is None else mu_[r],
                                       scale=None if sc is None else sc[r]))
            rows_of.append(vals.shape[0])
        else:
            items.append(make_item(k, sym, s_, extra, vals, (di, dj), v, order, f, min_flags=min_flags, ref=ref,
                                   mu=mu_, scale=sc))
            rows_of.append(None)
    w, flags, ref_level = choose_coding(items, base, flag_levels, ref is not None)
    level, prefix = 0, []
    if base_costs:  # the learned bits of the lattices' items, walked once for the choice and the map
        prefix = lattice_bits(items, base, w, flags, lattice.candidate_steps(base_costs, order, f))
        level = early_level or lattice.choose_from(items, prefix, base_costs, order, f)
    known = lattice.steps(order, lattice.stride(f, level)) if level else frozenset()
    # the lattice's items leave the pixel stream; the coding choice stays (``coding.lattice``)
    shared = iter(lattice.map_share(items, prefix, known, base_costs[level]) if level else [])
    coded_items = [it for it in items if it.k not in known]
    map_bits = 0.0
    if block_lattice is not None:  # version 11 (the lattice, if any, chosen before: not in ``steps``)
        from . import block_choice

        _map, (w, flags, ref_level), map_bits = block_choice.choose(
            coded_items, base, flag_levels, ref is not None, (w, flags, ref_level), v, R, f, block_lattice,
            adaptive_flags)
    coded_bits = plane_bits(coded_items, base, w, flags, adaptive_flags)
    if map_bits:
        given = sum(int(it.known.sum()) for it in coded_items if it.known is not None)
        for it, b in zip(coded_items, coded_bits):
            if it.known is not None:
                b[it.known] += map_bits / given
    coded = iter(coded_bits)
    bits = [next(shared) if it.k in known else next(coded) for it in items]
    out, i = [], 0
    for (_k, vals, _mu, _s), nrows in zip(steps, rows_of):
        n = 1 if nrows is None else nrows
        out.append(np.concatenate(bits[i : i + n]).reshape(tuple(vals.shape)))
        i += n
    return out, (w, flags, level, ref_level)
