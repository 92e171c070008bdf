"""A map of constant blocks ahead of a plane's pixels (a candidate for the bitstream version after 9;
``benchmarks/us_levers.md``).

Ultrasound and other scans with a wide flat background pay for every background pixel: a
neighbour-repeat flag (``coding.repeat``) costs 0.02 bits at best and more while its probability
learns, and a base lattice (``coding.lattice``) pays JPEG-XL's share. Here, before the pixel
stream's first item, one flag per ``BLOCK`` x ``BLOCK`` block says "every pixel of the block has
one value"; the pixels of a flagged block then leave every coded step (the decoder knows them
before it decodes anything else, as it knows a base lattice's) and carry no flag.

* With a base lattice the decoder has the block's lattice pixels first: only blocks whose
  lattice pixels agree are candidates (the others carry no flag) and a flagged block takes
  their value. Blocks without a lattice pixel (a lattice coarser than the block) are
  candidates too and code their value.
* A value to code is "the previous coded value again" (an adaptive flag) or a new value,
  uniform over ``[0, R]``.
* Flags are adaptive binary (counts from one half, as Krichevsky-Trofimov) in contexts of the
  block row above (the flags of the blocks up-left, up and up-right) and whether the block has
  lattice pixels. A block row is decoded in rounds (``ROW_ROUND0`` flags, then doubling), each
  with the counts of the flags before it.

Probabilities are integers out of ``TOTAL`` from integer counts, passed to constriction's
``Bernoulli`` as exact float64 ``q / TOTAL`` (its quantisation of an exact input is
deterministic), so encoder and decoder agree on every machine. Numpy and constriction only.

Stream order (decoder): the block rows' flags, top to bottom; then the "same value" flags of the
flagged blocks that code a value, in raster order (``ROUND0`` of them, then doubling, as rounds);
then their new values, uniform. The encoder pushes the reverse (``write``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import constriction
import numpy as np

from ..model.tables import TOTAL
from .flag_adapt import rounds

BLOCK = 8
CONTEXTS = 16  # up-left, up, up-right flags (8) x whether the block has lattice pixels (2)
# Prior hits in eighths of a flag (worth one flag): by how many of the three blocks above are
# flagged, so a flat background's first rows do not pay one bit a block.
PRIOR_HITS = np.array([1, 3, 5, 7])[[0, 1, 1, 2, 1, 2, 2, 3] * 2]
SAME_PRIOR = 7  # a coded value most often repeats the one before (one background value)
VALUE_ROUND0 = 8  # the same-value flags' first round (they are few)
ROW_ROUND0 = 4  # a block row's first round
SAVE_PER_PIXEL = 0.03  # bits a flagged pixel saves at least (a flat pixel's flag); for ``worth`` without costs

_BERNOULLI = constriction.stream.model.Bernoulli(perfect=False)
_UNIFORM = constriction.stream.model.Uniform()
# constriction's uniform model takes at most 2**24 symbols and panics (an exception no reader
# catches) above: a real plane's range is 16 bits, a wider one is a forged header
UNIFORM_MAX = 1 << 24


def grid(shape: tuple[int, int], n: int = BLOCK) -> tuple[int, int]:
    """Blocks per column and per row of a plane of ``shape`` (edge blocks are partial)."""
    return -(-int(shape[0]) // n), -(-int(shape[1]) // n)


def _blocks(a: np.ndarray, n: int, fill) -> np.ndarray:
    """(H, W) -> (hb, n, wb, n), padded with ``fill`` (values no block holds, or False)."""
    H, W = a.shape
    hb, wb = grid((H, W), n)
    out = np.full((hb * n, wb * n), fill, dtype=a.dtype)
    out[:H, :W] = a
    return out.reshape(hb, n, wb, n)


def lattice_view(known_values: np.ndarray | None, known_mask: np.ndarray | None, shape, n: int = BLOCK):
    """What the decoder knows of each block before the map: ``(has, agree, value)``, (hb, wb) each:
    whether the block holds lattice pixels, whether they all agree (True without any) and their value."""
    hb, wb = grid(shape, n)
    if known_mask is None or not np.asarray(known_mask).any():
        return np.zeros((hb, wb), bool), np.ones((hb, wb), bool), np.zeros((hb, wb), np.int64)
    km = _blocks(np.asarray(known_mask, bool), n, False)
    kv = _blocks(np.asarray(known_values, np.int64), n, 0)
    has = km.any(axis=(1, 3))
    big = np.iinfo(np.int64).max
    lo = np.where(km, kv, big).min(axis=(1, 3))
    hi = np.where(km, kv, -big).max(axis=(1, 3))
    return has, ~has | (lo == hi), np.where(has, lo, 0)


@dataclass
class BlockMap:
    """The constant blocks of one plane: ``flags`` (hb, wb) and each flagged block's ``values``."""

    shape: tuple[int, int]
    flags: np.ndarray  # bool (hb, wb)
    values: np.ndarray  # int64 (hb, wb), meaningful where flagged
    n: int = BLOCK

    @property
    def count(self) -> int:
        return int(self.flags.sum())

    @cached_property
    def _mask(self) -> np.ndarray:
        H, W = self.shape
        return np.repeat(np.repeat(self.flags, self.n, 0), self.n, 1)[:H, :W]

    @cached_property
    def _values(self) -> np.ndarray:
        H, W = self.shape
        v = np.where(self.flags, self.values, 0)
        return np.repeat(np.repeat(v, self.n, 0), self.n, 1)[:H, :W]

    def pixel_mask(self) -> np.ndarray:
        """(H, W) bool: the pixels that leave the pixel stream (kept: read only)."""
        return self._mask

    def pixel_values(self) -> np.ndarray:
        """(H, W) int64: each flagged pixel's value (0 elsewhere; kept: read only)."""
        return self._values

    def take(self, pos: tuple[int, int], f: int, shape, values: bool = False) -> np.ndarray:
        """The flagged pixels of one coded item: the sub-image ``v[di::f, dj::f]`` (``pos`` its first
        pixel, ``shape`` its real shape, or a row of it), as a bool array of ``shape``; with
        ``values`` their values instead (int64, 0 where not flagged)."""
        di, dj = pos
        h, w = shape
        a = self._values if values else self._mask
        return a[di : di + f * (h - 1) + 1 : f, dj : dj + f * (w - 1) + 1 : f][:h, :w]


