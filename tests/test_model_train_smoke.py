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
