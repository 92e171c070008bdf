"""The latent's tables adapted to the slice (bitstream version 5).

Measured on val with the shipped weights (b702da47): the trained GMSM's latent is all but
constant within a slice. In 12 of the 15 images every one of the 154 channels holds a single
value in every block; in the others at most 2.4% of the symbols differ from the channel's
first. The model's fixed per-channel tables still charge about 0.27 bits per symbol, that is
41 bits per 32 x 32 block or 0.040 bits per sample on every image (a fifth of JPEG-XL's whole
budget on the palette ultrasound).

So from version 5 on, each channel's symbols (in raster order over the latent grid) are coded
in stages ``[0, 1), [1, 2), [2, 4), [4, 8), ...``. A stage's table is the model's row for the
channel mixed with the counts of the channel's symbols in the earlier stages
(``adapt.mix_tables`` at prior weight ``WEIGHT``). Within a stage the table is fixed, so
the coder needs one table per channel and stage, about 12 per channel on a 1368 x 1350 slice,
not one per symbol. Measured on val (bits per sample of the latent): 0.0395 with the fixed
tables, 0.0022 staged. Prior weights 2 and 4 gave 0.0026 and 0.0032; stages growing by x4
gave 0.0024; by x1.5, 0.0022 with more tables.
"""

from __future__ import annotations

import numpy as np

from ..model.tables import TOTAL, latent_bits_exact
from .adapt import mix_tables, symbol_counts

WEIGHT = 1  # the model's table counts as one symbol seen


def stage_bounds(n: int) -> list[int]:
    """Stage edges over ``n`` symbols: 0, 1, 2, 4, 8, ..., n."""
    edges = [0]
    while edges[-1] < n:
        edges.append(min(n, max(1, 2 * edges[-1])))
    return edges


class StagedTables:
    """One plane's latent tables, stage by stage: ``tables()`` for the next stage (C, V), then
    ``add`` that stage's symbols (C, m) so that the stage after counts them."""

    def __init__(self, base: np.ndarray):
        self.base = np.asarray(base, dtype=np.int64)
        self.counts = np.zeros(self.base.shape, dtype=np.int64)

    def tables(self) -> np.ndarray:
        return mix_tables(self.base, self.counts, WEIGHT)

    def add(self, syms: np.ndarray) -> None:
        rows = np.broadcast_to(np.arange(self.base.shape[0])[:, None], syms.shape)
        self.counts += symbol_counts(syms, rows, self.base.shape)


def staged_plan(base: np.ndarray, syms: np.ndarray) -> list[tuple[int, int, np.ndarray]]:
    """The encoder's walk over a plane's symbols (C, n): per stage (start, end, tables (C, V))."""
    st = StagedTables(base)
    plan = []
    edges = stage_bounds(syms.shape[1])
    for a, b in zip(edges[:-1], edges[1:]):
        plan.append((a, b, st.tables()))
        st.add(syms[:, a:b])
    return plan


def staged_bits(base: np.ndarray, syms: np.ndarray) -> np.ndarray:
    """Code length (-log2 p) of every symbol of (C, n) as version 5 codes them, float64 (C, n)."""
    syms = np.asarray(syms, dtype=np.int64)
    out = np.zeros(syms.shape, dtype=np.float64)
    for a, b, t in staged_plan(base, syms):
        f = np.take_along_axis(t, syms[:, a:b], axis=1).astype(np.float64)
        out[:, a:b] = -np.log2(f / TOTAL)
    return out


def latent_code_bits(dec, z, staged: bool = True) -> np.ndarray:
    """Code length of every latent symbol of z (C, hz, wz) with the tables of ``dec`` (an
    ``IntegerDecoder``), float64 numpy: adapted to the slice (``staged``, bitstream version 5) or
    the model's fixed ones."""
    if not staged:
        return latent_bits_exact(z.to(dec.device), dec.latent_tables, dec.zmax).cpu().numpy()
    syms = dec.latent_symbols(z).cpu().numpy()
    return staged_bits(dec.latent_tables.cpu().numpy(), syms.reshape(syms.shape[0], -1)).reshape(syms.shape)
