"""Factorised prior for the latent ``z``: one categorical per channel, fitted as a running histogram.

Each latent channel ``c`` has a distribution over ``z in [-zmax, zmax]`` (the encoder
clamps ``z`` into this range). It is not learned by gradient steps but tracked as an
exponential moving average of the channel's histogram over the training batches
(blocks holding at least one real pixel), mixed with 0.1% of a uniform distribution.
Gradient-trained logits lag behind the moving encoder, and a single logistic per
channel cannot fit the multi-modal histograms real latents have: both were tried,
and the latent cost ran away. Training: the value of the latent bits is the exact
``-log2 p_c[z]``; the encoder's gradient is the slope of that bit table at the
continuous ``y / Q`` (``bits[z+1] - bits[z]``, pulling ``y`` towards likelier values;
outside the range a constant slope of one bit per step pulls it back).
The codec uses the frozen int32 tables from ``tables()``, stored in the checkpoint.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .tables import quantize_probs

UNIFORM_MIX = 1e-3


class FactorizedPrior(nn.Module):
    def __init__(self, channels: int, zmax: int, init_scale: float = 2.0, decay: float = 0.98):
        super().__init__()
        self.channels, self.zmax, self.decay = channels, zmax, decay
        z = torch.arange(-zmax, zmax + 1, dtype=torch.float32)
        p = torch.exp(-z.abs() / init_scale)
        self.register_buffer("hist", (p / p.sum()).repeat(channels, 1).contiguous())

    def probs(self) -> torch.Tensor:
        V = self.hist.shape[1]
        h = self.hist / self.hist.sum(1, keepdim=True)
        return (1.0 - UNIFORM_MIX) * h + UNIFORM_MIX / V

    def bit_table(self) -> torch.Tensor:
        return -torch.log2(self.probs())

    @torch.no_grad()
    def update(self, z_hard: torch.Tensor, mask: torch.Tensor) -> None:
        """EMA of the per-channel histogram of z (N, C, h, w) over blocks where mask (N, 1, h, w) > 0."""
        N, C, h, w = z_hard.shape
        V = self.hist.shape[1]
        idx = (z_hard.long() + self.zmax).clamp(0, V - 1).permute(1, 0, 2, 3).reshape(C, -1)
        wts = mask.expand(N, C, h, w).permute(1, 0, 2, 3).reshape(C, -1).to(self.hist.dtype)
        cnt = torch.zeros_like(self.hist).scatter_add_(1, idx, wts)
        tot = cnt.sum(1, keepdim=True)
        if float(tot.min()) <= 0:
            return
        self.hist.mul_(self.decay).add_((1.0 - self.decay) * cnt / tot)

    def bits(self, z_rate: torch.Tensor, z_hard: torch.Tensor) -> torch.Tensor:
        """Bits per element of z (N, C, h, w); ``z_rate`` = y/Q (value z_hard, straight-through grad)."""
        zmax = self.zmax
        with torch.no_grad():
            tab = self.bit_table()  # (C, V)
            C, V = tab.shape
            N, _, h, w = z_hard.shape
            idx = (z_hard.long() + zmax).clamp(0, V - 1).view(N, C, h * w)
            exact = torch.gather(tab.unsqueeze(0).expand(N, C, V), 2, idx).view(N, C, h, w)
            slope_tab = torch.cat([tab[:, 1:] - tab[:, :-1], torch.ones(C, 1, device=tab.device)], 1)
            slope = torch.gather(slope_tab.unsqueeze(0).expand(N, C, V), 2, idx).view(N, C, h, w)
            slope = torch.where(z_rate.detach() < -zmax, -torch.ones_like(slope), slope)
        return exact + slope * (z_rate - z_rate.detach())

    @torch.no_grad()
    def tables(self):
        return quantize_probs(self.probs().double().cpu().numpy())
