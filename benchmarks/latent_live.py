"""Is the GMSM latent alive? Varying channels, QCM error and the latent's ablation on the val split.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/latent_live.py [--weights W ...] [--slices 3]
        [--out benchmarks/latent_live.md] [--json F] [--ids ID ...] [--reuse JSON ... [--reuse-sha P ...]]

For each weights file (default: the shipped ones), on every ``val`` array of the shared corpus
(``manifest.json``): a 2-D image is one slice, a volume gives up to ``--slices`` evenly spaced
slices (``np.linspace(0, n - 1, k)`` rounded, so the choice is fixed by the shape alone). Per slice:

(a) **varying channels**: the share of the latent's channels (154 per grey plane; an RGB slice
    has 3 planes) whose symbol ``z`` is not the same in every 32 x 32 block of the slice (the
    ``z`` the codec writes, from ``Engine.encode_plane``);
(b) **QCM**: mean ``|y - y_hat|`` uncompensated and compensated, exactly as Inspect measures it
    (``lvpnet.analysis.analyse_slice``: its ``qcm_before`` / ``qcm_after`` block maps, averaged
    over the slice's blocks);
(c) **ablation**: the learned codec's estimated bits of the slice (``Engine.encode_plane(...,
    want_bits=True)`` under the codec's bitstream profile, base layer included: the estimate the
    real bytes follow), once with the real ``z`` and once with every channel's ``z`` replaced by
    its most frequent value in that plane (ties: the smallest value). The difference is what the
    latent saves. Each slice is coded alone (no previous-slice reference, bitstream 8's flags
    off), so the two codings differ only in ``z``.

``z`` is replaced by wrapping the engine's float encoder (``_ZHook``), so ``lvpnet.codecs`` is
used as it is. Estimates, not file bytes: the plane headers (vmin, range, gaps) are the same in
both codings and not counted. Everything runs on the CPU; set OMP_NUM_THREADS=1 for one thread.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from lvpnet.bench import machine

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def slice_indices(n: int, k: int) -> list[int]:
    """Up to k evenly spaced indices in [0, n): fixed by n and k alone, never by the content."""
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, min(n, k))})


def val_slices(data: Path, k: int, ids=None):
    """-> [(id, modality, rgb, [(index, 2-D or RGB slice), ...]), ...] over the val split, in manifest order."""
    man = json.loads((data / "manifest.json").read_text())
    out = []
    for it in man["items"]:
        if it["split"] != "val" or (ids and it["id"] not in ids):
            continue
        with np.load(data / it["file"]) as f:
            a = f["image"]
        rgb = bool(it.get("rgb", False))
        frame = a.shape[-3:] if rgb else a.shape[-2:]
        a = a.reshape((-1,) + tuple(frame))
        out.append((it["id"], it["modality"], rgb, [(i, a[i]) for i in slice_indices(a.shape[0], k)]))
    return out


def channel_mode(z):
    """``lvpnet.analysis.channel_mode`` on a torch ``z``, as Inspect's ablation computes it."""
    import torch

    from lvpnet.analysis import channel_mode as mode

    return torch.from_numpy(mode(z.cpu().numpy())).to(z.device)


class _ZHook:
    """Stands in for the engine's float encoder: the real ``z``, optionally replaced by ``transform``;
    the real one is kept in ``last`` (what the file would code)."""

    def __init__(self, net, transform=None):
        self.net, self.transform, self.last = net, transform, None

    def encode_slice(self, v, B=None, device=None):
        z = self.net.encode_slice(v, B, device=device)
        self.last = z
        return z if self.transform is None else self.transform(z)


def codec_planes(x: np.ndarray, rgb: bool) -> list[np.ndarray]:
    """The planes the learned codec codes for a slice: values on their grid, runs of unused values
    taken out (what ``LVPNetCodec.encode`` hands ``Engine.encode_plane``)."""
    from lvpnet.model import prep

    planes = prep.rgb_to_planes(x) if rgb else [np.asarray(x)]
    return [prep.collapse_gaps(prep.to_grid(p)[2])[0] for p in planes]


