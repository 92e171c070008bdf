"""Golden files of the learned codec: fixed weights and inputs, fixed chunk bytes.

Decoding the committed chunks must give the inputs exactly (the format and the integer
decoder side must not change by accident). Encoding the inputs must give the same bytes: a
change of what the codec writes is a format change (bump ``LVPNetCodec.version`` and keep
decoding version 1). When the float encoder's architecture changes (its weights no longer
load), regenerate deliberately with ``tests/data/golden/make_golden.py``.
"""

import hashlib

import imagecodecs
import numpy as np
import pytest
from golden_sets import EXPECTED, SETS, weights_of

from lvpnet.codecs.lvpnet_codec import LVPNetCodec

# b1: model head 1, 2x2 sub-images, bitstream version 1
# b2-head2: model head 2, 4x4 sub-images, step 0 by rows, bitstream version 2 (per-step scale offsets)
# b2: as b2-head2 with model head 3 (signed linear terms, nonzero in these weights); every later set
#     shares these weights
# b3: bitstream version 3 (tables adapted to the slice, value gaps, repeat flags)
# b4: bitstream version 4 (locations refined on the slice)
# b5: bitstream version 5 (latent tables adapted to the slice, flag levels 3 and 4)
# b6: bitstream version 6 (tables counted by the distance from the minimum, flags on candidates at the
#     minimum)
# b7: bitstream version 7 (base lattices coded by JPEG-XL where that is smaller)
# b8: bitstream version 8 (flags for the pixels that repeat the previous slice; the inputs with a
#     ``<name>.ref.npy`` are coded against it)
# b9: bitstream version 9 (nothing computed for the base lattice's steps)
# b10: bitstream version 10 (neighbour-repeat flags by the prediction, adapting within a stage)
# b11: bitstream version 11 (constant 8 x 8 blocks out of the pixel stream; two inputs with flat
#      backgrounds, one RGB whose chroma planes take the map)
# (where they live and how their weights are stored once: golden_sets.py)
CASES = [(k, name) for k in SETS for name in sorted(EXPECTED[k]["chunks"])]
CURRENT = [(k, name) for k, name in CASES if EXPECTED[k]["codec_version"] == LVPNetCodec.version]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def codecs():
    return {k: LVPNetCodec(weights_of(k), device="cpu") for k in SETS}


@pytest.mark.parametrize("which", sorted(SETS))
def test_golden_files_present(codecs, which):
    here, expected, codec = SETS[which], EXPECTED[which], codecs[which]
    assert len(expected["chunks"]) >= 4 and expected["codec_version"] in codec.reads_versions
    assert hashlib.sha256(weights_of(which).read_bytes()).hexdigest() == expected["model_sha256"]
    assert codec.model_id() == expected["model_sha256"]
    for name, sha in expected["chunks"].items():
        assert hashlib.sha256((here / f"{name}.chunk").read_bytes()).hexdigest() == sha


def _reference(which: str, name: str) -> dict:
    """``{"reference": the frame before}`` for an input coded against it (set b8 on), else {}."""
    path = SETS[which] / f"{name}.ref.npy"
    return {"reference": np.load(path)} if path.exists() else {}


@pytest.mark.parametrize("which,name", CASES)
def test_golden_decode(codecs, which, name):
    x = np.load(SETS[which] / f"{name}.npy")
    data = (SETS[which] / f"{name}.chunk").read_bytes()
    y = codecs[which].decode(data, x.shape, x.dtype, EXPECTED[which]["codec_version"], **_reference(which, name))
    assert y.dtype == x.dtype and np.array_equal(y, x)


def test_a_golden_set_guards_what_the_codec_writes_now():
    assert len(CURRENT) >= 4


@pytest.mark.parametrize("which,name", CURRENT)
def test_golden_encode(codecs, which, name):
    x = np.load(SETS[which] / f"{name}.npy")
    try:
        data = codecs[which].encode(x, **_reference(which, name))
    except RuntimeError as e:  # load_state_dict: the encoder's layers changed
        pytest.fail(f"the golden weights no longer load into the float encoder ({str(e)[:200]}); "
                    "if the architecture change is meant, regenerate with tests/data/golden/make_golden.py")
    want = (SETS[which] / f"{name}.chunk").read_bytes()
    if EXPECTED[which].get("jpegxl", _JXL) != _JXL:  # another libjxl may write other base codestreams
        version = EXPECTED[which]["codec_version"]
        data, want = _without_base_codestreams(data, x, version), _without_base_codestreams(want, x, version)
    assert data == want, "the codec's output changed: bump its version or fix it"


