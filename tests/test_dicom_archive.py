"""DICOM in, DICOM out: a series archived as one .lvp and restored file by file.

Real series come from pydicom's bundled test files (never downloaded here);
the pixel cases (signed, overlay bits, MONOCHROME1, odd sizes, RGB planar 0/1,
palette, multi-frame, 8/12/16-bit, compressed sources) are written by the tests
with pydicom. Everything goes through the ``lvpnet`` command line: its ``main`` in this process
(arguments, messages and exit codes as a user gets them), and the installed console script in a
subprocess for the real series (``test_real_series_with_dicomdir_and_text_restored_byte_identical``)
and in ``test_cli``: each subprocess spends about 2 s starting torch, which made this file two
minutes of the suite.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import random
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import imagecodecs
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    JPEG2000,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLSLossless,
    JPEGLSNearLossless,
    MRImageStorage,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from lvpnet import dicom_archive
from lvpnet.cli import info_dict, main
from lvpnet.errors import DamagedError
from lvpnet.io import read
from lvpnet.lvpfile import LvpFile

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
NATIVE = {ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian}


def _local(name: str) -> Path:
    path = TEST_FILES / name
    if not path.exists():  # pydicom downloads some test files on demand: never here
        pytest.skip(f"{name} is not bundled with this pydicom")
    return path


def lvpnet_cmd(*args, check_rc=None, real=False):
    """The command line on ``args``: its ``main`` in this process, or with ``real`` the installed
    console script in a subprocess (what a user types). Returns what ``subprocess.run`` would."""
    if real:
        exe = os.path.join(os.path.dirname(sys.executable), "lvpnet")
        proc = subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=300)
    else:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main([str(a) for a in args])
            except SystemExit as e:  # argparse's usage errors
                rc = e.code
        proc = subprocess.CompletedProcess(args, rc, out.getvalue(), err.getvalue())
    if check_rc is not None:
        assert proc.returncode == check_rc, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _dcm(data: bytes | Path) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(io.BytesIO(data) if isinstance(data, bytes) else data, force=True)


def _ts(ds: Dataset) -> str:
    return str(ds.file_meta.TransferSyntaxUID)


_SKIP = {0x00020000, 0x00020010, 0x7FE00001, 0x7FE00002, 0x7FE00010}  # group length, TS, offset tables, pixels


def assert_same_elements(orig: Dataset, back: Dataset, photometric_may_change: bool = False):
    """Every element but transfer syntax, group length and pixel data is identical."""
    skip = set(_SKIP) | ({0x00280004} if photometric_may_change else set())
    for a, b in ((orig.file_meta, back.file_meta), (orig, back)):
        tags_a = {t for t in a.keys() if t not in skip}
        tags_b = {t for t in b.keys() if t not in skip}
        assert tags_a == tags_b
        for t in tags_a:
            assert a[t].VR == b[t].VR and a[t].value == b[t].value, a[t]


def compress_restore(tmp_path: Path, src: Path, *extra, subprocess: bool = False) -> tuple[Path, Path, dict]:
    """compress, info, verify, decompress to a folder, through the command line (``lvpnet_cmd``; with
    ``subprocess`` the installed console script)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    lvp, out = tmp_path / "a.lvp", tmp_path / "restored"
    lvpnet_cmd("compress", src, lvp, *extra, check_rc=0, real=subprocess)
    info = json.loads(lvpnet_cmd("info", lvp, "--json", check_rc=0, real=subprocess).stdout)
    assert re.search(r"files? rebuilt, each matching its SHA-256", lvpnet_cmd("verify", lvp, check_rc=0, real=subprocess).stdout)
    lvpnet_cmd("decompress", lvp, out, check_rc=0, real=subprocess)
    return lvp, out, info


def assert_restored(src_root: Path, out: Path, info: dict):
    """Uncompressed files byte-identical; compressed ones: same values, same elements, Explicit VR LE."""
    orig, back = _tree(src_root), _tree(out)
    assert set(back) == set(orig)
    assert [n for n in info["carried_verbatim"] if n.endswith(".dcm")] == []  # pixels went through the codec
    changed = set(info["transfer_syntax_changed"])
    for name, data in orig.items():
        if back[name] == data:
            assert name not in changed
            continue
        assert name in changed, f"{name} differs but is not reported"
        a, b = _dcm(data), _dcm(back[name])
        assert _ts(a) not in NATIVE and _ts(b) == ExplicitVRLittleEndian
        assert "PixelData" in b and not b["PixelData"].is_undefined_length
        assert_same_elements(a, b, photometric_may_change=name in info["photometric_changed"])
        np.testing.assert_array_equal(read(out / name).array, read(src_root / name).array)


# ---------------------------------------------------------------- writing DICOM with pydicom