def measure_slice(engine, model, x: np.ndarray, rgb: bool) -> dict:
    from lvpnet.analysis import analyse_slice
    from lvpnet.codecs.lvpnet_codec import LVPNetCodec
    from lvpnet.coding.profiles import profile

    prof = profile(LVPNetCodec.version)  # what the codec writes now
    net = engine.model()
    real_bits = mode_bits = 0.0
    varying = channels = 0
    try:
        for p in codec_planes(x, rgb):
            hook = _ZHook(net)
            engine._model = hook
            real_bits += float(engine.encode_plane(p, prof, want_bits=True)[1])
            if hook.last is None:  # a constant plane: no latent is coded
                continue
            z = hook.last
            C = z.shape[0]
            flat = z.reshape(C, -1)
            varying += int((flat != flat[:, :1]).any(1).sum())
            channels += C
            engine._model = _ZHook(net, channel_mode)
            mode_bits += float(engine.encode_plane(p, prof, want_bits=True)[1])
    finally:
        engine._model = net
    maps = analyse_slice(x, model, rgb=rgb)
    return {
        "pixels": int(np.asarray(x).shape[0] * np.asarray(x).shape[1]) * (3 if rgb else 1),
        "varying": varying,
        "channels": channels,
        "blocks": int(maps.qcm_before.size),
        "qcm_before": float(maps.qcm_before.mean()),
        "qcm_after": float(maps.qcm_after.mean()),
        "bits_real": real_bits,
        "bits_mode": mode_bits,
    }


def summarise(rows: list[dict]) -> dict:
    ch = sum(r["channels"] for r in rows)
    blk = sum(r["blocks"] for r in rows)
    real = sum(r["bits_real"] for r in rows)
    mode = sum(r["bits_mode"] for r in rows)
    n = sum(r["pixels"] for r in rows)
    return {
        "slices": len(rows),
        "samples": n,
        "varying_pct": 100.0 * sum(r["varying"] for r in rows) / ch if ch else 0.0,
        # blocks weight the slices' means: the mean over every block (and channel) of the group
        "qcm_before": sum(r["qcm_before"] * r["blocks"] for r in rows) / blk if blk else 0.0,
        "qcm_after": sum(r["qcm_after"] * r["blocks"] for r in rows) / blk if blk else 0.0,
        "bpsp_real": real / n,
        "bpsp_mode": mode / n,
        "saved_pct": 100.0 * (mode - real) / real if real else 0.0,
    }


def run(weights: Path, images, log=print) -> dict:
    import torch

    from lvpnet.analysis import load_model
    from lvpnet.codecs.lvpnet_engine import Engine

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    engine = Engine(weights, "cpu")
    model = load_model(weights, "cpu")
    per_image = []
    for id_, modality, rgb, slices in images:
        t0 = time.perf_counter()
        rows = [measure_slice(engine, model, x, rgb) | {"index": i} for i, x in slices]
        s = summarise(rows) | {"id": id_, "modality": modality, "indices": [i for i, _ in slices], "rows": rows}
        per_image.append(s)
        log(f"  {id_:34s} {modality:3s} slices {s['indices']}: varying {s['varying_pct']:5.1f}%  "
            f"qcm {s['qcm_before']:.3f} -> {s['qcm_after']:.3f}  bpsp {s['bpsp_real']:.4f} / z=mode "
            f"{s['bpsp_mode']:.4f} ({s['saved_pct']:+.2f}%)  {time.perf_counter() - t0:.1f}s")
    all_rows = [r for s in per_image for r in s["rows"]]
    mods = sorted({s["modality"] for s in per_image})
    return {
        "weights": str(weights),
        "sha256": sha256(weights),
        "images": per_image,
        "modalities": {m: summarise([r for s in per_image if s["modality"] == m for r in s["rows"]]) for m in mods},
        "total": summarise(all_rows),
    }


def _short(weights: str) -> str:
    """A weights file's name, with its folder when the name alone says nothing (``best.pt``)."""
    p = Path(weights)
    return f"{p.parent.name}/{p.name}" if p.name == "best.pt" else p.name


def _row(name: str, s: dict) -> str:
    return (f"| {name} | {s['slices']} | {s['samples']} | {s['varying_pct']:.1f} | {s['qcm_before']:.3f} | "
            f"{s['qcm_after']:.3f} | {s['bpsp_real']:.4f} | {s['bpsp_mode']:.4f} | {s['saved_pct']:+.2f} |")


