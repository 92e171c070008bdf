"""Install a trained checkpoint as the shipped model: ``resources/lvpnet-v1.pt`` + card.

    python scripts/ship_weights.py checkpoints/NAME/best.pt checkpoints/NAME/eval.json [--files val.json]

``eval.json`` is what ``python -m lvpnet.train --eval-only CKPT`` writes (every val image,
exact integer path); ``--files`` takes what ``benchmarks/run_val.py --codec lvpnet --json``
writes with these weights installed (real ``.lvp`` bytes of the current bitstream). Writes
beside the weights:

* ``lvpnet-v1.json``: sha256 of the weights, the val totals per image and per modality,
  and ``default_codec``: whether ``lvpnet compress`` makes the learned codec its default
  (otherwise the weights still serve ``--codec lvpnet`` and the Inspect maps, and the
  classical fallback stays the default). With ``--files`` it is decided on the files
  ``compress`` writes: learned slices with the per-slice safety net, below the per-image best
  classical codec in total *and* in every modality of at least two val images (issue 3's
  "must": a user is never better off with JPEG-XL; issue 17 counts modalities as that, since one
  image is one scanner, not a modality), and the learned codec alone below it in total (it does
  the work, not the fallback). Without ``--files``, on the estimate: the learned codec alone
  below it in total and in every such modality.
* ``lvpnet-v1.md``: the model card the training run wrote, next to the weights
  (``--keep-card``: left as it is, to refresh the figures of the weights already shipped).

A new card has no ``encoder_latent``: the encoder runs the GMSM for the new weights. Set it to
``"prior_mode"`` (with an ``encoder_latent_note``) only when measured on val that the GMSM's latent
does not pay for these weights (``benchmarks/latent_prior_mode.md`` says how), as for the weights
shipped in session 30.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from collections import Counter, defaultdict
from pathlib import Path

RES = Path(__file__).resolve().parents[1] / "resources"
CODEC_VERSION = 7  # the learned codec's bitstream version the eval's estimates model (lvpnet.coding.estimate.slice_bits)


def file_figures(report: dict, best: dict[str, float], modality: dict[str, str], sha: str) -> dict:
    """The val files' real bits (``run_val.py --json``): with the safety net and the learned codec alone,
    in total and per modality, against the per-image best classical codec of the eval."""
    acc: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])  # combined, alone, best bits
    count: dict[str, int] = defaultdict(int)
    versions = set()
    for r in report["inputs"]:
        ours = r["lvpnet"]
        other = {ours.get("model"), (ours.get("learned_only") or {}).get("model")} - {None, sha}
        if other:
            raise SystemExit(f"the report's {r['input']} was coded with other weights ({other.pop()[:12]}...)")
        if r["input"] not in best:
            raise SystemExit(f"the report's {r['input']} is not among the eval's val images")
        alone = (ours.get("learned_only") or ours)["bits_per_sample"]
        if ours.get("learned_only") is None and set(ours["codecs"]) != {"lvpnet"}:
            raise SystemExit(f"the report has no learned-alone figure for {r['input']}: run it with --codec lvpnet")
        versions.update(ours.get("versions", {}).get("lvpnet", []))
        n = r["samples"]
        count[modality[r["input"]]] += 1
        for key in ("total", modality[r["input"]]):
            acc[key][0] += ours["bits_per_sample"] * n
            acc[key][1] += alone * n
            acc[key][2] += best[r["input"]] * n
    if set(best) - {r["input"] for r in report["inputs"]}:
        raise SystemExit(f"the report lacks val images: {sorted(set(best) - {r['input'] for r in report['inputs']})}")
    tot = acc.pop("total")
    return {
        "codec_versions": sorted(versions),
        "bpsp": tot[0] / sum(r["samples"] for r in report["inputs"]),
        "ratio": tot[0] / tot[2],
        "ratio_per_modality": {m: a[0] / a[2] for m, a in sorted(acc.items())},
        "learned_alone_ratio": tot[1] / tot[2],
        "learned_alone_ratio_per_modality": {m: a[1] / a[2] for m, a in sorted(acc.items())},
        "images_per_modality": dict(sorted(count.items())),
        "note": "real .lvp bytes (benchmarks/run_val.py): learned slices with the per-slice safety net, and alone",
    }


#: a modality with fewer val images than this is in the totals but cannot decide alone (issue 17's musts)
MIN_IMAGES = 2


def wins(figures: dict | None, per_mod: dict[str, float], ratio: float, images: dict[str, int]) -> bool:
    """The rule of the module docstring: on the files when measured, else on the estimate.
    ``images``: how many val images each modality has."""
    def each(ratios: dict[str, float]) -> bool:
        return all(r < 1.0 for m, r in ratios.items() if images.get(m, 0) >= MIN_IMAGES)

    if figures is not None:
        return figures["ratio"] < 1.0 and each(figures["ratio_per_modality"]) and figures["learned_alone_ratio"] < 1.0
    return ratio < 1.0 and each(per_mod)


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
    ap.add_argument("--files", type=Path, default=None,
                    help="benchmarks/run_val.py --codec lvpnet --json output made with these weights: decide on real files")
    args = ap.parse_args(argv)
    ck = Path(args.checkpoint)
    ev = json.loads(Path(args.eval_json).read_text())
    sha = hashlib.sha256(ck.read_bytes()).hexdigest()
    if ev.get("sha256") not in (None, sha):
        raise SystemExit(f"{args.eval_json} evaluates other weights ({ev['sha256'][:12]}...), not {ck}")
    val = ev["eval"]
    per_mod = modality_ratios(val["images"])
    files = None
    if args.files is not None:
        images = val["images"]
        files = file_figures(json.loads(args.files.read_text()), {im["id"]: im["best"] for im in images},
                             {im["id"]: im["modality"] for im in images}, sha)
    default = wins(files, per_mod, val["ratio"], Counter(im["modality"] for im in val["images"]))
    card = {
        "weights": "lvpnet-v1.pt",
        "sha256": sha,
        "source_checkpoint": str(ck),
        "val_bpsp": val["bpsp"],
        "val_best_classical_bpsp": val["best_bpsp"],
        "val_ratio": val["ratio"],
        "val_ratio_per_modality": per_mod,
        "val_per_image": {im["id"]: {"bpsp": im["bpsp"], "best": im["best"], "ratio": im["ratio"]} for im in val["images"]},
        "default_codec": default,
        "codec_version": CODEC_VERSION,
        "note": "estimated bits (exact integer tables, pixels + latent); file bytes in BENCHMARKS.md",
    }
    if files is not None:
        card["val_files"] = files
    try:  # the same weights' card refreshed: what was measured of their latent stays
        old = json.loads((RES / "lvpnet-v1.json").read_text())
    except (OSError, ValueError):
        old = {}
    if old.get("sha256") == sha:
        card.update({k: old[k] for k in ("encoder_latent", "encoder_latent_note") if k in old})
    if ck.resolve() != (RES / "lvpnet-v1.pt").resolve():  # refreshing the card of the shipped weights
        shutil.copyfile(ck, RES / "lvpnet-v1.pt")
    (RES / "lvpnet-v1.json").write_text(json.dumps(card, indent=1) + "\n")
    md = ck.with_name("model_card.md")
    if md.is_file() and not args.keep_card:
        shutil.copyfile(md, RES / "lvpnet-v1.md")
    print(f"shipped {ck} ({sha[:12]}...): val ratio {val['ratio']:.4f}, per modality "
          + ", ".join(f"{m} {r:.3f}" for m, r in per_mod.items())
          + ("" if files is None else f"; files {files['ratio']:.4f} (learned alone {files['learned_alone_ratio']:.4f}), per "
             "modality " + ", ".join(f"{m} {r:.3f}" for m, r in files["ratio_per_modality"].items()))
          + f"; default codec: {'lvpnet' if default else 'fallback'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
