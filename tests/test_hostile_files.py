"""Crafted .lvp files (every CRC-32 recomputed) get a clean refusal within bounded memory.

Issue 21's cases: a header that is a list or null, bad shapes, a codec index out of
range, a codec without an id, a blob with a string offset, a record with a bad dtype or
no body, forged NIfTI data_offset / scl_slope, a tiny file declaring a huge slice, zstd
bombs, a JPEG-XL codestream declaring 16000 x 16000, a learned chunk declared 30000 x
30000. The Python API raises only LvpnetError subclasses; the command line exits 1 or 2
without a traceback, under 1 GB of memory and 60 s, and writes nothing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import imagecodecs
import nibabel as nib
import numpy as np
import pytest

import lvpnet
from lvpnet import dicom_archive
from lvpnet.errors import DamagedError, InputError, LimitError, LvpnetError, NewerFormatError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fuzz"))
import lvp_forge  # noqa: E402
from fuzz_lvp import _dicom_series  # noqa: E402


def _read_all(data: bytes, folder: Path | None = None) -> None:
    """What verify and decompress do: every slice, every record, a DICOM archive's folder written."""
    f = lvpnet.LvpFile(data)
    for _ in f.iter_verify():
        pass
    volume = f.volume()
    if folder is not None and dicom_archive.archive_of(volume.metadata) is not None:
        dicom_archive.write_folder(volume, folder)


def _with_header(data: bytes, **changes) -> bytes:
    p = lvp_forge.split(data)
    p.header = {**p.header, **changes}
    return lvp_forge.join(p)


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("seeds")
    rng = np.random.default_rng(21)
    out = {
        "int": lvpnet.compress(lvpnet.Volume(rng.integers(-300, 300, (2, 9, 7)).astype(np.int16), blobs=[b"blob"]),
                               codec="fallback"),
        "float": lvpnet.compress(rng.normal(size=(1, 64, 64)).astype(np.float32), codec="fallback"),
        "grey64": lvpnet.compress(rng.integers(0, 900, (64, 64)).astype(np.uint16), codec="fallback"),
        "constant": lvpnet.compress(np.zeros((4, 4), np.uint16), codec="fallback"),
    }
    series = tmp / "series"
    series.mkdir()
    _dicom_series(series, rng)
    out["dicom"] = lvpnet.compress(dicom_archive.build_archive(lvpnet.io.read(series), series), codec="fallback")
    nii = tmp / "x.nii"
    nib.save(nib.Nifti1Image(rng.integers(0, 999, (7, 6, 2)).astype(np.int16), np.diag([0.5, 0.5, 2, 1])), nii)
    out["nifti"] = lvpnet.compress(lvpnet.io.read(nii), codec="fallback")
    NIFTI_SOURCE[:] = [nii.read_bytes()]
    return out


NIFTI_SOURCE: list[bytes] = []  # the .nii the "nifti" seed was made from


def _record(data: bytes, k: int, change) -> bytes:
    p = lvp_forge.split(data)
    prefix, head, body = lvp_forge.record_split(p.blobs[k])
    head, body = change(head, body)
    p.blobs[k] = lvp_forge.record_join(prefix, head, body)
    return lvp_forge.join(p)


def _nifti(data: bytes, **changes) -> bytes:
    p = lvp_forge.split(data)
    meta = p.header["source"]["metadata"]
    meta["nifti"] = {**meta["nifti"], **changes}
    return lvp_forge.join(p)


def _nifti_header_with(data: bytes, offset: int, fmt: str, value) -> str:
    head = bytearray(base64.b64decode(lvp_forge.split(data).header["source"]["metadata"]["nifti"]["header_b64"]))
    struct.pack_into(fmt, head, offset, value)
    return base64.b64encode(bytes(head)).decode()