def _pixel_bytes(frames: np.ndarray, big: bool, planar: int) -> bytes:
    if frames.ndim == 4 and planar == 1:
        frames = frames.transpose(0, 3, 1, 2)
    data = np.ascontiguousarray(frames, frames.dtype.newbyteorder(">" if big else "<")).tobytes()
    return data + b"\x00" * (len(data) % 2)


def write_image(
    path: Path,
    frames: np.ndarray,
    *,
    ts: str = ExplicitVRLittleEndian,
    bits_stored: int | None = None,
    photometric: str | None = None,
    planar: int = 0,
    series_uid: str = "1.2.3.4",
    instance: int = 1,
    position: float | None = None,
    multi_frame: bool = False,
    codestreams: list[bytes] | None = None,
    extra=None,
) -> Path:
    """One DICOM file of ``frames`` (``(n, rows, cols[, 3])`` stored values) in transfer syntax ``ts``."""
    rgb = frames.ndim == 4
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage if not rgb else SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ts
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.PatientName = "Archive^Test"
    ds.Modality = "MR" if not rgb else "OT"
    ds.StudyInstanceUID = "1.2.3"
    ds.SeriesInstanceUID = series_uid
    ds.InstanceNumber = instance
    ds.SeriesDescription = "lvpnet archive test"
    if position is not None:
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0, 0, position]
        ds.PixelSpacing = [0.5, 0.5]
    ds.Rows, ds.Columns = frames.shape[1:3]
    ds.SamplesPerPixel = 3 if rgb else 1
    if rgb:
        ds.PlanarConfiguration = planar
    ds.PhotometricInterpretation = photometric or ("RGB" if rgb else "MONOCHROME2")
    ba = frames.dtype.itemsize * 8
    ds.BitsAllocated = ba
    ds.BitsStored = bits_stored or ba
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if frames.dtype.kind == "i" else 0
    if multi_frame:
        ds.NumberOfFrames = frames.shape[0]
    if extra:
        extra(ds)
    if codestreams is not None:
        ds.PixelData = encapsulate(codestreams)
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    else:
        ds.PixelData = _pixel_bytes(frames, ts == ExplicitVRBigEndian, planar)
        ds["PixelData"].VR = "OB" if ba == 8 else "OW"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _overlay_values(rng, shape, dtype):
    """Stored values over the whole dtype: bits above BitsStored set (overlays), negative values."""
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


def _series(root: Path, rng, n: int, shape, dtype, names=None, **kw) -> list[Path]:
    names = names or [f"IM{i:04d}.dcm" for i in range(n)]
    frames = _overlay_values(rng, (n, *shape), dtype)
    return [
        write_image(root / names[i], frames[i : i + 1], instance=i + 1, position=float(i) * 2.5, **kw) for i in range(n)
    ]


# ---------------------------------------------------------------- real series from pydicom's files


def test_real_series_with_dicomdir_and_text_restored_byte_identical(tmp_path):
    """A real 7-slice MR series (pydicom's dicomdirtests), shuffled names, DICOMDIR and a note beside it."""
    series_dir = _local("dicomdirtests/98892003/MR700")
    src = tmp_path / "study"
    files = sorted(p for p in series_dir.iterdir() if p.is_file())
    shuffled = random.Random(5).sample(range(len(files)), len(files))
    for f, k in zip(files, shuffled):
        target = src / ("late" if k % 3 == 0 else "") / f"z{k:02d}_{f.name}"  # names unrelated to slice order
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, target)
    shutil.copyfile(_local("dicomdirtests/DICOMDIR"), src / "DICOMDIR")
    (src / "notes.txt").write_text("acquired on the old scanner\n")

    lvp, out, info = compress_restore(tmp_path, src, subprocess=True)  # as a user types it
    assert _tree(out) == _tree(src)  # every file, every byte, same names
    assert info["archived_files"] == len(files) + 2 and info["dicom_image_files"] == len(files)
    assert info["other_files"] == 2
    assert sorted(info["carried_verbatim"]) == ["DICOMDIR", "notes.txt"]
    assert info["transfer_syntax_changed"] == [] and info["not_archived"] == []
    assert info["dicom_source_bytes"] == sum(len(b) for b in _tree(src).values())
    # the codec still gets the slices in anatomical order; .npy output keeps working
    lvpnet_cmd("decompress", lvp, tmp_path / "a.npy", check_rc=0, real=True)
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), read(src).array)


