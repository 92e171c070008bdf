"""A plane's side information as stages behind one interface, composed from the bitstream profile.

The pixel stream of a plane opens with side information the decoder reads before the first
step: the coding mode, the per-step scale offsets, the refinement and error feedback, the
constant-block map. Each is a ``SideStage`` that knows how to ``write`` its state (push it: ANS
is a stack, so the encoder writes the stages in reverse), ``read`` it back (pop, in the declared
order, each stage seeing what the ones before it read) and count its ``bits``; the encoder's
choices come from the stages' ``plan`` (``ScaleOffsets.plan``; ``CodingMode.plan`` then
``BlockMap.plan``, one ``CodingChoice``) and are gathered once per plane in a ``SidePlan``, which
the decoder rebuilds stage by stage and both sides then consult. Which stages a plane has, and in
which order, is its profile's (``Profile.side_stages``, names only: ``profiles`` stays
numpy-free); ``side_stages`` maps the names to the classes here, configured by the profile's
settings.

A new bitstream version that adds side information adds a setting to ``profiles.Profile``, its
name to ``Profile.side_stages`` (where the decoder reads it) and a class here registered in
``STAGES``; the engine's write and read loops do not change.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np
import torch

from ..model.tables import best_scale_offset, scale_offset
from . import block_choice, blocks, feedback, refine
from .adapt import ADAPT_WEIGHTS, PlaneItem, choose_coding, flag_levels, modes, offset_max


class Mode(NamedTuple):
    """The plane's coding mode (bitstream 3 on): prior-weight index, flag level, block map on."""

    weight: int = 0
    flags: int = 0
    blocks: bool = False


class CodingChoice(NamedTuple):
    """The encoder's coding choice for a plane (``CodingMode.plan``, then ``BlockMap.plan``):
    prior-weight index, flag level, reference level (version 8; the plane's header carries it,
    not the mode) and block map (version 11; None: none)."""

    weight: int = 0
    flags: int = 0
    ref_level: int = 0
    block_map: blocks.BlockMap | None = None

    @property
    def mode(self) -> Mode:
        """What the coding-mode stage writes of it."""
        return Mode(self.weight, self.flags, self.block_map is not None)


@dataclass(frozen=True)
class SideContext:
    """What both sides know of a plane before its side information: its shape and range, the
    network's step order and scale count, the base lattice's pixels (``lattice_values``, 0 elsewhere,
    and ``lattice_mask``; None without a lattice) and the coder of uniform integers (the engine's
    fixed ``PixelCoder``: ``push_offsets``, ``push_uniform`` and their pops)."""

    shape: tuple[int, int]
    R: int
    order: tuple
    n_scales: int
    uniform: object
    lattice_values: np.ndarray | None = None
    lattice_mask: np.ndarray | None = None

    @property
    def steps(self) -> int:
        return len(self.order)


@dataclass(frozen=True)
class SidePlan:
    """One plane's side information, by stage name: what the encoder chose, what the decoder read.
    A stage the profile does not have keeps its default (weights and flags off, no offsets, no
    refinement or feedback, no block map)."""

    coding_mode: Mode = Mode()
    scale_offsets: np.ndarray | None = None  # per step, in [-omax, omax]
    # per step: ``refine.StepRefinement`` or None, and the feedback's offsets or None
    refinement: tuple[list, list] | None = None
    block_map: blocks.BlockMap | None = None

    def with_state(self, name: str, state) -> SidePlan:
        return replace(self, **{name: state})

    def refs(self, steps: int) -> list:
        return self.refinement[0] if self.refinement is not None else [None] * steps

    def feedback(self, steps: int) -> list:
        return self.refinement[1] if self.refinement is not None else [None] * steps


class SideStage:
    """One kind of side information. ``name``: its ``SidePlan`` field and its name in
    ``Profile.side_stages``. ``write`` pushes the state and returns its bits (the encoder's
    estimate); ``read`` pops it, given what the stages before it read (``plan``); ``bits`` is its
    code length as ``write`` counts it. A stage whose state says "nothing here" writes nothing.
    The encoder chooses a state with the stage's ``plan``, whose arguments are the stage's own:
    the scale offsets from the steps' records, the coding mode from the plane's items, the block
    map from the items and the coding mode's choice (which it may change); the refinement is
    ``fitting.SliceFitting``'s, fitted during the walk."""

    name: str = ""

    def write(self, coder, state, ctx: SideContext) -> float:
        raise NotImplementedError

    def read(self, coder, ctx: SideContext, plan: SidePlan):
        raise NotImplementedError

    def bits(self, state, ctx: SideContext) -> float:
        raise NotImplementedError