def crafted(seeds) -> dict[str, tuple[bytes, type]]:
    """name -> (file bytes, the error class the reader must raise)."""
    s = seeds
    p = lvp_forge.split(s["int"])
    cases = {
        "header-list": (lvp_forge.join(p, header_bytes=b"[1, 2]"), DamagedError),
        "header-null": (lvp_forge.join(p, header_bytes=b"null"), DamagedError),
        "header-deep": (lvp_forge.join(p, header_bytes=b"[" * 100000 + b"]" * 100000), DamagedError),
        # a number of 5000 digits, which Python refuses to convert (it was exit 3, "internal error")
        "header-long-number": (lvp_forge.join(p, header_bytes=json.dumps({**p.header, "shape": [0]}).encode().replace(
            b'"shape": [0]', b'"shape": [' + b"9" * 5000 + b"]")), DamagedError),
        "shape-negative": (_with_header(s["int"], shape=[-2, 9, 7]), DamagedError),
        "shape-zero": (_with_header(s["int"], shape=[2, 0, 7]), DamagedError),
        "shape-overflow": (_with_header(s["int"], shape=[2**62, 2**62, 2**62]), DamagedError),
        "shape-wrapping": (_with_header(s["int"], shape=[2, 2**32, 2**32]), LimitError),
        "shape-string": (_with_header(s["int"], shape="2x9x7"), DamagedError),
        "shape-bool": (_with_header(s["int"], shape=[True, 9, 7]), DamagedError),
        "dtype-object": (_with_header(s["int"], dtype="O"), DamagedError),
        "dtype-list": (_with_header(s["int"], dtype=[["a", "<i2"]]), DamagedError),
        "dtype-big-endian": (_with_header(s["int"], dtype=">i2"), DamagedError),
        "rgb-string": (_with_header(s["int"], rgb="yes"), DamagedError),
        "model-number": (_with_header(s["int"], model=5), DamagedError),
        "direction-ragged": (_with_header(s["int"], direction=[[1, 0], 3]), DamagedError),
        "affine-ragged": (_with_header(s["int"], affine=[[1, 2], [3]]), DamagedError),
        "codec-without-id": (_with_header(s["int"], codecs=[{"version": 1}]), DamagedError),
        "codecs-null": (_with_header(s["int"], codecs=None), DamagedError),
        "source-list": (_with_header(s["int"], source=[]), DamagedError),
    }
    p = lvp_forge.split(s["int"])
    p.codecs[1] = 7
    cases["codec-index-out-of-range"] = (lvp_forge.join(p), DamagedError)
    p = lvp_forge.split(s["int"])
    p.header = {**p.header, "blobs": [{"offset": str(b["offset"]), "length": b["length"], "crc32": b["crc32"]}
                                      for b in p.header["blobs"]]}
    cases["blob-string-offset"] = (lvp_forge.join(p, fix_blobs=False), DamagedError)
    flipped = bytearray(s["int"])
    flipped[8] ^= 0xFE  # the major version's low byte: 1 -> 255, checksum not recomputed
    cases["version-byte-flipped"] = (bytes(flipped), DamagedError)
    # memory: a tiny file declaring a huge slice; bombs inside chunks
    cases["declares-40000x40000"] = (_with_header(s["constant"], shape=[40000, 40000]), LimitError)
    p = lvp_forge.split(s["float"])
    p.chunks[0] = b"\x01" + lvp_forge.zstd_bomb(1_300_000_000)
    cases["zstd-bomb-chunk"] = (lvp_forge.join(p), DamagedError)
    p = lvp_forge.split(s["grey64"])
    p.chunks[0] = b"\x00" + b"\x00\x00" + lvp_forge.jxl_declaring(16000, 16000)
    cases["jxl-16000-in-64"] = (lvp_forge.join(p), DamagedError)
    # DICOM file records
    cases["record-bad-dtype"] = (
        _record(s["dicom"], 0, lambda h, b: ({**h, "pixel": {**h["pixel"], "dtype": "O"}}, b)), DamagedError)
    cases["record-no-body"] = (
        _record(s["dicom"], 0, lambda h, b: ({k: v for k, v in h.items() if k != "body"}, b)), DamagedError)
    cases["record-string-offset"] = (
        _record(s["dicom"], 0, lambda h, b: ({**h, "pixel": {**h["pixel"], "offset": "12"}}, b)), DamagedError)
    cases["record-zstd-bomb"] = (
        _record(s["dicom"], 2, lambda h, b: (h, lvp_forge.zstd_bomb(1_300_000_000))), DamagedError)
    cases["record-inside-a-file"] = (
        _record(s["dicom"], 1, lambda h, b: ({**h, "name": "IM0.dcm/x"}, b)), DamagedError)
    cases["record-name-300"] = (_record(s["dicom"], 1, lambda h, b: ({**h, "name": "a" * 300}, b)), DamagedError)
    # the first file's elements, left to its record (FORMAT.md): a number out of range, a string, a record
    # (checksums recomputed) whose body is no DICOM file
    for name, value in (("elements-in-record-99", 99), ("elements-in-record-string", "0")):
        p = lvp_forge.split(s["dicom"])
        assert p.header["source"]["metadata"]["dicom"]["elements_in_record"] == 0
        p.header["source"]["metadata"]["dicom"]["elements_in_record"] = value
        cases[name] = (lvp_forge.join(p), DamagedError)
    for name, value in (("elements-patch-list", [1]), ("elements-patch-string-element", {"00020010": "x"})):
        p = lvp_forge.split(s["dicom"])
        dicom = p.header["source"]["metadata"]["dicom"]
        dicom["elements_in_record_patched"] = dicom.pop("elements_in_record")
        dicom["elements_patch"] = value
        cases[name] = (lvp_forge.join(p), DamagedError)
    cases["elements-record-dictionary-99"] = (_record(s["dicom"], 0, lambda h, b: (
        {**h, "body": {**h["body"], "codec": "deflate", "dictionary": 99}}, b)), DamagedError)
    junk = b"not a DICOM file" * 8
    cases["elements-record-not-dicom"] = (_record(s["dicom"], 0, lambda h, b: (
        {**h, "pixel": None, "body": {"codec": "zstd", "length": len(junk), "sha256": hashlib.sha256(junk).hexdigest()}},
        imagecodecs.zstd_encode(junk))), DamagedError)
    # geometry no writer stores: an integer of 400 digits (a float overflowed later: exit 3)
    for name, field, value in (("spacing-400-digits", "spacing", 10**400), ("origin-400-digits", "origin", -10**400),
                               ("affine-400-digits", "affine", 10**400)):
        p = lvp_forge.split(s["nifti"])
        old = p.header[field]
        p.header[field] = [[value] + row[1:] for row in old] if field == "affine" else [value] + old[1:]
        cases[name] = (lvp_forge.join(p), DamagedError)
    # metadata that lays out an output file
    cases["nifti-data-offset-1.5e9"] = (_nifti(s["nifti"], data_offset=1_500_000_000), DamagedError)
    cases["nifti-data-offset-4096"] = (_nifti(s["nifti"], data_offset=4096), DamagedError)
    cases["nifti-scl-slope-3"] = (_nifti(s["nifti"], header_b64=_nifti_header_with(s["nifti"], 112, "<f", 3.0)),
                                  DamagedError)
    cases["nifti-vox-offset-4096"] = (_nifti(s["nifti"], header_b64=_nifti_header_with(s["nifti"], 108, "<f", 4096.0)),
                                      DamagedError)
    p = lvp_forge.split(s["int"])
    p.header["source"] = {"format": "numpy", "metadata": {"numpy": {"dtype": "O", "fortran_order": False}}}
    cases["npy-metadata-object-dtype"] = (lvp_forge.join(p), DamagedError)
    return cases


