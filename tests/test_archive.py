"""lvpnet archive / restore: whole trees on dask.distributed, resumable, nothing lost.

One LocalCluster of two worker processes serves the in-process tests (``scheduler=``); the
SIGKILL test runs the command itself in a subprocess with its own local cluster, as a user
would. DICOM files come from pydicom's bundled test files (never downloaded here), NIfTI from
nibabel's test data and nibabel itself. Every run uses the fallback codec (fast).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

import lvpnet
from lvpnet.archiver.command import format_archive, format_restore
from lvpnet.archiver.walk import LEDGER_NAME, walk
from lvpnet.cli import main

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
NIB_DATA = Path(nib.__file__).parent / "tests" / "data"
PARTIAL = re.compile(r"\.partial-")  # lvpnet.atomic's temporary names
COMPRESSED_DICOM = {"study2/mr_rle.dcm", "study2/mr_j2k.dcm"}  # restored as Explicit VR LE, same values

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _local(name: str) -> Path:
    path = TEST_FILES / name
    if not path.exists():  # pydicom downloads some test files on demand: never here
        pytest.skip(f"{name} is not bundled with this pydicom")
    return path


def _dcm(path) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, force=True)


def _series(src: Path, folders: list[Path], n: int, uid: str) -> None:
    """``n`` slices of one series made from ``src`` (new SOP UIDs, positions, pixel values),
    dealt round-robin into ``folders``."""
    for i in range(n):
        ds = _dcm(src)
        ds.SeriesInstanceUID = uid
        ds.SOPInstanceUID = f"{uid}.{i + 1}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [0.0, 0.0, 2.5 * i]
        arr = ds.pixel_array.copy()
        ds.PixelData = (arr + i).astype(arr.dtype).tobytes()
        folder = folders[i % len(folders)]
        folder.mkdir(parents=True, exist_ok=True)
        ds.save_as(folder / f"slice{i:02d}.dcm")


def make_tree(root: Path) -> Path:
    """A small archive's worth: DICOM series (one spread over two folders), compressed and big-endian
    DICOM singles, a DICOM object without pixels, NIfTI, .npy (int, float with NaN, Fortran order)
    and other files, one of them named like an output."""
    rng = np.random.default_rng(7)
    _series(_local("CT_small.dcm"), [root / "study1" / "ct"], 3, "1.2.826.0.1.3680043.9.7.1")
    _series(_local("MR_small.dcm"), [root / "study1" / "mr" / "a", root / "study1" / "mr" / "b"], 4,
            "1.2.826.0.1.3680043.9.7.2")
    (root / "study2").mkdir()
    shutil.copy(_local("MR_small_RLE.dcm"), root / "study2" / "mr_rle.dcm")
    shutil.copy(_local("MR_small_jp2klossless.dcm"), root / "study2" / "mr_j2k.dcm")
    (root / "study3" / "big").mkdir(parents=True)  # the same series UID, another study: another item
    shutil.copy(_local("MR_small_bigendian.dcm"), root / "study3" / "big" / "mr_be.dcm")
    shutil.copy(_local("rtplan.dcm"), root / "study1" / "rtplan.dcm")
    (root / "study1" / "notes.txt").write_text("referral letter\n")
    (root / "old.lvp").write_bytes(b"not an lvpnet file, just named like one")
    (root / "nifti").mkdir()
    for name in ("anatomical.nii", "example_nifti2.nii.gz"):
        if (NIB_DATA / name).exists():
            shutil.copy(NIB_DATA / name, root / "nifti" / name)
    img = nib.Nifti1Image(rng.integers(-1000, 2000, (40, 32, 5)).astype(np.int16), np.diag([0.8, 0.8, 3.0, 1.0]))
    nib.save(img, root / "nifti" / "made.nii.gz")
    np.save(root / "vol.npy", rng.integers(0, 4000, (4, 48, 40)).astype(np.uint16))
    flt = rng.normal(size=(30, 20)).astype(np.float32)
    flt[3, 4] = np.nan
    np.save(root / "nifti" / "float.npy", flt)
    np.save(root / "fortran.npy", np.asfortranarray(rng.integers(-50, 50, (3, 16, 24)).astype(np.int16)))
    return root


def tree_files(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def assert_restored(src: Path, out: Path, missing: set[str] = frozenset()) -> None:
    """OUT equals SOURCE file by file: byte for byte, except .nii.gz (the same uncompressed bytes)
    and compressed DICOM (the same stored values, as Explicit VR Little Endian)."""
    want, got = tree_files(src), tree_files(out)
    assert set(got) == set(want) - set(missing)
    for rel, p in got.items():
        a, b = want[rel].read_bytes(), p.read_bytes()
        if rel.endswith(".gz"):
            assert gzip.decompress(a) == gzip.decompress(b), rel
        elif rel in COMPRESSED_DICOM:
            assert np.array_equal(lvpnet.read(want[rel]).array, lvpnet.read(p).array), rel
            assert str(_dcm(p).file_meta.TransferSyntaxUID) == "1.2.840.10008.1.2.1"
        else:
            assert a == b, rel


def partials(root: Path) -> list[str]:
    return [p.name for p in root.rglob("*") if PARTIAL.search(p.name)]


def ledger_rows(dest: Path) -> dict[str, dict]:
    db = sqlite3.connect(f"file:{dest / LEDGER_NAME}?mode=ro", uri=True)
    try:
        db.row_factory = sqlite3.Row
        return {r["key"]: dict(r) for r in db.execute("SELECT * FROM items")}
    finally:
        db.close()


@pytest.fixture(scope="module")
def cluster():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=50) as lc, Client(lc) as client:
        client.wait_for_workers(2)
        yield client


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("src") / "tree")


# ---------------------------------------------------------------- the walk


def test_walk_names_items_deterministically(source):
    plan = walk(source)
    keys = {it.key: it for it in plan.items}
    assert keys["study1/ct/series-1.2.826.0.1.3680043.9.7.1.lvp"].kind == "dicom"
    mr = keys["study1/mr/series-1.2.826.0.1.3680043.9.7.2.lvp"]  # one series over two folders
    assert [s.rel for s in mr.sources] == [f"study1/mr/{d}/slice{i:02d}.dcm" for d, i in
                                           (("a", 0), ("a", 2), ("b", 1), ("b", 3))]
    assert mr.root == "study1/mr"
    assert keys["vol.npy.lvp"].kind == "numpy"
    assert keys["nifti/made.nii.gz.lvp"].kind == "nifti"
    assert keys["study1/rtplan.dcm"].kind == "other"  # DICOM without pixel data: copied
    assert keys["old.lvp.lvpcarry"].kind == "other"  # never a name that ends in .lvp
    assert [it.key for it in walk(source).items] == [it.key for it in plan.items]


def test_walk_keeps_links_and_lists_fifos_without_reading_them(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((4, 4), np.uint8))
    os.symlink(tmp_path / "a.npy", tmp_path / "link.npy")
    os.mkfifo(tmp_path / "pipe.dcm")
    (tmp_path / os.fsdecode(b"latin-\xe9.npy")).write_bytes(b"x")  # a name no ledger can hold as text
    (tmp_path / "x.lvplink").write_bytes(b"a file named like a link's output")
    plan = walk(tmp_path)
    assert {it.key: it.kind for it in plan.items} == {"a.npy.lvp": "numpy", "link.npy.lvplink": "link",
                                                      "x.lvplink.lvpcarry": "other"}
    assert {s["file"]: s["reason"] for s in plan.skipped} == {"pipe.dcm": "FIFO (not read)"}
    # a regular file the archive cannot name is a failure (the run exits 1), named so that it can be found
    (unnamed,) = plan.unnamed
    assert unnamed["file"] == "latin-\\xe9.npy" and "not valid UTF-8" in unnamed["reason"]


def test_walk_splits_a_series_whose_files_do_not_stack(tmp_path):
    """One UID over files of two sizes (it happens: a localizer among the slices) is two items,
    each its own volume, instead of one item that fails."""
    for name, src in (("a.dcm", "MR_small.dcm"), ("b.dcm", "CT_small.dcm"), ("c.dcm", "MR_small.dcm")):
        ds = _dcm(_local(src))
        ds.SeriesInstanceUID = "1.2.3.4"
        ds.SOPInstanceUID = f"1.2.3.4.{ord(name[0])}"
        ds.save_as(tmp_path / name)
    items = walk(tmp_path).items
    assert sorted([s.rel for s in it.sources] for it in items) == [["a.dcm", "c.dcm"], ["b.dcm"]]
    assert all(re.fullmatch(r"series-1\.2\.3\.4-[0-9a-f]{16}\.lvp", it.key) for it in items)


# ---------------------------------------------------------------- archive and restore


def test_archive_and_restore_tree(cluster, source, tmp_path, monkeypatch):
    dest, out = tmp_path / "dest", tmp_path / "out"
    s = lvpnet.archive(source, dest, scheduler=cluster, codec="fallback")
    n = len(walk(source).items)
    assert (s["done"], s["skipped"], s["failed"], s["items"]) == (n, 0, 0, n)
    assert s["series"] == 4 and s["bytes_in"] == sum(p.stat().st_size for p in tree_files(source).values())
    assert 0 < s["bytes_out"] < s["bytes_in"]
    not_identical = s["not_identical"]  # the DICOM series with compressed files, and the .nii.gz (checked below)
    assert "study2/series-1.3.6.1.4.1.5962.1.3.4.1.20040826185059.5457.lvp" in not_identical
    assert not partials(dest)
    # the ledger: every item done, with its sources' sizes, times and hashes and its output's hash
    rows = ledger_rows(dest)
    assert set(rows) == {it.key for it in walk(source).items}
    assert all(r["state"] == "done" and r["encodes"] == 1 for r in rows.values())
    from lvpnet.archiver.tasks import sha256_file

    for key, r in rows.items():
        assert sha256_file(dest / key) == r["output_sha256"]
    db = sqlite3.connect(dest / LEDGER_NAME)
    path, size, mtime, sha = db.execute(
        "SELECT path, size, mtime_ns, sha256 FROM sources WHERE path = 'vol.npy'").fetchone()
    db.close()
    st = (source / path).stat()
    assert (size, mtime, sha) == (st.st_size, st.st_mtime_ns, sha256_file(source / path))
    # what lvpnet compress FOLDER writes: lvpnet decompress restores the series on its own too
    assert main(["decompress", str(dest / "study1/ct/series-1.2.826.0.1.3680043.9.7.1.lvp"),
                 str(tmp_path / "ct")]) == 0
    assert {p.name for p in (tmp_path / "ct").iterdir()} == {"slice00.dcm", "slice01.dcm", "slice02.dcm"}

    # a rerun reads no DICOM header again (the ledger knows what each unchanged file is)
    import lvpnet.archiver.walk as walk_module

    opened = []
    real = walk_module._dicom_header
    monkeypatch.setattr(walk_module, "_dicom_header", lambda path, name: opened.append(name) or real(path, name))
    again = lvpnet.archive(source, dest, scheduler=cluster, codec="fallback")
    assert (again["done"], again["skipped"], again["failed"]) == (0, n, 0)
    assert opened == []

    r = lvpnet.restore(dest, out, scheduler=cluster)
    assert (r["done"], r["failed"], r["skipped"]) == (n, 0, 0)
    assert r["files"] == len(tree_files(source))
    assert_restored(source, out)
    assert not partials(out)
    # restore names the files that come back with the same values but other bytes (archive named the items)
    # and the .nii.gz files whose gzip stream is not the source's (the same uncompressed bytes)
    gz = [rel for rel in tree_files(source) if rel.endswith(".nii.gz")
          and (out / rel).read_bytes() != (source / rel).read_bytes()]
    assert gz and all(gzip.decompress((out / rel).read_bytes()) == gzip.decompress((source / rel).read_bytes())
                      for rel in gz)
    assert r["not_identical"] == sorted(gz + ["study2/mr_j2k.dcm", "study2/mr_rle.dcm"])
    assert sorted(not_identical) == sorted([rel + ".lvp" for rel in gz]
                                           + ["study2/series-1.3.6.1.4.1.5962.1.3.4.1.20040826185059.5457.lvp"])
    assert f"{len(gz) + 2} files restored with the same values but not byte for byte" in format_restore(r)


def test_cli_archive_json_and_bad_usage(cluster, source, tmp_path, capsys):
    dest = tmp_path / "dest"
    addr = cluster.scheduler.address
    assert main(["archive", str(source), str(dest), "--scheduler", addr, "--codec", "fallback", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert {"done", "skipped", "failed", "bytes_in", "bytes_out"} <= set(s) and s["failed"] == 0
    assert main(["archive", str(source), str(dest), "--scheduler", addr, "--codec", "fallback"]) == 0
    assert "skipped" in capsys.readouterr().out
    out = tmp_path / "out"
    out.mkdir()
    (out / "x").write_text("occupied")
    cases = [
        ["archive", str(tmp_path / "missing"), str(tmp_path / "d2")],  # no SOURCE
        ["archive", str(source), str(source / "inside")],  # DEST inside SOURCE
        ["archive", str(source), str(out)],  # a non-empty folder that is not an archive
        ["archive", str(tmp_path / "out"), str(dest)],  # the archive of another SOURCE
        ["archive", str(source), str(tmp_path / "d3"), "--workers", "0"],
        ["restore", str(dest), str(out)],  # OUT not empty
        ["restore", str(tmp_path / "out"), str(tmp_path / "o2")],  # not an archive
        ["archive", str(source), str(tmp_path / "d4"), "--scheduler", addr, "--workers", "2"],
    ]
    import torch

    if not torch.cuda.is_available():
        cases.append(["archive", str(source), str(tmp_path / "d5"), "--device", "cuda"])
    for argv in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("lvpnet: ") and "Traceback" not in err, (argv, err)


def test_failures_are_recorded_and_the_rest_completes(cluster, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    np.save(src / "good.npy", np.arange(600, dtype=np.int16).reshape(20, 30))
    (src / "bad.npy").write_bytes(b"\x93NUMPY garbage")  # seen from its header: carried whole, named
    (src / "cut.nii.gz").write_bytes(gzip.compress(b"\x5c\x01" + b"\0" * 100))
    nib.save(nib.Nifti1Image(np.arange(4096, dtype=np.int16).reshape(16, 16, 16) % 700, np.eye(4)), src / "f.nii.gz")
    flipped = bytearray((src / "f.nii.gz").read_bytes())
    flipped[len(flipped) // 2] ^= 0x10  # whole length, its CRC wrong: seen only by reading it, a failure
    (src / "f.nii.gz").write_bytes(bytes(flipped))
    data = _local("CT_small.dcm").read_bytes()
    (src / "study").mkdir()
    (src / "study" / "cut.dcm").write_bytes(data[: len(data) // 2])  # pixel data cut short
    shutil.copy(_local("SC_rgb_jpeg_dcmtk.dcm"), src / "study" / "lossy.dcm")  # JPEG baseline
    dest = tmp_path / "dest"
    s = lvpnet.archive(src, dest, scheduler=cluster, codec="fallback")
    # the files cut short or unreadable (DICOM, .npy, NIfTI) and the lossy one are carried as they are, and named
    assert (s["done"], s["failed"]) == (5, 1)
    assert sorted(c["file"] for c in s["damaged_carried"]) == ["bad.npy", "cut.nii.gz", "study/cut.dcm"]
    assert s["lossy_carried"] == ["study/lossy.dcm"]
    assert "1 lossy DICOM file (JPEG baseline, say) carried as it is" in format_archive(s)
    reasons = {f["sources"][0]: f["reason"] for f in s["failures"]}
    assert set(reasons) == {"f.nii.gz"} and "CRC check failed" in reasons["f.nii.gz"]
    rows = ledger_rows(dest)
    assert {k: r["state"] for k, r in rows.items() if r["state"] == "failed"}.keys() == {f["item"] for f in s["failures"]}
    assert all(rows[f["item"]]["reason"] == f["reason"] for f in s["failures"])
    assert [p.name for p in dest.rglob("*.lvp")] == ["good.npy.lvp"] and not partials(dest)
    # the failures are tried again on a rerun; what is done is not
    again = lvpnet.archive(src, dest, scheduler=cluster, codec="fallback")
    assert (again["done"], again["skipped"], again["failed"]) == (0, 5, 1)
    out = tmp_path / "out"
    r = lvpnet.restore(dest, out, scheduler=cluster)
    assert (r["done"], r["failed"]) == (5, 1)
    assert tree_files(out).keys() == {"good.npy", "bad.npy", "cut.nii.gz", "study/cut.dcm", "study/lossy.dcm"}
    for rel in ("study/lossy.dcm", "bad.npy", "cut.nii.gz"):
        assert (out / rel).read_bytes() == (src / rel).read_bytes()
    # the broken file removed from SOURCE: the rerun forgets its failure (the archive never held it),
    # so restore stops reporting it; it was "kept" and failed every restore for ever
    (src / "f.nii.gz").unlink()
    s = lvpnet.archive(src, dest, scheduler=cluster, codec="fallback")
    assert s["forgotten"] == ["f.nii.gz.lvp"] and "f.nii.gz.lvp" not in s["not_in_source"]
    assert "dropped from the ledger (the archive never held them): f.nii.gz.lvp" in format_archive(s)
    assert "f.nii.gz.lvp" not in ledger_rows(dest)
    r = lvpnet.restore(dest, tmp_path / "out2", scheduler=cluster)
    assert (r["done"], r["failed"]) == (5, 0)


def test_changed_source_is_redone_and_touched_one_adopted(cluster, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        np.save(src / f"v{i}.npy", np.full((2, 16, 16), i, np.int16))
    dest = tmp_path / "dest"
    assert lvpnet.archive(src, dest, scheduler=cluster, codec="fallback")["done"] == 3
    before = {p.name: p.stat().st_ino for p in dest.glob("*.lvp")}
    np.save(src / "v0.npy", np.full((2, 16, 16), 9, np.int16))  # new content
    os.utime(src / "v1.npy", ns=(1, 1))  # same bytes, another modification time
    s = lvpnet.archive(src, dest, scheduler=cluster, codec="fallback")
    assert (s["done"], s["adopted"], s["skipped"], s["failed"]) == (2, 1, 1, 0)
    rows = ledger_rows(dest)
    assert [rows[f"v{i}.npy.lvp"]["encodes"] for i in range(3)] == [2, 1, 1]
    after = {p.name: p.stat().st_ino for p in dest.glob("*.lvp")}
    assert after["v0.npy.lvp"] != before["v0.npy.lvp"]  # rewritten
    assert after["v1.npy.lvp"] == before["v1.npy.lvp"] and after["v2.npy.lvp"] == before["v2.npy.lvp"]
    # the client killed after an output was renamed into place but before the ledger recorded it
    db = sqlite3.connect(dest / LEDGER_NAME)
    with db:
        db.execute("UPDATE items SET state = 'pending' WHERE key = 'v2.npy.lvp'")
    db.close()
    s = lvpnet.archive(src, dest, scheduler=cluster, codec="fallback")
    assert (s["done"], s["adopted"], s["skipped"]) == (1, 1, 2)
    assert (dest / "v2.npy.lvp").stat().st_ino == before["v2.npy.lvp"]
    assert ledger_rows(dest)["v2.npy.lvp"]["state"] == "done"
    out = tmp_path / "out"
    lvpnet.restore(dest, out, scheduler=cluster)
    assert_restored(src, out)


def test_a_source_broken_after_archiving_keeps_its_archived_version(cluster, tmp_path):
    """A file that becomes unreadable in SOURCE after a good archive fails to archive again; the
    version the archive holds stays restorable (it was not replaced: writes are atomic), and says so."""
    src = tmp_path / "src"
    src.mkdir()
    good = np.arange(64, dtype=np.int16).reshape(8, 8)
    np.save(src / "v.npy", good)
    np.save(src / "w.npy", good + 1)
    dest = tmp_path / "dest"
    assert lvpnet.archive(src, dest, scheduler=cluster, codec="fallback")["done"] == 2
    saved = {rel: p.read_bytes() for rel, p in tree_files(src).items()}
    (src / "v.npy").write_text("garbage\n")
    s = lvpnet.archive(src, dest, scheduler=cluster, codec="fallback")
    assert (s["done"], s["failed"], s["kept_after_failure"]) == (0, 1, ["v.npy.lvp"])
    assert "failed to archive again and keep the version archived before" in format_archive(s)
    r = lvpnet.restore(dest, tmp_path / "out", scheduler=cluster)
    assert r["failed"] == 0
    assert {rel: p.read_bytes() for rel, p in tree_files(tmp_path / "out").items()} == saved
    (src / "v.npy").unlink()  # and once the broken file is gone, the archived one is still kept
    s = lvpnet.archive(src, dest, scheduler=cluster, codec="fallback")
    assert s["failed"] == 0 and s["not_in_source"] == ["v.npy.lvp"]


def test_regrouped_series_restores_from_the_newest_items(cluster, tmp_path):
    """A series archived whole, then split (one file changed size): the old .lvp stays in DEST and
    the ledger, and restore takes every file from the newer items."""
    src = tmp_path / "src"
    _series(_local("CT_small.dcm"), [src / "s"], 3, "1.2.826.0.1.3680043.9.7.9")
    dest = tmp_path / "dest"
    assert lvpnet.archive(src, dest, scheduler=cluster, codec="fallback")["done"] == 1
    ds = _dcm(_local("MR_small.dcm"))
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.9.7.9"
    ds.save_as(src / "s" / "slice02.dcm")
    s = lvpnet.archive(src, dest, scheduler=cluster, codec="fallback")
    assert (s["done"], s["failed"]) == (2, 0)
    assert s["not_in_source"] == ["s/series-1.2.826.0.1.3680043.9.7.9.lvp"]
    assert (dest / "s/series-1.2.826.0.1.3680043.9.7.9.lvp").exists()  # nothing in DEST is deleted
    r = lvpnet.restore(dest, tmp_path / "out", scheduler=cluster)
    assert (r["done"], r["skipped"], r["failed"]) == (2, 1, 0)
    assert r["superseded"] == ["s/series-1.2.826.0.1.3680043.9.7.9.lvp"]
    assert_restored(src, tmp_path / "out")
    # the newer item of the two unchanged slices damaged beyond reading: they were lost with it, though the older
    # item holds them, the same to the byte (SHA-256); they come from it now, and the damage is still said
    newer = next(p for p in dest.rglob("*.lvp") if p.name != "series-1.2.826.0.1.3680043.9.7.9.lvp"
                 and lvpnet.open(p).shape[0] == 2)
    newer.write_bytes(newer.read_bytes()[:-100])
    r = lvpnet.restore(dest, tmp_path / "out2", scheduler=cluster)
    assert r["failed"] == 1 and r["from_older_items"] == ["s/slice00.dcm", "s/slice01.dcm"]
    assert "2 files of damaged items restored from older items" in format_restore(r)
    assert_restored(src, tmp_path / "out2")


def test_files_deleted_from_source_stay_restorable(cluster, tmp_path):
    """Archive, delete originals (what archiving is for), run again: nothing the archive holds is
    dropped or rewritten without them; a series that also changed is reported, not rewritten."""
    src = tmp_path / "src"
    _series(_local("CT_small.dcm"), [src / "s"], 3, "1.2.826.0.1.3680043.9.7.8")
    np.save(src / "v.npy", np.arange(64, dtype=np.int16).reshape(8, 8))
    dest = tmp_path / "dest"
    lvpnet.archive(src, dest, scheduler=cluster, codec="fallback")
    before = (dest / "s/series-1.2.826.0.1.3680043.9.7.8.lvp").stat().st_ino
    saved = {rel: p.read_bytes() for rel, p in tree_files(src).items()}
    (src / "s" / "slice02.dcm").unlink()
    (src / "v.npy").unlink()
    s = lvpnet.archive(src, dest, scheduler=cluster, codec="fallback")
    assert (s["done"], s["skipped"], s["failed"]) == (0, 1, 0)
    assert s["kept_with_deleted_sources"] == ["s/series-1.2.826.0.1.3680043.9.7.8.lvp"]
    assert s["not_in_source"] == ["v.npy.lvp"]
    text = format_archive(s)  # the text summary names them too
    assert "(the archive still restores them): s/series-1.2.826.0.1.3680043.9.7.8.lvp" in text
    assert "holds it): v.npy.lvp" in text
    # the archive's size line counts every item it holds, those kept for deleted sources too
    assert s["archive_bytes_out"] == sum(p.stat().st_size for p in dest.rglob("*.lvp"))
    assert (dest / "s/series-1.2.826.0.1.3680043.9.7.8.lvp").stat().st_ino == before
    r = lvpnet.restore(dest, tmp_path / "out", scheduler=cluster)
    assert r["failed"] == 0
    assert {rel: p.read_bytes() for rel, p in tree_files(tmp_path / "out").items()} == saved
    ds = _dcm(src / "s" / "slice00.dcm")  # now a remaining file changes too
    ds.InstanceNumber = 7
    ds.save_as(src / "s" / "slice00.dcm")
    s = lvpnet.archive(src, dest, scheduler=cluster, codec="fallback")
    assert s["failed"] == 1 and "deleted (or renamed) in SOURCE" in s["failures"][0]["reason"]
    assert (dest / "s/series-1.2.826.0.1.3680043.9.7.8.lvp").stat().st_ino == before
    # doing what the message says (the .lvp moved out of DEST) archives the series anew from SOURCE;
    # reruns kept repeating the message and restore found the series missing
    (dest / "s/series-1.2.826.0.1.3680043.9.7.8.lvp").rename(tmp_path / "kept-aside.lvp")
    s = lvpnet.archive(src, dest, scheduler=cluster, codec="fallback")
    assert (s["done"], s["failed"]) == (1, 0)
    r = lvpnet.restore(dest, tmp_path / "out2", scheduler=cluster)
    assert r["failed"] == 0 and sorted(tree_files(tmp_path / "out2" / "s")) == ["slice00.dcm", "slice01.dcm"]


def test_damaged_lvp_is_reported_and_the_rest_restored(cluster, source, tmp_path):
    dest = tmp_path / "dest"
    lvpnet.archive(source, dest, scheduler=cluster, codec="fallback")
    good = (dest / "vol.npy.lvp").read_bytes()
    _flip(dest / "vol.npy.lvp")
    out = tmp_path / "out"
    r = lvpnet.restore(dest, out, scheduler=cluster)
    assert r["failed"] == 1 and "SHA-256 differs from the ledger" in r["failures"][0]["reason"]
    assert_restored(source, out, missing={"vol.npy"})
    # the failure fixed (here the .lvp put back; a disk that was full, say), the same command into the same OUT
    # finishes the restore: it was refused, OUT being no longer empty
    (dest / "vol.npy.lvp").write_bytes(good)
    assert (tmp_path / ".out.lvpnet-restoring").exists()
    assert lvpnet.restore(dest, out, scheduler=cluster)["failed"] == 0
    assert_restored(source, out)
    assert not (tmp_path / ".out.lvpnet-restoring").exists()


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_check_rearchives_damaged_outputs_and_names_those_it_cannot(cluster, tmp_path):
    """A bit flipped in DEST: a plain rerun cannot see it (same size, sources unchanged); with
    ``check`` the file is read, found damaged and coded again from SOURCE, whether a .lvp or a
    copied file; one whose sources SOURCE no longer has is named as failed, never replaced."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        np.save(src / f"v{i}.npy", np.full((2, 16, 16), i, np.int16))
    (src / "notes.txt").write_text("ward 4")
    dest = tmp_path / "dest"
    assert lvpnet.archive(src, dest, scheduler=cluster, codec="fallback")["done"] == 4
    _flip(dest / "v0.npy.lvp")
    _flip(dest / "notes.txt")
    s = lvpnet.archive(src, dest, scheduler=cluster, codec="fallback")
    assert (s["done"], s["skipped"], s["checked"]) == (0, 4, None)  # a plain rerun only looks at sizes
    s = lvpnet.archive(src, dest, scheduler=cluster, codec="fallback", check=True)
    assert (s["done"], s["skipped"], s["failed"], s["checked"]) == (2, 2, 0, 4)
    assert s["damaged"] == s["repaired"] == ["notes.txt", "v0.npy.lvp"]
    assert "2 damaged, archived again from SOURCE: notes.txt, v0.npy.lvp" in format_archive(s)
    assert lvpnet.restore(dest, tmp_path / "out", scheduler=cluster)["failed"] == 0
    assert_restored(src, tmp_path / "out")
    s = lvpnet.archive(src, dest, scheduler=cluster, codec="fallback", check=True)
    assert (s["done"], s["skipped"], s["damaged"]) == (0, 4, [])
    assert "checked 4 archived files against the ledger: all intact" in format_archive(s)
    (src / "v1.npy").unlink()  # archived, then deleted from SOURCE: only the archive holds it
    good = (dest / "v1.npy.lvp").read_bytes()
    _flip(dest / "v1.npy.lvp")
    damaged = (dest / "v1.npy.lvp").read_bytes()
    s = lvpnet.archive(src, dest, scheduler=cluster, codec="fallback", check=True)
    assert (s["done"], s["failed"], s["damaged"], s["repaired"]) == (0, 1, ["v1.npy.lvp"], [])
    assert "SOURCE no longer has its files" in s["failures"][0]["reason"]
    assert "1 damaged, which SOURCE cannot give again (failed, below)" in format_archive(s)
    assert (dest / "v1.npy.lvp").read_bytes() == damaged  # left for restore to report, not replaced
    # a plain rerun (which reads no output) said "failed 0" and that the archive still restores it
    s = lvpnet.archive(src, dest, scheduler=cluster, codec="fallback")
    assert s["failed"] == 1 and "found by an earlier --check" in s["failures"][0]["reason"]
    assert s["failures"][0]["item"] == "v1.npy.lvp" and "v1.npy.lvp" not in format_archive(s).split("failed:")[0]
    (dest / "v1.npy.lvp").write_bytes(good)  # a good copy put back from a backup: a check clears it
    s = lvpnet.archive(src, dest, scheduler=cluster, codec="fallback", check=True)
    assert (s["failed"], s["damaged"]) == (0, [])
    assert lvpnet.archive(src, dest, scheduler=cluster, codec="fallback")["failed"] == 0


