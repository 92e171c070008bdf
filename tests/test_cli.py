"""The `lvpnet` command as a user runs it: round trips, exit codes, messages."""

import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from conftest import smooth_image

from lvpnet.cli import main
from lvpnet.codecs import get_codec
from lvpnet.lvpfile import LvpFile


def lvpnet_cmd(*args, check_rc=None):
    """Run the installed console script in a subprocess (what a user types)."""
    exe = os.path.join(os.path.dirname(sys.executable), "lvpnet")
    proc = subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=300)
    if check_rc is not None:
        assert proc.returncode == check_rc, proc.stderr
    return proc


def roundtrip_npy(tmp_path, a, *extra):
    src, lvp, out = tmp_path / "in.npy", tmp_path / "x.lvp", tmp_path / "out.npy"
    np.save(src, a)
    assert main(["compress", str(src), str(lvp), *extra]) == 0
    assert main(["verify", str(lvp)]) == 0
    assert main(["decompress", str(lvp), str(out)]) == 0
    back = np.load(out)
    assert back.dtype == a.dtype and back.shape == a.shape
    assert back.tobytes() == a.tobytes()
    return lvp


@pytest.mark.parametrize(
    "make",
    [
        lambda r: smooth_image(r, (30, 40), 0, 255, np.uint8),
        lambda r: smooth_image(r, (30, 40), -128, 127, np.int8),
        lambda r: smooth_image(r, (30, 40), 0, 65535, np.uint16),
        lambda r: r.integers(-32768, 32767, size=(30, 40), endpoint=True).astype(np.int16),
        lambda r: smooth_image(r, (30, 40), 0, 4095, np.uint16) | np.uint16(0x8000),
        lambda r: np.array([[-5]], np.int16),
        lambda r: smooth_image(r, (513, 511), -1024, 2000, np.int16),
        lambda r: np.full((9, 10), 42, np.uint16),
        lambda r: smooth_image(r, (3, 20, 24), 0, 1000, np.int16),
        lambda r: smooth_image(r, (2, 3, 20, 24), 0, 1000, np.uint16),
        lambda r: np.array([[np.nan, np.inf], [-np.inf, -0.0]], np.float32),
    ],
    ids=["uint8", "int8", "uint16", "int16-full", "12bit-overlay", "1x1", "513x511", "constant", "3d", "4d", "float"],
)
def test_cli_roundtrip(tmp_path, rng, make):
    roundtrip_npy(tmp_path, make(rng))


def test_cli_rgb_roundtrip(tmp_path, rng):
    a = rng.integers(0, 256, size=(2, 17, 19, 3)).astype(np.uint8)
    lvp = roundtrip_npy(tmp_path, a, "--rgb")
    assert json.loads(lvpnet_cmd("info", lvp, "--json", check_rc=0).stdout)["rgb"] is True


