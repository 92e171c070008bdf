"""`lvpnet bench` on every `val` array of the shared corpus; writes BENCHMARKS.md and the chart.

Usage: python benchmarks/run_val.py [--data DIR] [--codec NAME] [--md PATH] [--png PATH]

DATA defaults to ../shared/data (beside the repository), the markdown to
BENCHMARKS.md at the repository top and the chart to benchmarks/val_bits.png.
Arrays are read from the manifest's .npz files ("image" key) and wrapped as
Volume(array, rgb=manifest["rgb"]) directly. Whatever codec `lvpnet compress`
uses by default is what is measured, unless --codec names one; figures a
codec reports per chunk (latent and pixel bits, the model's estimate) get
their own columns automatically.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
from pathlib import Path

import numpy as np

import lvpnet
from lvpnet import bench, classical
from lvpnet.atomic import atomic_path
from lvpnet.bench_plot import plot_bits
from lvpnet.progress import run

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def baseline_best(path: Path) -> dict[str, float]:
    """id -> the `best` column of baselines-val.md (empty when the file is not there)."""
    if not path.exists():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 3 and re.fullmatch(r"[A-Za-z0-9_\-]+", cells[0]) and cells[0] not in ("id",):
            try:
                out[cells[0]] = float(cells[-1])
            except ValueError:
                pass
    return out


def _f(x, nd=3):
    return "-" if x is None else f"{x:.{nd}f}"


def markdown(rep: dict, meta: dict[str, dict], base: dict[str, float], png_rel: str, data_dir: Path) -> str:
    import imagecodecs

    ids = list(rep["classical_codecs"])
    keys = rep["stat_keys"]
    t = rep["totals"]
    used = ", ".join(f"{k} ({v} slices)" for k, v in rep["codecs_used"].items())
    L = [
        "# Benchmarks",
        "",
        f"`lvpnet bench` on the {len(rep['inputs'])} `val` arrays of the shared corpus "
        f"({t['samples'] / 1e6:.2f} M samples), written by `benchmarks/run_val.py`.",
        "",
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {rep['machine']}",
        f"- lvpnet {rep['lvpnet_version']}, codec: {rep['codec']}; slices coded by: {used}",
        f"- classical codecs: imagecodecs {imagecodecs.__version__}, one thread, each 2-D slice coded after "
        "subtracting its minimum (uint8 or uint16; RGB as one 3-channel image), every slice round-tripped",
        "- lvpnet: real `.lvp` file bytes (container, header and checksums included), encoded in memory "
        "without the verification pass, then decoded (all checksums checked) and compared bit for bit; the "
        "arrays as bare Volumes, so `lvpnet compress` or `lvpnet bench` on the `.npz` files writes about 100 bytes "
        "more a file (the `.npz`'s numpy metadata in the header)",
        "- the classical baseline is these six codecs; the safety net also tries JPEG-XL effort 10 on 8-bit slices "
        "(`benchmarks/e10_baseline.md`: the ultrasound against effort 10 too)",
        "",
        "## Bits per sample (lower is better)",
        "",
        "`best` is the smallest classical codec measured here; `baseline best` the `best` column of "
        "`../shared/baselines-val.md`; `ratio` is lvpnet over `baseline best` (over `best` where the "
        "baseline lacks the image).",
        "",
    ]
    head = ["id", "modality", "shape", "lvpnet", *[bench.STAT_LABELS.get(k, k) for k in keys],
            *[rep["classical_codecs"][i] for i in ids], "best", "baseline best", "ratio"]
    rows = []
    for r in rep["inputs"]:
        st = r["lvpnet"]["stats"] or {}
        ref = base.get(r["input"], (r["best_classical"] or {}).get("bits_per_sample"))
        ours = r["lvpnet"]["bits_per_sample"]
        rows.append([r["input"], meta[r["input"]]["modality"], "x".join(map(str, r["shape"])), _f(ours),
                     *[_f(st.get(k + "_per_sample")) for k in keys],
                     *[_f(r["classical"].get(i, {}).get("bits_per_sample")) for i in ids],
                     _f((r["best_classical"] or {}).get("bits_per_sample")), _f(ref),
                     _f(ours / ref if ref else None)])
    samples = t["samples"]
    base_total = sum(base.get(r["input"], (r["best_classical"] or {}).get("bits_per_sample") or 0) * r["samples"]
                     for r in rep["inputs"]) / samples
    st = t["lvpnet"]["stats"] or {}
    rows.append(["total", "", f"{samples / 1e6:.2f} M samples", _f(t["lvpnet"]["bits_per_sample"], 4),
                 *[_f(st.get(k + "_per_sample"), 4) for k in keys],
                 *[_f(t["classical"].get(i, {}).get("bits_per_sample"), 4) for i in ids],
                 _f(t["best_classical_bits_per_sample"], 4), _f(base_total, 4),
                 _f(t["lvpnet"]["bits_per_sample"] / base_total, 4)])
    L += [bench.grid(head, rows, markdown=True, bold_last=True), ""]

    L += ["Totals are sample-weighted (total bits over total samples); the latent, pixel and estimate columns "
          "are per sample of the slices the learned codec kept, so their totals leave out the slices the "
          "safety net gave to the fallback (mostly the ultrasound's few bits) and stand above lvpnet's. "
          "The target of issue 3 is a total "
          f"ratio of at most 0.90 (lvpnet at most {0.9 * base_total:.2f} bits per sample); below 1.00 in every "
          "modality is a must.", "", "### Per modality", ""]
    mods: dict[str, list] = {}
    for r in rep["inputs"]:
        mods.setdefault(meta[r["input"]]["modality"], []).append(r)
    mrows = []
    for m, rs in sorted(mods.items()):
        n = sum(r["samples"] for r in rs)
        ours = sum(8 * r["lvpnet"]["file_bytes"] for r in rs) / n
        ref = sum(base.get(r["input"], (r["best_classical"] or {}).get("bits_per_sample") or 0) * r["samples"]
                  for r in rs) / n
        mrows.append([m, str(len(rs)), f"{n / 1e6:.2f} M", _f(ours, 4), _f(ref, 4), _f(ours / ref if ref else None, 4)])
    L += [bench.grid(["modality", "images", "samples", "lvpnet", "baseline best", "ratio"], mrows, markdown=True),
          ""]

    L += learned_alone(rep, meta, base)

    L += ["## Speed", "", "Million samples per second, encode / decode, on the machine above "
          "(lvpnet: the whole `.lvp`, container and checksums included).", ""]
    shead = ["id", "lvpnet", *[rep["classical_codecs"][i] for i in ids]]
    srows = [[r["input"], bench.speed_cell(r["lvpnet"]), *[bench.speed_cell(r["classical"].get(i)) for i in ids]]
             for r in rep["inputs"]]
    srows.append(["total", bench.speed_cell(t["lvpnet"]), *[bench.speed_cell(t["classical"].get(i)) for i in ids]])
    L += [bench.grid(shead, srows, markdown=True, bold_last=True), ""]

    L += ["## Chart", "", f"![bits per sample on val]({png_rel})", "",
          "## Container overhead", "",
          f"{t['lvpnet']['container_bytes']:,} bytes over {len(rep['inputs'])} files "
          f"({8 * t['lvpnet']['container_bytes'] / samples:.4f} bits per sample of the total): "
          "header, chunk index, checksums.", "",
          "## Reproduce", "", "```", "python benchmarks/run_val.py            # this file and benchmarks/val_bits.png",
          "lvpnet bench scan.nii.gz --json --plot bits.png   # any input", "```", ""]
    return "\n".join(L)


def learned_alone(rep: dict, meta: dict[str, dict], base: dict[str, float]) -> list[str]:
    """The learned codec's own real file bits (no safety net) beside the combined ones."""
    rows, tot, mods = [], [0.0, 0.0, 0.0, 0], {}
    for r in rep["inputs"]:
        ours = r["lvpnet"]["bits_per_sample"]
        lo = r["lvpnet"].get("learned_only")
        alone = lo["bits_per_sample"] if lo else (ours if set(r["lvpnet"].get("codecs", {})) == {"lvpnet"} else None)
        if alone is None:
            return []
        ref = base.get(r["input"], (r["best_classical"] or {}).get("bits_per_sample"))
        n = r["samples"]
        rows.append([r["input"], meta[r["input"]]["modality"], _f(alone), _f(ours), _f(ref), _f(alone / ref)])
        for acc in (tot, mods.setdefault(meta[r["input"]]["modality"], [0.0, 0.0, 0.0, 0])):
            acc[0] += alone * n
            acc[1] += ours * n
            acc[2] += ref * n
            acc[3] += n
    for m, (a, o, b, n) in sorted(mods.items()):
        rows.append([f"{m} (all)", "", _f(a / n, 4), _f(o / n, 4), _f(b / n, 4), _f(a / b, 4)])
    a, o, b, n = tot
    rows.append(["total", "", _f(a / n, 4), _f(o / n, 4), _f(b / n, 4), _f(a / b, 4)])
    return ["## The learned codec alone", "",
            "Real `.lvp` bits per sample with every slice coded by the learned codec (`--codec lvpnet "
            "--no-safety-net`), beside the combined file above (per slice the smaller of learned and "
            "fallback) and the baseline best classical codec.", "",
            bench.grid(["id", "modality", "learned alone", "combined", "baseline best", "ratio alone"], rows,
                       markdown=True, bold_last=True), ""]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=SHARED / "data")
    ap.add_argument("--codec", default=None)
    ap.add_argument("--md", type=Path, default=REPO / "BENCHMARKS.md")
    ap.add_argument("--png", type=Path, default=REPO / "benchmarks" / "val_bits.png")
    ap.add_argument("--json", type=Path, default=None, help="also write the raw report here")
    args = ap.parse_args(argv)

    if not (args.data / "manifest.json").exists():  # the corpus is not shipped with the code
        raise SystemExit(f"run_val.py: no manifest.json in {args.data}: give the corpus folder with --data DIR")
    manifest = json.loads((args.data / "manifest.json").read_text())
    entries = [e for e in manifest["items"] if e["split"] == "val"]
    items = []
    for e in entries:
        with np.load(args.data / e["file"]) as z:
            items.append((e["id"], lvpnet.Volume(array=z["image"], rgb=bool(e["rgb"])), None))

    def progress(p):
        print(f"\r{p.done}/{p.total} slice codings", end="", file=sys.stderr, flush=True)

    rep = run(bench.bench_volumes(items, codec=args.codec, classical_ids=tuple(classical.ALL_CODECS)), progress)
    print(file=sys.stderr)
    meta = {e["id"]: e for e in entries}
    base = baseline_best(SHARED / "baselines-val.md")
    args.png.parent.mkdir(parents=True, exist_ok=True)
    plot_bits(rep, args.png, title=f"val split: bits per sample (lvpnet {rep['lvpnet_version']}, real file bytes)")
    try:
        png_rel = args.png.resolve().relative_to(args.md.resolve().parent).as_posix()
    except ValueError:
        png_rel = str(args.png)
    text = markdown(rep, meta, base, png_rel, args.data)
    with atomic_path(args.md) as tmp:
        tmp.write_text(text)
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(rep, indent=1))
    t = rep["totals"]
    print(f"lvpnet {t['lvpnet']['bits_per_sample']:.4f} bits/sample, best classical "
          f"{t['best_classical_bits_per_sample']:.4f}, ratio {t['ratio_to_best']:.4f}; wrote {args.md} and {args.png}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
