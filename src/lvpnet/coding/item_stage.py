"""A plane's items (one step, or one row of sub-image 0) as stages behind one interface.

Each coded item holds, in the decoder's reading order: the flags of the pixels that repeat the
previous slice (``reference_flags``, version 8), the flags of the pixels that repeat a decoded
neighbour (``neighbour_flags``: counts per context from version 3, ``coding.flag_adapt`` from 10),
then the symbols and extras of the other pixels (``symbols``). Each is an ``ItemStage``:

* ``plan(it, keep, extra, walk)``, encoder, forward: the stage's state for ``PlaneItem`` ``it``
  as the plane's adaptive state ``walk`` stands at it (None: nothing coded);
* ``bits(state, walk)``: its code length, asked before the walk moves past the item;
* ``write(coder, state, walk)``, encoder, reverse: push it (ANS is a stack: the items and their
  stages in reverse);
* ``read(coder, view, walk)``, decoder: the stage's contexts from what the decoder knows of the
  item (``ItemView``: the plane decoded so far, the stages read before), then ``pop``; what it read
  goes into the view, its bits (when ``walk.want_bits``) are returned;
* ``pop(coder, x, walk)``, decoder: pop the stage given its contexts (or the symbols' table rows),
  -> (what it read, its bits); the walk's counts move past it.

So the encoder's flags see the whole plane (``adapt.make_item``), the decoder's ``read`` the plane
decoded so far; the contexts of both come from one function each (``repeat.item_flag_contexts``,
``reference.contexts``), fed the same numbers, and the pixels left to ``symbols`` from one
rule (``adapt.kept_pixels``). The encoder hands ``plan_items`` the plane's items with their extras
as one ``StepItems`` and keeps one ``ItemPlan`` per item (the states by name); which stages a
profile has is ``Profile.item_stages`` (names), mapped to the classes here by ``item_stages``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..model.tables import TOTAL
from . import flag_adapt, reference
from .adapt import ADAPT_WEIGHTS, PlaneItem, StepTables, kept_pixels, walk_plane
from .repeat import FLAG_CONTEXTS, FlagCounts, flags_apply, item_candidates, item_flag_contexts


@dataclass(frozen=True)
class StepItems:
    """A plane's coded items in decoding order (``adapt.PlaneItem``) and, with each, its pixels'
    extras (the raw low bits, or the value where the symbol escapes; flattened): what
    ``plan_items`` codes. Built once per step group by the encoder, joined with ``+``; ``without``
    takes steps out (a base lattice's), items and extras together."""

    items: list[PlaneItem] = field(default_factory=list)
    extras: list[np.ndarray] = field(default_factory=list)

    def __add__(self, other: StepItems) -> StepItems:
        return StepItems(self.items + other.items, self.extras + other.extras)

    def without(self, steps) -> StepItems:
        """The items (and their extras) of the steps not in ``steps``."""
        kept = [i for i, it in enumerate(self.items) if it.k not in steps]
        return StepItems([self.items[i] for i in kept], [self.extras[i] for i in kept])


@dataclass
class PlaneWalk:
    """The adaptive state of one plane's items: the tables (None: the fixed ones), the flag level
    and counts (``FlagCounts`` or ``flag_adapt.AdaptiveFlags``), the reference flags' counts. The
    encoder's ``adapt.walk_plane`` moves its tables and counts; the decoder's ``read`` calls do."""

    pixels: object  # the ``PixelCoder`` of the plane's table rows
    R: int
    flags: int = 0
    tables: StepTables | None = None
    counts: FlagCounts | None = None
    refs: FlagCounts | None = None
    adaptive: flag_adapt.AdaptiveFlags | None = None
    want_bits: bool = False

    @classmethod
    def decoder(cls, pixels, R: int, base, weight: int | None, flags: int, adaptive: bool, want_bits: bool):
        """The decoder's walk: ``weight`` None, the fixed tables (versions 1 and 2)."""
        tables = None if weight is None else StepTables(base, ADAPT_WEIGHTS[weight])
        return cls(pixels, R, flags, tables, FlagCounts(), reference.counts(),
                   flag_adapt.AdaptiveFlags() if adaptive else None, want_bits)

    def start(self, k: int, row: int | None) -> None:
        """Decoder: before the item of step ``k`` (``row``: a row of sub-image 0)."""
        if self.tables is not None:
            self.tables.start_step(k)
        stage = (k, -1 if row is None else row)
        self.counts.start_step(stage)
        self.refs.start_step(stage)


@dataclass
class ItemView:
    """The decoder's view of one item: the plane decoded so far (``out``), the item's first pixel
    ``at`` and ``shape``, its step ``k`` and ``row`` (of sub-image 0; None: a sub-image), its
    location ``mu`` and shifted scale ``s``, table rows ``trows``, the pixels a block map gives
    (``given``, None: none) and the previous slice (``ref_plane`` at ``ref_level``). The stages
    fill in what they read: the reference values and flags, the neighbours' candidates and flags,
    the kept pixels' symbols and extras."""

    out: np.ndarray
    at: tuple[int, int]
    f: int
    order: tuple
    k: int
    row: int | None
    mu: np.ndarray
    s: np.ndarray
    trows: np.ndarray
    given: np.ndarray | None = None
    ref_plane: np.ndarray | None = None
    ref_level: int = 0
    ref: np.ndarray | None = None  # reference values, where the reference flags were read
    ref_x: np.ndarray | None = None
    ref_hit: np.ndarray | None = None
    cand: np.ndarray | None = None  # neighbour candidates, where the neighbour flags were read
    hit: np.ndarray | None = None
    keep: np.ndarray | None = None  # the pixels with a symbol, and theirs
    sym: np.ndarray | None = None
    extra: np.ndarray | None = None

    def __post_init__(self):
        self.ref_hit = self.hit = np.zeros(self.mu.shape, bool)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.mu.shape


@dataclass
class FixedFlags:
    """Flags coded with per-context probabilities frozen for the item (``repeat.FlagCounts``):
    ``hit`` and ``x`` (0: no flag) per pixel, ``tables[x]`` the [miss, hit] frequencies."""

    hit: np.ndarray
    x: np.ndarray
    tables: list

    @classmethod
    def of(cls, counts: FlagCounts, hit: np.ndarray, x: np.ndarray, contexts: int) -> FixedFlags:
        return cls(hit, x, [counts.table(xi) for xi in range(contexts)])

    def table(self, x: int) -> np.ndarray:
        return self.tables[x]

    def bits(self) -> float:
        """``FlagCounts.bits(hit, x).sum()`` as the counts stood (the same float)."""
        out = np.zeros(self.hit.shape, np.float64)
        m = self.x > 0
        if m.any():
            h = np.array([t[1] for t in self.tables], np.int64)[self.x[m]]
            out[m] = -np.log2(np.where(self.hit[m], h, TOTAL - h) / TOTAL)
        return float(out.sum())


@dataclass
class Symbols:
    """An item's coded pixels: symbols, extras, table rows, and the models they are pushed with."""

    sym: np.ndarray
    extra: np.ndarray
    s: np.ndarray
    models: dict


@dataclass
class ItemPlan:
    """What the encoder codes of one item, by stage (the pixels ``keep``: those with a symbol)."""

    keep: np.ndarray
    reference_flags: FixedFlags | None = None
    neighbour_flags: FixedFlags | flag_adapt.FlagPlan | None = None
    symbols: Symbols | None = None


class ItemStage:
    """One part of an item (see the module docstring). ``name``: its ``ItemPlan`` field."""

    name: str = ""

    def plan(self, it: PlaneItem, keep: np.ndarray, extra: np.ndarray, walk: PlaneWalk):
        raise NotImplementedError

    def bits(self, state, walk: PlaneWalk) -> float:
        raise NotImplementedError

    def write(self, coder, state, walk: PlaneWalk) -> None:
        raise NotImplementedError

    def read(self, coder, view: ItemView, walk: PlaneWalk) -> float:
        raise NotImplementedError

    def pop(self, coder, x: np.ndarray, walk: PlaneWalk):
        raise NotImplementedError


class _CountedFlags(ItemStage):
    """Flags pushed per context with ``FixedFlags``' frozen tables, popped with the walk's counts."""

    contexts = FLAG_CONTEXTS

    def counts(self, walk: PlaneWalk) -> FlagCounts:
        raise NotImplementedError

    def bits(self, state: FixedFlags | None, walk: PlaneWalk) -> float:
        return 0.0 if state is None else state.bits()

    def write(self, coder, state: FixedFlags | None, walk: PlaneWalk) -> None:
        if state is not None:
            walk.pixels.push_flags(coder, state.hit, state.x, state)

    def pop(self, coder, x: np.ndarray, walk: PlaneWalk):
        counts = self.counts(walk)
        hit = walk.pixels.pop_flags(coder, x, counts)
        bits = float(counts.bits(hit, x).sum()) if walk.want_bits else 0.0
        counts.add(hit, x)
        return hit, bits


class ReferenceFlags(_CountedFlags):
    """Version 8: the pixels repeating the previous slice, at the plane's reference level."""

    name = "reference_flags"
    contexts = reference.CONTEXTS

    def counts(self, walk: PlaneWalk) -> FlagCounts:
        return walk.refs

    def plan(self, it, keep, extra, walk) -> FixedFlags | None:
        return FixedFlags.of(walk.refs, it.ref_hit(), it.ref_x, self.contexts) if it.ref_flagged else None

    def read(self, coder, view: ItemView, walk: PlaneWalk) -> float:
        if not view.ref_level:
            return 0.0
        got = reference.item_reference(view.out, view.ref_plane, view.at, view.f, view.shape, view.order, view.k,
                                       view.row)
        if got is None:
            return 0.0
        view.ref, view.ref_x = got[0], reference.contexts(*got, view.ref_level, view.row, view.given)
        view.ref_hit, bits = self.pop(coder, view.ref_x, walk)
        return bits


@dataclass(frozen=True)
class _NeighbourContexts:
    """The decoder's contexts of the neighbour-repeat flags (``min_flags``: version 6's flags at
    the plane's minimum)."""

    min_flags: bool = False

    def candidates(self, view: ItemView, walk: PlaneWalk):
        """-> (candidates, contexts ``x``) of the item's flags, or None where it carries none: not
        where the reference took the pixel or its candidate missed, nor where the block map gives it."""
        if not flags_apply(walk.flags, view.row):
            return None
        found = item_candidates(view.out, view.at, view.f, view.shape, view.order, view.k, view.row)
        if found is None:
            return None
        cand, x = found
        return cand, item_flag_contexts(x, cand, walk.flags, view.row, self.min_flags, view.ref, view.ref_x,
                                        view.ref_hit, view.given)

    def fine(self, x: np.ndarray, view: ItemView) -> np.ndarray:
        """The contexts ``pop`` takes (the counted flags': ``x`` itself)."""
        return x

    def read(self, coder, view: ItemView, walk: PlaneWalk) -> float:
        found = self.candidates(view, walk)
        if found is None:
            return 0.0
        view.cand, x = found
        view.hit, bits = self.pop(coder, self.fine(x, view), walk)
        return bits


@dataclass(frozen=True)
class NeighbourFlags(_NeighbourContexts, _CountedFlags):
    """Versions 3 to 9: the pixels repeating a decoded neighbour, per context ``x``."""

    name = "neighbour_flags"

    def counts(self, walk: PlaneWalk) -> FlagCounts:
        return walk.counts

    def plan(self, it, keep, extra, walk) -> FixedFlags | None:
        if not it.flagged(walk.flags):
            return None
        return FixedFlags.of(walk.counts, it.flag_hit(walk.flags), it.flag_x(walk.flags), self.contexts)


@dataclass(frozen=True)
class AdaptiveNeighbourFlags(_NeighbourContexts, ItemStage):
    """Version 10 on: the same flags in contexts of the prediction, adapting round by round
    (``coding.flag_adapt``); ``pop`` takes the fine contexts (``flag_adapt.contexts``)."""

    name = "neighbour_flags"

    def fine(self, x: np.ndarray, view: ItemView) -> np.ndarray:
        """Split by the refined ``mu``'s distance from the candidate and the shifted scale."""
        return flag_adapt.contexts(x, view.mu, view.cand, view.s)

    def plan(self, it, keep, extra, walk) -> flag_adapt.FlagPlan | None:
        if not it.flagged(walk.flags):
            return None
        return walk.adaptive.plan(it.flag_hit(walk.flags), it.adaptive_ctx(walk.flags))

    def bits(self, state, walk) -> float:
        return 0.0 if state is None else state.bits()

    def write(self, coder, state, walk) -> None:
        if state is not None:
            flag_adapt.AdaptiveFlags.push(coder, state)

    def pop(self, coder, x, walk):
        before = walk.adaptive.coded_bits
        hit = walk.adaptive.pop(coder, x)
        return hit, walk.adaptive.coded_bits - before


class ItemSymbols(ItemStage):
    """Every version: the kept pixels' symbols by table row, then their extras (``PixelCoder``);
    ``pop`` takes the kept pixels' table rows and returns (sym, extra)."""

    name = "symbols"

    def plan(self, it, keep, extra, walk) -> Symbols:
        s = it.s[keep]
        return Symbols(it.sym[keep], extra[keep], s, walk.pixels.step_models(s, walk.tables))

    def bits(self, state: Symbols, walk) -> float:
        return walk.pixels.bits(state.sym, state.s, walk.R, walk.tables)

    def write(self, coder, state: Symbols, walk) -> None:
        walk.pixels.push_step(coder, state.sym, state.extra, state.s, walk.R, state.models)

    def read(self, coder, view: ItemView, walk: PlaneWalk) -> float:
        view.keep = kept_pixels(view.ref_hit, view.hit, view.given)
        (view.sym, view.extra), bits = self.pop(coder, view.trows[view.keep], walk)
        return bits

    def pop(self, coder, x, walk):
        sym, extra = walk.pixels.pop_step(coder, x, walk.R, walk.tables)
        bits = walk.pixels.bits(sym, x, walk.R, walk.tables) if walk.want_bits else 0.0
        if walk.tables is not None:
            walk.tables.add(sym, x)
        return (sym, extra), bits


# each stage name of ``Profile.item_stages`` -> the stage, configured by the profile's settings
STAGES = {
    "reference_flags": lambda p: ReferenceFlags(),
    "neighbour_flags": lambda p: NeighbourFlags(p.min_flags),
    "adaptive_flags": lambda p: AdaptiveNeighbourFlags(p.min_flags),
    "symbols": lambda p: ItemSymbols(),
}


def item_stages(profile) -> dict[str, ItemStage]:
    """The item stages of ``profile`` by ``ItemPlan`` field, in the decoder's reading order."""
    stages = [STAGES[name](profile) for name in profile.item_stages()]
    return {st.name: st for st in stages}


def plan_items(plane: StepItems, stages: dict, walk: PlaneWalk, weight: int,
               want_bits: bool = False, bits: float = 0.0) -> tuple[list[ItemPlan], float]:
    """Encoder, forward: each of ``plane``'s items' stages planned as the decoder will meet them, at
    the coding choice (prior-weight index ``weight``, ``walk.flags``); -> (one ``ItemPlan`` per item,
    ``bits`` plus their bits with ``want_bits``, added stage by stage)."""
    coded = []
    for (it, keep, tables, counts, refs), extra in zip(walk_plane(plane.items, walk.pixels.tables, weight, walk.flags),
                                                       plane.extras):
        walk.tables, walk.counts, walk.refs = tables, counts, refs
        rec = ItemPlan(keep)
        for name, st in stages.items():
            setattr(rec, name, st.plan(it, keep, extra, walk))
            bits += st.bits(getattr(rec, name), walk) if want_bits else 0.0
        coded.append(rec)
    return coded, bits


def write_items(coder, coded: list[ItemPlan], stages: dict, walk: PlaneWalk) -> None:
    """Encoder, reverse: push the items, the last first, each item's stages the last read first."""
    for rec in reversed(coded):
        for name, st in reversed(stages.items()):
            st.write(coder, getattr(rec, name), walk)