def test_one_series_of_a_multi_series_folder(tmp_path):
    root = _local("dicomdirtests/98892003")
    proc = lvpnet_cmd("compress", root, tmp_path / "x.lvp")
    assert proc.returncode == 2 and "--series" in proc.stderr
    uid = str(_dcm(next((root / "MR700").iterdir())).SeriesInstanceUID)
    lvpnet_cmd("compress", root, tmp_path / "x.lvp", "--series", uid, check_rc=0)
    info = json.loads(lvpnet_cmd("info", tmp_path / "x.lvp", "--json", check_rc=0).stdout)
    assert info["not_archived"] and all(not n.startswith("MR700/") for n in info["not_archived"])
    lvpnet_cmd("decompress", tmp_path / "x.lvp", tmp_path / "out", check_rc=0)
    for name, data in _tree(tmp_path / "out").items():
        assert (root / name).read_bytes() == data
    assert set(_tree(tmp_path / "out")) == {f"MR700/{p.name}" for p in (root / "MR700").iterdir()}


def test_mr_small_in_every_encoding(tmp_path):
    """pydicom's MR_small in 8 transfer syntaxes, one folder (one series of identical slices)."""
    src = tmp_path / "mr"
    src.mkdir()
    names = ["MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_expb.dcm",
             "MR_small_padded.dcm", "MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm"]
    for n in names:
        if (TEST_FILES / n).exists():
            shutil.copyfile(TEST_FILES / n, src / n)
    lvp, out, info = compress_restore(tmp_path, src)
    assert_restored(src, out, info)
    compressed = {n for n in os.listdir(src) if _ts(_dcm(src / n)) not in NATIVE}
    assert set(info["transfer_syntax_changed"]) == compressed and len(compressed) >= 2
    for n in os.listdir(src):
        if n not in compressed:
            assert (out / n).read_bytes() == (src / n).read_bytes()


@pytest.mark.parametrize(
    "name",
    [
        "CT_small.dcm",  # 16-bit signed CT
        "SC_rgb_small_odd.dcm",  # RGB 3x3: odd-length pixel data
        "SC_rgb_small_odd_big_endian.dcm",  # 8-bit samples in big-endian OW words
        "examples_palette.dcm",  # palette colour: indices kept, LUTs in the header
        "examples_overlay.dcm",  # 12 of 16 bits stored, overlay planes
        "rtdose_expb.dcm",  # multi-frame, 32-bit, big endian
        "image_dfl.dcm",  # deflated
        "SC_rgb_rle_16bit_2frame.dcm",  # RLE, RGB, multi-frame
        "GDCMJ2K_TextGBR.dcm",  # JPEG 2000 lossless, YBR_RCT decoded to RGB
        "J2K_pixelrep_mismatch.dcm",  # JPEG 2000 coded unsigned, DICOM says signed
        "SC_rgb_jpeg_gdcm.dcm",  # JPEG lossless RGB
    ],
)
def test_pydicom_files_round_trip(tmp_path, name):
    path = _local(name)
    src = tmp_path / "src"
    src.mkdir()
    shutil.copyfile(path, src / name)
    lvp, out, info = compress_restore(tmp_path, src / name)  # a single file as input
    assert_restored(src, out, info)
    native = _ts(_dcm(path)) in NATIVE
    assert ((out / name).read_bytes() == path.read_bytes()) == native
    # the first file's elements: in its record, which gives back exactly what was read (a native file), or
    # that but for the few a compressed file's rewrite changed (its transfer syntax), which the header holds
    f = LvpFile(lvp)
    dicom = f.header["source"]["metadata"]["dicom"]
    assert "elements" not in dicom and ("elements_patch" not in dicom) == native
    if not native:
        assert "00020010" in dicom["elements_patch"] and len(dicom["elements_patch"]) <= 3
    read_back = json.dumps(f.metadata["dicom"]["elements"], sort_keys=True)
    assert read_back == json.dumps(read(src / name).metadata["dicom"]["elements"], sort_keys=True)
    if name == "GDCMJ2K_TextGBR.dcm":
        assert info["photometric_changed"] == [name] and _dcm(out / name).PhotometricInterpretation == "RGB"


# ---------------------------------------------------------------- pixel cases written with pydicom


CASES = {
    # name: (n files, frame shape, dtype, write_image keywords)
    "signed16_overlay_odd": (3, (17, 13), np.int16, {"bits_stored": 12}),
    "mono1_8bit_odd_implicit": (2, (7, 9), np.uint8, {"photometric": "MONOCHROME1", "ts": ImplicitVRLittleEndian}),
    "u12_overlay_bigendian": (2, (10, 11), np.uint16, {"bits_stored": 12, "ts": ExplicitVRBigEndian}),
    "rgb_planar0_odd": (1, (5, 7, 3), np.uint8, {"planar": 0}),
    "rgb_planar1_bigendian": (1, (6, 5, 3), np.uint8, {"planar": 1, "ts": ExplicitVRBigEndian}),
    "rgb16_planar1": (2, (4, 6, 3), np.uint16, {"planar": 1}),
}


