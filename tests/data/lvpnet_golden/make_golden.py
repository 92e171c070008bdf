"""Regenerate the learned codec's golden files (only on a deliberate format change: bump the version).

    .venv/bin/python tests/data/lvpnet_golden/make_golden.py [--inputs-only]

Writes model.pt (configs/tiny-test.json with 4 latent and 2 upsampling channels, torch seed 0: small enough to
commit), the inputs (*.npy), the expected chunks (*.chunk) of ``LVPNetCodec`` version 1 and
expected.json (sha256 of the weights and of every chunk).

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


def make_model(path: Path) -> None:
    from lvpnet.model import LVPNet, save_checkpoint

    cfg = json.loads((ROOT / "configs" / "tiny-test.json").read_text())["model"]
    cfg["latent_channels"] = 4
    cfg["up_channels"] = 2
    torch.manual_seed(0)
    save_checkpoint(path, LVPNet(cfg), meta={"purpose": "golden tests only; untrained"})


def main() -> None:
    from lvpnet.codecs.lvpnet_codec import LVPNetCodec

    if "--inputs-only" not in sys.argv:
        make_model(HERE / "model.pt")
    import hashlib

    codec = LVPNetCodec(HERE / "model.pt", device="cpu")
    expected = {"model_sha256": codec.model_id(), "codec_version": codec.version, "chunks": {}}
    for name, x in inputs().items():
        np.save(HERE / f"{name}.npy", x)
        data = codec.encode(x)
        (HERE / f"{name}.chunk").write_bytes(data)
        expected["chunks"][name] = hashlib.sha256(data).hexdigest()
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    print("model sha256", codec.model_id())


if __name__ == "__main__":
    main()