def test_compress_json_and_info_json(tmp_path, rng):
    a = smooth_image(rng, (4, 64, 64), -1000, 1000, np.int16)
    np.save(tmp_path / "a.npy", a)
    proc = lvpnet_cmd("compress", tmp_path / "a.npy", tmp_path / "a.lvp", "--json", check_rc=0)
    rep = json.loads(proc.stdout)
    size = (tmp_path / "a.lvp").stat().st_size
    assert rep["lvp_bytes"] == size and rep["original_bytes"] == a.nbytes and rep["dtype"] == "int16"
    assert rep["bits_per_sample"] == pytest.approx(8 * size / a.size, abs=1e-3)
    assert rep["ratio"] == pytest.approx(a.nbytes / size, abs=1e-3)
    # a fresh process loads the learned codec first: timed apart, not as encoding (2 s of 2.3 s before)
    assert rep["load_seconds"] > 0 and rep["encode_seconds"] > 0
    info = json.loads(lvpnet_cmd("info", tmp_path / "a.lvp", "--json", check_rc=0).stdout)
    for key in ("format_version", "codec", "model", "shape", "dtype", "slices", "file_bytes", "bits_per_sample"):
        assert key in info
    assert info["shape"] == [4, 64, 64] and info["dtype"] == "int16" and info["slices"] == 4
    assert info["file_bytes"] == size and info["format_version"] == "1.0"
    # decompress reports on stdout as compress does, one JSON object with --json
    rep = json.loads(lvpnet_cmd("decompress", tmp_path / "a.lvp", tmp_path / "b.npy", "--json", check_rc=0).stdout)
    assert rep["output"] == str(tmp_path / "b.npy") and rep["shape"] == [4, 64, 64] and rep["dtype"] == "int16"
    assert np.array_equal(np.load(tmp_path / "b.npy"), a)
    proc = lvpnet_cmd("decompress", tmp_path / "a.lvp", tmp_path / "c.nii", check_rc=0)
    assert proc.stdout.strip() == f"{tmp_path / 'a.lvp'} -> {tmp_path / 'c.nii'}: (4, 64, 64) int16"
    # integers up to 16 bits: the learned codec by default, its weights named in the file
    assert info["codec"] == "lvpnet" and info["model"] == get_codec("lvpnet").model_id()
    # ``lvpnet info a.lvp | head -1``: the reader leaves early; the command stops quietly, as a pipe's writer does
    exe = os.path.join(os.path.dirname(sys.executable), "lvpnet")
    info = subprocess.Popen([exe, "info", str(tmp_path / "a.lvp")], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    info.stdout.close()
    assert info.wait(timeout=60) == 141 and info.stderr.read() == b""


def test_nifti_input_roundtrip_keeps_header(tmp_path, rng):
    data = rng.integers(-32768, 32767, size=(20, 18, 5), endpoint=True).astype(np.int16)  # x, y, z
    aff = np.diag([0.8, 0.9, 3.0, 1.0])
    src = tmp_path / "scan.nii"
    nib.save(nib.Nifti1Image(data, aff), src)
    raw = bytearray(src.read_bytes())  # nibabel resets scaling on save: set scl_slope/scl_inter in place
    raw[112:120] = np.array([2.0, -100.0], "<f4").tobytes()
    src.write_bytes(bytes(raw))
    assert (nib.load(src).dataobj.slope, nib.load(src).dataobj.inter) == (2.0, -100.0)
    lvpnet_cmd("compress", src, tmp_path / "s.lvp", check_rc=0)
    lvpnet_cmd("decompress", tmp_path / "s.lvp", tmp_path / "back.nii.gz", check_rc=0)
    back = nib.load(tmp_path / "back.nii.gz")
    assert np.array_equal(np.asarray(back.dataobj.get_unscaled()), data)
    assert back.get_data_dtype() == np.int16
    assert np.allclose(back.affine, aff)
    assert (back.dataobj.slope, back.dataobj.inter) == (2.0, -100.0)  # nibabel keeps scaling on dataobj
    info = json.loads(lvpnet_cmd("info", tmp_path / "s.lvp", "--json", check_rc=0).stdout)
    assert info["source_format"] == "nifti" and info["shape"] == [5, 18, 20]


def test_dicom_input_roundtrip(tmp_path):
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    src = get_testdata_file("CT_small.dcm")
    lvpnet_cmd("compress", src, tmp_path / "ct.lvp", check_rc=0)
    lvpnet_cmd("decompress", tmp_path / "ct.lvp", tmp_path / "ct.npy", check_rc=0)
    ds = dcmread(src)
    assert np.array_equal(np.load(tmp_path / "ct.npy"), ds.pixel_array)
    info = json.loads(lvpnet_cmd("info", tmp_path / "ct.lvp", "--json", check_rc=0).stdout)
    assert info["source_format"] == "dicom"


@pytest.mark.parametrize(
    "setup, args_fn, rc, message",
    [
        (None, lambda d: ["compress", d / "missing.npy", d / "o.lvp"], 2, "not found"),
        ("complex", lambda d: ["compress", d / "in.npy", d / "o.lvp"], 2, "complex"),
        ("empty", lambda d: ["compress", d / "in.npy", d / "o.lvp"], 2, "empty"),
        ("6d", lambda d: ["compress", d / "in.npy", d / "o.lvp"], 2, "dimensions"),
        ("text", lambda d: ["info", d / "in.lvp"], 2, "not an lvpnet file"),
        ("empty-file", lambda d: ["verify", d / "in.lvp"], 2, "not an lvpnet file"),
        ("png", lambda d: ["decompress", d / "in.lvp", d / "o.npy"], 2, "not an lvpnet file"),
        ("ok", lambda d: ["compress", d / "in.npy", d / "o.txt"], 2, "must end in .lvp"),
        ("ok", lambda d: ["compress", d, d / "o.lvp"], 2, "inside the folder being compressed"),
        (None, lambda d: ["frobnicate"], 2, "invalid choice"),
    ],
)
def test_bad_input_exit_codes(tmp_path, setup, args_fn, rc, message):
    if setup == "complex":
        np.save(tmp_path / "in.npy", np.zeros((3, 3), np.complex64))
    elif setup == "empty":
        np.save(tmp_path / "in.npy", np.zeros((0, 3), np.uint8))
    elif setup == "6d":
        np.save(tmp_path / "in.npy", np.zeros((1,) * 4 + (2, 2), np.uint8))
    elif setup == "ok":
        np.save(tmp_path / "in.npy", np.zeros((3, 3), np.uint8))
    elif setup == "text":
        (tmp_path / "in.lvp").write_text("just text\n")
    elif setup == "empty-file":
        (tmp_path / "in.lvp").write_bytes(b"")
    elif setup == "png":
        (tmp_path / "in.lvp").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    before = set(os.listdir(tmp_path))
    proc = lvpnet_cmd(*args_fn(tmp_path))
    assert proc.returncode == rc
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) <= 3
    assert "input:" not in proc.stderr  # the file is named, not "input"
    assert set(os.listdir(tmp_path)) == before  # nothing written


