"""Neighbour-repeat flags coded with the network's prediction as context, adapting within a stage
(bitstream version 10, ``adaptive_flags``; measured in ``benchmarks/us_levers.md`` and
``benchmarks/bitstream10_val.md``).

The flags of ``coding.repeat`` ("this pixel equals its candidate ``c``") are coded today with one
probability per context ``x`` (how many decoded neighbours share ``c``, whether ``c`` is the
plane's minimum), learnt between stages only (``repeat.FlagCounts``). Measured on val
(``benchmarks/us_levers.py``), this costs the sparse ultrasound planes 22-37% of their bits:

* with a base lattice, the first coded step sees only the priors, and every stage codes all its
  flags with the probabilities of the stage before;
* the context ignores what the network already knows: a location ``mu`` far from ``c``, or a wide
  scale ``s``, makes a repeat much less likely (text and graphics edges on a black background).

Here each flag's context is ``x`` split by ``|mu - c|`` and ``s`` (``contexts``); its probability
starts from the context ``x``'s own estimate and adapts flag by flag in rounds (``ROUND0`` flags,
then doubling): the decoder decodes a round with the probabilities of the counts before it, so
a stage of ``n`` flags takes about ``log2(n / ROUND0)`` batch calls. Probabilities are integers
out of ``TOTAL`` computed with integer arithmetic only, so encoder and decoder agree on every
machine; they reach constriction as exact float64 ``q / TOTAL`` through its ``Bernoulli`` family,
whose quantisation of an exact input is deterministic.

Numpy and constriction only; the engine calls ``plan`` (encoder, forward walk), ``push`` (encoder,
reverse) and ``pop`` (decoder) once per coded item, where versions 3 to 9 call ``FlagCounts`` and
``PixelCoder.push_flags`` / ``pop_flags``; ``coding.adapt.plane_bits`` calls ``pixel_bits``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import constriction
import numpy as np

from ..model.tables import TOTAL
from .jit import compiled
from .repeat import FLAG_CONTEXTS, PRIOR_HITS

DMU_EDGES = np.array([0, 1, 3, 7, 15, 31], np.int64)  # |mu - c| buckets: 0, 1, 2-3, 4-7, 8-15, 16-31, > 31
SCALE_EDGES = np.array([8, 16, 24, 32, 40, 48, 64], np.int64)  # scale index buckets (80 scales)
N_DMU = DMU_EDGES.size + 1
N_SCALE = SCALE_EDGES.size + 1
PER_X = N_DMU * N_SCALE
CONTEXTS = 1 + (FLAG_CONTEXTS - 1) * PER_X  # 0: no flag
PARENT_WEIGHT = 2  # a fine context starts from its parent ``x``'s estimate, worth this many flags
ROUND0 = 64  # flags in a stage's first round; rounds double

_BERNOULLI = constriction.stream.model.Bernoulli(perfect=False)


def contexts(x: np.ndarray, mu: np.ndarray, cand: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Each pixel's flag context (int64, 0: no flag): ``x`` from ``repeat.flag_contexts`` (0 ..
    ``FLAG_CONTEXTS - 1``), split by the distance of the location ``mu`` from the candidate ``cand``
    and by the scale index ``s`` as coded. Everything here is known to the decoder before the flags."""
    x = np.asarray(x, np.int64)
    mu, cand, s = (np.asarray(a, np.int64) for a in (mu, cand, s))
    kernel = _contexts_kernel()
    if kernel and x.size and x.shape == mu.shape == cand.shape == s.shape:
        out = np.empty(x.shape, np.int64)
        kernel(*(np.ascontiguousarray(a).reshape(-1) for a in (x, mu, cand, s)), DMU_EDGES, SCALE_EDGES, N_DMU,
               N_SCALE, out.reshape(-1))
        return out
    dmu = np.searchsorted(DMU_EDGES, np.abs(mu - cand), side="left")
    sb = np.searchsorted(SCALE_EDGES, s, side="right")
    return np.where(x > 0, 1 + ((x - 1) * N_DMU + dmu) * N_SCALE + sb, 0)


def _contexts(x, mu, cand, s, dmu_edges, scale_edges, n_dmu, n_scale, out):
    """``contexts`` pixel by pixel in one pass: the two bucket searches as counts over the few
    sorted edges (``searchsorted`` left: edges below the value; right: edges at or below it)."""
    for p in range(x.size):
        if x[p] <= 0:
            out[p] = 0
            continue
        d = abs(mu[p] - cand[p])
        dmu = 0
        for e in dmu_edges:
            dmu += e < d
        sb = 0
        for e in scale_edges:
            sb += e <= s[p]
        out[p] = 1 + ((x[p] - 1) * n_dmu + dmu) * n_scale + sb


def _contexts_kernel():
    """``_contexts`` compiled by numba, or False without it (the numpy path, the same contexts)."""
    return compiled(_contexts)


