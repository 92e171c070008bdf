"""Take a ``.lvp`` apart and put it back together with every checksum recomputed.

A forger who recomputes the CRC-32s gets past the checks that catch damage;
what is left to stop them is the reader's validation of every field. These
helpers build such files for the fuzz harness and the hostile-input tests:
``split`` a file, change any part (the header JSON, an index record, a chunk,
a blob, a DICOM file record), ``join`` it with valid checksums.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

from lvpnet.container import INDEX_RECORD, MAGIC, PREAMBLE, TRAILER

RECORD_PREFIX = struct.Struct("<6sBBI")  # a DICOM file record: magic, version, flags, JSON length


@dataclass
class Parts:
    major: int
    minor: int
    chunks: list[bytes]
    codecs: list[int]  # the index records' codec byte, per chunk
    hashes: list[bytes]  # the index records' slice hash, per chunk
    blobs: list[bytes]
    header: Any
    crcs: list[int | None] = field(default_factory=list)  # per chunk: None = recompute


def split(data: bytes) -> Parts:
    """The parts of a well-formed ``.lvp`` (its own reader has accepted it)."""
    _, major, minor = PREAMBLE.unpack_from(data)
    h_off, h_len, n, _crc, _end = TRAILER.unpack_from(data, len(data) - TRAILER.size)
    header = json.loads(data[h_off : h_off + h_len])
    chunks, codecs, hashes = [], [], []
    pos = PREAMBLE.size
    for i in range(n):
        length, codec, _ccrc, shash = INDEX_RECORD.unpack_from(data, h_off + h_len + i * INDEX_RECORD.size)
        chunks.append(data[pos : pos + length])
        codecs.append(codec)
        hashes.append(shash)
        pos += length
    blobs = [data[b["offset"] : b["offset"] + b["length"]] for b in header.get("blobs", [])]
    return Parts(major, minor, chunks, codecs, hashes, blobs, header, [None] * n)


def join(p: Parts, *, fix_blobs: bool = True, header_bytes: bytes | None = None) -> bytes:
    """The file of ``p`` with every CRC-32 recomputed (``fix_blobs``: the header's blob table too,
    when the header is an object; ``header_bytes``: these bytes as the header, JSON or not)."""
    pre = PREAMBLE.pack(MAGIC, p.major, p.minor)
    body = b"".join(p.chunks)
    table, pos = [], len(pre) + len(body)
    for blob in p.blobs:
        table.append({"offset": pos, "length": len(blob), "crc32": zlib.crc32(blob)})
        pos += len(blob)
    header = p.header
    if fix_blobs and isinstance(header, dict):
        header = {**header, "blobs": table}
    head = header_bytes if header_bytes is not None else json.dumps(header, separators=(",", ":")).encode()
    index = b"".join(
        INDEX_RECORD.pack(len(c), codec, zlib.crc32(c) if crc is None else crc, h)
        for c, codec, h, crc in zip(p.chunks, p.codecs, p.hashes, p.crcs + [None] * len(p.chunks), strict=False)
    )
    h_off = pos
    crc = zlib.crc32(index, zlib.crc32(head, zlib.crc32(pre)))
    return pre + body + b"".join(p.blobs) + head + index + TRAILER.pack(h_off, len(head), len(p.chunks), crc, b"LVP\x00")


def record_split(blob: bytes) -> tuple[bytes, Any, bytes]:
    """A DICOM file record's (prefix without the length, JSON header, coded body)."""
    magic, version, flags, n = RECORD_PREFIX.unpack_from(blob)
    return blob[:8], json.loads(blob[12 : 12 + n]), blob[12 + n :]


def record_join(prefix: bytes, head: Any, body: bytes, head_bytes: bytes | None = None) -> bytes:
    raw = head_bytes if head_bytes is not None else json.dumps(head, separators=(",", ":")).encode()
    return prefix + struct.pack("<I", len(raw)) + raw + body


def zstd_bomb(size: int, byte: int = 0) -> bytes:
    """A zstd frame of RLE blocks that inflates to ``size`` bytes (4 bytes per 128 KiB) and does not
    state its size in its header: only a decoder bounded by the size it expects stops it early."""
    block = 1 << 17
    out = bytearray(b"\x28\xb5\x2f\xfd")
    out += bytes([0x00, 0x38])  # frame header: no content size, no checksum; window 2^17
    left = size
    while left > 0:
        n = min(block, left)
        left -= n
        out += (int(left == 0) | 1 << 1 | n << 3).to_bytes(3, "little") + bytes([byte])
    return bytes(out)


def jxl_declaring(height: int, width: int) -> bytes:
    """A bare JPEG-XL codestream start whose SizeHeader declares ``height`` x ``width`` (and nothing
    decodable after it): what a decoder would allocate for, were the header not checked first."""
    bits: list[int] = []

    def put(value: int, n: int) -> None:
        bits.extend((value >> i) & 1 for i in range(n))

    def dim(v: int) -> None:
        for sel, n in enumerate((9, 13, 18, 30)):
            if v - 1 < 1 << n:
                put(sel, 2)
                put(v - 1, n)
                return

    put(0, 1)  # not "small"
    dim(height)
    put(0, 3)  # no fixed ratio
    dim(width)
    bits.extend([0] * (-len(bits) % 8 + 64))
    data = bytes(sum(bits[i + j] << j for j in range(8)) for i in range(0, len(bits), 8))
    return b"\xff\x0a" + data