def test_damaged_file_exit_1_and_no_output(tmp_path, rng):
    a = smooth_image(rng, (3, 32, 32), 0, 999, np.uint16)
    np.save(tmp_path / "a.npy", a)
    assert main(["compress", str(tmp_path / "a.npy"), str(tmp_path / "a.lvp")]) == 0
    data = bytearray((tmp_path / "a.lvp").read_bytes())
    f = __import__("lvpnet").open(tmp_path / "a.lvp")
    rec = f._reader.records[2]
    data[rec.offset + 3] ^= 0x04
    (tmp_path / "d.lvp").write_bytes(bytes(data))
    for cmd in (["verify", tmp_path / "d.lvp"], ["decompress", tmp_path / "d.lvp", tmp_path / "d.npy"]):
        proc = lvpnet_cmd(*cmd)
        assert proc.returncode == 1
        assert "slice 2" in proc.stderr and "checksum" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "d.npy").exists()
    truncated = tmp_path / "t.lvp"
    truncated.write_bytes((tmp_path / "a.lvp").read_bytes()[:-40])
    proc = lvpnet_cmd("verify", truncated)
    assert proc.returncode == 1 and "truncated" in proc.stderr


def test_debug_shows_traceback(tmp_path):
    (tmp_path / "x.lvp").write_text("text")
    plain = lvpnet_cmd("info", tmp_path / "x.lvp")
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    for args in (("--debug", "info", tmp_path / "x.lvp"), ("info", tmp_path / "x.lvp", "--debug")):
        proc = lvpnet_cmd(*args)  # before or after the command; the exit code stays the error's
        assert proc.returncode == 2 and "Traceback" in proc.stderr and plain.stderr.strip() in proc.stderr


