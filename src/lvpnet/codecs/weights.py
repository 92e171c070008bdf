"""Which weights the learned codec uses: the shipped ones, retired ones, ``$LVPNET_WEIGHTS``.

A ``.lvp`` header records the sha256 of the weights that wrote it (``file_sha256``);
``weights_for_model`` finds shipped weights, current or retired, by that id, so files written
before an upgrade keep opening. No torch here: the codec and the engine both import this.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

WEIGHTS_NAME = "lvpnet-v1.pt"  # the current shipped weights (the name stays; the card says which)
CARD_NAME = "lvpnet-v1.json"
WEIGHTS_ENV = "LVPNET_WEIGHTS"
RETIRED_DIR = "retired"  # earlier shipped weights, lvpnet-<first 16 hex digits of sha256>.pt


def shipped_weights() -> Path | None:
    """The weights shipped in ``lvpnet.resources``, or None when not installed."""
    try:
        from ..resources import path
    except ImportError:  # pragma: no cover - resources are part of the package
        return None
    p = path(WEIGHTS_NAME)
    return p if p.is_file() else None


def retired_dir() -> Path | None:
    """Where earlier shipped weights live, so files they wrote keep opening after an upgrade."""
    try:
        from ..resources import path
    except ImportError:  # pragma: no cover - resources are part of the package
        return None
    return path(RETIRED_DIR)


def file_sha256(path) -> str:
    """sha256 of a file (weights: the id a ``.lvp`` header records), cached per path and version."""
    st = os.stat(path)
    return _file_sha256(os.fspath(path), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=16)
def _file_sha256(path: str, mtime_ns: int, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weights_for_model(sha256: str) -> Path | None:
    """The shipped weights, current or retired, whose sha256 is ``sha256`` (None: not shipped)."""
    if not isinstance(sha256, str) or not sha256:
        return None
    cands = [shipped_weights()]
    d = retired_dir()
    if d is not None and d.is_dir():
        cands += sorted(d.glob(f"lvpnet-{sha256[:16]}*.pt"))
    for p in cands:
        if p is not None and p.is_file() and file_sha256(p) == sha256:
            return p
    return None


def shipped_card() -> dict:
    """The shipped weights' card (``lvpnet-v1.json`` beside them, written by
    ``scripts/ship_weights.py``); {} when there is none or it cannot be read."""
    w = shipped_weights()
    card = None if w is None else w.with_name(CARD_NAME)
    try:
        return json.loads(card.read_text()) if card is not None and card.is_file() else {}
    except (OSError, ValueError):
        return {}


def writes_prior_mode_latent(sha256: str | None) -> bool:
    """Whether the encoder writes, for the weights whose sha256 is ``sha256``, each latent channel's most
    probable value (``IntegerDecoder.prior_mode_latent``) instead of running the GMSM: only where their
    card says so (``"encoder_latent": "prior_mode"``), because on val the GMSM's latent cost bits there
    (``docs/MODEL.md``, "A latent that does not pay, not computed"). Any other weights run the GMSM. The
    decoder reads whatever latent a file holds: nothing about the format changes."""
    card = shipped_card()
    return bool(sha256) and card.get("sha256") == sha256 and card.get("encoder_latent") == "prior_mode"


def shipped_is_default() -> bool:
    """True when the shipped model beat the classical codecs on val (its card says so)."""
    return bool(shipped_card().get("default_codec"))


def default_weights() -> Path | None:
    """``$LVPNET_WEIGHTS`` when set, else the shipped weights (None when neither exists)."""
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        return Path(env)
    return shipped_weights()