@dataclass(frozen=True)
class CodingMode(SideStage):
    """One uniform symbol: weight index + 4 x flag level, plus ``modes(levels)`` with the block map
    on (``block_bit``, version 11; the symbol's alphabet doubles)."""

    levels: int
    block_bit: bool = False
    name: str = field(default="coding_mode", init=False)

    @property
    def size(self) -> int:
        return modes(self.levels) * (2 if self.block_bit else 1)

    def plan(self, items: list[PlaneItem], tables: np.ndarray, with_reference: bool,
             step_bits: dict | None = None) -> CodingChoice:
        """Encoder: the plane's coding choice over its ``items`` with the base ``tables``
        (``adapt.choose_coding`` at this stage's flag levels, ``step_bits`` as it fills them), no
        block map yet. The items are left at the chosen reference level."""
        return CodingChoice(*choose_coding(items, tables, self.levels, with_reference, step_bits))

    def write(self, coder, state: Mode, ctx: SideContext) -> float:
        mode = state.weight + len(ADAPT_WEIGHTS) * state.flags + (modes(self.levels) if state.blocks else 0)
        return ctx.uniform.push_offsets(coder, np.array([mode]), self.size)

    def read(self, coder, ctx: SideContext, plan: SidePlan) -> Mode:
        mode = int(ctx.uniform.pop_offsets(coder, 1, self.size)[0])
        on, mode = mode >= modes(self.levels), mode % modes(self.levels)
        return Mode(mode % len(ADAPT_WEIGHTS), mode // len(ADAPT_WEIGHTS), on)

    def bits(self, state, ctx: SideContext) -> float:
        return float(np.log2(self.size))


@dataclass(frozen=True)
class ScaleOffsets(SideStage):
    """One uniform symbol per step: its scale offset in [-omax, omax] (version 2; +-8 from 4)."""

    omax: int
    name: str = field(default="scale_offsets", init=False)

    def plan(self, records, R: int, dec) -> np.ndarray:
        """Encoder: per step, ``tables.best_scale_offset`` over all its pixels (``records``: the
        plane's ``fitting.StepRecord``s; step 0's rows together) with the tables of ``dec`` (the
        ``IntegerDecoder``)."""
        offsets = np.zeros(dec.steps, dtype=np.int64)
        tabs, shifts = dec.pixel_tables.cpu(), dec.pixel_shifts.cpu()
        for k in range(dec.steps):
            mine = [r for r in records if r.k == k]
            if mine:
                v, mu, s = (torch.from_numpy(np.concatenate([getattr(r, n).reshape(-1) for r in mine]))
                            for n in ("values", "mu", "s"))
                offsets[k] = best_scale_offset(v, mu, s, R, tabs, shifts, dec.K, self.omax)
        return offsets

    @staticmethod
    def apply(s: np.ndarray, offsets: np.ndarray | None, k: int, n_scales: int) -> np.ndarray:
        """Both sides: step ``k``'s scale indices moved by its offset (None: no offsets)."""
        if offsets is None:
            return s
        return scale_offset(torch.from_numpy(s), int(offsets[k]), n_scales).numpy()

    def write(self, coder, state: np.ndarray, ctx: SideContext) -> float:
        return ctx.uniform.push_offsets(coder, np.asarray(state) + self.omax, 2 * self.omax + 1)

    def read(self, coder, ctx: SideContext, plan: SidePlan) -> np.ndarray:
        return ctx.uniform.pop_offsets(coder, ctx.steps, 2 * self.omax + 1) - self.omax

    def bits(self, state, ctx: SideContext) -> float:
        return float(ctx.steps * np.log2(2 * self.omax + 1))


class Refinement(SideStage):
    """Version 4: each step's refinement (``refine.side_symbols``), then its error feedback
    (``feedback.side_symbols``), as uniform integers. State: (refs, feedback), per step."""

    name = "refinement"

    @staticmethod
    def symbols(state, ctx: SideContext) -> tuple[np.ndarray, np.ndarray]:
        refs, fbs = state
        a = refine.side_symbols(refs, ctx.order, ctx.n_scales)
        b = feedback.side_symbols(fbs, ctx.steps)
        return np.concatenate([a[0], b[0]]), np.concatenate([a[1], b[1]])

    def write(self, coder, state, ctx: SideContext) -> float:
        return ctx.uniform.push_uniform(coder, *self.symbols(state, ctx))

    def read(self, coder, ctx: SideContext, plan: SidePlan):
        def pop(sizes):
            return ctx.uniform.pop_uniform(coder, sizes)

        refs = refine.read_side(pop, ctx.order, ctx.n_scales)
        return refs, feedback.read_side(pop, ctx.steps)

    def bits(self, state, ctx: SideContext) -> float:
        return float(np.log2(self.symbols(state, ctx)[1].astype(np.float64)).sum())


@dataclass(frozen=True)
class BlockMap(SideStage):
    """Version 11: the constant 8 x 8 blocks (``coding.blocks``), present where the coding mode's
    block bit is on; a base lattice's pixels in a block give its value. ``levels`` and
    ``adaptive_flags``: the profile's flag levels and flag coder, which ``plan`` weighs with."""

    levels: int
    adaptive_flags: bool
    name: str = field(default="block_map", init=False)

    def plan(self, choice: CodingChoice, items: list[PlaneItem], tables: np.ndarray, with_reference: bool,
             v: np.ndarray, R: int, f: int, g: int) -> CodingChoice:
        """Encoder: ``choice`` (``CodingMode.plan``'s) with the map where it pays, and the coding
        choice made again with it (``block_choice.choose``) on the plane ``v`` of range ``R``,
        sub-image factor ``f``, base lattice stride ``g`` (0: none). The items are left as the
        answer codes them."""
        bmap, (weight, flags, ref_level), _ = block_choice.choose(
            items, tables, self.levels, with_reference, (choice.weight, choice.flags, choice.ref_level), v, R, f, g,
            adaptive_flags=self.adaptive_flags)
        return CodingChoice(weight, flags, ref_level, bmap)

    def write(self, coder, state: blocks.BlockMap | None, ctx: SideContext) -> float:
        if state is None:
            return 0.0
        return blocks.write(coder, state, ctx.R, ctx.lattice_values, ctx.lattice_mask)

    def read(self, coder, ctx: SideContext, plan: SidePlan) -> blocks.BlockMap | None:
        if not plan.coding_mode.blocks:
            return None
        return blocks.read(coder, ctx.shape, ctx.R, ctx.lattice_values, ctx.lattice_mask)

    def bits(self, state, ctx: SideContext) -> float:
        return 0.0 if state is None else blocks.bits(state, ctx.R, ctx.lattice_values, ctx.lattice_mask)


# each stage name of ``Profile.side_stages`` -> the stage, configured by the profile's settings
STAGES = {
    "coding_mode": lambda p: CodingMode(flag_levels(p.wide_flags), p.block_map),
    "scale_offsets": lambda p: ScaleOffsets(offset_max(p.refined)),
    "refinement": lambda p: Refinement(),
    "block_map": lambda p: BlockMap(flag_levels(p.wide_flags), p.adaptive_flags),
}


def side_stages(profile) -> list[SideStage]:
    """The side stages of ``profile`` (a ``profiles.Profile``), in the decoder's reading order."""
    return [STAGES[name](profile) for name in profile.side_stages()]


def write_side(coder, stages: list[SideStage], plan: SidePlan, ctx: SideContext, bits: float = 0.0) -> float:
    """Encoder: push every stage's state, the last read first; -> ``bits`` plus theirs (added one
    stage at a time, so an estimate summed before keeps its rounding)."""
    for st in reversed(stages):
        bits += st.write(coder, getattr(plan, st.name), ctx)
    return bits


def read_side(coder, stages: list[SideStage], ctx: SideContext) -> SidePlan:
    """Decoder: pop the stages in order into a ``SidePlan``."""
    plan = SidePlan()
    for st in stages:
        plan = plan.with_state(st.name, st.read(coder, ctx, plan))
    return plan


def plan_bits(stages: list[SideStage], plan: SidePlan, ctx: SideContext) -> float:
    """Code length of a plane's side information as ``write_side`` counts it."""
    return sum((st.bits(getattr(plan, st.name), ctx) for st in stages), 0.0)