def _palette(ds):
    ds.RedPaletteColorLookupTableDescriptor = [256, 0, 16]
    ds.GreenPaletteColorLookupTableDescriptor = [256, 0, 16]
    ds.BluePaletteColorLookupTableDescriptor = [256, 0, 16]
    ramp = (np.arange(256, dtype="<u2") * 257).tobytes()
    ds.RedPaletteColorLookupTableData = ramp
    ds.GreenPaletteColorLookupTableData = ramp[::-1]
    ds.BluePaletteColorLookupTableData = ramp


@pytest.mark.parametrize("case", sorted(CASES))
def test_pixel_cases_series_byte_identical(tmp_path, rng, case):
    n, shape, dtype, kw = CASES[case]
    src = tmp_path / "series"
    names = [f"file_{k}.dcm" for k in random.Random(case).sample(range(100), n)]  # names not in slice order
    _series(src, rng, n, shape, dtype, names=names, **kw)
    lvp, out, info = compress_restore(tmp_path, src)
    assert _tree(out) == _tree(src) and info["carried_verbatim"] == []
    back = read(src)
    np.testing.assert_array_equal(LvpFile(lvp).read_all(), back.array)


def test_palette_multiframe_and_odd_length_in_one_file(tmp_path, rng):
    frames = rng.integers(0, 256, size=(3, 9, 7), dtype=np.uint8)  # 189 bytes per frame: odd total
    src = tmp_path / "pal"
    write_image(src / "palette.dcm", frames, photometric="PALETTE COLOR", multi_frame=True, extra=_palette)
    lvp, out, info = compress_restore(tmp_path, src / "palette.dcm")
    assert _tree(out) == _tree(src) and info["carried_verbatim"] == []
    assert LvpFile(lvp).shape == (3, 9, 7)


def test_compressed_sources_rewritten_explicit_little_endian(tmp_path, rng):
    """JPEG-LS (signed 12-bit), JPEG 2000 reversible (.90 and .91 without a lossy flag), RLE multi-frame RGB."""
    src = tmp_path / "src"
    signed = rng.integers(-2048, 2048, size=(2, 15, 11), dtype=np.int16)
    for i in range(2):  # JPEG-LS codes the 12-bit two's complement pattern
        code = imagecodecs.jpegls_encode(signed[i].astype(np.uint16) & 0x0FFF)
        write_image(src / "jls" / f"{i}.dcm", signed[i : i + 1], ts=JPEGLSLossless, bits_stored=12,
                    codestreams=[code], instance=i + 1, position=i * 1.0)
    u16 = rng.integers(0, 4096, size=(1, 13, 17), dtype=np.uint16)
    code = imagecodecs.jpeg2k_encode(u16[0], level=0, reversible=True, codecformat=imagecodecs.JPEG2K.CODEC.J2K)
    for case, ts in (("j2k_90", JPEG2000Lossless), ("j2k_91", JPEG2000)):
        write_image(src / case / "x.dcm", u16, ts=ts, bits_stored=12, codestreams=[code])
    rgb = rng.integers(0, 256, size=(2, 7, 5, 3), dtype=np.uint8)
    rle = write_image(src / "rle" / "rgb.dcm", rgb, multi_frame=True)
    ds = _dcm(rle)
    ds.compress(RLELossless, rgb, encoding_plugin="pydicom")
    ds.save_as(rle, enforce_file_format=True)

    expected = {"jls": signed, "j2k_90": u16[0], "j2k_91": u16[0], "rle": rgb}
    for case, values in expected.items():
        lvp, out, info = compress_restore(tmp_path / f"run_{case}", src / case, subprocess=case == "jls")
        assert_restored(src / case, out, info)
        assert len(info["transfer_syntax_changed"]) == len(os.listdir(src / case))
        assert info["lossy_source_files"] == []
        np.testing.assert_array_equal(read(out).array, values)


# ---------------------------------------------------------------- lossy sources


@pytest.mark.parametrize("name", ["JPEG-lossy.dcm", "JPEGLSNearLossless_08.dcm", "693_J2KI.dcm"])
def test_lossy_source_refused_unless_allowed(tmp_path, name):
    path = _local(name)
    before = set(os.listdir(tmp_path))
    proc = lvpnet_cmd("compress", path, tmp_path / "x.lvp")
    assert proc.returncode == 2 and "lossy source" in proc.stderr and "--allow-lossy-source" in proc.stderr
    assert set(os.listdir(tmp_path)) == before
    assert main(["compress", str(path), str(tmp_path / "x.lvp"), "--allow-lossy-source"]) == 0
    assert info_dict(str(tmp_path / "x.lvp"))["lossy_source_files"] == [name]
    assert main(["decompress", str(tmp_path / "x.lvp"), str(tmp_path / "out")]) == 0
    np.testing.assert_array_equal(read(tmp_path / "out" / name).array, read(path).array)
    # rewritten without its lossy transfer syntax, the file says itself that it went through lossy coding
    back, src = _dcm(tmp_path / "out" / name), _dcm(path)
    assert _ts(back) == ExplicitVRLittleEndian != _ts(src)
    assert back.LossyImageCompression == "01"
    assert back.LossyImageCompressionMethod == src.get("LossyImageCompressionMethod", {
        JPEGBaseline8Bit: "ISO_10918_1", JPEGExtended12Bit: "ISO_10918_1", JPEGLSNearLossless: "ISO_14495_1", JPEG2000: "ISO_15444_1"}[_ts(src)])


