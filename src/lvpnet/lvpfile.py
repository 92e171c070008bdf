"""Reading ``.lvp`` files: lazy per-slice access, full decode, verification."""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import threading
from collections.abc import Generator, Iterator

import numpy as np

from . import codecs, limits
from .container import ContainerReader, slice_hash
from .errors import DamagedError, InputError, LimitError, LvpnetError
from .files import kind
from .header_check import check_header
from .progress import Progress, run, unplaced
from .slicing import slice_shape
from .volume import Volume


class LvpFile:
    """An opened ``.lvp``: header facts at once, slices decoded on demand.

    ``f[i]`` or ``f.read_slice(i)`` decodes slice ``i`` (in flattened
    leading-axis order) and checks its chunk CRC and its data hash, so one
    slice can be trusted without decoding the rest. A learned slice coded against
    the slice before it (bitstream 8, ``coding.reference``) needs that one decoded
    first: the writer starts a fresh run every few slices (``compressor.REFERENCE_RUN``),
    and the last slice decoded is kept, so reading in order decodes each slice once.
    Safe to call from several threads: every read opens the file afresh (and finds out if it was
    rewritten since: an error, not a wrong slice). So nothing is held open: ``close()`` and ``with``
    only mark it closed, and an opened file pickles (to a process pool) as its path.
    """

    def __init__(self, source: str | os.PathLike | bytes, name: str | None = None, *, salvage_header: bool = False):
        """``salvage_header``: a header that fails its checksum is read anyway where it still parses
        (``ContainerReader``): for a restore that writes only files matching their own SHA-256."""
        if isinstance(source, np.ndarray) and source.dtype == np.uint8 and source.ndim == 1:
            source = source.tobytes()  # the file's bytes as numpy holds them
        if not isinstance(source, (bytes, bytearray, memoryview, str, os.PathLike)):
            raise InputError(f"expected a path or the bytes of a .lvp file, got {type(source).__name__}")
        if not isinstance(source, (bytes, bytearray, memoryview)):
            what = kind(source)
            if what == "missing":
                raise InputError(f"{source}: file not found")
            if what == "folder":
                raise InputError(f"{source}: is a folder, not an lvpnet file")
            if what == "unreadable":
                raise InputError(f"{source}: cannot be read")
            if what != "file":  # a FIFO would block the read, a device never end
                raise InputError(f"{source}: not a regular file (a {what})")
            # the file itself, wherever the reading process stands: an opened file pickled to a worker
            # that runs in another folder read a missing (or another) file of the same relative name
            name = name or os.fspath(source)
            source = os.path.abspath(source)
        self._reader = ContainerReader(source, name, salvage_header=salvage_header)
        self._source = bytes(source) if isinstance(source, (bytearray, memoryview)) else source  # for workers
        # every field that lays out the output, typed and in range before anything trusts it
        self.dtype, self.shape, self.rgb = check_header(self._reader.header, self.name)
        if math.prod(self.shape[: len(self.shape) - len(self.slice_shape)]) != len(self._reader.records):
            raise DamagedError(f"{self.name}: damaged: {len(self._reader.records)} chunks for shape {self.shape}")
        self._last: tuple[int, np.ndarray] | None = None  # the last slice decoded, a reference for the next
        self._metadata: dict | None = None
        self._lock = threading.Lock()
        self.closed = False

    @property
    def header_damaged(self) -> bool:
        """Opened with ``salvage_header`` and its header failed its checksum: read anyway, not vouched for."""
        return self._reader.header_damaged

    @classmethod
    def same_file(cls, source, name: str | None, stamp: tuple | None) -> LvpFile:
        """The file another process opened, opened again here (a ``slice_pool`` worker's task), refused
        (InputError) where it was rewritten or replaced since: ``stamp`` is that process's
        ``ContainerReader.stamp``."""
        lvp = cls(source, name=name)
        lvp._reader.check_stamp(stamp)
        return lvp

    def close(self) -> None:
        """Mark the file closed: later reads raise ValueError (no handle is held between reads)."""
        self.closed = True
        self._last = None

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError(f"{self.name}: read from a closed lvpnet file")

    def __enter__(self) -> LvpFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_lock")
        state["_last"] = None
        # the memory limits this process judges the file by (``set_max_memory``), which the process that
        # receives it (a dask worker) takes over, as ``slice_pool``'s workers do
        state["_limits"] = limits.state(self.header.get("array_hash"))
        return state

    def __setstate__(self, state: dict) -> None:
        judged = state.pop("_limits", None)
        self.__dict__.update(state)
        self._lock = threading.Lock()
        if judged is not None and judged[0] is not None:
            limits.adopt(self.header.get("array_hash"), judged)

    def __repr__(self) -> str:
        rgb = " RGB" if self.rgb else ""
        return (f"<lvpnet.LvpFile {self.name!r}: shape {self.shape} {self.dtype}{rgb}, {len(self)} slice{'s' * (len(self) != 1)}, "
                f"{self.file_bytes:,} bytes{', closed' if self.closed else ''}>")

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """``np.asarray(f)``: every slice decoded, in the file's shape (not a stack of its slices)."""
        array = self.read_all()
        return array if dtype is None else array.astype(dtype, copy=False)

    @property
    def name(self) -> str:
        return self._reader.name

    @property
    def _sample_bytes(self) -> int:
        """Bytes of one pixel of a slice (all its colours)."""
        return self.dtype.itemsize * (3 if self.rgb else 1)

    @property
    def header(self) -> dict:
        return self._reader.header

    @property
    def metadata(self) -> dict:
        """The source's metadata (the header's ``source.metadata``), complete: a DICOM archive's header
        may leave its first file's elements to that file's record (``elements_in_record``, FORMAT.md),
        and they are read back from it here, once."""
        if self._metadata is None:
            meta = self.header.get("source", {}).get("metadata", {})
            dicom = meta.get("dicom")
            key = next((k for k in ("elements_in_record", "elements_in_record_patched") if k in (dicom or {})), None)
            if isinstance(dicom, dict) and "elements" not in dicom and key is not None:
                from .dicom_archive import patched_elements, record_elements

                k = dicom[key]
                n = len(self.header.get("blobs", []))
                if not (isinstance(k, int) and not isinstance(k, bool) and 0 <= k < n):
                    raise DamagedError(f"{self.name}: damaged: field 'source.metadata.dicom.{key}' "
                                       f"is not a record number below {n}")
                try:
                    elements = record_elements(self._blob, k)
                except (DamagedError, LimitError) as e:  # a blob's own checksum names the file already
                    raise type(e)(str(e) if str(e).startswith(self.name) else f"{self.name}: {e}") from None
                patch = dicom.get("elements_patch", {})  # under either key: a few files of a day wrote it so
                if not (isinstance(patch, dict) and all(v is None or isinstance(v, dict) for v in patch.values())):
                    raise DamagedError(f"{self.name}: damaged: field 'source.metadata.dicom.elements_patch' "
                                       "is not a map of elements")
                dicom = {f: v for f, v in dicom.items() if f != "elements_patch"}  # applied: the source's elements
                meta = {**meta, "dicom": {**dicom, "elements": [patched_elements(elements, patch)]}}
            self._metadata = meta
        return self._metadata

    @property
    def spacing(self) -> tuple[float, ...] | None:
        """Voxel spacing per axis of the stored array (None where the source gave none), as ``Volume``'s."""
        return _tuple(self.header.get("spacing"))

    @property
    def origin(self) -> tuple[float, ...] | None:
        return _tuple(self.header.get("origin"))

    @property
    def direction(self) -> tuple[tuple[float, ...], ...] | None:
        d = self.header.get("direction")
        return tuple(tuple(r) for r in d) if d else None

    @property
    def affine(self) -> np.ndarray | None:
        a = self.header.get("affine")
        return np.array(a, dtype=np.float64) if a is not None else None

    @property
    def version(self) -> tuple[int, int]:
        return self._reader.version

    @property
    def file_bytes(self) -> int:
        return self._reader.file_bytes

    @property
    def slice_shape(self) -> tuple[int, ...]:
        return slice_shape(self.shape, self.rgb)

    @property
    def frame_shape(self) -> tuple[int, ...]:
        return self.shape[: len(self.shape) - len(self.slice_shape)]

    @property
    def n_samples(self) -> int:
        return math.prod(self.shape)

    @property
    def bits_per_sample(self) -> float:
        return 8.0 * self.file_bytes / self.n_samples

    def codec_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for rec in self._reader.records:
            cid = self.header["codecs"][rec.codec]["id"]
            counts[cid] = counts.get(cid, 0) + 1
        return counts

    def coded_against_previous(self) -> int:
        """How many slices are coded against the slice before them (bitstream 8, ``coding.reference``),
        from the chunks' plane headers: no weights needed, no stream decoded. A chunk that cannot be
        read (damaged, an unknown codec) is not counted; ``verify`` names it."""
        n = 0
        for i in range(len(self)):
            try:
                n += self.needs_previous(i)
            except LvpnetError:
                continue
        return n

    def needs_previous(self, i: int) -> bool:
        """Whether slice ``i``'s chunk is coded against slice ``i - 1`` (its plane headers say; no
        weights, nothing decoded). DamagedError when the chunk cannot say; InputError for a codec or
        version this lvpnet does not read (a newer writer's chunk is not damaged)."""
        data, codec_id, version = self._reader.chunk(i)
        self._check_readable(i, codec_id, version)
        return self._headers_need_reference(i, codec_id, data, version)

    def _check_readable(self, i: int, codec_id: str, version: int) -> None:
        """InputError when slice ``i``'s codec or its version is not one this lvpnet reads (without
        importing the codec: no torch for ``lvpnet info``)."""
        known = codecs.reads_versions(codec_id)
        if known is None:
            raise InputError(f"{self.name}: slice {i} uses codec {codec_id!r}, unknown to this lvpnet")
        if version not in known:
            raise InputError(f"{self.name}: slice {i}: codec {codec_id} version {version} is newer than this lvpnet")

    def _headers_need_reference(self, i: int, codec_id: str, data: bytes, version: int) -> bool:
        try:
            return bool(codecs.needs_reference(codec_id, data, self.slice_shape, version))
        except ValueError as e:
            raise DamagedError(f"{self.name}: slice {i}: could not be decoded ({e})") from None

    def chunk_bytes(self, i: int) -> int:
        return self._reader.records[i].length

    def __len__(self) -> int:
        return len(self._reader.records)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, key) -> np.ndarray:
        """``f[i]``: slice ``i`` (a flat index over every frame axis; negative counts from the end);
        ``f[a:b:c]``: those slices stacked, ``(n, *slice_shape)``. A tuple (or ``...``) indexes the file's
        whole shape as numpy would its array (``f[0, 2:4, :, 10:20]``, ``f[...]``), decoding only the
        slices it touches: what ``dask.array.from_array(f, chunks=...)`` asks for."""
        if isinstance(key, tuple) or key is Ellipsis:
            return self._index(key if isinstance(key, tuple) else (key,))
        if isinstance(key, slice):
            picked = range(*key.indices(len(self)))
            if not picked:
                return np.empty((0, *self.slice_shape), self.dtype)
            return np.stack([self.read_slice(i) for i in picked])
        if not isinstance(key, (int, np.integer)) or isinstance(key, bool):
            raise TypeError(f"lvpnet file indices are slice numbers or ranges (f[3], f[-1], f[2:5]), not {key!r}")
        i = int(key)
        return self.read_slice(i + len(self) if -len(self) <= i < 0 else i)

    def _index(self, key: tuple) -> np.ndarray:
        """``__getitem__`` of a tuple: integers, ranges and one ``...`` over ``self.shape``."""
        for k in key:
            if k is not Ellipsis and not isinstance(k, slice) and (
                    not isinstance(k, (int, np.integer)) or isinstance(k, bool)):
                raise TypeError(f"lvpnet file indices are whole numbers, ranges and '...', not {k!r}")
        if sum(k is Ellipsis for k in key) > 1:
            raise IndexError("an index can only have a single ellipsis ('...')")
        if Ellipsis in key:
            at = key.index(Ellipsis)
            key = key[:at] + (slice(None),) * (self.ndim - len(key) + 1) + key[at + 1:]
        if len(key) > self.ndim:
            raise IndexError(f"too many indices: the file has {self.ndim} axes {self.shape}, {len(key)} were given")
        key = key + (slice(None),) * (self.ndim - len(key))
        lead = self.ndim - len(self.slice_shape)
        numbers = np.arange(len(self)).reshape(self.shape[:lead])[key[:lead]]  # numpy checks the ranges
        rest = key[lead:]
        picked = np.reshape(numbers, -1)
        if not picked.size:
            return np.empty(numbers.shape + np.empty(self.slice_shape, self.dtype)[rest].shape, self.dtype)
        parts = [self.read_slice(int(i))[rest] for i in picked]
        return np.stack(parts).reshape(numbers.shape + parts[0].shape)

    def __contains__(self, item) -> bool:
        raise TypeError("'in' is not defined for an lvpnet file (its items are slices: compare f[i] with an array)")

    def read_slice(self, i: int) -> np.ndarray:
        if not isinstance(i, (int, np.integer)) or isinstance(i, bool):
            raise TypeError(f"slice numbers are whole numbers, not {i!r}")
        i = int(i)
        self._check_open()
        if not 0 <= i < len(self):
            raise IndexError(f"slice {i} out of range 0..{len(self) - 1}")
        with self._lock:
            last = self._last
        if last is not None and last[0] == i:
            self._reader.check_unchanged()  # the slice kept from a file since replaced is not its slice
            return last[1].copy()
        chain, reference = [], None  # (slice, chunk) to decode, last first, back to one that needs none
        j = i
        while True:
            chunk = self._chunk(j)
            chain.append((j, chunk))
            if not self._needs_reference(j, *chunk):
                break
            if j == 0:
                raise DamagedError(f"{self.name}: slice 0: coded against a slice before it, which no file has")
            j -= 1
            if last is not None and last[0] == j:
                reference = last[1]
                break
        for j, chunk in reversed(chain):
            reference = self._decode(j, *chunk, reference)
        with self._lock:
            self._last = (i, reference)
        return reference.copy()

    def _needs_reference(self, i: int, data: bytes, codec, version: int) -> bool:
        """Does slice ``i``'s chunk decode only against slice ``i - 1``?"""
        return codec.takes_reference and self._headers_need_reference(i, codec.id, data, version)

    def _chunk(self, i: int):
        """Slice ``i``'s chunk bytes, the codec that reads them (with the file's weights) and its version."""
        data, codec_id, version = self._reader.chunk(i)
        self._check_readable(i, codec_id, version)
        codec = codecs.get_codec(codec_id)
        want = self.header.get("model")
        matching = codecs.codec_for_model(codec_id, want)
        if matching is None:
            have = codec.model_id()  # with no weights installed at all, this names that clearly
            raise InputError(
                f"{self.name}: slice {i} was coded with learned-codec weights {want[:16]}..., "
                f"but the installed weights are {str(have)[:16]}... (set LVPNET_WEIGHTS to the weights that wrote it)"
            )
        return data, matching, version

    def _decode(self, i: int, data: bytes, codec, version: int, reference: np.ndarray | None) -> np.ndarray:
        """Slice ``i`` from its chunk (``reference``: the slice before it, decoded, where it needs it)."""
        return codec.drive(self._decode_walk(i, data, codec, version, reference))

    def _decode_walk(self, i: int, data: bytes, codec, version: int, reference: np.ndarray | None):
        """``_decode`` as a walk generator (``Codec.decode_walk``): the learned codec's network asks
        yielded, so that ``_iter_lanes`` can answer many slices' at once."""
        # what the codec will allocate follows the declared slice shape: bounded by the file's size first
        pixels = math.prod(self.slice_shape[:2])
        work = getattr(codec, "decode_bytes_per_pixel", 16) * pixels + 3 * pixels * self._sample_bytes
        limits.check(work, self.file_bytes, f"{self.name}: slice {i} ({'x'.join(map(str, self.slice_shape))} {self.dtype})",
                     self.header["array_hash"], limits.WORK_RATIO)
        try:
            ref = {"reference": reference} if reference is not None and codec.takes_reference else {}
            out = yield from codec.decode_walk(data, self.slice_shape, self.dtype, version, **ref)
        except (InputError, MemoryError):  # e.g. the learned codec's weights are not installed: not damage
            raise
        except (ImportError, OSError) as e:  # this machine cannot run the codec (a library that will not load)
            raise LvpnetError(f"{self.name}: slice {i}: the codec cannot run here ({type(e).__name__}: {e}); "
                              "the file is not said to be damaged") from None
        except Exception as e:  # a codec failing on bytes whose CRC matched
            raise DamagedError(f"{self.name}: slice {i}: could not be decoded ({e})") from None
        if out.shape != self.slice_shape or out.dtype != self.dtype or slice_hash(out) != self._reader.records[i].slice_hash:
            raise DamagedError(f"{self.name}: slice {i}: decoded data checksum mismatch")
        return out

    def iter_decode(self, stage: str = "decode", workers: int | None = 1) -> Generator[Progress, None, np.ndarray]:
        """Decode every slice and check the whole-array hash; yields progress (``workers``: processes
        that decode runs of slices, ``slice_pool.workers``; None: automatic)."""
        self._check_open()
        limits.check(self.n_samples * self.dtype.itemsize, self.file_bytes,
                     f"{self.name}: the array ({'x'.join(map(str, self.shape))} {self.dtype})", self.header["array_hash"])
        out = np.empty(self.shape, self.dtype)
        flat = out.reshape((-1,) + self.slice_shape)
        h = hashlib.blake2b(digest_size=32)
        yield Progress(stage, 0, len(self))  # said before the first slice: a large image is one slice of seconds
        for i, s in enumerate(self._iter_slices(workers)):
            flat[i] = s
            h.update(flat[i].astype(self.dtype.newbyteorder("<"), copy=False).tobytes())
            yield Progress(stage, i + 1, len(self))
        if h.hexdigest() != self.header.get("array_hash"):
            raise DamagedError(f"{self.name}: whole-array checksum mismatch")
        return out

    def read_slices(self, start: int = 0, stop: int | None = None, workers: int | None = 1) -> Iterator[np.ndarray]:
        """Slices ``start..stop-1`` in order, each checked as ``read_slice`` checks it (a damaged one
        raises at its turn), decoded here or also by ``slice_pool`` workers (``workers``: a number, or
        None: automatic) for a learned range long enough to pay for them: the napari 3-D view's whole
        volume. Closing the generator early drops the slices queued for the workers."""
        self._check_open()
        stop = len(self) if stop is None else stop
        if not 0 <= start <= stop <= len(self):
            raise IndexError(f"slices {start}..{stop - 1} out of range 0..{len(self) - 1}")
        return self._iter_slices(workers, start, stop)

    def _iter_slices(self, workers: int | None, start: int = 0, stop: int | None = None):
        """Slices ``start..stop-1`` (all by default) in order: here, or also by ``slice_pool`` workers
        for a learned range long enough to pay for them. A task is one slice of a file on disk whose
        slices all decode on their own, else a run of up to ``compressor.REFERENCE_RUN`` slices that
        ends where the writer starts a fresh run (so no task after the first needs the one before it;
        an in-memory file travels to the worker with each task, so it goes in runs too); on a GPU
        ``slice_pool.lanes`` of them, walked in lock-step."""
        from . import slice_pool
        from .compressor import REFERENCE_RUN

        slice_pool.check_requested(workers)
        stop = len(self) if stop is None else stop
        n = stop - start
        uses = bool(self.codec_counts().get(codecs.LEARNED))
        if not uses:  # a file of the fallback codec alone: no torch to import (a second or two), no workers
            yield from (self.read_slice(i) for i in range(start, stop))
            return
        learned = codecs.get_codec(codecs.LEARNED)
        work = slice_pool.work_s(n, math.prod(self.slice_shape), slice_pool.DECODE_S)
        workers = slice_pool.workers(n, workers, learned.device, work,
                                     learned.decode_ram_per_pixel * math.prod(self.slice_shape[:2]))
        # on a GPU, chains of slices walked in lock-step: one network call per step for all of them
        lanes = slice_pool.lanes(learned.device, math.prod(self.slice_shape[:2]), workers) if n > 1 else 1
        if workers <= 1:
            if lanes > 1:
                yield from self._iter_lanes(lanes, learned, start, stop)
                return
            for i in range(start, stop):
                yield self.read_slice(i)
            return
        alone = isinstance(self._source, (str, os.PathLike)) and self.coded_against_previous() == 0
        step = (1 if alone else REFERENCE_RUN) * lanes
        state = limits.state(self.header.get("array_hash"))
        cuts = sorted({start, stop, *range(start - start % step + step, stop, step)})  # the writer's run starts
        runs = [(self._source, self.name, self.header.get("array_hash"), state, a, b, lanes, self._reader.stamp)
                for a, b in zip(cuts, cuts[1:])]
        for decoded, error in slice_pool.ordered(decode_run, runs, workers, slice_pool.device_env(learned)):
            yield from decoded  # the slices of the run before a damaged one are fine: a viewer shows them
            if error is not None:
                raise error

    def _iter_lanes(self, lanes: int, learned, start: int = 0, stop: int | None = None):
        """Slices ``start..stop-1`` in order, the chains of slices (a slice that decodes on its own and
        those after it coded against the one before) walked ``lanes`` chains at a time in lock-step by
        the learned codec's engine (``Engine.run_lanes``: on a GPU one network call per step for all).
        Each chunk is read once, and only a group's are held."""
        stop = len(self) if stop is None else stop
        engine, chains = learned.engine(), []
        for j in range(start, stop):
            chunk = self._chunk(j)
            if j == start or not self._needs_reference(j, *chunk):  # a chain starts here
                if len(chains) == lanes:
                    yield from self._walk_chains(engine, chains)
                    chains = []
                chains.append([])
            chains[-1].append((j, chunk))
        yield from self._walk_chains(engine, chains)

    def _walk_chains(self, engine, chains: list):
        """The slices of ``chains`` in order, their walks run in lock-step; an error at its slice's turn."""
        for decoded, error in engine.run_lanes([self._chain_walk(links) for links in chains]):
            if error is not None:
                raise error
            yield from decoded

    def _chain_walk(self, links: list):
        """A chain's slices ``links`` [(index, chunk)] as one walk generator, each decoded as
        ``read_slice`` decodes it."""
        out, reference = [], None
        first, chunk = links[0]
        if first and self._needs_reference(first, *chunk):  # not where a writer starts a run
            reference = self.read_slice(first - 1)
        for j, chunk in links:
            reference = yield from self._decode_walk(j, *chunk, reference)
            out.append(reference)
        return out

    def read_all(self) -> np.ndarray:
        return run(self.iter_decode())

    def iter_verify(self, workers: int | None = 1) -> Generator[Progress, None, int]:
        """Decode every slice, check every checksum, keep nothing.

        A DICOM archive's files are rebuilt in memory and checked against their
        SHA-256 too; returns how many files that was (0 when none).
        """
        array = yield from self.iter_decode(stage="verify", workers=workers)
        # every blob is read and checked by _volume (a damaged one raises, naming its file): not twice
        return (yield from self._iter_check_files(self._volume(array)))

    def _iter_check_files(self, volume: Volume) -> Generator[Progress, None, int]:
        """A DICOM archive's files rebuilt in memory and checked against their SHA-256; returns how
        many (0 when the file holds no archive)."""
        from .dicom_archive import archive_of, iter_check

        if archive_of(volume.metadata) is None:
            return 0
        try:
            return (yield from iter_check(volume))
        except (DamagedError, LimitError) as e:  # the records name the archived file; say which .lvp holds it
            raise type(e)(f"{self.name}: {e}") from None

    def volume(self, array: np.ndarray | None = None, *, check_files: bool = True, salvage: bool = False) -> Volume:
        """The stored Volume (decoding every slice unless ``array`` is given). A DICOM archive's
        files are rebuilt in memory and checked as ``verify`` does, whatever is written from it:
        what verify refuses, decompress refuses too. ``check_files=False`` leaves that to a caller
        that rebuilds them next anyway (``dicom_archive.iter_files`` checks each file it yields).
        ``salvage`` (with ``check_files=False``): a blob that fails its checksum is None in
        ``Volume.blobs`` instead of an error, for a caller that restores what is intact."""
        volume = self._volume(array, salvage)
        if check_files:
            run(self._iter_check_files(volume))
        return volume

    def _blob_or_none(self, i: int) -> bytes | None:
        try:
            return self._reader.blob(i)
        except DamagedError:
            return None

    def record_name(self, i: int) -> str | None:
        """The archived file blob ``i`` restores (a DICOM archive's ``files[i]``), or None."""
        from .dicom_archive import archive_of

        files = (archive_of(self.header.get("source", {}).get("metadata")) or {}).get("files") or []
        name = files[i].get("name") if i < len(files) and isinstance(files[i], dict) else None
        return name if isinstance(name, str) else None

    def _blob(self, i: int) -> bytes:
        """Blob ``i``, its damage said with the archived file it restores ('blob 3' named no file)."""
        try:
            return self._reader.blob(i)
        except DamagedError as e:
            name = self.record_name(i)
            if name is None:
                raise
            from .terminal import printable  # a name from the file: one line, never a forged one

            raise DamagedError(str(e).replace(f"blob {i}:", f"blob {i}, the record of {printable(name, lines=False)}:",
                                              1)) from None

    def _volume(self, array: np.ndarray | None = None, salvage: bool = False) -> Volume:
        h = self.header
        return Volume(
            array=self.read_all() if array is None else array,
            rgb=self.rgb,
            spacing=self.spacing,
            origin=self.origin,
            direction=self.direction,
            affine=self.affine,
            source_format=h.get("source", {}).get("format", "numpy"),
            metadata=self.metadata,
            blobs=[(self._blob_or_none if salvage else self._blob)(i) for i in range(len(h.get("blobs", [])))],
        )


