"""The estimate of a slice's code length: the coding stages run on the network's predictions.

Training and Inspect read it (``slice_bits``); the codec writes the same stages into a file
(``codecs.lvpnet_engine``). It lives here, not in ``model``: the network does not know the
coding stages.
"""

from __future__ import annotations

import numpy as np
import torch

from ..model.lvpnet import IntegerDecoder, LVPNet
from ..model.prep import collapse_gaps, padded_size, polyphase_pad, slice_params, to_grid
from ..model.tables import calibrated_scales, pixel_bits_exact
from . import edge, lattice, lattice_estimate
from .adapt import adapted_pixel_bits, flag_levels, offset_max, side_bits
from .fitting import SliceFitting, fit_plane, network_steps
from .latent_adapt import latent_code_bits


@torch.no_grad()
def slice_bits(
    model: LVPNet, dec: IntegerDecoder, v2d: np.ndarray, enc_device=None, calibrate: bool = True, adapt: bool = True,
    refined: bool = True, staged_latent: bool = True, wide_flags: bool = True, edge_classes: bool = True,
    min_flags: bool = True, lattice_costs=None, lattice_skip: bool = True, adaptive_flags: bool = True,
    block_map: bool = True,
) -> dict:
    """Estimated code length of one grey slice with the exact integer decoder.

    ``calibrate``: as the codec codes it (bitstream version 2): values on a grid coded by
    their index (``prep.value_step``) and per-step scale offsets (their own bits are
    ``side_bits``), so pixel + latent + side bits is what a file's streams hold.
    ``adapt`` (with ``calibrate``; bitstream version 3): tables adapted to the slice
    and neighbour-repeat flags (``coding.adapt``, ``coding.repeat``), the coding mode's
    log2(12) bits in ``side_bits``. ``refined`` (with ``adapt``; version 4): each step's
    location refined on the slice and its scales moved by the error feedback
    (``coding.fitting``), per-step offsets in [-8, 8]; their side information in ``side_bits``.
    ``staged_latent`` (version 5): the latent's tables adapted to the slice (``coding.latent_adapt``);
    ``wide_flags`` (version 5): flag levels 3 and 4 (``coding.repeat``). ``edge_classes`` (version 6):
    the adapted tables counted per scale and distance from the minimum (``coding.edge``). ``min_flags``
    (version 6): flags on candidates at the plane's minimum (``coding.repeat``). ``lattice_costs``
    (version 7, with ``adapt``): ``f(v, R, f) -> {base level: bits}``, the classical coder's bits of
    each base lattice (``codecs.lvpnet_base.costs``; ``coding.lattice``); the chosen lattice's
    bits count in ``pixel_bits`` and in ``step_bits`` (shared over its steps by ``lattice.map_share``).
    ``adaptive_flags`` (version 10): the neighbour-repeat flags coded by ``coding.flag_adapt``.
    ``block_map`` (version 11, with ``lattice_skip``): constant blocks out of the steps (``coding.blocks``),
    its mode bit in ``side_bits``.

    Returns {'pixel_bits', 'latent_bits', 'side_bits', 'n', 'step_bits'} (ideal -log2 p;
    the plane header (vmin, R, stream lengths) is not counted).
    """
    cfg = dec.cfg
    f = dec.f
    v2d = np.asarray(v2d).astype(np.int64)
    if calibrate:  # the codec's value step too (bitstream version 2): values min + g * k coded as k
        v2d = to_grid(v2d)[2]
    if calibrate and adapt:  # and without runs of unused values (version 3)
        v2d = collapse_gaps(v2d)[0]
    vmin, R, B = slice_params(v2d)
    v = v2d - vmin
    H, W = v.shape
    Hp, Wp = padded_size(H, W, cfg.stride)
    vp = polyphase_pad(v, Hp, Wp, f)
    z = model.encode_slice(vp, B, device=enc_device)
    lat = float(latent_code_bits(dec, z, staged_latent).sum())
    feats = dec.features(z)
    adapt = adapt and calibrate
    refined = refined and adapt
    levels = flag_levels(wide_flags)
    fits = SliceFitting(v, R, dec.order, dec.pixel_tables, dec.pixel_shifts, dec.K) if refined else None
    raw = network_steps(dec, feats, vp, H, W, R, B)

    def calibrated(v_, mu_, s_):  # what the codec does (bitstream version 2): per-step scale offset
        if not calibrate:
            return s_
        return calibrated_scales(v_, mu_, s_, R, dec.pixel_tables, dec.pixel_shifts, dec.K, offset_max(refined))

    costs = lattice_costs(v, R, f) if adapt and lattice_costs is not None and v.size else None
    args = (R, dec.pixel_tables, dec.pixel_shifts, dec.K, v, dec.order, dec.cfg.step0_rows, levels,
            edge.config_thresholds(cfg) if edge_classes else None, min_flags)
    step_bits = [0.0] * dec.steps
    choose = None
    if costs and lattice_skip:  # bitstream 9: the lattice chosen on its own steps before the others are fitted
        early = lattice_estimate.early_level(v, costs, dec.order, f)  # the encoder's, before its walk

        def choose(head):
            head = [st for st in head if st[1].numel()]
            per_pixel, mode = adapted_pixel_bits(head, *args, costs, early_level=early)
            if mode[2]:
                for (k, *_rest), b in zip(head, per_pixel):  # the lattice's steps: its codestream, shared
                    if k in lattice.steps(dec.order, lattice.stride(f, mode[2])):
                        step_bits[k] = float(b.sum())
            return mode[2]

    candidates = lattice.candidate_steps(costs, dec.order, f) if choose else frozenset()
    steps, level, _head = fit_plane(raw, fits, calibrated, dec.order, candidates, choose)
    steps = [st for st in steps if st[1].numel()]
    block_map = block_map and adapt and lattice_skip
    if adapt:
        g = (lattice.stride(f, level) if level else 0) if block_map else None
        per_pixel, _mode = adapted_pixel_bits(steps, *args, None if lattice_skip else costs,
                                              adaptive_flags=adaptive_flags, block_lattice=g)
        for (k, *_rest), b in zip(steps, per_pixel):
            step_bits[k] = float(b.sum())
    else:
        for k, v_, mu_, s_ in steps:
            step_bits[k] = float(pixel_bits_exact(v_, mu_, s_, R, dec.pixel_tables, dec.pixel_shifts, dec.K).sum())
    side = side_bits(dec.steps, calibrate, adapt, refined, levels) + (fits.side_bits() if fits is not None else 0.0)
    side += 1.0 if block_map else 0.0  # version 11: the map's bit in the coding mode
    return {"pixel_bits": sum(step_bits), "latent_bits": lat, "side_bits": side, "n": H * W, "step_bits": step_bits}
