"""Bitstream 11 against hostile or unusual input: block maps read from arbitrary words (bounded,
values inside the plane's range, only candidate blocks flagged, or the codec's ValueError), a map
forced onto planes where it never pays (one pixel, one row, odd sizes: the mode bit 1 must still
decode exactly), damaged mapped chunks (a ValueError, never other pixels silently), and what the
int8 trunk keeps per thread dropped after a slice that raised, while another thread adds steps."""

import threading

import numpy as np
import pytest
from golden_sets import SETS, weights_of

from lvpnet.codecs import lvpnet_engine
from lvpnet.codecs.lvpnet_codec import LVPNetCodec
from lvpnet.codecs.lvpnet_entropy import new_coder
from lvpnet.coding import block_choice, blocks
from lvpnet.model import int8_trunk

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SHAPES = [(1, 1), (1, 9), (9, 1), (8, 8), (17, 13), (33, 40)]


@pytest.fixture(scope="module")
def codec():
    return LVPNetCodec(weights_of("b11"), device="cpu")


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("g", [0, 2, 4, 16])
def test_a_map_read_from_any_words_is_bounded_and_in_range(shape, g):
    rng = np.random.default_rng(hash((shape, g)) % 2**32)
    R = 37
    km = block_choice.lattice_mask(shape, g)
    kv = None if km is None else np.where(km, rng.integers(0, R + 1, shape), 0)
    has, agree, _ = blocks.lattice_view(kv, km, shape)
    for trial in range(40):
        words = rng.integers(0, 2**32, rng.integers(0, 6), dtype=np.uint64).astype(np.uint32)
        if trial % 4 == 0:
            words[-1:] |= 1 << 31  # a valid ANS head (high bit set) as well as arbitrary ones
        try:
            bmap = blocks.read(new_coder(words), shape, R, kv, km)
        except ValueError:  # the codec's clear error (a first value that repeats nothing)
            continue
        assert bmap.flags.shape == blocks.grid(shape)
        assert not (bmap.flags & ~agree).any()  # a block whose lattice pixels disagree is never flagged
        v = bmap.pixel_values()
        assert v.shape == shape and v.min() >= 0 and v.max() <= R
        if km is not None:  # a flagged block with lattice pixels takes their value
            m = bmap.pixel_mask() & km
            assert np.array_equal(v[m], kv[m])


def _forced(monkeypatch, seen):
    """Every plane takes its map (the choice kept), as a hostile or careless encoder may write."""

    def choose(items, base, levels, with_reference, choice, v, R, f, g, adaptive_flags=True):
        km = block_choice.lattice_mask(v.shape, g)
        kv = None if km is None else np.where(km, v, 0)
        bmap = blocks.plan(v, km)
        block_choice.apply(items, bmap, f)
        seen.append(bmap.count)
        return bmap, choice, blocks.bits(bmap, R, kv, km)

    monkeypatch.setattr(block_choice, "choose", choose)


@pytest.mark.parametrize("x", [
    np.array([[0, 5]], np.uint8),
    np.array([[3], [3], [3], [9]], np.uint16),
    np.arange(9, dtype=np.uint8).reshape(1, 9) % 2,
    np.pad(np.arange(6, dtype=np.uint8).reshape(2, 3), ((0, 15), (4, 6)), constant_values=2),  # 17 x 13
    np.pad(np.array([[1, 0], [0, 1]], np.uint8) * 200, ((7, 0), (0, 7))),  # 9 x 9: one full block
    np.random.default_rng(3).integers(0, 5, (11, 7)).astype(np.uint8),  # no constant block at all
], ids=["1x2", "4x1", "1x9", "17x13", "9x9", "noise11x7"])
def test_a_forced_map_on_tiny_and_odd_planes_decodes_exactly(codec, monkeypatch, x):
    seen = []
    _forced(monkeypatch, seen)
    data = codec.encode(x)
    monkeypatch.undo()
    assert seen  # the mode bit was 1
    assert np.array_equal(codec.decode(data, x.shape, x.dtype, 11), x)


def _mapped_chunk(codec):
    x = np.load(SETS["b11"] / "us_overlay_rgb_uint8.npy")
    return x, codec.encode(x)