def test_the_seeds_are_genuine(seeds, tmp_path):
    for data in seeds.values():
        _read_all(data)
    dicom_archive.write_folder(lvpnet.LvpFile(seeds["dicom"]).volume(), tmp_path / "restored")
    assert sorted(p.name for p in (tmp_path / "restored").iterdir()) == ["IM0.dcm", "IM1.dcm", "notes.txt"]


def test_every_crafted_file_raises_only_lvpnet_errors(seeds, tmp_path):
    for name, (data, want) in crafted(seeds).items():
        with pytest.raises(LvpnetError) as e:
            _read_all(data, tmp_path / name)
        assert isinstance(e.value, want), (name, e.value)
        assert not (tmp_path / name).exists(), name


def test_a_flipped_version_byte_is_damage_not_a_newer_format(seeds):
    flipped = bytearray(seeds["int"])
    flipped[8] = 2
    with pytest.raises(DamagedError, match="checksum"):
        lvpnet.LvpFile(bytes(flipped))
    with pytest.raises(NewerFormatError):  # a genuine newer file checksums its own version
        p = lvp_forge.split(seeds["int"])
        p.major = 2
        lvpnet.LvpFile(lvp_forge.join(p))


def test_messages_name_the_field_or_slice(seeds):
    cases = crafted(seeds)
    expect = {"shape-negative": "'shape'", "codec-index-out-of-range": "slice 1", "codec-without-id": "codecs[0]",
              "blob-string-offset": "blobs[0]", "jxl-16000-in-64": "16000x16000", "record-bad-dtype": "pixel.dtype",
              "nifti-data-offset-1.5e9": "data_offset", "nifti-scl-slope-3": "scl_slope",
              "declares-40000x40000": "--max-memory", "record-name-300": "too long", "record-inside-a-file": "IM0.dcm",
              "elements-in-record-99": "elements_in_record", "elements-patch-list": "elements_patch"}
    for name, text in expect.items():
        with pytest.raises(LvpnetError, match=re.escape(text)):
            _read_all(cases[name][0])