def parent(ctx: np.ndarray) -> np.ndarray:
    """The ``repeat`` context ``x`` a fine context refines (0 for 0)."""
    ctx = np.asarray(ctx, np.int64)
    return np.where(ctx > 0, (ctx - 1) // PER_X + 1, 0)


def rounds(n: int, first: int = ROUND0) -> list[tuple[int, int]]:
    """The rounds ``[a, b)`` of a stage of ``n`` flags: ``first`` flags, then doubling."""
    out, a, size = [], 0, first
    while a < n:
        out.append((a, min(n, a + size)))
        a, size = a + size, 2 * size
    return out


@dataclass
class FlagPlan:
    """What the encoder pushes for one stage: its flags (where the context is not 0), in raster
    order, and each flag's hit frequency out of ``TOTAL``, round by round."""

    hit: np.ndarray  # int32 0/1
    q: np.ndarray  # int64 hit frequencies in [1, TOTAL - 1]
    bounds: list = field(default_factory=list)

    def bits(self) -> float:
        """Ideal code length of the stage's flags."""
        p = self.q.astype(np.float64) / TOTAL
        return float(-np.log2(np.where(self.hit == 1, p, 1.0 - p)).sum())


class AdaptiveFlags:
    """The flag probabilities of one plane: per fine context (``contexts``) and per parent ``x``,
    counts of flags and hits, updated after every round."""

    def __init__(self, priors=PRIOR_HITS + PRIOR_HITS):
        """``priors``: the parents' prior hits in eighths of a flag (``repeat.PRIOR_HITS`` per
        context, as ``repeat.FlagCounts`` starts)."""
        if len(priors) != FLAG_CONTEXTS:
            raise ValueError(f"{len(priors)} priors for {FLAG_CONTEXTS} contexts")
        self._prior = np.array(priors, np.int64)
        self.hits = np.zeros(CONTEXTS, np.int64)
        self.total = np.zeros(CONTEXTS, np.int64)
        self.parent_hits = np.zeros(FLAG_CONTEXTS, np.int64)
        self.parent_total = np.zeros(FLAG_CONTEXTS, np.int64)
        self.coded_bits = 0.0  # ideal code length of every flag planned or popped so far (estimates)

    def freqs(self, ctx: np.ndarray) -> np.ndarray:
        """Hit frequency out of ``TOTAL`` (int64, in [1, TOTAL - 1]) of flags in contexts ``ctx`` (> 0)
        as the counts stand: the parent's ``(8 hits + prior) / (8 flags + 8)``, then the fine
        context's hits added to ``PARENT_WEIGHT`` flags at the parent's rate."""
        ctx = np.asarray(ctx, np.int64)
        x = parent(ctx)
        qp = ((8 * self.parent_hits[x] + self._prior[x]) * TOTAL) // (8 * self.parent_total[x] + 8)
        q = (PARENT_WEIGHT * qp + TOTAL * self.hits[ctx]) // (PARENT_WEIGHT + self.total[ctx])
        return np.clip(q, 1, TOTAL - 1)

    def add(self, hit: np.ndarray, ctx: np.ndarray) -> None:
        ctx, hit = np.asarray(ctx, np.int64), np.asarray(hit, np.int64)
        np.add.at(self.hits, ctx, hit)
        np.add.at(self.total, ctx, 1)
        x = parent(ctx)
        np.add.at(self.parent_hits, x, hit)
        np.add.at(self.parent_total, x, 1)

    def plan(self, hit: np.ndarray, ctx: np.ndarray) -> FlagPlan:
        """Encoder, forward: one stage's flags (``hit`` and ``ctx`` shaped alike; only ``ctx > 0``
        carry a flag), their probabilities round by round; the counts move past the stage."""
        ctx = np.asarray(ctx, np.int64).reshape(-1)
        m = ctx > 0
        h = np.asarray(hit, bool).reshape(-1)[m].astype(np.int32)
        c = ctx[m]
        q = np.empty(c.size, np.int64)
        bounds = rounds(c.size)
        for a, b in bounds:
            q[a:b] = self.freqs(c[a:b])
            self.add(h[a:b], c[a:b])
        plan = FlagPlan(h, q, bounds)
        self.coded_bits += plan.bits()
        return plan

    @staticmethod
    def push(coder, plan: FlagPlan) -> None:
        """Encoder, reverse: push a stage's ``plan`` (stages in reverse order, as ANS is a stack)."""
        for a, b in reversed(plan.bounds):
            coder.encode_reverse(np.ascontiguousarray(plan.hit[a:b]), _BERNOULLI, plan.q[a:b].astype(np.float64) / TOTAL)

    def pop(self, coder, ctx: np.ndarray) -> np.ndarray:
        """Decoder: one stage's flags -> bool array shaped like ``ctx`` (False where 0)."""
        ctx = np.asarray(ctx, np.int64)
        flat = ctx.reshape(-1)
        m = flat > 0
        c = flat[m]
        h = np.empty(c.size, np.int32)
        for a, b in rounds(c.size):
            q = self.freqs(c[a:b])
            h[a:b] = coder.decode(_BERNOULLI, q.astype(np.float64) / TOTAL)
            self.add(h[a:b], c[a:b])
            self.coded_bits += FlagPlan(h[a:b], q).bits()
        out = np.zeros(flat.size, bool)
        out[m] = h.astype(bool)
        return out.reshape(ctx.shape)

    def pixel_bits(self, hit: np.ndarray, ctx: np.ndarray) -> np.ndarray:
        """Each pixel's flag code length (float64 shaped like ``ctx``, 0 where no flag), moving the
        counts as ``plan`` does (the per-pixel maps of ``coding.adapt.plane_bits``)."""
        ctx = np.asarray(ctx, np.int64)
        plan = self.plan(hit, ctx)
        p = plan.q.astype(np.float64) / TOTAL
        out = np.zeros(ctx.size, np.float64)
        out[ctx.reshape(-1) > 0] = -np.log2(np.where(plan.hit == 1, p, 1.0 - p))
        return out.reshape(ctx.shape)

    def bits(self, hit: np.ndarray, ctx: np.ndarray) -> float:
        """Code length of one stage's flags, moving the counts as ``plan`` does (for estimates)."""
        return self.plan(hit, ctx).bits()
