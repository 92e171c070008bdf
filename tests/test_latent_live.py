"""The training switches against latent collapse (``train.charged_latent_bits``, ``train.reopen_latent``,
``train.reopen_qcm``, ``train.range_bits``) and the QCM's open clamp."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from lvpnet.model.lvpnet import LVPNet
from lvpnet.train import Sampler, centred_rate, charged_latent_bits, range_bits, reopen_latent, reopen_qcm

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


def test_reopen_qcm_keeps_the_decoders_view():
    """Reopening the QCM moves c inside 0..3 with live layers, and the up layer's biases absorb the
    change: for a latent whose every channel sits at its most frequent value the features are the same."""
    model = _tiny()
    q = model.qcm
    with torch.no_grad():  # a collapsed QCM as measured on the shipped weights: c a constant 0 or 3 per channel
        q.l1.weight.zero_()
        q.l2.weight.zero_()
        q.l2.bias.copy_(torch.where(torch.arange(q.l2.cout) % 2 == 0, -40.0, 40.0) * 2.0 ** -(q.l2.fw + q.l2.f_in) * 2**q.l2.shift)
    C = model.cfg.latent_channels
    z = torch.full((1, C, 2, 2), 5.0)
    with torch.no_grad():
        assert set((q(z) - 4 * z).unique().tolist()) == {0.0, 3.0}
    c_old = q(z)[0, :, 0, 0] - 4 * z[0, :, 0, 0]
    w_up, b_old = model.up.int_weight().detach()[:, :, 0, 0], model.up.int_bias().detach()
    sampler = _sampler(3)
    info = reopen_qcm(model, sampler, torch.device("cpu"), batches=1, batch=2)
    assert info["hidden_off"] < 0.5 and info["hidden_sat"] < 0.5
    v, m, _R, B = sampler.batch(2, "cpu")
    with torch.no_grad():
        zc = model.latent(v, B)[1]
        c = q(zc) - 4 * zc
    assert float(c.min()) >= 0 and float(c.max()) <= 3
    # the up layer's accumulator (before its floor) is unchanged wherever the new c is each
    # channel's most frequent value; elsewhere it moves by exactly what c moves
    c_mode = torch.tensor(info["c_mode"], dtype=torch.float32)
    with torch.no_grad():
        zm = zc[0, :, 0, 0]  # one block, all channels
        c_new = q(zm[None, :, None, None])[0, :, 0, 0] - 4 * zm
        acc_old = w_up @ (4 * zm + c_old) + b_old
        acc_new = model.up.int_weight()[:, :, 0, 0] @ (4 * zm + c_new) + model.up.int_bias()
    assert torch.equal(acc_new - acc_old, w_up @ (c_new - c_mode))


def test_open_clamp_gradient_points_back_into_range():
    from lvpnet.model.qcm import _ClampBack

    x = torch.tensor([-5.0, 1.0, 7.0, -5.0, 7.0], requires_grad=True)
    y = _ClampBack.apply(x, 0.0, 3.0)
    assert y.tolist() == [0.0, 1.0, 3.0, 0.0, 3.0]
    y.backward(torch.tensor([-1.0, 2.0, 1.0, 1.0, -1.0]))
    # below the range only a gradient that raises x passes, above only one that lowers it
    assert x.grad.tolist() == [-1.0, 2.0, 1.0, 0.0, 0.0]


def test_range_bits_hinge():
    h = torch.tensor([-400.0, -66.0, 0.0, 60.0, 300.0], requires_grad=True)
    p = range_bits(h, 32.0, -31.0, 31.5)
    assert p[1:4].tolist() == [0.0, 0.0, 0.0] and p[0] > 300 and p[4] > 200
    p.sum().backward()
    assert h.grad.tolist() == [-1.0, 0.0, 0.0, 0.0, 1.0]


def test_centred_rate_pulls_to_the_middle_of_the_likeliest_bin():
    """The prior's slope alone pushes both in-range values down (bits[1] > bits[0]), and, since it tests
    its clamped straight-through z, a value below -zmax further down too; with the centred term the
    lower-half value is pushed up and the one below the range back up."""
    model = _tiny()
    zmax = model.cfg.zmax
    with torch.no_grad():  # every channel's histogram peaked at z = 0, and -zmax likelier than -zmax + 1
        model.prior.hist.fill_(1e-3)
        model.prior.hist[:, zmax] = 1.0
        model.prior.hist[:, 0] = 0.5
    C = model.cfg.latent_channels
    yq = torch.zeros(1, C, 1, 3)
    yq[0, :, 0, 0], yq[0, :, 0, 1], yq[0, :, 0, 2] = 0.1, 0.9, -31.5
    yq.requires_grad_(True)
    z = torch.clamp(torch.floor(yq.detach()), -zmax, zmax)
    z_rate = yq + (z - yq).detach()
    sel = torch.ones(1, 1, 1, 3)
    prior_only = torch.autograd.grad(model.prior.bits(z_rate, z).sum(), yq)[0][0, 0, 0]
    assert prior_only[0] > 0 and prior_only[1] > 0 and prior_only[2] > 0
    total = model.prior.bits(z_rate, z).sum() + centred_rate(model, yq, sel)
    g = torch.autograd.grad(total, yq)[0][0, 0, 0]
    assert g[0] < 0 and g[1] > 0 and float(g[2]) == -1.0  # towards 0.5 from both sides; back from below
    assert float(centred_rate(model, yq, sel).detach()) == 0.0
    off = centred_rate(model, yq, sel, charged=torch.zeros(C, dtype=torch.bool))
    assert torch.autograd.grad(off, yq, allow_unused=True)[0].abs().sum() == 0