def test_restore_into_an_interrupted_restore(cluster, source, tmp_path):
    """OUT of a restore that was killed (its marker beside it) is written again, file by file."""
    dest, out = tmp_path / "dest", tmp_path / "out"
    lvpnet.archive(source, dest, scheduler=cluster, codec="fallback")
    (out / "study1").mkdir(parents=True)
    (out / "study1" / "notes.txt").write_text("half")  # as a killed restore could not leave it, but still
    (tmp_path / ".out.lvpnet-restoring").touch()
    r = lvpnet.restore(dest, out, scheduler=cluster)
    assert r["failed"] == 0
    assert_restored(source, out)
    assert not (tmp_path / ".out.lvpnet-restoring").exists()


def test_an_interrupted_restores_marker_lets_nothing_else_be_written_into(cluster, source, tmp_path):
    """The marker of a killed restore is no licence to write into a folder made anew in its place (a
    user's files), nor to mix another archive into it; a marker whose OUT is gone is forgotten."""
    from lvpnet.errors import InputError

    dest, other, out = tmp_path / "dest", tmp_path / "other", tmp_path / "out"
    lvpnet.archive(source, dest, scheduler=cluster, codec="fallback")
    (tmp_path / "src2").mkdir()
    np.save(tmp_path / "src2" / "x.npy", np.zeros((4, 4), np.int16))
    lvpnet.archive(tmp_path / "src2", other, scheduler=cluster, codec="fallback")
    marker = tmp_path / ".out.lvpnet-restoring"
    out.mkdir()
    (out / "my notes.txt").write_text("mine")
    marker.touch()
    with pytest.raises(InputError, match="my notes.txt, which this archive does not restore"):
        lvpnet.restore(dest, out, scheduler=cluster)
    assert [p.name for p in out.iterdir()] == ["my notes.txt"]
    (out / "my notes.txt").unlink()
    marker.write_text(str(other.resolve()))  # a restore of the other archive was interrupted here
    with pytest.raises(InputError, match="interrupted restore of another archive"):
        lvpnet.restore(dest, out, scheduler=cluster)
    out.rmdir()  # OUT removed: the marker is stale, and a new restore goes ahead
    r = lvpnet.restore(dest, out, scheduler=cluster)
    assert r["failed"] == 0 and not marker.exists()
    assert_restored(source, out)


