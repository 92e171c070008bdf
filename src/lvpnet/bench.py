"""``lvpnet bench``: our real ``.lvp`` bytes against six classical lossless codecs.

For every input: the ``.lvp`` is made in memory with :func:`lvpnet.compress`
(no verification inside the timed encode; it is decoded afterwards, timed, and
compared bit for bit), so its size is real file bytes, container included.
Beside it: the six codecs of :mod:`lvpnet.classical` (each 2-D slice shifted
to unsigned, one thread, round-tripped), encode and decode speed in million
samples per second, the best classical codec per input and our ratio to it.

Codecs that know more about their chunks (a learned codec: latent and pixel
bits, the model's estimate) say so through :meth:`Codec.chunk_stats`; those
figures are summed per input and shown only when some chunk reports them.

A DICOM input's ``.lvp`` is made as ``lvpnet compress`` makes it: with one
record per source file (:mod:`lvpnet.dicom_archive`), so it holds everything
needed to restore the files. DICOM inputs (a file or a folder, not a ``.lvp``
made from one) also get the
bytes on disk and the bytes with every image file's pixel data re-encoded as
JPEG-LS lossless (1.2.840.10008.1.2.4.80) and JPEG 2000 lossless
(1.2.840.10008.1.2.4.90): each file is rewritten in memory by pydicom with the
frames encapsulated and the transfer syntax changed, and measured; where
pydicom cannot write a file back, its size is estimated as file bytes minus
the old pixel data value plus the new encapsulated value (``method`` says
which). The folder's files that are not the series' images but that the ``.lvp``
carries (a DICOMDIR, notes) count unchanged; another series' files do not count. What a PACS
would store: JPEG-LS codes signed pixels as their bit pattern in BitsStored
bits; JPEG 2000 codes them signed; colour frames are one 3-component image.

Totals are sample-weighted: total bits over total samples. The classical
totals, the best-classical total and our ratio to it cover the inputs the
classical codecs could code (integers whose slices span at most 16 bits).

Layout of the report (``bench --json`` prints it)::

    {"lvpnet_version", "codec", "classical_codecs": {id: name}, "stat_keys": [...],
     "inputs": [record...], "totals": {...}}

    record = {"input", "shape", "dtype", "rgb", "slices", "samples", "source_format",
              "lvpnet": {"file_bytes", "chunk_bytes", "container_bytes", "bits_per_sample",
                         "encode_seconds", "decode_seconds", "encode_msps", "decode_msps",
                         "lossless", "codecs": {id: slices}, "codec_bytes": {id: bytes},
                         "versions": {id: [bitstream versions]}, "model": null | weights sha256,
                         "learned_only": null | {"file_bytes", "bits_per_sample", "model"},
                         "stats": null | {"slices", "samples", key..., key + "_per_sample"...}},
              "classical": {id: {"name", "bytes", "bits_per_sample", "encode_seconds",
                                 "decode_seconds", "encode_msps", "decode_msps", "lossless"}},
              "classical_skipped": null | reason,
              "best_classical": null | {"id", "name", "bytes", "bits_per_sample"},
              "ratio_to_best": null | float,
              "dicom": {...},            # DICOM inputs only: dicom_sizes() + "lvp_holds_files"
              "pixels_of_file_bytes": int  # a .lvp made from DICOM only: its own size
             }

For a DICOM input, ``lvpnet`` is the .lvp of the pixels alone, as the classical codecs code the pixels
alone (``archive_bytes``: the .lvp ``lvpnet compress`` writes, the source files' headers and records with
them, which the DICOM table compares with the files as they are and re-encoded). A ``.lvp`` made from
DICOM is measured the same way, its pixels coded again; a line under the table gives the file's own size.
"""

from __future__ import annotations

import io
import os
import platform
import time
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__, classical, codecs
from .errors import DamagedError
from .progress import Progress
from .volume import Volume

#: chunk_stats keys shown as columns, in this order (see Codec.chunk_stats)
STAT_KEYS = ("latent_bits", "pixel_bits", "estimated_bits", "estimated_latent_bits", "estimated_pixel_bits")
STAT_LABELS = {
    "latent_bits": "latent",
    "pixel_bits": "pixel",
    "estimated_bits": "estimate",
    "estimated_latent_bits": "est. latent",
    "estimated_pixel_bits": "est. pixel",
}

JPEGLS_LOSSLESS = "1.2.840.10008.1.2.4.80"
JPEG2000_LOSSLESS = "1.2.840.10008.1.2.4.90"