def plan(v: np.ndarray, known_mask: np.ndarray | None = None, n: int = BLOCK) -> BlockMap:
    """Encoder: every constant block that the decoder can be told about (a candidate: its lattice
    pixels, if any, agree), flagged."""
    v = np.asarray(v, np.int64)
    has, agree, _val = lattice_view(v, known_mask, v.shape, n)
    B = _blocks(v, n, -1)  # -1: no pixel value, so a partial block is judged on its real pixels
    first = B[:, :1, :, :1]
    const = ((B == first) | (B == -1)).all(axis=(1, 3))
    return BlockMap(tuple(v.shape), const & agree, first[:, 0, :, 0].copy(), n)


def _contexts(row_above: np.ndarray, has_row: np.ndarray) -> np.ndarray:
    """Contexts of one block row from the flags of the row above (False outside) and ``has``."""
    up = np.pad(row_above.astype(np.int64), 1)
    return up[:-2] + 2 * up[1:-1] + 4 * up[2:] + 8 * has_row.astype(np.int64)


class _Counts:
    """Adaptive binary counts per context: p(hit) = (8 hits + prior) / (8 flags + 8), out of TOTAL."""

    def __init__(self, priors):
        self.prior = np.asarray(priors, np.int64)
        self.hits = np.zeros(self.prior.size, np.int64)
        self.total = np.zeros(self.prior.size, np.int64)

    def freq(self, ctx):
        q = ((8 * self.hits[ctx] + self.prior[ctx]) * TOTAL) // (8 * self.total[ctx] + 8)
        return np.clip(q, 1, TOTAL - 1)

    def add(self, hit, ctx):
        np.add.at(self.hits, ctx, np.asarray(hit, np.int64))
        np.add.at(self.total, ctx, 1)


def _flag_rows(bmap: BlockMap, has: np.ndarray, agree: np.ndarray):
    """Per block row, in decoding order: (candidate columns, their contexts, their flags, hit
    freqs); inside a row the counts move between rounds (``ROW_ROUND0`` flags, then doubling)."""
    counts, out = _Counts(PRIOR_HITS), []
    prev = np.zeros(bmap.flags.shape[1], bool)
    for r in range(bmap.flags.shape[0]):
        cols = np.nonzero(agree[r])[0]
        ctx = _contexts(prev, has[r])[cols]
        hit = bmap.flags[r, cols].astype(np.int32)
        q = np.empty(cols.size, np.int64)
        for a, b in rounds(cols.size, ROW_ROUND0):
            q[a:b] = counts.freq(ctx[a:b])
            counts.add(hit[a:b], ctx[a:b])
        out.append((cols, ctx, hit, q))
        prev = bmap.flags[r]
    return out


def _value_side(bmap: BlockMap, has: np.ndarray):
    """The flagged blocks that code their value (no lattice pixel), raster order: (same flags,
    their freqs in rounds, new values)."""
    need = bmap.flags & ~has
    vals = bmap.values[need]
    prev = np.concatenate([[-1], vals[:-1]])
    same = (vals == prev).astype(np.int32)
    counts, q = _Counts([SAME_PRIOR]), np.empty(vals.size, np.int64)
    zero = np.zeros(vals.size, np.int64)
    for a, b in rounds(vals.size, VALUE_ROUND0):
        q[a:b] = counts.freq(zero[a:b])
        counts.add(same[a:b], zero[a:b])
    return need, same, q, vals[same == 0]


