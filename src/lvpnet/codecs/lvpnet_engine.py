"""The learned codec's model side: one grey plane <-> its coded ``Plane`` (latent and pixel words).

Imports torch (the codec module imports this lazily). Encoder and decoder walk
the same integer path (``lvpnet.model.IntegerDecoder``) from the same ``z``:
the encoder never uses the float QAT forward for its tables, so what it codes
with is exactly what the decoder will compute, on any device.

Exactness of the decoder side on CPU: the integer path runs in float32 here
(``IntegerDecoder(dtype=float32)``), exact because every partial sum of every
integer layer is below 2**24 (checked when the layers are built, see
``lvpnet.model.intnet``); tests compare it with the float64 path.
"""

from __future__ import annotations

import os
import threading
from typing import NamedTuple

import numpy as np
import torch

from ..coding import (
    block_choice,
    edge,
    feedback,
    flag_adapt,
    lattice,
    lattice_estimate,
    reference,
    refine,
)
from ..coding.adapt import choose_lattice
from ..coding.fitting import SliceFitting, StepRecord
from ..coding.item_stage import ItemView, PlaneWalk, StepItems, item_stages, plan_items, write_items
from ..coding.profiles import Profile
from ..coding.stage import (
    CodingChoice,
    CodingMode,
    ScaleOffsets,
    SideContext,
    SidePlan,
    plan_bits,
    read_side,
    side_stages,
    write_side,
)
from ..model import IntegerDecoder, LVPNet, load_checkpoint, prep
from ..model.tables import values_from_symbols
from ..progress import tick
from . import lvpnet_base
from .lvpnet_chunk import Plane
from .lvpnet_entropy import LatentCoder, PixelCoder, new_coder
from .plane_steps import PlaneSteps
from .weights import file_sha256, writes_prior_mode_latent


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("CUDA was asked for but no CUDA device is available")
    return dev


class BaseLayer(NamedTuple):
    """A plane's base lattice (bitstream 7 on): its level (0: none), JPEG-XL codestream and the
    codestream's bits (the encoder's estimate starts from them)."""

    level: int = 0
    codestream: bytes = b""
    bits: float = 0.0


class LatticeChoice(NamedTuple):
    """The encoder's plane once its base lattice is chosen: the items left in the pixel stream,
    their steps' scale offsets (None: the profile has none) and the lattice (``BaseLayer()``: none)."""

    items: StepItems
    offsets: np.ndarray | None
    base: BaseLayer = BaseLayer()


class Ask(NamedTuple):
    """A plane's walk asking for step ``k``'s (mu, s): ``IntegerDecoder.predict``'s arguments. The
    walks are generators (``Engine.encode_walk``, ``Engine.decode_walk``) that yield these; a driver
    answers them, for one plane (``Engine.drive``) or for many planes' walks in lock-step, one batched
    network call per step (``Engine.run_lanes``)."""

    feats: torch.Tensor
    ctx: list
    k: int
    R: int
    B: int


class _Told:
    """A plane's ``ticks``, keeping the share told last so that long work with no share of its own (each
    step's fit after the walk) can tell it again: a Cancel lands there too."""

    def __init__(self, ticks):
        self.ticks, self.at = ticks, 0.0

    def __call__(self, fraction: float) -> None:
        self.at = fraction
        self.ticks(fraction)

    def again(self) -> None:
        self.ticks(self.at)


