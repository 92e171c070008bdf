"""The learned codec's bitstream versions as declared profiles, and the Plane record the chunk
layout reads and writes for every one of them (no model needed: these run without torch's weights)."""

from dataclasses import FrozenInstanceError, replace

import numpy as np
import pytest

from lvpnet.codecs.lvpnet_chunk import Plane, header, pack_chunk, unpack_chunk
from lvpnet.codecs.lvpnet_codec import LVPNetCodec
from lvpnet.coding.profiles import LATEST, PROFILES, Profile, profile

# what each version switches on over the one before: the spec, written out here on purpose so a
# change of a declaration in ``profiles`` has to be made twice
ADDS = {
    1: set(),
    2: {"value_step", "scale_offsets"},
    3: {"value_gaps", "adapted_tables"},
    4: {"refined"},
    5: {"staged_latent", "wide_flags"},
    6: {"edge_classes", "min_flags"},
    7: {"base_lattice"},
    8: {"reference"},
    9: {"lattice_skip"},
    10: {"adaptive_flags"},
    11: {"block_map"},
}


def test_every_version_the_codec_reads_has_a_profile():
    assert set(LVPNetCodec.reads_versions) == set(PROFILES) == set(ADDS)
    assert LVPNetCodec.version == LATEST == max(PROFILES)
    for v in LVPNetCodec.reads_versions:
        assert profile(v) is PROFILES[v] and profile(v).version == v


@pytest.mark.parametrize("bad", [0, LATEST + 1, -1, 255, None, "8", 7.5])
def test_unknown_versions_are_refused_clearly(bad):
    with pytest.raises(ValueError, match=f"lvpnet chunk version {bad} is not supported .*known: 1, 2, 3"):
        profile(bad)
    with pytest.raises(ValueError, match="not supported"):
        unpack_chunk(b"\x01" + bytes(30), 1, bad)
    with pytest.raises(ValueError, match="not supported"):
        pack_chunk([Plane(0, 0)], bad)


def test_unknown_versions_are_refused_by_the_codec():
    with pytest.raises(ValueError, match=f"version {LATEST + 1} is not supported"):
        LVPNetCodec().decode(b"\x01" + bytes(21), (4, 4), np.uint8, LATEST + 1)


@pytest.mark.parametrize("version", sorted(ADDS))
def test_each_version_adds_exactly_its_declared_settings(version):
    now = PROFILES[version].settings()
    before = PROFILES[version - 1].settings() if version > 1 else {k: False for k in now}
    changed = {k for k in now if now[k] != before[k]}
    assert changed == ADDS[version] == set(PROFILES[version].adds)
    assert all(now[k] for k in changed)  # a later version never switches a setting off


def test_profiles_are_frozen_and_consistent():
    p = PROFILES[LATEST]
    with pytest.raises(FrozenInstanceError):
        p.refined = False
    assert replace(p, min_flags=False) != p and replace(p, min_flags=False).version == p.version
    for name, needs in [("adapted_tables", "scale_offsets"), ("refined", "adapted_tables"),
                        ("base_lattice", "adapted_tables"), ("reference", "adapted_tables"),
                        ("lattice_skip", "base_lattice")]:
        with pytest.raises(ValueError, match=f"{name} needs {needs}"):
            Profile(99, **{name: True})
    with pytest.raises(ValueError, match="needs"):
        replace(p, scale_offsets=False)  # adapted tables without offsets: the engine has no such path


def _plane(p: Profile, i: int) -> Plane:
    """A plane using every field profile ``p`` can hold."""
    rng = np.random.default_rng(i)
    return Plane(
        vmin=-1000 + i, R=4000 + i,
        latent=rng.integers(0, 2**32, 3 + i, dtype=np.uint64).astype(np.uint32),
        pixels=rng.integers(0, 2**32, 5, dtype=np.uint64).astype(np.uint32),
        step=16 if p.value_step else 1,
        gaps=np.array([[10, 900], [200, 70]]) if p.value_gaps else np.zeros((0, 2), np.int64),
        base_level=2 if p.base_lattice else 0, base=b"jxl!" if p.base_lattice else b"",
        ref_level=3 if p.reference else 0,
    )


@pytest.mark.parametrize("version", sorted(PROFILES))
def test_a_plane_round_trips_through_every_version(version):
    p = PROFILES[version]
    planes = [_plane(p, 0), Plane(7, 0), _plane(p, 1)]  # a constant plane in the middle: no streams
    data = pack_chunk(planes, version)
    assert len(data) == 1 + 3 * header(p).size + sum(
        4 * (2 * len(q.gaps) + len(q.latent) + len(q.pixels)) + (4 + len(q.base) if q.base_level else 0) for q in planes)
    assert header(p).size == {1: 16, 2: 18}.get(version, 22)
    got = unpack_chunk(data, 3, version)
    assert got == planes
    assert all(isinstance(q.gaps, np.ndarray) and q.gaps.shape[1] == 2 for q in got)
    assert pack_chunk(got, version) == data
    with pytest.raises(ValueError, match="expected 2"):
        unpack_chunk(data, 2, version)


@pytest.mark.parametrize("version", sorted(PROFILES))
def test_a_version_refuses_fields_it_cannot_hold(version):
    p = PROFILES[version]
    full = _plane(PROFILES[LATEST], 0)
    for name, needs, match in [("gaps", "value_gaps", "gaps"), ("base_level", "base_lattice", "base layer"),
                               ("ref_level", "reference", "reference level")]:
        one = replace(_plane(p, 0), **{name: getattr(full, name)}, **({"base": full.base} if name == "base_level" else {}))
        if getattr(p, needs):
            assert unpack_chunk(pack_chunk([one], version), 1, version) == [one]
        else:
            with pytest.raises(ValueError, match=match):
                pack_chunk([one], version)


def test_plane_values_and_range():
    plane = Plane(-5, 300, step=16, gaps=np.array([[10, 900]]))
    k = np.array([[0, 10, 11, 300]])
    assert plane.values(k).tolist() == [[-5, -5 + 160, -5 + 16 * (11 + 900), -5 + 16 * 1200]]
    assert plane.top() == -5 + 16 * 1200 and Plane(3, 0).top() == 3
    assert Plane(3, 0).base_bits() == 0.0 and Plane(3, 9, base_level=1, base=b"abc").base_bits() == 8 * (4 + 3)
    assert Plane(3, 9) != Plane(3, 9, step=2) and Plane(3, 9) == Plane(3, 9)
