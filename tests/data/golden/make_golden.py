"""Write a golden set of the learned codec (only on a deliberate format change: bump the version).

    .venv/bin/python tests/data/golden/make_golden.py --set b<n> [--new-weights]

A set ``b<n>`` (folder ``tests/data/golden/b<n>``) holds chunks of bitstream version ``n``: the
inputs (``*.npy``, ``<name>.ref.npy`` for a frame coded against the one before), the chunks the
codec writes for them (``*.chunk``) and ``expected.json`` (the weights' sha256, the version, every
chunk's sha256 and, from bitstream 7 on, the libjxl that wrote the base layers). Each set has the
inputs of the one before plus those that exercise what its version added (``inputs_of``). A set is
written once, when its version is new, and then kept as history: the encoder's choices move between
versions (a version 8 chunk written today is another valid version 8 chunk), and the oldest sets'
paths are no longer written at all.

Weights are stored once, in ``weights/<first 12 hex digits of their sha256>.pt`` (configs/tiny-test.json
with 4 latent and 2 upsampling channels, torch seed 0: small enough to commit), named per set by
``WEIGHTS_OF``: ``b1`` model head 1 with 2 x 2 sub-images; ``b2-head2`` head 2, 4 x 4 sub-images, step
0 row by row; every other set head 3 (signed linear terms, given nonzero values here). A new set uses
the head-3 weights. ``--new-weights`` makes them again from their config (when the float encoder's
architecture changed so that the stored ones no longer load), stores them by their sha256 and
says which entry of ``KNOWN`` to update; the decode tests keep guarding the format either way.
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
    slice's minimum, where version 6 counts them apart from the disc's (``coding.edge``)."""
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


def version11_inputs() -> dict[str, np.ndarray]:
    """Inputs of bitstream version 11 (set b11) whose planes take a constant-block map: a grey
    ultrasound-like frame (a black background, a speckled sector, a white caption) and an RGB one
    (grey speckle, R = G = B, with coloured captions: its chroma planes are constant but for them)."""
    rng = np.random.default_rng(23)
    yy, xx = np.mgrid[:64, :88]
    grey = np.zeros((64, 88), np.uint8)
    sector = (np.hypot(yy - 4, xx - 44) < 52) & (np.abs(xx - 44) < (yy - 4) * 0.8)
    grey[sector] = rng.integers(5, 140, int(sector.sum()))
    grey[56:60, 4:30] = 255 * (rng.random((4, 26)) < 0.5)
    rgb = np.repeat(grey[:48, :72, None], 3, axis=2)
    rgb[2:6, 40:68] = np.array([250, 220, 30], np.uint8) * (rng.random((4, 28, 1)) < 0.6)
    return {"us_blocks_uint8": grey, "us_overlay_rgb_uint8": rgb}


HEADS = {
    "head1": {},
    "head2": {"head": 2, "subimage": 4, "ctx_bits": 9, "step0_rows": True},
    "head3": {"head": 3, "subimage": 4, "ctx_bits": 9, "step0_rows": True},
}
KNOWN = {"head1": "8b42cf13d35f", "head2": "beed14148557", "head3": "5f95f7d9bbd1"}  # weights/<sha12>.pt
WEIGHTS_OF = {"b1": "head1", "b2-head2": "head2"}  # every other set: head3


def inputs_of(version: int) -> tuple[dict, dict]:
    """The inputs of a set of bitstream ``version`` and the (frame, frame before) pairs coded against it."""
    since = lambda first: version >= first  # noqa: E731 (the sets from bitstream ``first`` on)
    cases = (inputs() | (adapting_inputs() if since(3) else {}) | (refining_inputs() if since(4) else {})
             | (version5_inputs() if since(5) else {}) | (version6_inputs() if since(6) else {})
             | (version11_inputs() if since(11) else {}))
    return cases, (version8_inputs() if since(8) else {})


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
    import hashlib
    import shutil
    import tempfile

    from lvpnet.codecs.lvpnet_codec import LVPNetCodec

    if "--set" not in sys.argv:
        sys.exit(__doc__)
    which = sys.argv[sys.argv.index("--set") + 1]
    version = int(which[1:].split("-")[0])
    head = WEIGHTS_OF.get(which, "head3")
    weights = HERE / "weights" / f"{KNOWN[head]}.pt"
    if "--new-weights" in sys.argv:
        with tempfile.TemporaryDirectory() as tmp:
            make_model(Path(tmp) / "model.pt", HEADS[head])
            sha = hashlib.sha256((Path(tmp) / "model.pt").read_bytes()).hexdigest()[:12]
            weights = HERE / "weights" / f"{sha}.pt"
            shutil.copyfile(Path(tmp) / "model.pt", weights)
        print(f"new {head} weights: set KNOWN[{head!r}] = {sha!r}")
    out = HERE / which
    out.mkdir(exist_ok=True)
    codec = LVPNetCodec(weights, device="cpu")
    codec.version = version
    expected = {"model_sha256": codec.model_id(), "codec_version": version, "chunks": {}}
    if version >= 7:  # bitstream 7's base layers are JPEG-XL codestreams: which libjxl wrote them
        import imagecodecs

        expected["jpegxl"] = imagecodecs.jpegxl_version()
    cases, pairs = inputs_of(version)
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
    print(f"set {which}: bitstream {version}, weights {weights.name}, {len(cases)} chunks")


if __name__ == "__main__":
    main()
