"""In-process fuzzing of the ``.lvp`` readers: container, codec chunks, DICOM file records.

Seeds are real files written by both codecs (the fallback's three modes, the
learned codec's chunks with and without a reference slice) and by the DICOM
archive. Each case mutates one seed: a flipped byte, a truncation, or a
forgery that recomputes every CRC-32 (a header or record field replaced by a
hostile value, an index record's codec byte or length, bytes inside a chunk or
a record body, a zstd bomb as a body). The only outcome allowed is an
``LvpnetError`` (or success) within the time and memory limits; anything else
is a finding, saved under ``--out``.

    python fuzz/fuzz_lvp.py --seconds 600 --seed 1            # by hand, longer
    python fuzz/fuzz_lvp.py --seconds 600 --learned           # the learned codec's chunks too

``tests/test_fuzz.py`` runs a few seconds of it with a fixed seed.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import random
import resource
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lvp_forge  # noqa: E402

import lvpnet  # noqa: E402
from lvpnet import dicom_archive  # noqa: E402
from lvpnet.errors import LvpnetError  # noqa: E402

HOSTILE = [None, -1, 0, 1, 2**31, 2**64, -(2**63), 1e308, float("nan"), True, "", "x" * 300, "<i2", "O",
           "../../evil", [], [1], [[]], {}, {"id": 1}, [-1, 5], [0, 0], [2**40, 2**40], "a.dcm/x"]
CASE_SECONDS = 20.0  # one case may take this long before it counts as a hang
RSS_LIMIT_MB = 1024
# what a case may add to the process's resident memory: the limit less what lvpnet and torch take to
# start (about 250 MB), so a run inside a larger process (pytest) is judged by the same rule
GROWTH_LIMIT_MB = RSS_LIMIT_MB - 256


def peak_rss_mb() -> int:
    """This process's own peak resident memory (``VmHWM``; ``ru_maxrss`` elsewhere, which on Linux
    also counts the parent a forked process was copied from)."""
    try:
        return int(Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0]) // 1024
    except (OSError, IndexError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def _reset_peak_rss() -> int:
    """Restart the peak at the current resident memory (Linux ``clear_refs`` 5); returns that peak."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    return peak_rss_mb()


# ---------------------------------------------------------------- seeds


def _dicom_series(root: Path, rng: np.random.Generator, n: int = 2) -> None:
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    for i in range(n):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, ds.file_meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.SeriesInstanceUID, ds.InstanceNumber = "MR", "1.2.3.4", i + 1
        ds.Rows, ds.Columns, ds.SamplesPerPixel = 6, 5, 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = rng.integers(0, 4096, (6, 5), dtype=np.uint16).tobytes()
        ds.save_as(root / f"IM{i}.dcm", enforce_file_format=True)
    (root / "notes.txt").write_bytes(b"carried whole\n")
    del pydicom


def seeds(learned: bool = False) -> dict[str, bytes]:
    """Named seed files: every kind of chunk and record a reader meets."""
    rng = np.random.default_rng(0)
    out = {
        "fallback-jxl": lvpnet.compress(rng.integers(-300, 300, (2, 9, 7)).astype(np.int16), codec="fallback"),
        "fallback-zstd": lvpnet.compress(rng.normal(size=(2, 6, 5)).astype(np.float32), codec="fallback"),
        "fallback-constant": lvpnet.compress(np.zeros((2, 4, 4), np.uint8), codec="fallback"),
        "fallback-rgb": lvpnet.compress(rng.integers(0, 255, (5, 4, 3)).astype(np.uint8), rgb=True, codec="fallback"),
    }
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "series"
        root.mkdir()
        _dicom_series(root, rng)
        vol = dicom_archive.build_archive(lvpnet.io.read(root), root)
        out["dicom-archive"] = lvpnet.compress(vol, codec="fallback")
    if learned:
        yy, xx = np.mgrid[0:32, 0:32]
        a = (500 + 40 * np.sin(yy / 5) + rng.integers(0, 9, (2, 32, 32))).astype(np.int16)
        a[1, :16] = a[0, :16]  # the second slice repeats part of the first: coded against it
        out["lvpnet"] = lvpnet.compress(a, codec="lvpnet", safety_net=False)
        # bitstream 11: a flat background around a noisy patch, so both planes take the block map
        # (the map's flags, its values and the masked items are then in the bytes mutated)
        b = np.full((2, 96, 91), 3, np.uint8)
        b[:, 5:21, 9:27] = rng.integers(0, 200, (2, 16, 18))
        b[1, 30:] = b[0, 30:]
        out["lvpnet-blocks"] = lvpnet.compress(b, codec="lvpnet", safety_net=False)
    return out


# ---------------------------------------------------------------- mutations


def _paths(value, prefix=()):
    """Every (path, value) inside a JSON value."""
    yield prefix, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


def _replace(value, path, new):
    if not path:
        return new
    value = copy.deepcopy(value)
    node = value
    for key in path[:-1]:
        node = node[key]
    if isinstance(node, dict) and rng_choice_delete[0]:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = new
    return value


rng_choice_delete = [False]  # set per case: delete the key instead of replacing its value


def _forge_json(rnd: random.Random, value):
    paths = list(_paths(value))
    path, _ = rnd.choice(paths)
    rng_choice_delete[0] = rnd.random() < 0.15
    return _replace(value, path, rnd.choice(HOSTILE))