def test_progress_bar_says_how_long_is_left():
    import io

    from lvpnet.cli import ProgressBar
    from lvpnet.progress import Progress

    now = [100.0]
    out = io.StringIO()
    bar = ProgressBar(enabled=True, clock=lambda: now[0], stream=out)
    for done, t in ((1, 100.0), (2, 102.5), (3, 105.0)):  # 2.5 s a slice after the first
        now[0] = t
        bar(Progress("encode", done, 300))
    lines = out.getvalue().split("\r")[1:]
    assert lines[0].rstrip().endswith("1/300 slices")  # no rate yet
    assert lines[1].rstrip().endswith("2/300 slices, 12:25 left")  # 298 x 2.5 s
    assert lines[2].rstrip().endswith("3/300 slices, 12:22 left")  # 297 x 2.5 s
    now[0] = 106.0
    bar(Progress("verify", 1, 300))  # a new stage times itself
    bar(Progress("verify", 300, 300))
    last = out.getvalue().split("\r")[-1]
    assert last.startswith(" verify") and last.rstrip().endswith("300/300 slices") and last.endswith("\n")


def _demo_rows(text: str) -> dict[str, list[str]]:
    return {line[:30].strip(): line[30:].split() for line in text.splitlines()
            if line.startswith(("lvpnet", "JPEG-XL", "JPEG-LS"))}


def test_demo_runs_and_is_identical():
    """The shipped weights are the default: one lvpnet row, the learned codec keeping the sample's
    slices, smaller than JPEG-XL and identical after decoding."""
    out = lvpnet_cmd("demo", check_rc=0).stdout
    rows = _demo_rows(out)
    # the sample's line with the table (it went to stderr), the values' size apart from the file's
    assert out.startswith("sample: sample_ct.nii.gz, (12, 512, 512) int16: 6,291,456 bytes of values, a ")
    assert "\nvalues (raw) " in out
    ours = [k for k in rows if k.startswith("lvpnet")]
    assert ours == ["lvpnet: 12 learned"] and all(r[-1] == "yes" for r in rows.values())
    assert float(rows[ours[0]][1]) < float(rows["JPEG-XL e7 lossless"][1])  # bits per sample
    assert "JPEG-LS lossless" in rows


def test_demo_also_shows_learned_weights_that_are_not_the_default(monkeypatch, capsys, tiny_model_path):
    from lvpnet import codecs, demo

    monkeypatch.setenv("LVPNET_WEIGHTS", str(tiny_model_path))
    monkeypatch.setattr(codecs.get_codec("lvpnet"), "_engine", None)  # load the weights the environment names
    monkeypatch.setattr(codecs, "shipped_is_default", lambda: False)  # weights whose card says they lost
    assert demo.run_demo() == 0
    rows = [k for k in _demo_rows(capsys.readouterr().out) if k.startswith("lvpnet")]
    assert len(rows) == 2 and rows[0] == "lvpnet: 12 fallback" and rows[1] == "lvpnet codec alone"


def test_bench_and_demo_name_what_they_refuse(tmp_path, capsys):
    """A complex input among several was refused as 'input: complex arrays ...'; `demo --keep FILE` gave
    the bare 'File exists' of mkdir."""
    good, bad = tmp_path / "good.npy", tmp_path / "c64.npy"
    np.save(good, np.zeros((8, 8), np.uint8))
    np.save(bad, np.zeros((8, 8), np.complex64))
    capsys.readouterr()
    assert main(["bench", str(good), str(bad)]) == 2
    assert capsys.readouterr().err.startswith(f"lvpnet: {bad}: complex arrays are not supported")
    keep = tmp_path / "p.lvp"
    keep.write_bytes(b"")
    assert main(["demo", "--keep", str(keep)]) == 2
    assert f"{keep}: is a file; --keep names a folder" in capsys.readouterr().err
    typo = tmp_path / "no" / "such" / "kept"  # was made, folders and all
    assert main(["demo", "--keep", str(typo)]) == 2
    assert "the folder it would be made in does not exist" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()