def test_default_learned_codec_on_the_workers(cluster, tmp_path):
    """The one learned case: the default codec (the shipped weights) loads and codes on a worker."""
    from lvpnet import codecs

    if "lvpnet" not in codecs.available():
        pytest.skip("no learned-codec weights installed")
    src = tmp_path / "src"
    src.mkdir()
    yy, xx = np.mgrid[0:64, 0:64]
    np.save(src / "small.npy", (500 + 200 * np.sin(yy / 5.0) + 100 * np.cos(xx / 7.0)).astype(np.int16))
    s = lvpnet.archive(src, tmp_path / "dest", scheduler=cluster)
    assert (s["done"], s["failed"]) == (1, 0)
    assert sum(lvpnet.open(tmp_path / "dest" / "small.npy.lvp").codec_counts().values()) == 1
    lvpnet.restore(tmp_path / "dest", tmp_path / "out", scheduler=cluster)
    assert_restored(src, tmp_path / "out")


def test_one_worker_per_gpu_each_sees_its_own(monkeypatch):
    """Where PyTorch sees GPUs, the local cluster has one worker per device, each seeing only its own
    (checked here with two pretend GPUs: the workers' environment, not CUDA)."""
    from lvpnet.archiver import engine

    monkeypatch.setattr(engine, "gpu_count", lambda device: 2)
    with engine.connect(None, None, "auto") as (client, n):
        seen = client.run(lambda: os.environ.get("CUDA_VISIBLE_DEVICES"))
    assert n == 2 and sorted(seen.values()) == ["0", "1"]


