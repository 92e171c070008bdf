"""Hostile folders, inputs, output paths and signals (issue 21).

A FIFO in a DICOM folder must not hang ``compress``, a link to ``/dev/zero`` must not be
read, links are followed only with ``--follow-symlinks``; SIGTERM and SIGHUP leave no
temporary file, and what SIGKILL leaves is removed by the next run writing to that folder;
an output path that cannot be written is refused before the encode; a NIfTI header
declaring gigabytes in a tiny file is refused before anything is allocated. Every command
runs in a subprocess with a timeout, so a hang fails the test instead of stalling it.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from lvpnet.atomic import clean_debris, partial_name

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fuzz"))
from fuzz_lvp import _dicom_series  # noqa: E402

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
_RUNNER = textwrap.dedent("""
    import resource, sys
    from lvpnet.cli import main
    rc = main(sys.argv[1:])
    # VmHWM: this process's own peak (ru_maxrss would count the pytest process it was forked from)
    print(f"RSS_MB={int(open('/proc/self/status').read().split('VmHWM:')[1].split()[0]) // 1024}", file=sys.stderr)
    sys.exit(rc)
""")


def cli(*args, timeout=120) -> tuple[int, str, int]:
    """(exit code, stderr, peak RSS in MB) of ``lvpnet ARGS`` in a fresh process."""
    proc = subprocess.run([sys.executable, "-c", _RUNNER, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=ENV)
    rss = [int(line.split("=")[1]) for line in proc.stderr.splitlines() if line.startswith("RSS_MB=")]
    return proc.returncode, proc.stderr, rss[0] if rss else -1


def _partials(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name)


@pytest.fixture
def hostile_series(tmp_path):
    """A DICOM series folder with a FIFO, a link to /dev/zero and a link to a file outside it."""
    src = tmp_path / "series"
    src.mkdir()
    _dicom_series(src, np.random.default_rng(3))
    os.mkfifo(src / "pipe.dcm")
    os.symlink("/dev/zero", src / "zero.dcm")
    secret = tmp_path / "secret.txt"
    secret.write_text("outside the folder\n")
    os.symlink(secret, src / "secret.txt")
    return src


def test_fifo_and_links_in_a_folder_are_skipped_with_a_note(hostile_series, tmp_path):
    out = tmp_path / "s.lvp"
    rc, err, rss = cli("compress", hostile_series, out, "--codec", "fallback", "--json")
    assert rc == 0, err
    assert "pipe.dcm: skipped: not a regular file (a FIFO)" in err
    assert "zero.dcm: skipped: symbolic link" in err and "secret.txt: skipped: symbolic link" in err
    rc, err, _ = cli("decompress", out, tmp_path / "back")
    assert rc == 0, err
    assert sorted(p.name for p in (tmp_path / "back").iterdir()) == ["IM0.dcm", "IM1.dcm", "notes.txt"]


def test_links_are_followed_only_when_asked(hostile_series, tmp_path):
    out = tmp_path / "s.lvp"
    rc, err, _ = cli("compress", hostile_series, out, "--codec", "fallback", "--follow-symlinks")
    assert rc == 0, err
    assert "zero.dcm: skipped: not a regular file (a device)" in err and "secret.txt" not in err
    rc, err, _ = cli("decompress", out, tmp_path / "back")
    assert rc == 0, err
    assert (tmp_path / "back" / "secret.txt").read_text() == "outside the folder\n"


def test_special_files_given_as_input_are_refused(tmp_path):
    os.mkfifo(tmp_path / "pipe.npy")
    for src in (tmp_path / "pipe.npy", Path("/dev/zero")):
        rc, err, _ = cli("compress", src, tmp_path / "x.lvp", timeout=60)
        assert rc == 2 and "not a regular file" in err, err
    assert not (tmp_path / "x.lvp").exists()
    os.mkfifo(tmp_path / "pipe.lvp")
    for cmd in ("verify", "info"):
        rc, err, _ = cli(cmd, tmp_path / "pipe.lvp", timeout=60)
        assert rc == 2 and "not a regular file (a FIFO)" in err, err


def test_output_paths_that_cannot_be_written_are_refused_before_the_encode(tmp_path):
    src = tmp_path / "a.npy"
    np.save(src, np.zeros((4, 5), np.uint8))
    (tmp_path / "dir.lvp").mkdir()
    for out, why in ((tmp_path / "dir.lvp", "is a folder"), (tmp_path / "missing" / "x.lvp", "does not exist")):
        rc, err, _ = cli("compress", src, out, "--codec", "fallback")
        assert rc == 2 and why in err and "encode" not in err, err
    rc, err, _ = cli("compress", src, tmp_path / "ok.lvp", "--codec", "fallback")
    assert rc == 0, err
    (tmp_path / "dir.npy").mkdir()
    for out, why in ((tmp_path / "dir.npy", "is a folder"), (tmp_path / "missing" / "x.nii", "does not exist")):
        rc, err, _ = cli("decompress", tmp_path / "ok.lvp", out)
        assert rc == 2 and why in err, err
    assert _partials(tmp_path) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_refused_before_the_encode(tmp_path):
    src = tmp_path / "a.npy"
    np.save(src, np.zeros((4, 5), np.uint8))
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        rc, err, _ = cli("compress", src, ro / "x.lvp", "--codec", "fallback")
        assert rc == 2 and "not writable" in err, err
    finally:
        ro.chmod(0o755)


def _slow_input(tmp_path: Path) -> Path:
    """A volume the fallback takes tens of seconds to code (random 16-bit slices): the signal lands
    during the encode even when the machine is busy and this test process waits its turn."""
    src = tmp_path / "slow.npy"
    np.save(src, np.random.default_rng(0).integers(0, 60000, (2000, 128, 128), dtype=np.uint16))
    return src


def _start_compress(src: Path, out: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "lvpnet.cli", "compress", str(src), str(out), "--codec", "fallback"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.monotonic() + 60
    while not _partials(out.parent):  # the temporary file exists: the encode is under way
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    return proc


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_leave_no_debris(tmp_path, sig):
    src = _slow_input(tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = _start_compress(src, out_dir / "slow.lvp")
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, (out, err)
    assert f"interrupted ({signal.Signals(sig).name})" in err and "Traceback" not in err
    assert list(out_dir.iterdir()) == []


def test_what_sigkill_leaves_is_removed_by_the_next_run(tmp_path):
    src = _slow_input(tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = _start_compress(src, out_dir / "slow.lvp")
    proc.kill()
    proc.wait(timeout=60)
    left = _partials(out_dir)
    assert len(left) == 1  # SIGKILL cannot be caught: the next run cleans up
    live = partial_name(out_dir / "busy.lvp", ".lvp")  # a writer still running (this process): kept
    live.write_bytes(b"in use")
    foreign = out_dir / ".notes.partial-1234.txt"  # not our pattern: never touched
    foreign.write_bytes(b"user file")
    small = tmp_path / "small.npy"
    np.save(small, np.zeros((4, 4), np.uint8))
    rc, err, _ = cli("compress", small, out_dir / "small.lvp", "--codec", "fallback")
    assert rc == 0, err
    assert sorted(p.name for p in out_dir.iterdir()) == sorted([live.name, foreign.name, "small.lvp"])
    assert clean_debris(out_dir) == []


def _nifti_declaring(path: Path, shape, gz: bool = False) -> Path:
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(np.int16)
    hdr["vox_offset"] = 352
    data = hdr.binaryblock + b"\0" * 4 + b"\1" * 1024
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_a_nifti_header_declaring_gigabytes_is_refused_before_allocating(tmp_path, gz):
    src = _nifti_declaring(tmp_path / ("big.nii.gz" if gz else "big.nii"), (20000, 20000, 4), gz)  # 3.2 GB of int16
    assert src.stat().st_size < 1500
    t0 = time.monotonic()
    rc, err, rss = cli("compress", src, tmp_path / "x.lvp", "--codec", "fallback")
    assert rc == 2 and ("declares" in err or "--max-memory" in err), err
    assert "Traceback" not in err and time.monotonic() - t0 < 60
    assert 0 < rss < 1024, rss
    assert sorted(p.name for p in tmp_path.iterdir()) == [src.name]


def test_the_info_of_a_folder_lists_what_was_not_read(hostile_series, tmp_path):
    out = tmp_path / "s.lvp"
    assert cli("compress", hostile_series, out, "--codec", "fallback")[0] == 0
    proc = subprocess.run([sys.executable, "-m", "lvpnet.cli", "info", str(out), "--json"], capture_output=True,
                          text=True, timeout=60, env=ENV)
    info = json.loads(proc.stdout)
    assert sorted(info["not_archived"]) == ["pipe.dcm", "secret.txt", "zero.dcm"]


def test_a_signal_whose_exception_was_swallowed_still_stops_the_run_at_the_next_slice():
    """The handler's exception can be lost inside C code that clears errors; the run stops anyway."""
    from lvpnet.atomic import Interrupted, signals_interrupt
    from lvpnet.progress import Progress, run

    done = []

    def job():
        for i in range(5):
            done.append(i)
            if i == 1:
                try:
                    os.kill(os.getpid(), signal.SIGTERM)
                    time.sleep(1)  # the handler runs here
                except KeyboardInterrupt:
                    pass  # swallowed, as C code that clears errors would
            yield Progress("encode", i + 1, 5)

    with signals_interrupt():
        with pytest.raises(Interrupted) as e:
            run(job())
    assert e.value.signum == signal.SIGTERM and done == [0, 1]


