"""Integer frequency tables, the pixel <-> symbol mapping and slice preparation."""

import numpy as np
import torch

from lvpnet.model.prep import (
    ORDERS,
    grey_slices,
    pad_edge,
    planes_to_rgb,
    polyphase_pad,
    rgb_to_planes,
    slice_params,
    sub_real_shape,
    to_ctx,
)
from lvpnet.model.tables import (
    TOTAL,
    build_latent_tables,
    build_pixel_tables,
    latent_bits_exact,
    pixel_bits_exact,
    pixel_symbols,
    quantize_probs,
    values_from_symbols,
)


def test_quantize_probs_rows_sum_and_floor():
    rng = np.random.default_rng(0)
    p = rng.random((50, 130)) ** 8
    p[0] = 0.0
    p[0, 3] = 1.0
    f = quantize_probs(p)
    assert f.dtype == np.int32 and (f >= 1).all() and (f.sum(1) == TOTAL).all()
    assert f[0, 3] == TOTAL - 129


def test_pixel_tables_shape_and_shifts():
    tabs, shifts = build_pixel_tables(80, 4, 0.08, 64)
    assert tabs.shape == (80, 130) and (tabs >= 1).all() and (tabs.sum(1) == TOTAL).all()
    assert shifts[0] == 0 and (np.diff(shifts) >= 0).all()
    # bins of width 2**b hold 4..8 bins per sigma once b > 0
    sig = 0.08 * 2.0 ** (np.arange(80) / 4)
    big = shifts > 0
    assert ((sig[big] / 2.0 ** shifts[big] >= 4) & (sig[big] / 2.0 ** shifts[big] < 8)).all()
    # tables are unimodal around the centre symbol
    assert (tabs[:, 64] == tabs[:, :129].max(1)).all()


def test_every_value_is_codable_and_roundtrips():
    tabs, shifts = build_pixel_tables()
    shifts_t = torch.from_numpy(shifts)
    rng = np.random.default_rng(1)
    for R in (0, 1, 255, 1023, 65535):
        n = 20000
        v = torch.from_numpy(rng.integers(0, R + 1, n))
        v[:3] = torch.tensor([0, R, R // 2])
        mu = torch.from_numpy(rng.integers(0, R + 1, n))
        s = torch.from_numpy(rng.integers(0, 80, n))
        sym, low, nb, esc = pixel_symbols(v, mu, s, shifts_t, 64)
        assert ((sym >= 0) & (sym <= 129)).all()
        assert ((low >= 0) & (low < (1 << nb))).all()
        back = values_from_symbols(sym, low, mu, s, shifts_t, 64, escape_values=v)
        assert torch.equal(back, v)
        # escapes and only escapes use the last symbol
        assert torch.equal(esc, sym == 129)
        bits = pixel_bits_exact(v, mu, s, R, torch.from_numpy(tabs), shifts_t, 64)
        assert torch.isfinite(bits).all() and (bits > 0).all()


def test_bits_match_table_entries():
    tabs, shifts = build_pixel_tables()
    t = torch.from_numpy(tabs)
    v = torch.tensor([100, 100, 5000])
    mu = torch.tensor([100, 103, 0])
    s = torch.tensor([0, 40, 10])
    bits = pixel_bits_exact(v, mu, s, 65535, t, torch.from_numpy(shifts), 64)
    assert abs(bits[0].item() + np.log2(tabs[0, 64] / TOTAL)) < 1e-12
    sym, low, nb, esc = pixel_symbols(v, mu, s, torch.from_numpy(shifts), 64)
    assert esc[2] and abs(bits[2].item() - (-np.log2(tabs[10, 129] / TOTAL) + np.log2(65536))) < 1e-9
    assert abs(bits[1].item() - (-np.log2(tabs[40, sym[1]] / TOTAL) + nb[1].item())) < 1e-9


def test_latent_tables_and_bits():
    tab = build_latent_tables(np.zeros(5), np.ones(5) * 0.3, 31)
    assert tab.shape == (5, 63) and (tab.sum(1) == TOTAL).all()
    z = torch.zeros(5, 2, 3, dtype=torch.long)
    b = latent_bits_exact(z, torch.from_numpy(tab), 31)
    assert b.shape == (5, 2, 3) and (b < 3).all()


def test_polyphase_pad_keeps_each_subimage_self_contained():
    rng = np.random.default_rng(2)
    H, W = 37, 50
    v = rng.integers(0, 4096, (H, W))
    vp = polyphase_pad(v, 64, 64, 2)
    assert np.array_equal(vp[:H, :W], v)
    for di, dj in ORDERS[2]:
        sub = vp[di::2, dj::2]
        hr, wr = sub_real_shape(H, W, 2, di, dj)
        assert np.array_equal(pad_edge(sub[:hr, :wr], 32, 32), sub)
        assert torch.equal(pad_edge(torch.from_numpy(sub[:hr, :wr]), 32, 32), torch.from_numpy(sub))
    one = polyphase_pad(np.array([[7]]), 32, 32, 2)  # sub-images without real pixels -> zeros
    assert one[0, 0] == 7 and one.shape == (32, 32)


def test_slice_params_and_ctx():
    v = np.array([[-2000, 1896], [0, 5]], dtype=np.int16)
    vmin, R, B = slice_params(v)
    assert (vmin, R, B) == (-2000, 3896, 12)
    assert slice_params(np.zeros((3, 3), np.uint8)) == (0, 0, 1)
    c = to_ctx(np.array([0, 65535, 1000]), 16)
    assert list(c) == [0, 4095, 62]
    assert list(to_ctx(np.array([0, 255]), 8)) == [0, 4080]


def test_rgb_planes_roundtrip():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (5, 7, 3)).astype(np.uint8)
    planes = rgb_to_planes(x)
    assert np.array_equal(planes_to_rgb(planes, np.uint8), x)
    assert len(grey_slices(np.stack([x, x]), rgb=True)) == 6
