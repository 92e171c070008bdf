"""The plane's side information as stages (``lvpnet.coding.stage``), composed from the profile."""

import numpy as np
import pytest
from conftest import smooth_image

from lvpnet.codecs.lvpnet_entropy import PixelCoder, new_coder
from lvpnet.coding import blocks, feedback, refine, stage
from lvpnet.coding.fitting import SliceFitting
from lvpnet.coding.profiles import PROFILES
from lvpnet.coding.stage import SideContext, SidePlan
from lvpnet.model.prep import ORDERS
from lvpnet.model.tables import build_pixel_tables

ORDER = ORDERS[4]
SENTINEL = (np.array([5], np.int32), np.array([13], np.int32))  # read after the stage: checks where it ends


@pytest.fixture(scope="module")
def uniform():
    tables, shifts = build_pixel_tables()
    return PixelCoder(tables[:2], shifts[:2], 64)  # only its uniform integers are used


def _flat_plane(rng, H, W, R):
    """A textured plane (the refinement has something to fit) with flat patches (the block map)."""
    yy, xx = np.mgrid[:H, :W]
    v = np.clip(R / 2 + R / 3 * np.sin((yy + 2 * xx) / 3.0) + rng.normal(0, 3, yy.shape), 0, R).astype(np.int64)
    v[: H // 2, : W // 2] = 0
    v[H // 2 :, : W // 4] = rng.integers(0, R + 1, (H - H // 2, W // 4))  # noisy next to exact: feedback pays
    v[H // 2 :, W - 24 :] = R // 3
    return v


def _ctx(uniform, v, R, g=0):
    km = None
    if g:
        km = np.zeros(v.shape, bool)
        km[::g, ::g] = True
    return SideContext(v.shape, R, ORDER, 80, uniform, None if km is None else np.where(km, v, 0), km)


def _fitted(v, R):
    """(refs, feedback) as the encoder fits them on ``v`` against a flat guess."""
    tables, shifts = build_pixel_tables()
    fits = SliceFitting(v, R, ORDER, tables, shifts, 64)
    f = 4
    for k, (di, dj) in enumerate(ORDER):
        vals = v[di::f, dj::f]
        fits.step(k, (di, dj), vals, np.full(vals.shape, R // 2, np.int64), np.full(vals.shape, 40, np.int64))
    return fits.refs, fits.fbs


def _round_trip(st, state, ctx, plan=None):
    """Write ``state`` over a sentinel, read it back: -> (state read, bits written, bits the coder grew)."""
    coder = new_coder()
    coder.encode_reverse(SENTINEL[0], blocks._UNIFORM, SENTINEL[1])
    before = coder.num_valid_bits()
    bits = st.write(coder, state, ctx)
    grown = coder.num_valid_bits() - before
    back = new_coder(coder.get_compressed())
    got = st.read(back, ctx, plan or SidePlan())
    assert back.decode(blocks._UNIFORM, SENTINEL[1])[0] == SENTINEL[0][0]
    assert back.is_empty()
    assert bits == pytest.approx(st.bits(state, ctx), rel=1e-12, abs=1e-12)
    return got, bits, grown


def _same_steps(a, b):
    for x, y in zip(a, b):
        assert (x is None) == (y is None)
        if x is not None and hasattr(x, "coefs"):
            assert (x.config, x.edges.tolist(), x.coefs.tolist()) == (y.config, y.edges.tolist(), y.coefs.tolist())
        elif x is not None:
            assert np.array_equal(x, y)


def _near(bits, grown, n_symbols):
    # the coder's rounding: its fixed-point probabilities and up to a word of state per stream
    assert abs(grown - bits) <= 32 + 0.01 * bits + 0.01 * n_symbols, (bits, grown)


@pytest.mark.parametrize("levels,block_bit", [(3, False), (5, False), (5, True)])
def test_coding_mode_round_trips(uniform, rng, levels, block_bit):
    st = stage.CodingMode(levels, block_bit)
    ctx = _ctx(uniform, np.zeros((8, 8), np.int64), 9)
    for weight in range(4):
        for flags in range(levels):
            for on in (False, True) if block_bit else (False,):
                mode = stage.Mode(weight, flags, on)
                got, bits, grown = _round_trip(st, mode, ctx)
                assert got == mode
                _near(bits, grown, 1)
    assert st.bits(stage.Mode(), ctx) == pytest.approx(np.log2(4 * levels * (2 if block_bit else 1)))


@pytest.mark.parametrize("omax", [4, 8])
def test_scale_offsets_round_trip(uniform, rng, omax):
    st = stage.ScaleOffsets(omax)
    ctx = _ctx(uniform, np.zeros((8, 8), np.int64), 9)
    offsets = rng.integers(-omax, omax + 1, len(ORDER))
    got, bits, grown = _round_trip(st, offsets, ctx)
    assert np.array_equal(got, offsets)
    assert bits == pytest.approx(len(ORDER) * np.log2(2 * omax + 1))
    _near(bits, grown, len(ORDER))


def test_scale_offsets_move_the_scales_within_the_tables(rng):
    s = rng.integers(0, 80, (5, 7))
    assert stage.ScaleOffsets.apply(s, None, 3, 80) is s
    offsets = np.array([0, 8, -8, 3])
    for k, d in enumerate(offsets):
        got = stage.ScaleOffsets.apply(s, offsets, k, 80)
        assert np.array_equal(got, np.clip(s + d, 0, 79))


def test_refinement_round_trips_the_fits(uniform, rng):
    R = 4095
    v = _flat_plane(rng, 128, 128, R)
    refs, fbs = _fitted(v, R)
    assert any(r is not None for r in refs) and any(d is not None for d in fbs)
    ctx = _ctx(uniform, v, R)
    got, bits, grown = _round_trip(stage.Refinement(), (refs, fbs), ctx)
    _same_steps(got[0], refs)
    _same_steps(got[1], fbs)
    sizes = stage.Refinement.symbols((refs, fbs), ctx)[1]
    _near(bits, grown, sizes.size)
    # nothing refined: the "none" of every step is still written
    none = ([None] * len(ORDER), [None] * len(ORDER))
    got, bits, _ = _round_trip(stage.Refinement(), none, ctx)
    _same_steps(got[0], none[0])
    ref_sizes = refine.side_symbols(none[0], ORDER, 80)[1]
    assert bits == pytest.approx(np.log2(ref_sizes.astype(float)).sum() + feedback.side_bits(none[1], len(ORDER)))


@pytest.mark.parametrize("g", [0, 4, 16])
def test_block_map_round_trips(uniform, rng, g):
    R = 255
    v = _flat_plane(rng, 96, 80, R)
    ctx = _ctx(uniform, v, R, g)
    bmap = blocks.plan(v, ctx.lattice_mask)
    assert bmap.count > 0
    on = SidePlan(coding_mode=stage.Mode(0, 0, True))
    got, bits, grown = _round_trip(stage.BlockMap(5, True), bmap, ctx, on)
    assert np.array_equal(got.flags, bmap.flags)
    m = got.pixel_mask()
    assert np.array_equal(got.pixel_values()[m], v[m])
    _near(bits, grown, bmap.flags.size)
    # the mode's bit off: no map written, none read
    got, bits, grown = _round_trip(stage.BlockMap(5, True), None, ctx)
    assert got is None and bits == 0.0 and grown == 0


def test_profile_names_its_stages_in_reading_order():
    want = {
        1: (),
        2: ("scale_offsets",),
        3: ("coding_mode", "scale_offsets"),
        4: ("coding_mode", "scale_offsets", "refinement"),
        **{n: ("coding_mode", "scale_offsets", "refinement") for n in range(5, 11)},
        11: ("coding_mode", "scale_offsets", "refinement", "block_map"),
    }
    # the setting that brings each stage in: a version adding it adds the stage
    brings = {"adapted_tables": "coding_mode", "scale_offsets": "scale_offsets", "refined": "refinement",
              "block_map": "block_map"}
    for n, p in PROFILES.items():
        assert p.side_stages() == want[n], n
        added = set(p.side_stages()) - set(PROFILES[n - 1].side_stages() if n > 1 else ())
        assert added == {brings[s] for s in p.adds if s in brings}, n
        assert [st.name for st in stage.side_stages(p)] == list(want[n])
    p11 = stage.side_stages(PROFILES[11])
    assert p11[0] == stage.CodingMode(5, True) and p11[1] == stage.ScaleOffsets(8)
    assert p11[3] == stage.BlockMap(5, True)
    assert stage.side_stages(PROFILES[3])[:2] == [stage.CodingMode(3, False), stage.ScaleOffsets(4)]


def _predicted_items(rng, with_ref: bool, R=255):
    """``_flat_plane``'s items as version 11 makes them, each pixel predicted by its left neighbour
    in its sub-image (near where the plane is smooth, exact on its flat patches); with
    ``with_ref`` a previous slice holding 70% of the plane."""
    import torch

    from lvpnet.coding.adapt import make_item
    from lvpnet.model.tables import pixel_symbols

    tables, shifts = build_pixel_tables()
    v = _flat_plane(rng, 96, 80, R)
    ref = np.where(rng.random(v.shape) < 0.7, v, -1) if with_ref else None
    f, items = 4, []
    for k, (di, dj) in enumerate(ORDER):
        vals = v[di::f, dj::f]
        mu, s = np.roll(vals, 1, axis=1), np.full(vals.shape, 20)
        sym, _low, nb, esc = (t.numpy() for t in pixel_symbols(*map(torch.from_numpy, (vals, mu, s, shifts)), 64))
        extra = np.where(esc, np.log2(R + 1.0), nb)
        items.append(make_item(k, sym, s, extra, vals, (di, dj), v, ORDER, f, True, None, True, ref, mu, s))
    return items, tables, v, R


@pytest.mark.parametrize("with_ref", [False, True])
@pytest.mark.parametrize("g", [0, 4])
def test_coding_plans_choose_as_the_encoder_did_inline(rng, with_ref, g):
    """``CodingMode.plan`` then ``BlockMap.plan`` give the choice the encoder made inline before
    (``adapt.choose_coding``, then ``block_choice.choose``) and leave the items as it did; the lattice
    of stride 4 takes the map here (its flat patches' flags then no longer pay), none does not."""
    import copy

    from lvpnet.coding import block_choice
    from lvpnet.coding.adapt import choose_coding

    items, tables, v, R = _predicted_items(rng, with_ref)
    inline = copy.deepcopy(items)
    first = choose_coding(inline, tables, 5, with_ref)
    bmap, want, _ = block_choice.choose(inline, tables, 5, with_ref, first, v, R, 4, g, adaptive_flags=True)
    sides = {st.name: st for st in stage.side_stages(PROFILES[11])}
    choice = sides["coding_mode"].plan(items, tables, with_ref)
    assert choice == stage.CodingChoice(*first)
    assert choice.ref_level == (1 if with_ref else 0)
    choice = sides["block_map"].plan(choice, items, tables, with_ref, v, R, 4, g)
    assert (choice.weight, choice.flags, choice.ref_level) == tuple(want)
    assert (choice.block_map is not None) == (bmap is not None) == (g == 4)
    if bmap is not None:
        assert np.array_equal(choice.block_map.flags, bmap.flags)
    assert choice.mode == stage.Mode(want[0], want[1], bmap is not None)
    for it, was in zip(items, inline):
        assert it.ref_level == was.ref_level
        assert np.array_equal(it.keep(choice.flags), was.keep(want[1]))


@pytest.mark.parametrize("version", [2, 4, 11])
def test_engine_side_information_reads_and_writes_back(tiny_model_path, one_torch_thread, version):
    """A plane the engine coded: its side information read with the stages and written again over
    the rest of the stream gives the stream's words back."""
    from lvpnet.codecs.lvpnet_engine import Engine

    eng = Engine(tiny_model_path, "cpu")
    rng = np.random.default_rng(5)
    x = smooth_image(rng, (64, 64), 0, 1000, np.int64)
    x[:32, :40] = 0
    p = PROFILES[version]
    plane = eng.encode_plane(x, p)
    stages = stage.side_stages(p)
    # a base lattice's pixels as the decoder has them: the plane's values there
    ctx = eng._side_context(x.shape, plane.R, plane.base_level, x - plane.vmin)
    assert plane.base_level or version < 7
    coder = new_coder(plane.pixels)
    side = stage.read_side(coder, stages, ctx)
    if version == 11:
        assert side.coding_mode.blocks and side.block_map is not None
    stage.write_side(coder, stages, side, ctx)
    assert np.array_equal(coder.get_compressed(), plane.pixels)


def _plane_items(rng, version, H=40, W=36, R=15):
    """Items of a plane with repeats (left half constant by row) and a reference slice, at
    profile ``version``'s settings: random symbols and extras with valid alphabets."""
    from lvpnet.coding.adapt import make_item, set_reference_level

    tables, shifts = build_pixel_tables()
    order, f = ORDERS[2], 2
    v = rng.integers(0, R + 1, (H, W))
    v[:, : W // 2] = v[:, :1]
    ref = np.where(rng.random((H, W)) < 0.5, v, -1)
    p = PROFILES[version]
    items, extras = [], []
    for k, (di, dj) in enumerate(order):
        vals = v[di::f, dj::f]
        n = vals.size
        s = rng.integers(0, 60, n)
        sym = rng.integers(0, 2 * 64 + 1, n)
        extras.append(rng.integers(0, 1 << shifts[s]))
        items.append(make_item(k, sym, s, np.zeros(n), vals, (di, dj), v, order, f, p.adapted_tables, None,
                               p.min_flags, ref if p.reference else None, vals, s))
    if p.reference:
        set_reference_level(items, 1)
    return items, extras, PixelCoder(tables, shifts, 64), R


@pytest.mark.parametrize("version", [1, 3, 8, 10])
def test_item_stages_round_trip(rng, version):
    """Every item's stages planned forward, written in reverse, read back in order: the same flags
    and symbols, each stage's bits on both sides alike and near what the coder grew."""
    from lvpnet.coding import flag_adapt
    from lvpnet.coding.item_stage import PlaneWalk, StepItems, item_stages, plan_items, write_items

    p = PROFILES[version]
    items, extras, pixels, R = _plane_items(rng, version)
    weight, flags = (2, 2) if p.adapted_tables else (0, 0)
    stages = item_stages(p)
    assert list(stages) == [n for n in ("reference_flags", "neighbour_flags", "symbols") if n in stages]
    walk = PlaneWalk(pixels, R, flags, adaptive=flag_adapt.AdaptiveFlags() if p.adaptive_flags else None)
    coded, total = plan_items(StepItems(items, extras), stages, walk, weight, want_bits=True)
    if p.adapted_tables:
        assert any(rec.neighbour_flags is not None for rec in coded)
    if p.reference:
        assert any(rec.reference_flags is not None for rec in coded)
    coder = new_coder()
    write_items(coder, coded, stages, walk)
    grown = coder.num_valid_bits()

    back = new_coder(coder.get_compressed())
    dwalk = PlaneWalk.decoder(pixels, R, pixels.tables, weight if p.adapted_tables else None, flags,
                              p.adaptive_flags, want_bits=True)
    read_bits = {name: 0.0 for name in stages}
    for it, rec in zip(items, coded):
        dwalk.start(it.k, it.row)
        if rec.reference_flags is not None:
            hit, b = stages["reference_flags"].pop(back, it.ref_x, dwalk)
            assert np.array_equal(hit, rec.reference_flags.hit)
            read_bits["reference_flags"] += b
        if rec.neighbour_flags is not None:
            x = it.adaptive_ctx(flags) if p.adaptive_flags else it.flag_x(flags)
            hit, b = stages["neighbour_flags"].pop(back, x, dwalk)
            assert np.array_equal(hit, it.flag_hit(flags))
            read_bits["neighbour_flags"] += b
        (sym, extra), b = stages["symbols"].pop(back, it.s[rec.keep], dwalk)
        assert np.array_equal(sym, rec.symbols.sym) and np.array_equal(extra[extra > 0], rec.symbols.extra[extra > 0])
        read_bits["symbols"] += b
    assert back.is_empty()
    assert sum(read_bits.values()) == pytest.approx(total, rel=1e-12)
    _near(total, grown, sum(it.sym.size for it in items))


def test_step_items_keep_items_and_extras_together(rng):
    from lvpnet.coding.item_stage import StepItems

    items, extras, _pixels, _R = _plane_items(rng, 3)
    plane = StepItems(items[:2], extras[:2]) + StepItems(items[2:], extras[2:])
    assert all(a is b for a, b in zip(plane.items + plane.extras, items + extras))
    assert len(plane.items) == len(plane.extras) == len(items)
    rest = plane.without({0, 2})
    assert [it.k for it in rest.items] == [1, 3]
    assert rest.extras[0] is extras[1] and rest.extras[1] is extras[3]


def test_profile_names_its_item_stages():
    for n, p in PROFILES.items():
        flags = () if n < 3 else ("adaptive_flags",) if n >= 10 else ("neighbour_flags",)
        assert p.item_stages() == (("reference_flags",) if n >= 8 else ()) + flags + ("symbols",), n