# ---------------------------------------------------------------- faults


def _slow_tree(root: Path, n: int, slices: int = 6) -> Path:
    """``n`` .npy volumes that take the fallback codec a noticeable time each."""
    root.mkdir()
    yy, xx = np.mgrid[0:256, 0:256]
    rng = np.random.default_rng(3)
    for i in range(n):
        vol = 1000 + 400 * np.sin(yy / 9.0 + i) + 300 * np.cos(xx / 13.0) + rng.normal(0, 20, (slices, 256, 256))
        np.save(root / f"v{i:02d}.npy", vol.astype(np.int16))
    return root


def test_worker_killed_mid_run(cluster, tmp_path):
    src = _slow_tree(tmp_path / "src", 8)
    pids = cluster.run(os.getpid)
    killed = []

    def kill_a_busy_worker(p):
        if killed or p.done < 1:
            return
        busy = [w for w, keys in cluster.processing().items() if keys and w in pids]
        if busy:
            os.kill(pids[busy[0]], signal.SIGKILL)
            killed.append(busy[0])

    dest = tmp_path / "dest"
    s = lvpnet.archive(src, dest, scheduler=cluster, codec="fallback", progress=kill_a_busy_worker)
    assert killed, "no worker was busy to be killed"
    assert (s["done"], s["failed"]) == (8, 0)
    assert not partials(dest)
    assert all(r["state"] == "done" and r["encodes"] == 1 for r in ledger_rows(dest).values())
    cluster.wait_for_workers(2, timeout=60)  # the nanny brings the killed one back
    out = tmp_path / "out"
    lvpnet.restore(dest, out, scheduler=cluster)
    assert_restored(src, out)


def test_command_sigkilled_then_rerun(tmp_path):
    """SIGKILL the command (a local cluster of two workers) mid-run, then run it again: every output
    that was in place is kept as it is (adopted, not coded again), nothing is partial."""
    src = _slow_tree(tmp_path / "src", 12, slices=3)  # a second or so each: killed after two, the rest left
    dest = tmp_path / "dest"
    cmd = [sys.executable, "-m", "lvpnet.cli", "archive", str(src), str(dest), "--workers", "2", "--codec", "fallback"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if (dest / LEDGER_NAME).exists() and sum(r["state"] == "done" for r in ledger_rows(dest).values()) >= 2:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the run finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)  # the command only: its workers notice and go
        proc.wait()
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever of that session is still around
        except ProcessLookupError:
            pass
    time.sleep(1)
    recorded = {k for k, r in ledger_rows(dest).items() if r["state"] == "done"}
    in_place = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in dest.glob("*.lvp") if not PARTIAL.search(p.name)}
    assert recorded <= set(in_place) and len(recorded) < 12

    rerun = subprocess.run(cmd + ["--json"], capture_output=True, text=True, env=env, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    s = json.loads(rerun.stdout)
    assert s["skipped"] == len(recorded)
    assert s["adopted"] == len(set(in_place) - recorded)
    assert s["done"] == 12 - len(recorded) and s["failed"] == 0
    for name, stamp in in_place.items():  # nothing that was in place was written again
        p = dest / name
        assert (p.stat().st_ino, p.stat().st_mtime_ns) == stamp, name
    assert not partials(dest)
    assert all(r["state"] == "done" and r["encodes"] <= 1 for r in ledger_rows(dest).values())
    out = tmp_path / "out"
    assert main(["restore", str(dest), str(out), "--workers", "2"]) == 0
    assert_restored(src, out)


def test_progress_bar_draws_items_bytes_and_time_left():
    from lvpnet.archiver.bar import ArchiveBar, ArchiveProgress

    buf = io.StringIO()
    t = iter([0.0, 10.0, 20.0])
    bar = ArchiveBar(enabled=True, clock=lambda: next(t), stream=buf)
    bar(ArchiveProgress("archive", 0, 4, 0, 0, 4_000_000, 0))
    bar(ArchiveProgress("archive", 1, 4, 1_000_000, 400_000, 4_000_000, 0))
    bar(ArchiveProgress("archive", 4, 4, 4_000_000, 1_600_000, 4_000_000, 1))
    text = buf.getvalue()
    assert "1/4 items, 1.0 MB -> 400.0 kB, 0:30 left" in text
    assert "4/4 items, 4.0 MB -> 1.6 MB, 1 failed" in text and text.endswith("\n")
    buf = io.StringIO()
    bar = ArchiveBar(enabled=True, clock=lambda: 0.0, stream=buf)
    bar(ArchiveProgress("check", 3, 3, 2_000_000, 0, 2_000_000, 1))
    assert "3/3 items, 2.0 MB read, 1 damaged" in buf.getvalue()
    quiet = io.StringIO()
    ArchiveBar(stream=quiet)(ArchiveProgress("archive", 1, 4, 1, 1, 4, 0))  # not a terminal: nothing
    assert quiet.getvalue() == ""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_archive_and_restore_exit_128_plus_the_signal(tmp_path, monkeypatch, capsys, sig):
    """Schedulers tell a termination from a Ctrl-C by the exit code: 128 + the signal, as compress gives."""
    from lvpnet.archiver import run as archiver_run
    from lvpnet.atomic import Interrupted

    def stopped(*a, **k):
        raise Interrupted(sig)

    monkeypatch.setattr(archiver_run, "archive", stopped)
    monkeypatch.setattr(archiver_run, "restore", stopped)
    (tmp_path / "src").mkdir()
    for argv in (["archive", str(tmp_path / "src"), str(tmp_path / "dest")], ["restore", str(tmp_path), str(tmp_path / "o")]):
        assert main(argv) == 128 + sig
        assert f"lvpnet: interrupted ({signal.Signals(sig).name}); " in capsys.readouterr().err


def test_restore_writes_nothing_in_dest(cluster, tmp_path, monkeypatch):
    """An archive on read-only storage (a snapshot, WORM media) restores: the ledger is opened read-only
    and a lock file that cannot be created is done without (nothing can change such a DEST)."""
    import errno

    from lvpnet.archiver import ledger as ledger_mod
    from lvpnet.archiver.walk import LOCK_NAME

    src, dest = tmp_path / "src", tmp_path / "dest"
    src.mkdir()
    np.save(src / "a.npy", np.arange(64, dtype=np.int16).reshape(8, 8))
    lvpnet.archive(src, dest, scheduler=cluster, codec="fallback")
    (dest / LOCK_NAME).unlink()
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in dest.iterdir()}
    real_open = os.open

    def read_only_fs(path, flags, *a):
        if flags & os.O_CREAT:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *a)

    monkeypatch.setattr(ledger_mod.os, "open", read_only_fs)
    r = lvpnet.restore(dest, tmp_path / "out", scheduler=cluster)
    assert r["failed"] == 0 and (tmp_path / "out" / "a.npy").read_bytes() == (src / "a.npy").read_bytes()
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in dest.iterdir()} == before


def test_the_memory_limit_reaches_the_workers(cluster, tmp_path, capsys):
    """restore had no --max-memory, and a limit set in Python never reached the workers: a genuine mostly
    empty mask (7 kB for 272 MB) could be archived but never restored. Here the limit is set low enough to
    refuse a small volume in the workers, and then high enough to restore it."""
    src = tmp_path / "src"
    src.mkdir()
    np.save(src / "mask.npy", np.zeros((4, 64, 64), np.uint8))
    dest = tmp_path / "dest"
    addr = cluster.scheduler.address
    assert main(["archive", str(src), str(dest), "--scheduler", addr, "--codec", "fallback"]) == 0
    capsys.readouterr()
    assert main(["restore", str(dest), str(tmp_path / "low"), "--scheduler", addr, "--max-memory", "1K"]) == 1
    said = capsys.readouterr()
    assert "more than the limit set" in said.out + said.err, said
    assert main(["restore", str(dest), str(tmp_path / "ok"), "--scheduler", addr, "--max-memory", "1G"]) == 0
    assert np.array_equal(np.load(tmp_path / "ok" / "mask.npy"), np.zeros((4, 64, 64), np.uint8))


def test_a_dicom_file_whose_pixels_lvpnet_does_not_code_is_carried(cluster, tmp_path):
    """A 1-bit DICOM SEG beside its CT failed as an item, and restore gave back the tree without it
    (exit 1): it is carried as it is, as a DICOM object without pixels is, and the tree comes back whole."""
    src, dest, out = tmp_path / "src", tmp_path / "dest", tmp_path / "out"
    (src / "study").mkdir(parents=True)
    shutil.copy(_local("CT_small.dcm"), src / "study" / "ct.dcm")
    shutil.copy(_local("liver_1frame.dcm"), src / "study" / "seg.dcm")  # BitsAllocated 1
    keys = {it.key: it.kind for it in walk(src).items}
    assert keys["study/seg.dcm"] == "other"
    s = lvpnet.archive(src, dest, scheduler=cluster, codec="fallback")
    assert s["failed"] == 0 and s["done"] == 2
    r = lvpnet.restore(dest, out, scheduler=cluster)
    assert r["failed"] == 0
    assert_restored(src, out)


def test_a_hint_cached_before_carries_a_file_whose_pixels_lvpnet_does_not_code(tmp_path, monkeypatch):
    """An archive's ledger remembers each unchanged file's header as a hint; one that cached a 1-bit SEG
    as a series member (before such files were carried) is carried now too, without reading it again."""
    import lvpnet.archiver.walk as walk_module

    shutil.copy(_local("liver_1frame.dcm"), tmp_path / "seg.dcm")
    st = (tmp_path / "seg.dcm").stat()
    cached = {"seg.dcm": (st.st_size, st.st_mtime_ns, "image 1 512/512/1/1/0/MONOCHROME2 1.2.3.4")}
    real = walk_module._dicom_header
    monkeypatch.setattr(walk_module, "_dicom_header", lambda path, name: pytest.fail("read again"))
    assert [(it.key, it.kind) for it in walk(tmp_path, cached).items] == [("seg.dcm", "other")]
    # a hint of the form written before hints said whether a file is lossy ("uid ...") is read again, once
    read = []
    monkeypatch.setattr(walk_module, "_dicom_header", lambda path, name: read.append(name) or real(path, name))
    cached = {"seg.dcm": (st.st_size, st.st_mtime_ns, "uid 1 512/512/1/1/0/MONOCHROME2 1.2.3.4")}
    assert [(it.key, it.kind) for it in walk(tmp_path, cached).items] == [("seg.dcm", "other")] and read == ["seg.dcm"]