def test_verify_and_decompress_agree_on_record_names(seeds, tmp_path):
    """What verify passes, decompress writes; what verify refuses, decompress refuses."""
    # ... and a name 2,000 folders deep within 4096 bytes: verify passed it, decompress overflowed Python's stack
    for name in ("IM0.dcm/x", "a" * 300, "sub/" + "c" * 256, "a/" * 2000 + "x"):
        data = _record(seeds["dicom"], 1, lambda h, b, n=name: ({**h, "name": n}, b))
        f = lvpnet.LvpFile(data)
        with pytest.raises(DamagedError):
            list(f.iter_verify())
        with pytest.raises(DamagedError):
            dicom_archive.write_folder(f.volume(), tmp_path / "out")
        assert not (tmp_path / "out").exists()
    ok = _record(seeds["dicom"], 1, lambda h, b: ({**h, "name": "s/" * 250 + "sub/" + "d" * 200 + ".dcm"}, b))
    assert list(lvpnet.LvpFile(ok).iter_verify())
    dicom_archive.write_folder(lvpnet.LvpFile(ok).volume(), tmp_path / "ok")
    assert (tmp_path / "ok" / ("s/" * 250 + "sub") / ("d" * 200 + ".dcm")).is_file()


def test_nifti_output_of_a_genuine_file_is_byte_identical(seeds, tmp_path):
    lvpnet.io.write(lvpnet.LvpFile(seeds["nifti"]).volume(), tmp_path / "back.nii")
    assert (tmp_path / "back.nii").read_bytes() == NIFTI_SOURCE[0]


def test_the_memory_limit_can_be_raised(monkeypatch):
    data = lvpnet.compress(np.zeros((2000, 2000), np.uint8), codec="fallback")
    assert len(data) < 1000
    assert lvpnet.decompress(data).shape == (2000, 2000)  # 4 MB: under the default floor
    from lvpnet import limits

    monkeypatch.setattr(limits, "_WRITTEN", {})  # a reader other than the process that wrote it
    monkeypatch.setenv("LVPNET_MAX_MEMORY", "1M")
    with pytest.raises(LimitError, match="LVPNET_MAX_MEMORY"):
        lvpnet.decompress(data)
    monkeypatch.setenv("LVPNET_MAX_MEMORY", "128M")
    assert lvpnet.decompress(data).shape == (2000, 2000)
    monkeypatch.setenv("LVPNET_MAX_MEMORY", "lots")
    with pytest.raises(InputError, match="not a size"):
        lvpnet.decompress(data)


