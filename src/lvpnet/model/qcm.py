"""QCM: quantisation compensation module (integer-exact, residual 1x1 convs).

Input: the integer latent ``z`` (|z| <= zmax <= 31). Output: the compensated latent
``y_t = 4 z + c`` in units of ``Q_step / 4``, where ``c in {0, 1, 2, 3}`` is the
predicted floor-quantisation error ``y / Q - z in [0, 1)`` in quarters. So
``|y_t| <= 4 * 31 + 3 = 127`` and it feeds the next integer layer directly.
Trained through the code length and with an auxiliary MSE ``(y_t / 4 * Q - y)**2``.

``QCM.open_clamp`` (training only, off by default): the clamp of ``c`` to 0..3 passes the
gradient of an output outside 0..3 when it points back into the range. Its values are the
clamp's, so the integer decoder is unchanged. Why: a plain clamp has no gradient outside the
range, and measured on the shipped weights every output sat at -82..-1 or 4..76, so ``c`` was
0 or 3 everywhere and nothing could move it (docs/MODEL.md, section 6).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .intnet import IntConv2d, int_conv


class _ClampBack(torch.autograd.Function):
    """clamp(x, lo, hi) forward; backward passes the gradient inside the range and, outside it,
    only where a descent step moves x back towards the range."""

    @staticmethod
    def forward(ctx, x, lo: float, hi: float):
        ctx.save_for_backward(x)
        ctx.lo, ctx.hi = lo, hi
        return torch.clamp(x, lo, hi)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        keep = ((x >= ctx.lo) & (x <= ctx.hi)) | ((x < ctx.lo) & (g < 0)) | ((x > ctx.hi) & (g > 0))
        return g * keep.to(g.dtype), None, None


class QCM(nn.Module):
    def __init__(self, channels: int, hidden: int, zmax: int):
        super().__init__()
        if 4 * zmax + 3 > 127:
            raise ValueError("zmax must be <= 31 so that 4*z + c fits 7 bits")
        self.l1 = IntConv2d(channels, hidden, 1, in_max=zmax, f_in=0, f_out=4)
        self.l2 = IntConv2d(hidden, channels, 1, f_in=4, f_out=2, relu=False)
        self.open_clamp = False  # a training switch, not a weight: not saved

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        raw = self.l2(self.l1(z))
        c = _ClampBack.apply(raw, 0.0, 3.0) if (self.open_clamp and self.training) else torch.clamp(raw, 0, 3)
        return 4.0 * z + c

    def export(self) -> dict:
        return {"l1": self.l1.export(), "l2": self.l2.export()}


def qcm_int(z: torch.Tensor, spec: dict, impl: str = "conv") -> torch.Tensor:
    c = torch.clamp(int_conv(int_conv(z, spec["l1"], impl), spec["l2"], impl), 0, 3)
    return 4.0 * z + c
