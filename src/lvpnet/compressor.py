"""Writing ``.lvp`` files: slice by slice, verified, atomic."""

from __future__ import annotations

import hashlib
import io
import itertools
import math
import os
import threading
import time
import warnings
from collections.abc import Generator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from . import __version__, codecs, limits, slice_pool
from .atomic import atomic_path, check_writable
from .container import ContainerWriter, looks_like_lvp
from .dicom_archive import check_records
from .errors import DamagedError, InputError
from .lvpfile import LvpFile
from .progress import Progress, run
from .slicing import iter_slices, n_slices
from .volume import Volume, check_volume, plain_metadata

# A learned slice may be coded against the slice before it (bitstream 8, ``coding.reference``:
# the pixels that repeat it, a cine loop's overlays, cost almost nothing). Every REFERENCE_RUN-th
# slice is coded alone, so reading one slice of a file decodes at most this many.
REFERENCE_RUN = 8


@dataclass
class CompressResult:
    shape: tuple[int, ...]
    dtype: str
    slices: int
    raw_bytes: int
    lvp_bytes: int
    encode_seconds: float
    verify_seconds: float | None
    codec_counts: dict[str, int] = field(default_factory=dict)
    path: str | None = None
    load_seconds: float = 0.0  # loading the learned codec before the encode (weights, kernels): not in encode_seconds

    @property
    def bits_per_sample(self) -> float:
        return 8.0 * self.lvp_bytes / (self.raw_bytes / np.dtype(self.dtype).itemsize)

    @property
    def ratio(self) -> float:
        return self.raw_bytes / self.lvp_bytes

    def as_dict(self) -> dict:
        return {
            "output": self.path,
            "shape": list(self.shape),
            "dtype": np.dtype(self.dtype).name,
            "slices": self.slices,
            "original_bytes": self.raw_bytes,
            "lvp_bytes": self.lvp_bytes,
            "bits_per_sample": round(self.bits_per_sample, 4),
            "ratio": round(self.ratio, 4),
            "encode_seconds": round(self.encode_seconds, 3),
            "load_seconds": round(self.load_seconds, 3),
            "verify_seconds": None if self.verify_seconds is None else round(self.verify_seconds, 3),
            "codecs": self.codec_counts,
        }


def as_volume(data: np.ndarray | Volume, rgb: bool = False) -> Volume:
    if isinstance(data, Volume):
        if rgb and not data.rgb:  # was silently ignored
            raise InputError("rgb=True applies to an array; a Volume says it itself: Volume(..., rgb=True)")
        return data
    return Volume(array=data, rgb=rgb)


def _header(volume: Volume, array: np.ndarray, digest: str, model: str | None) -> dict:
    def _list(v):
        return None if v is None else np.asarray(v, dtype=np.float64).tolist()

    return {
        "writer": f"lvpnet {__version__}",
        "dtype": array.dtype.str,
        "shape": list(array.shape),
        "rgb": bool(volume.rgb),
        "layout": "(frames..., rows, cols, 3)" if volume.rgb else "(frames..., rows, cols)",
        "spacing": _list(volume.spacing),
        "origin": _list(volume.origin),
        "direction": _list(volume.direction),
        "affine": _list(volume.affine),
        "source": {"format": volume.source_format, "metadata": plain_metadata(volume.metadata)},
        "model": model,
        "constriction_version": _constriction_version(),
        "array_hash": digest,
    }


def _constriction_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("constriction")
    except Exception:  # not installed: the fallback codec does not need it
        return None


def _little_endian(array: np.ndarray) -> np.ndarray:
    # files store little-endian; a big-endian input decodes to the same values, native order
    return array.astype(array.dtype.newbyteorder("<"), copy=False)