def _msps(samples: int, seconds: float) -> float | None:
    return round(samples / seconds / 1e6, 3) if seconds > 0 else None


# ---------------------------------------------------------------- one input


def _ours(volume: Volume, codec: str | None, archive: Volume | None = None) -> dict[str, Any]:
    """The .lvp of ``volume``'s pixels; with ``archive`` (a DICOM input's volume with its file records,
    the same array), also ``archive_bytes``: the real size of the .lvp ``lvpnet compress`` writes for it,
    the same chunks rewrapped with its records and header (no second encode)."""
    from . import compress
    from .lvpfile import LvpFile

    n = int(volume.array.size)
    t0 = time.perf_counter()
    data = compress(volume, codec=codec, verify=False)
    t1 = time.perf_counter()
    lvp = LvpFile(data)
    back = lvp.read_all()
    t2 = time.perf_counter()
    want = volume.array.astype(volume.array.dtype.newbyteorder("<"), copy=False)
    lossless = back.shape == want.shape and back.tobytes() == want.tobytes()
    if not lossless:
        raise DamagedError("bench: the .lvp did not decode to the input (codec bug)")

    per_codec: dict[str, int] = {}
    per_codec_bytes: dict[str, int] = {}
    versions: dict[str, set[int]] = {}
    sums: dict[str, float] = {}
    stat_slices = 0
    slice_samples = int(np.prod(lvp.slice_shape))
    flat = back.reshape((-1,) + lvp.slice_shape)
    for i in range(len(lvp)):
        chunk, cid, version = lvp._reader.chunk(i)
        per_codec[cid] = per_codec.get(cid, 0) + 1
        per_codec_bytes[cid] = per_codec_bytes.get(cid, 0) + len(chunk)
        versions.setdefault(cid, set()).add(version)
        c = codecs.get_codec(cid)
        ref = {"reference": flat[i - 1]} if i and c.takes_reference else {}  # used where the chunk needs it
        stats = c.chunk_stats(chunk, lvp.slice_shape, lvp.dtype, version, **ref)
        if stats:
            stat_slices += 1
            for k, v in stats.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    sums[k] = sums.get(k, 0.0) + float(v)
    chunk_bytes = sum(per_codec_bytes.values())
    stats_out = None
    if stat_slices:
        samples = stat_slices * slice_samples
        stats_out = {"slices": stat_slices, "samples": samples}
        for k, v in sums.items():
            stats_out[k] = v
            stats_out[k + "_per_sample"] = round(v / samples, 4)
    return {
        "learned_only": _learned_only(volume, codec, per_codec),
        **({"archive_bytes": _rewrapped_size(lvp, flat, archive)} if archive is not None else {}),
        "file_bytes": len(data),
        "chunk_bytes": chunk_bytes,
        "container_bytes": len(data) - chunk_bytes,
        "bits_per_sample": round(8.0 * len(data) / n, 4),
        "encode_seconds": t1 - t0,  # as measured: totals are summed from these
        "decode_seconds": t2 - t1,
        "encode_msps": _msps(n, t1 - t0),
        "decode_msps": _msps(n, t2 - t1),
        "lossless": lossless,
        "codecs": per_codec,
        "codec_bytes": per_codec_bytes,
        "versions": {cid: sorted(v) for cid, v in versions.items()},
        "model": lvp.header.get("model"),
        "stats": stats_out,
    }


def _rewrapped_size(lvp, flat: np.ndarray, archive: Volume) -> int:
    """Bytes of the .lvp holding ``lvp``'s chunks with ``archive``'s header and file records."""
    from .compressor import _header
    from .container import ContainerWriter

    buf = io.BytesIO()
    writer = ContainerWriter(buf)
    for i in range(len(lvp)):
        chunk, cid, version = lvp._reader.chunk(i)
        writer.add_chunk(chunk, cid, version, flat[i])
    for blob in archive.blobs:
        writer.add_blob(blob)
    return writer.finish(_header(archive, archive.array, lvp.header["array_hash"], lvp.header.get("model")))


