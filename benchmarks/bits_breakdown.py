"""Where the learned codec's bits go on one plane, against JPEG-XL effort 7 on the same pixels.

Per plane (grey, or each RGB plane G, R-G, B-G), with the shipped weights, through the same walk as
the Inspect maps (``lvpnet.coding.estimate.fitted_steps``: network, refinement, error feedback, per-step offsets,
adapted tables, flags; bitstream version 7 without a reference):

* per step group (step 0 = the stride-4 lattice, steps 1-3 = the rest of the stride-2 lattice,
  steps 4-7, 8-15): the learned bits with NO base lattice (what the learned codec itself pays),
  against JPEG-XL e7 on ``v[::4, ::4]``, ``v[::2, ::2]`` and the whole plane (the rest is
  attributed as JPEG-XL(whole) - JPEG-XL(lattice), as docs/MODEL.md section 2f does);
* inside the learned bits: raw low bits, escapes (their uniform bits), flags' share is in the pixel
  totals (the map attributes a flagged pixel's bits to it);
* the latent, the side information (refinement, feedback), the base level the encoder would choose
  and the total with it;
* an "oracle" for the tables' shape: per step the empirical entropy of the binned residual given
  the table row (no learning cost), plus the raw low bits and escapes' uniform bits; the gap
  between the adapted bits and this is what a better residual model could at most win with
  these locations and scale indices;
* a "flat" class: pixels whose four axial neighbours all equal it (collimation, background).

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bits_breakdown.py ID[:frame][@crop] ... [--json out]
``@crop``: ``@512`` a centred 512 x 512 crop, ``@1024``; ``@sub2`` every second pixel. Training ids
are read from ``../shared/data`` (``/work/shared/data``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path("/work/shared/data")
GAPS = "codec"  # "long": only the long runs of unused values taken out (before the sparse-histogram rule)
GROUPS = (("step 0", (0,)), ("steps 1-3", (1, 2, 3)), ("steps 4-7", (4, 5, 6, 7)), ("steps 8-15", tuple(range(8, 16))))


def jxl_bits(x: np.ndarray) -> float:
    import imagecodecs

    x = np.ascontiguousarray(x)
    x = x.astype(np.uint8 if x.max() < 256 else np.uint16)
    return 8.0 * len(imagecodecs.jpegxl_encode(x, lossless=True, effort=7, numthreads=1))


def load(spec: str) -> tuple[str, np.ndarray, bool]:
    ident, crop = (spec.split("@") + [""])[:2]
    ident, frame = (ident.split(":") + [""])[:2]
    man = {i["id"]: i for i in json.loads((DATA / "manifest.json").read_text())["items"]}
    it = man[ident]
    a = np.load(DATA / it["file"])["image"]
    rgb = bool(it.get("rgb"))
    nd = 3 if rgb else 2
    if a.ndim > nd:
        lead = a.reshape((-1,) + a.shape[-nd:])
        a = lead[int(frame) if frame else lead.shape[0] // 2]
    if crop.startswith("sub"):
        g = int(crop[3:])
        a = a[::g, ::g]
    elif crop:
        c = int(crop)
        H, W = a.shape[:2]
        y0, x0 = max(0, (H - c) // 2), max(0, (W - c) // 2)
        a = a[y0 : y0 + c, x0 : x0 + c]
    return spec, np.ascontiguousarray(a), rgb


def plane_breakdown(model, plane: np.ndarray) -> dict:
    import torch

    from lvpnet.codecs import lvpnet_base
    from lvpnet.coding import edge
    from lvpnet.coding.adapt import WIDE_FLAG_LEVELS, adapted_pixel_bits
    from lvpnet.coding.estimate import fitted_steps
    from lvpnet.coding.latent_adapt import latent_code_bits
    from lvpnet.model.prep import collapse_gaps, padded_size, polyphase_pad, slice_params, to_grid
    from lvpnet.model.tables import pixel_symbols

    net, dec = model.net, model.dec
    cfg, f = dec.cfg, dec.f
    from lvpnet.model import prep

    _vmin0, _step, plane = to_grid(plane.astype(np.int64))
    raw_R = int(plane.max() - plane.min())
    used = int(np.unique(plane).size)
    plane, gaps = (prep.long_gaps if GAPS == "long" and hasattr(prep, "long_gaps") else collapse_gaps)(plane)
    vmin, R, B = slice_params(plane)
    v = plane - vmin
    H, W = v.shape
    out = {"shape": [H, W], "R": int(R), "raw_R": raw_R, "used": used, "gaps": len(gaps), "pixels": H * W}
    t0 = time.time()
    with torch.no_grad():
        Hp, Wp = padded_size(H, W, cfg.stride)
        vp = polyphase_pad(v, Hp, Wp, f)
        dev = next(net.parameters()).device
        vt = torch.as_tensor(vp, device=dev).to(net.encoder.stem.weight.dtype)[None]
        _y, z_hard, _ = net.latent(vt, torch.tensor([B], device=dev))
        z = z_hard[0].long()
        out["latent"] = float(latent_code_bits(dec, z).sum())
        feats = dec.features(z)
        steps, _level, fits = fitted_steps(dec, feats, v, vp, R, B)  # the walk Inspect's maps make
        args = (R, dec.pixel_tables, dec.pixel_shifts, dec.K, v, dec.order, cfg.step0_rows, WIDE_FLAG_LEVELS,
                edge.config_thresholds(cfg), True)
        per_pixel, mode = adapted_pixel_bits(steps, *args, None)
        costs = lvpnet_base.costs(v, R, f)
        _pp, mode_l = adapted_pixel_bits(steps, *args, costs)
    out["side"] = fits.side_bits() + 64.0 * len(gaps)  # refinement, feedback and the gap list
    out["mode"] = [int(m) for m in mode]
    out["base_level"] = int(mode_l[2])
    out["lattice_jxl"] = {int(k): float(c) for k, c in costs.items()}
    out["refine_configs"] = [int(r.config) if r is not None else 0 for r in fits.refs]
    # per step
    shifts = dec.pixel_shifts.cpu()
    stepd = {}
    esc_counts, esc_n = np.zeros(R + 1), 0  # escaped values under an adaptive (KT) histogram, decoding order
    for (k, v_, mu_, s_), b in zip(steps, per_pixel):
        sym, _low, nb, esc = pixel_symbols(v_, mu_, s_, shifts, dec.K)
        sym, nb, esc = sym.numpy(), nb.numpy(), esc.numpy()
        rows = s_.long().numpy()
        # oracle: empirical entropy of the symbol given the scale index (no learning cost)
        key = rows.reshape(-1) * 256 + sym.reshape(-1)
        _u, cnt = np.unique(key, return_counts=True)
        _ur, rc = np.unique(rows.reshape(-1), return_counts=True)
        h_joint = -(cnt * np.log2(cnt)).sum()
        h_rows = -(rc * np.log2(rc)).sum()
        oracle = float(h_joint - h_rows) + float(nb.sum()) + float(esc.sum()) * np.log2(R + 1.0)
        esc_adaptive = 0.0
        for val in v_.numpy()[esc]:
            esc_adaptive -= np.log2((esc_counts[val] + 0.5) / (esc_n + 0.5 * (R + 1)))
            esc_counts[val] += 1
            esc_n += 1
        di, dj = dec.order[k]
        # flat: the four axial neighbours in the whole plane equal the pixel
        vv = v[di::f, dj::f][: v_.shape[0], : v_.shape[1]]
        pad = np.pad(v, 1, mode="edge")
        ys = np.arange(di, H, f)[: v_.shape[0]] + 1
        xs = np.arange(dj, W, f)[: v_.shape[1]] + 1
        Y, X = np.meshgrid(ys, xs, indexing="ij")
        flat = ((pad[Y - 1, X] == vv) & (pad[Y + 1, X] == vv) & (pad[Y, X - 1] == vv) & (pad[Y, X + 1] == vv))
        stepd[k] = {
            "n": int(b.size), "bits": float(b.sum()), "low": float(nb.sum()), "esc": int(esc.sum()),
            "esc_bits": float(esc.sum() * np.log2(R + 1.0)), "esc_adaptive": float(esc_adaptive), "oracle": oracle,
            "flat_n": int(flat.sum()), "flat_bits": float(b[flat].sum()),
            "absres": float(np.abs(v_.numpy() - mu_.numpy()).mean()),
        }
    out["steps"] = stepd
    out["jxl"] = {"whole": jxl_bits(v), "sub2": jxl_bits(v[::2, ::2]), "sub4": jxl_bits(v[::4, ::4])}
    out["seconds"] = time.time() - t0
    return out


def summarise(name: str, p: dict) -> list[str]:
    n = p["pixels"]
    st = p["steps"]
    j = p["jxl"]
    learned_pix = sum(d["bits"] for d in st.values())
    total = learned_pix + p["latent"] + p["side"]
    jx = {"step 0": j["sub4"], "steps 1-3": j["sub2"] - j["sub4"], "steps 4-15": j["whole"] - j["sub2"]}
    lines = [f"### {name}: {p['shape'][0]}x{p['shape'][1]}, {p['used']} of {p['raw_R'] + 1} levels used, "
             f"{p['gaps']} runs taken out (coded R={p['R']}), base level chosen {p['base_level']}, "
             f"refine configs {p['refine_configs']}",
             "", "| part | pixels | learned bits/px | oracle bits/px | JPEG-XL e7 bits/px | learned/JXL | "
             "share of learned excess |", "|---|---|---|---|---|---|---|"]
    excess = total - j["whole"]
    groups = [("step 0", (0,)), ("steps 1-3", (1, 2, 3)), ("steps 4-15", tuple(range(4, 16)))]
    for g, ks in groups:
        ks = [k for k in ks if k in st]
        m = sum(st[k]["n"] for k in ks)
        b = sum(st[k]["bits"] for k in ks)
        o = sum(st[k]["oracle"] for k in ks)
        lines.append(f"| {g} | {m} | {b / m:.3f} | {o / m:.3f} | {jx[g] / m:.3f} | {b / jx[g]:.3f} | "
                     f"{(b - jx[g]) / excess * 100 if excess else 0:.0f}% |")
    for g, ks in GROUPS[2:]:
        ks = [k for k in ks if k in st]
        m = sum(st[k]["n"] for k in ks)
        b = sum(st[k]["bits"] for k in ks)
        o = sum(st[k]["oracle"] for k in ks)
        lines.append(f"| ({g}) | {m} | {b / m:.3f} | {o / m:.3f} | | | |")
    lines.append(f"| latent | | {p['latent'] / n:.4f} | | | | {p['latent'] / excess * 100 if excess else 0:.0f}% |")
    lines.append(f"| side info | | {p['side'] / n:.4f} | | | | {p['side'] / excess * 100 if excess else 0:.0f}% |")
    lines.append(f"| total (no lattice) | {n} | {total / n:.3f} | | {j['whole'] / n:.3f} | {total / j['whole']:.3f} | 100% |")
    lv = p["base_level"]
    if lv:
        ks = (0,) if lv == 1 else (0, 1, 2, 3)
        saved = sum(st[k]["bits"] for k in ks) - p["lattice_jxl"][lv]
        lines.append(f"| total with base level {lv} | | {(total - saved) / n:.3f} | | | {(total - saved) / j['whole']:.3f} | |")
    esc = sum(d["esc"] for d in st.values())
    escb = sum(d["esc_bits"] for d in st.values())
    low = sum(d["low"] for d in st.values())
    fl = sum(d["flat_n"] for d in st.values())
    flb = sum(d["flat_bits"] for d in st.values())
    esca = sum(d.get("esc_adaptive", 0.0) for d in st.values())
    lines += ["", f"raw low bits {low / n:.3f} bits/px; escapes {esc} ({escb / n:.4f} bits/px uniform, "
              f"{esca / n:.4f} under an adaptive histogram of the escaped values); "
              f"flat pixels {fl / n * 100:.1f}% costing {flb / max(fl, 1):.3f} bits each ({flb / n:.4f} bits/px)", ""]
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("specs", nargs="+")
    ap.add_argument("--json")
    ap.add_argument("--gaps", choices=("codec", "long"), default="codec",
                    help="codec: prep.collapse_gaps as the codec; long: prep.long_gaps (runs > 64 only)")
    ap.add_argument("--fit-pixels", type=int, default=0, help="refinement / feedback sample sizes (0: as shipped)")
    a = ap.parse_args(argv)
    global GAPS
    GAPS = a.gaps
    if a.fit_pixels:
        from lvpnet.coding import feedback, refine

        refine._FIT_PIXELS = refine._CHOICE_PIXELS = feedback._SAMPLE = a.fit_pixels
    from lvpnet.analysis import load_model
    from lvpnet.model.prep import rgb_to_planes

    model = load_model()
    res = {}
    for spec in a.specs:
        name, x, rgb = load(spec)
        planes = rgb_to_planes(x) if rgb else [x]
        res[name] = [plane_breakdown(model, np.asarray(p)) for p in planes]
        for i, p in enumerate(res[name]):
            print("\n".join(summarise(name + (f" plane {i}" if rgb else ""), p)), flush=True)
        if a.json:
            Path(a.json).write_text(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
