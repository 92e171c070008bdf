"""Probability prediction network (integer-exact) with optional 2x2 sub-image autoregression.

Resolution: the sub-image grid (``Hp/f x Wp/f``; f = 2 by default, f = 1 is the
one-pass mode). Inputs of step ``k`` (sub-image ``k`` in ``prep.ORDERS[f]``):

* latent features (``up_channels`` 7-bit channels from the upsampling layer);
* for f = 2: the already decoded sub-images ``0..k-1`` as 12-bit context values
  ``floor(v * 2**12 / 2**B)`` (channels ``>= k`` are zero) through their own 3x3
  "context stem" conv (27 * 4095 * 127 + 2**18 < 2**24), plus 3 availability
  masks (127 where available).

A trunk of 3x3 convs (7-bit ReLU-clamped activations) ends in a raw 1x1 head with
``P = 2 + 9 * nctx`` channels per step: ``m`` (location term), ``s`` (scale) and
``9 * nctx`` non-negative neighbour weights ``a``. The head's integers become
(``head_params``):

    s_idx = clamp(clamp(floor(s_raw / 2**(fw+2)) + S_OFF, 0, 127) - L * (16 - B), 0, S-1)
    wavg  = round(sum_j (a_j+1) n_j / sum_j (a_j+1))      over the 3x3 neighbours n_j of
                                                          every available context sub-image
    base  = wavg          (steps >= 1)      or 2**(B-1) (step 0)
    mu    = clamp(base + floor(m_raw * 2**B / 2**(fw+4)), 0, R)

all in int64 (exact on any device). The neighbour values ``n_j`` are the exact
decoded values (up to 16 bits), so the location keeps full precision although
hidden activations are 7-bit.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .intnet import AMAX, IntConv2d, int_conv
from .prep import CTX_BITS

S_OFF = 56  # scale-index offset of the s channel (initial scale)
HEAD_FW = 10  # weight fraction bits of the head (finer location resolution)


class Predictor(nn.Module):
    def __init__(self, up_channels: int, f: int, width: int = 48, ctx_width: int = 32, n_layers: int = 3):
        super().__init__()
        self.f = f
        self.steps = f * f
        self.nctx = self.steps - 1
        self.P = 2 + 9 * self.nctx
        cin = up_channels
        if self.nctx:
            self.ctx = IntConv2d(self.nctx, ctx_width, 3, in_max=(1 << CTX_BITS) - 1, f_in=CTX_BITS, f_out=4)
            cin += ctx_width + self.nctx
        layers = [IntConv2d(cin, width, 3)]
        layers += [IntConv2d(width, width, 3) for _ in range(n_layers - 1)]
        layers += [IntConv2d(width, width, 1)]
        self.layers = nn.ModuleList(layers)
        self.head = IntConv2d(width, self.steps * self.P, 1, raw=True, fw=HEAD_FW)
        with torch.no_grad():
            self.head.weight.mul_(0.03 / self.head.weight.std())

    def trunk(self, feats: torch.Tensor, ctx_u: torch.Tensor | None, avail: torch.Tensor | None) -> torch.Tensor:
        x = feats
        if self.nctx:
            c = self.ctx(ctx_u)
            m = (avail.to(feats.dtype) * AMAX)[:, :, None, None].expand(-1, -1, *feats.shape[-2:])
            x = torch.cat([feats, c, m], dim=1)
        for layer in self.layers:
            x = layer(x)
        return self.head(x)

    def export(self) -> dict:
        d = {"layers": [layer.export() for layer in self.layers], "head": self.head.export()}
        if self.nctx:
            d["ctx"] = self.ctx.export()
        return d


def trunk_int(spec: dict, feats, ctx_u, avail, impl: str = "conv"):
    x = feats
    if "ctx" in spec:
        c = int_conv(ctx_u, spec["ctx"], impl)
        m = (avail.to(feats.dtype) * AMAX)[:, :, None, None].expand(-1, -1, *feats.shape[-2:])
        x = torch.cat([feats, c, m], dim=1)
    for layer in spec["layers"]:
        x = int_conv(x, layer, impl)
    return int_conv(x, spec["head"], impl)


def neighbours(ctx_v: torch.Tensor) -> torch.Tensor:
    """(N, nctx, h, w) exact values -> (N, nctx*9, h, w), 3x3 neighbourhoods, edge-replicated."""
    n, c, h, w = ctx_v.shape
    x = F.pad(ctx_v.to(torch.float32), (1, 1, 1, 1), mode="replicate")  # values < 2**17: exact
    return F.unfold(x, 3).view(n, c * 9, h, w)


def head_params(
    raw: torch.Tensor,
    ctx_v: torch.Tensor | None,
    avail: torch.Tensor | None,
    first: torch.Tensor,
    R: torch.Tensor,
    B: torch.Tensor,
    *,
    n_scales: int,
    per_octave: int,
    soft: bool = False,
):
    """Raw head output (N, P, h, w) of one step -> integer (mu, s_idx) [+ float relaxations].

    ``first`` (N,) bool marks step 0 (no context); ``R``, ``B`` (N,) int64.
    With ``soft=True`` also returns (mu_soft, s_soft) for the training relaxation.
    """
    fw = HEAD_FW
    dev = raw.device
    N = raw.shape[0]
    R = R.to(dev).long().view(N, 1, 1)
    B = B.to(dev).long().view(N, 1, 1)
    m_int = torch.round(raw[:, 0].detach()).long()
    s_net = torch.clamp(torch.floor(raw[:, 1].detach() * 2.0 ** -(fw + 2)) + S_OFF, 0, AMAX).long()
    s_idx = torch.clamp(s_net - per_octave * (16 - B), 0, n_scales - 1)
    delta = (m_int << B) >> (fw + 4)
    half = (torch.ones_like(B) << B) >> 1
    base = half.expand_as(delta)
    nb = None
    if ctx_v is not None and ctx_v.shape[1] > 0:
        nctx = ctx_v.shape[1]
        nb = neighbours(ctx_v)
        wmask = avail.to(dev).long().repeat_interleave(9, dim=1)[:, :, None, None]
        a_int = torch.clamp(torch.floor(raw[:, 2 : 2 + 9 * nctx].detach() * 2.0**-fw), 0, AMAX).long()
        wts = (a_int + 1) * wmask
        A = wts.sum(1)
        num = (wts * nb.long()).sum(1)
        wavg = torch.div(num + (A >> 1), A.clamp_min(1), rounding_mode="floor")
        has = (A > 0) & (~first.to(dev)).view(N, 1, 1)
        base = torch.where(has, wavg, base)
    mu = torch.minimum(torch.clamp(base + delta, min=0), R.expand_as(delta))
    if not soft:
        return mu, s_idx
    # float relaxations with gradients (training only)
    Bf = B.to(raw.dtype)
    # clamps with straight-through gradients: a scale stuck at a bound must still feel the loss
    s_soft = _ste_clamp(raw[:, 1] * 2.0 ** -(fw + 2) + S_OFF, 0, AMAX) - per_octave * (16 - Bf)
    s_soft = _ste_clamp(s_soft, 0, n_scales - 1)
    base_f = base.to(raw.dtype)
    if nb is not None:
        nctx = ctx_v.shape[1]
        a_f = torch.clamp(raw[:, 2 : 2 + 9 * nctx] * 2.0**-fw, 0, AMAX)
        wf = (a_f + 1.0) * wmask.to(raw.dtype)
        wavg_f = (wf * nb.to(raw.dtype)).sum(1) / wf.sum(1).clamp_min(1e-6)
        base_f = torch.where(has, wavg_f, base_f)
    mu_soft = base_f + raw[:, 0] * torch.exp2(Bf - (fw + 4))
    return mu, s_idx, mu_soft, s_soft


def _ste_clamp(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    return x + (torch.clamp(x, lo, hi) - x).detach()