def encode_stream(
    fileobj: BinaryIO, volume: Volume, codec: str | None = None, safety_net: bool = True, workers: int | None = 1,
    on_note=None,
) -> Generator[Progress, None, tuple[int, dict[str, int]]]:
    """Code ``volume`` into ``fileobj``; yields progress, returns (bytes written, slices per codec).

    ``safety_net``: when the chosen codec is a learned one (it has a model id), every slice
    is also coded with the classical fallback and the smaller chunk is kept (ties go to the
    chosen codec); where the fallback wins, its JPEG-XL effort 9 is tried too (on val 2-9%
    smaller than effort 7 on ultrasound and the CT, worse on most MR; the learned encoder is
    slower than it anyway), and effort 10 on 8-bit slices (``FallbackCodec.thorough_efforts``:
    a further 1-10% on the ultrasound). ``safety_net=False`` gives the chosen codec's own figures.
    A codec that ``takes_reference`` codes each slice against the one before it, except every
    ``REFERENCE_RUN``-th (the slice before may be stored by the fallback: the pixels are the same).
    ``workers``: processes that code the slices of a learned codec (``slice_pool.workers``; None:
    automatic); the bytes are the same with any number. A slice larger than the learned codec can
    encode in the memory free (``lvpnet.ram``) is refused before the encode when that codec was asked
    for, and otherwise coded with the fallback, said through ``on_note(text)`` (None: a warning).
    """
    check_volume(volume)
    check_records(volume)
    slice_pool.check_requested(workers)
    array = _little_endian(volume.array)
    name = codec or codecs.default_codec_name(array.dtype, volume.rgb)
    chosen = codecs.get_codec(name)
    if not chosen.accepts(array.dtype, volume.rgb):
        raise InputError(f"codec {name} does not take {array.dtype} {'RGB ' if volume.rgb else ''}data")
    pixels = math.prod(array.shape[-3:-1] if volume.rgb else array.shape[-2:])
    if not _fits(chosen, pixels, asked=codec is not None, on_note=on_note):
        name = codecs.FallbackCodec.id
        chosen = codecs.get_codec(name)
    writer = ContainerWriter(fileobj)
    total = n_slices(array.shape, volume.rgb)
    digest = hashlib.blake2b(digest_size=32)
    counts: dict[str, int] = {}
    model = chosen.model_id()
    safety = safety_net and model is not None
    slices = list(iter_slices(array, volume.rgb))  # views of the array
    work = slice_pool.work_s(total, array.size // max(1, total), slice_pool.ENCODE_S)
    n = (slice_pool.workers(total, workers, chosen.device, work, chosen.encode_ram_per_pixel * pixels)
         if model is not None else 1)  # a model: the learned codec
    # coded here one by one with a core to spare: the safety net's JPEG-XL beside the learned encoder
    overlap = safety and n == 1 and slice_pool.spare_core(workers) and _room_beside(chosen, pixels)
    tasks = ((name, s, slices[i - 1] if chosen.takes_reference and i % REFERENCE_RUN else None, safety, overlap)
             for i, s in enumerate(slices))
    lanes = slice_pool.lanes(chosen.device, pixels, n) if model is not None and total > 1 else 1
    if lanes > 1:  # a GPU: slices walked in lock-step, one network call per step for all of them
        groups = ((g,) for g in iter(lambda: list(itertools.islice(tasks, lanes)), []))
        coded = itertools.chain.from_iterable(slice_pool.ordered(code_lanes, groups, n, slice_pool.device_env(chosen)))
    else:
        coded = slice_pool.ordered(code_slice, tasks, n, slice_pool.device_env(chosen))
    yield Progress("encode", 0, total)  # said before the first slice: a large image is one slice of seconds
    for i, (s, (used_id, used_version, data)) in enumerate(zip(slices, coded)):
        writer.add_chunk(data, used_id, used_version, s)
        digest.update(s.tobytes())
        counts[used_id] = counts.get(used_id, 0) + 1
        yield Progress("encode", i + 1, total)
    for blob in volume.blobs:
        writer.add_blob(blob)
    size = writer.finish(_header(volume, array, digest.hexdigest(), model if counts.get(chosen.id) else None))
    return size, counts


def _fits(chosen, pixels: int, asked: bool, on_note=None) -> bool:
    """Can ``chosen`` encode a slice of ``pixels`` pixels in the memory free now? Only a codec that says
    what a pixel takes (``encode_ram_per_pixel``: the learned one) is asked. A codec the caller named
    (``asked``) that cannot is an InputError, before any work; the default one is replaced by the
    fallback (False), with a note."""
    from . import ram

    per_pixel = getattr(chosen, "encode_ram_per_pixel", None)
    free = ram.available() if per_pixel else None
    if free is None or per_pixel * pixels <= free:
        return True
    why = (f"the learned codec needs about {ram.human(per_pixel * pixels)} of memory to encode a slice of "
           f"{pixels / 1e6:.1f} megapixels and {ram.human(free)} is free")
    if asked:
        raise InputError(f"{why}: free some memory, or use --codec fallback (JPEG-XL lossless)")
    note = f"{why}: coded with the fallback codec (JPEG-XL lossless)"
    if on_note is None:
        warnings.warn(note, stacklevel=2)
    else:
        on_note(note)
    return False


#: JPEG-XL's lossless encode (effort 7) of one slice, beside the learned encoder's (measured: about 45 MB more
#: for a 512 x 512 slice in a memory cgroup), with room to spare
JPEGXL_ENCODE_RAM_PER_PIXEL = 256


def _room_beside(chosen, pixels: int) -> bool:
    """Whether the memory free holds the safety net's JPEG-XL encode beside the learned one: under a tight
    limit (a cgroup) the two at once were killed where one after the other fits."""
    from . import ram

    free = ram.available()
    # the weights and the engine (and torch, numba's kernels), when this process has not loaded them yet
    base = 0 if getattr(chosen, "_engine", None) is not None else ram.WORKER_BASE_BYTES
    return free is None or free >= base + (chosen.encode_ram_per_pixel + JPEGXL_ENCODE_RAM_PER_PIXEL) * pixels


def code_slice(name: str, s: np.ndarray, prev: np.ndarray | None, safety_net: bool,
               overlap: bool = False) -> tuple[str, int, bytes]:
    """One slice's chunk: (codec id, codec version, bytes), with ``encode_stream``'s safety net.
    Runs in this process or in a ``slice_pool`` worker: the same code either way. ``overlap``: the
    safety net's first JPEG-XL encode runs in a helper thread while the chosen codec encodes
    (libjxl releases the GIL; ``slice_pool.spare_core`` says when a core is free for it): a single
    radiograph's compress no longer waits for it after the learned encoder. The same bytes."""
    chosen = codecs.get_codec(name)
    backup = codecs.get_codec(codecs.FallbackCodec.id) if safety_net else None
    pending = _beside(backup.encode, s) if backup is not None and overlap else None
    try:
        data = chosen.encode(s, **({"reference": prev} if prev is not None else {}))
    except BaseException:
        if pending is not None:
            pending.cancel()  # not started yet: dropped; running: it ends by itself, unread
        raise
    return _kept(chosen, backup, s, data, pending)


def _kept(chosen, backup, s: np.ndarray, data: bytes, pending: Future | None = None) -> tuple[str, int, bytes]:
    """The chunk the safety net keeps of slice ``s``: the chosen codec's ``data``, or where the
    fallback ``backup`` (None: no safety net) is smaller, its smallest (``pending``: its first
    encode, already started)."""
    used = chosen
    if backup is not None:
        alt = pending.result() if pending is not None else backup.encode(s)
        if len(alt) < len(data):
            thorough = [backup.encode(s, effort=e) for e in backup.thorough_efforts(s)]
            used, data = backup, min([alt, *thorough], key=len)
    return used.id, used.version, data


def code_lanes(group: list) -> list[tuple[str, int, bytes]]:
    """``code_slice`` of each task of ``group`` (one codec), their learned encodes walked in lock-step
    (``Engine.run_lanes``); the same bytes. Runs in this process or in a ``slice_pool`` worker; the
    first error is raised, as one by one."""
    chosen = codecs.get_codec(group[0][0])
    backup = codecs.get_codec(codecs.FallbackCodec.id)
    # the safety net's JPEG-XL beside the walks where a core is free for it (``code_slice``'s overlap)
    pending = [_beside(backup.encode, s) if safety and overlap else None for _name, s, _prev, safety, overlap in group]
    walks = [chosen.encode_walk(s, **({"reference": prev} if prev is not None else {}))
             for _name, s, prev, _safety, _overlap in group]
    out = []
    for (_name, s, _prev, safety, _overlap), wait, (data, error) in zip(group, pending, chosen.engine().run_lanes(walks)):
        if error is not None:
            for p in pending:
                if p is not None:
                    p.cancel()
            raise error
        out.append(_kept(chosen, backup if safety else None, s, data, wait))
    return out


def _beside(fn, *args) -> Future:
    """``fn(*args)`` in a daemon thread of its own (``code_slice``'s overlap): an interrupted run
    exits without waiting for a JPEG-XL encode nobody will read (a pool's threads are joined at
    exit: SIGTERM took 3.7 s instead of 2.1 on a radiograph)."""
    done: Future = Future()

    def run():
        if done.set_running_or_notify_cancel():
            try:
                done.set_result(fn(*args))
            except BaseException as e:  # noqa: BLE001 - handed to the caller through the future
                done.set_exception(e)

    threading.Thread(target=run, name="lvpnet-safety-net", daemon=True).start()
    return done


def _verify(lvp: LvpFile, volume: Volume, workers: int | None = 1) -> Generator[Progress, None, None]:
    with limits.own_output():  # what this process wrote from memory: --max-memory is about files' words
        decoded = yield from lvp.iter_decode(stage="verify", workers=workers)
        # compare bytes, not values: NaN payloads and -0.0 must survive too
        if decoded.tobytes() != _little_endian(volume.array).tobytes():
            raise DamagedError("verification failed: the decoded data differs from the input (nothing was written)")
        if lvp.volume(decoded).blobs != list(volume.blobs):  # per-file records (a DICOM archive) read back too
            raise DamagedError("verification failed: a stored blob differs from the input (nothing was written)")


# names of what lvpnet reads: a .lvp written under one of them would pass for that format
_OTHER_FORMATS = (".npy", ".npz", ".nii", ".nii.gz", ".dcm", ".dicom")


def _output_path(path) -> str:
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, (str, os.PathLike)):
        raise InputError(f"the output must be a path, got {type(path).__name__}")
    path = os.fspath(path)
    if path.lower().endswith(_OTHER_FORMATS):
        raise InputError(f"{path}: a .lvp file would be written under the name of another format; name it .lvp "
                         "(`lvpnet decompress` writes .npy, NIfTI and DICOM from it)")
    return path


