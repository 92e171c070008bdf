"""The predictor's trunk on the CPU as exact int8 matrix products: the same integers as the float convs.

Why: the trunk's 3x3 convolutions are most of the decoder's time, and float32 convolutions
already run at this CPU's peak. Its activations are 7-bit and its weights 8-bit (``intnet``),
so each layer is an int8 x int8 matrix product with int32 sums (``torch._int_mm``, VNNI where
the CPU has it): measured 2.6 ms against 9.4 ms for the first layer of a 512 x 512 slice's step.
Integer sums are exact in any order, so every machine, thread count and batch gets the integers
the float path computes (tests compare the two on random and real weights).

Two more savings come for free with exact integers: the head computes only the outputs the step
reads (the neighbour weights of the sub-images decoded so far, not all of them), and the context
stem reads only the decoded sub-images (the others are zero and add nothing).

Layout: activations stay (h, w, C) int8 between layers, so a 3x3 layer's input matrix is nine
shifted views side by side, with no transposes.
"""

from __future__ import annotations

import numpy as np
import torch

from .intnet import AMAX, int_conv

_K_ALIGN = 64  # inner dimension padded with zero columns: oneDNN's int8 kernels like multiples of 64


def supported() -> bool:
    """True when this torch has an int8 matrix product on the CPU and numba is there for the
    layout kernels around it."""
    global _SUPPORTED
    if _SUPPORTED is None:
        try:
            import numba  # noqa: F401

            a = torch.ones((2, 8), dtype=torch.int8)
            _SUPPORTED = bool((torch._int_mm(a, a.t().contiguous()) == 8).all())
        except (ImportError, AttributeError, RuntimeError, NotImplementedError):
            _SUPPORTED = False
    return _SUPPORTED


_SUPPORTED: bool | None = None