def markdown(results: list[dict], k: int, command: str, seconds: float) -> str:
    import torch

    L = ["# Is the latent alive? (varying channels, QCM, ablation)", ""]
    L.append(f"Written by `benchmarks/latent_live.py` on {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, "
             f"{machine()} (OMP_NUM_THREADS="
             f"{os.environ.get('OMP_NUM_THREADS', 'unset')}), torch {torch.__version__}, {seconds / 60:.1f} minutes.")
    L.append("")
    L.append(f"Command: `{command}`")
    L.append("")
    L.append(f"Val split, every array; a volume gives up to {k} evenly spaced slices (`np.linspace(0, n - 1, {k})`, "
             "rounded). `varying %`: latent channels (154 per grey plane) whose `z` is not the same in all the "
             "slice's 32 x 32 blocks. `QCM before / after`: mean `|y - y_hat|` without and with the QCM, as Inspect "
             "measures it (`analysis.analyse_slice`), over all blocks. `bpsp`: the learned codec's estimated bits "
             "per sample (`Engine.encode_plane(want_bits=True)`, bitstream "
             "profile of `LVPNetCodec.version`, every slice coded alone), with the real `z` and with each channel's `z` replaced by its "
             "most frequent value in the plane; `saved %`: (mode - real) / real, what the latent saves. Estimates, "
             "not file bytes.")
    head = ("| {} | slices | samples | varying % | QCM before | QCM after | bpsp real z | bpsp z = mode | saved % |\n"
            "|---|---|---|---|---|---|---|---|---|")
    for res in results:
        L += ["", f"## `{res['weights']}`", "", f"sha256 `{res['sha256']}`", ""]
        L.append(head.format("modality"))
        for m, s in res["modalities"].items():
            L.append(_row(m, s))
        L.append(_row("**total**", res["total"]))
        L += ["", head.format("image")]
        for s in res["images"]:
            L.append(_row(f"{s['id']} ({s['modality']}; {', '.join(map(str, s['indices']))})", s))
    if len(results) > 1:
        a = results[0]["total"]
        L += ["", "## Against the first weights, same slices", "",
              "| weights | bpsp real z | vs first | varying % | QCM after - before | saved % |", "|---|---|---|---|---|---|"]
        for res in results:
            t = res["total"]
            L.append(f"| `{_short(res['weights'])}` ({res['sha256'][:12]}) | {t['bpsp_real']:.4f} | "
                     f"{100 * (t['bpsp_real'] / a['bpsp_real'] - 1):+.2f}% | {t['varying_pct']:.1f} | "
                     f"{t['qcm_after'] - t['qcm_before']:+.3f} | {t['saved_pct']:+.2f} |")
    return "\n".join(L) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", nargs="+", default=None, help="weights files (default: the shipped ones)")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--slices", type=int, default=3, help="at most this many evenly spaced slices per volume")
    ap.add_argument("--ids", nargs="+", default=None, help="only these val ids (smoke runs)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "latent_live.md"))
    ap.add_argument("--json", default=None)
    ap.add_argument("--reuse", nargs="+", default=[], metavar="JSON",
                    help="earlier --json files (same slices): their results are listed first, not measured again")
    ap.add_argument("--reuse-sha", nargs="+", default=None, metavar="PREFIX",
                    help="with --reuse: only the reused results whose sha256 starts with one of these")
    args = ap.parse_args(argv)
    from lvpnet.codecs.weights import shipped_weights

    weights = [Path(w) for w in (args.weights or ([] if args.reuse else [shipped_weights()]))]
    t0 = time.perf_counter()
    images = val_slices(Path(args.data), args.slices, args.ids)
    results = []
    for f in args.reuse:  # measured before on the same slices (the json keeps every row)
        old = json.loads(Path(f).read_text())
        if old.get("slices_per_volume") != args.slices:
            raise SystemExit(f"{f} was measured with --slices {old.get('slices_per_volume')}")
        results += [r for r in old["results"] if not args.reuse_sha or r["sha256"].startswith(tuple(args.reuse_sha))]
    for w in weights:
        print(f"{w} ({len(images)} images)", flush=True)
        results.append(run(w, images, log=lambda m: print(m, flush=True)))
    seconds = time.perf_counter() - t0
    command = "OMP_NUM_THREADS={} .venv/bin/python benchmarks/latent_live.py {}".format(
        os.environ.get("OMP_NUM_THREADS", "unset"), " ".join(sys.argv[1:] if argv is None else argv)).strip()
    Path(args.out).write_text(markdown(results, args.slices, command, seconds))
    if args.json:
        Path(args.json).write_text(json.dumps({"command": command, "slices_per_volume": args.slices,
                                               "results": results}, indent=1))
    print(f"wrote {args.out} in {seconds / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