def iter_compress_to_file(
    volume: Volume | np.ndarray, path: str | os.PathLike, codec: str | None = None, verify: bool = True, safety_net: bool = True,
    workers: int | None = 1, on_note=None, mode: int | None = None,
) -> Generator[Progress, None, CompressResult]:
    """Write ``volume`` to ``path`` atomically; yields progress, returns a CompressResult
    (``workers``: ``encode_stream``'s, for the verifying decode too; ``on_note``: ``encode_stream``'s;
    ``mode``: the file's permission bits, ``atomic_path``'s).

    Closing the generator early (a Cancel button) removes the temporary file;
    nothing appears under ``path`` unless every slice was written and, with
    ``verify``, decoded back identical. ``volume``: a Volume, or an array (as ``compress_to_file`` takes).
    """
    volume = as_volume(volume)
    check_volume(volume)
    path = _output_path(path)
    check_writable(path)  # a folder, a missing or read-only one: said before the encode, not after it
    # timed apart: the first file of a process counted 2 s of loading as encoding (0.4 s a slice after it)
    load_seconds = codecs.warm_up(codec, volume.array.dtype, volume.rgb)
    t0 = time.perf_counter()
    with atomic_path(path, mode) as tmp:
        with open(tmp, "wb") as f:
            size, counts = yield from encode_stream(f, volume, codec, safety_net=safety_net, workers=workers,
                                                      on_note=on_note)
            f.flush()
        t1 = time.perf_counter()
        verify_seconds = None
        if verify:
            yield from _verify(LvpFile(tmp, name=path), volume, workers)
            verify_seconds = time.perf_counter() - t1
    return CompressResult(
        shape=tuple(volume.array.shape),
        dtype=volume.array.dtype.str,
        slices=n_slices(volume.array.shape, volume.rgb),
        raw_bytes=int(volume.array.nbytes),
        lvp_bytes=size,
        encode_seconds=t1 - t0,
        verify_seconds=verify_seconds,
        codec_counts=counts,
        path=path,
        load_seconds=load_seconds,
    )


