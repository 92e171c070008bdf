"""lvpnet.coding.repeat: neighbour-repeat flags (candidates from decoded neighbours, adaptive flag tables)."""

from pathlib import Path

import numpy as np
import pytest

from lvpnet.coding.adapt import PlaneItem, choose_plane_coding, make_item, plane_bits
from lvpnet.coding.repeat import CONTEXTS, FlagCounts, candidates, ring_for_step, row_ring
from lvpnet.model.prep import ORDERS
from lvpnet.model.tables import TOTAL, build_pixel_tables


@pytest.mark.parametrize("f", [2, 4])
def test_every_ring_uses_only_decoded_phases(f):
    """The decoder can only look at pixels of earlier steps: every step's ring lands on them,
    and every step after the first has a ring."""
    order = ORDERS[f]
    for k in range(len(order)):
        ring = ring_for_step(order, k)
        assert (ring is None) == (k == 0)
        if ring:
            di, dj = order[k]
            assert all(((di + dy) % f, (dj + dx) % f) in order[:k] for dy, dx in ring)
    assert ring_for_step(ORDERS[1], 0) is None


def test_candidates_majority_first_and_edges():
    v = np.array([[5, 5, 7, 0],
                  [5, 9, 5, 0],
                  [3, 5, 8, 0],
                  [0, 0, 0, 0]])
    ring = ((-1, 0), (1, 0), (0, -1), (0, 1))
    c, x = candidates(v, (1, 1), 2, (2, 2), ring)  # pixels (1,1), (1,3), (3,1), (3,3)
    assert c[0, 0] == 5 and x[0, 0] == 4  # (1,1): up 5, down 5, left 5, right 5
    assert c[0, 1] == 0 and x[0, 1] == 2  # (1,3): up 0, down 0, left 5; right is outside
    assert c[1, 1] == 0 and x[1, 1] == 2  # (3,3): up 0, left 0; down and right are outside
    c, x = candidates(np.array([[4]]), (0, 0), 1, (1, 1), ring)
    assert x[0, 0] == 0  # no neighbour inside: no flag


@pytest.mark.parametrize("H,W", [(37, 29), (9, 1), (1, 6), (16, 16)])
def test_candidates_numba_equals_numpy(monkeypatch, H, W):
    """The compiled kernel and the numpy path give the same candidates and contexts, ties and
    plane edges included, for every step's ring and for step 0's rows."""
    from lvpnet.coding import repeat

    pytest.importorskip("numba")
    rng = np.random.default_rng(H * W)
    v = rng.integers(0, 3, (H, W)).astype(np.int64)  # three values: ties everywhere
    rings = [(ORDERS[4][k], ring_for_step(ORDERS[4], k)) for k in range(1, 16)] + [((0, 0), row_ring(4))]
    for (di, dj), ring in rings:
        shape = (len(range(di, H, 4)), len(range(dj, W, 4)))
        if not shape[0] * shape[1]:
            continue
        fast = candidates(v, (di, dj), 4, shape, ring)
        monkeypatch.setattr(repeat, "_candidates_kernel", lambda: False)
        slow = candidates(v, (di, dj), 4, shape, ring)
        monkeypatch.undo()
        assert np.array_equal(fast[0], slow[0]) and np.array_equal(fast[1], slow[1]), (di, dj)


def test_flag_tables_are_valid_and_learn():
    fc = FlagCounts()
    for x in range(1, CONTEXTS):
        t = fc.table(x)
        assert t.sum() == TOTAL and (t >= 2).all()
    assert fc.table(4)[1] > fc.table(1)[1]  # the prior: 4 agreeing neighbours, likely a repeat
    fc.start_step(1)
    fc.add(np.ones(1000, bool), np.full(1000, 1))
    assert fc.table(1)[1] == fc.table(1)[1]  # nothing counted before the next step
    before = fc.table(1)[1]
    fc.start_step(2)
    assert fc.table(1)[1] > 0.99 * TOTAL > before
    b = fc.bits(np.array([True, False, True]), np.array([1, 1, 0]))
    assert b[0] < 0.02 and b[1] > 6 and b[2] == 0