def mutate(rnd: random.Random, data: bytes) -> tuple[str, bytes]:
    """One mutation of a seed file, and its name."""
    kind = rnd.choice(["flip", "truncate", "header", "header", "index", "chunk", "record", "body", "version"])
    if kind == "flip":
        pos = rnd.randrange(len(data))
        return f"flip@{pos}", data[:pos] + bytes([data[pos] ^ rnd.choice([1, 0x80, 0xFF])]) + data[pos + 1 :]
    if kind == "truncate":
        n = rnd.randrange(len(data))
        return f"truncate@{n}", data[:n]
    p = lvp_forge.split(data)
    if kind == "version":
        p.major = rnd.choice([0, 2, 254, 65535])
        return f"version={p.major}", lvp_forge.join(p)
    if kind == "header":
        p.header = _forge_json(rnd, p.header)
        return "header-forgery", lvp_forge.join(p, fix_blobs=rnd.random() < 0.7)
    if kind == "index":
        i = rnd.randrange(len(p.chunks))
        if rnd.random() < 0.5:
            p.codecs[i] = rnd.randrange(256)
        else:  # move a chunk boundary: the next chunk takes the bytes over
            cut = rnd.randrange(len(p.chunks[i]) + 1)
            if i + 1 < len(p.chunks):
                p.chunks[i], p.chunks[i + 1] = p.chunks[i][:cut], p.chunks[i][cut:] + p.chunks[i + 1]
        return f"index@{i}", lvp_forge.join(p)
    if kind == "chunk":  # bytes inside a chunk with its CRC recomputed: the codec's parser is the target
        i = rnd.randrange(len(p.chunks))
        c = bytearray(p.chunks[i])
        for _ in range(rnd.choice([1, 1, 2, 4])):
            if c:
                c[rnd.randrange(len(c))] = rnd.randrange(256)
        p.chunks[i] = bytes(c)
        return f"chunk@{i}", lvp_forge.join(p)
    if not p.blobs:  # no records to forge in this seed: forge its header instead
        p.header = _forge_json(rnd, p.header)
        return "header-forgery", lvp_forge.join(p)
    k = rnd.randrange(len(p.blobs))
    prefix, head, body = lvp_forge.record_split(p.blobs[k])
    if kind == "record":
        p.blobs[k] = lvp_forge.record_join(prefix, _forge_json(rnd, head), body)
        return f"record@{k}", lvp_forge.join(p)
    if rnd.random() < 0.3:  # a zstd bomb as the body
        body = lvp_forge.zstd_bomb(rnd.choice([1 << 20, 1 << 28]))
    else:
        b = bytearray(body)
        if b:
            b[rnd.randrange(len(b))] ^= 0xFF
        body = bytes(b)
    p.blobs[k] = lvp_forge.record_join(prefix, head, body)
    return f"body@{k}", lvp_forge.join(p)


# ---------------------------------------------------------------- the oracle


def read_everything(data: bytes) -> None:
    """What verify and decompress do with a file: every slice, every blob, every archived file,
    and the output files they would write (into memory)."""
    f = lvpnet.LvpFile(data)
    for _ in f.iter_verify():
        pass
    volume = f.volume()
    if dicom_archive.archive_of(volume.metadata) is not None:
        for _ in dicom_archive.iter_files(volume):
            pass
    buf = io.BytesIO()
    np.save(buf, volume.array, allow_pickle=False)


def run(seconds: float | None = None, iterations: int | None = None, seed: int = 0, learned: bool = False,
        out: Path | None = None, log=print) -> list[dict]:
    """Fuzz for ``seconds`` or ``iterations`` (whichever ends first); returns the findings."""
    rnd = random.Random(seed)
    corpus = seeds(learned)
    names = sorted(corpus)
    findings, n, t_end = [], 0, time.monotonic() + (seconds if seconds is not None else 1e12)
    start = _reset_peak_rss()
    while time.monotonic() < t_end and (iterations is None or n < iterations):
        name = rnd.choice(names)
        how, data = mutate(rnd, corpus[name])
        n += 1
        t0 = time.monotonic()
        problem = None
        try:
            read_everything(data)
        except LvpnetError:
            pass
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException:  # a native library's panic (pyo3's PanicException) is a finding too
            problem = traceback.format_exc(limit=-3)
        took = time.monotonic() - t0
        rss = peak_rss_mb()
        if problem is None and took > CASE_SECONDS:
            problem = f"took {took:.1f} s"
        if problem is None and rss - start > GROWTH_LIMIT_MB:
            problem = f"peak RSS {rss} MB ({rss - start} MB over the start)"
        if problem is not None:
            findings.append({"seed": name, "mutation": how, "problem": problem})
            log(f"FINDING {name} {how}: {problem}")
            if out is not None:
                out.mkdir(parents=True, exist_ok=True)
                (out / f"{name}-{n}.lvp").write_bytes(data)
    log(f"{n} cases, {len(findings)} findings, peak RSS {peak_rss_mb()} MB (started at {start} MB)")
    return findings


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--iterations", type=int)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--learned", action="store_true", help="add the learned codec's chunks (needs its weights)")
    ap.add_argument("--out", type=Path, default=Path("fuzz/findings"), help="where failing inputs are saved")
    args = ap.parse_args(argv)
    findings = run(args.seconds, args.iterations, args.seed, args.learned, args.out)
    print(json.dumps({"findings": len(findings)}))
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