def iter_compress_path(
    source: str | os.PathLike, path: str | os.PathLike, codec: str | None = None, *, verify: bool = True,
    series: str | None = None, rgb: bool = False, follow_symlinks: bool = False, allow_lossy_source: bool = False,
    safety_net: bool = True, workers: int | None = 1, on_note=None,
) -> Generator[Progress, None, tuple[CompressResult, Volume, float]]:
    """A file or folder on disk to ``path``, as ``lvpnet compress`` does it: a DICOM source is
    archived with one record per source file, so ``decompress`` restores the files byte for byte
    (``dicom_archive``); anything else is stored as read. ``on_note(text)`` hears what reading
    skipped (special files, links in a folder) before the encode starts, and a learned codec left for
    the fallback for want of memory (``encode_stream``); ``verify``, ``safety_net``, ``workers``: as
    ``compress_to_file``'s. Yields progress; returns (the result, the volume stored, the seconds
    reading and archiving took)."""
    from .files import input_path
    from .io import notes, read

    source, path = input_path(source), _output_path(path)
    if looks_like_lvp(source):
        raise InputError(f"{source}: is already an lvpnet file")
    src = Path(source)
    if src.is_dir() and Path(path).resolve().is_relative_to(src.resolve()):
        # else a rerun would archive the last run's .lvp as one of the folder's files, growing each time
        raise InputError(f"{path}: the output lies inside the folder being compressed ({source}); write it elsewhere")
    t0 = time.perf_counter()
    volume = read(source, series=series, rgb=rgb, follow_symlinks=follow_symlinks)
    check_volume(volume, os.fspath(source))  # what cannot be stored, said of the file (not of "input")
    for note in notes(volume) if on_note is not None else ():
        on_note(note)
    if volume.source_format == "dicom":  # keep every source file, restorable byte for byte
        from .dicom_archive import iter_build_archive

        volume = yield from iter_build_archive(volume, source, allow_lossy_source=allow_lossy_source)
    elif allow_lossy_source:
        raise InputError("--allow-lossy-source applies to DICOM input only")
    read_seconds = time.perf_counter() - t0
    result = yield from iter_compress_to_file(volume, path, codec, verify=verify, safety_net=safety_net,
                                              workers=workers, on_note=on_note)
    return result, volume, read_seconds