def test_damaged_mapped_chunks_raise_or_decode_what_was_written(codec):
    x, data = _mapped_chunk(codec)
    rng = np.random.default_rng(11)
    wrong = []
    for n in list(range(0, len(data), max(1, len(data) // 12))):  # truncations
        try:
            codec.decode(data[:n], x.shape, x.dtype, 11)
        except ValueError:
            continue
        wrong.append(f"truncated at {n} decoded")
    for _ in range(12):  # bytes changed inside (the chunk's CRC lives in the container, not here)
        d = bytearray(data)
        d[int(rng.integers(len(d)))] ^= int(rng.integers(1, 256))
        try:
            y = codec.decode(bytes(d), x.shape, x.dtype, 11)
        except ValueError:
            continue
        assert y.shape == x.shape and y.dtype == x.dtype
    assert wrong == []


@pytest.mark.skipif(not int8_trunk.supported(), reason="no int8 product on this CPU or no numba")
def test_a_slice_that_raises_leaves_no_int8_buffers_in_its_thread(codec, monkeypatch):
    x, data = _mapped_chunk(codec)
    int8_trunk.release_columns()
    calls, real = [], lvpnet_engine.values_from_symbols

    def damaged(*a, **kw):  # the stream found damaged at the third step, after the trunk has run
        calls.append(1)
        if len(calls) == 3:
            raise ValueError("decoded value outside the slice's range (damaged stream or other weights)")
        return real(*a, **kw)

    monkeypatch.setattr(lvpnet_engine, "values_from_symbols", damaged)
    with pytest.raises(ValueError):
        codec.decode(data, x.shape, x.dtype, 11)
    assert len(calls) == 3
    assert "columns" not in int8_trunk._LOCAL.__dict__
    steps = [st for st in codec.engine().dec._int8_steps.values() if st is not None and st.feats is not None]
    assert all("acc" not in st.feats._local.__dict__ for st in steps)


def test_end_slice_while_another_thread_adds_steps(codec):
    x, data = _mapped_chunk(codec)
    assert np.array_equal(codec.decode(data, x.shape, x.dtype, 11), x)  # the steps are built
    dec = codec.engine().dec
    steps = dec._int8_steps
    free = max(steps, default=0) + 1000

    class Adding:  # a step whose ``clear`` lets "another thread" add the next step meanwhile
        def __init__(self):
            self.feats = self
            self.ctx_sums = None

        def clear(self):
            steps.setdefault(free, None)

    steps[free - 1] = Adding()
    try:
        dec.end_slice()
    finally:
        steps.pop(free - 1, None)
        steps.pop(free, None)


def test_two_threads_decode_mapped_chunks_exactly(codec):
    """Two threads decoding at once (a viewer's workers): the int8 trunk's per-thread caches give
    each the integers it gets alone, across two plane sizes (buffers keyed by shape)."""
    x, data = _mapped_chunk(codec)
    y = np.load(SETS["b11"] / "flat_background_uint8.npy")
    dy = codec.encode(y)
    out, errors = {}, []

    def work(i):
        try:
            for j in range(3):
                a, d = (x, data) if (i + j) % 2 else (y, dy)
                out[(i, j)] = np.array_equal(codec.decode(d, a.shape, a.dtype, 11), a)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    ts = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert errors == [] and len(out) == 6 and all(out.values())


@pytest.mark.parametrize("R", [2 * 0xFFFF + 1, 1 << 24, 2**31 + 5, 2**32 - 2])
def test_a_forged_plane_range_on_a_mapped_plane_is_a_value_error(codec, R):
    """A header's range wider than any real plane (16 bits) on a plane that reads a map: the
    map's uniform values would ask constriction for more than 2**24 symbols, which panics (a
    ``BaseException`` no reader catches); the decoder must say the stream is damaged."""
    from lvpnet.codecs.lvpnet_chunk import header
    from lvpnet.coding.profiles import profile

    x, data = _mapped_chunk(codec)
    fmt, d = header(profile(11)), bytearray(data)
    v = list(fmt.unpack_from(d, 1 + fmt.size))  # plane 1: a chroma plane that takes the map
    v[1] = R
    fmt.pack_into(d, 1 + fmt.size, *v)
    try:
        codec.decode(bytes(d), x.shape, x.dtype, 11)
    except ValueError:
        return
    except BaseException as e:  # noqa: BLE001 - the panic is the failure this test is for
        pytest.fail(f"{type(e).__name__}: {e}")
    pytest.fail("decoded a chunk whose range was forged")


def test_a_native_panic_while_decoding_is_the_codecs_value_error(codec, monkeypatch):
    """Defence in depth: whatever constriction model a forged stream drives out of its domain, the
    reader gets the codec's ValueError, not pyo3's PanicException (a BaseException)."""
    from lvpnet.codecs.lvpnet_entropy import new_coder as real_new_coder

    x, data = _mapped_chunk(codec)

    def panicking(words=None):
        coder = real_new_coder(words)
        coder.decode(blocks._UNIFORM, np.full(1, (1 << 24) + 1, np.int32))  # panics inside constriction
        return coder

    monkeypatch.setattr(lvpnet_engine, "new_coder", panicking)
    with pytest.raises(ValueError, match="damaged"):
        codec.decode(data, x.shape, x.dtype, 11)


def test_lattice_values_outside_the_range_never_reach_the_map():
    """A flagged block takes its lattice pixels' value: one outside [0, R] (a lattice the base layer's
    checks let through) must stop the read, never fill a block with it."""
    shape, R, g = (33, 40), 9, 4
    km = block_choice.lattice_mask(shape, g)
    kv = np.where(km, R + 3, 0)
    rng = np.random.default_rng(5)
    raised = 0
    for _ in range(60):
        words = rng.integers(0, 2**32, 4, dtype=np.uint64).astype(np.uint32)
        words[-1] |= 1 << 31
        try:
            bmap = blocks.read(new_coder(words), shape, R, kv, km)
        except ValueError:
            raised += 1
            continue
        assert bmap.count == 0 or bmap.pixel_values().max() <= R
    assert raised  # some words flag a block, and those raise
