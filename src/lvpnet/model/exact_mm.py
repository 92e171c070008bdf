"""Exact integer matrix products for the CPU trunk (``int8_trunk``): int8 x int8 -> int32 sums, the
fastest exact way this CPU has, chosen once a process.

Why two ways. ``torch._int_mm`` runs oneDNN's VNNI kernels where the CPU has them (x86 from
Cascade Lake, AMD from Zen 4): several times float32's speed. Where it does not, torch 2.13 takes a
scalar loop instead: on an AVX2-only AMD EPYC a 16,384 x 576 x 48 product took 325 ms against 15 ms
as a float32 GEMM, and a CT slice's encode 12.5 s against 1.7 s on the float convolutions, 69x
JPEG-XL's time. oneDNN's int8 kernels for CPUs without VNNI, where torch does reach them, are not
exact either (``_exact_int8``). A float32 GEMM is exact for this trunk: each product
of a 7-bit activation and an 8-bit weight is an integer below 2**14, and every partial sum, in any
order the library adds them, is at most ``AMAX * sum(|w|)`` of the output's row, under 2**24 where
``fits_float32`` says so (every layer of the shipped weights: 4.0 M at most), so float32 holds it
exactly. So the same integers either way, on every CPU: only the speed depends on the choice.

``kind()``: "int8" where ``torch._int_mm`` is exact and not slower than a float32 GEMM on a trunk
shaped product (timed once, a few ms), else "float32". ``LVPNET_PRODUCTS=int8`` or ``float32``
forces one (tests run both).
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch

from .intnet import AMAX

FLOAT_EXACT = 2**24  # float32 holds every integer of magnitude up to this
_KIND: str | None = None


def kind() -> str:
    """"int8" or "float32": how ``mm`` multiplies in this process."""
    global _KIND
    if _KIND is None:
        forced = os.environ.get("LVPNET_PRODUCTS", "").strip().lower()
        if forced in ("int8", "float32"):
            _KIND = forced
        else:
            _KIND = "int8" if _int8_exact() and _int8_faster() else "float32"
    return _KIND


def set_kind(value: str | None) -> None:
    """Forces ``kind`` (None: choose again on next use); for tests and benchmarks."""
    global _KIND
    if value not in (None, "int8", "float32"):
        raise ValueError(f"unknown product kind {value!r}")
    _KIND = value


def np_dtype():
    """The dtype of the trunk's unfolded input columns: the products' own, so they need no copy."""
    return np.int8 if kind() == "int8" else np.float32


def weights(m: torch.Tensor) -> torch.Tensor:
    """An int8 weight matrix as ``mm`` takes it (a float32 copy for float32 products)."""
    return m if kind() == "int8" else m.to(torch.float32)


def fits_float32(w: torch.Tensor) -> bool:
    """Whether every partial sum of a layer with weights ``w`` (outputs first) on inputs in
    [0, AMAX] stays below 2**24, in any order: float32 products give its exact sums."""
    return int(w.to(torch.int64).abs().flatten(1).sum(1).max()) * AMAX < FLOAT_EXACT


def mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The exact int32 sums ``a @ b``: ``a`` and ``b`` both int8 (``torch._int_mm``) or float32 holding
    integers (one of them may be int8: converted), the sums known to fit (``fits_float32``)."""
    if a.dtype == torch.int8 and b.dtype == torch.int8:
        return torch._int_mm(a, b)
    # float32 sums are exact only at full precision: a user's "high"/"medium" lets oneDNN use
    # bfloat16 or TF32 where the CPU has them; float64 is exact whatever is set
    dtype = torch.float32 if torch.get_float32_matmul_precision() == "highest" else torch.float64
    return torch.mm(a.to(dtype), b.to(dtype)).to(torch.int32)


def _int8_exact() -> bool:
    try:
        return _exact_int8()
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


def _exact_int8() -> bool:
    """Whether ``torch._int_mm`` gives the exact sums where an inexact kernel goes wrong most:
    weights at +-127 against activations at ``AMAX`` (every pair sum past 2**15), and random ones,
    in the shapes the trunk uses (a matrix-vector product for one pixel, an odd width, a wide
    layer), against int64 products. oneDNN's kernels for CPUs without VNNI got every shape wrong
    by up to 10**7 (measured with ``ONEDNN_MAX_CPU_ISA=AVX2``; ``docs/MODEL.md``)."""
    g = torch.Generator().manual_seed(0)
    for n_out, k, n in ((48, 64, 1), (48, 576, 37), (64, 1152, 512), (17, 48, 300)):
        w = torch.randint(-127, 128, (n_out, k), dtype=torch.int8, generator=g)
        x = torch.randint(0, AMAX + 1, (n, k), dtype=torch.int8, generator=g)  # pixels first, as the trunk
        w[: n_out // 3] = 127
        w[n_out // 3 : 2 * n_out // 3] = -127
        x[: n // 2 + 1] = AMAX
        want = x.to(torch.int64) @ w.to(torch.int64).T
        # both forms the trunk takes: a hidden layer's ``cols @ W.T`` and the head's ``W @ cols.T``
        if not (torch.equal(torch._int_mm(x, w.T.contiguous()).to(torch.int64), want)
                and torch.equal(torch._int_mm(w, x.T).to(torch.int64), want.T)):
            return False
    return True


def _int8_faster() -> bool:
    """Times a band-sized product of a hidden 3x3 layer both ways, best of 3 after a warm-up."""
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, AMAX + 1, (1024, 448), dtype=torch.int8, generator=g)
    b = torch.randint(-127, 128, (448, 48), dtype=torch.int8, generator=g)
    af, bf = a.to(torch.float32), b.to(torch.float32)

    def best(f) -> float:
        f()
        out = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            f()
            out = min(out, time.perf_counter() - t)
        return out

    return best(lambda: torch._int_mm(a, b)) <= best(lambda: torch.mm(af, bf))
