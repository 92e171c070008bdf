"""Bitstream 9 against 8 (and 10 against 9, ``bitstream10_val.md``) on the whole val split: the
learned codec alone, real chunk bytes.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bitstream9_val.py --version 9 [--label L] --json out.json
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bitstream9_val.py --version 11 --without refined --json out.json
    .venv/bin/python benchmarks/bitstream9_val.py --compare a.json b.json [--out benchmarks/bitstream9_val.md]
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bitstream9_val.py --version 11 --split trainus --json out.json

Every slice of every ``val`` array of the shared corpus (``manifest.json``; a volume gives all its
slices, an RGB slice is one chunk) is coded by ``LVPNetCodec`` in the version asked, each slice
alone (no previous-slice reference: bitstream 8's reference flags off, so the versions differ only
in what they change), and its chunk's bytes are summed per array. ``--compare`` prints bits per sample per modality and in total, and the
change of the second file against the first; ``--out`` writes that table as markdown.
``--split trainus``: the train split's ultrasound arrays instead, the middle frame of each (as
``us_levers.py``): more RGB images than val's two, to see whether a change for them is general.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def val_arrays(data: Path, split: str = "val"):
    man = json.loads((data / "manifest.json").read_text())
    for it in man["items"]:
        if split == "trainus" and not (it["split"] == "train" and it["modality"] == "US"):
            continue
        if split == "val" and it["split"] != "val":
            continue
        with np.load(data / it["file"]) as f:
            a = f["image"]
        rgb = bool(it.get("rgb", False))
        frame = a.shape[-3:] if rgb else a.shape[-2:]
        slices = a.reshape((-1,) + tuple(frame))
        if split == "trainus":  # the middle frame only
            slices = slices[len(slices) // 2 :][:1]
        yield it["id"], it["modality"], slices


def code(args) -> int:
    import torch

    torch.set_num_threads(1)
    from lvpnet.codecs.lvpnet_codec import LVPNetCodec
    codec = LVPNetCodec(args.weights, device="cpu") if args.weights else LVPNetCodec(device="cpu")
    codec.version = args.version
    if args.without:
        codec.version = without(args.version, args.without.split(","))
        codec.reads_versions = (*codec.reads_versions, codec.version)  # --verify decodes it in this process
    out = {"version": args.version, "label": args.label or f"v{args.version}", "arrays": {},
           "without": args.without or "", "weights": args.weights or "shipped"}
    t0 = time.perf_counter()
    for name, modality, slices in val_arrays(Path(args.data), args.split):
        nbytes, samples, t = 0, 0, time.perf_counter()
        digest = hashlib.sha256()  # the chunks themselves, so a speed change can show it moved no byte
        for x in slices:
            data = codec.encode(x)
            digest.update(data)
            if args.verify and not np.array_equal(codec.decode(data, x.shape, x.dtype, codec.version), x):
                raise SystemExit(f"{name}: does not decode")
            nbytes += len(data)
            samples += x.size
        out["arrays"][name] = {"modality": modality, "bytes": nbytes, "samples": samples,
                               "sha256": digest.hexdigest(), "seconds": time.perf_counter() - t}
        print(f"{name} {modality} {8 * nbytes / samples:.4f} bpsp {time.perf_counter() - t:.1f} s", flush=True)
    out["seconds"] = time.perf_counter() - t0
    Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


def without(version: int, names: list[str]) -> int:
    """A throwaway profile, bitstream ``version`` with the settings ``names`` off, registered in this
    process only (as version 1000 + ``version``): what each stage still buys on val, one left out at
    a time. Its chunks are not a declared version; they never leave this process."""
    from dataclasses import replace

    from lvpnet.coding import profiles

    base = profiles.profile(version)
    bad = [n for n in names if n not in base.settings() or not getattr(base, n)]
    if bad:
        raise SystemExit(f"--without: not a setting that version {version} has on: {', '.join(bad)}")
    test = replace(base, version=1000 + version, adds=frozenset(), **{n: False for n in names})
    profiles.PROFILES[test.version] = test
    return test.version


def totals(rep: dict) -> dict[str, tuple[int, int]]:
    acc: dict[str, list[int]] = {}
    for a in rep["arrays"].values():
        for key in (a["modality"], "all"):
            t = acc.setdefault(key, [0, 0])
            t[0] += a["bytes"]
            t[1] += a["samples"]
    return {k: (b, n) for k, (b, n) in acc.items()}


def baseline_best(md: Path) -> dict[str, float]:
    """id -> the per-image best classical codec's bits per sample (BENCHMARKS.md's learned-alone table)."""
    out = {}
    for line in md.read_text().split("ratio alone |", 1)[1].splitlines():
        c = [x.strip() for x in line.strip().strip("|").split("|")]
        if len(c) == 6 and c[1] and not c[0].startswith("-"):
            out[c[0]] = float(c[4])
    return out


def per_array(reps: list[dict], best: dict[str, float]) -> str:
    """Bytes per array in each run, the change, and per modality each run's ratio to the best."""
    label = lambda r: r.get("label") or f"v{r['version']}"  # noqa: E731
    lines = ["| array | modality | " + " | ".join(f"{label(r)} bytes" for r in reps) + " | "
             + " | ".join(f"{label(r)} vs {label(reps[0])}" for r in reps[1:]) + " |",
             "|" + "---|" * (2 + 2 * len(reps) - 1)]
    for name, a in sorted(reps[0]["arrays"].items(), key=lambda kv: (kv[1]["modality"], kv[0])):
        b = [r["arrays"][name]["bytes"] for r in reps]
        lines.append(f"| {name} | {a['modality']} | " + " | ".join(f"{x:,}" for x in b) + " | "
                     + " | ".join(f"{100 * (x / b[0] - 1):+.2f}%" for x in b[1:]) + " |")
    lines += ["", "| modality | best bits/sample | " + " | ".join(f"{label(r)} / best" for r in reps) + " |",
              "|" + "---|" * (2 + len(reps))]
    mods = sorted({a["modality"] for a in reps[0]["arrays"].values()}) + ["all"]
    for m in mods:
        names = [n for n, a in reps[0]["arrays"].items() if m in ("all", a["modality"]) and n in best]
        n = sum(reps[0]["arrays"][k]["samples"] for k in names)
        bb = sum(best[k] * reps[0]["arrays"][k]["samples"] for k in names)
        ratios = [8 * sum(r["arrays"][k]["bytes"] for k in names) / bb for r in reps]
        lines.append(f"| {m} | {bb / n:.4f} | " + " | ".join(f"{x:.4f}" for x in ratios) + " |")
    return "\n".join(lines)


