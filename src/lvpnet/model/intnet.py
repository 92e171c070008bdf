"""Integer-exact layers for the decoder side, with quantisation-aware training.

Every decoder-side convolution computes on integer-valued tensors:

* weights ``w`` are integers in ``[-WMAX, WMAX]`` (``WMAX = 127``);
* inputs are integers with a known bound ``|x| <= in_max`` (7-bit activations
  ``[0, 127]``, the signed latent, or 12-bit context values ``[0, 4095]``);
* biases are integers with ``|b| <= BIAS_MAX``;
* the accumulator ``acc = sum(w * x) + b`` is rescaled by a power of two and
  floored, ``out = floor(acc / 2**shift)``, then clamped (ReLU-clamp to
  ``[0, 127]`` for hidden layers).

Exactness bound (checked in ``IntConv2d.__init__`` and in the tests): every
partial sum of ``acc`` is bounded in magnitude by
``fan_in * in_max * WMAX + BIAS_MAX``; we require this to be ``< 2**24``.
float32 represents every integer below 2**24 exactly, so the sum of integer
products is exact in *any* summation order (cuDNN, MKL-DNN, im2col + GEMM,
CPU or GPU) as long as TF32 is off; multiplying by ``2**-shift`` and flooring
is exact too. float64 (and int64) are exact a fortiori. Example: a 3x3 conv
over 48 channels of 7-bit activations: 432 * 127 * 127 + 2**18 = 7.23e6 <
1.68e7.

Training uses the same arithmetic with straight-through estimators (STE) on
every rounding (weights, biases, activation floors), so the QAT forward and
the exported integer path compute bit-identical integers (tests check it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

EXACT_LIMIT = 2**24  # float32 holds every integer of magnitude below this exactly
WMAX = 127  # integer weights live in [-WMAX, WMAX]
AMAX = 127  # hidden activations live in [0, AMAX]
BIAS_MAX = 2**18  # integer biases live in [-BIAS_MAX, BIAS_MAX]


def ste_round(x: torch.Tensor) -> torch.Tensor:
    """round() forward, identity gradient."""
    return x + (torch.round(x) - x).detach()


def ste_floor(x: torch.Tensor) -> torch.Tensor:
    """floor() forward, identity gradient."""
    return x + (torch.floor(x) - x).detach()


def partial_sum_bound(fan_in: int, in_max: int, wmax: int = WMAX, bias_max: int = BIAS_MAX) -> int:
    """Largest magnitude any partial sum of one output can reach."""
    return fan_in * in_max * wmax + bias_max


class IntConv2d(nn.Module):
    """A conv layer trained with fake quantisation that exports to exact integers.

    Real-valued meaning (used only for initialisation and learning-rate scale):
    input real value = ``x_int * 2**-f_in``, weight real = ``w_int * 2**-fw``,
    output real = ``out_int * 2**-f_out``; so ``shift = fw + f_in - f_out``.
    ``shift=None`` with ``raw=True`` returns the raw accumulator ``acc`` (shift 0).
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        k: int = 1,
        *,
        in_max: int = AMAX,
        f_in: int = 4,
        f_out: int = 4,
        relu: bool = True,
        raw: bool = False,
        init_gain: float = 2.0,
        fw: int | None = None,
    ):
        super().__init__()
        self.cin, self.cout, self.k, self.pad = cin, cout, k, k // 2
        fan_in = cin * k * k
        std = math.sqrt(init_gain / fan_in)
        if fw is None:
            # 3 standard deviations of the initial weights fit into WMAX quanta
            fw = int(math.floor(math.log2(WMAX / (3.0 * std))))
        self.fw = fw
        self.f_in = f_in
        self.raw = raw
        self.relu = relu
        self.shift = 0 if raw else fw + f_in - f_out
        if self.shift < 0:
            raise ValueError("negative shift: choose f_out <= fw + f_in")
        self.in_max = in_max
        self.bound = partial_sum_bound(fan_in, in_max)
        if self.bound >= EXACT_LIMIT:
            raise ValueError(f"partial sums up to {self.bound} would not be exact in float32 (limit 2**24)")
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k) * std)
        self.bias = nn.Parameter(torch.zeros(cout))

    # -- quantised parameters (integer-valued float tensors, STE gradients) --
    def int_weight(self) -> torch.Tensor:
        return torch.clamp(ste_round(self.weight * 2.0**self.fw), -WMAX, WMAX)

    def int_bias(self) -> torch.Tensor:
        return torch.clamp(ste_round(self.bias * 2.0 ** (self.fw + self.f_in)), -BIAS_MAX, BIAS_MAX)

    def set_bias_int(self, values) -> None:
        """Initialise the bias so that its integer value is ``values`` (for output offsets)."""
        with torch.no_grad():
            self.bias.copy_(torch.as_tensor(values, dtype=torch.float32) * 2.0 ** -(self.fw + self.f_in))

    def forward(self, x: torch.Tensor, out_slice: slice | None = None) -> torch.Tensor:
        w = self.int_weight().to(x.dtype)
        b = self.int_bias().to(x.dtype)
        if out_slice is not None:  # only these output channels (each is computed on its own)
            w, b = w[out_slice], b[out_slice]
        acc = F.conv2d(x, w, b, padding=self.pad)
        if self.raw:
            return acc
        y = ste_floor(acc * 2.0**-self.shift)
        if self.relu:
            y = torch.clamp(y, 0, AMAX)
        return y

    @torch.no_grad()
    def export(self) -> dict:
        return {
            "weight": self.int_weight().round().to(torch.int32).cpu(),
            "bias": self.int_bias().round().to(torch.int64).cpu(),
            "shift": int(self.shift),
            "pad": int(self.pad),
            "relu": bool(self.relu),
            "raw": bool(self.raw),
            "fw": int(self.fw),
            "f_in": int(self.f_in),
            "in_max": int(self.in_max),
        }


