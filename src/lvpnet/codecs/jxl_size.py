"""The image size a JPEG-XL stream declares, read from its header without decoding it.

A decoder allocates what the stream's header says. A chunk's slice shape is
known beforehand, so the header is compared with it first and a codestream
declaring 16000 x 16000 inside a 64 x 64 slice never reaches the decoder.

Read from ISO/IEC 18181-1: a bare codestream starts with ``FF 0A`` and its
``SizeHeader``; the container form (what libjxl, and so imagecodecs, writes)
is a series of ISO BMFF boxes with the codestream in a ``jxlc`` box or split
over ``jxlp`` boxes (the first of which starts with a 4-byte index).
"""

from __future__ import annotations

import struct

CODESTREAM = b"\xff\x0a"
CONTAINER = b"\x00\x00\x00\x0cJXL \r\n\x87\n"
# SizeHeader's fixed aspect ratios (ratio 1..7): width = height * num // den
_RATIOS = {1: (1, 1), 2: (12, 10), 3: (4, 3), 4: (3, 2), 5: (16, 9), 6: (5, 4), 7: (2, 1)}


class _Bits:
    """Bits of a byte string, least significant bit of each byte first (the JPEG-XL order)."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def read(self, n: int) -> int:
        value = 0
        for i in range(n):
            byte = self.pos >> 3
            if byte >= len(self.data):
                raise ValueError("JPEG-XL header truncated")
            value |= ((self.data[byte] >> (self.pos & 7)) & 1) << i
            self.pos += 1
        return value

    def dimension(self, small: bool) -> int:
        if small:
            return 8 * (self.read(5) + 1)
        return 1 + self.read((9, 13, 18, 30)[self.read(2)])


def _codestream(data: bytes) -> bytes:
    """The first bytes of the codestream, from a bare codestream or the container form."""
    if data[:2] == CODESTREAM:
        return data
    if data[:12] != CONTAINER:
        raise ValueError("not a JPEG-XL stream")
    pos = 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, pos)
        head = 8
        if size == 1:  # a 64-bit size follows
            if pos + 16 > len(data):
                break
            (size,) = struct.unpack_from(">Q", data, pos + 8)
            head = 16
        elif size == 0:  # the box runs to the end
            size = len(data) - pos
        if size < head:
            raise ValueError("JPEG-XL container box of a wrong size")
        if kind == b"jxlc":
            return data[pos + head : pos + size]
        if kind == b"jxlp":
            return data[pos + head + 4 : pos + size]
        pos += size
    raise ValueError("JPEG-XL container without a codestream")


def jxl_size(data: bytes) -> tuple[int, int]:
    """(height, width) that a JPEG-XL stream declares; ValueError when it has no readable header."""
    stream = _codestream(bytes(data[:4096]) if data[:2] == CODESTREAM else bytes(data))
    if stream[:2] != CODESTREAM:
        raise ValueError("JPEG-XL codestream without its signature")
    bits = _Bits(stream[2:64])
    small = bool(bits.read(1))
    height = bits.dimension(small)
    ratio = bits.read(3)
    if ratio:
        num, den = _RATIOS[ratio]
        return height, height * num // den
    return height, bits.dimension(small)