def _learned_only(volume: Volume, codec: str | None, per_codec: dict[str, int]) -> dict[str, Any] | None:
    """The learned codec's own figures when the safety net gave some slices to the fallback.

    None when the learned codec was not asked for, or when it kept every slice
    (then the figures above are its own already).
    """
    from . import compress
    from .lvpfile import LvpFile

    name = codec or codecs.default_codec_name(volume.array.dtype, volume.rgb)
    if name != "lvpnet" or set(per_codec) == {"lvpnet"}:
        return None
    if not codecs.get_codec("lvpnet").accepts(volume.array.dtype, volume.rgb):
        return None
    data = compress(volume, codec="lvpnet", verify=False, safety_net=False)
    return {"file_bytes": len(data), "bits_per_sample": round(8.0 * len(data) / volume.array.size, 4),
            "model": LvpFile(data).header.get("model")}


def _classical(volume: Volume, ids: Sequence[str], step: Callable[[], None]) -> tuple[dict[str, Any], str | None]:
    out: dict[str, Any] = {}
    reason = classical.not_applicable(volume.array, volume.rgb)
    if reason is not None:
        for _ in ids:
            step()
        return out, reason
    n = int(volume.array.size)
    for cid in ids:
        r = classical.measure(cid, volume.array, volume.rgb)
        if not r.lossless:
            raise DamagedError(f"bench: {r.name} did not round-trip (imagecodecs bug?)")
        out[cid] = {
            "name": r.name,
            "bytes": r.bytes,
            "bits_per_sample": round(r.bits_per_sample, 4),
            "encode_seconds": r.encode_seconds,
            "decode_seconds": r.decode_seconds,
            "encode_msps": _msps(n, r.encode_seconds),
            "decode_msps": _msps(n, r.decode_seconds),
            "lossless": r.lossless,
        }
        step()
    return out, None


