"""The ``.lvp`` file, format version 1 (specified in docs/FORMAT.md).

    preamble   magic (8 bytes) + major (u16) + minor (u16)
    chunks     one per 2-D slice, back to back, in slice order
    blobs      opaque per-source-file byte strings, back to back
    header     UTF-8 JSON
    index      one 21-byte record per chunk
    trailer    24 bytes, last in the file

The trailer comes last so chunks can be streamed to disk as they are coded;
it locates the header and carries a CRC-32 of preamble + header + index, so a
flipped byte anywhere outside the chunks is caught before anything is parsed,
and every chunk has its own CRC-32 (damage) and a hash of the slice it decodes
to (verification).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .errors import DamagedError, InputError, NewerFormatError, NotLvpError

MAGIC = b"\x89LVP\r\n\x1a\n"
END_MAGIC = b"LVP\x00"
FORMAT_MAJOR, FORMAT_MINOR = 1, 0
PREAMBLE = struct.Struct("<8sHH")  # magic, major, minor
TRAILER = struct.Struct("<QIII4s")  # header offset, header length, chunk count, crc32, end magic
INDEX_RECORD = struct.Struct("<QBI8s")  # chunk length, codec table index, crc32, slice hash
SLICE_HASH_BYTES = 8


def looks_like_lvp(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a file that starts with the lvpnet magic bytes."""
    from .files import read_head  # a FIFO or a device is not read (it could block or never end)

    return read_head(path, len(MAGIC)) == MAGIC


def slice_hash(slice_: np.ndarray) -> bytes:
    """BLAKE2b-64 of a slice's little-endian C-order bytes."""
    return hashlib.blake2b(_le_bytes(slice_), digest_size=SLICE_HASH_BYTES).digest()


def _le_bytes(array: np.ndarray) -> bytes:
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


@dataclass(frozen=True)
class ChunkRecord:
    offset: int
    length: int
    codec: int
    crc32: int
    slice_hash: bytes


