"""Slice preparation shared by encoder, decoder and training (numpy and torch).

* ``slice_params``: per slice ``vmin`` (subtracted), range ``R = max - min`` and
  bit depth ``B = max(1, bit_length(R))``. The codec stores ``vmin`` and ``R``
  (``B`` follows from ``R``). The network works in units normalised by ``2**B``
  so one model serves 1 to 16-bit data.
* Padding to a multiple of the latent stride: each polyphase sub-image
  (``v[di::f, dj::f]``) is padded on its own by edge replication. So the padded
  part of sub-image ``k`` is a function of sub-image ``k``'s real pixels only and
  the decoder can rebuild it as soon as sub-image ``k`` is decoded. Padded pixels
  are never coded.
* Sub-image order for f = 2: (0,0), (1,1), (0,1), (1,0) (diagonal first, so the
  last two see four direct neighbours). f = 4 walks coarse to fine, a 2x2 split
  applied twice: (0,0), (2,2), (0,2), (2,0), then the odd diagonal phases, then
  the rest; so only 1/16 of the pixels are predicted from the latent alone.
* RGB: reversible colour transform to three grey planes G, R-G, B-G (each coded
  as a grey slice with its own minimum); inverse is exact.
"""

from __future__ import annotations

import sys

import numpy as np

from .jit import compiled

ORDERS = {
    1: [(0, 0)],
    2: [(0, 0), (1, 1), (0, 1), (1, 0)],
    4: [(0, 0), (2, 2), (0, 2), (2, 0), (1, 1), (1, 3), (3, 1), (3, 3),
        (0, 1), (0, 3), (2, 1), (2, 3), (1, 0), (1, 2), (3, 0), (3, 2)],
}  # fmt: skip
CTX_BITS = 12  # default: context values enter the network as floor(v * 2**12 / 2**B) in [0, 4095]


def slice_params(v: np.ndarray) -> tuple[int, int, int]:
    """-> (vmin, R, B) of an integer slice."""
    vmin = int(v.min())
    R = int(v.max()) - vmin
    return vmin, R, bit_depth(R)


def to_grid(plane: np.ndarray) -> tuple[int, int, np.ndarray]:
    """(vmin, step, k) with ``plane == vmin + step * k``: what the codec codes (``value_step``)."""
    plane = np.asarray(plane).astype(np.int64)
    if plane.size == 0:
        return 0, 1, plane
    vmin, step = int(plane.min()), value_step(plane)
    return vmin, step, (plane - vmin) // step


_DENSE_SPAN = 1 << 17  # ``used_values`` counts in an array up to this span (or twice the size)


def used_values(a: np.ndarray, counts: bool = False):
    """``np.unique(a)`` (with ``counts``: ``np.unique(a, return_counts=True)``) of integers: by a
    histogram where the value span is small, as for every plane the codec takes (16-bit samples),
    which is several times faster than ``np.unique``'s sort on a 512 x 512 slice."""
    a = np.asarray(a).reshape(-1)
    if a.size == 0 or a.dtype.kind not in "iu":
        return np.unique(a, return_counts=True) if counts else np.unique(a)
    lo, hi = int(a.min()), int(a.max())
    if hi - lo > max(_DENSE_SPAN, 2 * a.size):
        return np.unique(a, return_counts=True) if counts else np.unique(a)
    n = np.bincount((a.astype(np.int64) - lo) if lo else a.astype(np.int64, copy=False), minlength=hi - lo + 1)
    u = np.flatnonzero(n)
    vals = (u + lo).astype(a.dtype)
    return (vals, n[u]) if counts else vals


def value_step(plane: np.ndarray) -> int:
    """The largest ``g`` with every value of the plane equal to ``min + g * k`` (1 when constant or
    when none): data scaled by a constant (12-bit values stored times 16, quantised ultrasound)
    is coded as ``k`` (codec bitstream version 2), so no bits go to values that cannot occur.
    At most 65535 (a u16 in the chunk)."""
    d = used_values(plane)
    g = int(np.gcd.reduce(np.diff(d).astype(np.int64))) if d.size > 1 else 1
    return g if 1 <= g <= 0xFFFF else 1


