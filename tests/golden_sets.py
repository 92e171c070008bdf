"""Where the learned codec's golden sets live: ``tests/data/golden/<set>/`` and their weights.

A set is named by the bitstream version its chunks hold (``b1`` .. ``b10``; ``b2-head2`` holds
bitstream 2 written by the head-2 weights, ``b2`` the same bitstream by the head-3 weights that
every later set shares). Weights are stored once, in ``weights/<first 12 hex digits of their
sha256>.pt``; each set's ``expected.json`` names its weights by ``model_sha256``. Regenerate
deliberately with ``tests/data/golden/make_golden.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

GOLDEN = Path(__file__).resolve().parent / "data" / "golden"
WEIGHTS = GOLDEN / "weights"


def _order(name: str) -> tuple[int, str]:
    version, _, variant = name[1:].partition("-")
    return int(version), variant


SETS: dict[str, Path] = {p.name: p for p in sorted((p for p in GOLDEN.iterdir() if (p / "expected.json").exists()),
                                                    key=lambda p: _order(p.name))}
EXPECTED: dict[str, dict] = {k: json.loads((d / "expected.json").read_text()) for k, d in SETS.items()}


def weights_of(which: str) -> Path:
    """The weights file of set ``which`` (by the sha256 its expected.json records)."""
    return WEIGHTS / f"{EXPECTED[which]['model_sha256'][:12]}.pt"


def writer(which: str, version: int):
    """A learned codec with set ``which``'s weights that writes bitstream ``version`` (older
    versions are written to check what they code, not only what they read)."""
    from lvpnet.codecs.lvpnet_codec import LVPNetCodec

    c = LVPNetCodec(weights_of(which), device="cpu")
    c.version = version
    return c