def int_conv(x: torch.Tensor, spec: dict, impl: str = "conv") -> torch.Tensor:
    """Exact integer conv of an exported layer (``x`` integer-valued float32/float64).

    ``impl='conv'`` uses F.conv2d, ``impl='gemm'`` unfold + matrix product (a
    second, independent summation order; both are exact under the bound).
    """
    dt = x.dtype
    w = spec["weight"].to(device=x.device, dtype=dt)
    b = spec["bias"].to(device=x.device, dtype=dt)
    if impl == "gemm":
        n, c, h, wd = x.shape
        k = w.shape[-1]
        cols = F.unfold(x, k, padding=spec["pad"])  # (n, c*k*k, h*w)
        acc = torch.matmul(w.reshape(w.shape[0], -1), cols) + b[:, None]
        acc = acc.reshape(n, w.shape[0], h, wd)
    else:
        acc = F.conv2d(x, w, b, padding=spec["pad"])
    if spec["raw"]:
        return acc
    y = torch.floor(acc * 2.0 ** -spec["shift"])
    if spec["relu"]:
        y = torch.clamp(y, 0, AMAX)
    return y


def spec_bound(spec: dict) -> int:
    w = spec["weight"]
    fan_in = w.shape[1] * w.shape[2] * w.shape[3]
    return partial_sum_bound(fan_in, spec["in_max"])


@dataclass
class ExactMode:
    """Context manager: TF32 off (and deterministic cuDNN) for exact float32 integer maths."""

    def __enter__(self):
        self._old = (
            torch.backends.cuda.matmul.allow_tf32,
            torch.backends.cudnn.allow_tf32,
            torch.backends.cudnn.deterministic,
            torch.backends.cudnn.benchmark,
        )
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        return self

    def __exit__(self, *exc):
        (
            torch.backends.cuda.matmul.allow_tf32,
            torch.backends.cudnn.allow_tf32,
            torch.backends.cudnn.deterministic,
            torch.backends.cudnn.benchmark,
        ) = self._old
        return False