def test_an_archive_killed_inside_a_transaction_still_restores_without_writing_dest(cluster, tmp_path):
    """A SIGKILL inside the ledger's per-item transaction leaves its rollback journal; restore opens the
    ledger read-only, which cannot roll it back, and said 'not a readable lvpnet ledger (attempt to write a
    readonly database)' until an archive run (which needs SOURCE) had rolled it back."""
    src, dest, out = tmp_path / "src", tmp_path / "dest", tmp_path / "out"
    src.mkdir()
    np.save(src / "a.npy", np.arange(64, dtype=np.uint16).reshape(8, 8))
    (src / "notes.txt").write_text("kept")
    assert lvpnet.archive(src, dest, scheduler=cluster, codec="fallback")["failed"] == 0
    ledger = dest / "lvpnet-ledger.sqlite"
    # a small page cache spills the transaction's pages into the file, the journal first: what a kill
    # mid-transaction leaves on a real archive's larger ledger
    killed = (f"import os, sqlite3; db = sqlite3.connect({str(ledger)!r}, isolation_level=None); "
              "db.execute('PRAGMA cache_size=1'); db.execute('BEGIN IMMEDIATE'); "
              "db.execute(\"UPDATE items SET state = 'failed', reason = hex(zeroblob(3000))\"); "
              "db.execute('DELETE FROM sources'); os._exit(9)")
    subprocess.run([sys.executable, "-c", killed])
    journal = dest / "lvpnet-ledger.sqlite-journal"
    assert journal.stat().st_size > 0  # hot: the transaction never ended
    before = {p.name: p.read_bytes() for p in (ledger, journal)}
    r = lvpnet.restore(dest, out, scheduler=cluster)
    assert r["failed"] == 0 and r["done"] == 2  # the ledger as it was after its last recorded item
    assert_restored(src, out)
    assert {p.name: p.read_bytes() for p in (ledger, journal)} == before  # nothing written in DEST