_JXL = imagecodecs.jpegxl_version()


def _without_base_codestreams(data: bytes, x: np.ndarray, version: int = 7) -> list:
    """A version 7 or 8 chunk with each base layer's codestream replaced by the lattice it decodes to."""
    from lvpnet.codecs.lvpnet_base import decode_lattice
    from lvpnet.codecs.lvpnet_codec import unpack_chunk
    from lvpnet.coding import lattice

    out = []
    for p in unpack_chunk(data, 3 if x.ndim == 3 else 1, version):
        level = p.base_level
        sub = decode_lattice(p.base, *x.shape[:2], p.R, lattice.stride(4, level)) if level else None
        fields = (p.vmin, p.R, p.latent, p.pixels, p.step, p.gaps)
        out.append([np.asarray(f).tobytes() for f in fields] + [level, None if sub is None else sub.tobytes()])
    return out


@pytest.mark.parametrize("name,flags", [("levels_uint16", None), ("flat_background_uint8", True)])
def test_the_adapting_golden_inputs_adapt(codecs, name, flags):
    """Their pixel streams start with a coding mode that adapts the tables (levels_uint16) or
    switches the neighbour-repeat flags on (flat_background_uint8): the golden bytes guard
    those paths, not only the fixed tables."""
    from lvpnet.codecs.lvpnet_codec import unpack_chunk
    from lvpnet.codecs.lvpnet_entropy import new_coder
    from lvpnet.coding.adapt import ADAPT_WEIGHTS, MODES

    x = np.load(SETS["b3"] / f"{name}.npy")
    data = (SETS["b3"] / f"{name}.chunk").read_bytes()
    pix = unpack_chunk(data, 1, 3)[0].pixels
    mode = int(codecs["b3"].engine().pixels.pop_offsets(new_coder(pix), 1, MODES)[0])
    assert mode % len(ADAPT_WEIGHTS) > 0 if flags is None else mode >= len(ADAPT_WEIGHTS)
    assert np.array_equal(codecs["b3"].decode(data, x.shape, x.dtype, 3), x)


def test_the_refining_golden_input_is_refined(codecs):
    """The textured input's pixel stream refines some steps with nonzero coefficients (after
    the coding mode and the offsets): the golden bytes guard the refinement, not only its absence."""
    from lvpnet.codecs.lvpnet_codec import unpack_chunk
    from lvpnet.codecs.lvpnet_entropy import new_coder
    from lvpnet.coding import refine
    from lvpnet.coding.adapt import MODES
    from lvpnet.model.tables import WIDE_OFFSET_MAX

    codec = codecs["b4"]
    x = np.load(SETS["b4"] / "texture_uint16.npy")
    data = (SETS["b4"] / "texture_uint16.chunk").read_bytes()
    pix = unpack_chunk(data, 1, 4)[0].pixels
    eng = codec.engine()
    coder = new_coder(pix)
    eng.pixels.pop_offsets(coder, 1, MODES)
    eng.pixels.pop_offsets(coder, eng.dec.steps, 2 * WIDE_OFFSET_MAX + 1)
    refs = refine.read_side(lambda sizes: eng.pixels.pop_uniform(coder, sizes), eng.dec.order, eng.cfg.n_scales)
    used = [r for r in refs if r is not None]
    assert used and any(r.coefs.any() for r in used)
    assert np.array_equal(codec.decode(data, x.shape, x.dtype, 4), x)