def test_flags_pay_off_on_a_flat_background():
    """A flat background with a block of noise: the encoder switches flags on, and the flagged
    pixels cost next to nothing; pure noise keeps them off."""
    base = build_pixel_tables(n_scales=12, per_octave=4, sigma_min=0.5, K=8)[0].astype(np.int64)
    rng = np.random.default_rng(0)
    order, f = ORDERS[4], 4

    def items_for(v):
        out = []
        for k, (di, dj) in enumerate(order):
            vals = v[di::f, dj::f]
            sym = np.clip(vals - 8, -8, 8) + 8  # a fixed "prediction" of 8: symbols around the middle
            s = np.full(vals.shape, 6)
            out.append(make_item(k, sym, s, np.zeros(vals.shape), vals, (di, dj), v, order, f))
        return out

    v = np.zeros((64, 64), np.int64)
    v[20:40, 20:40] = rng.integers(0, 16, (20, 20))
    items = items_for(v)
    w, flags = choose_plane_coding(items, base)
    assert flags
    on = sum(float(b.sum()) for b in plane_bits(items, base, w, True))
    off = min(sum(float(b.sum()) for b in plane_bits(items, base, wi, False)) for wi in range(4))
    assert on < 0.8 * off
    noise = rng.integers(0, 16, (64, 64))
    assert not choose_plane_coding(items_for(noise), base)[1]
    assert isinstance(items[0], PlaneItem) and items[0].hit is None  # step 0: no flags


def _walked_bits(items, base, w, flags, adaptive):
    """``plane_bits`` item by item as ``walk_plane`` yields the coding state (its definition)."""
    from lvpnet.coding import flag_adapt
    from lvpnet.coding.adapt import ref_flag_bits, walk_plane

    af = flag_adapt.AdaptiveFlags() if adaptive else None
    out = []
    for it, keep, tabs, counts, refs in walk_plane(items, base, w, flags):
        b = ref_flag_bits(it, refs)
        if it.flagged(flags) and af is not None:
            b += af.pixel_bits(it.flag_hit(flags), it.adaptive_ctx(flags))
        elif it.flagged(flags):
            b += counts.bits(it.flag_hit(flags), it.flag_x(flags))
        b[keep] += tabs.symbol_bits(it.sym[keep], it.s[keep]) + it.extra_bits[keep]
        out.append(b)
    return out


@pytest.mark.parametrize("adaptive", [False, True])
def test_plane_bits_are_the_walks_pixel_by_pixel(adaptive):
    """``plane_bits`` looks a step's table bits up once for all its rows: the very floats of the
    item-by-item walk, at every prior weight and flag level (the encoder's choices compare them)."""
    base = build_pixel_tables(n_scales=12, per_octave=4, sigma_min=0.5, K=8)[0].astype(np.int64)
    order, f = ORDERS[4], 4
    rng = np.random.default_rng(7)
    v = np.zeros((48, 64), np.int64)
    v[8:40, 12:52] = rng.integers(0, 16, (32, 40))
    v[20:30, 20:44] = 5  # a flat patch inside: flags hit there
    items = []
    for k, (di, dj) in enumerate(order):
        vals = v[di::f, dj::f]
        sym, s = np.clip(vals - 8, -8, 8) + 8, rng.integers(0, 12, vals.shape)
        extra = rng.integers(0, 3, vals.shape).astype(np.float64)
        mu, scale = vals + rng.integers(-2, 3, vals.shape), s
        if k == 0:
            for r in range(vals.shape[0]):
                items.append(make_item(0, sym[r], s[r], extra[r], vals[r : r + 1], (r * f, 0), v, order, f, row=r,
                                       mu=mu[r], scale=scale[r]))
        else:
            items.append(make_item(k, sym, s, extra, vals, (di, dj), v, order, f, mu=mu, scale=scale))
    for w in range(4):
        for flags in range(5):
            got, want = plane_bits(items, base, w, flags, adaptive), _walked_bits(items, base, w, flags, adaptive)
            assert all(np.array_equal(a, b) for a, b in zip(got, want)) and len(got) == len(want) == len(items)