def decode_run(source, name: str, array_hash, limit_state, start: int, stop: int, lanes: int = 1,
               stamp: tuple | None = None) -> tuple[list[np.ndarray], LvpnetError | None]:
    """Slices ``start..stop-1`` of a file, in a ``slice_pool`` worker: the very ``read_slice`` of the
    serial path (checksums, limits as the parent judges them: ``limits.adopt``), or with ``lanes``
    its walk in lock-step (``_iter_lanes``); ``stamp``: the parent's ``ContainerReader.stamp``, so a
    file replaced since the parent opened it is refused, not read. -> (the slices decoded, in order;
    the error of the first that failed, after them, or None)."""
    limits.adopt(array_hash, limit_state)
    lvp = LvpFile.same_file(source, name, stamp)
    slices = (lvp._iter_lanes(lanes, codecs.get_codec(codecs.LEARNED), start, stop) if lanes > 1
              else (lvp.read_slice(i) for i in range(start, stop)))
    out = []
    # a run of several slices is counted when it ends: their ticks, 0 to 100% each in turn, are no share of the
    # slice a bar shows next (verify's 'slice 1' read 20, 60, 100, 30, 70%); a Cancel still stops them
    with unplaced() if stop - start > 1 else contextlib.nullcontext():
        try:
            for s in slices:
                out.append(s)
        except LvpnetError as e:
            return out, e
    return out, None


def _tuple(v):
    return tuple(v) if v is not None else None
