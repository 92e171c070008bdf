"""The estimate of a plane's code length: the coding stages of a declared profile run on the
network's predictions.

One walk (``plane_walk``) serves the training estimate (``slice_bits``, which sums it) and the
Inspect maps (``lvpnet.analysis``, which maps it, and walks it again for the latent's ablation);
the codec writes the same stages into a file (``codecs.lvpnet_engine``). What is walked is the
bitstream profile (``coding.profiles``), not a set of flags: ``slice_bits(..., profile=PROFILES[9])``
is version 9's estimate. It lives here, not in ``model``: the network does not know the coding stages.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from ..model.lvpnet import IntegerDecoder, LVPNet
from ..model.prep import collapse_gaps, padded_size, polyphase_pad, slice_params, to_grid
from ..model.tables import calibrated_scales, pixel_bits_exact
from . import edge, lattice, lattice_estimate
from .adapt import adapted_pixel_bits, flag_levels, offset_max, side_bits
from .fitting import SliceFitting, fit_plane, network_steps
from .latent_adapt import latent_code_bits
from .profiles import LATEST, PROFILES, Profile


class PlaneBits(NamedTuple):
    """One plane walked as ``profile`` codes it (``plane_walk``)."""

    #: per step, in decoding order: every pixel's code length on the real part of its sub-image grid
    #: (float64; a base lattice's steps hold its codestream's share, ``lattice.map_share``; None: a
    #: step without pixels). A torch tensor where the profile has no adapted tables (versions 1-2).
    pixel_bits: list
    latent_bits: np.ndarray  # (C, hz, wz) float64: every latent symbol's code length
    side_bits: float  # the head of the pixel stream (coding mode, offsets, refinement, the map's bit)
    level: int  # the base lattice coded by JPEG-XL (0: none)
    fits: SliceFitting | None  # the refinement and feedback (None before version 4)


def fitted_steps(dec: IntegerDecoder, feats, v: np.ndarray, vp: np.ndarray, R: int, B: int,
                 profile: Profile = PROFILES[LATEST], candidates=frozenset(), choose=None):
    """Every sub-image step of a plane as ``profile`` codes it: ``([(k, values, mu, s)], level, fits)``
    (torch, the real part of each step's grid; steps without pixels left out). The network's
    prediction, the location refined on the slice and the scales moved by the error feedback
    (version 4, ``fits``, else None), then the step's scale offset (version 2). ``v``: the plane
    minus its minimum, ``vp``: it polyphase-padded (``prep.polyphase_pad``), ``feats``: its latent
    features. Version 9 (``choose``, ``candidates``: ``coding.fitting.fit_plane``): the base lattice
    chosen on the fitted steps of the candidate lattices first; the chosen lattice's steps are left out."""
    fits = SliceFitting(v, R, dec.order, dec.pixel_tables, dec.pixel_shifts, dec.K) if profile.refined else None
    raw = network_steps(dec, feats, vp, *v.shape, R, B)

    def calibrated(v_, mu_, s_):  # the per-step scale offset the encoder chooses (version 2)
        if not profile.scale_offsets:
            return s_
        return calibrated_scales(v_, mu_, s_, R, dec.pixel_tables, dec.pixel_shifts, dec.K, offset_max(profile.refined))

    steps, level, _head = fit_plane(raw, fits, calibrated, dec.order, candidates, choose)
    return [st for st in steps if st[1].numel()], level, fits


def plane_walk(dec: IntegerDecoder, z: torch.Tensor, v: np.ndarray, vp: np.ndarray, R: int, B: int,
               profile: Profile = PROFILES[LATEST], costs: dict[int, float] | None = None,
               ref: np.ndarray | None = None) -> PlaneBits:
    """One plane with latent ``z`` as ``profile`` codes it, pixel by pixel (``PlaneBits``).

    ``v``: the plane minus its minimum as the codec hands it to the engine (on its value grid,
    without runs of unused values, versions 2-3), ``vp``: it polyphase-padded, ``R``, ``B``: its
    range and bit depth (``prep.slice_params``). ``costs``: the classical coder's bits of each base
    lattice (``codecs.lvpnet_base.costs``; used where the profile has ``base_lattice``): with
    ``lattice_skip`` (version 9) the lattice is chosen on its own steps, as the encoder does, before
    the others are fitted. ``ref``: the previous slice in ``v``'s values (``reference.ref_values``;
    version 8's reference flags), None when the plane is coded alone (training)."""
    cfg, f = dec.cfg, dec.f
    adapt = profile.adapted_tables
    lat = latent_code_bits(dec, z, profile.staged_latent)
    feats = dec.features(z)
    levels = flag_levels(profile.wide_flags)
    costs = costs if profile.base_lattice and v.size else None
    args = (R, dec.pixel_tables, dec.pixel_shifts, dec.K, v, dec.order, cfg.step0_rows, levels,
            edge.config_thresholds(cfg) if profile.edge_classes else None, profile.min_flags)
    bits = [None] * dec.steps
    choose = None
    if costs and profile.lattice_skip:  # version 9: the lattice chosen on its own steps before the others are fitted
        early = lattice_estimate.early_level(v, costs, dec.order, f, ref)  # the encoder's, before its walk

        def choose(head):
            head = [st for st in head if st[1].numel()]
            per_pixel, mode = adapted_pixel_bits(head, *args, costs, ref, early_level=early)
            known = lattice.steps(dec.order, lattice.stride(f, mode[2])) if mode[2] else ()
            for (k, *_rest), b in zip(head, per_pixel):  # the lattice's steps: its codestream, shared
                if k in known:
                    bits[k] = b
            return mode[2]

    candidates = lattice.candidate_steps(costs, dec.order, f) if choose else frozenset()
    steps, level, fits = fitted_steps(dec, feats, v, vp, R, B, profile, candidates, choose)
    if adapt:
        g = (lattice.stride(f, level) if level else 0) if profile.block_map else None  # version 11's block map
        per_pixel, mode = adapted_pixel_bits(steps, *args, None if profile.lattice_skip else costs, ref,
                                             adaptive_flags=profile.adaptive_flags, block_lattice=g)
        level = level if profile.lattice_skip else mode[2]  # version 7: the lattice chosen with the coding mode
        for (k, *_rest), b in zip(steps, per_pixel):
            bits[k] = b
    else:
        for k, v_, mu_, s_ in steps:
            bits[k] = pixel_bits_exact(v_, mu_, s_, R, dec.pixel_tables, dec.pixel_shifts, dec.K)
    side = side_bits(dec.steps, profile.scale_offsets, adapt, profile.refined, levels)
    side += fits.side_bits() if fits is not None else 0.0
    side += 1.0 if profile.block_map else 0.0  # version 11: the map's bit in the coding mode
    return PlaneBits(bits, lat, side, level, fits)


@torch.no_grad()
def slice_bits(model: LVPNet, dec: IntegerDecoder, v2d: np.ndarray, enc_device=None,
               profile: Profile = PROFILES[LATEST], lattice_costs=None) -> dict:
    """Estimated code length of one grey slice with the exact integer decoder, coded alone as
    bitstream ``profile`` codes it (default: the version the codec writes; ``plane_walk``).

    The slice is prepared as the codec prepares a plane: values on a grid coded by their index
    (``value_step``, ``prep.to_grid``), runs of unused values taken out (``value_gaps``,
    ``prep.collapse_gaps``). ``lattice_costs``: ``f(v, R, f) -> {base level: bits}``, the classical
    coder's bits of each base lattice (``codecs.lvpnet_base.costs``; ``coding.lattice``), for a
    profile with ``base_lattice``; None where that coder is missing (the lattice is then never taken).
    The chosen lattice's bits count in ``pixel_bits`` and in ``step_bits`` (shared over its steps).

    Returns {'pixel_bits', 'latent_bits', 'side_bits', 'n', 'step_bits'} (ideal -log2 p;
    the plane header (vmin, R, stream lengths) is not counted).
    """
    v2d = np.asarray(v2d).astype(np.int64)
    if profile.value_step:
        v2d = to_grid(v2d)[2]
    if profile.value_gaps:
        v2d = collapse_gaps(v2d)[0]
    vmin, R, B = slice_params(v2d)
    v = v2d - vmin
    H, W = v.shape
    Hp, Wp = padded_size(H, W, dec.cfg.stride)
    vp = polyphase_pad(v, Hp, Wp, dec.f)
    z = model.encode_slice(vp, B, device=enc_device)
    costs = lattice_costs(v, R, dec.f) if profile.base_lattice and lattice_costs is not None and v.size else None
    walk = plane_walk(dec, z, v, vp, R, B, profile, costs)
    step_bits = [0.0 if b is None else float(b.sum()) for b in walk.pixel_bits]
    return {"pixel_bits": sum(step_bits), "latent_bits": float(walk.latent_bits.sum()), "side_bits": walk.side_bits,
            "n": H * W, "step_bits": step_bits}