def test_the_staged_golden_latent_spans_stages(codecs):
    """blocks_uint8 has 35 latent blocks per channel, coded in 7 stages whose tables take in the
    counts of the stages before; its channels hold more than one value, so the counts matter
    and the golden bytes guard the adaptation. The same words read with the fixed tables are
    refused or give other symbols."""
    from lvpnet.codecs.lvpnet_codec import unpack_chunk
    from lvpnet.coding.latent_adapt import stage_bounds

    codec = codecs["b5"]
    x = np.load(SETS["b5"] / "blocks_uint8.npy")
    data = (SETS["b5"] / "blocks_uint8.chunk").read_bytes()
    lat = unpack_chunk(data, 1, 5)[0].latent
    eng = codec.engine()
    shape = eng.latent_shape(*x.shape)
    zs = eng.latent.decode(lat, shape, staged=True)
    flat = zs.reshape(shape[0], -1)
    assert flat.shape[1] == 35 and len(stage_bounds(35)) == 8
    assert any(len(np.unique(row)) > 1 for row in flat)
    try:
        fixed = eng.latent.decode(lat, shape, staged=False)
    except ValueError:
        fixed = None
    assert fixed is None or not np.array_equal(fixed, zs)
    assert np.array_equal(codec.decode(data, x.shape, x.dtype, 5), x)


def test_the_padded_golden_ct_flags_only_where_neighbours_agree(codecs):
    """padded_ct_int16's pixel stream starts with a coding mode at flag level 3 (bitstream 5):
    the golden bytes guard the new levels, not only the old ones."""
    from lvpnet.codecs.lvpnet_codec import unpack_chunk
    from lvpnet.codecs.lvpnet_entropy import new_coder
    from lvpnet.coding.adapt import ADAPT_WEIGHTS, WIDE_FLAG_LEVELS, modes

    codec = codecs["b5"]
    x = np.load(SETS["b5"] / "padded_ct_int16.npy")
    data = (SETS["b5"] / "padded_ct_int16.chunk").read_bytes()
    pix = unpack_chunk(data, 1, 5)[0].pixels
    mode = int(codec.engine().pixels.pop_offsets(new_coder(pix), 1, modes(WIDE_FLAG_LEVELS))[0])
    assert mode // len(ADAPT_WEIGHTS) == 3
    assert np.array_equal(codec.decode(data, x.shape, x.dtype, 5), x)


def _plane_changes_without(codec, data: bytes, shape, **switch) -> bool:
    """Does a one-plane version 6 chunk decode to another plane, or fail, with one of the
    version's parts switched off (``edge_classes=False`` or ``min_flags=False``)?"""
    from dataclasses import replace

    from lvpnet.codecs.lvpnet_codec import unpack_chunk
    from lvpnet.coding.profiles import profile

    (coded,) = unpack_chunk(data, 1, 6)
    eng = codec.engine()
    plane = eng.decode_plane(coded, *shape, profile(6))
    try:
        other = eng.decode_plane(coded, *shape, replace(profile(6), **switch))
    except ValueError:  # the stream does not fit the other tables or flags
        return True
    return not np.array_equal(other, plane)


def test_the_rician_golden_input_takes_the_edge_classes(codecs):
    """rician_mr_uint16 (bitstream 6): its chunk decodes only with the tables counted by the
    distance from the minimum, and today's encoder writes it shorter at version 6 than at 5 (the
    same encoder both times: the fits the set was written with have moved since)."""
    codec = codecs["b6"]
    x = np.load(SETS["b6"] / "rician_mr_uint16.npy")
    data = (SETS["b6"] / "rician_mr_uint16.chunk").read_bytes()
    assert np.array_equal(codec.decode(data, x.shape, x.dtype, 6), x)
    assert _plane_changes_without(codec, data, x.shape, edge_classes=False)
    v5, v6 = LVPNetCodec(weights_of("b6"), device="cpu"), LVPNetCodec(weights_of("b6"), device="cpu")
    v5.version, v6.version = 5, 6
    assert len(v6.encode(x)) < len(v5.encode(x))


def test_the_padded_golden_ct_flags_its_edge_at_the_minimum(codecs):
    """padded_ct_int16 (bitstream 6): the padding's edge, where two neighbours are padding, carries
    flags on the minimum candidate; read without them the chunk does not decode to the image."""
    codec = codecs["b6"]
    x = np.load(SETS["b6"] / "padded_ct_int16.npy")
    data = (SETS["b6"] / "padded_ct_int16.chunk").read_bytes()
    assert np.array_equal(codec.decode(data, x.shape, x.dtype, 6), x)
    assert _plane_changes_without(codec, data, x.shape, min_flags=False)