def test_irreversible_jpeg2000_without_lossy_flag_is_refused(tmp_path, rng):
    a = rng.integers(0, 4096, size=(1, 16, 16), dtype=np.uint16)
    code = imagecodecs.jpeg2k_encode(a[0], level=40, reversible=False, codecformat=imagecodecs.JPEG2K.CODEC.J2K)
    path = write_image(tmp_path / "src" / "lossy.dcm", a, ts=JPEG2000, bits_stored=12, codestreams=[code])
    proc = lvpnet_cmd("compress", path, tmp_path / "x.lvp")
    assert proc.returncode == 2 and "9/7" in proc.stderr and not (tmp_path / "x.lvp").exists()


@pytest.mark.parametrize("kind", ["j2k", "jls"])
def test_a_lossy_codestream_under_a_lossless_only_syntax_is_refused(tmp_path, rng, kind):
    """An irreversible JPEG 2000 labelled .4.90 (lossless only), a NEAR = 3 JPEG-LS labelled .4.80: both
    were archived without --allow-lossy-source and restored as Explicit VR Little Endian with no word of
    their lossy history."""
    a = rng.integers(0, 4096, size=(1, 16, 16), dtype=np.uint16)
    if kind == "j2k":
        code = imagecodecs.jpeg2k_encode(a[0], level=40, reversible=False, codecformat=imagecodecs.JPEG2K.CODEC.J2K)
        ts, said = JPEG2000Lossless, "9/7"
    else:
        code = imagecodecs.jpegls_encode(a[0], level=3)
        ts, said = JPEGLSLossless, "NEAR=3"
    path = write_image(tmp_path / "src" / "lying.dcm", a, ts=ts, bits_stored=12, codestreams=[code])
    proc = lvpnet_cmd("compress", path, tmp_path / "x.lvp")
    assert proc.returncode == 2 and said in proc.stderr and "--allow-lossy-source" in proc.stderr
    assert not (tmp_path / "x.lvp").exists()
    assert main(["compress", str(path), str(tmp_path / "x.lvp"), "--allow-lossy-source"]) == 0
    assert info_dict(str(tmp_path / "x.lvp"))["lossy_source_files"] == ["lying.dcm"]
    # restored, it says both that it went through lossy coding and how (it had no method to keep)
    assert main(["decompress", str(tmp_path / "x.lvp"), str(tmp_path / "out")]) == 0
    back = _dcm(tmp_path / "out" / "lying.dcm")
    assert back.LossyImageCompression == "01"
    assert back.LossyImageCompressionMethod == ("ISO_15444_1" if kind == "j2k" else "ISO_14495_1")


# ---------------------------------------------------------------- damage, refusals, safety


def test_small_files_do_not_carry_their_header_twice(tmp_path):
    """A small DICOM file's .lvp is smaller than the file: its header is in its record, not also in the JSON
    header (MR_small grew from 9,830 to 10,474 bytes before; the palette frame's JSON header held 6.5 kB of
    elements, LUTs included, that record 0 holds too)."""
    for name in ("MR_small.dcm", "examples_palette.dcm"):
        path = _local(name)
        lvp = tmp_path / (name + ".lvp")
        lvpnet_cmd("compress", path, lvp, "--codec", "fallback", check_rc=0)
        f = LvpFile(lvp)
        assert f.header["source"]["metadata"]["dicom"]["elements_in_record"] == 0
        assert f.file_bytes < path.stat().st_size
        raw = lvp.read_bytes()
        assert b"InlineBinary" not in raw and b'"00280010"' not in raw  # no element in the JSON header
        back = f.volume().metadata["dicom"]["elements"][0]
        assert back["00080060"]["Value"] == [_dcm(path).Modality]
        assert ("00281201" in back) == (name == "examples_palette.dcm")  # the palette's red LUT, read back