def _bits(hit: np.ndarray, q: np.ndarray) -> float:
    p = q.astype(np.float64) / TOTAL
    return float(-np.log2(np.where(hit == 1, p, 1.0 - p)).sum())


def bits(bmap: BlockMap, R: int, known_values=None, known_mask=None) -> float:
    """Ideal code length of the map (flags, same-value flags, new values)."""
    has, agree, _val = lattice_view(known_values, known_mask, bmap.shape, bmap.n)
    out = sum(_bits(hit, q) for _c, _x, hit, q in _flag_rows(bmap, has, agree))
    _need, same, q, new = _value_side(bmap, has)
    return out + _bits(same, q) + new.size * float(np.log2(R + 1.0))


def worth(bmap: BlockMap, R: int, known_values=None, known_mask=None, pixel_bits: np.ndarray | None = None) -> bool:
    """Does the map pay for itself? With ``pixel_bits`` (each pixel's code length without the map,
    lattice pixels 0) exactly what it takes out against its bits; else ``SAVE_PER_PIXEL`` per pixel."""
    if bmap.count == 0:
        return False
    m = bmap.pixel_mask()
    if known_mask is not None:
        m = m & ~np.asarray(known_mask, bool)
    saved = float(pixel_bits[m].sum()) if pixel_bits is not None else SAVE_PER_PIXEL * float(m.sum())
    return saved > bits(bmap, R, known_values, known_mask)


def write(coder, bmap: BlockMap, R: int, known_values=None, known_mask=None) -> float:
    """Encoder: push the map (call it where the decoder will ``read`` it, in the reverse order of
    the stream: after pushing everything read later). Returns its bits."""
    has, agree, _val = lattice_view(known_values, known_mask, bmap.shape, bmap.n)
    rows = _flag_rows(bmap, has, agree)
    _need, same, q, new = _value_side(bmap, has)
    if new.size:
        coder.encode_reverse(np.ascontiguousarray(new, np.int32), _UNIFORM, np.full(new.size, R + 1, np.int32))
    for a, b in reversed(rounds(same.size, VALUE_ROUND0)):
        coder.encode_reverse(np.ascontiguousarray(same[a:b]), _BERNOULLI, q[a:b].astype(np.float64) / TOTAL)
    for _cols, _ctx, hit, q_row in reversed(rows):
        for a, b in reversed(rounds(hit.size, ROW_ROUND0)):
            coder.encode_reverse(np.ascontiguousarray(hit[a:b]), _BERNOULLI, q_row[a:b].astype(np.float64) / TOTAL)
    out = sum(_bits(hit, q_row) for _c, _x, hit, q_row in rows)
    return out + _bits(same, q) + new.size * float(np.log2(R + 1.0))


def read(coder, shape: tuple[int, int], R: int, known_values=None, known_mask=None, n: int = BLOCK) -> BlockMap:
    """Decoder: the map ``write`` pushed, for a plane of ``shape`` and range ``R``."""
    if not 0 < R < UNIFORM_MAX:
        raise ValueError(f"block map: a plane range of {R} takes no map (damaged stream)")
    has, agree, lat = lattice_view(known_values, known_mask, shape, n)
    hb, wb = grid(shape, n)
    flags = np.zeros((hb, wb), bool)
    counts = _Counts(PRIOR_HITS)
    prev = np.zeros(wb, bool)
    for r in range(hb):
        cols = np.nonzero(agree[r])[0]
        ctx = _contexts(prev, has[r])[cols]
        for a, b in rounds(cols.size, ROW_ROUND0):
            hit = coder.decode(_BERNOULLI, counts.freq(ctx[a:b]).astype(np.float64) / TOTAL)
            counts.add(hit, ctx[a:b])
            flags[r, cols[a:b]] = hit.astype(bool)
        prev = flags[r]
    need = flags & ~has
    m = int(need.sum())
    same = np.empty(m, np.int32)
    vc, zero = _Counts([SAME_PRIOR]), np.zeros(m, np.int64)
    for a, b in rounds(m, VALUE_ROUND0):
        same[a:b] = coder.decode(_BERNOULLI, vc.freq(zero[a:b]).astype(np.float64) / TOTAL)
        vc.add(same[a:b], zero[a:b])
    k = int((same == 0).sum())
    new = coder.decode(_UNIFORM, np.full(k, R + 1, np.int32)).astype(np.int64) if k else np.zeros(0, np.int64)
    if m and same[0] == 1:
        raise ValueError("block map: the first coded value repeats nothing (damaged stream)")
    # each coded value: the last new value at or before it
    idx = np.cumsum(same == 0) - 1
    vals = new[idx] if m else np.zeros(0, np.int64)
    values = np.where(has, lat, 0)
    values[need] = vals
    if values.size and (values.min() < 0 or values.max() > R):
        raise ValueError("block map: a block value outside the plane's range (damaged stream)")
    return BlockMap(tuple(int(s) for s in shape), flags, values, n)