def test_a_learned_chunk_declared_30000_square_is_refused_before_decoding():
    a = (np.arange(32 * 32).reshape(32, 32) % 97).astype(np.int16)
    data = lvpnet.compress(a, codec="lvpnet", safety_net=False)
    forged = _with_header(data, shape=[30000, 30000])
    with pytest.raises(LimitError, match="30000x30000"):
        list(lvpnet.LvpFile(forged).iter_verify())
    # a small array, but the network's working memory at 1500 x 1500 is over a gigabyte: checked per slice
    with pytest.raises(LimitError, match="slice 0 .1500x1500"):
        list(lvpnet.LvpFile(_with_header(data, shape=[1500, 1500])).iter_verify())
    p = lvp_forge.split(data)  # a plane header's stream length past the chunk: damage, named
    c = bytearray(p.chunks[0])
    struct.pack_into("<I", c, 1 + 12, 1 << 30)
    p.chunks[0] = bytes(c)
    with pytest.raises(DamagedError, match="slice 0"):
        lvpnet.LvpFile(lvp_forge.join(p))[0]


_RUNNER = textwrap.dedent("""
    import contextlib, io, json, resource, sys, time
    from lvpnet.cli import main
    out = []
    for path in sys.argv[2:]:
        for cmd in (["verify", path], ["decompress", path, sys.argv[1] + "/" + path.split("/")[-1] + ".npy"],
                    ["info", path, "--json"]):
            err = io.StringIO()
            t0 = time.monotonic()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                rc = main(cmd)
            out.append({"case": path, "cmd": cmd[0], "rc": rc, "stderr": err.getvalue(), "s": time.monotonic() - t0})
    # VmHWM: this process's own peak (ru_maxrss would count the pytest process it was forked from)
    print(json.dumps({"runs": out, "rss_mb": int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) // 1024}))
""")


def test_command_line_exits_1_or_2_without_traceback_in_bounded_memory(seeds, tmp_path):
    files = tmp_path / "crafted"
    files.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    for name, (data, _) in crafted(seeds).items():
        (files / f"{name}.lvp").write_bytes(data)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("LVPNET_MAX_MEMORY", None)
    proc = subprocess.run([sys.executable, "-c", _RUNNER, str(out), *sorted(map(str, files.iterdir()))],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"{len(report['runs'])} runs, peak RSS {report['rss_mb']} MB, slowest {max(r['s'] for r in report['runs']):.2f} s")
    for run in report["runs"]:
        assert run["rc"] in ((0, 1, 2) if run["cmd"] == "info" else (1, 2)), run  # info decodes nothing
        assert "Traceback" not in run["stderr"] and "internal error" not in run["stderr"], run
        assert run["s"] < 60, run
    assert report["rss_mb"] < 1024, report["rss_mb"]
    assert list(out.iterdir()) == []  # nothing written, not even a temporary file
    assert sorted(p.name for p in files.iterdir()) == sorted(f"{n}.lvp" for n in crafted(seeds))


def test_nifti_crc_of_forged_files_is_valid(seeds):
    """The forgeries above are not caught by a checksum: their CRC-32s are all valid."""
    data = crafted(seeds)["nifti-scl-slope-3"][0]
    h_off, h_len, n, crc, _ = struct.unpack("<QIII4s", data[-24:])
    assert zlib.crc32(data[h_off:-24], zlib.crc32(data[:12])) == crc


