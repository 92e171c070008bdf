"""Exact integer matrix products for the CPU trunk (``int8_trunk``): int8 x int8 -> int32 sums, the
fastest exact way this CPU has, chosen once a process.

Why more than one way. ``torch._int_mm`` runs oneDNN's VNNI kernels where the CPU has them (x86 from
Cascade Lake, AMD from Zen 4): several times float32's speed. Where it does not, torch 2.13 takes a
scalar loop instead: on an AVX2-only AMD EPYC a 16,384 x 576 x 48 product took 325 ms against 15 ms
as a float32 GEMM, and a CT slice's encode 12.5 s, 69x JPEG-XL's time. oneDNN's int8 kernels for
CPUs without VNNI, where torch does reach them, are not exact either (``_exact_int8``). So:

- "int8": ``torch._int_mm``, where it is exact and the fastest;
- "amx": the "vnni" kernel, with AMX's tiles for the 3x3 layers (Intel Xeon from Sapphire Rapids;
  ``Weights.amx_taps``): on one such Xeon a hidden layer's band in 0.6 of vnni's time;
- "vnni": this package's own AVX-512 VNNI kernel (``_x86mm.c``, built at install; unsigned
  activations by signed weights, exact because the trunk's activations are 7-bit), with the hidden
  layers' activation in its pass and 3x3 layers read without unfolding (``activated``, ``conv3x3``);
- "avx2": the same kernel with AVX2's instructions, 2.0-3.2x a float32 GEMM on the AVX2 EPYC;
- "float32": float32 GEMMs, exact for this trunk: each product of a 7-bit activation and an 8-bit
  weight is an integer below 2**14, and every partial sum, in any order, is at most
  ``AMAX * sum(|w|)`` of the output's row, under 2**24 for every layer of the shipped weights (4.0 M
  at most; a layer past it is multiplied in float64). Every CPU runs it.

The same integers every way, on every CPU: only the speed depends on the choice. ``kind()`` times
the available ways once a process on a band of a hidden layer (``_fastest``, about 15 ms);
``LVPNET_PRODUCTS=int8``, ``amx``, ``vnni``, ``avx2`` or ``float32`` forces one (tests run each).
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import torch

from .intnet import AMAX

KINDS = ("int8", "amx", "vnni", "avx2", "float32")
# the compiled kernels: their ``isa`` number, outputs per packed block ("amx": vnni's, with AMX tiles for 3x3 layers)
KERNELS = {"avx2": (0, 8), "vnni": (1, 16), "amx": (2, 16)}
FLOAT_EXACT = 2**24  # float32 holds every integer of magnitude up to this
_KIND: str | None = None
_CHOOSING = threading.Lock()  # a viewer's threads may ask at once: one choice, timed once


def kind() -> str:
    """"int8", "amx", "vnni", "avx2" or "float32": how ``product`` multiplies in this process."""
    global _KIND
    if _KIND is None:
        with _CHOOSING:
            if _KIND is None:
                forced = os.environ.get("LVPNET_PRODUCTS", "").strip().lower()
                if forced in KINDS and available(forced):
                    _KIND = forced
                else:
                    _KIND = _fastest()
    return _KIND


def set_kind(value: str | None) -> None:
    """Forces ``kind`` (None: choose again on next use); for tests and benchmarks."""
    global _KIND
    if value is not None and (value not in KINDS or not available(value)):
        raise ValueError(f"product kind {value!r} is not available here")
    _KIND = value


def available(k: str) -> bool:
    """Whether kind ``k`` runs, exactly, in this process."""
    if k == "int8":
        return _int8_exact()
    if k in KERNELS:
        return k in _x86_kinds()
    return k == "float32"


def np_dtype():
    """The dtype of the trunk's unfolded input columns, the products' own so they need no copy."""
    return np.float32 if kind() == "float32" else np.int8


class Weights:
    """A layer's int8 weights ``m`` (K, O), in [-127, 127], prepared for ``product`` of kind ``as_kind``
    (this process's ``kind()`` by default). ``first``: its products come out channels first, (O, n), else
    pixels first, (n, O)."""

    def __init__(self, m: torch.Tensor, first: bool = False, as_kind: str | None = None):
        self.K, self.O = m.shape
        self.first = first
        self.kind = as_kind or kind()
        if self.kind in KERNELS and self.K % 4:
            self.kind = "float32"  # the kernels read inputs four at a time (3x3 layers are padded to 64)
        if self.kind in KERNELS and first:  # (O, K) as it is, zero rows to a multiple of 8 (``gemm_t``)
            self.isa = KERNELS[self.kind][0]
            self.Op = -(-self.O // 8) * 8
            self.m = np.zeros((self.Op, self.K), np.int8)
            self.m[: self.O] = m.T.numpy()
        elif self.kind in KERNELS:
            self.isa, L = KERNELS[self.kind]
            self.Op = -(-self.O // 16) * 16  # whole blocks of 16 outputs: zero weights past O
            full = np.zeros((self.K, self.Op), np.int8)
            full[:, : self.O] = m.numpy()
            # (K / 4, 4, Op / L, L) -> (Op / L, K / 4, L, 4): a block's L outputs' 4 weights in 4 L bytes
            self.m = np.ascontiguousarray(full.reshape(self.K // 4, 4, self.Op // L, L).transpose(2, 0, 3, 1))
            self._full, self._taps = (full, {}) if self.kind == "amx" else (None, None)
        else:
            # float32 holds the sums exactly while every partial sum of an output is below 2**24, in any
            # order: at most AMAX times the output's sum of |w| (4.0 M for the shipped weights' widest)
            exact32 = int(m.to(torch.int64).abs().sum(0).max()) * AMAX < FLOAT_EXACT
            dtype = torch.int8 if self.kind == "int8" else torch.float32 if exact32 else torch.float64
            m = m.to(dtype)
            self.m = m.T.contiguous() if first else m.contiguous()


    def amx_taps(self, C: int) -> np.ndarray:
        """For a 3x3 layer on ``C`` channels (columns in ``int8_trunk``'s (ki, kj, c) order), the AMX
        kernel's B tiles: (Op / 16, 3 tap rows, chunks, 16 groups of 4 inputs, 16 outputs, 4), a tap
        row's 3 C inputs in chunks of 64, zero past them (``_x86mm.c``, ``amx_rows``)."""
        taps = self._taps.get(C)
        if taps is None:
            G, nch, blocks = 3 * C // 4, -(-3 * C // 64), self.Op // 16
            taps = np.zeros((blocks, 3, nch * 16, 16, 4), np.int8)
            for ki in range(3):
                rows = self._full[ki * 3 * C : (ki + 1) * 3 * C]  # (3 C, Op): the tap row's run
                taps[:, ki, :G] = rows.reshape(G, 4, blocks, 16).transpose(2, 0, 3, 1)
            # the first built stays: band threads may build it at once, and one's kernel may be reading it
            taps = self._taps.setdefault(C, np.ascontiguousarray(taps.reshape(blocks, 3, nch, 16, 16, 4)))
        return taps


def product(a: torch.Tensor, w: Weights, bias: torch.Tensor | None = None, out: torch.Tensor | None = None
            ) -> torch.Tensor:
    """The exact int32 sums of ``a`` (n, K), integers in [0, AMAX] (int8, or float32 for float32
    products), by ``w``: (n, O), or (O, n) for ``w.first``; plus ``bias`` ((O,) int32) where given.
    ``out``: for ``w.first``, a contiguous (O, n) int32 tensor the compiled kernels write the sums into
    (a band's buffer used again: a fresh one took longer to map than its product); others ignore it."""
    _check_input(a, w)
    if w.kind in KERNELS and w.first and a.shape[0]:
        a = a.to(torch.int8).contiguous()
        n = a.shape[0]
        if out is None or out.dtype != torch.int32 or not out.is_contiguous() or out.shape != (w.O, n):
            out = torch.empty((w.O, n), dtype=torch.int32)
        b = None if bias is None else _bias(bias, w.O)
        _x86().gemm_t(w.isa, a.data_ptr(), n, w.K, w.m.ctypes.data, w.Op, out.data_ptr(), w.O,
                      0 if b is None else b.data_ptr())
        return out
    acc = _product(a, w)
    if bias is not None:
        acc += _bias(bias, w.O).reshape((-1, 1) if w.first else (-1,))
    return acc


def _product(a: torch.Tensor, w: Weights) -> torch.Tensor:
    if w.kind == "int8":
        a = a.to(torch.int8)
        return torch._int_mm(w.m, a.T) if w.first else torch._int_mm(a, w.m)
    if w.kind in KERNELS:
        a = a.to(torch.int8).contiguous()
        n = a.shape[0]
        if not n:
            return torch.empty((w.O, 0) if w.first else (0, w.O), dtype=torch.int32)
        out = torch.empty((n, w.Op), dtype=torch.int32)
        _x86().gemm(w.isa, a.data_ptr(), n, w.K, w.m.ctypes.data, w.Op, out.data_ptr())
        return out if w.Op == w.O else out[:, : w.O].contiguous()
    # float32 sums are exact only at full precision: a user's "high"/"medium" lets oneDNN use
    # bfloat16 or TF32 where the CPU has them; float64 is exact whatever is set
    full = torch.get_float32_matmul_precision() == "highest"
    dtype = w.m.dtype if full else torch.float64
    a, m = a.to(dtype), w.m.to(dtype)
    return (m @ a.T if w.first else a @ m).to(torch.int32)


def fuses(w: Weights) -> bool:
    """Whether ``activated`` takes ``w``'s product and activation in one pass (the compiled kernels)."""
    return w.kind in KERNELS and not w.first and w.Op == w.O


def activated(a: torch.Tensor, w: Weights, bias: torch.Tensor, shift: int, amax: int, out: np.ndarray) -> None:
    """``out`` (n, O) int8 = clamp((a @ w + bias) >> shift, 0, amax), a hidden layer's activation,
    without the int32 sums going out to memory (where ``fuses(w)``; the caller does it in steps
    elsewhere). ``bias``: (O,) int32."""
    _check_input(a, w)
    a = a.to(torch.int8).contiguous()
    bias = _bias(bias, w.O)
    if not (fuses(w) and out.dtype == np.int8 and out.flags.c_contiguous and out.size == a.shape[0] * w.O):
        raise ValueError("exact_mm.activated: a compiled kernel's weights and a contiguous int8 output of (n, O)")
    if not a.shape[0]:
        return
    _x86().gemm_act(w.isa, a.data_ptr(), a.shape[0], w.K, w.m.ctypes.data, w.Op, out.ctypes.data, bias.data_ptr(),
                     int(shift), int(amax))


def reads_3x3(w: Weights, channels: int) -> bool:
    """Whether ``conv3x3`` takes a 3x3 layer with weights ``w`` on a ``channels``-channel input straight
    from the input, without unfolded columns (the compiled kernels, channels a multiple of 4)."""
    return fuses(w) and channels % 4 == 0 and 9 * channels <= w.K


def conv3x3(x: np.ndarray, y0: int, y1: int, w: Weights, bias: torch.Tensor, shift: int | None = None,
            amax: int = 0, out: np.ndarray | None = None) -> torch.Tensor | None:
    """Rows ``y0`` to ``y1`` of a 3x3 layer (zero padding) on ``x`` (h, w, C) int8 in [0, AMAX], where
    ``reads_3x3``: with ``shift``, activated into ``out`` ((y1 - y0) * w, O) int8 as ``activated``;
    else the exact sums with ``bias``, ((y1 - y0) * w, O) int32."""
    h, width, C = x.shape
    if not (reads_3x3(w, C) and x.dtype == np.int8 and x.flags.c_contiguous and 0 <= y0 < y1 <= h):
        raise ValueError("exact_mm.conv3x3: a compiled kernel's weights and a contiguous int8 input with channels "
                         "a multiple of 4")
    bias = _bias(bias, w.O)
    weights = w.amx_taps(C) if w.kind == "amx" else w.m  # held while the kernel reads it
    b = weights.ctypes.data
    if shift is None:
        acc = torch.empty(((y1 - y0) * width, w.O), dtype=torch.int32)
        _x86().gemm3(w.isa, x.ctypes.data, h, width, C, y0, y1, b, w.K, w.Op, acc.data_ptr(), 0, 0, 0)
        acc += bias
        return acc
    if not (out.dtype == np.int8 and out.flags.c_contiguous and out.size == (y1 - y0) * width * w.O):
        raise ValueError("exact_mm.conv3x3: a contiguous int8 output of ((y1 - y0) w, O)")
    _x86().gemm3(w.isa, x.ctypes.data, h, width, C, y0, y1, b, w.K, w.Op, out.ctypes.data, bias.data_ptr(), int(shift),
                 int(amax))
    return None


def _check_input(a: torch.Tensor, w: Weights) -> None:
    """The compiled kernels read ``a`` as (n, K) from its address: any other shape is refused here."""
    if a.dim() != 2 or a.shape[1] != w.K:
        raise ValueError(f"exact_mm: inputs of shape (n, {w.K}) for these weights, not {tuple(a.shape)}")


def _bias(bias: torch.Tensor, n_out: int) -> torch.Tensor:
    """``bias`` as the kernels read it: ``n_out`` contiguous int32 values."""
    b = bias.to(torch.int32).reshape(-1).contiguous()
    if b.numel() != n_out:
        raise ValueError(f"exact_mm: a bias of {n_out} values, not {b.numel()}")
    return b


_X86 = None  # (the compiled kernels' module or None, the kernels this CPU runs), found once


def _x86():
    """The compiled kernels' module where it was built, else None."""
    return _x86_found()[0]


def _x86_kinds() -> list:
    """The compiled kernels this CPU runs ("avx2", "vnni", "amx"), none where the module was not built."""
    return _x86_found()[1]


def _x86_found() -> tuple:
    global _X86
    if _X86 is None:
        try:
            from . import _x86mm

            _X86 = (_x86mm, _x86mm.kinds())
        except ImportError:
            _X86 = (None, [])
    return _X86


_INT8_EXACT: bool | None = None


def _int8_exact() -> bool:
    global _INT8_EXACT
    if _INT8_EXACT is None:
        try:
            _INT8_EXACT = _exact_int8()
        except (AttributeError, RuntimeError, NotImplementedError):
            _INT8_EXACT = False
    return _INT8_EXACT


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


def _fastest() -> str:
    """The kind that runs a band of a hidden 3x3 layer fastest, as the trunk runs it (``_band``): best
    of 3 after two warm-ups each (torch's first int8 product sets up oneDNN's kernel, 10 ms where the
    band takes 0.03). Cheap first, where torch's int8 product is a scalar loop: a kind whose second
    run takes 4 times the best so far is not timed further, and int8's exactness probe runs only when
    it wins (10 ms a process on the AVX2 EPYC, where probing and timing every kind took 0.45 s)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, AMAX + 1, (4, 64, 48), dtype=torch.int8, generator=g).numpy()
    m = torch.randint(-127, 128, (448, 48), dtype=torch.int8, generator=g)
    bias = torch.randint(-(2**16), 2**16, (48,), dtype=torch.int32, generator=g)
    times = {}
    for k in ("amx", "vnni", "avx2", "float32", "int8"):  # the ones that are never slow first
        if k in KERNELS and not available(k):
            continue
        try:
            run = _band(k, x, m, bias)
            run()
            t = time.perf_counter()
            run()
            best = time.perf_counter() - t
        except (AttributeError, RuntimeError, NotImplementedError):  # no int8 product in this torch
            continue
        if times and best > 4 * min(times.values()):
            continue
        for _ in range(3):
            t = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - t)
        times[k] = best
    for k in sorted(times, key=times.get):
        if available(k):
            return k
    return "float32"


def _band(k: str, x: np.ndarray, m: torch.Tensor, bias: torch.Tensor):
    """A function that runs rows of a hidden 3x3 layer (input ``x`` (h, w, C) int8, weights ``m``
    (K >= 9 C, O) in ``int8_trunk``'s column order) with kind ``k`` as the trunk does: the compiled
    kernels in one pass from the input (``conv3x3``), the others through unfolded columns, the
    product, then the bias, shift and clamp. It returns the activations, (h w, O) int8."""
    h, width, C = x.shape
    w = Weights(m, as_kind=k)
    if reads_3x3(w, C):
        out = np.empty((h * width, w.O), np.int8)

        def direct():
            conv3x3(x, 0, h, w, bias, 7, AMAX, out)
            return torch.from_numpy(out)
        return direct
    pad = np.zeros((h + 2, width + 2, C), np.int8)
    pad[1:-1, 1:-1] = x
    cols = np.zeros((h, width, w.K), np.float32 if k == "float32" else np.int8)

    def run():
        for t in range(9):  # tap t's channels from the input shifted by (ki - 1, kj - 1)
            cols[:, :, t * C : (t + 1) * C] = pad[t // 3 : t // 3 + h, t % 3 : t % 3 + width]
        acc = product(torch.from_numpy(cols.reshape(h * width, -1)), w)
        return torch.clamp((acc + bias) >> 7, 0, AMAX).to(torch.int8)
    return run
