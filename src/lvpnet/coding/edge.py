"""Table contexts by the location's distance from the slice's minimum (bitstream version 6).

The adapted tables of ``coding.adapt`` count the decoded symbols per scale index ``s``: one
residual shape per scale. But near the slice's minimum the residual is not symmetric. An MR's
background is magnitude noise (Rician: never below 0, skewed up), and a pixel predicted at
``mu = 0.5 sigma`` has no room below it, while one at ``mu = 6 sigma`` is a logistic again. So
from version 6 on a pixel's table is indexed by ``(s, e)``, ``e`` = how many of the distances
``EDGE_STEPS`` (in units of the scale's sigma) the location ``mu`` lies above the minimum
(``R - mu`` for the top of the range measured the same: no gain on val, so not used). The
model's row ``T[s]`` is the prior of every class; the counts are per class.

Measured on val before building it (estimate, the shipped weights, one slice each): DWI
mosaics -1.15% and -1.18%, axasc -0.96%, FLAIR -0.78%, MIP -0.33%, dipy -0.25%, CT -0.23%,
PD -0.14%, shoulders and the small MR series within +-0.05%. 3 classes by 1, 2 and 3 sigma gave
two thirds of that; 8 classes up to 12 sigma the same as these 6.

Integer-exact: ``thresholds`` are ``ceil(c sigma_s)``; no ``c sigma_s`` lies within 1e-6 of
an integer (a test checks it), so a last-place difference of ``2**x`` between machines cannot
move one, and the class is integer comparisons after that.
"""

from __future__ import annotations

import functools

import numpy as np

from ..model.tables import scale_sigmas
from .jit import compiled

EDGE_STEPS = (1, 2, 3, 4, 6)  # class edges, in units of the scale's sigma
CLASSES = len(EDGE_STEPS) + 1


def thresholds(n_scales: int, per_octave: int, sigma_min: float) -> np.ndarray:
    """(n_scales, len(EDGE_STEPS)) int64: the least integer location at or beyond each edge."""
    sig = scale_sigmas(n_scales, per_octave, sigma_min)
    return np.ceil(sig[:, None] * np.asarray(EDGE_STEPS, np.float64)[None]).astype(np.int64)


def config_thresholds(cfg) -> np.ndarray:
    """``thresholds`` of a model's config (``ModelConfig``), read-only and computed once: the
    table rows of every plane and step the model codes use them."""
    return _thresholds_once(cfg.n_scales, cfg.per_octave, cfg.sigma_min)


@functools.lru_cache(maxsize=8)
def _thresholds_once(n_scales: int, per_octave: int, sigma_min: float) -> np.ndarray:
    thr = thresholds(n_scales, per_octave, sigma_min)
    thr.flags.writeable = False  # one array shared by every caller
    return thr


def table_index(mu: np.ndarray, s: np.ndarray, thr: np.ndarray) -> np.ndarray:
    """Each pixel's table row ``s * CLASSES + e`` (int64, shaped like ``s``) for locations ``mu``
    (as coded, in ``[0, R]``) and scale indices ``s`` (as coded)."""
    s = np.asarray(s, np.int64)
    mu = np.asarray(mu, np.int64)
    kernel = _table_index_kernel()
    if kernel and mu.shape == s.shape and s.size:
        out = np.empty(s.shape, np.int64)
        kernel(np.ascontiguousarray(mu).reshape(-1), np.ascontiguousarray(s).reshape(-1),
               np.ascontiguousarray(thr, np.int64), CLASSES, out.reshape(-1))
        return out
    e = (mu[..., None] >= thr[s]).sum(axis=-1)
    return s * CLASSES + e


def _table_index(mu, s, thr, classes, out):
    """``table_index`` pixel by pixel in one pass (numpy builds a (pixels, edges) array of each
    pixel's thresholds first)."""
    for p in range(mu.size):
        row = thr[s[p]]
        e = 0
        for c in range(row.size):
            e += mu[p] >= row[c]
        out[p] = s[p] * classes + e


def _table_index_kernel():
    """``_table_index`` compiled by numba, or False without it (the numpy path, the same rows)."""
    return compiled(_table_index)


def expand(a: np.ndarray) -> np.ndarray:
    """Per-scale rows (tables, bin shifts) repeated for every class: row ``s * CLASSES + e`` is row ``s``."""
    return np.repeat(np.asarray(a), CLASSES, axis=0)
