"""constriction streams of the learned codec: the latent coder and the pixel coder.

No torch here: this module sees only integer numpy arrays (symbols, scale
indices, the model's integer frequency tables) and turns them into ANS streams
(``constriction.stream.stack.AnsCoder``, 32-bit words) and back.

Why the models are grouped rather than given per symbol: a pixel's table is
``pixel_tables[s]`` for its scale index ``s`` (one of ~80 fixed rows), and a
latent's table is ``latent_tables[c]`` for its channel ``c``. So instead of an
``(N, 130)`` probability array per call (272 MB of float64 for one 512x512
slice) every distinct table becomes one ``Categorical`` built once per codec,
and all symbols that use it are coded in one batch call. The coding order is a
fixed function of what the decoder already knows (the scale index of every
pixel of a sub-image is known before any of its pixels is decoded), so both
sides walk the same order. Integer tables passed as float64 are exact inputs;
constriction (``perfect=False``) turns them into its 24-bit fixed-point model
deterministically.

Orders (the decoder's; the encoder pushes the same items in reverse, ANS being
a stack):

* latent stream: channel 0, 1, ..., C-1; within a channel the latent grid in
  C (raster) order (version 5: per stage of ``coding.latent_adapt``, channel 0, 1, ..., C-1,
  each with the stage's slice of that raster order);
* pixel stream: first the coding mode (version 3, uniform over 12: prior-weight index plus 4
  times the flag level 0-2 of the neighbour-repeat flags; version 5: over 20, levels 0-4), then the per-step scale offsets (version 2 and later,
  uniform over 9 each), then per sub-image step k = 0, 1, ... (or row of sub-image 0): with
  flags on, the flags grouped by context (``push_flags``), then for the unflagged pixels the symbols, grouped by
  scale index s ascending and in raster order inside a group; then one batch of
  uniform "extras" in raster order: for a non-escaped pixel with ``b_s > 0``
  its ``b_s`` low bits (uniform over ``2**b_s``), for an escaped pixel its value
  (uniform over ``[0, R]``); pixels with neither have no extra. In version 3 the
  symbols of scale index s are coded with the slice-adapted row (``coding.adapt``). In version 6
  the groups are the table rows ``6 s + e`` of ``coding.edge`` (e: the location's distance from
  the minimum), ascending, each with its own adapted row; the extras still follow ``b_s``.
"""

from __future__ import annotations

import constriction
import numpy as np

from ..coding.latent_adapt import StagedTables, stage_bounds, staged_bits, staged_plan
from ..model.prep import used_values

_model = constriction.stream.model
_stack = constriction.stream.stack


def _categorical(freqs: np.ndarray):
    p = np.ascontiguousarray(np.asarray(freqs, dtype=np.float64))
    return _model.Categorical(p, perfect=False)


class LatentCoder:
    """Per-channel categorical tables over ``z + zmax`` (symbols ``0 .. 2 zmax``).

    ``staged`` (bitstream version 5): the tables adapt to the slice stage by stage
    (``coding.latent_adapt``); the stream then holds, per stage, channel 0, 1, ..., C-1."""

    def __init__(self, tables: np.ndarray):
        self.tables = np.asarray(tables)
        self.models = [_categorical(t) for t in self.tables]

    def encode(self, syms: np.ndarray, staged: bool = False) -> np.ndarray:
        """syms (C, hz, wz) int -> compressed uint32 words."""
        C = syms.shape[0]
        flat = np.ascontiguousarray(syms.reshape(C, -1), dtype=np.int32)
        coder = _stack.AnsCoder()
        if staged:
            for a, b, t in reversed(staged_plan(self.tables, flat)):
                for c in range(C - 1, -1, -1):
                    coder.encode_reverse(np.ascontiguousarray(flat[c, a:b]), _categorical(t[c]))
            return coder.get_compressed()
        for c in range(C - 1, -1, -1):
            coder.encode_reverse(flat[c], self.models[c])
        return coder.get_compressed()

    def decode(self, words: np.ndarray, shape: tuple[int, int, int], staged: bool = False) -> np.ndarray:
        C, hz, wz = shape
        if C != len(self.models):
            raise ValueError("latent channel count differs from the model's")
        coder = _stack.AnsCoder(np.ascontiguousarray(words, dtype=np.uint32))
        out = np.empty((C, hz * wz), dtype=np.int32)
        if staged:
            st = StagedTables(self.tables)
            edges = stage_bounds(hz * wz)
            for a, b in zip(edges[:-1], edges[1:]):
                t = st.tables()
                for c in range(C):
                    out[c, a:b] = coder.decode(_categorical(t[c]), b - a)
                st.add(out[:, a:b])
        else:
            for c in range(C):
                out[c] = coder.decode(self.models[c], hz * wz)
        if not coder.is_empty():
            raise ValueError("latent stream has data left over (damaged stream or other weights)")
        return out.reshape(C, hz, wz)

    def bits(self, syms: np.ndarray, staged: bool = False) -> float:
        """Ideal code length (-log2 p under the integer tables) of the symbols."""
        C = syms.shape[0]
        flat = syms.reshape(C, -1).astype(np.int64)
        if staged:
            return float(staged_bits(self.tables, flat).sum())
        f = np.take_along_axis(self.tables, flat, axis=1)
        return float(-np.log2(f / float(self.tables[0].sum())).sum())