def _partial_of(pid: int, target: Path) -> Path:
    """A temporary name as the process ``pid`` would have made it for ``target``."""
    mine = partial_name(target, ".lvp")
    return mine.with_name(mine.name.replace(f"-{os.getpid()}-", f"-{pid}-"))


def test_a_killed_writer_not_yet_reaped_leaves_debris_that_is_removed(tmp_path):
    """A zombie (killed, its parent not waiting for it; in a container whose first process never reaps,
    for ever) still answers kill(pid, 0): its temporary file was kept as a live writer's."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while open(f"/proc/{child.pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":  # exited, not reaped
        assert time.monotonic() < deadline
        time.sleep(0.05)
    debris = _partial_of(child.pid, tmp_path / "a.lvp")
    debris.write_bytes(b"half a file")
    assert clean_debris(tmp_path) == [debris] and not debris.exists()
    child.wait()


def test_debris_of_a_writer_still_ending_is_removed_when_the_next_run_finishes(tmp_path):
    """A rerun started right after a SIGKILL found the killed writer still running (dying), kept its
    temporary file, and did not look again: the file stayed until a later run, a minute on."""
    from lvpnet.atomic import atomic_path

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    debris = _partial_of(child.pid, tmp_path / "a.lvp")
    debris.write_bytes(b"half a file")
    with atomic_path(tmp_path / "a.lvp") as tmp:
        assert debris.exists()  # its writer runs: kept
        tmp.write_bytes(b"the new file")
        child.kill()
        child.wait()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.lvp"]


def test_a_signal_after_the_command_has_ended_does_not_make_it_a_failure(tmp_path):
    """A SIGTERM that lands once the output is in place and said, while Python exits (its handlers back to the
    default, torch torn down), gave exit 143 after "ct.lvp -> out: 6 DICOM files": a script took the run for a
    failure, and its rerun was refused ("already exists"). The ``lvpnet`` command's entry lets it pass."""
    src = tmp_path / "a.npy"
    np.save(src, np.arange(64, dtype=np.uint16).reshape(1, 8, 8))
    script = ("import os, signal, sys\n"
              "from lvpnet import cli\n"
              f"sys.argv = ['lvpnet', 'compress', {str(src)!r}, {str(tmp_path / 'a.lvp')!r}, '--codec', 'fallback']\n"
              "rc = cli.entry()\n"
              "os.kill(os.getpid(), signal.SIGTERM)\n"
              "os.kill(os.getpid(), signal.SIGHUP)\n"
              "print('still here', rc, flush=True)\n"
              "sys.exit(rc)\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=ENV, timeout=120)
    assert proc.returncode == 0 and "still here 0" in proc.stdout, (proc.stdout, proc.stderr)
    assert (tmp_path / "a.lvp").exists()
