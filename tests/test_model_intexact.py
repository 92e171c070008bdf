"""The exported integer decoder agrees exactly with the QAT forward, in float32 and float64."""

import numpy as np
import pytest
import torch

from lvpnet.coding.estimate import slice_bits
from lvpnet.model import IntegerDecoder, LVPNet, ModelConfig, pad_edge, polyphase_pad
from lvpnet.model.intnet import EXACT_LIMIT, IntConv2d, int_conv, spec_bound
from lvpnet.model.lvpnet import load_checkpoint, save_checkpoint
from lvpnet.model.prep import ORDERS, padded_size, slice_params, sub_real_shape

SMALL = dict(enc_widths=[4, 8, 8, 8, 8, 8], qcm_hidden=8, up_channels=4, pred_width=8, ctx_width=4, pred_layers=2)


def _perturb(model: LVPNet, seed=0):
    """Random but in-range weights everywhere, so no path is trivially zero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, IntConv2d):
                mod.weight.copy_(torch.randint(-127, 128, mod.weight.shape, generator=g).float() * 2.0**-mod.fw)
                mod.bias.copy_(torch.randint(-5000, 5000, mod.bias.shape, generator=g).float() * 2.0 ** -(mod.fw + mod.f_in))
        model.prior.hist.uniform_(0.1, 1.0, generator=g)


def _image(seed, H, W, bits):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:H, :W]
    base = (np.sin(yy / 7.0) + np.cos(xx / 5.0) + 2) / 4 * (2**bits - 1)
    img = base + rng.normal(0, 2 ** (bits - 6), (H, W))
    return np.clip(img, 0, 2**bits - 1).astype(np.int64)


@pytest.mark.parametrize(
    "subimage,head,rows",
    [(2, 1, False), (1, 1, False), (2, 2, False), (4, 2, False), (4, 2, True), (1, 2, True), (4, 3, True), (2, 3, False)],
)
def test_qat_forward_equals_integer_path(subimage, head, rows):
    torch.manual_seed(0)
    cfg = ModelConfig(subimage=subimage, head=head, ctx_bits=9 if subimage == 4 else 12, step0_rows=rows, **SMALL)
    model = LVPNet(cfg).double()
    _perturb(model)
    model.eval()
    H, W = 45, 70  # not multiples of 32: padding inside
    img = _image(1, H, W, 12)
    vmin, R, B = slice_params(img)
    Hp, Wp = padded_size(H, W, 32)
    vp = polyphase_pad(img - vmin, Hp, Wp, subimage)
    mask = np.zeros((Hp, Wp), bool)
    mask[:H, :W] = True
    with torch.no_grad():
        out = model(
            torch.from_numpy(vp).double()[None], torch.from_numpy(mask)[None], torch.tensor([R]), torch.tensor([B]),
            return_params=True,
        )
    dec = IntegerDecoder(model.export_decoder(), dtype=torch.float64)
    dec32 = IntegerDecoder(model.export_decoder(), dtype=torch.float32)
    decg = IntegerDecoder(model.export_decoder(), dtype=torch.float32, impl="gemm")
    decf = IntegerDecoder(model.export_decoder(), dtype=torch.float32, int8=False)  # the float convs (GPU path)
    assert dec.int8 and dec32.int8 and not decg.int8  # int8 trunk on the CPU by default (model.int8_trunk)
    z = out["z"][0]
    feats = dec.features(z)
    assert torch.equal(feats, dec32.features(z).double())
    assert torch.equal(feats, decg.features(z).double())
    f = subimage
    ctx = []
    nontrivial = 0
    for k, (di, dj) in enumerate(ORDERS[f]):
        sub = torch.from_numpy(vp[di::f, dj::f])
        mu, s = dec.predict(feats, ctx, k, R, B, known=sub)
        mu32, s32 = dec32.predict(dec32.features(z), ctx, k, R, B, known=sub)
        mug, sg = decg.predict(decg.features(z), ctx, k, R, B, known=sub)
        muf, sf = decf.predict(decf.features(z), ctx, k, R, B, known=sub)
        if k == 0 and rows:  # what the decoder does: one row at a time from the row above
            raw0 = dec32.step0_head(dec32.features(z))
            for r in range(sub.shape[0]):
                up = sub[max(r - 1, 0) : max(r, 1)]
                mr, sr = dec32.step0_rows(raw0, up, r, R, B)
                assert torch.equal(mr[0], mu[r]) and torch.equal(sr[0], s[r]), f"row {r}"
        assert torch.equal(mu, out["mu"][k, 0]) and torch.equal(s, out["s"][k, 0]), f"step {k}: QAT != integer path"
        assert torch.equal(mu, mu32) and torch.equal(s, s32), f"step {k}: float32 != float64"
        assert torch.equal(mu, mug) and torch.equal(s, sg), f"step {k}: gemm != int8"
        assert torch.equal(mu, muf) and torch.equal(s, sf), f"step {k}: float conv != int8"
        nontrivial += int(mu.unique().numel() > 3) + int(s.unique().numel() > 1)
        hr, wr = sub_real_shape(H, W, f, di, dj)
        assert torch.equal(pad_edge(sub[:hr, :wr], *sub.shape), sub)  # decoder rebuilds the padding exactly
        ctx.append(sub)
    assert nontrivial >= 2


def test_head3_from_head2_predicts_the_same_until_trained():
    """Resuming a head-2 checkpoint as head 3 adds zero linear terms: identical (mu, s)."""
    torch.manual_seed(0)
    kw = dict(subimage=4, ctx_bits=9, step0_rows=True, **SMALL)
    m2 = LVPNet(ModelConfig(head=2, **kw)).double()
    _perturb(m2)
    m3 = LVPNet(ModelConfig(head=3, **kw)).double()
    m3.load_resumable({"config": m2.export_decoder()["config"], "state_dict": m2.state_dict()})
    img = _image(2, 40, 50, 10)
    vmin, R, B = slice_params(img)
    vp = polyphase_pad(img - vmin, 64, 64, 4)
    d2 = IntegerDecoder(m2.export_decoder())
    d3 = IntegerDecoder(m3.export_decoder())
    z = m2.encode_slice(vp, B)
    assert torch.equal(z, m3.encode_slice(vp, B))
    f2, f3, ctx = d2.features(z), d3.features(z), []
    for k, (di, dj) in enumerate(ORDERS[4]):
        sub = torch.from_numpy(vp[di::4, dj::4])
        a, b = d2.predict(f2, ctx, k, R, B, known=sub), d3.predict(f3, ctx, k, R, B, known=sub)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]), f"step {k}"
        ctx.append(sub)


def test_lin_index_takes_the_nearest_decoded_pixels():
    from lvpnet.model.predictor import LIN_TERMS, lin_index

    idx, ok = lin_index(4, True)
    order = ORDERS[4]
    assert ok[0].sum() == 3 and ok[1].sum() == 9 and ok[2:].all()  # step 1 sees step 0 only
    # the last step sees every other phase: its nearest 8 are the 3x3 neighbourhood
    a, b = order[-1]
    offs = []
    for ch in idx[-1].tolist():
        j, t = divmod(ch, 9)
        c, e = order[j]
        offs.append((4 * (t // 3 - 1) + c - a, 4 * (t % 3 - 1) + e - b))
    assert len(set(offs)) == LIN_TERMS
    assert {o for o in offs if max(abs(o[0]), abs(o[1])) == 1} == {(y, x) for y in (-1, 0, 1) for x in (-1, 0, 1)} - {(0, 0)}


def test_partial_sum_bounds():
    model = LVPNet(ModelConfig())  # the full default size
    ex = model.export_decoder()
    specs = [ex["qcm"]["l1"], ex["qcm"]["l2"], ex["up"], ex["predictor"]["head"], ex["predictor"]["ctx"]]
    specs += ex["predictor"]["layers"]
    for sp in specs:
        assert spec_bound(sp) < EXACT_LIMIT
        assert sp["weight"].abs().max() <= 127


def test_worst_case_accumulator_is_exact_in_float32():
    """All inputs and weights at their bounds: float32 and float64 agree (largest partial sums)."""
    layer = IntConv2d(3, 4, 3, in_max=4095, f_in=12, f_out=4)
    sp = layer.export()
    sp["weight"] = torch.full_like(sp["weight"], 127)
    sp["weight"][1] = -127
    sp["bias"] = torch.full_like(sp["bias"], 2**18)
    x = torch.full((1, 3, 9, 9), 4095.0)
    x[..., ::2, ::3] = 4093.0
    sp["raw"] = True
    a32 = int_conv(x.float(), sp)
    a64 = int_conv(x.double(), sp)
    assert torch.equal(a32.double(), a64)
    assert a64.abs().max() < 2**24


def test_checkpoint_roundtrip_and_slice_bits(tmp_path):
    torch.manual_seed(0)
    model = LVPNet(ModelConfig(**SMALL))
    p = tmp_path / "m.pt"
    sha = save_checkpoint(p, model, {"note": "test"})
    assert len(sha) == 64
    m2 = LVPNet.from_checkpoint(p)
    dec = IntegerDecoder.from_checkpoint(p)
    img = _image(2, 40, 33, 16)
    r = slice_bits(m2, dec, img)
    assert r["n"] == 40 * 33 and r["pixel_bits"] > 0 and r["latent_bits"] > 0
    ck = load_checkpoint(p)
    assert ck["meta"]["note"] == "test"
