"""`lvpnet bench`: JSON contract, consistency with real .lvp bytes, DICOM sizes, chart, errors.

Timings are reported by bench but never asserted here.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from conftest import smooth_image

import lvpnet
from lvpnet import bench, classical
from lvpnet.cli import main
from lvpnet.codecs import get_codec
from lvpnet.codecs.base import Codec
from lvpnet.coding.profiles import LATEST
from lvpnet.volume import Volume

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
CLASSICAL_IDS = {"jpegxl-e9", "jpegxl-e7", "jpegls", "jpeg2k", "htj2k", "png"}


def _local(name: str) -> Path:
    path = TEST_FILES / name
    if not path.exists():  # pydicom downloads some test files on demand: never here
        pytest.skip(f"{name} is not bundled with this pydicom")
    return path


def _bench_json(capsys, *args) -> dict:
    capsys.readouterr()
    assert main(["bench", *map(str, args), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def inputs(tmp_path, rng):
    grey = tmp_path / "grey.npy"
    np.save(grey, smooth_image(rng, (3, 40, 56), 0, 4000, np.uint16))
    nii = tmp_path / "vol.nii.gz"
    img = nib.Nifti1Image(smooth_image(rng, (48, 40, 4), -1000, 1500, np.int16), np.diag([0.8, 0.8, 2.0, 1.0]))
    nib.save(img, nii)
    dcm = tmp_path / "series"
    dcm.mkdir()
    shutil.copy(_local("CT_small.dcm"), dcm / "CT_small.dcm")
    return grey, nii, dcm


def test_json_contract_and_consistency(tmp_path, capsys, inputs):
    grey, nii, dcm = inputs
    rep = _bench_json(capsys, grey, nii, dcm)
    assert rep["lvpnet_version"] == lvpnet.__version__
    assert set(rep["classical_codecs"]) == CLASSICAL_IDS
    model = get_codec("lvpnet").model_id()
    # the default learned codec reports its latent/pixel split where it kept slices; the fallback has none
    learned = [r for r in rep["inputs"] if r["lvpnet"]["codecs"].get("lvpnet")]
    assert learned and rep["stat_keys"] == list(bench.STAT_KEYS)
    recs = rep["inputs"]
    assert [r["input"] for r in recs] == [str(grey), str(nii), str(dcm)]
    for k, (r, path) in enumerate(zip(recs, (grey, nii, dcm))):
        vol = lvpnet.read(path)
        assert r["samples"] == vol.array.size and r["slices"] == vol.n_slices
        ours = r["lvpnet"]
        # our bytes are the bytes of the .lvp that `lvpnet compress` writes for the same input; for DICOM,
        # pixels against pixels: the .lvp of the pixels alone, and the one compress writes (the files' headers
        # and records with them) as archive_bytes, which the DICOM table compares with the files
        real = tmp_path / f"real{k}.lvp"
        capsys.readouterr()
        assert main(["compress", str(path), str(real)]) == 0
        said = capsys.readouterr().out
        if path == dcm:
            assert ours["archive_bytes"] == real.stat().st_size > ours["file_bytes"]
            # compress compares the .lvp with the files it holds, not with their pixels alone
            size = (dcm / "CT_small.dcm").stat().st_size
            assert f"1 file of {size:,} bytes -> {real.stat().st_size:,} bytes, ratio {size / real.stat().st_size:.2f}" in said
            from lvpnet.cli import info_dict

            assert info_dict(str(real))["dicom_ratio"] == round(size / real.stat().st_size, 4)  # info says it too
            pixels_only = tmp_path / "pixels.npy"
            np.save(pixels_only, vol.array)
            assert main(["compress", str(pixels_only), str(tmp_path / "pixels.lvp")]) == 0
            alone = lvpnet.open(tmp_path / "pixels.lvp")  # another header (its source format), the same chunks
            assert ours["chunk_bytes"] == sum(alone.chunk_bytes(i) for i in range(vol.n_slices))
        else:
            assert "archive_bytes" not in ours and ours["file_bytes"] == real.stat().st_size
            assert ours["bits_per_sample"] == pytest.approx(8 * real.stat().st_size / vol.array.size, abs=1e-4)
        assert ours["chunk_bytes"] + ours["container_bytes"] == ours["file_bytes"]
        assert ours["lossless"] is True and (ours["stats"] is None) == (r not in learned)
        assert sum(ours["codecs"].values()) == r["slices"]
        assert ours["model"] == (model if r in learned else None) and set(ours["versions"]) == set(ours["codecs"])
        latest = LATEST  # the bitstream the learned codec writes
        assert ours["versions"].get("lvpnet", [latest]) == [latest]
        assert sum(ours["codec_bytes"].values()) == ours["chunk_bytes"]
        # the six classical codecs, every one round-tripped
        assert set(r["classical"]) == CLASSICAL_IDS and r["classical_skipped"] is None
        for cid, c in r["classical"].items():
            assert c["lossless"] is True
            assert c["bits_per_sample"] == pytest.approx(8 * c["bytes"] / r["samples"], abs=1e-4)
            assert c["bytes"] == classical.measure(cid, vol.array, vol.rgb).bytes
            for k in ("encode_msps", "decode_msps"):
                assert c[k] is None or c[k] > 0
        best = min(r["classical"].values(), key=lambda c: c["bytes"])
        assert r["best_classical"]["bits_per_sample"] == best["bits_per_sample"]
        assert r["ratio_to_best"] == pytest.approx(ours["file_bytes"] / best["bytes"], abs=1e-4)

    # totals are sample-weighted means
    t = rep["totals"]
    n = sum(r["samples"] for r in recs)
    assert t["samples"] == n and t["inputs"] == 3
    assert t["lvpnet"]["file_bytes"] == sum(r["lvpnet"]["file_bytes"] for r in recs)
    assert t["lvpnet"]["bits_per_sample"] == pytest.approx(
        sum(r["lvpnet"]["bits_per_sample"] * r["samples"] for r in recs) / n, abs=1e-3
    )
    for cid in CLASSICAL_IDS:
        assert t["classical"][cid]["bits_per_sample"] == pytest.approx(
            sum(r["classical"][cid]["bits_per_sample"] * r["samples"] for r in recs) / n, abs=1e-3
        )
    best_total = sum(r["best_classical"]["bits_per_sample"] * r["samples"] for r in recs) / n
    assert t["best_classical_bits_per_sample"] == pytest.approx(best_total, abs=1e-3)
    assert t["ratio_to_best"] == pytest.approx(t["lvpnet"]["bits_per_sample"] / best_total, rel=1e-3)

    # DICOM extras for the DICOM folder only
    assert "dicom" not in recs[0] and "dicom" not in recs[1]
    d = recs[2]["dicom"]
    size = (dcm / "CT_small.dcm").stat().st_size
    assert d["folder_bytes"] == size == d["series_bytes"] and d["files"] == d["series_files"] == 1
    assert d["lvp_bytes"] == recs[2]["lvpnet"]["archive_bytes"]
    for key in ("jpegls_bytes", "jpeg2k_bytes"):  # 16-bit CT: well below the uncompressed file
        assert 0 < d[key] < size
    assert t["dicom"]["folder_bytes"] == size and t["dicom"]["inputs"] == 1


def test_dicom_reencoded_size_is_a_real_file(tmp_path):
    src = _local("CT_small.dcm")
    vol = lvpnet.read(src)
    d = bench.dicom_sizes(src, vol, lvp_bytes=1)
    assert d["method"] == {"jpegls": {"rewritten": 1}, "jpeg2k": {"rewritten": 1}}
    # rebuild the JPEG-LS file the way bench measured it and read it back with lvpnet
    streams = bench._pacs_codestreams(vol.array.reshape((-1,) + vol.slice_shape), 16, "jpegls")
    ds = pydicom.dcmread(src)
    from pydicom.encaps import encapsulate

    ds.PixelData = encapsulate(streams)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.file_meta.TransferSyntaxUID = bench.JPEGLS_LOSSLESS
    out = tmp_path / "ls.dcm"
    ds.save_as(out, implicit_vr=False, little_endian=True)
    assert out.stat().st_size == d["jpegls_bytes"]
    back = lvpnet.read(out)
    assert np.array_equal(back.array, vol.array)


def test_dicom_folder_with_other_files_and_multiframe_file(tmp_path, capsys):
    folder = tmp_path / "mr"
    folder.mkdir()
    shutil.copy(_local("MR_small.dcm"), folder / "MR_small.dcm")
    (folder / "notes.txt").write_bytes(b"x" * 1000)
    multi = _local("SC_rgb_rle_2frame.dcm")  # 2 frames, RGB, RLE-coded
    rep = _bench_json(capsys, folder, multi)
    d0, d1 = rep["inputs"][0]["dicom"], rep["inputs"][1]["dicom"]
    mr = (folder / "MR_small.dcm").stat().st_size
    assert d0["folder_bytes"] == mr + 1000 and d0["series_bytes"] == mr and d0["files"] == 2
    for key in ("jpegls_bytes", "jpeg2k_bytes"):
        assert 1000 < d0[key] < mr + 1000  # the text file counts unchanged
        assert d1[key] > 0
    assert rep["inputs"][1]["slices"] == 2 and rep["inputs"][1]["rgb"]
    assert rep["totals"]["dicom"]["inputs"] == 2
    # the .lvp made from the folder: its pixels alone too, as the folder's (the files' headers and records
    # were counted against lvpnet only: 9.0 bits per sample where the folder gave 7.0)
    lvp = tmp_path / "mr.lvp"
    assert main(["compress", str(folder), str(lvp), "--codec", "fallback"]) == 0
    rep2 = _bench_json(capsys, lvp, "--codec", "fallback")
    rep1 = _bench_json(capsys, folder, "--codec", "fallback")
    assert rep2["inputs"][0]["lvpnet"]["file_bytes"] == rep1["inputs"][0]["lvpnet"]["file_bytes"] < lvp.stat().st_size
    assert rep2["inputs"][0]["pixels_of_file_bytes"] == lvp.stat().st_size  # said under the table
    assert f"every header kept, is {lvp.stat().st_size:,} bytes" in bench.format_table(rep2)


def test_a_picked_series_is_measured_against_its_own_files(tmp_path, capsys):
    """``--series``: the .lvp holds the picked series' files (and the folder's other files), not the other
    series'; the 'as on disk' column counted the whole folder (0.618 instead of 0.864 in a user's trial)."""
    from pydicom import dcmread

    folder = tmp_path / "study"
    folder.mkdir()
    shutil.copy(_local("MR_small.dcm"), folder / "mr.dcm")
    ct = dcmread(_local("CT_small.dcm"))
    ct.save_as(folder / "ct.dcm")
    (folder / "notes.txt").write_bytes(b"x" * 100)
    capsys.readouterr()
    assert main(["bench", str(folder), "--series", str(ct.SeriesInstanceUID), "--codec", "fallback", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)["inputs"][0]["dicom"]
    ct_bytes = (folder / "ct.dcm").stat().st_size
    assert d["files"] == 2 and d["folder_bytes"] == ct_bytes + 100 and d["series_bytes"] == ct_bytes
    assert all(100 < d[k] < ct_bytes + 100 for k in ("jpegls_bytes", "jpeg2k_bytes"))  # no MR file in them


def test_rgb_and_float_inputs(tmp_path, capsys, rng):
    rgb = tmp_path / "rgb.npy"
    np.save(rgb, smooth_image(rng, (32, 48, 3), 0, 255, np.uint8))
    flt = tmp_path / "f.npy"
    np.save(flt, rng.normal(size=(16, 16)).astype(np.float32))
    capsys.readouterr()
    assert main(["bench", str(flt), str(tmp_path / "x.npy"), "--json"]) == 2  # missing second input
    rec = bench.bench_volume(Volume(np.load(rgb), rgb=True), "rgb")
    assert rec["rgb"] and rec["slices"] == 1 and set(rec["classical"]) == CLASSICAL_IDS
    assert all(c["lossless"] for c in rec["classical"].values())
    recf = bench.bench_volume(Volume(np.load(flt)), "f")
    assert recf["classical"] == {} and recf["classical_skipped"] and recf["best_classical"] is None
    assert recf["ratio_to_best"] is None and recf["lvpnet"]["lossless"]
    t = bench.totals([rec, recf])
    assert t["comparable_inputs"] == 1 and t["samples"] == rec["samples"] + recf["samples"]
    assert t["ratio_to_best"] == pytest.approx(rec["ratio_to_best"], rel=1e-3)
    # The table never sets lvpnet over both inputs beside classical codecs over the one they coded.
    table = bench.format_table(bench.report([rec, recf]))
    total_all, total_coded = [ln for ln in table.splitlines() if ln.startswith("total")][:2]
    assert total_all.startswith("total, all 2 inputs") and f"{t['lvpnet']['bits_per_sample']:.4f}" in total_all
    assert f"{t['best_classical_bits_per_sample']:.4f}" not in total_all
    assert total_coded.startswith("total, the 1 input the classical codecs code")
    assert f"{t['lvpnet_bits_per_sample_comparable']:.4f}" in total_coded
    assert f"{t['ratio_to_best']:.4f}" in total_coded


def test_plot_writes_png_and_table_on_stdout(tmp_path, capsys, inputs):
    grey, nii, _ = inputs
    out = tmp_path / "bits.png"
    capsys.readouterr()
    assert main(["bench", str(grey), str(nii), "--plot", str(out)]) == 0
    text = capsys.readouterr().out
    assert "JPEG-XL e9" in text and "HTJ2K" in text and "total" in text and "DICOM" not in text
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bits")]  # no temp left behind


@pytest.mark.parametrize("bad", ["missing.npy", "junk.txt", "empty_dir"])
def test_bad_input_exit_2_without_traceback(tmp_path, capsys, bad):
    (tmp_path / "junk.txt").write_text("not an image")
    (tmp_path / "empty_dir").mkdir()
    capsys.readouterr()
    assert main(["bench", str(tmp_path / bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lvpnet: ") and "Traceback" not in err


def test_plot_into_missing_folder_fails_before_work(tmp_path, capsys, rng):
    src = tmp_path / "a.npy"
    np.save(src, smooth_image(rng, (20, 20), 0, 100, np.uint8))
    assert main(["bench", str(src), "--plot", str(tmp_path / "no" / "x.png")]) == 2
    assert "does not exist" in capsys.readouterr().err


class _StatsCodec(Codec):
    """A fallback that reports made-up latent/pixel/estimate bits, as the learned codec will."""

    id = "fallback"

    def __init__(self):
        self._inner = get_codec("fallback")

    def encode(self, slice_, **kw):
        return self._inner.encode(slice_, **kw)

    def thorough_efforts(self, slice_):
        return self._inner.thorough_efforts(slice_)

    def decode(self, data, shape, dtype, version):
        return self._inner.decode(data, shape, dtype, version)

    def chunk_stats(self, data, shape, dtype, version):
        bits = 8 * len(data)
        return {"latent_bits": 16.0, "pixel_bits": bits - 24.0, "estimated_bits": bits - 20.0}


def test_codec_stats_columns_appear_when_reported(monkeypatch, rng):
    import lvpnet.codecs as codecs_mod

    assert get_codec("fallback").chunk_stats(b"\x02\x00", (1, 1), np.dtype(np.uint8), 1) is None
    monkeypatch.setitem(codecs_mod._INSTANCES, "fallback", _StatsCodec())
    vol = Volume(smooth_image(rng, (2, 24, 24), 0, 900, np.uint16))
    rep = lvpnet.progress.run(bench.bench_volumes([("v", vol, None)], codec="fallback", classical_ids=("jpegls",)))
    assert rep["stat_keys"] == ["latent_bits", "pixel_bits", "estimated_bits"]
    st = rep["inputs"][0]["lvpnet"]["stats"]
    assert st["slices"] == 2 and st["samples"] == vol.array.size
    assert st["latent_bits"] == 32.0
    assert st["pixel_bits"] == 8 * rep["inputs"][0]["lvpnet"]["chunk_bytes"] - 48
    assert st["latent_bits_per_sample"] == pytest.approx(32.0 / vol.array.size, abs=1e-4)
    assert rep["totals"]["lvpnet"]["stats"]["estimated_bits"] == st["estimated_bits"]
    text = bench.format_table(rep)
    assert "latent" in text and "estimate" in text


def test_bench_reports_learned_codec_alone_when_safety_net_used(tmp_path, tiny_model_path, monkeypatch):
    """With the learned codec asked for, bench shows its own figures beside the combined ones."""
    from lvpnet import codecs
    from lvpnet.bench import bench_paths, format_table
    from lvpnet.progress import run

    monkeypatch.setenv("LVPNET_WEIGHTS", str(tiny_model_path))
    monkeypatch.setattr(codecs.get_codec("lvpnet"), "_engine", None)  # load the weights the environment names
    rng = np.random.default_rng(3)
    a = np.clip(rng.normal(1000, 200, size=(2, 40, 48)), 0, 4095).astype(np.uint16)
    np.save(tmp_path / "a.npy", a)
    rep = run(bench_paths([str(tmp_path / "a.npy")], codec="lvpnet"))
    ours = rep["inputs"][0]["lvpnet"]
    own = ours["learned_only"]
    assert ours["codecs"].get("fallback")  # an untrained model loses: the safety net chose the fallback
    assert own is not None and own["file_bytes"] > ours["file_bytes"]
    assert "learned codec alone" in format_table(rep)


def test_plot_onto_a_folder_fails_before_work(tmp_path, capsys, rng):
    src = tmp_path / "a.npy"
    np.save(src, smooth_image(rng, (20, 20), 0, 100, np.uint8))
    assert main(["bench", str(src), "--plot", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_bench_reads_rgb_as_compress_does(tmp_path, capsys):
    """BENCHMARKS.md's RGB ultrasound could not be reproduced: bench had no --rgb and took it as 256 x 3
    grey slices. Its table says which way its ratio goes."""
    from lvpnet.cli import main

    rgb = np.zeros((2, 24, 32, 3), np.uint8)
    rgb[:, 4:20, 6:26] = (200, 120, 40)
    np.save(tmp_path / "c.npy", rgb)
    assert main(["bench", str(tmp_path / "c.npy"), "--rgb", "--json", "--codec", "fallback"]) == 0
    rec = json.loads(capsys.readouterr().out)["inputs"][0]
    assert rec["rgb"] is True and rec["slices"] == 2
    assert main(["bench", str(tmp_path / "c.npy"), "--codec", "fallback"]) == 0
    assert "lvpnet / best" in capsys.readouterr().out
    # a grey input beside a colour one: --rgb is for the colour one (both were refused)
    np.save(tmp_path / "g.npy", np.arange(2 * 24 * 32, dtype=np.uint16).reshape(2, 24, 32))
    assert main(["bench", str(tmp_path / "c.npy"), str(tmp_path / "g.npy"), "--rgb", "--json", "--codec",
                 "fallback"]) == 0
    recs = json.loads(capsys.readouterr().out)["inputs"]
    assert [(r["rgb"], r["slices"]) for r in recs] == [(True, 2), (False, 2)]


def test_plot_without_matplotlib_is_refused_before_the_bench(tmp_path, capsys, monkeypatch):
    """On a core-only install `bench --plot` ran the whole bench, then said matplotlib was missing and
    printed nothing of what it had measured."""
    grey = tmp_path / "g.npy"
    np.save(grey, np.zeros((8, 8), np.uint8))
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    monkeypatch.setattr(bench, "bench_paths", lambda *a, **k: pytest.fail("benched before refusing"))
    capsys.readouterr()
    assert main(["bench", str(grey), "--plot", str(tmp_path / "o.png")]) == 2
    assert "--plot needs matplotlib" in capsys.readouterr().err
