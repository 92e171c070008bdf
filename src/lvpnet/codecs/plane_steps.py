"""The encoder's walked steps of one plane -> fitted records, scale offsets and items.

``Engine.encode_plane`` walks the network over a plane once and records each step
(``coding.fitting.StepRecord``); what follows works on runs of those records: fit them
(refinement and error feedback, ``coding.fitting``), plan their scale offsets
(``coding.stage.ScaleOffsets``) and turn them into the pixel stream's items
(``coding.item_stage.StepItems``). The lattice-first choice (``Engine._lattice_first``) does this
for parts of the walk before it knows which steps JPEG-XL takes, so these are one object's
methods, built once per plane, rather than closures handed around.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..coding.adapt import make_item
from ..coding.fitting import SliceFitting, StepRecord
from ..coding.item_stage import StepItems
from ..coding.profiles import Profile
from ..coding.stage import ScaleOffsets

if TYPE_CHECKING:
    from .lvpnet_engine import Engine


@dataclass
class PlaneSteps:
    engine: Engine
    profile: Profile
    v: np.ndarray  # the plane's values, minimum 0
    R: int
    fits: SliceFitting | None  # None: a profile without refinement
    ref_plane: np.ndarray | None
    scale_offsets: ScaleOffsets | None  # the profile's stage, if it has one
    beat: Callable[[], None] | None = None  # called after each step's fit: a Cancel lands there (``progress.tick``)

    def fitted(self, recs: list[StepRecord]) -> list[StepRecord]:
        """The records with their refined ``mu`` and fed-back ``s`` (as they come without fits)."""
        if self.fits is None:
            return recs
        step, out = self.fits.step, []
        for r in recs:
            out.append(StepRecord(r.k, r.values, *step(r.k, r.pos, r.values, r.mu, r.s, r.row), r.pos, r.row))
            if self.beat is not None:
                self.beat()
        return out

    def offsets_of(self, recs: list[StepRecord]):
        """The scale offsets of these steps (``ScaleOffsets.plan``), None without that stage."""
        if self.scale_offsets is None:
            return None
        return self.scale_offsets.plan(recs, self.R, self.engine.dec)

    def itemised(self, recs: list[StepRecord], offsets) -> StepItems:
        """The records' items and extras, in their order (step 0's rows grouped: their symbols and
        table rows in one call)."""
        eng, profile, v, R = self.engine, self.profile, self.v, self.R
        dec, f = eng.dec, eng.dec.f
        items, extras = [], []
        i = 0
        while i < len(recs):
            j = i + 1
            while recs[i].row is not None and j < len(recs) and recs[j].k == recs[i].k and recs[j].row is not None:
                j += 1
            group, k = recs[i:j], recs[i].k
            sub, mu, s = (np.concatenate([getattr(r, n) for r in group]) for n in ("values", "mu", "s"))
            s = ScaleOffsets.apply(s, offsets, k, eng.cfg.n_scales)
            sym, low, nb, esc = dec.symbols(torch.from_numpy(sub), torch.from_numpy(mu), torch.from_numpy(s))
            sym, low, nb, esc = sym.numpy(), low.numpy(), nb.numpy(), esc.numpy()
            extra_bits = np.where(esc, np.log2(R + 1.0), nb)
            trows = eng.table_rows(mu, s, profile.edge_classes)
            for n, (_k, sub_n, _mu, _s, pos, row) in enumerate(group):
                at, part = (pos, slice(None)) if row is None else ((pos[0] + row * f, pos[1]), slice(n, n + 1))
                ms = (mu[part], s[part]) if profile.adaptive_flags else (None, None)
                items.append(make_item(k, sym[part], trows[part], extra_bits[part], sub_n, at, v, dec.order, f,
                                       profile.adapted_tables, row, profile.min_flags, self.ref_plane, *ms))
                extras.append(np.where(esc[part], sub_n, low[part]).reshape(-1))
            i = j
        return StepItems(items, extras)