def test_a_valid_npy_that_lvpnet_does_not_code_is_carried(cluster, tmp_path):
    """A 1-D .npy (labels, b-values), a complex or an empty one failed as an item for ever, and the
    restored tree lacked it; a .npy that does not parse still fails, saying why."""
    src, dest, out = tmp_path / "src", tmp_path / "dest", tmp_path / "out"
    src.mkdir()
    np.save(src / "image.npy", np.arange(64, dtype=np.int16).reshape(8, 8))
    np.save(src / "bvals.npy", np.arange(10))
    np.save(src / "kspace.npy", np.zeros((4, 4), np.complex64))
    np.save(src / "none.npy", np.zeros((0, 4, 4), np.uint8))
    np.save(src / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    kinds = {it.key: it.kind for it in walk(src).items}
    assert kinds == {"image.npy.lvp": "numpy", "bvals.npy": "other", "kspace.npy": "other", "none.npy": "other",
                     "objects.npy": "other"}
    (src / "broken.npy").write_bytes(b"\x93NUMPY\x01\x00garbage")  # carried whole, named (it failed for ever)
    s = lvpnet.archive(src, dest, scheduler=cluster, codec="fallback")
    assert s["failed"] == 0 and [c["file"] for c in s["damaged_carried"]] == ["broken.npy"]
    lvpnet.restore(dest, out, scheduler=cluster)
    assert_restored(src, out)


def test_a_full_out_disk_names_the_output_of_a_carried_file(tmp_path, monkeypatch):
    """shutil.copyfile's error on a full disk names the file it reads (in DEST): 'DEST/vol/README: No
    space left on device' read as if DEST were full."""
    import errno

    from lvpnet.archiver import tasks

    archived = tmp_path / "dest" / "README"
    archived.parent.mkdir()
    archived.write_text("notes")

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device", str(src), None, str(dst))

    monkeypatch.setattr(tasks.shutil, "copyfile", full)
    target = tmp_path / "out" / "README"
    with pytest.raises(OSError) as got:
        tasks._restore_copy(archived, target, "0" * 64)
    assert tasks._describe(got.value) == f"{target}: No space left on device"
    assert list(target.parent.iterdir()) == []  # no temporary left


def test_a_dest_that_archived_nothing_yet_takes_another_source(cluster, tmp_path):
    """A first run that failed before any item (a scheduler it could not reach) bound DEST to that SOURCE
    for ever: 'is the archive of SRC, not of SRC3; choose another DEST', with nothing in it."""
    from lvpnet.archiver.ledger import Ledger

    dest, other, third = tmp_path / "dest", tmp_path / "other", tmp_path / "third"
    for folder in (dest, other, third):
        folder.mkdir()
    (other / "notes.txt").write_text("kept")
    ledger = Ledger(dest, create=True)
    ledger.set_meta("source", str(tmp_path / "first"))  # what the failed first run recorded
    ledger.close()
    assert lvpnet.archive(other, dest, scheduler=cluster, codec="fallback")["done"] == 1
    with pytest.raises(lvpnet.InputError, match="is the archive of"):  # now it holds something: bound
        lvpnet.archive(third, dest, scheduler=cluster, codec="fallback")


def test_damaged_dicom_files_are_carried_whole_and_named(cluster, tmp_path):
    """A damaged DICOM file failed as an item, and one in a series kept the whole series out of the archive
    (the other slices were not archived either; restore gave nothing of the series). Now every file comes
    back byte for byte and the summary names the damaged ones. Seen from the header, each carried as it is:
    a copy cut short, a pixel data element shorter than its image, a header pydicom cannot read, an image
    header whose pixel data is gone. Seen only when the series is read (frames that do not decode): carried
    whole inside the series' .lvp."""
    from pydicom.uid import RLELossless
    from test_dicom_archive import write_image

    src, dest, out = tmp_path / "src", tmp_path / "dest", tmp_path / "out"
    _series(_local("CT_small.dcm"), [src / "s"], 5, "1.2.826.0.1.3680043.8.498.77")
    cut = src / "s" / "slice03.dcm"
    cut.write_bytes(cut.read_bytes()[:-5000])  # a copy cut short
    short = _dcm(src / "s" / "slice02.dcm")
    short.PixelData = short.PixelData[:-5000]  # a well-formed element, too short for the image
    short.save_as(src / "s" / "slice02.dcm")
    (src / "lone").mkdir()
    shutil.copy(_local("badVR.dcm"), src / "lone" / "noise.dcm")  # NumberOfFrames '1A'
    ct = _local("CT_small.dcm").read_bytes()
    (src / "lone" / "head.dcm").write_bytes(ct[: ct.rindex(b"\xe0\x7f\x10\x00") - 10])  # cut before its pixels
    (src / "lone" / "early.dcm").write_bytes(ct[:600])  # cut before its Rows: was carried as a file without pixels
    rng = np.random.default_rng(2)
    for i in range(2):
        write_image(src / "rle" / f"im{i}.dcm", rng.integers(0, 900, (1, 8, 8), dtype=np.uint16),
                    series_uid="1.2.3.9", instance=i + 1, position=float(i))
    write_image(src / "rle" / "im2.dcm", rng.integers(0, 900, (1, 8, 8), dtype=np.uint16), ts=RLELossless,
                series_uid="1.2.3.9", instance=3, position=2.0, codestreams=[b"\x09" * 70])  # frames that do not decode
    s = lvpnet.archive(src, dest, scheduler=cluster, codec="fallback")
    assert s["failed"] == 0 and s["done"] == 7  # two series, and five damaged files on their own
    reasons = {c["file"]: c["reason"] for c in s["damaged_carried"]}
    assert set(reasons) == {"s/slice02.dcm", "s/slice03.dcm", "lone/noise.dcm", "lone/head.dcm", "lone/early.dcm",
                            "rle/im2.dcm"}
    assert "without its pixel data" in reasons["lone/early.dcm"]
    assert "cut short (" in reasons["s/slice03.dcm"] and "of the 32,768 bytes its image needs" in reasons["s/slice02.dcm"]
    assert "header cannot be read" in reasons["lone/noise.dcm"] and "without its pixel data" in reasons["lone/head.dcm"]
    said = format_archive(s)
    assert "damaged DICOM files, carried whole" in said and all(name in said for name in reasons)
    f = lvpnet.open(dest / "s" / "series-1.2.826.0.1.3680043.8.498.77.lvp")
    assert f.shape[0] == 3 and f.codec_counts() == {"fallback": 3}
    r = lvpnet.restore(dest, out, scheduler=cluster)
    assert r["failed"] == 0
    assert_restored(src, out)
    # a rerun codes nothing again and still names the files the walk sees as damaged
    again = lvpnet.archive(src, dest, scheduler=cluster, codec="fallback")
    assert (again["done"], again["skipped"], again["failed"]) == (0, 7, 0)
    assert {c["file"] for c in again["damaged_carried"]} == set(reasons) - {"rle/im2.dcm"}
    # a ledger written before a file cut ahead of its Rows was told from one without pixels ("no pixels" for
    # both): that file's header is read again, once, and it is named among the damaged
    import sqlite3

    with sqlite3.connect(dest / "lvpnet-ledger.sqlite") as db:
        db.execute("UPDATE sources SET hint = 'no pixels' WHERE path = 'lone/early.dcm'")
    again = lvpnet.archive(src, dest, scheduler=cluster, codec="fallback")
    assert "lone/early.dcm" in {c["file"] for c in again["damaged_carried"]}

def test_a_damaged_series_restores_every_file_whose_slices_are_intact(cluster, tmp_path):
    """One bit flipped in a series' .lvp lost every file of the series on restore (the item failed whole):
    after a migration, with SOURCE gone, 24 good files of 25 were lost with the one. The files whose
    slices decode are restored, each checked against its own SHA-256; the damaged ones are named."""
    src, dest, out = tmp_path / "src", tmp_path / "dest", tmp_path / "out"
    _series(_local("CT_small.dcm"), [src / "s"], 6, "1.2.826.0.1.3680043.8.498.78")
    s = lvpnet.archive(src, dest, scheduler=cluster, codec="fallback")
    assert s["done"] == 1
    (lvp,) = dest.rglob("*.lvp")
    f = lvpnet.open(lvp)
    rec = f._reader.records[3]  # slice 3's chunk (each slice of a fallback file stands alone)
    good = lvp.read_bytes()
    data = bytearray(good)
    data[rec.offset + rec.length // 2] ^= 0x10
    lvp.write_bytes(bytes(data))
    r = lvpnet.restore(dest, out, scheduler=cluster)
    assert r["failed"] == 1
    reason = r["failures"][0]["reason"]
    assert "1 of its 6 files cannot be restored (s/slice03.dcm)" in reason and "the other 5 were restored" in reason
    assert_restored(src, out, missing={"s/slice03.dcm"})
    assert r["files"] == 5  # counted, though the item failed
    # a damaged file record (its blob) loses that file only, whose name the archive's list of files gives
    lvp.write_bytes(good)
    head = f.header
    name = head["source"]["metadata"]["dicom"]["archive"]["files"][4]["name"]
    blob = head["blobs"][4]
    data = bytearray(good)
    data[blob["offset"] + blob["length"] - 3] ^= 0x10
    lvp.write_bytes(bytes(data))
    out2 = tmp_path / "out2"
    r = lvpnet.restore(dest, out2, scheduler=cluster)
    assert r["failed"] == 1 and f"1 of its 6 files cannot be restored (s/{name})" in r["failures"][0]["reason"]
    assert_restored(src, out2, missing={f"s/{name}"})
    # a byte flipped in the header (its checksum fails) lost all six files, every one of them intact: each is
    # checked against its own SHA-256, so they are restored, and the .lvp is still said to be damaged
    import json
    import struct

    from lvpnet.container import TRAILER

    h_off = struct.unpack_from("<Q", good, len(good) - TRAILER.size)[0]
    at = good.index(json.dumps(head["source"]["metadata"]["dicom"]["archive"]["files"][0]["name"]).encode(), h_off)
    for offset in (at + 2, h_off + 1):  # inside a file's name in the list, then the header's opening brace
        data = bytearray(good)
        data[offset] ^= 0x01
        lvp.write_bytes(bytes(data))
        out3 = tmp_path / f"out3-{offset}"
        r = lvpnet.restore(dest, out3, scheduler=cluster)
        assert r["failed"] == 1
        if offset == h_off + 1:  # a header that no longer parses: nothing can be read, said
            assert "damaged: unreadable header" in r["failures"][0]["reason"]
            continue
        assert "header checksum mismatch" in r["failures"][0]["reason"]
        assert "6 of its files were restored, each matching its SHA-256" in r["failures"][0]["reason"]
        assert_restored(src, out3)
    lvp.write_bytes(good)


def test_lossy_dicom_files_are_carried_as_they_are_unless_their_values_are_asked_for(cluster, tmp_path):
    """A JPEG-baseline file (secondary captures, ultrasound) failed as 'lossy source' unless
    --allow-lossy-source, which decoded it and stored the values: 9,844 bytes grew to 527,296 on restore.
    It is carried as it is now, restored byte for byte; --allow-lossy-source still codes its values."""
    src = tmp_path / "src"
    (src / "sc").mkdir(parents=True)
    shutil.copy(_local("SC_rgb_jpeg_dcmtk.dcm"), src / "sc" / "capture.dcm")
    shutil.copy(_local("CT_small.dcm"), src / "sc" / "ct.dcm")
    s = lvpnet.archive(src, tmp_path / "dest", scheduler=cluster, codec="fallback")
    assert (s["done"], s["failed"], s["lossy_carried"]) == (2, 0, ["sc/capture.dcm"])
    assert (tmp_path / "dest" / "sc" / "capture.dcm").read_bytes() == (src / "sc" / "capture.dcm").read_bytes()
    assert lvpnet.restore(tmp_path / "dest", tmp_path / "out", scheduler=cluster)["failed"] == 0
    assert_restored(src, tmp_path / "out")
    s = lvpnet.archive(src, tmp_path / "dest2", scheduler=cluster, codec="fallback", allow_lossy_source=True)
    assert (s["done"], s["failed"], s["lossy_carried"]) == (2, 0, [])
    assert len(list((tmp_path / "dest2").rglob("*.lvp"))) == 2  # the capture's decoded values coded too


def test_a_dicom_file_that_cannot_be_opened_is_read_again_next_run(tmp_path, monkeypatch):
    """A file the walk could not open (permissions) was taken for a damaged DICOM file, and that verdict was
    kept in the ledger: once readable again it stayed carried whole instead of joining its series. It is an
    other item now (its copy fails, saying why) with nothing learnt to keep."""
    import lvpnet.archiver.walk as walk_module

    shutil.copy(_local("MR_small.dcm"), tmp_path / "a.dcm")
    real_open = open
    monkeypatch.setattr(walk_module, "open", lambda p, *a, **k: (_ for _ in ()).throw(PermissionError(13, "denied"))
                        if str(p).endswith("a.dcm") else real_open(p, *a, **k), raising=False)
    plan = walk(tmp_path)
    (item,) = plan.items
    assert item.kind == "other" and item.sources[0].hint is None and plan.damaged == []


def test_a_lossy_jpeg2000_only_its_codestream_shows_is_carried_whole(cluster, tmp_path):
    """A JPEG 2000 file coded with the irreversible wavelet under a header that does not say lossy failed its
    whole series ('lossy source'); it is kept whole in the series' .lvp, named, restored byte for byte."""
    import imagecodecs
    from pydicom.uid import JPEG2000
    from test_dicom_archive import write_image

    rng = np.random.default_rng(5)
    src = tmp_path / "src"
    frames = [rng.integers(0, 4096, size=(1, 16, 16), dtype=np.uint16) for _ in range(3)]
    for i, a in enumerate(frames[:2]):
        write_image(src / "s" / f"im{i}.dcm", a, bits_stored=12, instance=i + 1, position=float(i))
    code = imagecodecs.jpeg2k_encode(frames[2][0], level=40, reversible=False, codecformat=imagecodecs.JPEG2K.CODEC.J2K)
    write_image(src / "s" / "im2.dcm", frames[2], ts=JPEG2000, bits_stored=12, instance=3, position=2.0,
                codestreams=[code])
    s = lvpnet.archive(src, tmp_path / "dest", scheduler=cluster, codec="fallback")
    assert (s["done"], s["failed"], s["lossy_carried"]) == (1, 0, ["s/im2.dcm"])
    assert s["damaged_carried"] == []
    assert lvpnet.restore(tmp_path / "dest", tmp_path / "out", scheduler=cluster)["failed"] == 0
    assert_restored(src, tmp_path / "out")


def test_restore_after_a_cut_short_archive_says_so_in_one_line():
    """Restore after an archive run was cut short printed one "never archived" line per item (thousands for a
    large tree); one line now, with the first names (--json still lists every one)."""
    never = [{"item": f"v{i:02d}.npy.lvp", "sources": [f"v{i:02d}.npy"],
              "reason": "not in the archive: never archived (run lvpnet archive again)"} for i in range(12)]
    bad = {"item": "x.lvp", "sources": ["x"], "reason": "x.lvp: damaged (its SHA-256 differs from the ledger's)"}
    s = {"dest": "D", "out": "O", "done": 3, "files": 3, "bytes_out": 10, "seconds": 1.0, "failed": 13,
         "failures": never + [bad]}
    said = format_restore(s)
    assert said.count("never archived") == 1
    assert "12 items never archived (the archive run was cut short" in said and "v04.npy.lvp and 7 more" in said
    assert "failed:\n  x.lvp: x.lvp: damaged" in said


def test_a_damaged_output_is_not_adopted_when_a_source_is_touched(cluster, tmp_path):
    """A bit flipped in a series' .lvp, then a source file touched (a copy that did not keep times): the rerun
    adopted the damaged .lvp because its header names the same source bytes, recorded its hash as good, and
    --check then said "all intact". The output is checked before it is adopted: coded again here."""
    src, dest = tmp_path / "src", tmp_path / "dest"
    _series(_local("CT_small.dcm"), [src / "s"], 4, "1.2.826.0.1.3680043.8.498.79")
    lvpnet.archive(src, dest, scheduler=cluster, codec="fallback")
    (lvp,) = dest.rglob("*.lvp")
    rec = lvpnet.open(lvp)._reader.records[2]
    data = bytearray(lvp.read_bytes())
    data[rec.offset + rec.length // 2] ^= 0x04
    lvp.write_bytes(bytes(data))
    os.utime(src / "s" / "slice01.dcm")  # same bytes, a new modification time
    s = lvpnet.archive(src, dest, scheduler=cluster, codec="fallback")
    assert (s["done"], s["adopted"], s["failed"]) == (1, 0, 0)
    assert lvpnet.archive(src, dest, scheduler=cluster, codec="fallback", check=True)["damaged"] == []
    # an intact output whose hash the ledger holds is adopted without decoding it again
    os.utime(src / "s" / "slice02.dcm")
    s = lvpnet.archive(src, dest, scheduler=cluster, codec="fallback")
    assert (s["done"], s["adopted"]) == (1, 1)
    assert lvpnet.restore(dest, tmp_path / "out", scheduler=cluster)["failed"] == 0
    assert_restored(src, tmp_path / "out")


def test_the_walk_calls_no_good_pydicom_test_file_damaged():
    """The walk's damage checks read the pixel element as written (a file that says explicit VR and is implicit,
    a deflated dataset whose bytes are not the file's): of pydicom's bundled files only the two made damaged
    are called so."""
    import pydicom

    from lvpnet.archiver.walk import _DAMAGED, _dicom_header

    folder = Path(pydicom.__file__).parent / "data" / "test_files"
    damaged = {p.name for p in folder.glob("*.dcm")
               if isinstance(h := _dicom_header(p, p.name), str) and h.split(" ", 1)[0] in _DAMAGED}
    assert damaged == {"MR_truncated.dcm", "badVR.dcm"}


def test_a_nifti_lvpnet_does_not_code_is_carried_and_a_nii_gz_named_not_identical(cluster, tmp_path):
    """A complex-valued NIfTI (an MR phase recon) failed as an item on every run and was absent from the
    archive: it is carried as it is, as a complex .npy is. A .nii.gz comes back with the same uncompressed
    bytes but another gzip stream: restore names it in not_identical, as a checksum manifest sees it."""
    src, dest, out = tmp_path / "src", tmp_path / "dest", tmp_path / "out"
    (src / "derivatives").mkdir(parents=True)
    rng = np.random.default_rng(3)
    nib.save(nib.Nifti1Image((rng.normal(size=(8, 9, 3)) + 1j).astype(np.complex64), np.eye(4)),
             src / "derivatives" / "phase.nii.gz")
    nib.save(nib.Nifti1Image(rng.integers(0, 900, (20, 18, 3)).astype(np.int16), np.eye(4)), src / "t1.nii.gz")
    nib.save(nib.Nifti1Image(rng.integers(0, 900, (20, 18, 3)).astype(np.int16), np.eye(4)), src / "t2.nii")
    # gzip's own stream, level 9 and a name in its header: not what lvpnet's writer makes again
    data = gzip.decompress((src / "t1.nii.gz").read_bytes())
    with gzip.GzipFile(src / "t1.nii.gz", "wb", compresslevel=9, mtime=1) as f:
        f.write(data)
    keys = {it.key: it.kind for it in walk(src).items}
    assert keys == {"derivatives/phase.nii.gz": "other", "t1.nii.gz.lvp": "nifti", "t2.nii.lvp": "nifti"}
    s = lvpnet.archive(src, dest, scheduler=cluster, codec="fallback")
    assert s["failed"] == 0 and s["done"] == 3
    r = lvpnet.restore(dest, out, scheduler=cluster)
    assert r["failed"] == 0 and r["not_identical"] == ["t1.nii.gz"]
    assert (out / "derivatives" / "phase.nii.gz").read_bytes() == (src / "derivatives" / "phase.nii.gz").read_bytes()
    assert (out / "t2.nii").read_bytes() == (src / "t2.nii").read_bytes()
    assert gzip.decompress((out / "t1.nii.gz").read_bytes()) == data


def test_a_damaged_nii_gz_is_refused_not_coded(tmp_path):
    """nibabel stops reading a .nii.gz after its data, so a flipped byte in the stream was coded as the
    file's values and written back as a sound .nii.gz: the damage laundered. The gzip CRC is checked."""
    arr = np.random.default_rng(4).integers(0, 3000, (64, 60, 5)).astype(np.int16)
    nib.save(nib.Nifti1Image(arr, np.eye(4)), tmp_path / "good.nii.gz")
    raw = bytearray((tmp_path / "good.nii.gz").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (tmp_path / "bad.nii.gz").write_bytes(bytes(raw))
    with pytest.raises(lvpnet.InputError, match="CRC check failed"):
        lvpnet.read(tmp_path / "bad.nii.gz")
    # the data read whole and sound, the damage after it: nibabel never reads there
    tail = gzip.compress(gzip.decompress(bytes((tmp_path / "good.nii.gz").read_bytes())) + b"\0" * 4096)
    cut = bytearray(tail)
    cut[-12] ^= 0xFF  # in the last deflate block: the trailing zeros
    (tmp_path / "tail.nii.gz").write_bytes(bytes(cut))
    with pytest.raises(lvpnet.InputError, match="damaged gzip stream"):
        lvpnet.read(tmp_path / "tail.nii.gz")
    assert main(["compress", str(tmp_path / "bad.nii.gz"), str(tmp_path / "bad.lvp"), "--codec", "fallback"]) == 2
    assert not (tmp_path / "bad.lvp").exists()
    assert lvpnet.read(tmp_path / "good.nii.gz").array.shape == (5, 60, 64)


def test_archive_and_restore_keep_permissions_and_modification_times(cluster, tmp_path):
    """A patient file kept private (600) came back world-readable (644), with the restore's time as its
    modification time, and its archived copy in DEST was world-readable too. The archive's output is as
    private as its most private source; restore gives each file its source's mode and time."""
    src, dest, out = tmp_path / "src", tmp_path / "dest", tmp_path / "out"
    series = src / "study" / "ct"
    _series(_local("CT_small.dcm"), [series], 3, "1.2.3.77")
    (src / "notes.txt").write_text("private")
    nib.save(nib.Nifti1Image(np.arange(600, dtype=np.int16).reshape(10, 20, 3), np.eye(4)), src / "scan.nii")
    modes = {}
    for i, path in enumerate(sorted(p for p in src.rglob("*") if p.is_file())):
        modes[path] = 0o600 if i % 2 == 0 else 0o640
        os.chmod(path, modes[path])
        os.utime(path, ns=(1_500_000_000_000_000_000 + i, 1_500_000_000_000_000_000 + i * 1000))
    s = lvpnet.archive(src, dest, scheduler=cluster, codec="fallback")
    assert s["failed"] == 0
    for lvp in dest.rglob("*.lvp"):
        assert lvp.stat().st_mode & 0o077 in (0, 0o040), lvp  # nobody else reads a patient's file
    assert (dest / "notes.txt").stat().st_mode & 0o777 == modes[src / "notes.txt"]
    r = lvpnet.restore(dest, out, scheduler=cluster)
    assert r["failed"] == 0
    for path, mode in modes.items():
        back = out / path.relative_to(src)
        assert back.stat().st_mode & 0o777 == mode, back
        assert back.stat().st_mtime_ns == path.stat().st_mtime_ns, back


def test_a_ledger_written_before_modes_were_kept_reads_and_restores(cluster, tmp_path):
    """Ledgers of earlier archives have no mode column: archive adds it, a read-only restore reads
    without it (files get the umask's mode, as before)."""
    src, dest, out = tmp_path / "src", tmp_path / "dest", tmp_path / "out"
    src.mkdir()
    (src / "a.txt").write_text("a")
    assert lvpnet.archive(src, dest, scheduler=cluster)["failed"] == 0
    con = sqlite3.connect(dest / LEDGER_NAME)
    con.execute("ALTER TABLE sources DROP COLUMN mode")
    con.commit()
    con.close()
    assert lvpnet.restore(dest, out, scheduler=cluster)["failed"] == 0
    assert (out / "a.txt").read_text() == "a"
    (src / "b.txt").write_text("b")
    assert lvpnet.archive(src, dest, scheduler=cluster)["done"] == 1
    con = sqlite3.connect(dest / LEDGER_NAME)
    assert "mode" in {r[1] for r in con.execute("PRAGMA table_info(sources)")}
    con.close()


def test_symbolic_links_are_kept_and_restored_as_links(cluster, tmp_path):
    """A datalad / git-annex dataset holds every image as a link into .git/annex/objects: links were
    listed as not archived, so the restored dataset had its objects and none of its images. A link (to a
    file or a folder, inside SOURCE or not) is kept as where it points, never followed, and restore makes
    the same link; a dangling one too."""
    src, dest, out = tmp_path / "src", tmp_path / "dest", tmp_path / "out"
    objects = src / ".git" / "annex" / "objects" / "Xk" / "MD5E-s1--ab.nii.gz"
    objects.mkdir(parents=True)
    nib.save(nib.Nifti1Image(np.arange(240, dtype=np.int16).reshape(8, 10, 3), np.eye(4)), objects / objects.name)
    anat = src / "sub-01" / "anat"
    anat.mkdir(parents=True)
    rel_target = os.path.relpath(objects / objects.name, anat)
    os.symlink(rel_target, anat / "sub-01_T1w.nii.gz")
    os.symlink("../sub-01", src / "sub-01" / "again")  # a link to a folder
    os.symlink("/nowhere/at/all", src / "dangling")
    os.symlink(tmp_path / "outside.txt", src / "outside")  # points out of SOURCE: kept, not read
    (tmp_path / "outside.txt").write_text("not archived")
    s = lvpnet.archive(src, dest, scheduler=cluster, codec="fallback")
    assert s["failed"] == 0 and s["links"] == 4 and s["not_archived"] == []
    assert "4 symbolic links" in format_archive(s)
    assert (dest / "dangling.lvplink").read_bytes() == b"/nowhere/at/all"
    r = lvpnet.restore(dest, out, scheduler=cluster)
    assert r["failed"] == 0
    for rel in ("sub-01/anat/sub-01_T1w.nii.gz", "sub-01/again", "dangling", "outside"):
        assert (out / rel).is_symlink() and os.readlink(out / rel) == os.readlink(src / rel), rel
    back = nib.load(out / "sub-01" / "anat" / "sub-01_T1w.nii.gz")  # through the link, into the objects
    assert np.array_equal(np.asarray(back.dataobj), np.arange(240, dtype=np.int16).reshape(8, 10, 3))
    assert not partials(out)
    again = lvpnet.archive(src, dest, scheduler=cluster, codec="fallback")
    assert (again["done"], again["failed"]) == (0, 0)  # unchanged links: nothing to do
    os.unlink(src / "dangling")
    os.symlink("/somewhere/else", src / "dangling")
    again = lvpnet.archive(src, dest, scheduler=cluster, codec="fallback")
    assert again["done"] == 1 and (dest / "dangling.lvplink").read_bytes() == b"/somewhere/else"


def test_restore_never_writes_through_a_link(cluster, tmp_path):
    """A crafted ledger with a link "a" -> a folder outside OUT and a file "a/passwd": restore made the
    link, then wrote the file through it, out of OUT (tar's old hole). Links are made last, and no file
    is written under a link."""
    src, dest, out, victim = tmp_path / "src", tmp_path / "dest", tmp_path / "out", tmp_path / "victim"
    (src / "a").mkdir(parents=True)
    (src / "a" / "passwd").write_text("archived")
    victim.mkdir()
    assert lvpnet.archive(src, dest, scheduler=cluster)["failed"] == 0
    (dest / "a.lvplink").write_bytes(os.fsencode(victim))  # the crafted part: a link item named "a"
    con = sqlite3.connect(dest / LEDGER_NAME)
    digest = __import__("hashlib").sha256(os.fsencode(victim)).hexdigest()
    con.execute("INSERT INTO items (key, kind, root, state, output_sha256, output_bytes, source_bytes, updated) "
                "VALUES ('a.lvplink', 'link', '', 'done', ?, 1, 1, 0)", (digest,))
    con.execute("INSERT INTO sources (key, path, size, mtime_ns, sha256) VALUES ('a.lvplink', 'a', 1, 0, ?)", (digest,))
    # and a link "a/x" beside it: made by another worker at the same time, it could pass "a" before it was a link
    (dest / "a" / "x.lvplink").write_bytes(b"pwned")
    pwned = __import__("hashlib").sha256(b"pwned").hexdigest()
    con.execute("INSERT INTO items (key, kind, root, state, output_sha256, output_bytes, source_bytes, updated) "
                "VALUES ('a/x.lvplink', 'link', 'a', 'done', ?, 5, 5, 0)", (pwned,))
    con.execute("INSERT INTO sources (key, path, size, mtime_ns, sha256) VALUES ('a/x.lvplink', 'a/x', 5, 0, ?)",
                (pwned,))
    con.commit()
    con.close()
    r = lvpnet.restore(dest, out, scheduler=cluster)
    assert list(victim.iterdir()) == []  # nothing written outside OUT
    assert r["failed"] >= 1
    # and a second restore into the same OUT (the link there now) writes nothing through it either
    lvpnet.restore(dest, out, scheduler=cluster)
    assert list(victim.iterdir()) == []


def test_a_target_under_a_link_is_refused(tmp_path):
    from lvpnet.archiver.tasks import _target
    from lvpnet.errors import DamagedError

    out = tmp_path / "out"
    (out / "d").mkdir(parents=True)
    os.symlink(tmp_path, out / "d" / "a")
    assert _target(out, "d/b/c.dcm") == out / "d" / "b" / "c.dcm"
    assert _target(out, "d/a") == out / "d" / "a"  # the link itself: replaced, not written through
    with pytest.raises(DamagedError, match="d/a is a symbolic link: 'd/a/passwd' is not written through it"):
        _target(out, "d/a/passwd")


def test_old_archives_get_their_modes_and_hints_on_the_next_run(cluster, tmp_path):
    """An archive made before modes were kept: its unchanged outputs stayed world-readable and restored with
    the umask's bits, and its NIfTI files' headers were read again on every run (no hint kept). The next run
    records each file's bits and hint and makes the outputs as private as their sources; the ledger's
    format goes to 2, which an older lvpnet refuses to write (it would insert rows without the new column)."""
    from lvpnet.archiver.ledger import FORMAT
    from lvpnet.archiver.tasks import output_mode

    src, dest, out = tmp_path / "src", tmp_path / "dest", tmp_path / "out"
    src.mkdir()
    (src / "secret.txt").write_text("private")
    nib.save(nib.Nifti1Image(np.arange(4800, dtype=np.int16).reshape(40, 40, 3), np.eye(4)), src / "t1.nii")
    os.chmod(src / "secret.txt", 0o600)
    os.chmod(src / "t1.nii", 0o640)
    assert lvpnet.archive(src, dest, scheduler=cluster, codec="fallback")["failed"] == 0
    con = sqlite3.connect(dest / LEDGER_NAME)  # as the lvpnet before: no modes, no NIfTI hints, format 1
    con.execute("UPDATE sources SET mode = NULL, hint = ''")
    con.execute("UPDATE meta SET value = '1' WHERE key = 'format'")
    con.commit()
    con.close()
    for f in dest.rglob("*"):
        if f.is_file() and LEDGER_NAME not in f.name:
            os.chmod(f, 0o644)
    s = lvpnet.archive(src, dest, scheduler=cluster, codec="fallback")
    assert (s["done"], s["skipped"], s["failed"]) == (0, 2, 0)
    assert (dest / "secret.txt").stat().st_mode & 0o777 == 0o600
    assert (dest / "t1.nii.lvp").stat().st_mode & 0o777 == 0o640
    con = sqlite3.connect(dest / LEDGER_NAME)
    assert dict(con.execute("SELECT path, mode FROM sources")) == {"secret.txt": 0o600, "t1.nii": 0o640}
    assert dict(con.execute("SELECT path, hint FROM sources"))["t1.nii"] == "nifti"
    assert con.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()[0] == str(FORMAT) == "2"
    assert lvpnet.restore(dest, out, scheduler=cluster)["failed"] == 0
    assert (out / "secret.txt").stat().st_mode & 0o777 == 0o600 and (out / "t1.nii").stat().st_mode & 0o777 == 0o640
    con.execute("UPDATE meta SET value = '3' WHERE key = 'format'")
    con.commit()
    con.close()
    with pytest.raises(lvpnet.InputError, match="ledger format 3 is newer than this lvpnet"):
        lvpnet.archive(src, dest, scheduler=cluster)
    # bits that lock out the owner (a source readable through its group only): the copy stays the owner's
    assert output_mode([0o044]) == 0o644 and output_mode([0o600, 0o640]) == 0o600 and output_mode([0o600, None]) is None


def test_the_permission_bits_are_set_where_os_fchmod_is_missing(tmp_path, monkeypatch):
    """Windows before Python 3.13 has no os.fchmod: every carried file failed there."""
    from lvpnet.atomic import atomic_path

    monkeypatch.delattr(os, "fchmod")
    path = tmp_path / "f"
    with atomic_path(path, 0o600) as tmp, open(tmp, "wb") as f:
        f.write(b"x")
    assert path.stat().st_mode & 0o777 == 0o600


def test_nifti_coded_agrees_with_the_reader_on_colour(tmp_path):
    """An RGBA NIfTI (4 fields) passed the walk as coded, then failed every run when compressed."""
    from lvpnet.io.nifti import nifti_coded

    def colour(fields, shape):
        dt = np.dtype([(c, np.uint8) for c in "RGBA"[:fields]])
        arr = np.zeros(shape, dt)
        path = tmp_path / f"c{fields}_{len(shape)}.nii"
        nib.save(nib.Nifti1Image(arr, np.eye(4)), path)
        return path

    for fields, shape in ((3, (8, 9, 2)), (4, (8, 9, 2)), (3, (2, 2, 2, 2, 2, 2))):
        path = colour(fields, shape)
        try:
            lvpnet.compress(lvpnet.read(path), codec="fallback", verify=False)
            coded = True
        except lvpnet.InputError:
            coded = False
        assert nifti_coded(path) == coded, (fields, shape)


def test_what_the_archive_cannot_read_fails_the_run(tmp_path):
    """A folder without read permission hid everything in it, unsaid, and a file that could not be stat-ed
    was only 'not archived': the run exited 0, and deleting SOURCE then lost them. Both fail every run."""
    from lvpnet.archiver.walk import walk as walk_tree

    src = tmp_path / "src"
    (src / "locked").mkdir(parents=True)
    (src / "ok.txt").write_text("ok")
    (src / "locked" / "secret.dcm").write_text("x")
    real = os.scandir

    def scandir(path="."):  # root reads every folder: the refusal an unprivileged user gets, made here
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    try:
        os.scandir = scandir  # os.walk lists each folder through it
        plan = walk_tree(src)
    finally:
        os.scandir = real
    assert [u["file"] for u in plan.unnamed] == ["locked"] and "cannot be read" in plan.unnamed[0]["reason"]
    assert [it.key for it in plan.items] == ["ok.txt"]


def test_lvpnet_temporary_files_in_source_are_not_archived(tmp_path):
    """A killed lvpnet write's leftover in SOURCE was archived under its name, and the next write into that
    DEST folder took the copy for debris and removed it: the ledger said done, restore failed."""
    from lvpnet.atomic import partial_name

    (tmp_path / "a").mkdir()
    debris = partial_name(tmp_path / "a" / "scan.txt", ".txt")
    debris.write_text("half")
    (tmp_path / "a" / "f.txt").write_text("data")
    plan = walk(tmp_path)
    assert [it.key for it in plan.items] == ["a/f.txt"]
    assert any("temporary file" in s["reason"] for s in plan.skipped)


def test_a_dest_folder_replaced_by_a_link_is_not_written_through(cluster, tmp_path):
    src, dest, elsewhere = tmp_path / "src", tmp_path / "dest", tmp_path / "elsewhere"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "a.txt").write_text("a")
    elsewhere.mkdir()
    assert lvpnet.archive(src, dest, scheduler=cluster)["failed"] == 0
    shutil.rmtree(dest / "sub")
    os.symlink(elsewhere, dest / "sub")
    (src / "sub" / "b.txt").write_text("b")
    s = lvpnet.archive(src, dest, scheduler=cluster)
    assert s["failed"] >= 1 and list(elsewhere.iterdir()) == []
    assert any("is a symbolic link" in f["reason"] for f in s["failures"])


def test_a_hostile_lvplink_is_refused_before_it_is_read(tmp_path):
    from lvpnet.archiver.tasks import _restore_link
    from lvpnet.errors import DamagedError

    big, nul = tmp_path / "big.lvplink", tmp_path / "nul.lvplink"
    big.write_bytes(b"a" * 5000)
    nul.write_bytes(b"a\0b")
    for bad in (big, nul):
        with pytest.raises(DamagedError):
            _restore_link(bad, tmp_path / "out" / "x")
    assert not (tmp_path / "out" / "x").exists()


def test_a_killed_restores_partial_links_are_swept(tmp_path):
    from lvpnet.archiver.run import _sweep
    from lvpnet.atomic import partial_name

    (tmp_path / "d").mkdir()
    a = partial_name(tmp_path / "d" / "l1")
    b = partial_name(tmp_path / "d" / "l2")
    os.symlink("../nowhere", a)
    os.symlink(tmp_path, b)  # a link to a folder: os.walk lists it among the folders
    assert _sweep(tmp_path, set()) == 2 and list((tmp_path / "d").iterdir()) == []


def test_a_file_become_a_folder_says_how_to_archive_it(cluster, tmp_path):
    """SOURCE's file "afile" became a folder: DEST still holds the old copy (kept for restore), and every
    run failed with "File exists", no way out said."""
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.mkdir()
    (src / "afile").write_text("was a file")
    assert lvpnet.archive(src, dest, scheduler=cluster)["failed"] == 0
    (src / "afile").unlink()
    (src / "afile").mkdir()
    (src / "afile" / "in.txt").write_text("now a folder")
    s = lvpnet.archive(src, dest, scheduler=cluster)
    (why,) = [f["reason"] for f in s["failures"]]
    assert "is an earlier item's file" in why and "move it out of DEST" in why


def test_npy_and_nifti_files_that_cannot_be_read_whole_are_carried_and_named(cluster, tmp_path):
    """A .nii, .nii.gz or .npy cut short (or a text file named .npy) failed its item on every run and was never
    archived: the restored tree lacked it. Each is now carried whole and named among the damaged files, from
    its header and size alone; whole files (a .nii.gz of two gzip members, bytes after a .nii's data) are not;
    a file the archive holds a good version of still fails and keeps that version (the test above)."""
    from lvpnet.archiver.walk import _file_damage

    src, dest, out = tmp_path / "src", tmp_path / "dest", tmp_path / "out"
    src.mkdir()
    rng = np.random.default_rng(3)
    img = nib.Nifti1Image(rng.integers(0, 900, (16, 16, 4)).astype(np.int16), np.eye(4))
    nib.save(img, src / "good.nii")
    nib.save(img, src / "good.nii.gz")
    np.save(src / "good.npy", rng.integers(0, 900, (3, 16, 16)).astype(np.uint16))
    whole = (src / "good.nii").read_bytes()
    (src / "cut.nii").write_bytes(whole[:-700])
    (src / "cut.nii.gz").write_bytes((src / "good.nii.gz").read_bytes()[:-40])
    (src / "cut.npy").write_bytes((src / "good.npy").read_bytes()[:-300])
    (src / "text.npy").write_text("not an array\n")
    (src / "members.nii.gz").write_bytes(gzip.compress(whole[:1000]) + gzip.compress(whole[1000:]))
    (src / "tail.nii").write_bytes(whole + b"extra bytes after the data")
    assert _file_damage(src / "members.nii.gz", "nifti") is None and _file_damage(src / "tail.nii", "nifti") is None
    s = lvpnet.archive(src, dest, scheduler=cluster, codec="fallback")
    assert s["failed"] == 0, s["failures"]
    reasons = {c["file"]: c["reason"] for c in s["damaged_carried"]}
    assert set(reasons) == {"cut.nii", "cut.nii.gz", "cut.npy", "text.npy"}, reasons
    assert "cut short (" in reasons["cut.nii"] and "gzip stream is cut short" in reasons["cut.nii.gz"]
    assert "header cannot be read" in reasons["text.npy"]
    again = lvpnet.archive(src, dest, scheduler=cluster, codec="fallback")  # named again, nothing failed
    assert again["failed"] == 0 and {c["file"] for c in again["damaged_carried"]} == set(reasons)
    r = lvpnet.restore(dest, out, scheduler=cluster)
    assert r["failed"] == 0
    # the archive names the files a restore gives back with the same values, not the same bytes, as restore does
    # (the .nii.gz were named only by restore: someone deleting originals on the archive's word missed them)
    assert {k.removesuffix(".lvp") for k in s["not_identical"]} == set(r["not_identical"]) != set()
    for f in src.iterdir():  # a coded .nii.gz comes back with the same content in another gzip stream (README)
        coded_gz = f.name.endswith(".nii.gz") and f.name not in reasons
        got = gzip.decompress((out / f.name).read_bytes()) if coded_gz else (out / f.name).read_bytes()
        assert got == (gzip.decompress(f.read_bytes()) if coded_gz else f.read_bytes()), f.name


def test_settings_refused_leave_no_dest_behind(tmp_path):
    """An unknown codec, or --device cuda without a GPU, was refused after DEST had been made: an empty folder
    was left where the archive would have gone."""
    src = tmp_path / "src"
    src.mkdir()
    np.save(src / "a.npy", np.zeros((4, 4), np.uint8))
    with pytest.raises(lvpnet.InputError, match="unknown codec 'nosuch'"):
        lvpnet.archive(src, tmp_path / "d1", codec="nosuch")
    with pytest.raises(lvpnet.InputError, match=r"--device sideways \(device='sideways' in Python\): use auto, cpu or cuda"):
        lvpnet.archive(src, tmp_path / "d2", device="sideways")
    # a Python caller is told its own argument's name too
    with pytest.raises(lvpnet.InputError, match=r"--workers 0 \(workers=0 in Python\): give at least 1"):
        lvpnet.archive(src, tmp_path / "d3", workers=0)
    with pytest.raises(lvpnet.InputError, match=r"in Python: workers= or scheduler=, not both"):
        lvpnet.archive(src, tmp_path / "d4", workers=2, scheduler="tcp://127.0.0.1:1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]
