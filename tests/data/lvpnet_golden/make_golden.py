"""Regenerate the learned codec's golden files (only on a deliberate format change: bump the version).

    .venv/bin/python tests/data/lvpnet_golden/make_golden.py [--set v1|v2|v3|v4|v5|v6|v7|v8|v9|b9|b10] [--inputs-only]

Writes model.pt (configs/tiny-test.json with 4 latent and 2 upsampling channels, torch seed 0: small enough to
commit), the inputs (*.npy), the expected chunks (*.chunk) of ``LVPNetCodec`` version 1 and
expected.json (sha256 of the weights and of every chunk). Set ``v1`` (this folder): the
model head version 1, 2x2 sub-images; set ``v2`` (``../lvpnet_golden_v2``): head version 2,
4x4 sub-images, step 0 row by row; set ``v3`` (``../lvpnet_golden_v3``): the same with head
version 3 (signed linear terms, given nonzero values here); set ``v4`` (``../lvpnet_golden_v4``):
the v3 weights (copied) with bitstream version 3 (tables adapted to the slice), plus an input
of a few grey levels that makes the encoder adapt them; set v5 (``../lvpnet_golden_v5``): the v3
weights with bitstream version 4 (locations refined on the slice), every input of v4 plus a
textured 64 x 64 slice whose steps are large enough to be refined; set v6 (``../lvpnet_golden_v6``):
the v3 weights with bitstream version 5 (latent tables adapted to the slice, two more flag
levels), every input of v5 plus a 160 x 224 slice whose 35 latent blocks per channel span
seven stages and a CT-like slice with padding that takes the new flag levels; set v7
(``../lvpnet_golden_v7``): the v3 weights with bitstream version 6 (tables counted by the distance
from the minimum, flags on candidates at the minimum: the padded CT-like slice's edge takes them),
every input of v6 plus an MR-like slice of magnitude noise around a disc; set v8
(``../lvpnet_golden_v8``): the v3 weights with bitstream version 7 (base lattices coded by
JPEG-XL where that is smaller; expected.json names the libjxl that wrote them), the inputs of v7;
set v9 (``../lvpnet_golden_v9``): the v3 weights with bitstream version 8 (flags for the pixels
that repeat the previous slice), the inputs of v8 plus two frames of cine loops (grey and RGB),
each coded against the frame before it (``<name>.ref.npy``).

The sets ``v<n>`` are numbered one above the bitstream version they hold (v9: bitstream 8); from
bitstream 9 on a set is named by its bitstream: ``b9`` (``../lvpnet_golden_b9``): the v3 weights
with bitstream version 9 (nothing computed for the base lattice's steps), the inputs of v9;
``b10`` (``../lvpnet_golden_b10``): the v3 weights with bitstream version 10 (neighbour-repeat
flags by the prediction, adapting within a stage), the inputs of b9.

Regenerate model.pt too (no --inputs-only) when the encoder's architecture changed so that the
old weights no longer load; the decode tests keep guarding the format either way.
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]


def inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2024)
    yy, xx = np.mgrid[:37, :45]
    ct = (np.sin(yy / 6.0) + np.cos(xx / 9.0) + 2) * 700 - 1024 + rng.normal(0, 20, yy.shape)
    mr = (np.hypot(yy - 18, xx - 22) < 15) * 3000 + rng.integers(0, 40, yy.shape)
    us = np.stack([(xx * 5 + yy) % 256, (yy * 7) % 256, rng.integers(0, 256, yy.shape)], -1)
    return {
        "ct_int16": np.clip(ct, -32768, 32767).astype(np.int16),
        "mr_uint16_12bit": (mr | (1 << 15) * (xx == 3)).astype(np.uint16)[:, :31],  # overlay bit set in a column
        "us_rgb_uint8": us.astype(np.uint8)[:20, :33],
        "xr_uint8_odd": np.clip(yy * 3 + xx * 2 + rng.integers(0, 9, yy.shape), 0, 255).astype(np.uint8)[:5, :7],
    }


def adapting_inputs() -> dict[str, np.ndarray]:
    """Inputs on which the encoder picks adapted tables (set v4): three grey levels, like a
    palette ultrasound, whose residuals the model's logistic tables fit badly; and a flat
    background, on which it switches neighbour-repeat flags on."""
    rng = np.random.default_rng(7)
    flat = np.zeros((44, 52), np.uint8)  # a black background around a noisy block: repeat flags on
    flat[12:30, 15:40] = rng.integers(0, 200, (18, 25))
    return {"levels_uint16": rng.choice(np.array([0, 1, 1023], np.uint16), size=(37, 50), p=[0.45, 0.45, 0.1]),
            "flat_background_uint8": flat}


def refining_inputs() -> dict[str, np.ndarray]:
    """An input whose steps the encoder refines (set v5): a 64 x 64 slice with a directional
    texture, which a linear predictor over the neighbours follows better than the model."""
    rng = np.random.default_rng(11)
    yy, xx = np.mgrid[:64, :64]
    tex = 1500 + 900 * np.sin((yy + 2 * xx) / 3.0) + 400 * np.cos(yy / 7.0) + rng.normal(0, 6, yy.shape)
    return {"texture_uint16": np.clip(tex, 0, 4095).astype(np.uint16)}


def version5_inputs() -> dict[str, np.ndarray]:
    """Inputs of bitstream version 5's two parts (set v6): one with many latent blocks (5 x 7 of
    32 x 32, so each channel's latent is coded in the stages [0, 1), [1, 2), [2, 4), ... [32, 35));
    and a CT-like slice, a smooth ramp inside a circle of -2000 padding, on which the encoder
    flags only where most or all neighbours agree (flag level 3: the ramp's pixels never repeat
    a neighbour, so flags there would only cost)."""
    rng = np.random.default_rng(13)
    yy, xx = np.mgrid[:160, :224]
    img = 90 + 60 * np.sin(yy / 17.0) * np.cos(xx / 23.0) + (yy // 32 + xx // 32) * 4 + rng.integers(0, 5, yy.shape)
    y2, x2 = np.mgrid[:48, :56]
    ct = 100 + y2 + x2
    ct[np.hypot(y2 - 24, x2 - 28) > 22] = -2000
    return {"blocks_uint8": np.clip(img, 0, 255).astype(np.uint8), "padded_ct_int16": ct.astype(np.int16)}


def version6_inputs() -> dict[str, np.ndarray]:
    """An input of bitstream version 6 (set v7): an MR-like slice of magnitude noise (Rician:
    never below 0, skewed up) around a brighter disc, whose background's residuals sit at the
    slice's minimum, where version 6 counts them apart from the disc's (``model.edge``)."""
    rng = np.random.default_rng(17)
    yy, xx = np.mgrid[:72, :80]
    disc = 600.0 * (np.hypot(yy - 36, xx - 40) < 25)
    mag = np.hypot(disc + rng.normal(0, 40, yy.shape), rng.normal(0, 40, yy.shape))
    return {"rician_mr_uint16": np.round(mag).astype(np.uint16)}


def version8_inputs() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Inputs of bitstream version 8 (set v9), each with the frame before it: a grey cine-like frame
    (a black background, a static block of text-like glyphs, a speckled sector that changes) and
    an RGB one (a coloured static overlay, a changing grey middle)."""
    rng = np.random.default_rng(19)
    glyphs = rng.choice(np.array([0, 255], np.uint8), size=(8, 40), p=[0.7, 0.3])
    frames = np.zeros((2, 48, 64), np.uint8)
    frames[:, 2:10, 4:44] = glyphs
    yy, xx = np.mgrid[:48, :64]
    sector = (np.hypot(yy - 12, xx - 32) < 34) & (yy > 14)
    for t in range(2):
        frames[t][sector] = rng.integers(10, 120, int(sector.sum()))
    rgb = np.zeros((2, 24, 40, 3), np.uint8)
    rgb[:, 1:5, 2:30] = np.array([40, 200, 220], np.uint8) * (glyphs[:4, :28, None] > 0)
    for t in range(2):
        rgb[t, 8:20, 6:34] = rng.integers(0, 90, (12, 28, 1))
    return {"cine_uint8": (frames[1], frames[0]), "cine_rgb_uint8": (rgb[1], rgb[0])}