def test_a_compressed_file_keeps_its_own_elements_without_a_second_copy(tmp_path):
    """A JPEG-LS file is archived as its Explicit VR rewrite, whose record gives other elements (the transfer
    syntax): the JSON header held all the source's elements besides the record (MR_small_jpeg_ls_lossless:
    6,124 bytes grew to 10,721); now only the few that differ."""
    from lvpnet.io.dicom import elements_of

    path = _local("MR_small_jpeg_ls_lossless.dcm")
    lvp = tmp_path / "jls.lvp"
    lvpnet_cmd("compress", path, lvp, "--codec", "fallback", check_rc=0)
    f = LvpFile(lvp)
    dicom = f.header["source"]["metadata"]["dicom"]
    # under a key of its own: a reader that knows no patch shows no elements rather than the rewrite's
    assert dicom["elements_in_record_patched"] == 0 and "elements" not in dicom and "elements_in_record" not in dicom
    assert set(dicom["elements_patch"]) == {"00020000", "00020010"}
    assert b'"00280010"' not in lvp.read_bytes()
    want = elements_of(_dcm(path))
    got = f.metadata["dicom"]["elements"][0]
    assert json.dumps(got, sort_keys=True) == json.dumps(want, sort_keys=True)
    assert got["00020010"]["Value"] == ["1.2.840.10008.1.2.4.80"] and "elements_patch" not in f.metadata["dicom"]
    assert f.file_bytes < 7600
    # a patch is kept only where it is small; else the header holds the elements themselves
    from lvpnet.dicom_archive import elements_patch

    record = {t: {"vr": "LO", "Value": [f"v{t}"]} for t in ("00100010", "00100020", "00100030", "00100040")}
    assert elements_patch(record, {**record, "00100010": {"vr": "LO", "Value": ["other"]}}) == {
        "00100010": {"vr": "LO", "Value": ["other"]}}
    assert elements_patch(record, {t: {"vr": "LO", "Value": ["x"]} for t in record}) is None  # all differ
    assert elements_patch(None, record) is None and elements_patch(record, record) == {}