def bench_volume(
    volume: Volume,
    name: str,
    *,
    codec: str | None = None,
    source: str | os.PathLike | None = None,
    classical_ids: Sequence[str] = tuple(classical.ALL_CODECS),
    on_step: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """The bench record of one Volume (see the module docstring).

    ``source`` is the file or folder the volume was read from; DICOM sources
    get the ``dicom`` sizes.
    """
    step = on_step or (lambda: None)
    a = volume.array
    rec: dict[str, Any] = {
        "input": name,
        "shape": list(a.shape),
        "dtype": a.dtype.name,
        "rgb": bool(volume.rgb),
        "slices": volume.n_slices,
        "samples": int(a.size),
        "source_format": volume.source_format,
    }
    dicom_source = None
    if source is not None and volume.source_format == "dicom":
        from .container import looks_like_lvp

        if not looks_like_lvp(source):
            dicom_source = Path(source)
    archived = False
    archive = None
    pixels = volume
    if dicom_source is not None:
        archive, archived = _dicom_archive(volume, dicom_source)
    if volume.source_format == "dicom":
        if dicom_source is None and source is not None and os.path.isfile(source):  # a .lvp made from DICOM
            rec["pixels_of_file_bytes"] = os.path.getsize(source)  # said under the table: not this file's size
        # pixels against pixels here (the files' records count in the DICOM sizes, for a folder); a .lvp made from
        # DICOM too: its files' headers and records were counted against lvpnet alone (9.0 bits per sample where
        # its folder gave 7.0)
        pixels = Volume(array=volume.array, rgb=volume.rgb, spacing=volume.spacing, origin=volume.origin,
                        direction=volume.direction, affine=volume.affine, source_format=volume.source_format)
    rec["lvpnet"] = _ours(pixels, codec, archive)
    step()
    rec["classical"], rec["classical_skipped"] = _classical(volume, classical_ids, step)
    best = min(rec["classical"].items(), key=lambda kv: kv[1]["bytes"], default=None)
    if best is None:
        rec["best_classical"] = rec["ratio_to_best"] = None
    else:
        bid, b = best
        rec["best_classical"] = {"id": bid, "name": b["name"], "bytes": b["bytes"], "bits_per_sample": b["bits_per_sample"]}
        rec["ratio_to_best"] = round(rec["lvpnet"]["file_bytes"] / b["bytes"], 4) if b["bytes"] else None
    if dicom_source is not None:
        rec["dicom"] = dicom_sizes(dicom_source, volume, rec["lvpnet"]["archive_bytes"])
        rec["dicom"]["lvp_holds_files"] = archived
    return rec


def _dicom_archive(volume: Volume, source: Path) -> tuple[Volume, bool]:
    """The volume with its DICOM file records, as ``lvpnet compress`` stores a DICOM input.

    Lossy sources are taken (bench measures, it restores nothing). Without the
    archive module the pixels alone are coded, and ``lvp_holds_files`` says so.
    """
    try:
        from .dicom_archive import build_archive
    except ImportError:
        return volume, False
    return build_archive(volume, source, allow_lossy_source=True), True


# ---------------------------------------------------------------- DICOM sizes


def _pacs_codestreams(frames: np.ndarray, bits_stored: int | None, which: str) -> list[bytes]:
    """Each frame coded losslessly as a PACS would store it; every frame round-tripped."""
    import imagecodecs

    out = []
    for f in frames:
        f = np.ascontiguousarray(f)
        if f.dtype == np.bool_:
            f = f.astype(np.uint8)
        if which == "jpegls":
            coded = f
            if f.dtype.kind == "i":  # JPEG-LS is unsigned: the bit pattern, in BitsStored bits when it fits
                u = f.view(f.dtype.str.replace("i", "u"))
                bs = bits_stored or 8 * f.dtype.itemsize
                lo, hi = -(1 << (bs - 1)), (1 << (bs - 1)) - 1
                fits = bs < 8 * f.dtype.itemsize and int(f.min()) >= lo and int(f.max()) <= hi
                coded = (u & ((1 << bs) - 1)).astype(u.dtype) if fits else u
            cs = imagecodecs.jpegls_encode(coded, level=0)
            back = imagecodecs.jpegls_decode(cs)
        else:
            coded = f
            cs = imagecodecs.jpeg2k_encode(f, level=0, reversible=True, numthreads=1)
            back = imagecodecs.jpeg2k_decode(cs, numthreads=1)
        back = np.asarray(back)
        if back.size != coded.size or not np.array_equal(back.reshape(coded.shape), coded):
            raise DamagedError(f"bench: {which} re-encoding of a DICOM frame did not round-trip")
        out.append(bytes(cs))
    return out


def _rewritten_size(path: Path, codestreams: list[bytes], ts: str, colour: bool) -> tuple[int, str]:
    """Bytes of ``path`` with its pixel data replaced by ``codestreams`` under transfer syntax ``ts``."""
    import pydicom
    from pydicom.encaps import encapsulate

    file_bytes = path.stat().st_size
    value = encapsulate(codestreams)
    ds = pydicom.dcmread(path, force=True)
    old_len = len(ds.PixelData)
    was_native = not ds["PixelData"].is_undefined_length
    try:
        ds.PixelData = value
        elem = ds["PixelData"]
        elem.VR = "OB"
        elem.is_undefined_length = True
        for kw in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
            if kw in ds:
                del ds[kw]
        if colour:
            ds.PlanarConfiguration = 0
            if ts == JPEG2000_LOSSLESS:
                ds.PhotometricInterpretation = "YBR_RCT"
        if not hasattr(ds, "file_meta") or ds.file_meta is None:
            from pydicom.dataset import FileMetaDataset

            ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ts
        buf = io.BytesIO()
        ds.save_as(buf, implicit_vr=False, little_endian=True)
        return len(buf.getvalue()), "rewritten"
    except Exception:  # pydicom cannot write this file back: estimate from the pixel element alone
        return file_bytes - old_len + len(value) + (8 if was_native else 0), "estimated"


def dicom_sizes(source: Path, volume: Volume, lvp_bytes: int) -> dict[str, Any]:
    """Bytes of a DICOM file or folder as it is and with its pixel data re-encoded, beside the ``.lvp``.

    Keys: ``folder_bytes`` (the files the ``.lvp`` holds: the series' files and the folder's other
    files it carries, not another series'; or the one file), ``files``, ``series_files``,
    ``series_bytes``, ``jpegls_bytes`` and ``jpeg2k_bytes`` (those files with every series file
    re-encoded; the others unchanged), ``lvp_bytes``, ``method`` ({"jpegls": {"rewritten": n, "estimated": n},
    "jpeg2k": {...}}: files per way of measuring), and ratios of the ``.lvp`` to
    each; ``notes`` (a list) only when something could not be measured.
    """
    import warnings

    meta = volume.metadata.get("dicom", {}) if isinstance(volume.metadata, dict) else {}
    if source.is_dir():
        # what lvpnet compress stores (dicom_archive.iter_build_archive): the series' image files and the
        # files it carries whole; a folder's other series (--series) are not in the .lvp, nor counted here
        series = [source / r for r in meta.get("files") or []]
        carried = [source / s["file"] for s in meta.get("skipped_files", []) if s.get("archived", True)]
        on_disk = [p for p in series + carried if p.is_file() and not p.is_symlink()]
    else:
        on_disk = [source]
        series = [source]
    folder_bytes = sum(p.stat().st_size for p in on_disk)
    series_bytes = sum(p.stat().st_size for p in series)
    frames_per_file = meta.get("frames_per_file") or ([volume.n_slices] if len(series) == 1 else None)
    out: dict[str, Any] = {
        "folder_bytes": folder_bytes,
        "files": len(on_disk),
        "series_files": len(series),
        "series_bytes": series_bytes,
        "jpegls_bytes": None,
        "jpeg2k_bytes": None,
        "lvp_bytes": lvp_bytes,
        "method": {},
    }
    if not series or frames_per_file is None or len(frames_per_file) != len(series) or sum(
        frames_per_file
    ) != volume.n_slices:
        out["notes"] = ["the reader did not say which frames came from which file; re-encoded sizes not measured"]
        return out
    frames = volume.array.reshape((-1,) + volume.slice_shape)
    bits_stored = meta.get("bits_stored")
    starts = np.cumsum([0] + list(frames_per_file))
    other = folder_bytes - series_bytes
    method: dict[str, dict[str, int]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        passes = (("jpegls_bytes", JPEGLS_LOSSLESS, "jpegls"), ("jpeg2k_bytes", JPEG2000_LOSSLESS, "jpeg2k"))
        for key, ts, which in passes:
            total = other
            hows = method.setdefault(which, {})
            try:
                for k, path in enumerate(series):
                    bs = bits_stored[k] if isinstance(bits_stored, list) else bits_stored
                    streams = _pacs_codestreams(frames[starts[k] : starts[k + 1]], bs, which)
                    size, how = _rewritten_size(path, streams, ts, volume.rgb)
                    total += size
                    hows[how] = hows.get(how, 0) + 1
            except Exception as e:  # e.g. 32-bit samples, which JPEG-LS cannot code: say so, go on
                out.setdefault("notes", []).append(f"{which}: not measured ({type(e).__name__}: {e})")
                continue
            out[key] = total
    out["method"] = method
    for key in ("folder_bytes", "jpegls_bytes", "jpeg2k_bytes"):
        out["lvp_to_" + key.removesuffix("_bytes")] = round(lvp_bytes / out[key], 4) if out[key] else None
    return out


# ---------------------------------------------------------------- several inputs


def totals(records: list[dict[str, Any]], classical_ids: Sequence[str] = tuple(classical.ALL_CODECS)) -> dict[str, Any]:
    """Sample-weighted totals over ``records`` (bits over samples, samples over seconds)."""
    samples = sum(r["samples"] for r in records)
    ours = [r["lvpnet"] for r in records]
    t: dict[str, Any] = {"inputs": len(records), "samples": samples}
    lv_bytes = sum(o["file_bytes"] for o in ours)
    enc = sum(o["encode_seconds"] for o in ours)
    dec = sum(o["decode_seconds"] for o in ours)
    t["lvpnet"] = {
        "file_bytes": lv_bytes,
        "container_bytes": sum(o["container_bytes"] for o in ours),
        "bits_per_sample": round(8.0 * lv_bytes / samples, 4) if samples else None,
        "encode_msps": _msps(samples, enc),
        "decode_msps": _msps(samples, dec),
        "codecs": _merge([o["codecs"] for o in ours]),
        "codec_bytes": _merge([o["codec_bytes"] for o in ours]),
        "stats": None,
    }
    with_stats = [o["stats"] for o in ours if o["stats"]]
    if with_stats:
        st_samples = sum(s["samples"] for s in with_stats)
        st: dict[str, Any] = {"slices": sum(s["slices"] for s in with_stats), "samples": st_samples}
        keys = sorted(
            {k for s in with_stats for k in s if k not in ("slices", "samples") and not k.endswith("_per_sample")}
        )
        for k in keys:
            st[k] = sum(s.get(k, 0.0) for s in with_stats)
            st[k + "_per_sample"] = round(st[k] / st_samples, 4)
        t["lvpnet"]["stats"] = st
    comparable = [r for r in records if r["best_classical"] is not None]
    c_samples = sum(r["samples"] for r in comparable)
    t["comparable_inputs"] = len(comparable)
    t["comparable_samples"] = c_samples
    t["classical"] = {}
    if comparable:
        for cid in classical_ids:
            rows = [r["classical"][cid] for r in comparable if cid in r["classical"]]
            if not rows:
                continue
            b = sum(x["bytes"] for x in rows)
            t["classical"][cid] = {
                "name": rows[0]["name"],
                "bytes": b,
                "bits_per_sample": round(8.0 * b / c_samples, 4),
                "encode_msps": _msps(c_samples, sum(x["encode_seconds"] for x in rows)),
                "decode_msps": _msps(c_samples, sum(x["decode_seconds"] for x in rows)),
            }
        best_bits = 8.0 * sum(r["best_classical"]["bytes"] for r in comparable)  # bytes: never a rounded figure
        ours_bits = 8.0 * sum(r["lvpnet"]["file_bytes"] for r in comparable)
        t["lvpnet_bits_per_sample_comparable"] = round(ours_bits / c_samples, 4)
        t["best_classical_bits_per_sample"] = round(best_bits / c_samples, 4)
        t["ratio_to_best"] = round(ours_bits / best_bits, 4) if best_bits else None
    else:
        t["lvpnet_bits_per_sample_comparable"] = t["best_classical_bits_per_sample"] = t["ratio_to_best"] = None
    dic = [r["dicom"] for r in records if "dicom" in r]
    if dic:
        d: dict[str, Any] = {"inputs": len(dic)}
        for key in ("folder_bytes", "series_bytes", "jpegls_bytes", "jpeg2k_bytes", "lvp_bytes"):
            vals = [x[key] for x in dic]
            d[key] = None if any(v is None for v in vals) else sum(vals)
        t["dicom"] = d
    return t


def _merge(dicts: list[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


def machine() -> str:
    """One line about this machine: the CPU, its vector extensions that decide the learned codec's
    speed (a model name such as "AMD EPYC" does not say), and how its trunk multiplies here."""
    from .model import exact_mm

    model, flags = None, set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:  # the first CPU's model name, then its flags
                if line.startswith("model name") and model is None:
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    cpu = model or platform.processor() or platform.machine()
    vector = [name for flag, name in (("avx512_vnni", "AVX-512 VNNI"), ("avx_vnni", "AVX-VNNI"),
                                      ("avx512f", "AVX-512"), ("avx2", "AVX2")) if flag in flags]
    system = f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    extensions = " (" + ", ".join(vector) + ")" if vector else ""
    return f"{cpu}{extensions}, {os.cpu_count()} logical CPUs, {system}, trunk products: {exact_mm.kind()}"


def bench_volumes(
    items: Sequence[tuple[str, Volume, str | os.PathLike | None]],
    *,
    codec: str | None = None,
    classical_ids: Sequence[str] = tuple(classical.ALL_CODECS),
) -> Generator[Progress, None, dict[str, Any]]:
    """Bench ``(name, volume, source)`` items; yields progress (slice codings done), returns the report."""
    if codec is not None:
        codecs.get_codec(codec)  # unknown names fail before any work
    steps_per = 1 + len(classical_ids)
    total = sum(v.n_slices * steps_per for _, v, _ in items)
    # the learned codec loaded before any timing: the first input's speed counted it (the same file benched
    # twice: 5.96 s, then 0.97 s to encode)
    for _name, volume, _source in items:  # after the first, milliseconds each
        codecs.warm_up(codec, volume.array.dtype, volume.rgb)
    done = 0
    pending: list[Progress] = []
    records = []
    for name, volume, source in items:
        def step(n: int = volume.n_slices) -> None:
            nonlocal done
            done += n
            pending.append(Progress("bench", done, total))

        rec = bench_volume(volume, name, codec=codec, source=source, classical_ids=classical_ids, on_step=step)
        records.append(rec)
        yield from pending
        pending.clear()
    return report(records, codec=codec, classical_ids=classical_ids)


def report(
    records: list[dict[str, Any]],
    *,
    codec: str | None = None,
    classical_ids: Sequence[str] = tuple(classical.ALL_CODECS),
) -> dict[str, Any]:
    keys = [k for k in STAT_KEYS if any((r["lvpnet"]["stats"] or {}).get(k) is not None for r in records)]
    return {
        "lvpnet_version": __version__,
        "codec": codec or "default",
        "codecs_used": _merge([r["lvpnet"]["codecs"] for r in records]),
        "machine": machine(),
        "classical_codecs": {cid: classical.ALL_CODECS[cid].name for cid in classical_ids},
        "stat_keys": keys,
        "inputs": records,
        "totals": totals(records, classical_ids),
    }


def _read(path, series: str | None, rgb: bool):
    """An input as ``lvpnet compress`` reads it; with ``rgb``, one whose last axis is not 3 is read as grey: a
    bench of grey and colour inputs together was refused ("--rgb needs a last axis of 3")."""
    from . import read
    from .errors import NotColourError

    try:
        return read(path, series=series, rgb=rgb)
    except NotColourError:
        return read(path, series=series)


def bench_paths(
    paths: Sequence[str | os.PathLike], *, codec: str | None = None, series: str | None = None, rgb: bool = False,
    on_note=None,
) -> Generator[Progress, None, dict[str, Any]]:
    """Read every input first (a bad one fails before any coding), then bench them (``rgb``: a last axis of 3
    in .npy / .npz input is colour, as ``lvpnet compress --rgb`` reads it, the other inputs grey;
    ``on_note(text)``: what reading says of an input, as ``compressor.iter_compress_path``'s)."""
    from .io import notes
    from .volume import check_volume

    if codec is not None:
        codecs.get_codec(codec)
    items = [(str(p), _read(p, series, rgb), p) for p in paths]
    for name, volume, _ in items:  # what no codec can store, said with the input's name before any coding
        check_volume(volume, what=name)
        for note in notes(volume) if on_note is not None else ():
            on_note(f"{name}: {note}")
    return (yield from bench_volumes(items, codec=codec))


# ---------------------------------------------------------------- text


def _f(x: float | None, nd: int = 3) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def _samples(n: int) -> str:
    """'17.71 M samples', or the count itself below 100,000 (a small input read '0.00 M samples')."""
    return f"{n / 1e6:.2f} M samples" if n >= 100_000 else f"{n:,} samples"


def _shape(shape: list[int]) -> str:
    return "x".join(map(str, shape))


def format_table(rep: dict[str, Any], markdown: bool = False) -> str:
    """The report as text: bits per sample, speeds, DICOM sizes."""
    ids = list(rep["classical_codecs"])
    names = [rep["classical_codecs"][i] for i in ids]
    keys = rep["stat_keys"]
    ours_label = "lvpnet"
    stat_heads = [STAT_LABELS.get(k, k) for k in keys]
    head = ["input", "shape", "dtype", ours_label, "container B", *stat_heads, *names, "best", "lvpnet / best"]

    def named(r):  # an input as every table names it
        return Path(r["input"]).name if not markdown else r["input"]

    rows = []
    for r in rep["inputs"]:
        st = r["lvpnet"]["stats"] or {}
        rows.append(
            [
                named(r),
                _shape(r["shape"]) + (" rgb" if r["rgb"] else ""),
                r["dtype"],
                _f(r["lvpnet"]["bits_per_sample"]),
                f"{r['lvpnet']['container_bytes']:,}",
                *[_f(st.get(k + "_per_sample")) for k in keys],
                *[_f(r["classical"].get(i, {}).get("bits_per_sample")) for i in ids],
                _f((r["best_classical"] or {}).get("bits_per_sample")),
                _f(r["ratio_to_best"]),
            ]
        )
    t = rep["totals"]
    st = t["lvpnet"]["stats"] or {}
    partial = 0 < t["comparable_inputs"] < t["inputs"]
    coded = f"total, the {t['comparable_inputs']} input{'s' if t['comparable_inputs'] > 1 else ''} the classical codecs code"
    # Where the classical codecs skipped inputs, their totals cover fewer samples than lvpnet's: one row
    # for lvpnet over every input, one for every codec over the inputs they all coded, never a mix.
    rows.append(
        [
            f"total, all {t['inputs']} inputs" if partial else "total",
            _samples(t["samples"]),
            "",
            _f(t["lvpnet"]["bits_per_sample"], 4),
            f"{t['lvpnet']['container_bytes']:,}",
            *[_f(st.get(k + "_per_sample"), 4) for k in keys],
            *[_f(None if partial else t["classical"].get(i, {}).get("bits_per_sample"), 4) for i in ids],
            _f(None if partial else t["best_classical_bits_per_sample"], 4),
            _f(None if partial else t["ratio_to_best"], 4),
        ]
    )
    if partial:
        rows.append(
            [
                coded,
                _samples(t["comparable_samples"]),
                "",
                _f(t["lvpnet_bits_per_sample_comparable"], 4),
                "",
                *["" for _ in keys],
                *[_f(t["classical"].get(i, {}).get("bits_per_sample"), 4) for i in ids],
                _f(t["best_classical_bits_per_sample"], 4),
                _f(t["ratio_to_best"], 4),
            ]
        )
    out = ["Bits per sample (real file bytes; lower is better)", grid(head, rows, markdown, bold_last=True)]
    reasons: dict[str, list[str]] = {}  # said in the table's words, not only in --json's classical_skipped
    for r in rep["inputs"]:
        if r.get("classical_skipped"):
            reasons.setdefault(r["classical_skipped"], []).append(named(r))
    if reasons:
        out.append("(no classical codec for " + "; ".join(f"{', '.join(n)}: {why}" for why, n in reasons.items()) + ")")
    for r in rep["inputs"]:
        if r.get("pixels_of_file_bytes"):
            out.append(f"({named(r)}: a .lvp made from DICOM; its pixels alone were coded again, as a DICOM folder's "
                       f"are: the file itself, every header kept, is {r['pixels_of_file_bytes']:,} bytes)")
    if keys:  # not parts of the lvpnet column: a mix of codecs shares its samples out differently
        used = rep.get("codecs_used") or {}
        out.append(f"({', '.join(stat_heads)}: per sample of the slices the learned codec kept, "
                   f"{used.get(codecs.LEARNED, 0)} of {sum(used.values())} here; every other column is whole files)")

    shead = ["input", ours_label, *names]
    srows = []
    for r in rep["inputs"]:
        srows.append(
            [named(r), speed_cell(r["lvpnet"])]
            + [speed_cell(r["classical"].get(i)) for i in ids]
        )
    srows.append([f"total, all {t['inputs']} inputs" if partial else "total", speed_cell(t["lvpnet"])]
                 + [("" if partial else speed_cell(t["classical"].get(i))) for i in ids])
    if partial:
        srows.append([coded, ""]
                     + [speed_cell(t["classical"].get(i)) for i in ids])
    out += ["", "Speed, million samples per second, encode / decode (one thread for the classical codecs)",
            grid(shead, srows, markdown, bold_last=True)]

    dic = [r for r in rep["inputs"] if "dicom" in r]
    if dic:
        dhead = ["input", "files", "as on disk", "as JPEG-LS", "as JPEG 2000", ".lvp", ".lvp / on disk", "measured"]
        drows = []
        for r in dic:
            d = r["dicom"]
            drows.append(
                [
                    named(r),
                    str(d["files"]),
                    f"{d['folder_bytes']:,}",
                    "-" if d["jpegls_bytes"] is None else f"{d['jpegls_bytes']:,}",
                    "-" if d["jpeg2k_bytes"] is None else f"{d['jpeg2k_bytes']:,}",
                    f"{d['lvp_bytes']:,}",
                    _f(d.get("lvp_to_folder")),
                    _method(d["method"]),
                ]
            )
        out += ["", "DICOM: bytes as they are, with the pixel data re-encoded lossless, and the .lvp",
                grid(dhead, drows, markdown)]
    own = [r for r in rep["inputs"] if r["lvpnet"].get("learned_only")]
    if own:
        ohead = ["input", "combined (safety net)", "learned codec alone"]
        orows = [[named(r), _f(r["lvpnet"]["bits_per_sample"]),
                  _f(r["lvpnet"]["learned_only"]["bits_per_sample"])] for r in own]
        out += ["", "The learned codec's own bits per sample, where the fallback took some slices",
                grid(ohead, orows, markdown)]
    used = ", ".join(f"{k} {v}" for k, v in rep["codecs_used"].items())
    out += ["", f"lvpnet {rep['lvpnet_version']}, codec {rep['codec']} (slices per codec: {used})"]
    return "\n".join(out)


def _method(m: dict[str, dict[str, int]]) -> str:
    est = sum(v.get("estimated", 0) for v in m.values())
    if not m:
        return "-"
    return "rewritten" if not est else f"{est} of {sum(sum(v.values()) for v in m.values())} estimated"


def speed_cell(x: dict[str, Any] | None) -> str:
    if not x:
        return "-"
    return f"{_f(x.get('encode_msps'), 2)} / {_f(x.get('decode_msps'), 2)}"


def grid(head: list[str], rows: list[list[str]], markdown: bool, bold_last: bool = False) -> str:
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for k, row in enumerate(rows):
            if bold_last and k == len(rows) - 1:
                row = [f"**{c}**" if c else c for c in row]
            lines.append("| " + " | ".join(row) + " |")
        return "\n".join(lines)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    fmt = lambda row: "  ".join(  # noqa: E731
        (c.ljust(w) if i == 0 else c.rjust(w)) for i, (c, w) in enumerate(zip(row, widths))
    )
    return "\n".join([fmt(head), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows])