SETS = {
    "v1": (HERE, {}),
    "v2": (HERE.parent / "lvpnet_golden_v2", {"head": 2, "subimage": 4, "ctx_bits": 9, "step0_rows": True}),
    "v3": (HERE.parent / "lvpnet_golden_v3", {"head": 3, "subimage": 4, "ctx_bits": 9, "step0_rows": True}),
    "v4": (HERE.parent / "lvpnet_golden_v4", "v3"),  # the weights of set v3
    "v5": (HERE.parent / "lvpnet_golden_v5", "v3"),
    "v6": (HERE.parent / "lvpnet_golden_v6", "v3"),
    "v7": (HERE.parent / "lvpnet_golden_v7", "v3"),
    "v8": (HERE.parent / "lvpnet_golden_v8", "v3"),
    "v9": (HERE.parent / "lvpnet_golden_v9", "v3"),
    "b9": (HERE.parent / "lvpnet_golden_b9", "v3"),
    "b10": (HERE.parent / "lvpnet_golden_b10", "v3"),
}


def make_model(path: Path, over: dict) -> None:
    from lvpnet.model import LVPNet, save_checkpoint

    cfg = json.loads((ROOT / "configs" / "tiny-test.json").read_text())["model"]
    cfg["latent_channels"] = 4
    cfg["up_channels"] = 2
    cfg.update(over)
    torch.manual_seed(0)
    model = LVPNet(cfg)
    if model.predictor.nlin:  # head 3's linear terms start at 0: give them values, so the set guards them
        p = model.predictor
        bias = torch.randint(-6000, 6000, (p.steps, p.nlin), generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            b = p.head.bias.view(p.steps, p.P)
            b[:, -p.nlin :] = bias.float() * 2.0 ** -(p.head.fw + p.head.f_in)
    save_checkpoint(path, model, meta={"purpose": "golden tests only; untrained"})


def main() -> None:
    from lvpnet.codecs.lvpnet_codec import LVPNetCodec

    which = sys.argv[sys.argv.index("--set") + 1] if "--set" in sys.argv else "v1"
    out, over = SETS[which]
    out.mkdir(exist_ok=True)
    if isinstance(over, str):
        import shutil

        shutil.copyfile(SETS[over][0] / "model.pt", out / "model.pt")
    elif "--inputs-only" not in sys.argv:
        make_model(out / "model.pt", over)
    import hashlib

    codec = LVPNetCodec(out / "model.pt", device="cpu")
    expected = {"model_sha256": codec.model_id(), "codec_version": codec.version, "chunks": {}}
    number = int(which[1:]) + (which[0] == "b")  # set b<n> comes after set v<n> (bitstream n - 1)
    later = lambda first: number >= first  # noqa: E731 (the sets from v<first> on)
    if later(8):  # bitstream 7's base layers are JPEG-XL codestreams: which libjxl wrote them
        import imagecodecs

        expected["jpegxl"] = imagecodecs.jpegxl_version()
    cases = (inputs() | (adapting_inputs() if later(4) else {}) | (refining_inputs() if later(5) else {})
             | (version5_inputs() if later(6) else {}) | (version6_inputs() if later(7) else {}))
    pairs = version8_inputs() if later(9) else {}
    cases |= {name: x for name, (x, _ref) in pairs.items()}
    for name, x in cases.items():
        np.save(out / f"{name}.npy", x)
        if name in pairs:
            np.save(out / f"{name}.ref.npy", pairs[name][1])
            data = codec.encode(x, reference=pairs[name][1])
        else:
            data = codec.encode(x)
        (out / f"{name}.chunk").write_bytes(data)
        expected["chunks"][name] = hashlib.sha256(data).hexdigest()
    (out / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    print("model sha256", codec.model_id())


if __name__ == "__main__":
    main()