def test_runs_with_its_output_streams_closed(tmp_path):
    """Started with stderr closed (`2>&-`, as cron and daemons may), every command failed with "internal
    error: AttributeError: 'NoneType' object has no attribute 'isatty'" and wrote nothing."""
    np.save(tmp_path / "a.npy", np.arange(2 * 16 * 16, dtype=np.int16).reshape(2, 16, 16))
    exe = os.path.join(os.path.dirname(sys.executable), "lvpnet")
    for redirect in ("2>&-", "2>&- >&-"):
        out = tmp_path / "a.lvp"
        out.unlink(missing_ok=True)
        cmd = f'"{exe}" compress a.npy a.lvp --codec fallback {redirect} && "{exe}" verify a.lvp {redirect}'
        proc = subprocess.run(["bash", "-c", cmd], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and out.exists(), proc.stdout


def test_a_full_standard_output_is_named(tmp_path):
    """`--json > /dev/full` said "lvpnet: No space left on device" (exit 2) after the .lvp was written and
    verified, which read as the compress failing."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    np.save(tmp_path / "a.npy", np.arange(2 * 16 * 16, dtype=np.int16).reshape(2, 16, 16))
    exe = os.path.join(os.path.dirname(sys.executable), "lvpnet")
    with open("/dev/full", "w") as full:
        proc = subprocess.run([exe, "compress", "a.npy", "a.lvp", "--codec", "fallback", "--json"], cwd=tmp_path,
                              stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert proc.returncode == 2 and (tmp_path / "a.lvp").exists()
    assert "standard output (the command's own work is done): No space left on device" in proc.stderr


def test_the_safety_net_can_be_turned_off_and_its_choice_is_said(tmp_path, capsys):
    """BENCHMARKS.md's 'learned alone' said `--codec lvpnet`, which keeps the safety net: a user following it got
    a JPEG-XL file and no word of it. `--no-safety-net` keeps the learned codec's slices; the summary line
    names the codecs that kept the slices when the learned one did not keep them all."""
    np.save(tmp_path / "a.npy", np.zeros((2, 32, 32), np.uint8))  # a blank: the fallback's few bytes win
    assert main(["compress", str(tmp_path / "a.npy"), str(tmp_path / "a.lvp")]) == 0
    assert "slices by codec: fallback 2" in capsys.readouterr().out
    assert main(["compress", str(tmp_path / "a.npy"), str(tmp_path / "b.lvp"), "--codec", "lvpnet",
                 "--no-safety-net"]) == 0
    assert "slices by codec" not in capsys.readouterr().out
    assert LvpFile(tmp_path / "b.lvp").codec_counts() == {"lvpnet": 2}


def test_info_says_its_values_in_words(tmp_path, capsys):
    """`lvpnet info` printed Python's reprs: `codecs: {'fallback': 1}`, `spacing: None`, `rgb: False`."""
    np.save(tmp_path / "a.npy", np.zeros((2, 16, 16), np.uint8))
    assert main(["compress", str(tmp_path / "a.npy"), str(tmp_path / "a.lvp"), "--codec", "fallback"]) == 0
    capsys.readouterr()
    assert main(["info", str(tmp_path / "a.lvp")]) == 0
    lines = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in capsys.readouterr().out.splitlines())}
    assert (lines["codecs"], lines["spacing"], lines["rgb"], lines["shape"]) == ("fallback 2", "-", "no", "2 x 16 x 16")
    assert "{" not in "".join(lines.values()) and "None" not in "".join(lines.values())


def test_every_option_a_help_text_names_exists_on_that_command():
    """A help text that sends the user to an option the command lacks (``--no-safety-net`` on
    ``archive`` and ``bench``) fails with "unrecognized arguments"; every command has a help
    text for every option."""
    import argparse
    import re

    from lvpnet.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in sub.choices.items():
        options = {o for a in parser._actions for o in a.option_strings}
        for action in parser._actions:
            if action.help is argparse.SUPPRESS:
                continue
            assert action.help, f"lvpnet {name} {action.option_strings or action.dest}: no help text"
            for named in re.findall(r"(?<![\w-])--[a-z][a-z-]*", action.help):
                assert named in options, f"lvpnet {name} {action.option_strings}: its help names {named}"
        if name != "compress":
            assert "for compress" not in parser.format_help()


