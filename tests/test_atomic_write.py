"""Writes are atomic: cancelled or failed writes leave nothing under the final name."""

import os

import numpy as np
import pytest
from conftest import smooth_image

import lvpnet
from lvpnet.codecs.fallback import FallbackCodec
from lvpnet.compressor import iter_compress_to_file


def test_cancel_mid_run_leaves_no_file(tmp_path, rng):
    v = lvpnet.Volume(array=smooth_image(rng, (6, 32, 32), 0, 999, np.int16))
    out = tmp_path / "c.lvp"
    job = iter_compress_to_file(v, out)
    p = next(job)
    assert (p.stage, p.done, p.total) == ("encode", 0, 6)  # said before the first slice
    p = next(job)
    assert (p.stage, p.done, p.total) == ("encode", 1, 6)
    next(job)
    job.close()  # what a Cancel button does
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_existing_file_and_leaves_no_temp(tmp_path, rng, monkeypatch):
    out = tmp_path / "keep.lvp"
    out.write_bytes(b"previous content")
    calls = {"n": 0}
    real_encode = FallbackCodec.encode

    def failing_encode(self, s, **kw):  # the default learned codec's safety net calls it too
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        return real_encode(self, s, **kw)

    monkeypatch.setattr(FallbackCodec, "encode", failing_encode)
    with pytest.raises(OSError):
        lvpnet.compress_to_file(smooth_image(rng, (5, 16, 16), 0, 99, np.uint8), out)
    assert out.read_bytes() == b"previous content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.lvp"]


def test_verification_failure_writes_nothing(tmp_path, rng, monkeypatch):
    real_decode = FallbackCodec.decode

    def wrong_decode(self, data, shape, dtype, version):
        out = real_decode(self, data, shape, dtype, version).copy()
        out.flat[0] ^= 1
        return out

    monkeypatch.setattr(FallbackCodec, "decode", wrong_decode)
    out = tmp_path / "bad.lvp"
    with pytest.raises(lvpnet.DamagedError):
        lvpnet.compress_to_file(smooth_image(rng, (2, 8, 8), 0, 99, np.uint8), out)
    assert list(tmp_path.iterdir()) == []


def test_progress_reports_every_slice(tmp_path, rng):
    v = lvpnet.Volume(array=smooth_image(rng, (3, 8, 8), 0, 99, np.uint8))
    seen = []
    result = lvpnet.progress.run(iter_compress_to_file(v, tmp_path / "p.lvp"), seen.append)
    assert [(p.stage, p.done) for p in seen] == [("encode", 0), ("encode", 1), ("encode", 2), ("encode", 3),
                                                 ("verify", 0), ("verify", 1), ("verify", 2), ("verify", 3)]
    assert result.lvp_bytes == (tmp_path / "p.lvp").stat().st_size


def test_a_short_write_is_named_with_the_users_path(tmp_path, monkeypatch):
    """numpy reports a short write (a full disk) as an OSError without errno: the message keeps its
    words (not "[Errno None] None") and names the file asked for, with no temporary left."""
    from lvpnet.errors import InputError
    from lvpnet.io import write
    from lvpnet.volume import Volume

    def short(f, arr, allow_pickle=False):
        f.write(b"\x93NUMPY")
        raise OSError("163840 requested and 47040 written")

    monkeypatch.setattr(np, "save", short)
    with pytest.raises(InputError) as e:
        write(Volume(array=np.zeros((4, 4), np.uint8)), tmp_path / "x.npy")
    assert str(e.value) == f"{tmp_path / 'x.npy'}: cannot write (163840 requested and 47040 written: is the disk full?)"
    assert list(tmp_path.iterdir()) == []