def _fits(layer: dict) -> bool:
    w = layer["weight"]
    return (int(w.abs().max()) <= 127 and int(layer["in_max"]) <= AMAX and w.shape[-1] in (1, 3)
            and int(layer["pad"]) == w.shape[-1] // 2)


class _Layer:
    """One exported layer as a (K, O) int8 matrix (rows in (ki, kj, c) order) and int32 bias."""

    def __init__(self, spec: dict, rows: torch.Tensor | None = None):
        w = spec["weight"].to(torch.int64)
        b = spec["bias"].to(torch.int64)
        if rows is not None:
            w, b = w[rows], b[rows]
        n_out, C, k, _ = w.shape
        self.k, self.C, self.O = k, C, n_out
        K = k * k * C
        self.Kp = -(-K // _K_ALIGN) * _K_ALIGN
        mat = torch.zeros((self.Kp, n_out), dtype=torch.int8)
        mat[:K] = w.permute(2, 3, 1, 0).reshape(K, n_out).to(torch.int8)
        self.mat = mat.t().contiguous().t()  # column-major: the layout the int8 kernel reads fastest
        self.w_rows = mat[:K].t().contiguous() if k == 1 else None  # (O, C): a 1x1 head as W x^T
        self.bias = b.to(torch.int32)
        self.shift, self.relu, self.raw = int(spec["shift"]), bool(spec["relu"]), bool(spec["raw"])

    def acc(self, x: torch.Tensor) -> torch.Tensor:
        """x (h, w, C) int8 -> the exact sums (h * w, O) int32, without the bias."""
        h, w, C = x.shape
        cols = torch.from_numpy(_kernels()[0](x.numpy(), self.k, self.Kp))
        return torch._int_mm(cols, self.mat)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """A hidden layer: floor((acc + bias) / 2**shift) clamped to [0, AMAX], as (h, w, O) int8."""
        h, w, _ = x.shape
        y = _kernels()[1](self.acc(x).numpy(), self.bias.numpy(), self.shift)
        return torch.from_numpy(y).view(h, w, self.O)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """A 1x1 raw head: acc + bias as (O, h * w) float32 (|sums| < 2**24: exact). Computed as
        W x^T, so the channels come out first without a transpose of the (large) result."""
        h, w, C = x.shape
        acc = torch._int_mm(self.w_rows, x.reshape(h * w, C).t().contiguous())
        return (acc + self.bias[:, None]).to(torch.float32)


def _im2col(x, k, Kp):
    """(h, w, C) int8 -> (h * w, Kp) int8: the k x k neighbourhoods (zero padded), (ki, kj, c) order."""
    h, w, C = x.shape
    out = np.zeros((h * w, Kp), np.int8)
    r = k // 2
    for y in range(h):
        for xx in range(w):
            row = y * w + xx
            for ki in range(k):
                yy = y + ki - r
                if yy < 0 or yy >= h:
                    continue
                for kj in range(k):
                    xs = xx + kj - r
                    if xs < 0 or xs >= w:
                        continue
                    base = (ki * k + kj) * C
                    for c in range(C):
                        out[row, base + c] = x[yy, xs, c]
    return out


def _hidden(acc, bias, shift):
    """(n, O) int32 sums -> clamp(floor((acc + bias) / 2**shift), 0, AMAX) as int8."""
    n, n_out = acc.shape
    out = np.empty((n, n_out), np.int8)
    for i in range(n):
        for o in range(n_out):
            v = (acc[i, o] + bias[o]) >> shift
            out[i, o] = min(max(v, 0), AMAX)
    return out


_KERNELS = None


def _kernels():
    global _KERNELS
    if _KERNELS is None:
        import numba

        jit = numba.njit(cache=True, nogil=True)
        _KERNELS = (jit(_im2col), jit(_hidden))
    return _KERNELS


class Int8Step:
    """Step ``k``'s trunk and head (``predictor.step_spec``) as int8 products; ``head_rows`` the head
    outputs the step reads. ``Int8Step.build`` returns None where the weights do not fit int8."""

    def __init__(self, spec: dict, head_rows: torch.Tensor, n_ctx: int):
        self.head_rows = head_rows
        self.n_ctx = n_ctx
        self.ctx = None
        if "ctx" in spec:  # 9-bit inputs: stays a float conv, cut to the decoded sub-images
            c = dict(spec["ctx"])
            c["weight"] = c["weight"][:, : max(1, n_ctx)].contiguous()
            self.ctx = c
        self.layers = [_Layer(layer) for layer in spec["layers"]]
        self.head = _Layer(spec["head"], head_rows)

    @classmethod
    def build(cls, spec: dict, head_rows: torch.Tensor, n_ctx: int) -> Int8Step | None:
        if not supported():
            return None
        if not all(_fits(layer) for layer in spec["layers"]) or not _fits(spec["head"]):
            return None
        if not all(layer["relu"] and not layer["raw"] for layer in spec["layers"]) or not spec["head"]["raw"]:
            return None
        return cls(spec, head_rows, n_ctx)

    @torch.no_grad()
    def __call__(self, feats: torch.Tensor, ctx_u: torch.Tensor | None, avail: torch.Tensor | None) -> torch.Tensor:
        """Like ``predictor.trunk_int`` for one slice: raw head integers (1, len(head_rows), h, w) float32."""
        h, w = feats.shape[-2:]
        parts = [feats[0].permute(1, 2, 0).to(torch.int8)]  # small: 16 channels
        if self.ctx is not None:
            # sub-images not decoded yet are zero here (``IntegerDecoder._raw``): cutting them adds nothing
            c = int_conv(ctx_u[:, : max(1, self.n_ctx)].to(torch.float32), self.ctx, "conv")
            parts.append(c[0].permute(1, 2, 0).to(torch.int8))
            m = (avail[0].to(torch.int8) * AMAX).view(1, 1, -1).expand(h, w, -1)
            parts.append(m)
        x = torch.cat(parts, 2)
        for layer in self.layers:
            x = layer(x)
        return self.head.head(x).view(1, -1, h, w)
