"""QCM: quantisation compensation module (integer-exact, residual 1x1 convs).

Input: the integer latent ``z`` (|z| <= zmax <= 31). Output: the compensated latent
``y_t = 4 z + c`` in units of ``Q_step / 4``, where ``c in {0, 1, 2, 3}`` is the
predicted floor-quantisation error ``y / Q - z in [0, 1)`` in quarters. So
``|y_t| <= 4 * 31 + 3 = 127`` and it feeds the next integer layer directly.
Trained through the code length and with an auxiliary MSE ``(y_t / 4 * Q - y)**2``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .intnet import IntConv2d, int_conv


class QCM(nn.Module):
    def __init__(self, channels: int, hidden: int, zmax: int):
        super().__init__()
        if 4 * zmax + 3 > 127:
            raise ValueError("zmax must be <= 31 so that 4*z + c fits 7 bits")
        self.l1 = IntConv2d(channels, hidden, 1, in_max=zmax, f_in=0, f_out=4)
        self.l2 = IntConv2d(hidden, channels, 1, f_in=4, f_out=2, relu=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        c = torch.clamp(self.l2(self.l1(z)), 0, 3)
        return 4.0 * z + c

    def export(self) -> dict:
        return {"l1": self.l1.export(), "l2": self.l2.export()}


def qcm_int(z: torch.Tensor, spec: dict, impl: str = "conv") -> torch.Tensor:
    c = torch.clamp(int_conv(int_conv(z, spec["l1"], impl), spec["l2"], impl), 0, 3)
    return 4.0 * z + c
