"""The predictor's trunk on the CPU as exact int8 matrix products: the same integers as the float convs.

Why: the trunk's 3x3 convolutions are most of the decoder's time, and float32 convolutions
already run at this CPU's peak. Its activations are 7-bit and its weights 8-bit (``intnet``),
so each layer is an int8 x int8 matrix product with int32 sums (``exact_mm``: ``torch._int_mm``
where the CPU has VNNI, measured 2.6 ms against 9.4 ms for the first layer of a 512 x 512 slice's
step; float32 GEMMs on the same matrices elsewhere, exact for these sums and 20x faster than
torch's int8 loop on an AVX2-only CPU). Integer sums are exact in any order, so every machine,
thread count and batch gets the integers the float path computes (tests compare the two on random
and real weights, with both kinds of product).

Two more savings come for free with exact integers: the head computes only the outputs the step
reads (the neighbour weights of the sub-images decoded so far, not all of them), and the context
stem reads only the decoded sub-images (the others are zero and add nothing).

Layout: pixels first (channels last). A 3x3 layer's input matrix has one row per pixel holding its
nine neighbours' channels (``_unfold3``), and the product ``cols @ W`` gives the next layer's
activations pixels first again. oneDNN runs that form 2-2.6x faster than the channel-first
``W @ cols`` on this trunk's shapes (48 outputs, 48 to 576 inputs, 16 k pixels a step: 3.6 against
7.3 ms a step, measured on an AVX-512 VNNI Xeon), and the unfold is cheaper too (contiguous runs of
three pixels' channels). The head alone is taken as ``W @ cols.T``, so its raw maps come out
channels first, the layout ``head_params`` reads, without a transpose.

Bands: the hidden 3x3 layers and the first layer go by bands of rows (``_Layer.hidden``), so a
band's input matrix (about 1 MB) stays in the core's cache instead of a step's 7 MB going out to
memory and back: 191 -> 151 ms for steps 1-15 of a 512 x 512 slice (``benchmarks/cpu_speed.md``,
session 20). The head's product goes by bands too when the codec asks for (mu, s)
(``Int8Step.head_bands``): each band's raw sums go straight into the fused head kernel
(``head_kernel.banded_params``) while they are in cache.

The context stem (9-bit inputs, a float conv) is carried through a slice's steps
(``ContextSums``): each step convolves only the sub-images decoded since the last one.
"""

from __future__ import annotations

import os
import threading

import numpy as np
import torch

from . import band_threads, exact_mm
from .intnet import AMAX

_K_ALIGN = 64  # inner dimension padded with zero columns: oneDNN's int8 kernels like multiples of 64


def supported() -> bool:
    """True when numba is there for the layout kernels around the products (``exact_mm`` takes the
    products themselves, exact on every CPU). ``LVPNET_INT8=0`` turns the int8 trunk off."""
    global _SUPPORTED
    if _SUPPORTED is None:
        if os.environ.get("LVPNET_INT8", "").strip() == "0":
            _SUPPORTED = False
            return False
        try:
            import numba  # noqa: F401

            _SUPPORTED = True
        except ImportError:
            _SUPPORTED = False
    return _SUPPORTED


_SUPPORTED: bool | None = None


