"""GMSM: global multi-scale sensing encoder (float; runs on the encoder side only).

Whole (padded) slice -> latent ``y`` at total stride ``stride`` (default 32).
Each scale: ``f_{t+1} = GELU(Conv3x3_s2(f_t)) + Conv1x1(AvgPool2(f_t))`` (the pooling
skip), followed by a residual block on the deeper scales; a global-average
branch adds image-wide context at the last scale ("global" sensing). A 1x1 conv
gives ``latent_channels`` (= round(ratio * stride**2), 154 for 0.15 and 32).
The encoder's output ``z`` is written to the file, so this part may be float.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class _Res(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.a = nn.Conv2d(c, c, 3, padding=1)
        self.b = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return x + self.b(F.gelu(self.a(x)))


class GMSM(nn.Module):
    def __init__(self, latent_channels: int, stride: int = 32, widths=None, in_channels: int = 1, y_bound: float = 32.0):
        super().__init__()
        n = int(round(math.log2(stride)))
        if 2**n != stride:
            raise ValueError("stride must be a power of two")
        if widths is None:
            widths = [16, 32, 64, 96, 128, 160, 192][: n + 1]
        widths = list(widths)
        if len(widths) != n + 1:
            raise ValueError(f"need {n + 1} encoder widths for stride {stride}")
        self.stem = nn.Conv2d(in_channels, widths[0], 3, padding=1)
        self.down = nn.ModuleList(nn.Conv2d(widths[t], widths[t + 1], 3, stride=2, padding=1) for t in range(n))
        self.skip = nn.ModuleList(nn.Conv2d(widths[t], widths[t + 1], 1) for t in range(n))
        self.res = nn.ModuleList(_Res(widths[t + 1]) if t >= n - 3 else nn.Identity() for t in range(n))
        # GroupNorm after every scale: measured, the unnormalised encoder's activations (and with
        # them its gradients) ran away after a few hundred steps and training never recovered
        self.norm = nn.ModuleList(nn.GroupNorm(max(1, min(8, widths[t + 1] // 4)), widths[t + 1]) for t in range(n))
        w = widths[-1]
        self.glob = nn.Sequential(nn.Linear(w, w), nn.GELU(), nn.Linear(w, w))
        self.head = nn.Conv2d(w, latent_channels, 1)
        self.bound = float(y_bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = F.gelu(self.stem(x))
        for down, skip, res, norm in zip(self.down, self.skip, self.res, self.norm):
            f = F.gelu(down(f)) + skip(F.avg_pool2d(f, 2))
            f = norm(res(f))
        f = f + self.glob(f.mean(dim=(2, 3)))[:, :, None, None]
        y = self.head(f)
        # soft bound: y stays inside the coded range (+-bound), so it cannot drift away
        return self.bound * torch.tanh(y / self.bound)