def compress_path(source: str | os.PathLike, path: str | os.PathLike, codec: str | None = None, **kw) -> CompressResult:
    """``iter_compress_path`` without progress, e.g. ``lvpnet.compress_path("dicom_folder", "ct.lvp")``:
    a DICOM folder stored so that ``lvpnet decompress`` restores its files byte for byte."""
    return run(iter_compress_path(source, path, codec, **kw))[0]


def compress(
    data: np.ndarray | Volume, codec: str | None = None, rgb: bool = False, verify: bool = True, safety_net: bool = True,
    workers: int | None = 1,
) -> bytes:
    """Compress an array (or Volume) to the bytes of a ``.lvp`` file (``safety_net``, ``workers``: see
    ``encode_stream``)."""
    volume = as_volume(data, rgb)
    buf = io.BytesIO()
    run(encode_stream(buf, volume, codec, safety_net=safety_net, workers=workers))
    out = buf.getvalue()
    if verify:
        run(_verify(LvpFile(out), volume, workers))
    return out


def compress_to_file(
    data: np.ndarray | Volume,
    path: str | os.PathLike,
    codec: str | None = None,
    rgb: bool = False,
    verify: bool = True,
    safety_net: bool = True,
    workers: int | None = 1,
) -> CompressResult:
    """Compress an array (or Volume) to the file ``path``, atomically: nothing appears there unless
    every slice was written and, with ``verify``, decoded back identical; an existing file is replaced
    only then. ``codec``: None (the learned codec where it applies, else the fallback), "lvpnet" or
    "fallback"; ``rgb``: a last axis of 3 is colour; ``safety_net``: per slice the smaller of the
    learned codec and the fallback; ``workers``: processes coding the slices (``encode_stream``)."""
    return run(iter_compress_to_file(as_volume(data, rgb), path, codec, verify, safety_net, workers))