def test_flipped_byte_in_a_file_record_is_detected_and_nothing_written(tmp_path, rng, capsys):
    src = tmp_path / "s"
    _series(src, rng, 3, (9, 8), np.int16, bits_stored=12)
    (src / "readme.txt").write_text("hello")
    lvp = tmp_path / "a.lvp"
    lvpnet_cmd("compress", src, lvp, check_rc=0)
    header = LvpFile(lvp).header
    good = lvp.read_bytes()
    for k, blob in enumerate(header["blobs"]):
        for where in (3, blob["length"] // 2, blob["length"] - 1):  # record prefix, JSON, compressed body
            data = bytearray(good)
            data[blob["offset"] + where] ^= 0x20
            bad = tmp_path / "bad.lvp"
            bad.write_bytes(bytes(data))
            for cmd in (["verify", bad], ["decompress", bad, tmp_path / "out"]):
                if k == 0 and where == 3:  # as a user runs it
                    proc = lvpnet_cmd(*cmd)
                    rc, err = proc.returncode, proc.stderr
                else:
                    rc, err = main([str(c) for c in cmd]), capsys.readouterr().err
                assert rc == 1 and f"blob {k}" in err and "checksum" in err, err
            assert sorted(os.listdir(tmp_path)) == ["a.lvp", "bad.lvp", "s"]  # no folder, no temporary


def test_damaged_slice_writes_no_folder(tmp_path, rng):
    src = tmp_path / "s"
    _series(src, rng, 2, (9, 8), np.uint16)
    lvp = tmp_path / "a.lvp"
    lvpnet_cmd("compress", src, lvp, check_rc=0)
    data = bytearray(lvp.read_bytes())
    rec = LvpFile(lvp)._reader.records[1]
    data[rec.offset + rec.length // 2] ^= 0x01
    lvp.write_bytes(bytes(data))
    proc = lvpnet_cmd("decompress", lvp, tmp_path / "out")
    assert proc.returncode == 1 and "slice 1" in proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["a.lvp", "s"]


def test_output_rules(tmp_path, rng):
    src = tmp_path / "s"
    _series(src, rng, 2, (6, 6), np.uint16)
    lvp = tmp_path / "a.lvp"
    lvpnet_cmd("compress", src, lvp, check_rc=0)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    proc = lvpnet_cmd("decompress", lvp, tmp_path / "full")
    assert proc.returncode == 2 and "never over files" in proc.stderr
    assert os.listdir(tmp_path / "full") == ["keep.txt"]
    (tmp_path / "empty").mkdir()  # an empty folder is fine
    lvpnet_cmd("decompress", lvp, tmp_path / "empty", check_rc=0)
    assert _tree(tmp_path / "empty") == _tree(src)
    proc = lvpnet_cmd("decompress", lvp, tmp_path / "one.dcm")  # several files do not fit one .dcm
    assert proc.returncode == 2 and "2 files" in proc.stderr and not (tmp_path / "one.dcm").exists()
    # a single-file archive may be written to a .dcm name
    lvpnet_cmd("compress", src / "IM0000.dcm", tmp_path / "one.lvp", check_rc=0)
    lvpnet_cmd("decompress", tmp_path / "one.lvp", tmp_path / "one.dcm", check_rc=0)
    assert (tmp_path / "one.dcm").read_bytes() == (src / "IM0000.dcm").read_bytes()
    # a .lvp made from an array cannot become DICOM files
    np.save(tmp_path / "a.npy", np.zeros((4, 4), np.uint8))
    lvpnet_cmd("compress", tmp_path / "a.npy", tmp_path / "n.lvp", check_rc=0)
    proc = lvpnet_cmd("decompress", tmp_path / "n.lvp", tmp_path / "nfolder")
    assert proc.returncode == 2 and "was made from a numpy file" in proc.stderr and not (tmp_path / "nfolder").exists()
    proc = lvpnet_cmd("compress", tmp_path / "a.npy", tmp_path / "m.lvp", "--allow-lossy-source")
    assert proc.returncode == 2 and "DICOM input only" in proc.stderr


def test_file_record_names_cannot_escape_the_folder(tmp_path, rng):
    src = tmp_path / "s"
    _series(src, rng, 1, (4, 4), np.uint8)
    vol = dicom_archive.build_archive(read(src), src)
    assert [n for n, _ in dicom_archive.iter_files(vol)] == ["IM0000.dcm"]
    for evil in ("../evil.dcm", "/etc/evil", "a/../../b", ""):
        blob = vol.blobs[0]
        n = int.from_bytes(blob[8:12], "little")
        head = json.loads(blob[12 : 12 + n])
        head["name"] = evil
        raw = json.dumps(head).encode()
        bad = dataclasses.replace(vol, blobs=[blob[:8] + len(raw).to_bytes(4, "little") + raw + blob[12 + n :]])
        with pytest.raises(DamagedError, match="file name"):
            list(dicom_archive.iter_files(bad))


def test_rebuilt_file_checksum_guards_the_pixels(rng, tmp_path):
    """Different pixels with the same records: the restored file fails its SHA-256."""
    src = tmp_path / "s"
    _series(src, rng, 1, (5, 5), np.uint16)
    vol = dicom_archive.build_archive(read(src), src)
    vol.array = vol.array.copy()
    vol.array.flat[3] ^= 1
    with pytest.raises(DamagedError, match="SHA-256"):
        list(dicom_archive.iter_files(vol))


def test_ybr_full_422_uncompressed_rebuilt_byte_identical(tmp_path):
    path = _local("SC_ybr_full_422_uncompressed.dcm")  # marked lossy (it was subsampled): needs the flag
    lvp, out = tmp_path / "y.lvp", tmp_path / "out"
    assert main(["compress", str(path), str(lvp), "--allow-lossy-source"]) == 0
    assert main(["decompress", str(lvp), str(out)]) == 0
    assert (out / path.name).read_bytes() == path.read_bytes()
    assert info_dict(str(lvp))["carried_verbatim"] == []


def test_files_that_cannot_be_rebuilt_are_kept_whole(tmp_path, rng, monkeypatch):
    """When the pixel bytes cannot be serialised again (or a compressed file rewritten), the file is kept whole."""
    src = tmp_path / "s"
    _series(src, rng, 2, (6, 7), np.int16)
    code = imagecodecs.jpegls_encode(rng.integers(0, 4096, size=(6, 7), dtype=np.uint16))
    write_image(tmp_path / "c" / "jls.dcm", np.zeros((1, 6, 7), np.uint16), ts=JPEGLSLossless, codestreams=[code])
    monkeypatch.setattr(dicom_archive, "_pixel_spec", lambda *a, **k: None)
    monkeypatch.setattr(dicom_archive, "_rewrite_native", lambda *a, **k: None)
    for case in (src, tmp_path / "c"):
        lvp, out, info = compress_restore(tmp_path / f"run_{case.name}", case)
        assert _tree(out) == _tree(case)
        assert sorted(info["carried_verbatim"]) == sorted(os.listdir(case)) and info["transfer_syntax_changed"] == []


def test_a_multiframe_ultrasound_cine_through_the_learned_codec(tmp_path, rng):
    """A multi-frame RGB cine (static coloured overlay, a changing grey sector) as a user archives
    it with the learned codec: frames are coded against the one before (bitstream 8), and the
    file comes back byte-identical."""
    frames = np.zeros((4, 40, 56, 3), np.uint8)
    frames[:, 2:8, 3:40] = rng.choice(np.array([0, 255], np.uint8), size=(6, 37, 1), p=[0.6, 0.4]) * [1, 1, 0]
    for t in range(4):
        frames[t, 14:34, 10:46] = rng.integers(10, 120, (20, 36, 1))
    src = tmp_path / "us"
    write_image(src / "cine.dcm", frames, multi_frame=True)
    lvp, out, info = compress_restore(tmp_path, src / "cine.dcm", "--codec", "lvpnet")
    assert _tree(out) == _tree(src) and info["carried_verbatim"] == []
    assert info["coded_against_previous"] >= 1 and LvpFile(lvp).shape == (4, 40, 56, 3)


def test_python_api_archives_a_dicom_folder_as_the_cli_does(tmp_path):
    """``lvpnet.compress_path`` on a DICOM folder: the same restorable archive as ``lvpnet compress``."""
    import lvpnet

    src = tmp_path / "study"
    shutil.copytree(_local("dicomdirtests/98892003/MR700"), src)
    (src / "notes.txt").write_text("beside the series\n")
    result = lvpnet.compress_path(src, tmp_path / "api.lvp", codec="fallback")
    assert result.slices > 0
    main(["compress", str(src), str(tmp_path / "cli.lvp"), "--codec", "fallback"])
    assert LvpFile(tmp_path / "api.lvp").header["source"] == LvpFile(tmp_path / "cli.lvp").header["source"]
    out = tmp_path / "restored"
    assert main(["decompress", str(tmp_path / "api.lvp"), str(out)]) == 0
    assert _tree(out) == _tree(src)  # every file, every byte


def test_summaries_count_the_folders_other_files_apart(tmp_path):
    """A series folder with a note: verify and decompress said "2 DICOM files", counting the note."""
    src = tmp_path / "s"
    src.mkdir()
    shutil.copy(_local("CT_small.dcm"), src / "IM0.dcm")
    (src / "notes.txt").write_text("ward 4")
    lvp = tmp_path / "a.lvp"
    lvpnet_cmd("compress", src, lvp, "--codec", "fallback", check_rc=0)
    out = lvpnet_cmd("verify", lvp, check_rc=0).stdout
    assert "OK (1 slice, 2 files rebuilt, each matching its SHA-256 (1 DICOM, 1 other)" in out
    assert lvpnet_cmd("decompress", lvp, tmp_path / "r", check_rc=0).stdout.strip().endswith("2 files (1 DICOM, 1 other)")


def test_a_volume_changed_since_it_was_read_is_refused_before_coding_and_stored_without_its_files(tmp_path):
    """A Volume read from a DICOM .lvp carries its files' records; once its array changed (a filter, a crop) they
    restore nothing: compress_to_file coded the whole volume and then called the new file damaged, and with
    verify=False wrote a file that no read could open. Now it is refused before any coding, with the way out:
    ``without_files()`` stores the values and the metadata, without the records."""
    import lvpnet

    lvpnet.compress_path(_local("MR_small.dcm"), tmp_path / "s.lvp", codec="fallback")
    v = lvpnet.read(tmp_path / "s.lvp")
    same = tmp_path / "same.lvp"
    lvpnet.compress_to_file(v, same, codec="fallback")  # unchanged: stored again, files and all
    assert lvpnet.read(same).blobs == v.blobs
    for changed in (v.array // 2, v.array[:, ::-1].copy(), v.array[:, :32].copy()):
        edited = dataclasses.replace(v, array=changed)
        for write in (lambda e=edited: lvpnet.compress_to_file(e, tmp_path / "p.lvp", codec="fallback"),
                      lambda e=edited: lvpnet.compress(e, codec="fallback", verify=False)):
            with pytest.raises(lvpnet.InputError, match=r"does not hold the pixels of the DICOM files .* "
                                                        r"volume\.without_files\(\)"):
                write()
        assert not (tmp_path / "p.lvp").exists()
    edited = dataclasses.replace(v, array=v.array // 2).without_files()
    lvpnet.compress_to_file(edited, tmp_path / "p.lvp", codec="fallback")
    back = lvpnet.read(tmp_path / "p.lvp")
    np.testing.assert_array_equal(back.array, v.array // 2)
    assert back.blobs == [] and back.metadata["dicom"]["elements"] == v.metadata["dicom"]["elements"]
    assert "archive" not in back.metadata["dicom"] and v.blobs  # the original volume is left as it was


def test_a_source_name_the_archive_cannot_restore_is_refused_as_input(tmp_path):
    """A file named with a backslash (as unzipping a Windows-made zip leaves them) failed compress with exit 1,
    the code of a damaged file: 'DICOM file record with an invalid file name'. It is the input's, exit 2."""
    src = tmp_path / "src"
    src.mkdir()
    shutil.copyfile(_local("CT_small.dcm"), src / "IM\\0001")
    proc = lvpnet_cmd("compress", src, tmp_path / "x.lvp", "--codec", "fallback")
    assert proc.returncode == 2 and "IM\\0001: a backslash in its name" in proc.stderr
    assert not (tmp_path / "x.lvp").exists()