class ContainerWriter:
    """Streams chunks and blobs to ``fileobj``, then the header, index and trailer."""

    def __init__(self, fileobj: BinaryIO):
        self._f = fileobj
        self._f.write(PREAMBLE.pack(MAGIC, FORMAT_MAJOR, FORMAT_MINOR))
        self._pos = PREAMBLE.size
        self._records: list[bytes] = []
        self._blobs: list[dict] = []
        self._codecs: list[tuple[str, int]] = []

    def add_chunk(self, data: bytes, codec_id: str, codec_version: int, original: np.ndarray) -> None:
        key = (codec_id, codec_version)
        if key not in self._codecs:
            self._codecs.append(key)
        self._records.append(
            INDEX_RECORD.pack(len(data), self._codecs.index(key), zlib.crc32(data), slice_hash(original))
        )
        self._write(data)

    def add_blob(self, data: bytes) -> None:
        self._blobs.append({"offset": self._pos, "length": len(data), "crc32": zlib.crc32(data)})
        self._write(data)

    def finish(self, header: dict) -> int:
        """Write header, index and trailer; return the total file size."""
        header = dict(header)
        from . import limits  # reading this file back (compress verifies it) is bounded by the array, not the rule

        limits.remember_written(header["array_hash"], header["shape"], np.dtype(header["dtype"]).itemsize, header["rgb"])
        header["codecs"] = [{"id": cid, "version": ver} for cid, ver in self._codecs]
        header["blobs"] = self._blobs
        # strict JSON: NaN and infinity, which Python would write, no other reader takes (check_volume refuses them)
        head = json.dumps(header, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
        index = b"".join(self._records)
        crc = zlib.crc32(index, zlib.crc32(head, zlib.crc32(PREAMBLE.pack(MAGIC, FORMAT_MAJOR, FORMAT_MINOR))))
        header_offset = self._pos
        self._write(head + index)
        self._write(TRAILER.pack(header_offset, len(head), len(self._records), crc, END_MAGIC))
        return self._pos

    def _write(self, data: bytes) -> None:
        self._f.write(data)
        self._pos += len(data)


class HeaderChecksumError(DamagedError):
    """The header and index fail their CRC-32 (``ContainerReader(salvage_header=True)`` reads them anyway)."""


class ContainerReader:
    """Random access to the chunks of a ``.lvp`` held in a file or in memory.

    Opening checks the magic, the version and the CRC of the header and
    index; chunk data is read only when asked for. ``salvage_header``: a header and index that fail their
    CRC are parsed anyway where they still parse and fit the file (``header_damaged``), for a restore that
    writes only what its own checksums vouch for (each chunk's CRC, each DICOM file's SHA-256).
    """

    def __init__(self, source: str | os.PathLike | bytes, name: str | None = None, salvage_header: bool = False):
        self.salvage_header, self.header_damaged = salvage_header, False
        if isinstance(source, (bytes, bytearray, memoryview)):
            self._data: bytes | None = bytes(source)
            self._path: Path | None = None
            self.name = name or "<bytes>"
            self.file_bytes = len(self._data)
        else:
            self._data = None
            self._path = Path(source)
            self.name = name or str(source)
            st = self._path.stat()
            self.file_bytes = st.st_size
            self._stamp = (st.st_size, st.st_mtime_ns)  # every later read checks it is still this file
        self._parse()

    def _read(self, offset: int, length: int) -> bytes:
        if self._data is not None:
            return self._data[offset : offset + length]
        with self._said():
            with open(self._path, "rb") as f:
                self._same(os.fstat(f.fileno()))  # its index would point into other bytes
                f.seek(offset)
                return f.read(length)

    def check_unchanged(self) -> None:
        """Raise as a read would where the file changed since it was opened: what was decoded from it
        before (a cached slice) must not be given out for the file that replaced it."""
        if self._data is not None:
            return
        with self._said():
            self._same(os.stat(self._path))

    @property
    def stamp(self) -> tuple | None:
        """The file's size and modification time when it was opened (None in memory): a worker process
        that opens it again checks it has the same file (``check_stamp``)."""
        return None if self._data is not None else self._stamp

    def check_stamp(self, stamp: tuple | None) -> None:
        """Raise as a read would where this file is not the one another reader opened with ``stamp``:
        its slices would be another scan's under the first reader's name."""
        if stamp is not None and self._data is None and tuple(stamp) != self._stamp:
            raise InputError(f"{self.name}: the file changed since it was opened (rewritten or replaced); open it again")

    def _same(self, st: os.stat_result) -> None:
        if (st.st_size, st.st_mtime_ns) != self._stamp:
            raise InputError(f"{self.name}: the file changed since it was opened (rewritten or replaced); open it again")

    @contextlib.contextmanager
    def _said(self):
        """The file system's errors on this file, as lvpnet says them."""
        try:
            yield
        except FileNotFoundError:
            raise InputError(f"{self.name}: the file is gone since it was opened") from None
        except OSError as e:
            raise InputError(f"{self.name}: cannot read ({e.strerror or e})") from None

    def _parse(self) -> None:
        pre = self._read(0, PREAMBLE.size)
        if not pre:  # a copy cut off before its first byte reads the same: say both
            raise NotLvpError(f"{self.name}: empty (0 bytes): not an lvpnet file, or a copy of one cut off at its start")
        if len(MAGIC) <= len(pre) < PREAMBLE.size and pre.startswith(MAGIC):  # its whole magic: damage (exit 1)
            raise DamagedError(f"{self.name}: damaged: {len(pre)} bytes, the start of an lvpnet file cut short")
        if len(pre) < PREAMBLE.size and MAGIC.startswith(pre[:8]):
            raise NotLvpError(f"{self.name}: not an lvpnet file: {len(pre)} bytes, the start of one cut short")
        if len(pre) < PREAMBLE.size or pre[:8] != MAGIC:
            raise NotLvpError(f"{self.name}: not an lvpnet file")
        _, major, minor = PREAMBLE.unpack(pre)
        # The CRC covers the version, so it is checked first: a flipped version byte is damage,
        # not a newer format. Only a file whose format-1 trailer is not there at all may be a
        # newer format (which may lay its trailer out differently).
        trailer = self._trailer()
        if trailer is None:
            if major > FORMAT_MAJOR:
                raise NewerFormatError(
                    f"{self.name}: made by a newer lvpnet (format {major}.{minor}); "
                    f"this lvpnet reads format {FORMAT_MAJOR}.x: please upgrade"
                )
            raise DamagedError(f"{self.name}: truncated or damaged: its end record (the trailer) does not match its size")
        h_off, h_len, n_chunks, crc = trailer
        index_len = n_chunks * INDEX_RECORD.size
        meta = self._read(h_off, h_len + index_len)
        if zlib.crc32(meta, zlib.crc32(pre)) != crc:
            if not self.salvage_header:
                raise HeaderChecksumError(f"{self.name}: damaged: header checksum mismatch")
            self.header_damaged = True
        if major > FORMAT_MAJOR:
            raise NewerFormatError(
                f"{self.name}: made by a newer lvpnet (format {major}.{minor}); "
                f"this lvpnet reads format {FORMAT_MAJOR}.x: please upgrade"
            )
        if major < 1:
            raise DamagedError(f"{self.name}: damaged: unknown format version {major}.{minor}")
        try:
            self.header = json.loads(meta[:h_len].decode())
        except (ValueError, RecursionError) as e:  # CRC matched: forged or a writer bug (a 4300+ digit number too)
            raise DamagedError(f"{self.name}: damaged: unreadable header ({e})") from None
        self.version = (major, minor)
        self._check_header()
        n_codecs = len(self.header["codecs"])
        self.records: list[ChunkRecord] = []
        offset = PREAMBLE.size
        for i in range(n_chunks):
            length, codec, ccrc, shash = INDEX_RECORD.unpack_from(meta, h_len + i * INDEX_RECORD.size)
            if codec >= n_codecs:
                raise DamagedError(f"{self.name}: damaged: slice {i} names codec {codec} of {n_codecs}")
            self.records.append(ChunkRecord(offset, length, codec, ccrc, shash))
            offset += length
        self._data_end = offset
        self._check_layout(h_off)

    def _trailer(self) -> tuple[int, int, int, int] | None:
        """The format-1 trailer's (header offset, header length, chunk count, crc), or None when
        the file has none that fits it."""
        if self.file_bytes < PREAMBLE.size + TRAILER.size:
            return None
        h_off, h_len, n_chunks, crc, end = TRAILER.unpack(self._read(self.file_bytes - TRAILER.size, TRAILER.size))
        index_len = n_chunks * INDEX_RECORD.size
        if end != END_MAGIC or h_off + h_len + index_len != self.file_bytes - TRAILER.size or h_off < PREAMBLE.size:
            return None
        return h_off, h_len, n_chunks, crc

    def _check_header(self) -> None:
        """The container's own header fields, typed and in range (docs/FORMAT.md, "Header")."""
        h = self.header
        if not isinstance(h, dict):
            what = "null" if h is None else f"a {type(h).__name__}"
            raise DamagedError(f"{self.name}: damaged: the header is {what}, not an object")
        codecs = h.get("codecs")
        if not isinstance(codecs, list) or len(codecs) > 256:
            raise DamagedError(f"{self.name}: damaged: header field 'codecs' is not a list of at most 256 codecs")
        for k, c in enumerate(codecs):
            if not (isinstance(c, dict) and isinstance(c.get("id"), str) and _is_uint(c.get("version"))):
                raise DamagedError(f"{self.name}: damaged: header field 'codecs[{k}]' needs a string id and a version")
        blobs = h.get("blobs", [])
        if not isinstance(blobs, list):
            raise DamagedError(f"{self.name}: damaged: header field 'blobs' is not a list")
        for k, b in enumerate(blobs):
            if not (isinstance(b, dict) and all(_is_uint(b.get(key)) for key in ("offset", "length", "crc32"))):
                raise DamagedError(
                    f"{self.name}: damaged: header field 'blobs[{k}]' needs integer offset, length and crc32"
                )

    def _check_layout(self, header_offset: int) -> None:
        blob_end = self._data_end
        for b in self.header.get("blobs", []):
            if b["offset"] != blob_end:
                raise DamagedError(f"{self.name}: damaged: blob table does not match the file")
            blob_end += b["length"]
        if blob_end != header_offset:
            raise DamagedError(f"{self.name}: damaged: chunk index does not match the file")

    def chunk(self, i: int) -> tuple[bytes, str, int]:
        """The checked bytes of chunk ``i`` with its codec id and version."""
        rec = self.records[i]
        data = self._read(rec.offset, rec.length)
        if len(data) != rec.length or zlib.crc32(data) != rec.crc32:
            raise DamagedError(f"{self.name}: slice {i}: chunk checksum mismatch (the file is damaged)")
        codec = self.header["codecs"][rec.codec]
        return data, codec["id"], codec["version"]

    def blob(self, i: int) -> bytes:
        b = self.header["blobs"][i]
        data = self._read(b["offset"], b["length"])
        if zlib.crc32(data) != b["crc32"]:
            raise DamagedError(f"{self.name}: blob {i}: checksum mismatch (the file is damaged)")
        return data


def _is_uint(value) -> bool:
    """A JSON non-negative integer (``bool`` is an ``int`` in Python, but not here)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