class Engine:
    """Weights loaded once; encoder (float GMSM) built on first encode."""

    def __init__(self, weights: str | os.PathLike, device="auto"):
        self.weights = os.fspath(weights)
        self.device = resolve_device(device)
        self._ck = load_checkpoint(self.weights, "cpu")
        self.sha256 = file_sha256(self.weights)
        # exact integer path: float32 on CPU and CUDA (TF32 off inside IntegerDecoder)
        self.dec = IntegerDecoder(self._ck["decoder"], device=self.device, dtype=torch.float32)
        self.cfg = self.dec.cfg
        self.latent = LatentCoder(self.dec.latent_tables.cpu().numpy())
        self.pixels = PixelCoder(self.dec.pixel_tables.cpu().numpy(), self.dec.pixel_shifts.cpu().numpy(), self.dec.K)
        self.shifts_cpu = self.dec.pixel_shifts.cpu()
        self._pixels_edge: PixelCoder | None = None
        self._model: LVPNet | None = None
        self._lock = threading.Lock()
        # these weights' card: their GMSM's latent costs bits, so the encoder writes the prior's mode and
        # never runs (or loads) the float encoder: 14% of an encode's time (docs/MODEL.md, session 30)
        self.prior_mode_latent = writes_prior_mode_latent(self.sha256)

    def latent_z(self, vp: np.ndarray, B: int) -> torch.Tensor:
        """The latent the encoder writes for a padded slice ``vp`` of bit depth ``B``."""
        if self.prior_mode_latent:
            return self.dec.prior_mode_latent(*vp.shape)
        return self.model().encode_slice(vp, B, device=self.device)

    @property
    def channels(self) -> int:
        return int(self.dec.latent_tables.shape[0])

    def model(self) -> LVPNet:
        with self._lock:
            if self._model is None:
                # Only the float encoder (GMSM) is used on this side, so only its weights are loaded:
                # training-only parts of the checkpoint (prior state, QAT parameters) may change
                # between model versions without touching the codec.
                model = LVPNet(self._ck["config"])
                prefix = "encoder."
                enc = {k[len(prefix):]: v for k, v in self._ck["state_dict"].items() if k.startswith(prefix)}
                model.encoder.load_state_dict(enc)
                model = model.to(self.device).eval()
                if self.device.type == "cpu":
                    # oneDNN's convolutions on channels-last tensors: the float encoder in 0.06 s
                    # instead of 0.09 s on a 512 x 512 slice (its z is written, not recomputed)
                    model = model.to(memory_format=torch.channels_last)
                self._model = model
            return self._model

    def pixel_coder(self, edge_classes: bool) -> PixelCoder:
        """The pixel coder whose table rows are the scale indices, or with ``edge_classes``
        (bitstream version 6) the ``coding.edge`` rows: scale index and distance from the minimum."""
        if not edge_classes:
            return self.pixels
        with self._lock:
            if self._pixels_edge is None:
                models = [m for m in self.pixels.models for _ in range(edge.CLASSES)]  # row 6 s + e is row s
                self._pixels_edge = PixelCoder(edge.expand(self.pixels.tables), edge.expand(self.pixels.shifts),
                                               self.dec.K, models)
            return self._pixels_edge

    def table_rows(self, mu: np.ndarray, s: np.ndarray, edge_classes: bool) -> np.ndarray:
        """The table row of every pixel: its scale index ``s`` (as coded), or its ``coding.edge`` row."""
        return edge.table_index(mu, s, edge.config_thresholds(self.dec.cfg)) if edge_classes else s

    def latent_shape(self, H: int, W: int) -> tuple[int, int, int]:
        Hp, Wp = prep.padded_size(H, W, self.cfg.stride)
        return self.channels, Hp // self.cfg.stride, Wp // self.cfg.stride

    # ------------------------------------------------------------------ the shared walk
    def _walk(self, *args, **kw):
        """``_walk_items``, then what the int8 steps keep of the slice (the features' product, this
        thread's unfold buffers) dropped: also when a damaged stream raises in ``step``."""
        try:
            with self.dec.walk_threads():
                yield from self._walk_items(*args, **kw)
        finally:
            self.dec.end_slice()

    def batches(self) -> bool:
        """Do walks in lock-step gain from one network call per step (``run_lanes``)? On the float
        trunk (a GPU's) yes; the int8 trunk (the CPU's) carries a slice's sums from step to step and
        runs at the core's peak, so there the walks run one after another."""
        return not self.dec.int8

    @torch.no_grad()
    def drive(self, walk, ask: Ask | None = None):
        """Runs one walk generator to its end, answering each ``Ask`` by ``IntegerDecoder.predict``:
        its return value. ``ask``: the walk's first, where the caller has started it."""
        try:
            ask = next(walk) if ask is None else ask
            while True:
                ask = walk.send(self.dec.predict(*ask))
        except StopIteration as stop:
            return stop.value

    @torch.no_grad()
    def run_lanes(self, walks: list) -> list:
        """Runs walk generators to their ends: [(return value, None) or (None, the exception it
        raised)], in order. Where the engine ``batches``, in lock-step: the asks for the same step
        and sub-image size go to the network together (``IntegerDecoder.predict_many``), the same
        integers as one by one; else one walk after another."""
        out: list = [None] * len(walks)

        def advance(i, value=None):
            try:
                pending[i] = next(walks[i]) if value is None else walks[i].send(value)
            except StopIteration as stop:
                out[i] = (stop.value, None)
            except Exception as e:  # noqa: BLE001 - handed to the caller, at its walk's place
                out[i] = (None, e)

        if not self.batches():
            for i, walk in enumerate(walks):
                try:
                    out[i] = (self.drive(walk), None)
                except Exception as e:  # noqa: BLE001 - as above
                    out[i] = (None, e)
            return out
        pending: dict = {}
        for i in range(len(walks)):
            advance(i)
        while pending:
            groups: dict = {}
            for i, ask in pending.items():
                groups.setdefault((ask.k, tuple(ask.feats.shape)), []).append(i)
            asked, pending = pending, {}
            for idx in groups.values():
                try:
                    answers = self.dec.predict_many([asked[i] for i in idx])
                except Exception as e:  # noqa: BLE001 - every walk of the group fails with it
                    for i in idx:
                        walks[i].close()
                        out[i] = (None, e)
                    continue
                for i, answer in zip(idx, answers):
                    advance(i, answer)
        return out

    def _walk_items(self, z: torch.Tensor, R: int, H: int, W: int, step, skip=frozenset(), known=None,
                    ticks=None, span=(0.0, 1.0)):
        """Run the integer path from ``z``; ``step(k, mu, s, (di, dj), row)`` returns the real values
        of sub-image ``k`` (``row`` None), or of its row ``row`` when step 0 goes row by row
        (``step0_rows`` models: each row is predicted from the row above, so the decoder must
        have decoded it first; the encoder walks the same way and gets the same integers).
        ``skip``: steps whose values come from elsewhere (bitstream 9's base lattice): no network,
        ``step(k, None, None, pos, None)`` gives them, and they still enter later steps' context.
        ``known``: the encoder's polyphase-padded plane, so step 0's rows are predicted in one call
        (each from the row above, as the decoder will: the same integers). ``ticks``: told the share
        of the plane's work done after each step, from ``span[0]`` to ``span[1]`` (``progress.tick``)."""
        dec, f = self.dec, self.dec.f
        B = prep.bit_depth(R)
        Hp, Wp = prep.padded_size(H, W, self.cfg.stride)
        h, w = Hp // f, Wp // f
        feats = dec.features(z)
        ctx = []
        for k, (di, dj) in enumerate(dec.order):
            hr, wr = prep.sub_real_shape(H, W, f, di, dj)
            if k in skip:
                sub = step(k, None, None, (di, dj), None)
            elif hr * wr == 0:
                sub = step(k, np.zeros((hr, wr), np.int64), np.zeros((hr, wr), np.int64), (di, dj), None)
            elif k == 0 and dec.cfg.step0_rows and known is not None:
                mu, s = dec.predict(feats, ctx, 0, R, B, known=known[di::f, dj::f])
                mu, s = mu[:hr, :wr].cpu().numpy(), s[:hr, :wr].cpu().numpy()
                sub = np.concatenate([step(k, mu[r : r + 1], s[r : r + 1], (di, dj), r) for r in range(hr)], 0)
            elif k == 0 and dec.cfg.step0_rows:
                raw0 = dec.step0_head(feats)
                up = torch.zeros((1, w), dtype=torch.int64, device=self.device)  # row -1: not used
                rows = []
                for r in range(hr):
                    mu, s = dec.step0_rows(raw0, up, r, R, B)
                    row = step(k, mu[:, :wr].cpu().numpy(), s[:, :wr].cpu().numpy(), (di, dj), r)
                    up = prep.pad_edge(torch.from_numpy(row).to(self.device), 1, w)
                    rows.append(row)
                sub = np.concatenate(rows, 0)
            else:
                mu, s = yield Ask(feats, ctx, k, R, B)
                sub = step(k, mu[:hr, :wr].cpu().numpy(), s[:hr, :wr].cpu().numpy(), (di, dj), None)
            if k < dec.steps - 1:  # the last sub-image is context for nothing
                ctx.append(prep.pad_edge(torch.from_numpy(np.ascontiguousarray(sub)).to(self.device), h, w))
            if ticks is not None:
                ticks(span[0] + (span[1] - span[0]) * (k + 1) / dec.steps)

    # ------------------------------------------------------------------ encode
    def encode_plane(self, x: np.ndarray, profile: Profile, want_bits: bool = False,
                     ref_plane: np.ndarray | None = None):
        """``encode_walk`` run here (``drive``)."""
        return self.drive(self.encode_walk(x, profile, want_bits, ref_plane))

    @torch.no_grad()  # each resumption of the generator (the float encoder builds no graph)
    def encode_walk(self, x: np.ndarray, profile: Profile, want_bits: bool = False,
                    ref_plane: np.ndarray | None = None, ticks=None):
        """A walk generator (``Ask``) returning the integer plane (H, W)'s ``Plane`` (vmin, R, the two
        streams, base layer and reference level), as bitstream ``profile`` codes it; with ``want_bits``
        ``(plane, estimated bits)``.

        What each setting of the profile does here: ``scale_offsets``, per step a scale offset
        chosen by the encoder (``coding.stage.ScaleOffsets``) at the head of the pixel stream;
        ``adapted_tables``, tables adapted to the slice and neighbour-repeat flags (``coding.adapt``,
        ``coding.repeat``), the coding mode chosen by the encoder and stored first; ``refined``,
        ``coding.fitting``; ``staged_latent``, ``coding.latent_adapt``; ``wide_flags``, flag levels 3
        and 4; ``edge_classes``, table rows by the distance from the minimum (``coding.edge``);
        ``min_flags``, flags on candidates at the plane's minimum; ``base_lattice``, a coarse
        lattice coded by JPEG-XL where that is smaller (``coding.lattice``); ``lattice_skip``, that
        lattice chosen before the steps after it are fitted, which see the decoder's residual plane
        (``_lattice_first``; level 2 before the walk where a network-free estimate makes it clear,
        ``coding.lattice_estimate``), and "none" written for its steps' refinement and feedback;
        ``adaptive_flags``, the neighbour-repeat flags coded by ``coding.flag_adapt`` (contexts of the
        refined ``mu``, the candidate and the shifted scale; the coding choice stays version 9's);
        ``block_map``, constant 8 x 8 blocks out of the items where that pays (``coding.block_choice``),
        the map after the side information and its bit in the coding mode.
        ``ref_plane`` (profiles with ``reference``): the previous slice's plane in this plane's
        values (-1 where it has none, ``reference.ref_values``); the plane's ``ref_level`` is then
        the level chosen (0: not used). The plane's step is 1 and it has no gaps: the caller's.

        The plane's items are gathered once (``item_stage.StepItems``, with the lattice chosen:
        ``LatticeChoice``); the side information is what the profile's side stages plan
        (``ScaleOffsets.plan``, ``CodingMode.plan`` and ``BlockMap.plan``: a ``CodingChoice``) with
        the refinement fitted during the walk, gathered in one ``SidePlan``.

        ``ticks``: told the share of the plane's work done as it goes (``progress.tick`` by default: a
        Cancel lands there); the shares are the stages' parts of a 512 x 512 CT slice's time."""
        ticks = _Told(ticks or tick)
        if ref_plane is not None and not profile.reference:
            raise ValueError(f"bitstream version {profile.version} codes no reference slice")
        x = np.asarray(x).astype(np.int64)
        H, W = x.shape
        vmin, R, B = prep.slice_params(x)
        if R == 0:  # one value: nothing to walk
            ticks(1.0)
            return (Plane(vmin, 0), 0.0) if want_bits else Plane(vmin, 0)
        v = x - vmin
        f = self.dec.f
        Hp, Wp = prep.padded_size(H, W, self.cfg.stride)
        vp = prep.polyphase_pad(v, Hp, Wp, f)
        z = self.latent_z(vp, B)
        zs = self.dec.latent_symbols(z).cpu().numpy()
        records: list[StepRecord] = []  # in decoding order (step 0 row by row for step0_rows models)

        def step(k, mu, s, pos, row):
            di, dj = pos
            sub = v[di::f, dj::f]
            sub = np.ascontiguousarray(sub if row is None else sub[row : row + 1])
            if sub.size and mu is not None:  # a lattice step taken before the walk: not coded
                records.append(StepRecord(k, sub, mu, s, pos, row))
            return sub

        z = z.to(self.device)
        lat_options, lat_costs, early = None, None, 0
        if profile.lattice_skip:  # the lattice taken before the walk where that is clear: its steps not walked
            lat_options = lvpnet_base.options(v, R, f)
            lat_costs = {c: lvpnet_base.bits(d) for c, d in lat_options.items()}
            early = lattice_estimate.early_level(v, lat_costs, self.dec.order, f, ref_plane) if lat_costs else 0
        skip = lattice.steps(self.dec.order, lattice.stride(f, early)) if early else frozenset()
        ticks(0.2)
        yield from self._walk(z, R, H, W, step, skip=skip, known=vp, ticks=ticks, span=(0.2, 0.6))
        fits = None
        if profile.refined:
            fits = SliceFitting(v, R, self.dec.order, self.dec.pixel_tables.cpu(), self.pixels.shifts, self.dec.K)
        pixels = self.pixel_coder(profile.edge_classes)
        # the side stages' plans choose what the plane's side information holds (``coding.stage``)
        sides = side_stages(profile)
        side_of = {st.name: st for st in sides}
        with_ref = ref_plane is not None

        steps = PlaneSteps(self, profile, v, R, fits, ref_plane, side_of.get("scale_offsets"), ticks.again)

        if profile.lattice_skip:
            lat = self._lattice_first(records, steps, side_of["coding_mode"], pixels, with_ref, lat_options,
                                      lat_costs, early, ticks)
            items = lat.items.items
            choice = side_of["coding_mode"].plan(items, pixels.tables, with_ref)
            if "block_map" in side_of:  # version 11: constant blocks out of the items, if that pays
                g = lattice.stride(f, lat.base.level) if lat.base.level else 0
                choice = side_of["block_map"].plan(choice, items, pixels.tables, with_ref, v, R, f, g)
        else:
            records = steps.fitted(records)
            offsets = steps.offsets_of(records)
            lat = LatticeChoice(steps.itemised(records, offsets), offsets)
            items = lat.items.items
            choice = CodingChoice()  # versions 1 and 2: the fixed tables, no flags
            if "coding_mode" in side_of:  # version 8: with a reference, its level too, and the choice made again
                choice = side_of["coding_mode"].plan(items, pixels.tables, with_ref)
            if profile.base_lattice:  # version 7: the lattice's sub-images leave the pixel stream
                options = lvpnet_base.options(v, R, f)
                costs = {c: lvpnet_base.bits(d) for c, d in options.items()}
                level = choose_lattice(items, pixels.tables, choice.weight, choice.flags, costs, self.dec.order, f)
                if level:
                    skip = lattice.steps(self.dec.order, lattice.stride(f, level))
                    lat = lat._replace(items=lat.items.without(skip), base=BaseLayer(level, options[level], costs[level]))
        # each item's stages planned walking forward as the decoder will, pushed in reverse (ANS is
        # a stack: ``coding.item_stage``); weight 0 and no flags: the fixed tables (versions 1 and 2)
        stages = item_stages(profile)
        walk = PlaneWalk(pixels, R, choice.flags,
                         adaptive=flag_adapt.AdaptiveFlags() if profile.adaptive_flags else None)
        ticks(0.9)
        coded, est = plan_items(lat.items, stages, walk, choice.weight, want_bits, lat.base.bits)
        ticks(0.95)
        latent = self.latent.encode(zs, profile.staged_latent)
        coder = new_coder()
        write_items(coder, coded, stages, walk)
        # the side information, the stage read last pushed first (``coding.stage``)
        side = SidePlan(choice.mode, lat.offsets, None if fits is None else (fits.refs, fits.fbs), choice.block_map)
        est = write_side(coder, sides, side, self._side_context(v.shape, R, lat.base.level, v), est)
        plane = Plane(vmin, R, latent, coder.get_compressed(), base_level=lat.base.level, base=lat.base.codestream,
                      ref_level=choice.ref_level)
        ticks(1.0)
        if not want_bits:
            return plane
        return plane, est + self.latent.bits(zs, profile.staged_latent)

    def _lattice_first(self, records, steps: PlaneSteps, coding: CodingMode, pixels, with_ref: bool, options: dict,
                       costs: dict, early: int = 0, ticks=None) -> LatticeChoice:
        """Bitstream 9's encoder: the base lattice chosen before the steps after it are fitted, so
        their fits see the residual plane the decoder will have (``SliceFitting.lattice``). The
        lattices' steps come first in the decoding order: that prefix is fitted as without a
        lattice, its learned bits at its own coding choice are weighed against each lattice's
        JPEG-XL bits (``lattice.choose_by_steps``); with a lattice, the prefix's other steps are fitted
        again (their refinement kept, the feedback chosen anew) and the lattice's steps leave.
        ``options``, ``costs``: each level's codestream and bits; ``early``: the level taken before
        the walk (``coding.lattice_estimate``), whose steps are not in ``records``: nothing of them is
        fitted or weighed, and the rest comes out as the exact choice of that level would give it."""
        order, f = self.dec.order, self.dec.f
        cand = lattice.candidate_steps(costs, order, f) if costs else frozenset()
        n = next((i for i, r in enumerate(records) if r.k not in cand), len(records))
        level = early
        if not early:
            head = steps.fitted(records[:n])
            offsets = steps.offsets_of(head)
            first = steps.itemised(head, offsets)
        if costs and not early:  # each step's learned bits come with the coding choice (no second walk of the items)
            step_bits: dict = {}
            coding.plan(first.items, pixels.tables, with_ref, step_bits)
            level = lattice.choose_by_steps(step_bits, costs, order, f)
        base, known = BaseLayer(), frozenset()
        if level:
            g = lattice.stride(f, level)
            known = lattice.steps(order, g)
            base = BaseLayer(level, options[level], costs[level])
            if steps.fits is not None:
                steps.fits.lattice(g, known)
            head = steps.fitted([r for r in records[:n] if r.k not in known])
            offsets = steps.offsets_of(head)
            first = steps.itemised(head, offsets)
        if ticks is not None:
            ticks(0.7)
        tail = steps.fitted([r for r in records[n:] if r.k not in known])
        more = steps.offsets_of(tail)
        offsets = None if offsets is None else offsets + more  # the two cover different steps
        return LatticeChoice(first + steps.itemised(tail, offsets), offsets, base)

    def _side_context(self, shape: tuple[int, int], R: int, base_level: int, plane) -> SideContext:
        """What the side stages know of a plane: with a base lattice its pixels (``plane``'s values
        on the lattice: the encoder's plane, or the decoder's known plane)."""
        km = block_choice.lattice_mask(shape, lattice.stride(self.dec.f, base_level)) if base_level else None
        kv = None if km is None else np.where(km, plane, 0)
        return SideContext(shape, R, self.dec.order, self.cfg.n_scales, self.pixels, kv, km)

    # ------------------------------------------------------------------ decode
    def decode_plane(self, plane: Plane, H: int, W: int, profile: Profile, want_bits: bool = False,
                     ref_plane: np.ndarray | None = None):
        """``decode_walk`` run here (``drive``)."""
        return self.drive(self.decode_walk(plane, H, W, profile, want_bits, ref_plane))

    @torch.no_grad()  # each resumption of the generator (the float encoder builds no graph)
    def decode_walk(self, plane: Plane, H: int, W: int, profile: Profile, want_bits: bool = False,
                    ref_plane: np.ndarray | None = None, ticks=None):
        """A walk generator (``Ask``), the inverse of ``encode_walk``: the plane's (H, W) values
        (``Plane.values``), with ``want_bits`` ``(values, estimated latent bits, estimated pixel bits)``. ``profile``: the
        chunk's bitstream version; ``ref_plane``: for a plane with a ``ref_level``, the previous
        slice's plane as ``reference.ref_values`` gives it (``coding.reference``). With ``lattice_skip``
        (bitstream 9) the base lattice's steps are taken from it alone: no network, refinement or
        feedback runs for them (``_walk``'s ``skip``)."""
        R, ref_level = plane.R, plane.ref_level
        if R == 0:
            out = np.full((H, W), plane.vmin, dtype=np.int64)
            return (out, 0.0, 0.0) if want_bits else out
        zs = self.latent.decode(plane.latent, self.latent_shape(H, W), profile.staged_latent)
        z = torch.from_numpy(zs.astype(np.int64) - self.dec.zmax).to(self.device)
        coder = new_coder(plane.pixels)
        out = np.empty((H, W), dtype=np.int64)
        f = self.dec.f
        pix_bits = [0.0]
        if ref_level and ref_plane is None:
            raise ValueError("lvpnet chunk: this slice was coded against the previous one, which was not given")
        if ref_level and not (profile.reference and 0 < ref_level < reference.LEVELS):
            raise ValueError(f"lvpnet chunk: reference level {ref_level} is not valid here")
        pixels = self.pixel_coder(profile.edge_classes)
        known, known_steps = None, frozenset()
        if plane.base_level:
            if not profile.base_lattice:
                raise ValueError("lvpnet chunk: a base layer needs bitstream version 7")
            g = lattice.stride(f, plane.base_level)
            known = lattice.known_plane(lvpnet_base.decode_lattice(plane.base, H, W, R, g), (H, W), g)
            known_steps = lattice.steps(self.dec.order, g)
            pix_bits[0] += plane.base_bits()
        # the side information, stage by stage (``coding.stage``)
        sides, ctx = side_stages(profile), self._side_context((H, W), R, plane.base_level, known)
        side = read_side(coder, sides, ctx)
        if want_bits:
            pix_bits[0] += plan_bits(sides, side, ctx)
        offsets, bmap, mode = side.scale_offsets, side.block_map, side.coding_mode
        # each item's stages read in order (``coding.item_stage``), the walk's tables and counts moving
        stages = item_stages(profile)
        walk = PlaneWalk.decoder(pixels, R, pixels.tables, mode.weight if profile.adapted_tables else None, mode.flags,
                                 profile.adaptive_flags, want_bits)
        refs, fbs = side.refs(self.dec.steps), side.feedback(self.dec.steps)
        # version 9: the lattice's steps are taken as they are, nothing computed for them
        skip = known_steps if profile.lattice_skip else frozenset()
        errors = feedback.ErrorPlane((H, W), self.dec.order) if profile.refined else None
        if errors is not None and skip:
            errors.record_lattice(known, g)

        def record(pos, row, vals, mu):
            """Decoded values into ``out`` and the error feedback's plane."""
            di, dj = pos
            if row is None:
                out[di::f, dj::f] = vals
            else:
                out[di + row * f, dj::f] = vals[0]
            if errors is not None:
                errors.record(pos, vals, mu, row)
            return vals

        def step(k, mu, s, pos, row):
            di, dj = pos
            if k in skip:
                vals = np.ascontiguousarray(known[di::f, dj::f])
                out[di::f, dj::f] = vals
                return vals
            if mu.size == 0:
                return np.zeros(mu.shape, np.int64)
            if row is None:  # version 4 (else no-ops): the refinement classes by the network's s
                mu = refine.refine_step(out, mu, s, pos, f, self.dec.order, k, refs[k], R)
                if fbs[k] is not None:
                    s = feedback.apply(s, errors.buckets(k, pos, mu.shape), fbs[k], self.cfg.n_scales)
            if k in known_steps:  # version 7: from the base layer; nothing in the pixel stream
                vals = known[di::f, dj::f] if row is None else known[di + row * f, dj::f][None]
                return record(pos, row, np.ascontiguousarray(vals), mu)
            s = ScaleOffsets.apply(s, offsets, k, self.cfg.n_scales)
            trows = self.table_rows(mu, s, profile.edge_classes)
            walk.start(k, row)
            at = pos if row is None else (di + row * f, dj)
            view = ItemView(out, at, f, self.dec.order, k, row, mu, s, trows,
                            bmap.take(at, f, mu.shape) if bmap is not None else None,  # version 11: given by the map
                            ref_plane, ref_level)
            for st in stages.values():  # reference flags, neighbour flags, symbols (``coding.item_stage``)
                pix_bits[0] += st.read(coder, view, walk)
            keep, hit, ref_hit, inb = view.keep, view.hit, view.ref_hit, view.given
            vals = np.empty(mu.shape, np.int64)
            low = np.where(view.sym == self.pixels.esc, 0, view.extra)
            vals[keep] = values_from_symbols(
                torch.from_numpy(view.sym), torch.from_numpy(low), torch.from_numpy(mu[keep]),
                torch.from_numpy(s[keep]), self.shifts_cpu, self.dec.K, torch.from_numpy(view.extra),
            ).numpy()
            if view.cand is not None:
                vals[hit] = view.cand[hit]
            if view.ref is not None:
                vals[ref_hit] = view.ref[ref_hit]
            if inb is not None:
                vals[inb] = bmap.take(at, f, mu.shape, values=True)[inb]
            if vals.size and (vals.min() < 0 or vals.max() > R):
                raise ValueError("decoded value outside the slice's range (damaged stream or other weights)")
            record(pos, row, vals, mu)
            return vals

        yield from self._walk(z, R, H, W, step, skip, ticks=ticks or tick)
        if not coder.is_empty():
            raise ValueError("pixel stream has data left over (damaged stream or other weights)")
        out = plane.values(out)
        if want_bits:
            return out, self.latent.bits(zs, profile.staged_latent), pix_bits[0]
        return out