class PixelCoder:
    """Symbols with ``pixel_tables[s]`` and the uniform extras (low bits, escaped values)."""

    def __init__(self, tables: np.ndarray, shifts: np.ndarray, K: int, models: list | None = None):
        self.tables = np.asarray(tables)
        self.shifts = np.asarray(shifts, dtype=np.int64)
        self.K = int(K)
        self.esc = 2 * self.K + 1
        # ``models``: the fixed rows' models when another coder has them (bitstream 6's rows repeat them)
        self.models = [_categorical(t) for t in self.tables] if models is None else list(models)
        self.uniform = _model.Uniform()

    def _groups(self, s: np.ndarray):
        """(order, counts): raster positions sorted by scale index (stable), pixels per index."""
        s = s.reshape(-1)
        # int16 keys (every index is below len(self.models)): numpy's stable argsort of them is a
        # radix sort, the same order several times faster than int64's merge sort
        order = np.argsort(s.astype(np.int16) if len(self.models) <= 1 << 15 else s, kind="stable")
        counts = np.bincount(s, minlength=len(self.models))
        return order, counts

    def extra_sizes(self, sym: np.ndarray, s: np.ndarray, R: int) -> np.ndarray:
        """Alphabet size of every pixel's extra (0: none), raster order."""
        sym = sym.reshape(-1)
        b = self.shifts[s.reshape(-1)]
        size = np.where(sym == self.esc, R + 1, np.left_shift(1, b))
        return np.where(size >= 2, size, 0).astype(np.int64)

    def push_step(self, coder, sym: np.ndarray, extra: np.ndarray, s: np.ndarray, R: int, models=None) -> None:
        """Encoder: push one sub-image (call for steps in reverse order). ``models``: scale index ->
        model for this step (``step_models``; default the fixed tables)."""
        sizes = self.extra_sizes(sym, s, R)
        has = sizes > 0
        if has.any():
            coder.encode_reverse(
                np.ascontiguousarray(extra.reshape(-1)[has], dtype=np.int32),
                self.uniform,
                np.ascontiguousarray(sizes[has], dtype=np.int32),
            )
        order, counts = self._groups(s)
        flat = sym.reshape(-1)
        ends = np.cumsum(counts)
        for si in np.nonzero(counts)[0][::-1]:
            n = counts[si]
            idx = order[ends[si] - n : ends[si]]
            model = self.models[si] if models is None else models[si]
            coder.encode_reverse(np.ascontiguousarray(flat[idx], dtype=np.int32), model)

    def step_models(self, s: np.ndarray, tables=None) -> dict:
        """Scale index -> model, for the indices present in ``s``: the fixed table's, or with ``tables``
        (a ``coding.adapt.StepTables`` at the step being coded, bitstream version 3) the adapted row
        where it has counts. The rows a step needs are mixed in one call and kept in
        ``tables.models`` for the step."""
        present = used_values(s)  # np.unique's values, by counting (scale indices: a small span)
        return dict(zip(present.tolist(), self._present_models(present, tables)))

    def _present_models(self, present: np.ndarray, tables=None) -> list:
        """``step_models``' models as a list, for the scale indices ``present`` (ascending)."""
        if tables is None or tables.weight == 0 or present.size == 0:
            return [self.models[si] for si in present.tolist()]
        mixed = tables.adapted_rows(present)
        kept = tables.models
        need = [si for si in present[mixed].tolist() if si not in kept]
        if need:
            for si, row in zip(need, tables.rows(np.array(need, np.int64))):
                kept[si] = _categorical(row)
        return [kept[si] if m else self.models[si] for si, m in zip(present.tolist(), mixed.tolist())]

    def pop_step(self, coder, s: np.ndarray, R: int, tables=None) -> tuple[np.ndarray, np.ndarray]:
        """Decoder: -> (sym, extra) int64 arrays shaped like ``s`` (``tables``: see ``step_models``)."""
        order, counts = self._groups(s)
        present = np.flatnonzero(counts)
        # the groups in ascending scale index, each decoded in one call; ``order`` lists their pixels
        # group after group, so one scatter puts every symbol in its place
        parts = [coder.decode(m, n) for m, n in zip(self._present_models(present, tables), counts[present].tolist())]
        sym = np.empty(s.size, dtype=np.int64)
        if parts:
            sym[order] = np.concatenate(parts)
        sizes = self.extra_sizes(sym, s, R)
        has = sizes > 0
        extra = np.zeros(s.size, dtype=np.int64)
        if has.any():
            extra[has] = coder.decode(self.uniform, np.ascontiguousarray(sizes[has], dtype=np.int32))
        return sym.reshape(s.shape), extra.reshape(s.shape)

    def push_flags(self, coder, hit: np.ndarray, x: np.ndarray, counts) -> None:
        """Encoder: one stage's neighbour-repeat flags (``coding.repeat``; where ``x > 0``), grouped
        by context ``x`` ascending, raster order inside a group, with ``counts.table(x)``."""
        hit, x = hit.reshape(-1), x.reshape(-1)
        for xi in np.unique(x[x > 0])[::-1]:
            m = x == xi
            coder.encode_reverse(np.ascontiguousarray(hit[m], dtype=np.int32), _categorical(counts.table(xi)))

    def pop_flags(self, coder, x: np.ndarray, counts) -> np.ndarray:
        """Decoder: the flags ``push_flags`` wrote -> bool array shaped like ``x`` (False where 0)."""
        flat = x.reshape(-1)
        hit = np.zeros(flat.size, bool)
        for xi in np.unique(flat[flat > 0]):
            m = flat == xi
            hit[m] = coder.decode(_categorical(counts.table(xi)), int(m.sum())).astype(bool)
        return hit.reshape(x.shape)

    def push_offsets(self, coder, values: np.ndarray, size: int) -> float:
        """Encoder: small integers in [0, size) coded uniformly (the per-step scale offsets, the
        coding mode); returns their bits."""
        values = np.ascontiguousarray(values, dtype=np.int32)
        coder.encode_reverse(values, self.uniform, np.full(values.size, size, dtype=np.int32))
        return float(values.size * np.log2(size))

    def pop_offsets(self, coder, n: int, size: int) -> np.ndarray:
        """Decoder: the ``n`` integers ``push_offsets`` wrote."""
        return coder.decode(self.uniform, np.full(n, size, dtype=np.int32)).astype(np.int64)

    def push_uniform(self, coder, values: np.ndarray, sizes: np.ndarray) -> float:
        """Encoder: integers ``values[i]`` in ``[0, sizes[i])`` coded uniformly, in order (the
        side information of bitstream version 4: ``coding.refine``, ``coding.feedback``); returns
        their bits."""
        if values.size:
            coder.encode_reverse(
                np.ascontiguousarray(values, dtype=np.int32), self.uniform, np.ascontiguousarray(sizes, dtype=np.int32)
            )
        return float(np.log2(np.asarray(sizes, np.float64)).sum())

    def pop_uniform(self, coder, sizes: np.ndarray) -> np.ndarray:
        """Decoder: the integers ``push_uniform`` wrote with these ``sizes``."""
        if sizes.size == 0:
            return np.zeros(0, np.int64)
        return coder.decode(self.uniform, np.ascontiguousarray(sizes, dtype=np.int32)).astype(np.int64)

    def bits(self, sym: np.ndarray, s: np.ndarray, R: int, tables=None) -> float:
        """Ideal code length: -log2 of the table entries plus log2 of every extra's alphabet
        (``tables``: the adapted tables at this step, see ``step_models``)."""
        if tables is None:
            f = self.tables[s.reshape(-1), sym.reshape(-1)].astype(np.float64)
            table_bits = float(-np.log2(f / float(self.tables[0].sum())).sum())
        else:
            table_bits = float(tables.symbol_bits(sym, s).sum())
        sizes = self.extra_sizes(sym, s, R)
        return table_bits + float(np.log2(sizes[sizes > 0].astype(np.float64)).sum())


def new_coder(words: np.ndarray | None = None):
    return _stack.AnsCoder() if words is None else _stack.AnsCoder(np.ascontiguousarray(words, dtype=np.uint32))