def test_compressed_dicom_pixels_are_held_to_the_file_size(tmp_path):
    """An RLE file declaring 60000 x 60000 in a few hundred bytes is refused before any frame is decoded."""
    import pydicom
    from pydicom.encaps import encapsulate
    from pydicom.uid import RLELossless

    path = tmp_path / "big.dcm"
    _dicom_series(tmp_path, np.random.default_rng(0), n=1)
    ds = pydicom.dcmread(tmp_path / "IM0.dcm")
    ds.file_meta.TransferSyntaxUID = RLELossless
    ds.Rows = ds.Columns = 60000
    ds.PixelData = encapsulate([b"\0" * 64])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(LimitError, match="60000x60000"):
        lvpnet.io.read(path)


def test_compress_verifies_what_it_wrote_whatever_the_rule(monkeypatch):
    """The array compress holds justifies reading its own file back; a fresh reader keeps the rule."""
    from lvpnet import limits

    monkeypatch.setattr(limits, "FLOOR", 1 << 20)
    monkeypatch.setattr(limits, "_WRITTEN", {})
    a = np.zeros((4, 2048, 2048), np.uint8)  # 16 MiB in a file of a few hundred bytes
    data = lvpnet.compress(a, codec="fallback")  # verified: decoded in full
    assert len(data) < 1000
    limits._WRITTEN.clear()
    with pytest.raises(LimitError, match="4x2048x2048"):
        lvpnet.decompress(data)


def test_a_nearly_empty_megapixel_slice_decodes_in_any_process(monkeypatch):
    """A 1024 x 1024 mask the learned codec stores in about 3 kB needs 515 MiB of working memory to
    decode: under the rule it was refused in every process but the one that wrote it."""
    from lvpnet import limits

    monkeypatch.setattr(limits, "_WRITTEN", {})
    monkeypatch.delenv("LVPNET_MAX_MEMORY", raising=False)
    need = 1024 * 1024 * (512 + 3)  # what LvpFile checks for a learned uint8 slice
    limits.check(need, 3304, "slice 0 (1024x1024 uint8)", None, limits.WORK_RATIO)
    with pytest.raises(LimitError, match=r"lvpnet.limits.set_max_memory"):  # 1500 x 1500 still refused
        limits.check(1500 * 1500 * 515, 3304, "slice 0 (1500x1500 uint8)", None, limits.WORK_RATIO)


def test_an_explicit_limit_does_not_refuse_compress_its_own_verification(monkeypatch):
    """`compress --max-memory 10K` refused the file it had just written from memory, naming it as if
    it were a suspicious input; a later reader is held to the limit as before."""
    from lvpnet import limits

    monkeypatch.setattr(limits, "_WRITTEN", {})
    a = (np.arange(4 * 128 * 128) % 300).astype(np.int16).reshape(4, 128, 128)
    limits.set_max_memory(10 << 10)
    try:
        data = lvpnet.compress(a, codec="fallback")  # verified
        limits._WRITTEN.clear()
        with pytest.raises(LimitError, match="more than the limit set"):
            lvpnet.decompress(data)
    finally:
        limits.set_max_memory(None)


def test_an_explicit_limit_holds_for_npy_and_not_for_a_dicom_folder_s_own_records(tmp_path, monkeypatch, capsys):
    """A user's trial: `--max-memory 1K` refused .npz, NIfTI and DICOM input but not .npy; and compress of
    a DICOM folder was refused by the check of the file records it had just built from the files it read,
    under a bare archived file name. A later reader of the file is held to the limit, named by the .lvp."""
    from lvpnet import limits
    from lvpnet.cli import main

    monkeypatch.setattr(limits, "_WRITTEN", {})
    npy = tmp_path / "a.npy"
    np.save(npy, np.zeros((64, 64), np.uint16))
    series = tmp_path / "series"
    series.mkdir()
    _dicom_series(series, np.random.default_rng(0), n=2)
    out = tmp_path / "s.lvp"
    assert main(["compress", str(npy), str(tmp_path / "a.lvp"), "--codec", "fallback", "--max-memory", "1K"]) == 2
    assert "a.npy: the array (64x64 uint16) needs 8.0 KiB" in capsys.readouterr().err
    assert main(["compress", str(series), str(out), "--codec", "fallback", "--max-memory", "100"]) == 0
    limits._WRITTEN.clear()  # as in another process
    for cmd in (["verify", str(out)], ["decompress", str(out), str(tmp_path / "back")]):
        capsys.readouterr()
        assert main([*cmd, "--max-memory", "1000"]) == 2  # the records (1.2 KiB each) are the file's word
        assert capsys.readouterr().err.startswith(f"lvpnet: {out}: IM0.dcm: DICOM file record 0 needs")
    assert not (tmp_path / "back").exists()