def test_compress_says_the_ratio_to_a_compressed_input_file_too(tmp_path, capsys):
    """A .nii.gz is smaller than its values: "67,650 -> 56,370 bytes, ratio 1.20" read as a 20% saving
    where the file shrank 9%. The line names the values and adds the ratio to the input file."""
    rng = np.random.default_rng(5)
    nib.save(nib.Nifti1Image(rng.integers(0, 60, (30, 20, 4)).astype(np.int16), np.eye(4)), tmp_path / "s.nii.gz")
    assert main(["compress", str(tmp_path / "s.nii.gz"), str(tmp_path / "s.lvp"), "--codec", "fallback"]) == 0
    said = capsys.readouterr().out
    size, lvp = (tmp_path / "s.nii.gz").stat().st_size, (tmp_path / "s.lvp").stat().st_size
    assert f"4,800 bytes of values -> {lvp:,} bytes" in said
    assert f"(to the input file's {size:,} bytes: {size / lvp:.2f})" in said
    assert main(["compress", str(tmp_path / "s.nii.gz"), str(tmp_path / "t.lvp"), "--codec", "fallback", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["input_bytes"] == size


def test_messages_that_point_the_way(tmp_path, capsys):
    """An empty .lvp says it may be a copy cut off; a .png output of a NIfTI's .lvp says what outputs
    there are, without a puzzling parenthesis; a folder of NIfTI files points to lvpnet archive."""
    import nibabel as nib

    (tmp_path / "empty.lvp").write_bytes(b"")
    assert main(["verify", str(tmp_path / "empty.lvp")]) == 2
    assert "empty (0 bytes): not an lvpnet file, or a copy of one cut off" in capsys.readouterr().err
    nib.save(nib.Nifti1Image(np.zeros((8, 9, 2), np.int16), np.eye(4)), tmp_path / "a.nii")
    assert main(["compress", str(tmp_path / "a.nii"), str(tmp_path / "a.lvp"), "--codec", "fallback"]) == 0
    capsys.readouterr()
    assert main(["decompress", str(tmp_path / "a.lvp"), str(tmp_path / "a.png")]) == 2
    said = capsys.readouterr().err
    assert "unsupported output type: use .npy, .nii or .nii.gz" in said and "made from a nifti file" in said
    folder = tmp_path / "bids"
    folder.mkdir()
    nib.save(nib.Nifti1Image(np.zeros((8, 9, 2), np.int16), np.eye(4)), folder / "b.nii.gz")
    assert main(["compress", str(folder), str(tmp_path / "b.lvp")]) == 2
    assert "use lvpnet archive SOURCE DEST" in capsys.readouterr().err


def test_a_colour_image_without_rgb_gets_a_note(tmp_path, capsys):
    """A colour .npy without --rgb was coded as 768 slices of 1024 x 3 pixels (26 times the time, 3.3 times
    the bytes), unsaid; the note names --rgb. A grey volume or one read with --rgb hears nothing."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (6, 5, 3), np.uint8)
    np.save(tmp_path / "rgb.npy", rgb)
    assert main(["compress", str(tmp_path / "rgb.npy"), str(tmp_path / "a.lvp"), "--codec", "fallback"]) == 0
    err = capsys.readouterr().err
    assert "lvpnet: note: the last axis holds 3 values: if this is a colour image, add --rgb" in err
    assert "6 grey slices of 5 x 3 pixels" in err
    assert main(["compress", str(tmp_path / "rgb.npy"), str(tmp_path / "b.lvp"), "--codec", "fallback", "--rgb"]) == 0
    np.save(tmp_path / "grey.npy", rng.integers(0, 255, (3, 6, 5), np.uint8))
    assert main(["compress", str(tmp_path / "grey.npy"), str(tmp_path / "c.lvp"), "--codec", "fallback"]) == 0
    assert "note" not in capsys.readouterr().err
    assert main(["bench", str(tmp_path / "rgb.npy"), "--codec", "fallback"]) == 0  # bench reads it alike
    assert f"lvpnet: note: {tmp_path / 'rgb.npy'}: the last axis holds 3 values" in capsys.readouterr().err


def test_training_without_its_corpus_says_where_it_looked(tmp_path):
    """From a fresh clone the corpus is absent: a FileNotFoundError traceback told nothing of --data."""
    r = subprocess.run([sys.executable, "-m", "lvpnet.train", "--config", "configs/lvpnet-v3-cpu.json", "--data",
                        str(tmp_path), "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=300,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"no training data in {tmp_path}" in r.stderr and "--data DIR" in r.stderr


def test_info_says_a_damaged_chunk_and_exits_1(tmp_path, capsys):
    """info reads every chunk's plane headers: one that could not be read was skipped in silence (exit 0, one
    fewer slice "coded against previous"); it is said, as verify says it, and the rest still shown."""
    a = np.arange(4 * 20 * 24, dtype=np.int16).reshape(4, 20, 24)
    lvpnet_path = tmp_path / "a.lvp"
    from lvpnet import Volume, compress_to_file

    compress_to_file(Volume(array=a, spacing=(np.float32(0.9), 0.5, 0.5)), lvpnet_path, codec="fallback")
    assert main(["info", str(lvpnet_path)]) == 0
    out = capsys.readouterr().out
    assert "spacing: 0.9 x 0.5 x 0.5" in out
    rec = LvpFile(lvpnet_path)._reader.records[2]
    data = bytearray(lvpnet_path.read_bytes())
    data[rec.offset + rec.length // 2] ^= 0x10
    lvpnet_path.write_bytes(bytes(data))
    assert main(["info", str(lvpnet_path)]) == 1
    out, err = capsys.readouterr()
    assert "slices: 4" in out and "lvpnet: damaged: " in err and "slice 2" in err and "lvpnet verify" in err
    assert main(["info", str(lvpnet_path), "--json"]) == 1
    out, err = capsys.readouterr()
    info = json.loads(out)
    assert [d["slice"] for d in info["damaged_slices"]] == [2]
    # the failure said as every --json failure is, on stdout, and in words on stderr
    assert info["exit_code"] == 1 and info["error"].startswith("damaged: ") and "slice 2" in info["error"]
    assert "lvpnet: damaged: " in err


def test_info_on_a_newer_writers_file_is_a_note_not_damage(tmp_path, capsys):
    """A healthy file whose chunks a newer lvpnet wrote (a codec version this one does not read) was called
    damaged, four times, exit 1: it is said once, as a note, and info exits 0 (verify says exit 2)."""
    import zlib

    from lvpnet import Volume, compress_to_file
    from lvpnet.container import INDEX_RECORD, PREAMBLE, TRAILER

    path = tmp_path / "ok.lvp"
    compress_to_file(Volume(array=np.arange(4 * 16 * 16, dtype=np.int16).reshape(4, 16, 16)), path, codec="fallback")
    b = bytearray(path.read_bytes())
    h_off, h_len, n, _, end = TRAILER.unpack(b[-TRAILER.size:])
    header = bytes(b[h_off:h_off + h_len])
    assert b'"version":1' in header
    b[h_off:h_off + h_len] = header.replace(b'"version":1', b'"version":7')
    crc = zlib.crc32(bytes(b[h_off:h_off + h_len + n * INDEX_RECORD.size]), zlib.crc32(bytes(b[:PREAMBLE.size])))
    b[-TRAILER.size:] = TRAILER.pack(h_off, h_len, n, crc, end)
    future = tmp_path / "future.lvp"
    future.write_bytes(bytes(b))
    assert main(["info", str(future)]) == 0
    err = capsys.readouterr().err
    assert err.count("lvpnet: note: 4 of 4 slices cannot be read by this lvpnet") == 1
    assert "version 7 is newer than this lvpnet" in err and "damaged" not in err


@pytest.mark.parametrize("size, said", [("-5G", "'-5G' is not a size"), ("0", "'0' is 0 bytes: give a size above 0"),
                                        ("0.5", "'0.5' is 0 bytes: give a size above 0")])
def test_a_size_that_is_no_size_is_said_as_such(tmp_path, capsys, size, said):
    """``--max-memory -5G`` got argparse's "expected one argument" (a word starting with '-' read as an
    option); it is said to be no size, as '0' is said to be no budget."""
    src = tmp_path / "a.npy"
    np.save(src, np.zeros((4, 4), np.uint8))
    try:
        rc = main(["compress", str(src), str(tmp_path / "a.lvp"), "--max-memory", size])
    except SystemExit as e:
        rc = e.code
    assert rc == 2 and said in capsys.readouterr().err and not (tmp_path / "a.lvp").exists()


def test_the_python_calls_take_what_their_neighbours_take(tmp_path):
    """``iter_compress_to_file`` took a Volume only (AttributeError on an array, which ``compress_to_file``
    takes); ``read`` took paths only ('embedded null byte' on the bytes ``open`` and ``decompress`` take);
    ``analyse_slice`` without weights (``load_model()`` gives None then) raised AttributeError."""
    import lvpnet
    from lvpnet import analysis
    from lvpnet.progress import run

    a = np.arange(64, dtype=np.uint8).reshape(8, 8)
    assert run(lvpnet.iter_compress_to_file(a, tmp_path / "a.lvp", codec="fallback")).lvp_bytes > 0
    assert np.array_equal(lvpnet.read((tmp_path / "a.lvp").read_bytes()).array, a)
    with pytest.raises(lvpnet.NotLvpError):
        lvpnet.read(b"not an lvpnet file")
    with pytest.raises(lvpnet.InputError, match="no model"):
        analysis.analyse_slice(a, None)
    with pytest.raises(lvpnet.InputError, match="series= and rgb= apply to DICOM folders and arrays"):
        lvpnet.read(tmp_path / "a.lvp", rgb=True)  # was ignored


def test_json_errors_are_a_json_object_too(tmp_path, capsys):
    """With --json a refused command printed nothing on stdout: a script had to read stderr's words."""
    assert main(["compress", str(tmp_path / "missing.npy"), str(tmp_path / "x.lvp"), "--json"]) == 2
    out = capsys.readouterr()
    assert json.loads(out.out) == {"error": f"{tmp_path / 'missing.npy'}: not found", "exit_code": 2}
    assert "not found" in out.err
    assert main(["compress", str(tmp_path / "missing.npy"), str(tmp_path / "x.lvp")]) == 2
    assert capsys.readouterr().out == ""  # without --json, stdout stays empty
    # a command line argparse refuses (only its usage on stderr, stdout empty, before)
    for words in (["compress", "a.npy", "x.lvp", "--codec", "nope"], ["compress"], ["verify", "--workers", "0"]):
        with pytest.raises(SystemExit) as e:
            main([*words, "--json"])
        out = capsys.readouterr()
        assert e.value.code == 2 and "error:" in out.err
        obj = json.loads(out.out)
        assert obj["exit_code"] == 2 and f"lvpnet {words[0]}: error: {obj['error']}" in out.err
        with pytest.raises(SystemExit):
            main(words)
        assert capsys.readouterr().out == ""


