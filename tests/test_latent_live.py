"""The training switches against latent collapse (``train.charged_latent_bits``, ``train.reopen_latent``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from lvpnet.model.lvpnet import LVPNet
from lvpnet.train import Sampler, charged_latent_bits, reopen_latent

ROOT = Path(__file__).resolve().parents[1]


def _tiny():
    torch.manual_seed(0)
    return LVPNet(json.loads((ROOT / "configs" / "tiny-test.json").read_text())["model"])


def _sampler(seed=0):
    rng = np.random.default_rng(seed)
    train = [("a", [rng.integers(0, 1000, (96, 80)).astype(np.int32) for _ in range(3)])]
    return Sampler(train, 64, 2, 0.5, seed)


def test_free_bits_charge_the_floor_without_gradient():
    bits = torch.tensor([1.0, 10.0, 40.0], requires_grad=True)  # per channel, over 10 blocks
    o = {"latent_bits": bits.sum(), "latent_channel_bits": bits, "latent_blocks": torch.tensor(10.0)}
    assert charged_latent_bits(o, 0.0) is o["latent_bits"]  # off: the shipped loss
    charged = charged_latent_bits(o, 2.0)  # channel 0 (0.1 per block) and 1 (1.0) under the floor
    assert float(charged.detach()) == 10 * (2.0 + 2.0 + 4.0)
    charged.backward()
    assert bits.grad.tolist() == [0.0, 0.0, 1.0]


def test_reopen_keeps_z_and_lets_the_gradient_through():
    model = _tiny()
    with torch.no_grad():  # a collapsed head, as measured on the shipped weights: tanh saturated at -zmax
        model.encoder.head.weight.mul_(0.01)
        model.encoder.head.bias.fill_(-300.0)
    v, m, R, B = _sampler(1).batch(2, "cpu")
    z0 = model.latent(v, B)[1]
    assert (z0 == -model.cfg.zmax).all()
    info = reopen_latent(model, _sampler(2), "cpu", batches=1, batch=2)
    assert set(info["old_z"]) == {-model.cfg.zmax}
    model.train()
    o = model(v, m, R, B)
    assert torch.equal(model.latent(v, B)[1], z0)  # the decoder first sees the z it was trained on
    loss = (o["pixel_bits"] + charged_latent_bits(o, 0.5)) / o["n_pixels"]
    loss.backward()
    assert float(model.encoder.head.weight.grad.abs().sum()) > 0