def test_info_prints_what_a_crafted_header_says_without_driving_the_terminal(seeds, tmp_path, capsys):
    """A lone surrogate in the header's writer made info exit 3 (UTF-8 cannot print it); an escape sequence or a
    newline in an archived file's name went to the terminal as it was."""
    from lvpnet.cli import main

    p = lvp_forge.split(seeds["int"])
    p.header["writer"] = "lvpnet \ud800 \x1b[31mred"
    path = tmp_path / "crafted.lvp"
    path.write_bytes(lvp_forge.join(p))
    capsys.readouterr()
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "writer: lvpnet \\ud800 \\x1b[31mred" in out and "\x1b" not in out
    assert main(["info", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["writer"] == "lvpnet \ud800 \x1b[31mred"  # --json: as it is


def test_a_file_cut_inside_its_preamble_is_damage_and_a_lvp_name_is_read_as_one(seeds, tmp_path):
    """A copy cut after its magic was 'not an lvpnet file' (exit 2) though FORMAT.md calls a cut file damaged;
    ``lvpnet.read`` of a .lvp whose magic is gone said 'unsupported input (expected .npy, ...)'."""
    cut = tmp_path / "cut.lvp"
    cut.write_bytes(seeds["int"][:10])
    with pytest.raises(DamagedError, match="10 bytes, the start of an lvpnet file cut short"):
        lvpnet.read(cut)
    bad = tmp_path / "bad.lvp"
    bad.write_bytes(b"\x00" + seeds["int"][1:])
    with pytest.raises(lvpnet.LvpnetError, match="bad.lvp: not an lvpnet file"):
        lvpnet.read(bad)


def test_what_earlier_writers_stored_still_reads(seeds, tmp_path, capsys):
    """Three things the session's checks must not refuse: NaN in a geometry (writers before 2026-12-07 stored
    it; info --json now gives it as null, strict JSON), a DICOM elements patch under the first key
    (elements_in_record, as a few files of one day have it), and a DICOM file that is named .lvp."""
    from lvpnet.cli import main

    p = lvp_forge.split(seeds["nifti"])
    p.header["origin"] = [float("nan")] + p.header["origin"][1:]
    old = tmp_path / "nan.lvp"
    old.write_bytes(lvp_forge.join(p))
    assert np.isnan(lvpnet.open(old).origin[0])
    capsys.readouterr()
    assert main(["info", str(old), "--json"]) == 0
    json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(f"not strict JSON: {c}"))

    p = lvp_forge.split(seeds["dicom"])
    dicom = p.header["source"]["metadata"]["dicom"]
    assert dicom["elements_in_record"] == 0
    dicom["elements_patch"] = {"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Patched^Name"}]}}
    patched = lvpnet.LvpFile(lvp_forge.join(p)).metadata["dicom"]["elements"][0]
    assert patched["00100010"]["Value"] == [{"Alphabetic": "Patched^Name"}]

    named = tmp_path / "scan.lvp"
    dicom_archive.write_folder(lvpnet.LvpFile(seeds["dicom"]).volume(), tmp_path / "restored")
    named.write_bytes((tmp_path / "restored" / "IM0.dcm").read_bytes())
    assert lvpnet.read(named).source_format == "dicom"