def test_info_says_a_damaged_dicom_file_record_and_names_its_file(tmp_path, capsys):
    """info checked the slices only: a flipped byte in a DICOM archive's file record read exit 0, where verify
    and decompress refuse the file; and every message said 'blob 0', never the DICOM file."""
    import shutil

    import pydicom

    src = tmp_path / "s"
    src.mkdir()
    shutil.copyfile(pydicom.data.get_testdata_file("CT_small.dcm"), src / "a.dcm")
    (src / "notes.txt").write_text("notes")
    lvp = tmp_path / "x.lvp"
    assert main(["compress", str(src), str(lvp), "--codec", "fallback"]) == 0
    blob = LvpFile(lvp).header["blobs"][0]
    data = bytearray(lvp.read_bytes())
    data[blob["offset"] + blob["length"] // 2] ^= 0x01
    lvp.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["info", str(lvp)]) == 1
    assert "blob 0, the record of a.dcm: checksum mismatch" in capsys.readouterr().err
    assert main(["info", str(lvp), "--json"]) == 1
    got = json.loads(capsys.readouterr().out)
    assert got["exit_code"] == 1 and got["damaged_files"][0]["file"] == "a.dcm" and "a.dcm" in got["error"]
    assert main(["verify", str(lvp)]) == 1
    assert "the record of a.dcm" in capsys.readouterr().err
