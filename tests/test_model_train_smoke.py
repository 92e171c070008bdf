"""lvpnet.train runs end to end on the CPU on a tiny synthetic prepared folder."""

import json
from pathlib import Path

import numpy as np
import torch

from lvpnet import train as T
from lvpnet.model import IntegerDecoder, LVPNet

ROOT = Path(__file__).resolve().parents[1]


def test_train_smoke(tmp_path, capsys):
    d = tmp_path / "data"
    d.mkdir()
    rng = np.random.default_rng(0)
    np.savez_compressed(d / "train_a.npz", s0=rng.integers(0, 4000, (70, 90)).astype(np.int16),
                        s1=rng.integers(-100, 100, (40, 40)).astype(np.int16))
    np.savez_compressed(d / "val_b.npz", image=rng.integers(0, 255, (2, 33, 40)).astype(np.uint8))
    np.savez_compressed(d / "val_c.npz", image=rng.integers(0, 255, (20, 30, 3)).astype(np.uint8))
    idx = {
        "train": [{"id": "a", "file": "train_a.npz"}],
        "val": [
            {"id": "b", "file": "val_b.npz", "modality": "MR", "rgb": False, "best": 7.0},
            {"id": "c", "file": "val_c.npz", "modality": "US", "rgb": True, "best": 6.0},
        ],
    }
    (d / "index.json").write_text(json.dumps(idx))
    out = tmp_path / "run"
    rc = T.main(["--config", str(ROOT / "configs" / "tiny-test.json"), "--data", str(d), "--device", "cpu",
                 "--minutes", "1", "--max-steps", "3", "--out", str(out)])
    assert rc == 0
    log = json.loads((out / "log.json").read_text())
    assert log["evals"] and len(log["evals"][-1]["images"]) == 2
    ev = log["evals"][-1]
    assert ev["total_n"] == 2 * 33 * 40 + 20 * 30 * 3
    assert (out / "best.pt").exists() and "best classical" in (out / "model_card.md").read_text()
    # the checkpoint reloads and reproduces the logged val bits with the integer decoder
    model = LVPNet.from_checkpoint(out / "best.pt")
    dec = IntegerDecoder.from_checkpoint(out / "best.pt")
    train, val, _ = T.load_data(d)
    costs = T.base_layer_costs()  # the val estimates have base layers where imagecodecs is there
    assert costs is not None and "val estimates: the latest bitstream, base layers by JPEG-XL" in capsys.readouterr().out
    ev2 = T.evaluate(model, val, torch.device("cpu"), lattice_costs=costs)
    assert abs(ev2["total_bits"] - log["best"]["eval"]["total_bits"]) < 1e-6 * ev2["total_bits"]
    assert dec.steps == 4
    fps = log["meta"]["fingerprints"]
    assert fps and T.check_fingerprints(out / "best.pt", fps, val) == [True] * len(fps)
    assert T.check_fingerprints(out / "best.pt", fps, val, dtype=torch.float32) == [True] * len(fps)


def test_lattice_weight_lightens_the_stride_2_lattice_steps():
    """``lattice_weight``: the loss weighs the pixel bits of the steps on the stride-2 lattice (those
    bitstream 7 may hand to JPEG-XL) by it; the live per-step bits the loss reads sum to ``pixel_bits``."""
    from lvpnet.model.prep import ORDERS

    assert T.lattice_step_weights(4, 1.0, "cpu") is None and T.lattice_step_weights(2, 0.25, "cpu") is None
    w = T.lattice_step_weights(4, 0.25, "cpu")
    assert [float(x) for x in w] == [0.25 if di % 2 == 0 and dj % 2 == 0 else 1.0 for di, dj in ORDERS[4]]
    assert float(w.sum()) == 4 * 0.25 + 12
    cfg = json.loads((ROOT / "configs" / "tiny-test.json").read_text())["model"] | {"subimage": 4, "head": 3, "ctx_bits": 9, "step0_rows": True}
    model = LVPNet(cfg)
    rng = np.random.default_rng(0)
    v = torch.from_numpy(rng.integers(0, 200, (2, 64, 64)).astype(np.float32))
    o = model(v, torch.ones_like(v), torch.tensor([255, 255]), torch.tensor([8, 8]))
    live = o["step_bits_live"]
    assert live.shape == (16,) and live.requires_grad
    assert torch.allclose(live.sum(), o["pixel_bits"]) and torch.allclose(live.detach(), o["step_bits"])
    (live * w).sum().backward()  # the weighted loss reaches the network
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_crop_weighting_follows_each_crops_relative_gain():
    """``crop_floor_bpp``: the loss weighs each crop's live pixel bits by ``1 / (bpp + floor)``, scaled
    so that the mean weight over real pixels is 1; the gradient is then the sum of each crop's relative
    change, whatever its bits: a cheap crop (ultrasound, 0.3 bits a pixel) counts as much as a noisy one
    of as many real pixels."""
    cfg = json.loads((ROOT / "configs" / "tiny-test.json").read_text())["model"] | {"subimage": 4, "head": 3, "ctx_bits": 9, "step0_rows": True}
    model = LVPNet(cfg)
    rng = np.random.default_rng(1)
    noisy = rng.integers(0, 200, (64, 64))
    flat = np.zeros((64, 64), np.int64)
    flat[20:30, 10:50] = 7  # a mostly black crop with one grey bar
    v = torch.from_numpy(np.stack([noisy, flat]).astype(np.float32))
    mask = torch.ones_like(v)
    mask[1, :, 32:] = 0  # the second crop is half padding
    o = model(v, mask, torch.tensor([255, 255]), torch.tensor([8, 8]))
    crop, px = o["crop_bits_live"], o["crop_pixels"]
    assert crop.shape == (2,) and crop.requires_grad
    assert torch.allclose(crop.sum(), o["pixel_bits"]) and [float(p) for p in px] == [64 * 64, 64 * 32]
    w = T.crop_weights(crop, px, 0.25)
    assert not w.requires_grad
    bpp = crop.detach() / px
    assert torch.allclose((w * px).sum(), px.sum())  # the mean weight over real pixels is 1
    assert torch.allclose(w[0] / w[1], (bpp[1] + 0.25) / (bpp[0] + 0.25))
    assert float(bpp[1]) < float(bpp[0]) and float(w[1]) > float(w[0])  # the cheap crop weighs more
    # the weighted loss's gradient is, up to one factor, that of sum(pixels * log(bpp + floor)): each
    # crop's relative change, counted by its real pixels
    ref = LVPNet(cfg)
    ref.load_state_dict(model.state_dict())
    o2 = ref(v, mask, torch.tensor([255, 255]), torch.tensor([8, 8]))
    (px * torch.log(o2["crop_bits_live"] / px + 0.25)).sum().backward()
    (o["crop_bits_live"] * w).sum().backward()
    scale = float(px.sum() / (px / (bpp + 0.25)).sum())
    g1 = torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None])
    g2 = torch.cat([p.grad.reshape(-1) for p in ref.parameters() if p.grad is not None])
    assert torch.allclose(g1, g2 * scale, rtol=1e-3, atol=1e-6 * float(g1.abs().max()))
