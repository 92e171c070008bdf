"""The encoder's per-slice fits of bitstream version 4, step by step in decoding order.

One walk serves the codec's encoder, the estimate (``estimate.slice_bits``) and the bit-cost maps
(``lvpnet.analysis``), so all three code the same locations and scales: for every sub-image
``k >= 1`` the location refined on the slice (``coding.refine``), then the scales moved by the
error feedback (``coding.feedback``); every decoded item's residual is recorded for the feedback
of the steps after it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from ..model.prep import sub_real_shape
from ..progress import tick
from . import feedback, lattice, refine


class SliceFitting:
    """The fits of one plane: call ``step`` for every item in decoding order, then
    ``side_symbols`` gives what the pixel stream holds after the per-step offsets."""

    def __init__(self, plane: np.ndarray, R: int, order, tables, shifts, K: int):
        self.plane, self.R, self.order = plane, R, order
        self.tables, self.K = tables, K
        self.shifts = np.asarray(shifts.cpu() if hasattr(shifts, "cpu") else shifts, np.int64)
        self.f = refine.plane_f(order)
        self.refs: list = [None] * len(order)
        self.fbs: list = [None] * len(order)
        self.errors = feedback.ErrorPlane(plane.shape, order)
        # step -> (refinement, refined mu): the refinement reads the plane, never the residuals, so
        # steps fitted again after a version-9 lattice choice (``lattice``) keep theirs
        self._refined: dict = {}

    def step(self, k: int, pos, vals: np.ndarray, mu: np.ndarray, s: np.ndarray, row: int | None = None):
        """-> (mu, s) as coded for one item (numpy; a row of sub-image 0 when ``row`` is given,
        which keeps the network's), its residuals recorded."""
        if row is None and k > 0:
            if k not in self._refined:
                self._refined[k] = refine.choose_step(self.plane, vals, mu, s, pos, self.f, self.order, k, self.R,
                                                      self.shifts)
            self.refs[k], mu = self._refined[k]
            b = self.errors.buckets(k, pos, vals.shape)
            self.fbs[k] = feedback.choose(vals, mu, s, b, self.R, self.tables, self.shifts, self.K)
            s = feedback.apply(s, b, self.fbs[k], len(self.shifts))
        self.errors.record(pos, vals, mu, row)
        return mu, s

    def lattice(self, g: int, ks) -> None:
        """Bitstream version 9: the plane's base lattice of stride ``g`` (steps ``ks``) is coded by
        JPEG-XL and the decoder runs nothing on it: those steps get no refinement or feedback, and
        the feedback starts again from the lattice's network-free residuals
        (``feedback.ErrorPlane.record_lattice``). The steps after it are (re)fitted by ``step``."""
        self.errors = feedback.ErrorPlane(self.plane.shape, self.order)
        self.errors.record_lattice(self.plane, g)
        for k in ks:
            self.refs[k] = self.fbs[k] = None

    def tensor_step(self, k: int, pos, vals, mu, s):
        """``step`` for the integer tensors of the estimate and the maps (whole sub-images)."""
        mu2, s2 = self.step(k, pos, vals.cpu().numpy(), mu.cpu().numpy(), s.cpu().numpy())
        return (torch.from_numpy(np.ascontiguousarray(mu2)).to(mu.device),
                torch.from_numpy(np.ascontiguousarray(s2)).to(s.device))

    def side_symbols(self) -> tuple[np.ndarray, np.ndarray]:
        """(values, sizes) of the side information in decoding order: refinement, then feedback."""
        a = refine.side_symbols(self.refs, self.order, len(self.shifts))
        b = feedback.side_symbols(self.fbs, len(self.order))
        return np.concatenate([a[0], b[0]]), np.concatenate([a[1], b[1]])

    def side_bits(self) -> float:
        return float(np.log2(self.side_symbols()[1].astype(np.float64)).sum())


class StepRecord(NamedTuple):
    """One step of a plane in decoding order, as the encoder walks it (numpy; step 0 of a ``step0_rows``
    model: one row each) and as ``network_steps`` gives it to the estimate and the maps (torch, whole
    sub-images): its real values, the network's (once fitted, the refined) ``mu`` and ``s``, its
    sub-image ``pos`` and ``row`` (None: the whole sub-image)."""

    k: int
    values: np.ndarray
    mu: np.ndarray
    s: np.ndarray
    pos: tuple[int, int]
    row: int | None


def network_steps(dec, feats, vp: np.ndarray, H: int, W: int, R: int, B: int) -> list:
    """``fit_plane``'s ``raw``: every step's network prediction at once (the estimate and the maps know
    every value), a ``StepRecord`` per step on the real part of each sub-image grid. ``vp``: the
    plane polyphase-padded; its sub-images are already edge-padded, as the decoder rebuilds them."""
    f = dec.f
    vs = torch.from_numpy(vp).to(dec.device)
    ctx, raw = [], []
    try:  # what the int8 steps keep of the slice dropped whatever happens (a Cancel raised by ``tick``)
        with dec.walk_threads():
            for k, (di, dj) in enumerate(dec.order):
                sub = vs[di::f, dj::f]
                mu, s = dec.predict(feats, ctx, k, R, B, known=sub)
                hr, wr = sub_real_shape(H, W, f, di, dj)
                raw.append(StepRecord(k, sub[:hr, :wr], mu[:hr, :wr], s[:hr, :wr], (di, dj), None))
                ctx.append(sub)
                tick(0.2 + 0.6 * (k + 1) / len(dec.order))  # the network's part of an estimate's work
    finally:
        dec.end_slice()
    return raw


def fit_plane(raw: list, fits: SliceFitting | None, calibrate, order, candidates=frozenset(), choose=None):
    """The steps of a plane as the codec codes them, for the estimate and the maps (torch, whole
    sub-images): ``raw`` holds ``network_steps``' ``StepRecord`` per step in decoding order, the network's
    prediction; each is fitted (``SliceFitting.tensor_step``, when ``fits``) and its scales moved by
    ``calibrate(values, mu, s)`` (the step's scale offset). -> ``([(k, values, mu, s)], level, head)``.

    Bitstream 9 (``choose`` given): the steps of every candidate lattice (``candidates``, a prefix of
    the decoding order) are fitted first as ``head``, ``choose(head)`` gives the base level; with a
    lattice its steps leave and the others are fitted again against the lattice's residuals
    (``SliceFitting.lattice``), as the codec's encoder does (``Engine._lattice_first``)."""
    def one(r: StepRecord):
        mu, s = fits.tensor_step(r.k, r.pos, r.values, r.mu, r.s) if fits is not None else (r.mu, r.s)
        return r.k, r.values, mu, calibrate(r.values, mu, s)

    if choose is None:
        return [one(r) for r in raw], 0, []
    n = next((i for i, r in enumerate(raw) if r.k not in candidates), len(raw))
    head = [one(r) for r in raw[:n]]
    level = choose(head) if n else 0
    if not level:
        return head + [one(r) for r in raw[n:]], 0, head
    f = refine.plane_f(order)
    g = lattice.stride(f, level)
    known = lattice.steps(order, g)
    if fits is not None:
        fits.lattice(g, known)
    return [one(r) for r in raw if r.k not in known], level, head