def test_rows_of_sub_image_0_flag_from_the_row_above():
    """Sub-image 0 decoded row by row: candidates come from the three pixels above in that
    sub-image, with contexts of their own, and the counts learn row by row; on a flat
    background the encoder takes flag level 2 (rows too)."""
    base = build_pixel_tables(n_scales=12, per_octave=4, sigma_min=0.5, K=8)[0].astype(np.int64)
    order, f = ORDERS[4], 4
    v = np.zeros((64, 64), np.int64)
    v[24:40, 24:40] = np.random.default_rng(2).integers(0, 16, (16, 16))
    c, x = candidates(v, (8, 0), f, (1, 16), row_ring(f))  # row 2 of sub-image 0 (image row 8)
    assert (c == 0).all() and x[0, 0] == 2 and (x[0, 1:-1] == 3).all()  # first pixel: one neighbour outside
    items = []
    for k, (di, dj) in enumerate(order):
        vals = v[di::f, dj::f]
        sym, s = np.clip(vals - 8, -8, 8) + 8, np.full(vals.shape, 6)
        if k == 0:
            for r in range(vals.shape[0]):
                items.append(make_item(0, sym[r], s[r], np.zeros(vals.shape[1]), vals[r : r + 1], (r * f, 0), v,
                                       order, f, row=r))
        else:
            items.append(make_item(k, sym, s, np.zeros(vals.shape), vals, (di, dj), v, order, f))
    assert items[0].x is not None and (items[0].x == 0).all()  # row 0: nothing above
    assert (items[1].x[1:-1] == 3 + 4).all() and items[1].stage == (0, 1)
    w, level = choose_plane_coding(items, base)
    assert level == 2
    rows = sum(float(b.sum()) for b, it in zip(plane_bits(items, base, w, 2), items) if it.row is not None)
    rows_off = sum(float(b.sum()) for b, it in zip(plane_bits(items, base, w, 1), items) if it.row is not None)
    assert rows < 0.5 * rows_off


def test_flag_levels_pick_the_pixels_that_carry_flags():
    """Levels 1 and 2 flag every pixel with a candidate (level 2 also in sub-image 0's rows);
    levels 3 and 4 (bitstream version 5) only those whose neighbours mostly or all agree."""
    from lvpnet.coding.repeat import ROW0_CONTEXT, flag_contexts, flags_apply

    x = np.array([0, 1, 2, 3, 4])
    rows = np.array([0, 1, 2, 3]) + np.array([0, 1, 1, 1]) * ROW0_CONTEXT  # 0, 5, 6, 7
    assert [flags_apply(lv, None) for lv in range(5)] == [False, True, True, True, True]
    assert [flags_apply(lv, 0) for lv in range(5)] == [False, False, True, True, True]
    assert flag_contexts(x, 0, None).tolist() == [0, 0, 0, 0, 0]
    assert flag_contexts(x, 1, None).tolist() == [0, 1, 2, 3, 4]
    assert flag_contexts(x, 3, None).tolist() == [0, 0, 0, 3, 4]
    assert flag_contexts(x, 4, None).tolist() == [0, 0, 0, 0, 4]
    assert flag_contexts(rows, 1, 0).tolist() == [0, 0, 0, 0]
    assert flag_contexts(rows, 2, 0).tolist() == [0, 5, 6, 7]
    assert flag_contexts(rows, 3, 0).tolist() == [0, 0, 6, 7]
    assert flag_contexts(rows, 4, 0).tolist() == [0, 0, 0, 7]