@pytest.mark.parametrize("name", ["padded_ct_int16", "blocks_uint8", "us_rgb_uint8"])
def test_the_golden_base_layers(codecs, name):
    """Bitstream 7: these chunks hand a lattice to JPEG-XL (level 2: steps 0-3, level 1: step 0)
    and are shorter than version 6 writes them; without the base layer, or with its codestream
    damaged or another lattice's, they do not decode to the image (an error, never a wrong image
    from a damaged base layer)."""
    from dataclasses import replace

    from lvpnet.codecs.lvpnet_codec import pack_chunk, unpack_chunk

    codec = codecs["b7"]
    x = np.load(SETS["b7"] / f"{name}.npy")
    data = (SETS["b7"] / f"{name}.chunk").read_bytes()
    planes = unpack_chunk(data, 3 if x.ndim == 3 else 1, 7)
    assert any(p.base_level for p in planes)
    assert np.array_equal(codec.decode(data, x.shape, x.dtype, 7), x)
    assert len(data) < len((SETS["b6"] / f"{name}.chunk").read_bytes())
    i = next(i for i, p in enumerate(planes) if p.base_level)
    level, code = planes[i].base_level, planes[i].base
    damaged = bytearray(code)
    damaged[len(code) // 2] ^= 0x5A
    for base in [(0, b""), (level, bytes(damaged)), (3 - level, code)]:
        forged = list(planes)
        forged[i] = replace(planes[i], base_level=base[0], base=base[1])
        try:
            y = codec.decode(pack_chunk(forged, 7), x.shape, x.dtype, 7)
        except ValueError:
            continue
        assert not np.array_equal(y, x), base[0]


def test_the_golden_comparison_survives_another_libjxl():
    """With another libjxl the golden encode test compares base layers by the lattices they decode
    to: a codestream written otherwise (here effort 9 for effort 7) compares equal, a changed pixel
    stream does not."""
    from dataclasses import replace

    from lvpnet.codecs.lvpnet_base import decode_lattice
    from lvpnet.codecs.lvpnet_codec import pack_chunk, unpack_chunk
    from lvpnet.coding import lattice

    x = np.load(SETS["b7"] / "padded_ct_int16.npy")
    data = (SETS["b7"] / "padded_ct_int16.chunk").read_bytes()
    (plane,) = unpack_chunk(data, 1, 7)
    level, code, R, pix = plane.base_level, plane.base, plane.R, plane.pixels
    g = lattice.stride(4, level)
    sub = decode_lattice(code, *x.shape, R, g)
    other = imagecodecs.jpegxl_encode(sub.astype(np.uint16 if R >= 256 else np.uint8), lossless=True, effort=9)
    assert other != code
    same = pack_chunk([replace(plane, base=other)], 7)
    assert same != data and _without_base_codestreams(same, x) == _without_base_codestreams(data, x)
    pix2 = pix.copy()
    pix2[0] ^= 1
    changed = pack_chunk([replace(plane, pixels=pix2)], 7)
    assert _without_base_codestreams(changed, x) != _without_base_codestreams(data, x)


@pytest.mark.parametrize("name", ["cine_uint8", "cine_rgb_uint8"])
def test_the_cine_golden_inputs_repeat_their_previous_frame(codecs, name):
    """Set b8's cine frames are coded against the frame before (every plane at a reference level):
    the golden bytes guard the reference flags. Without that frame they are refused; against
    another frame they decode wrongly or fail."""
    from lvpnet.codecs.lvpnet_codec import unpack_chunk

    codec = codecs["b8"]
    x, ref = np.load(SETS["b8"] / f"{name}.npy"), np.load(SETS["b8"] / f"{name}.ref.npy")
    data = (SETS["b8"] / f"{name}.chunk").read_bytes()
    assert codec.needs_reference(data, x.shape, 8)
    assert all(p.ref_level > 0 for p in unpack_chunk(data, 3 if x.ndim == 3 else 1, 8))
    assert len(data) < 0.9 * len(codec.encode(x))  # the flags pay
    with pytest.raises(ValueError, match="previous one"):
        codec.decode(data, x.shape, x.dtype, 8)
    other = ref.copy()
    other[x.shape[0] // 2 :] = 255 - other[x.shape[0] // 2 :]
    try:
        y = codec.decode(data, x.shape, x.dtype, 8, reference=other)
    except ValueError:
        return
    assert not np.array_equal(y, x)
