"""Install a trained checkpoint as the shipped model: ``resources/lvpnet-v1.pt`` + card.

    python scripts/ship_weights.py checkpoints/NAME/best.pt checkpoints/NAME/eval.json

``eval.json`` is what ``python -m lvpnet.train --eval-only CKPT`` writes (every val image,
exact integer path). Writes beside the weights:

* ``lvpnet-v1.json``: sha256 of the weights, the val totals per image and per modality,
  and ``default_codec``: true only when the model beats the per-image best classical
  codec in total *and* in every modality on val (issue 3's "must"). ``lvpnet compress``
  makes the learned codec its default only then; otherwise the weights still serve
  ``--codec lvpnet`` and the Inspect maps, and the classical fallback stays the default.
* ``lvpnet-v1.md``: the model card the training run wrote, next to the weights
  (``--keep-card``: left as it is, to refresh the figures of the weights already shipped).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from collections import defaultdict
from pathlib import Path

RES = Path(__file__).resolve().parents[1] / "resources"
CODEC_VERSION = 7  # the learned codec's bitstream version the eval's estimates model (lvpnet.model.slice_bits)


def modality_ratios(images: list[dict]) -> dict[str, float]:
    bits, best = defaultdict(float), defaultdict(float)
    for im in images:
        bits[im["modality"]] += im["bpsp"] * im["n"]
        best[im["modality"]] += im["best"] * im["n"]
    return {m: bits[m] / best[m] for m in sorted(bits)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("eval_json")
    ap.add_argument("--keep-card", action="store_true",
                    help="keep resources/lvpnet-v1.md (refresh the figures of weights already shipped)")
    args = ap.parse_args(argv)
    ck = Path(args.checkpoint)
    ev = json.loads(Path(args.eval_json).read_text())
    sha = hashlib.sha256(ck.read_bytes()).hexdigest()
    if ev.get("sha256") not in (None, sha):
        raise SystemExit(f"{args.eval_json} evaluates other weights ({ev['sha256'][:12]}...), not {ck}")
    val = ev["eval"]
    per_mod = modality_ratios(val["images"])
    wins = val["ratio"] < 1.0 and all(r < 1.0 for r in per_mod.values())
    card = {
        "weights": "lvpnet-v1.pt",
        "sha256": sha,
        "source_checkpoint": str(ck),
        "val_bpsp": val["bpsp"],
        "val_best_classical_bpsp": val["best_bpsp"],
        "val_ratio": val["ratio"],
        "val_ratio_per_modality": per_mod,
        "val_per_image": {im["id"]: {"bpsp": im["bpsp"], "best": im["best"], "ratio": im["ratio"]} for im in val["images"]},
        "default_codec": bool(wins),
        "codec_version": CODEC_VERSION,
        "note": "estimated bits (exact integer tables, pixels + latent); file bytes in BENCHMARKS.md",
    }
    if ck.resolve() != (RES / "lvpnet-v1.pt").resolve():  # refreshing the card of the shipped weights
        shutil.copyfile(ck, RES / "lvpnet-v1.pt")
    (RES / "lvpnet-v1.json").write_text(json.dumps(card, indent=1) + "\n")
    md = ck.with_name("model_card.md")
    if md.is_file() and not args.keep_card:
        shutil.copyfile(md, RES / "lvpnet-v1.md")
    print(f"shipped {ck} ({sha[:12]}...): val ratio {val['ratio']:.4f}, per modality "
          + ", ".join(f"{m} {r:.3f}" for m, r in per_mod.items())
          + f"; default codec: {'lvpnet' if wins else 'fallback'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
