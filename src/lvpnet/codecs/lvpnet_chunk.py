"""The learned codec's chunk: one slice's planes, each a ``Plane`` record, in bytes.

Chunk layout (docs/FORMAT.md, section "lvpnet"), little-endian:

    byte 0          P, the number of planes: 1 (grey) or 3 (RGB as G, R-G, B-G)
    P x 22 bytes    per plane: vmin (i32), R (u32), latent_words (u32), pixel_words (u32),
                    value step (u16), gaps (u32)
    then per plane  gaps pairs of u32 (p, r): runs of unused values taken out
                    (``prep.collapse_gaps``), then latent_words u32 words of the latent
                    ANS stream, then pixel_words u32 words of the pixel ANS stream

Which fields a version has is its profile's (``profiles``): version 1 has neither the step nor
the gaps (16-byte plane headers), version 2 no gaps (18 bytes). From version 7 (``base_lattice``)
the header's last u32 holds the number of gaps in its low 16 bits and the plane's base level in
the next 8 (``coding.lattice``); a plane with a base level > 0 has, after its pixel words, a u32
byte count and that many bytes: a JPEG-XL codestream of the plane's coarse lattice
(``lvpnet_base``). Planes without one cost nothing more. Version 8 (``reference``) puts the
plane's reference level (``coding.reference``) in the top 8 bits of that u32: a plane with a
level > 0 decodes only against the previous slice of the file.

The plane's values are ``vmin + step * expand_gaps(k)`` with ``k`` in ``[0, R]`` the coded
values (``Plane.values``). A plane with R = 0 (constant) has no streams (both word counts 0).
The streams must tile the chunk exactly.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from ..coding.profiles import Profile, profile
from ..model import prep
from . import lvpnet_base

_NO_WORDS = np.zeros(0, np.uint32)
# the widest plane the encoder writes: a chroma difference of 16-bit RGB (R - G in -65535..65535)
MAX_RANGE = 2 * 0xFFFF


def _no_gaps() -> np.ndarray:
    return np.zeros((0, 2), np.int64)


@dataclass(frozen=True, eq=False)
class Plane:
    """One coded plane: what its header and streams hold, the same for every version (fields a
    version does not write are at their defaults: step 1, no gaps, levels 0)."""

    vmin: int
    R: int  # the coded values k are in [0, R]; 0: a constant plane, no streams
    latent: np.ndarray = field(default_factory=lambda: _NO_WORDS)  # u32 words of the latent stream
    pixels: np.ndarray = field(default_factory=lambda: _NO_WORDS)  # u32 words of the pixel stream
    step: int = 1  # value step (version 2)
    gaps: np.ndarray = field(default_factory=_no_gaps)  # (n, 2) int64, ``prep.collapse_gaps`` (version 3)
    base_level: int = 0  # base lattice level, 0: none (version 7)
    base: bytes = b""  # its JPEG-XL codestream
    ref_level: int = 0  # reference level, 0: the previous slice not used (version 8)

    def values(self, k: np.ndarray) -> np.ndarray:
        """The plane's values from its coded values ``k``."""
        return self.vmin + self.step * prep.expand_gaps(k, self.gaps)

    def top(self) -> int:
        """The largest value the plane can hold."""
        return int(self.vmin) + int(self.step) * (int(self.R) + int(self.gaps[:, 1].sum()))

    def base_bits(self) -> float:
        """The chunk bits of the base layer (its byte count and codestream; 0 without one)."""
        return lvpnet_base.bits(self.base) if self.base_level else 0.0

    def __eq__(self, other) -> bool:
        if not isinstance(other, Plane):
            return NotImplemented
        return (int(self.vmin), int(self.R), int(self.step), bytes(self.base), int(self.base_level),
                int(self.ref_level)) == (int(other.vmin), int(other.R), int(other.step), bytes(other.base),
                                         int(other.base_level), int(other.ref_level)) and all(
            np.array_equal(a, b) for a, b in [(self.latent, other.latent), (self.pixels, other.pixels),
                                              (np.asarray(self.gaps).reshape(-1, 2), np.asarray(other.gaps).reshape(-1, 2))])

    __hash__ = None


def header(p: Profile) -> struct.Struct:
    """A plane header of profile ``p``: vmin, R, latent words, pixel words[, value step[, gaps]]."""
    return struct.Struct("<iIII" + ("H" if p.value_step else "") + ("I" if p.value_gaps else ""))