def _fits(layer: dict) -> bool:
    w = layer["weight"]
    return (int(w.abs().max()) <= 127 and int(layer["in_max"]) <= AMAX and w.shape[-1] in (1, 3)
            and int(layer["pad"]) == w.shape[-1] // 2)


class _Layer:
    """One exported layer as an int8 matrix and an int32 bias. Columns in (ki, kj, c) order within
    each input part (``_unfold3``'s), zero-padded to ``_K_ALIGN``; ``first``: the head's form,
    (O, K) and sums channels first, else (K, O) and sums pixels first."""

    def __init__(self, spec: dict, rows: torch.Tensor | None = None, first: bool = False):
        w = spec["weight"].to(torch.int64)
        b = spec["bias"].to(torch.int64)
        if rows is not None:
            w, b = w[rows], b[rows]
        n_out, C, k, _ = w.shape
        self.k, self.C, self.O, self.first = k, C, n_out, first
        self.Kp = -(-k * k * C // _K_ALIGN) * _K_ALIGN if k > 1 else C
        self.w = w.to(torch.int8)  # kept to lay the matrix out for each input split (``mat``)
        self._mats: dict = {}  # the parts' channel counts -> the matrix in their column order
        self.bias = b.to(torch.int32)[:, None] if first else b.to(torch.int32)
        self.shift = int(spec["shift"])

    def mat(self, channels: tuple, as_kind: str | None = None) -> exact_mm.Weights:
        """The weights as ``exact_mm.product`` takes them (this process's kind, or ``as_kind``),
        columns in the order of ``channels``' parts."""
        key = (as_kind or exact_mm.kind(), channels)
        m = self._mats.get(key)
        if m is None:
            cols, at = [], 0
            for c in channels:  # each part's taps then its channels, as ``_unfold3`` writes them
                cols.append(self.w[:, at : at + c].permute(0, 2, 3, 1).reshape(self.O, -1))
                at += c
            full = torch.zeros((self.O, self.Kp), dtype=torch.int8)
            full[:, : self.k * self.k * self.C] = torch.cat(cols, 1)
            m = exact_mm.Weights(full.T, self.first, key[0])
            self._mats[key] = m
        return m

    def acc(self, parts: list, keep: bool = True, as_kind: str | None = None) -> torch.Tensor:
        """Pixels-first inputs (h, w, C_i) int8 (integers in [0, AMAX]), together the layer's C
        channels -> the exact sums, bias included: (h * w, O) int32, or (O, h * w) for ``first``.
        ``keep``: the unfold buffer kept for the next step (``_columns``); False for a product
        taken once a slice. ``as_kind``: another kind of product than the process's."""
        channels = tuple(x.shape[-1] for x in parts)
        if self.k == 1:
            (x,) = parts
            cols = torch.from_numpy(x.reshape(-1, x.shape[-1]))
        else:
            h, w = parts[0].shape[:2]
            dtype = exact_mm.np_dtype()
            out = (_columns(self.Kp, channels, h, w) if keep and self.Kp * h * w * dtype().itemsize <= _KEEP
                   else np.zeros((h * w, self.Kp), dtype))
            _unfold_parts(parts, out, 0, h)
            cols = torch.from_numpy(out)
        m = self.mat(channels, as_kind)
        acc = exact_mm.product(cols, m)
        acc += self.bias
        return acc

    def hidden(self, parts: list, add=None, as_kind: str | None = None) -> np.ndarray:
        """A hidden layer: clamp(floor(sums / 2**shift), 0, AMAX) as (h, w, O) int8. A 3x3 layer goes by bands of rows (``_band_rows``): each band's input
        columns, product and sums stay in the core's cache instead of a whole plane's (a 128 x 128
        step's columns are 7 MB), which was the decode's memory traffic, the part that slows down
        when the other cores work too. ``add(acc, y0, y1)``: adds more sums to a band's (rows y0 to
        y1, (rows * w, O) int32) before the activation. ``as_kind``: another kind of product than the
        process's. Every pixel's sums are the same integers either way."""
        h, w = parts[0].shape[:2]
        channels = tuple(x.shape[-1] for x in parts)
        m = self.mat(channels, as_kind)
        fused = add is None and exact_mm.fuses(m)  # product, bias and activation in one pass (the compiled kernels)
        if self.k == 1 and not fused and band_threads.threads(h * w) == 1:  # the plane's one product
            acc = self.acc(parts, as_kind=as_kind)
            if add is not None:
                add(acc, 0, h)
            return self._activate(acc, h, w)
        rows = _band_rows(self.Kp * exact_mm.np_dtype()().itemsize, w, h)
        out = np.empty((h, w, self.O), np.int8)
        activate = _kernels()[1]
        # a 3x3 layer on one input part read straight from it (``exact_mm.conv3x3``): no unfolded columns
        direct = self.k == 3 and len(parts) == 1 and exact_mm.reads_3x3(m, channels[0])

        def worker():  # one band at a time, in this thread's buffer (``band_threads``: maybe several threads)
            cols = _columns(self.Kp, channels, rows, w) if self.k > 1 and not direct else None

            def band(y0):
                y1 = min(h, y0 + rows)
                target = out[y0:y1].reshape(-1, self.O)
                if direct and fused:
                    exact_mm.conv3x3(parts[0], y0, y1, m, self.bias, self.shift, AMAX, target)
                    return
                if direct:
                    acc = exact_mm.conv3x3(parts[0], y0, y1, m, self.bias)
                else:
                    if cols is None:  # 1x1: the band's pixels are its input rows
                        (x,) = parts
                        a = torch.from_numpy(x[y0:y1].reshape(-1, x.shape[-1]))
                    else:
                        _unfold_parts(parts, cols, y0, y1)
                        a = torch.from_numpy(cols[: (y1 - y0) * w])
                    if fused:
                        exact_mm.activated(a, m, self.bias, self.shift, AMAX, target)
                        return
                    acc = exact_mm.product(a, m)
                    acc += self.bias
                if add is not None:
                    add(acc, y0, y1)
                activate(acc.numpy().reshape(-1), target.reshape(-1), self.shift, AMAX)
            return band

        band_threads.run(worker, range(0, h, rows), h * w)
        return out

    def _activate(self, acc: torch.Tensor, h: int, w: int) -> np.ndarray:
        """The exact sums (h * w, O) int32 -> clamp(floor(sums / 2**shift), 0, AMAX) as (h, w, O) int8."""
        out = np.empty((h, w, self.O), np.int8)
        _kernels()[1](acc.numpy().reshape(-1), out.reshape(-1), self.shift, AMAX)
        return out


def _signed_kind(feats: torch.Tensor) -> str | None:
    """The kind of product for a layer reading ``feats``: the compiled kernels read their inputs as
    unsigned bytes, and features are a relu's, in [0, AMAX], but a model whose are not gets the float32
    product (exact for signed ones too); None: the process's kind."""
    return "float32" if exact_mm.kind() in exact_mm.KERNELS and bool((feats < 0).any()) else None


def pixels_first(x: torch.Tensor) -> np.ndarray:
    """(C, h, w) integer values in [0, AMAX] (any dtype) -> (h, w, C) int8, the trunk's layout."""
    return x.permute(1, 2, 0).to(torch.int8).contiguous().numpy()


class FeatsProduct:
    """The first layer's product with the latent features (its bias included): the same for every
    step of a slice, since the steps share the trunk and read the same features, so it is computed
    once per slice (a quarter of the first layer's work for each of the other steps). Keyed by the
    features tensor itself (held until ``clear``); integer sums, so splitting the product is exact."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        self.weight = weight
        self.layer = _Layer({"weight": weight, "bias": bias, "shift": 0})
        self._local = threading.local()  # an engine may walk slices in two threads at once

    def acc(self, feats: torch.Tensor) -> torch.Tensor:
        mine = self._local.__dict__
        if mine.get("feats") is not feats:
            mine["acc"] = self.layer.acc([pixels_first(feats[0])], keep=False, as_kind=_signed_kind(feats))
            mine["feats"] = feats
        return mine["acc"]

    def clear(self) -> None:
        self._local.__dict__.clear()


class ContextSums:
    """The context conv's exact sums (bias included, before its shift), kept through a slice's steps.
    Step k's context is step k-1's plus the sub-images decoded in between, and the conv is linear, so
    a step convolves only the sub-images that are new to it (one channel of up to 15 at the last
    steps). Sub-images are recognised by identity (the tensor objects and torch's in-place version
    counter, ``keys``), never by value; any other call computes every channel. Integer sums below
    the layer's float32 bound in any grouping, so the sums are the full conv's exactly."""

    def __init__(self, spec: dict):
        self.weight = spec["weight"].to(torch.float32)  # (O, every context channel, 3, 3)
        self.bias = spec["bias"].to(torch.float32)
        self.shift, self.pad = int(spec["shift"]), int(spec["pad"])
        self._local = threading.local()  # an engine may walk slices in two threads at once

    def __call__(self, ctx_u, n: int, keys: tuple | None) -> np.ndarray:
        """The layer's output on the first ``n >= 1`` channels of ``ctx_u`` (1, >= n, h, w): a tensor, or
        anything with its ``shape`` that gives ``ctx_u[:, a:b]`` as one (``IntegerDecoder``'s
        ``_ContextInput``), named by ``keys`` (``(B, (tensor, version), ...)``, or None: keep nothing);
        as the trunk's input part: (h, w, O) int8 in [0, AMAX]."""
        mine = self._local.__dict__
        have, acc = mine.get("keys"), mine.get("acc")
        start = 0
        if keys is not None and have is not None and acc.shape[-2:] == ctx_u.shape[-2:] and keys_extend(have, keys):
            start = len(have) - 1
        if start == 0:
            h, w = ctx_u.shape[-2:]
            acc = self.bias.view(1, -1, 1, 1).expand(1, -1, h, w).contiguous()
        if start < n:
            self._add(acc, ctx_u[:, start:n].to(torch.float32), self.weight[:, start:n])
        if keys is not None:
            mine["keys"], mine["acc"] = keys, acc
        _, n_out, h, w = acc.shape
        out = np.empty((h, w, n_out), np.int8)
        _kernels()[2](acc[0].reshape(n_out, -1).numpy(), out.reshape(-1, n_out), 2.0**-self.shift, float(AMAX))
        return out

    def _add(self, acc: torch.Tensor, x: torch.Tensor, weight: torch.Tensor) -> None:
        """``acc += conv(x, weight)`` (zero padding), by bands of rows where the plane is large: a
        whole plane's sums (33 MB for a 568 x 462 sub-image, a 2272 x 1848 radiograph's) left the
        cache, and one conv took 50 ms against 8 ms by bands of about ``_BAND_BYTES`` of sums;
        below ``_CONV_BANDS_FROM`` the plane's one conv is the faster (128 x 128: 0.3 against 0.5 ms).
        Each band reads its rows and one more above and below (zero outside the plane): the same
        integer sums as the whole plane's conv."""
        conv = torch.nn.functional.conv2d
        _, n_out, h, w = acc.shape
        if self.pad != 1 or 4 * n_out * h * w <= _CONV_BANDS_FROM:
            acc.add_(conv(x, weight, padding=self.pad))
            return
        rows = max(1, _BAND_BYTES // (4 * n_out * w))

        def band(y0):
            y1 = min(h, y0 + rows)
            lo, hi = max(0, y0 - 1), min(h, y1 + 1)
            part = torch.nn.functional.pad(x[:, :, lo:hi], (0, 0, lo - (y0 - 1), (y1 + 1) - hi))
            acc[:, :, y0:y1].add_(conv(part, weight, padding=(0, 1)))

        band_threads.run(lambda: band, range(0, h, rows), h * w)

    def clear(self) -> None:
        self._local.__dict__.clear()


def keys_extend(have: tuple, keys: tuple) -> bool:
    """Whether ``keys`` names the sub-images ``have`` names, in order, and possibly more, at the same ``B``."""
    if have[0] != keys[0] or len(have) > len(keys):
        return False
    return all(a[0] is b[0] and a[1] == b[1] for a, b in zip(have[1:], keys[1:]))


_BAND_BYTES = 1 << 20  # a band's input columns: about half a core's L2 cache
_CONV_BANDS_FROM = 4 << 20  # bytes of a plane's context sums from which ``ContextSums`` goes by bands


def _band_rows(K: int, w: int, h: int) -> int:
    """Rows per band of a 3x3 layer whose unfolded row takes ``K`` bytes a pixel (``hidden``)."""
    return max(1, min(h, _BAND_BYTES // max(1, K * w)))


def _head_rows(n_out: int, w: int, h: int) -> int:
    """Rows per band of the head's ``n_out`` int32 sums a pixel (``Int8Step.head_bands``)."""
    return max(1, min(h, _BAND_BYTES // max(1, 4 * n_out * w)))


_KEPT_LAYOUTS = 16  # column buffers a thread keeps (a plane's steps use a few layouts)
_LOCAL = threading.local()  # per thread (a viewer decodes in the background): the unfold buffers
_KEEP = 32 << 20  # bytes: buffers up to this are kept between steps (every layer of a 1024 x 1024 plane;
# a larger plane's zeroing is small beside its products, and its buffers would hold 60 bytes a pixel)


def _columns(K: int, channels: tuple, h: int, w: int) -> np.ndarray:
    """A zeroed (h * w, K) buffer (``exact_mm.np_dtype``) for a 3x3 layer's unfolded input (``h``: a plane's rows, or a
    band's, ``_Layer.hidden``), kept for the next call of the same layout in this thread:
    ``_unfold3`` writes the same entries on every call (the left and right padding's zeros and the
    columns past the channels stay as they are; the rows above and below the plane it writes as
    zeros), so it is zeroed once, not once per step or band. Every step's layers share them;
    ``release_columns`` drops them after a slice."""
    bufs = _LOCAL.__dict__.setdefault("columns", {})
    dtype = exact_mm.np_dtype()
    key = (K, channels, h, w, dtype)
    if key not in bufs:
        if len(bufs) >= _KEPT_LAYOUTS:  # a ``band_threads`` helper keeps its own and never releases them
            bufs.clear()
        bufs[key] = np.zeros((h * w, K), dtype)
    return bufs[key]


def release_columns() -> None:
    _LOCAL.__dict__.pop("columns", None)
    _LOCAL.__dict__.pop("head", None)


def _head_out(outputs: int, n: int) -> torch.Tensor:
    """This thread's (outputs, n) int32 buffer for a band of head sums (``HeadBands.raw``), one allocation grown
    as needed: a band's fresh megabyte took about as long to map as the compiled kernels' product. The
    caller uses a band before it asks for the next, in the same thread (``head_kernel.banded_params``)."""
    buf = _LOCAL.__dict__.get("head")
    if buf is None or buf.numel() < outputs * n:
        buf = _LOCAL.__dict__["head"] = torch.empty(outputs * n, dtype=torch.int32)
    return buf[: outputs * n].view(outputs, n)


def _unfold_parts(parts: list, out: np.ndarray, y0: int, y1: int) -> None:
    """Rows ``y0`` to ``y1`` of the input matrix of a 3x3 layer whose input is ``parts`` (h, w, C_i),
    each part's nine taps of channels after the one before (``_Layer.mat``'s column order)."""
    unfold, col = _kernels()[0], 0
    for x in parts:
        unfold(x, out, col, y0, y1)
        col += 9 * x.shape[-1]


def _unfold3(x, out, col0, y0, y1):
    """Rows ``y0 <= y < y1`` of a 3x3 layer's input matrix: pixel (y, x)'s row ``(y - y0) w + x``
    of ``out`` (at least (y1 - y0) w rows, K columns; int8 or float32), columns ``col0 + (3 ki + kj) C + c``:
    channel ``c`` of ``x`` (h, w, C) int8 at (y + ki - 1, x + kj - 1), zero outside (a 3x3 conv's
    zero padding). A tap row above or below the plane is written as zeros, so a band buffer is
    reused from band to band without zeroing; the taps left and right of the plane are never
    written (the same entries in every band: zero from the buffer's start). For each tap row the
    three taps' channels are one contiguous run in both arrays, copied through flat views, which
    numba vectorises."""
    h, w, C = x.shape
    K = out.shape[1]
    src_all = x.reshape(-1)
    dst_all = out.reshape(-1)
    for y in range(y0, y1):
        for ki in range(3):
            sy = y + ki - 1
            inside = 0 <= sy < h
            for xx in range(w):
                lo = 1 if xx == 0 else 0  # the taps kj in lo..hi-1 fall inside the plane
                hi = 2 if xx == w - 1 else 3
                d = ((y - y0) * w + xx) * K + col0 + (3 * ki + lo) * C
                n = (hi - lo) * C
                dst = dst_all[d : d + n]
                if not inside:
                    dst[:] = 0
                    continue
                s = (sy * w + xx + lo - 1) * C
                src = src_all[s : s + n]
                for i in range(n):
                    dst[i] = src[i]


def _activate(acc, out, shift, amax):
    """``out = clamp(acc >> shift, 0, amax)`` (int32 -> int8, flat): one pass where torch took three."""
    for i in range(acc.shape[0]):
        out[i] = min(max(acc[i] >> shift, 0), amax)


def _activate_float(acc, out, scale, amax):
    """``out[p, o] = clamp(floor(acc[o, p] * scale), 0, amax)``: a float conv's exact sums (O, n),
    channels first, to the trunk's int8 pixels-first layout (n, O). A channel's row is activated
    in one vectorised pass, then scattered into its column."""
    n_out, n = acc.shape
    row = np.empty(n, np.int8)
    for o in range(n_out):
        a = acc[o]
        for p in range(n):
            row[p] = np.int8(min(max(np.floor(a[p] * scale), 0.0), amax))
        for p in range(n):
            out[p, o] = row[p]


_KERNELS = None
_MASK_WIDTHS = 16  # plane widths whose mask sums a step keeps (a volume has one or two)


def _kernels():
    global _KERNELS
    if _KERNELS is None:
        from .jit import BUILD_LOCK, njit

        with BUILD_LOCK:
            if _KERNELS is None:
                jit = njit()
                _KERNELS = (jit(_unfold3), jit(_activate), jit(_activate_float))
    return _KERNELS


class Int8Step:
    """Step ``k``'s trunk and head (``predictor.step_spec``) as int8 products; ``head_rows`` the head
    outputs the step reads. ``Int8Step.build`` returns None where the weights do not fit int8."""

    def __init__(self, spec: dict, head_rows: torch.Tensor, n_ctx: int, shared: FeatsProduct | None = None,
                 ctx_shared: ContextSums | None = None):
        self.head_rows = head_rows
        self.n_ctx = n_ctx
        self.ctx_sums = None
        self.layers = [_Layer(layer) for layer in spec["layers"]]
        self.head = _Layer(spec["head"], head_rows, first=True)
        self.feats = None
        if "ctx" in spec:  # 9-bit inputs: stays a float conv, on the decoded sub-images only
            same = ctx_shared is not None and torch.equal(ctx_shared.weight, spec["ctx"]["weight"].to(torch.float32))
            self.ctx_sums = ctx_shared if same else ContextSums(spec["ctx"])
            self._split_first(spec["layers"][0], spec["ctx"]["weight"].shape, shared)

    def _split_first(self, first: dict, ctx_shape, shared: FeatsProduct | None) -> None:
        """The first layer's input is (features, context conv, availability masks): its product
        is taken in three parts, the features' once per slice (``FeatsProduct``, shared by the
        steps), the masks' a constant map per step (``_add_mask_sums``)."""
        w = first["weight"]
        n_out, n_mask = int(ctx_shape[0]), int(ctx_shape[1])
        cu = w.shape[1] - n_out - n_mask
        if cu <= 0 or w.shape[-1] != 3:
            return
        if shared is None or not torch.equal(shared.weight, w[:, :cu]):
            shared = FeatsProduct(w[:, :cu], first["bias"])
        self.feats = shared
        zero = torch.zeros(w.shape[0], dtype=first["bias"].dtype)
        # the context part's product, activated with the first layer's shift once the other parts are added
        self.first_ctx = _Layer({"weight": w[:, cu : cu + n_out], "bias": zero, "shift": first["shift"]})
        # the masks: channel c is AMAX where sub-image c is decoded (the first n_ctx), 0 elsewhere;
        # their sums per plane width are kept (``_add_mask_sums``)
        self.mask_taps = (w[:, cu + n_out : cu + n_out + self.n_ctx].to(torch.int64).sum(1) * AMAX).numpy()
        self._masks: dict = {}

    def _add_mask_sums(self, acc: torch.Tensor, h: int, w: int, y0: int = 0, y1: int | None = None) -> None:
        """Adds the masks' exact sums to ``acc`` ((y1 - y0) * w, O) int32, rows ``y0`` to ``y1`` of
        an (h, w) plane (all of it by default): the same in every row but the first and the last,
        whose taps above or below fall in the 3x3 zero padding."""
        y1 = h if y1 is None else y1
        kept = self._masks.get(w)  # read once: another thread may clear the cache
        if kept is None:  # per tap row ki, each column's sum over the taps kj inside the plane
            cols = np.ones((3, w), np.int64)
            cols[0, 0] = cols[2, w - 1] = 0  # tap column kj reads column x + kj - 1
            part = torch.from_numpy(np.ascontiguousarray(np.einsum("oab,bx->axo", self.mask_taps, cols)
                                                         .astype(np.int32)))  # (3, w, O)
            kept = (part, part.sum(0, dtype=torch.int32))
            if len(self._masks) >= _MASK_WIDTHS:  # bounded in a process that decodes many widths
                self._masks.clear()
            self._masks[w] = kept
        part, total = kept
        a = acc.view(y1 - y0, w, acc.shape[1])
        a += total  # tap row ki reads row y + ki - 1: all three inside the plane ...
        if y0 == 0:
            a[0] -= part[0]  # ... but above the first row
        if y1 == h:
            a[-1] -= part[2]  # ... and below the last

    @classmethod
    def build(cls, spec: dict, head_rows: torch.Tensor, n_ctx: int, shared: FeatsProduct | None = None,
              ctx_shared: ContextSums | None = None) -> Int8Step | None:
        if not supported():
            return None
        if not all(_fits(layer) for layer in spec["layers"]) or not _fits(spec["head"]):
            return None
        if not all(layer["relu"] and not layer["raw"] for layer in spec["layers"]) or not spec["head"]["raw"]:
            return None
        return cls(spec, head_rows, n_ctx, shared, ctx_shared)

    @torch.no_grad()
    def __call__(self, feats: torch.Tensor, ctx_u: torch.Tensor | None, avail: torch.Tensor | None,
                 keys: tuple | None = None) -> torch.Tensor:
        """Like ``predictor.trunk_int`` for one slice: raw head integers (1, len(head_rows), h, w) int32.
        ``keys``: names the decoded sub-images in ``ctx_u`` (``ContextSums``)."""
        h, w = feats.shape[-2:]
        # int32, as the product gives them: ``head_params`` reads integers of either type (a float32
        # copy cost as much as the fused head itself on a large plane)
        return self.head.acc(self.trunk(feats, ctx_u, avail, keys)).view(1, -1, h, w)

    def head_bands(self, hidden: list) -> HeadBands:
        """The head's raw integers by bands of about ``_BAND_BYTES`` of sums, from the last hidden
        layer ``hidden`` (``trunk``), for ``head_kernel.banded_params``."""
        return HeadBands(self.head, hidden[0])

    @torch.no_grad()
    def trunk(self, feats: torch.Tensor, ctx_u: torch.Tensor | None, avail: torch.Tensor | None,
              keys: tuple | None = None) -> list:
        """The hidden layers: the last one's activations as the head's input part, [(h, w, C) int8]."""
        h, w = feats.shape[-2:]
        layers = self.layers
        if self.ctx_sums is not None:
            # sub-images not decoded yet are zero here (``IntegerDecoder._raw``): cutting them adds nothing
            # (step 0 has none: its one zero channel gives the bias)
            c = self.ctx_sums(ctx_u, max(1, self.n_ctx), keys if self.n_ctx else None)
            if self.feats is not None:  # the first layer in its three parts (``_split_first``)
                fa = self.feats.acc(feats)

                def add(acc, y0, y1):  # the features' sums (once a slice) and the masks'
                    acc += fa[y0 * w : y1 * w]
                    self._add_mask_sums(acc, h, w, y0, y1)

                parts = [self.first_ctx.hidden([c], add)]
                layers = layers[1:]
            else:
                m = np.broadcast_to((avail[0].to(torch.int8) * AMAX).numpy(), (h, w, avail.shape[1]))
                parts = [pixels_first(feats[0]), c, np.ascontiguousarray(m)]
        else:
            parts = [pixels_first(feats[0])]
        if layers is self.layers:  # the first layer reads the features (as ``FeatsProduct`` does)
            parts = [layers[0].hidden(parts, as_kind=_signed_kind(feats))]
            layers = layers[1:]
        for layer in layers:
            parts = [layer.hidden(parts)]
        return parts


class HeadBands:
    """A step's head product by bands of rows: ``raw(y0)`` is band ``y0``'s sums, (outputs, rows, w)
    int32, bias included, valid until the same thread's next band (``_head_out``: so no iterating
    that would hand out every band at once); ``starts`` the bands' first rows. The caller uses each band
    while its sums are in the core's cache (``head_kernel.banded_params``), in one thread or several
    (``band_threads``)."""

    def __init__(self, head: _Layer, x: np.ndarray):
        self.x = x
        self.h, self.w, c = x.shape
        self.m = head.mat((c,))
        self.bias = head.bias.reshape(-1).contiguous()
        self.rows = _head_rows(head.O, self.w, self.h)
        self.starts = range(0, self.h, self.rows)

    @torch.no_grad()
    def raw(self, y0: int) -> torch.Tensor:
        y1 = min(self.h, y0 + self.rows)
        n = (y1 - y0) * self.w
        acc = exact_mm.product(torch.from_numpy(self.x[y0:y1].reshape(n, -1)), self.m, self.bias,
                               _head_out(self.m.O, n))
        return acc.view(-1, y1 - y0, self.w)