def test_compress_to_a_folder_is_refused_before_the_encode(tmp_path, monkeypatch):
    """``compress_to_file(a, folder)`` says so at once, not after encoding and verifying the volume."""
    from lvpnet import compressor
    from lvpnet.errors import InputError

    def never(*a, **k):
        raise AssertionError("encoded before the output was checked")

    monkeypatch.setattr(compressor, "encode_stream", never)
    with pytest.raises(InputError, match="is a folder"):
        lvpnet.compress_to_file(np.zeros((2, 8, 8), np.int16), tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        lvpnet.compress_to_file(np.zeros((2, 8, 8), np.int16), tmp_path / "no" / "a.lvp")
    assert list(tmp_path.iterdir()) == []


def test_long_names_and_temporary_names_that_globs_do_not_take(tmp_path):
    """A target of 225+ bytes (Linux takes 255) could not be written: its temporary name, 31 bytes longer,
    was 'File name too long' (an archive of such a file would not restore). And a .lvp's temporary file,
    left by a job killed outright, was named *.lvp: ``rglob("*.lvp")`` took it for a finished file."""
    from lvpnet.atomic import atomic_path, is_partial_name, partial_name

    for name in ("D" * 251 + ".dcm", "ä" * 125 + ".lvp", "x" * 248 + ".nii.gz"):
        target = tmp_path / name
        tmp = partial_name(target, ".nii.gz" if name.endswith(".gz") else "")
        assert len(tmp.name.encode()) <= 255 and is_partial_name(tmp.name)
        with atomic_path(target) as t:
            t.write_bytes(b"x")
        assert target.read_bytes() == b"x"
    (tmp_path / "sub").mkdir()
    with atomic_path(tmp_path / "sub" / "scan.lvp") as t:
        assert not t.name.endswith(".lvp") and t.name.startswith(".scan.lvp.partial-")
        assert list((tmp_path / "sub").rglob("*.lvp")) == []
        t.write_bytes(b"y")
    with atomic_path(tmp_path / "a.nii.gz") as t:
        assert t.name.endswith(".nii.gz")  # nibabel picks the format from it
        t.write_bytes(b"z")


def test_a_replaced_file_keeps_its_permissions_and_a_read_only_one_is_not_replaced(tmp_path):
    """An output replacing a private file (600) came out world-readable (644, the umask's); one made
    read-only (444) to keep it was replaced without a word, and writable again."""
    import os

    a = np.arange(64, dtype=np.uint16).reshape(8, 8)
    out = tmp_path / "p.lvp"
    lvpnet.compress_to_file(a, out, codec="fallback")
    os.chmod(out, 0o600)
    lvpnet.compress_to_file(a + 1, out, codec="fallback")
    assert (out.stat().st_mode & 0o777) == 0o600 and np.array_equal(lvpnet.decompress(out.read_bytes()), a + 1)
    os.chmod(out, 0o444)
    with pytest.raises(lvpnet.InputError, match="is read-only"):
        lvpnet.compress_to_file(a, out, codec="fallback")
    assert np.array_equal(lvpnet.decompress(out.read_bytes()), a + 1)


def test_a_write_in_another_pid_namespace_is_not_swept(tmp_path):
    """Containers sharing a host name and a folder, each with its own PIDs: one run swept the other's
    temporary file in the middle of its write (its PID was not running *here*), and that run failed with
    'file not found'. The host tag holds the PID namespace, so the other's file is another machine's."""
    import subprocess
    import sys

    from lvpnet.atomic import _HOST, clean_debris

    if not os.path.exists("/proc/self/ns/pid") or subprocess.run(["unshare", "--pid", "--fork", "true"],
                                                                 capture_output=True).returncode != 0:
        pytest.skip("cannot make a PID namespace here")
    code = "from lvpnet.atomic import _HOST; print(_HOST)"
    other = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", code],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert other and other != _HOST
    debris = tmp_path / f".x.lvp.partial-{other}-1-0123abcd"
    debris.write_bytes(b"a write going on in the other container")
    assert clean_debris(tmp_path) == [] and debris.exists()