GAP_MIN = 64  # runs of more unused values than this may be taken out before coding (bitstream version 3)
GAP_SIDE = 1 / 64  # ... when at least this fraction of the pixels lies on either side of the run
GAP_MAX = 8  # ... the longest 8 at most: each costs 8 bytes in the chunk, and a sparse histogram
# (a small slice spread over 16 bits) has hundreds (measured: 37 x 45 random 16-bit values,
# 3.5 kB of streams plus 1.9 kB of gap list)


GAP_RUN_BITS = 64  # what one listed run costs in the chunk: a pair of u32
GAP_ALL_GAIN = 0.01  # every run is taken out when that saves at least this fraction of the estimate


def collapse_gaps(k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``long_gaps`` (below), or every run of unused values taken out when the plane's histogram is
    sparse throughout: the encoder's choice, the decoder only reads the list.

    Why: a radiograph mapped through a display LUT uses only some of its levels (a train CR hip:
    519 of 894, a train DX chest: 822 of 4096, with gaps of 1 to 8 between used levels). The model
    codes ``v - mu`` in grey levels, so its bins spread over levels that never occur (about
    ``log2(R / used)`` bits per pixel), and the adapted tables cannot learn it (they count bins
    relative to ``mu``); JPEG-XL compacts such a channel to the used levels. Coding the rank of
    the value instead: CR hip 1.101x -> 0.968x JPEG-XL effort 7 (real bytes, whole image,
    ``benchmarks/bits_breakdown.md``). The choice compares ``med_bits`` (a LOCO-I residual
    entropy, a few array passes) plus ``GAP_RUN_BITS`` per listed run for both, so small slices
    with a few scattered values (the golden inputs, a 37 x 45 random slice) keep the long runs."""
    packed, gaps = long_gaps(k)
    k = np.asarray(k, dtype=np.int64)
    if k.ndim != 2 or min(k.shape) < 2:
        return packed, gaps
    every, runs = _take_out(k, 0)
    if len(runs) <= len(gaps) or len(runs) > 0xFFFF:  # the chunk's count is 16 bits from version 7
        return packed, gaps
    now = med_bits(packed) + GAP_RUN_BITS * len(gaps)
    alt = med_bits(every) + GAP_RUN_BITS * len(runs)
    return (every, runs) if alt < (1.0 - GAP_ALL_GAIN) * now else (packed, gaps)


def _take_out(k: np.ndarray, longer_than: int) -> tuple[np.ndarray, np.ndarray]:
    """Every run of more than ``longer_than`` unused values taken out (``collapse_gaps``'s layout)."""
    u = used_values(k)
    d = np.diff(u)
    big = np.nonzero(d - 1 > longer_than)[0]
    if big.size == 0:
        return k, np.zeros((0, 2), np.int64)
    removed = d[big] - 1
    before = np.concatenate([[0], np.cumsum(removed)])
    packed = k - _below(u, big, before, k)
    return packed, np.stack([u[big] - before[:-1], removed], axis=1)


def _below(u: np.ndarray, big: np.ndarray, before: np.ndarray, k: np.ndarray) -> np.ndarray:
    """``before[searchsorted(u[big], k)]``, what the runs below each value of ``k`` take out: by a
    table over the used values ``u`` (every value of ``k`` is one of them), one gather instead of a
    binary search per pixel (3x faster on a 512 x 512 slice)."""
    if u.size == 0 or u[-1] - u[0] > max(_DENSE_SPAN, 2 * k.size):
        return before[np.searchsorted(u[big], k, side="left")]
    at = np.searchsorted(u[big], np.arange(u[0], u[-1] + 1), side="left")
    return before[at][k - u[0]]


def med_predict(left: np.ndarray, above: np.ndarray, corner: np.ndarray) -> np.ndarray:
    """LOCO-I's median edge detector: each pixel's prediction from its left, above and above-left
    neighbours (arrays of one shape)."""
    lo, hi = np.minimum(left, above), np.maximum(left, above)
    return np.where(corner >= hi, lo, np.where(corner <= lo, hi, left + above - corner))


def med_of(p: np.ndarray) -> np.ndarray:
    """``med_predict(p[1:, :-1], p[:-1, 1:], p[:-1, :-1])``: the prediction of every pixel of a 2-D
    integer plane ``p`` but its first row and column, in one numba pass over ``p`` (a 512 x 512
    plane: 0.05-0.15 ms where numpy's passes over the three shifted views took 1.8-4.2 ms, a few
    times a slice), else numpy's (the same values)."""
    p = np.asarray(p)
    kernel = compiled(_med)
    if not kernel or p.ndim != 2 or p.dtype.kind != "i" or min(p.shape) < 1:
        return med_predict(p[1:, :-1], p[:-1, 1:], p[:-1, :-1])
    p = np.ascontiguousarray(p)
    out = np.empty((p.shape[0] - 1, p.shape[1] - 1), p.dtype)
    kernel(p, out)
    return out


def _med(p, out):
    """``med_of``'s pass (numba): each row's predictions from it and the row above."""
    h, w = out.shape
    for i in range(h):
        row, up = p[i + 1], p[i]
        for j in range(w):
            a, b, c = row[j], up[j + 1], up[j]
            lo, hi = min(a, b), max(a, b)
            out[i, j] = lo if c >= hi else (hi if c <= lo else a + b - c)


def med_bits(v: np.ndarray) -> float:
    """Bits of a 2-D plane under the LOCO-I median predictor and one empirical residual histogram
    (first row and column left out, scaled to the whole plane): a quick, model-free estimate to
    compare codings of the same plane."""
    v = np.asarray(v, dtype=np.int64)
    if v.size and -(1 << 29) < v.min() and v.max() < (1 << 29):  # int32 exact: half the memory traffic
        v = v.astype(np.int32)
    r = (v[1:, 1:] - med_of(v)).ravel()
    n = np.bincount(r - r.min()).astype(np.float64)
    n = n[n > 0]
    return float(-(n * np.log2(n / r.size)).sum()) * v.size / r.size


def long_gaps(k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values ``k`` (int64, minimum 0) -> (``packed``, ``gaps``): every run of more than ``GAP_MIN``
    values that no pixel takes, with at least ``GAP_SIDE`` of the pixels below it and above it,
    is removed (the ``GAP_MAX`` longest such runs when there are more), so ``packed`` spans a smaller range. ``gaps`` (n, 2) int64 holds per run
    ``(p, r)``: the packed value just below the run and the run's length; ``expand_gaps`` adds
    ``r`` back to every packed value above ``p``. The decoder reads the runs; how they are
    chosen is the encoder's affair.

    Why: a CT's padding at -2000 next to air at -1000 is an edge of 1000 grey levels for the
    model (escapes and wide tables on both sides), but only one step once the unused levels in
    between are gone: -8% on the val CT. Runs among a few bright outliers stay: removing them
    bends the grey scale where the bright tissue is (+0.3% on a DWI mosaic, measured)."""
    k = np.asarray(k, dtype=np.int64)
    u, n = used_values(k, counts=True)
    d = np.diff(u)
    below = np.cumsum(n)[:-1]
    side = GAP_SIDE * k.size
    big = np.nonzero((d - 1 > GAP_MIN) & (below >= side) & (k.size - below >= side))[0]
    if big.size > GAP_MAX:
        big = np.sort(big[np.argsort(-d[big], kind="stable")[:GAP_MAX]])
    if big.size == 0:
        return k, np.zeros((0, 2), np.int64)
    removed = d[big] - 1
    before = np.concatenate([[0], np.cumsum(removed)])
    packed = k - _below(u, big, before, k)
    gaps = np.stack([u[big] - before[:-1], removed], axis=1)
    return packed, gaps


def expand_gaps(packed: np.ndarray, gaps: np.ndarray) -> np.ndarray:
    """Inverse of ``collapse_gaps``: by a table over the packed values where their span is small (as
    ``_below``: one gather instead of a binary search per pixel, 0.14 -> 0.03 s on a 2272 x 1848
    radiograph with every run taken out)."""
    packed = np.asarray(packed, dtype=np.int64)
    if len(gaps) == 0:
        return packed
    gaps = np.asarray(gaps, dtype=np.int64)
    before = np.concatenate([[0], np.cumsum(gaps[:, 1])])
    lo, hi = (int(packed.min()), int(packed.max())) if packed.size else (0, 0)
    if hi - lo > max(_DENSE_SPAN, 2 * packed.size):
        return packed + before[np.searchsorted(gaps[:, 0], packed, side="left")]
    span = np.arange(lo, hi + 1)
    return (span + before[np.searchsorted(gaps[:, 0], span, side="left")])[packed - lo]


def bit_depth(R: int) -> int:
    return max(1, int(R).bit_length())


def padded_size(H: int, W: int, block: int) -> tuple[int, int]:
    return -(-H // block) * block, -(-W // block) * block


def sub_real_shape(H: int, W: int, f: int, di: int, dj: int) -> tuple[int, int]:
    return max(0, -(-(H - di) // f)), max(0, -(-(W - dj) // f))


def _torch_tensor(a) -> bool:
    """Is ``a`` a torch tensor? Without importing torch: where it is not imported, nothing is one
    (this module also serves the chunk reader, which ``lvpnet info`` runs without torch)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(a, torch.Tensor)


def pad_edge(a, Hh: int, Wh: int):
    """Edge-replicate pad a 2-D numpy array or torch tensor to (Hh, Wh); empty -> zeros."""
    h, w = a.shape[-2:]
    if _torch_tensor(a):
        import torch

        if h == 0 or w == 0:
            return torch.zeros(a.shape[:-2] + (Hh, Wh), dtype=a.dtype, device=a.device)
        ri = torch.clamp(torch.arange(Hh, device=a.device), max=h - 1)
        ci = torch.clamp(torch.arange(Wh, device=a.device), max=w - 1)
        return a[..., ri, :][..., :, ci]
    if h == 0 or w == 0:
        return np.zeros(a.shape[:-2] + (Hh, Wh), dtype=a.dtype)
    ri = np.minimum(np.arange(Hh), h - 1)
    ci = np.minimum(np.arange(Wh), w - 1)
    return a[..., ri, :][..., :, ci]


def polyphase_pad(v: np.ndarray, Hp: int, Wp: int, f: int) -> np.ndarray:
    """Pad a (H, W) slice to (Hp, Wp): every polyphase sub-image edge-padded on its own."""
    out = np.empty((Hp, Wp), dtype=v.dtype)
    for di in range(f):
        for dj in range(f):
            out[di::f, dj::f] = pad_edge(v[di::f, dj::f], Hp // f, Wp // f)
    return out


def to_ctx(v, B: int, bits: int = CTX_BITS):
    """Exact integer context value in [0, 2**bits): floor(v * 2**bits / 2**B)."""
    if _torch_tensor(v):
        v = v.long()
        return (v << bits) >> B
    v = np.asarray(v).astype(np.int64)
    return (v << bits) >> B


def rgb_to_planes(x: np.ndarray) -> list[np.ndarray]:
    """(H, W, 3) integers -> [G, R-G, B-G] as int32 planes (reversible)."""
    x = x.astype(np.int32)
    g = x[..., 1]
    return [g, x[..., 0] - g, x[..., 2] - g]


def planes_to_rgb(planes: list[np.ndarray], dtype) -> np.ndarray:
    g, rg, bg = (p.astype(np.int32) for p in planes)
    return np.stack([rg + g, g, bg + g], axis=-1).astype(dtype)


def grey_slices(arr: np.ndarray, rgb: bool) -> list[np.ndarray]:
    """All 2-D grey planes of an array laid out (frames..., rows, cols[, 3])."""
    a = np.asarray(arr)
    if rgb:
        a = a.reshape((-1,) + a.shape[-3:])
        out = []
        for fr in a:
            out.extend(rgb_to_planes(fr))
        return out
    a = a.reshape((-1,) + a.shape[-2:])
    return [fr.astype(np.int32) for fr in a]