def test_candidates_at_the_minimum_flag_in_contexts_of_their_own():
    """Bitstream version 6: a candidate at the plane's minimum carries a flag at levels 3 and 4
    whatever its context, and every flagged pixel with such a candidate counts in context
    ``x + CONTEXTS`` (at every level), with the prior of ``x``."""
    from lvpnet.coding.repeat import CONTEXTS, FLAG_CONTEXTS, PRIOR_HITS, FlagCounts, flag_contexts

    x = np.array([0, 1, 2, 3, 4, 1, 2, 3, 4])
    at_min = np.array([True, True, True, True, True, False, False, False, False])
    assert flag_contexts(x, 0, None, at_min).tolist() == [0] * 9
    assert flag_contexts(x, 1, None, at_min).tolist() == [0, 9, 10, 11, 12, 1, 2, 3, 4]
    assert flag_contexts(x, 3, None, at_min).tolist() == [0, 9, 10, 11, 12, 0, 0, 3, 4]
    assert flag_contexts(x, 4, None, at_min).tolist() == [0, 9, 10, 11, 12, 0, 0, 0, 4]
    rows = np.array([0, 5, 6, 7, 5])
    assert flag_contexts(rows, 3, 0, np.array([True, True, True, False, False])).tolist() == [0, 13, 14, 7, 0]
    assert flag_contexts(rows, 1, 0, np.ones(5, bool)).tolist() == [0] * 5  # level 1: no flags in the rows
    counts = FlagCounts()
    assert (counts.table(CONTEXTS + 4) == counts.table(4)).all() and FLAG_CONTEXTS == 2 * CONTEXTS
    counts.add(np.array([True, True, False]), np.array([12, 12, 4]))
    counts.start_step(1)
    assert counts.hits[12] == 2 and counts.total[12] == 2 and counts.total[4] == 1 and PRIOR_HITS[4] == 7


def test_a_padded_slice_flags_only_its_flat_background():
    """A CT-like plane, a ramp (no pixel repeats a neighbour) inside -2000 padding: flags on every
    pixel pay for nothing in the ramp, so the encoder picks a level that flags only where all
    or most neighbours agree, and it is cheaper than levels 1 and 2."""
    base = build_pixel_tables(n_scales=12, per_octave=4, sigma_min=0.5, K=8)[0].astype(np.int64)
    f, order = 4, ORDERS[4]
    yy, xx = np.mgrid[:64, :64]
    v = np.where(np.hypot(yy - 32, xx - 32) > 26, 0, 2000 + yy + xx).astype(np.int64)
    items = []
    for k, (di, dj) in enumerate(order[1:], start=1):
        vals = v[di::f, dj::f]
        sym = np.full(vals.shape, (base.shape[1] - 1) // 2)  # every value at the centre of its table
        items.append(make_item(k, sym, np.full(vals.shape, 3), np.zeros(vals.shape), vals, (di, dj), v, order, f))
    w, level = choose_plane_coding(items, base, 5)
    assert level in (3, 4)
    cost = {lv: sum(b.sum() for b in plane_bits(items, base, w, lv)) for lv in range(5)}
    assert cost[level] == min(cost.values()) and cost[level] < cost[1]
    assert choose_plane_coding(items, base)[1] < 3  # versions 3 and 4 know three levels


@pytest.mark.usefixtures("one_torch_thread")
def test_the_shipped_model_flags_a_padding_edge_at_the_minimum():
    """A CT-like slice with the shipped weights: noisy air and tissue inside a circle of -2000
    padding. Bitstream 6's flags on candidates at the minimum make the file over 0.5% shorter
    than without them (the padding's edge, where two neighbours are padding), and both decode."""
    from dataclasses import replace

    from lvpnet.codecs.lvpnet_codec import LVPNetCodec
    from lvpnet.coding.profiles import PROFILES
    from lvpnet.model import prep

    weights = Path(__file__).resolve().parents[1] / "resources" / "lvpnet-v1.pt"
    if not weights.is_file():
        pytest.skip("shipped weights not present")
    rng = np.random.default_rng(9)
    yy, xx = np.mgrid[:160, :176]
    r = np.hypot(yy - 80, xx - 88)
    x = np.where(r < 50, 40.0 + 20 * np.sin(xx / 7.0), -1000.0) + rng.normal(0, 12, yy.shape)
    x = np.where(r > 78, -2000, np.round(x)).astype(np.int64)
    v = prep.collapse_gaps(prep.to_grid(x)[2])[0]
    v -= v.min()
    eng = LVPNetCodec(weights, device="cpu").engine()
    p_on = PROFILES[6]
    p_off = replace(p_on, min_flags=False)
    on, off = eng.encode_plane(v, p_on), eng.encode_plane(v, p_off)
    assert np.array_equal(eng.decode_plane(on, *v.shape, p_on), v)
    assert np.array_equal(eng.decode_plane(off, *v.shape, p_off), v)
    assert len(on.latent) + len(on.pixels) < 0.995 * (len(off.latent) + len(off.pixels))
