"""scripts/ship_weights.py: the card it writes and the rule that makes the learned codec the default."""

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "ship_weights.py"


@pytest.fixture
def ship(monkeypatch, tmp_path):
    spec = importlib.util.spec_from_file_location("ship_weights", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = tmp_path / "resources"
    res.mkdir()
    monkeypatch.setattr(mod, "RES", res)  # never the repository's own resources
    return mod


def _inputs(tmp_path, ratios_alone, ratios_combined, sha):
    """An eval.json and a run_val report for the images the ratios name (``ct_a``: a CT; best classical
    4.0 bits each)."""
    ck = tmp_path / "best.pt"
    ck.write_bytes(b"weights")
    sha = sha or hashlib.sha256(b"weights").hexdigest()
    mods = {i: i.split("_")[0].upper() for i in ratios_alone}
    images = [{"id": i, "modality": m, "n": 100, "bpsp": 4.0 * ratios_alone[i], "best": 4.0,
               "ratio": ratios_alone[i]} for i, m in mods.items()]
    tot = sum(im["bpsp"] for im in images) / (4.0 * len(images))
    ev = tmp_path / "eval.json"
    ev.write_text(json.dumps({"sha256": hashlib.sha256(b"weights").hexdigest(),
                              "eval": {"images": images, "ratio": tot, "bpsp": tot * 4, "best_bpsp": 4.0}}))
    records = []
    for i in mods:
        alone, comb = 4.0 * ratios_alone[i], 4.0 * ratios_combined[i]
        same = alone == comb
        records.append({"input": i, "samples": 100, "lvpnet": {
            "bits_per_sample": comb, "model": sha, "versions": {"lvpnet": [8]},
            "codecs": {"lvpnet": 1} if same else {"lvpnet": 1, "fallback": 1},
            "learned_only": None if same else {"bits_per_sample": alone, "model": sha}}})
    rep = tmp_path / "val.json"
    rep.write_text(json.dumps({"inputs": records}))
    return ck, ev, rep


def _card(ship):
    return json.loads((ship.RES / "lvpnet-v1.json").read_text())


def test_default_on_the_files_with_the_safety_net(ship, tmp_path):
    """The estimate loses on US (learned alone 1.1x) but the files, with the fallback's slices, win
    everywhere: the learned codec becomes the default, and the card keeps both figures."""
    ck, ev, rep = _inputs(tmp_path, {"ct_a": 0.8, "ct_b": 0.85, "us_a": 1.1, "us_b": 1.1},
                          {"ct_a": 0.8, "ct_b": 0.85, "us_a": 0.97, "us_b": 0.97}, None)
    assert ship.main([str(ck), str(ev)]) == 0
    assert _card(ship)["default_codec"] is False and "val_files" not in _card(ship)  # estimate: US loses
    assert ship.main([str(ck), str(ev), "--files", str(rep)]) == 0
    card = _card(ship)
    files = card["val_files"]
    assert card["default_codec"] is True
    assert files["ratio_per_modality"] == pytest.approx({"CT": 0.825, "US": 0.97})
    assert files["learned_alone_ratio_per_modality"] == pytest.approx({"CT": 0.825, "US": 1.1})
    assert files["learned_alone_ratio"] == pytest.approx((0.8 + 0.85 + 1.1 + 1.1) / 4)
    assert files["codec_versions"] == [8]
    assert (ship.RES / "lvpnet-v1.pt").read_bytes() == b"weights"


@pytest.mark.parametrize("alone, combined", [
    ({"ct_a": 1.0, "ct_b": 1.02, "us": 0.8}, {"ct_a": 1.0, "ct_b": 1.02, "us": 0.8}),  # CT (2 images) loses
    ({"ct_a": 0.9, "ct_b": 1.2, "us": 1.2}, {"ct_a": 0.9, "ct_b": 0.99, "us": 0.99}),  # the fallback does the work
])
def test_no_default_when_the_files_lose(ship, tmp_path, alone, combined):
    ck, ev, rep = _inputs(tmp_path, alone, combined, None)
    assert ship.main([str(ck), str(ev), "--files", str(rep)]) == 0
    assert _card(ship)["default_codec"] is False


def test_files_of_other_weights_are_refused(ship, tmp_path):
    ck, ev, rep = _inputs(tmp_path, {"ct_a": 0.9, "ct_b": 0.9, "us": 0.9}, {"ct_a": 0.9, "ct_b": 0.9, "us": 0.9}, "ab" * 32)
    with pytest.raises(SystemExit, match="other weights"):
        ship.main([str(ck), str(ev), "--files", str(rep)])
    assert not (ship.RES / "lvpnet-v1.json").exists()


def test_a_refreshed_card_keeps_what_was_measured_of_the_latent_and_new_weights_do_not(ship, tmp_path):
    """encoder_latent (the encoder writes the prior's mode) belongs to the weights it was measured on."""
    ck, ev, rep = _inputs(tmp_path, {"ct_a": 0.8, "ct_b": 0.85, "us": 0.9}, {"ct_a": 0.8, "ct_b": 0.85, "us": 0.9}, None)
    assert ship.main([str(ck), str(ev)]) == 0
    card = _card(ship)
    card.update(encoder_latent="prior_mode", encoder_latent_note="measured")
    (ship.RES / "lvpnet-v1.json").write_text(json.dumps(card))
    assert ship.main([str(ck), str(ev), "--files", str(rep)]) == 0  # the same weights, figures refreshed
    assert _card(ship)["encoder_latent"] == "prior_mode" and _card(ship)["encoder_latent_note"] == "measured"
    ck.write_bytes(b"other weights")
    ev.write_text(ev.read_text().replace(hashlib.sha256(b"weights").hexdigest(),
                                         hashlib.sha256(b"other weights").hexdigest()))
    assert ship.main([str(ck), str(ev)]) == 0
    assert "encoder_latent" not in _card(ship)  # new weights: the GMSM until measured


def test_a_modality_of_one_image_does_not_decide_alone(ship, tmp_path):
    """Issue 17 counts a modality with at least two val images: the one ultrasound image 0.06% over
    its best classical codec (as the val mammogram's file, container included) is in the total but
    does not veto the default; the same with two such images does."""
    ck, ev, rep = _inputs(tmp_path, {"ct_a": 0.9, "ct_b": 0.95, "us": 1.05}, {"ct_a": 0.9, "ct_b": 0.95, "us": 1.0006}, None)
    assert ship.main([str(ck), str(ev), "--files", str(rep)]) == 0
    card = _card(ship)
    assert card["default_codec"] is True
    assert card["val_files"]["images_per_modality"] == {"CT": 2, "US": 1}
    assert ship.wins(card["val_files"], {}, 0.9, {"CT": 2, "US": 2}) is False