def pack_chunk(planes: list[Plane], version: int) -> bytes:
    """Planes -> the chunk bytes of bitstream ``version``; ValueError for a plane that needs a
    later version (gaps, a base layer, a reference level) or does not fit its fields."""
    p = profile(version)
    fmt = header(p)
    head = [bytes([len(planes)])]
    body = []
    for pl in planes:
        gaps = np.asarray(pl.gaps, dtype=np.int64).reshape(-1, 2)
        level, ref, data = int(pl.base_level), int(pl.ref_level), pl.base
        if (not p.reference and ref) or not 0 <= ref < 256:
            raise ValueError("a reference level needs bitstream version 8 and fits in 8 bits")
        # the last header word: gap count, base level (version 7), reference level (version 8)
        extra = (int(pl.step), len(gaps) | level << 16 | ref << 24)[: p.value_step + p.value_gaps]
        if not p.value_gaps and len(gaps):
            raise ValueError("value gaps need bitstream version 3")
        if (not p.base_lattice and level) or not 0 <= level < 256 or bool(level) != bool(len(data)):
            raise ValueError("a base layer needs bitstream version 7, a level in 1..255 and a codestream")
        head.append(fmt.pack(int(pl.vmin), int(pl.R), len(pl.latent), len(pl.pixels), *extra))
        body.append(np.ascontiguousarray(gaps, dtype="<u4").tobytes())
        body.append(np.ascontiguousarray(pl.latent, dtype="<u4").tobytes())
        body.append(np.ascontiguousarray(pl.pixels, dtype="<u4").tobytes())
        if level:
            body.append(lvpnet_base.LENGTH.pack(len(data)) + bytes(data))
    return b"".join(head + body)


def unpack_chunk(data: bytes, n_planes: int, version: int) -> list[Plane]:
    """Chunk bytes of bitstream ``version`` -> its ``n_planes`` planes, every field checked
    (ValueError for a damaged or crafted chunk, or an unknown version)."""
    p = profile(version)
    fmt = header(p)
    if len(data) < 1 or data[0] != n_planes:
        raise ValueError(f"lvpnet chunk: expected {n_planes} plane(s)")
    pos = 1 + n_planes * fmt.size
    if len(data) < pos:
        raise ValueError("lvpnet chunk: truncated header")
    out = []
    for i in range(n_planes):
        vmin, R, nl, npx, *rest = fmt.unpack_from(data, 1 + i * fmt.size)
        step = rest[0] if rest else 1
        ng = rest[1] if len(rest) > 1 else 0
        level = ref = 0
        if p.reference:
            ng, ref = ng & 0xFFFFFF, ng >> 24
            if R == 0 and ref:
                raise ValueError("lvpnet chunk: bad reference level")
        if p.base_lattice:
            ng, level = ng & 0xFFFF, ng >> 16
            if level > 255 or (R == 0 and level):
                raise ValueError("lvpnet chunk: bad base level")
        if step < 1:
            raise ValueError("lvpnet chunk: value step 0")
        if R > MAX_RANGE:
            raise ValueError("lvpnet chunk: plane range beyond 17 bits (damaged header)")
        if R == 0 and (nl or npx or ng):
            raise ValueError("lvpnet chunk: streams for a constant plane")
        if R > 0 and (nl == 0 or npx == 0):
            raise ValueError("lvpnet chunk: missing stream")
        end = pos + 4 * (2 * ng + nl + npx)
        if end > len(data):
            raise ValueError("lvpnet chunk: truncated stream")
        words = np.frombuffer(data, dtype="<u4", count=2 * ng + nl + npx, offset=pos).astype(np.uint32)
        gaps = words[: 2 * ng].astype(np.int64).reshape(ng, 2)
        if ng and ((np.diff(gaps[:, 0]) <= 0).any() or gaps[-1, 0] >= R or (gaps[:, 1] < 1).any()
                   or R + int(gaps[:, 1].sum()) > 0xFFFFFFFF):
            raise ValueError("lvpnet chunk: bad value gaps")
        words = words[2 * ng :]
        base = b""
        if level:
            if end + 4 > len(data):
                raise ValueError("lvpnet chunk: truncated base layer")
            (nb,) = lvpnet_base.LENGTH.unpack_from(data, end)
            base, end = bytes(data[end + 4 : end + 4 + nb]), end + 4 + nb
            if nb == 0 or end > len(data):
                raise ValueError("lvpnet chunk: truncated base layer")
        out.append(Plane(vmin, R, words[:nl], words[nl:], step, gaps, level, base, ref))
        pos = end
    if pos != len(data):
        raise ValueError("lvpnet chunk: trailing bytes")
    return out


def needs_reference(data: bytes, shape: tuple[int, ...], version: int) -> bool:
    """Does this chunk (of a slice shaped ``shape``: 3 dimensions for RGB) decode only against
    the previous slice (version 8, ``coding.reference``)? From the plane headers alone: no
    weights, no network (``lvpnet info`` counts them without importing torch)."""
    if not profile(version).reference:
        return False
    return any(p.ref_level for p in unpack_chunk(data, 3 if len(shape) == 3 else 1, version))
