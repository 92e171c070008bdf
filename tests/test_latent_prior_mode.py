"""Weights whose card says their GMSM's latent does not pay: the encoder writes the prior's mode and never
runs the float encoder; the decoder reads it as any latent; Inspect's bits are those of the file."""

import numpy as np
import pytest

from lvpnet.codecs import weights
from lvpnet.codecs.lvpnet_chunk import unpack_chunk
from lvpnet.codecs.lvpnet_codec import LVPNetCodec
from lvpnet.codecs.weights import shipped_weights

pytestmark = pytest.mark.skipif(shipped_weights() is None, reason="no shipped weights")


def _slice():
    yy, xx = np.mgrid[:96, :80]
    rng = np.random.default_rng(3)
    return (800 + 300 * np.sin(yy / 7.0) * np.cos(xx / 9.0) + rng.normal(0, 6, yy.shape)).astype(np.int16)


def test_the_card_decides_for_its_own_weights_only(monkeypatch):
    card = weights.shipped_card()
    sha = card["sha256"]
    assert card.get("encoder_latent") == "prior_mode" and weights.writes_prior_mode_latent(sha)
    assert not weights.writes_prior_mode_latent("0" * 64)  # other weights (LVPNET_WEIGHTS): the GMSM
    assert not weights.writes_prior_mode_latent(None)
    monkeypatch.setattr(weights, "shipped_card", lambda: {k: v for k, v in card.items() if k != "encoder_latent"})
    assert not weights.writes_prior_mode_latent(sha)  # a card that does not say so: the GMSM


def test_the_encoder_writes_the_prior_mode_without_the_gmsm(monkeypatch):
    codec = LVPNetCodec(device="cpu")
    eng = codec.engine()
    assert eng.prior_mode_latent
    x = _slice()
    data = codec.encode(x)
    assert eng._model is None  # the float encoder was neither run nor loaded
    assert np.array_equal(codec.decode(data, x.shape, x.dtype, codec.version), x)
    (plane,) = unpack_chunk(data, 1, codec.version)
    from lvpnet.coding.profiles import PROFILES

    zs = eng.latent.decode(plane.latent, eng.latent_shape(*x.shape), PROFILES[codec.version].staged_latent)
    mode = eng.dec.latent_tables.argmax(-1).cpu().numpy()
    assert np.array_equal(zs, np.broadcast_to(mode[:, None, None], zs.shape))  # symbols: z + zmax
    # the same weights told to run the GMSM run it, and the file decodes
    other = LVPNetCodec(device="cpu")
    other.engine().prior_mode_latent = False
    gmsm = other.encode(x)
    assert other.engine()._model is not None  # (on this slice the GMSM writes the mode too: its latent is dead)
    assert np.array_equal(other.decode(gmsm, x.shape, x.dtype, other.version), x)


def test_inspect_counts_the_latent_the_file_holds():
    """The estimate's walk uses the z the encoder writes: Inspect's bits agree with the file's latent."""
    from lvpnet import analysis

    model = analysis.load_model()
    x = _slice()
    maps = analysis.analyse_slice(x, model, ablation=True)
    mode = model.dec.latent_tables.argmax(-1).cpu().numpy() - int(model.dec.zmax)
    assert np.array_equal(maps.z, np.broadcast_to(mode[:, None, None], maps.z.shape))
    assert float(np.abs(maps.latent_saving).max()) == 0.0  # a constant latent: its ablation changes nothing