def compare(paths: list[str], out: str | None, best_md: str | None = None) -> int:
    reps = [json.loads(Path(p).read_text()) for p in paths]
    tots = [totals(r) for r in reps]
    label = lambda r: r.get("label") or f"v{r['version']}"  # noqa: E731
    head = "| modality | " + " | ".join(f"{label(r)} bits/sample" for r in reps) + " | " + \
        " | ".join(f"{label(r)} vs {label(reps[0])}" for r in reps[1:]) + " |"
    lines = [head, "|" + "---|" * (1 + 2 * len(reps) - 1)]
    for key in sorted(tots[0], key=lambda k: (k == "all", k)):
        bps = [8 * t[key][0] / t[key][1] for t in tots]
        ch = [f"{100 * (b / bps[0] - 1):+.3f}%" for b in bps[1:]]
        lines.append(f"| {key} | " + " | ".join(f"{b:.4f}" for b in bps) + " | " + " | ".join(ch) + " |")
    text = "\n".join(lines)
    if best_md:
        text += "\n\n" + per_array(reps, baseline_best(Path(best_md)))
    print(text)
    if out:
        Path(out).write_text(text + "\n")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--version", type=int, default=9)
    ap.add_argument("--label", help="the run's name in --compare's table (default: v<version>)")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--split", choices=("val", "trainus"), default="val")
    ap.add_argument("--json")
    ap.add_argument("--verify", action="store_true")
    ap.add_argument("--weights", help="a checkpoint to code with (default: the shipped weights)")
    ap.add_argument("--without", help="comma-separated profile settings switched off (a leave-one-out run; "
                    "the engine's dependencies between settings are checked)")
    ap.add_argument("--compare", nargs="+")
    ap.add_argument("--out")
    ap.add_argument("--best", help="--compare: also per array, and the ratio to the per-image best classical "
                    "codec of this BENCHMARKS.md's learned-alone table (chunk bytes, no container)")
    args = ap.parse_args(argv)
    if args.compare:
        return compare(args.compare, args.out, args.best)
    return code(args)


if __name__ == "__main__":
    sys.exit(main())
