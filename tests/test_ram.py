"""Work sized to the memory free: what this machine can give, workers bounded by it, a slice too large
for the learned codec said before the encode."""

import os

import numpy as np
import pytest

from lvpnet import LvpFile, codecs, ram, slice_pool
from lvpnet.cli import main
from lvpnet.codecs.weights import shipped_weights
from lvpnet.compressor import compress
from lvpnet.errors import InputError

needs_weights = pytest.mark.skipif(shipped_weights() is None, reason="no shipped weights")


def _files(tmp_path, monkeypatch, meminfo=None, v2=None, v1=None):
    """``ram`` reading a meminfo and a cgroup folder made here (None: the file is missing)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    info = tmp_path / "meminfo"
    if meminfo is not None:
        info.write_text(f"MemTotal:       32000000 kB\nMemFree:  1000 kB\nMemAvailable:   {meminfo} kB\n")
    group = tmp_path / "cgroup"
    (group / "memory").mkdir(parents=True)
    if v2 is not None:
        (group / "memory.max").write_text(f"{v2[0]}\n")
        (group / "memory.current").write_text(f"{v2[1]}\n")
    if v1 is not None:
        (group / "memory" / "memory.limit_in_bytes").write_text(f"{v1[0]}\n")
        (group / "memory" / "memory.usage_in_bytes").write_text(f"{v1[1]}\n")
    monkeypatch.setattr(ram, "_MEMINFO", info)
    monkeypatch.setattr(ram, "_CGROUP", group)
    monkeypatch.setattr(ram, "_PROC_CGROUP", tmp_path / "no-proc-cgroup")


def test_what_is_free_comes_from_meminfo_and_the_containers_limit(tmp_path, monkeypatch):
    _files(tmp_path / "a", monkeypatch)
    assert ram.available() is None  # neither can be read: unknown, nothing bounded
    _files(tmp_path / "b", monkeypatch, meminfo=8_000_000)
    assert ram.available() == 8_000_000 * 1024
    _files(tmp_path / "c", monkeypatch, meminfo=8_000_000, v2=("max", 123))
    assert ram.available() == 8_000_000 * 1024  # a cgroup without a limit
    _files(tmp_path / "d", monkeypatch, meminfo=8_000_000, v2=(4 << 30, 1 << 30))
    assert ram.available() == 3 << 30  # the container's limit less its use is smaller
    _files(tmp_path / "e", monkeypatch, meminfo=8_000_000, v1=(2 << 30, 1 << 29))
    assert ram.available() == (2 << 30) - (1 << 29)
    _files(tmp_path / "f", monkeypatch, meminfo=8_000_000, v1=(9223372036854771712, 1 << 29))
    assert ram.available() == 8_000_000 * 1024  # cgroup v1's "no limit"
    _files(tmp_path / "g", monkeypatch, v2=(1 << 30, 2 << 30))
    assert ram.available() == 0  # over its limit already


def test_the_limit_of_this_process_own_cgroup_counts(tmp_path, monkeypatch):
    """systemd's MemoryMax= and SLURM's --mem limit a cgroup below the mount's root: only the root's files
    were read, so the automatic workers ignored the limit and the job was killed (exit 137)."""
    for version, files in (("v2", ("memory.max", "memory.current")),
                           ("v1", ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes"))):
        _files(tmp_path / version, monkeypatch, meminfo=8_000_000)
        group = ram._CGROUP / ("memory" if version == "v1" else "")
        job, slice_ = group / "system.slice", group / "system.slice" / "job.scope"
        slice_.mkdir(parents=True)
        for folder, limit, used in ((job, 900 << 20, 100 << 20), (slice_, 350 << 20, 50 << 20)):
            (folder / files[0].split("/")[-1]).write_text(f"{limit}\n")
            (folder / files[1].split("/")[-1]).write_text(f"{used}\n")
        proc = tmp_path / version / "proc_cgroup"
        proc.write_text("0::/system.slice/job.scope\n" if version == "v2" else
                        "4:memory:/system.slice/job.scope\n1:cpu:/\n")
        monkeypatch.setattr(ram, "_PROC_CGROUP", proc)
        assert ram.available() == 300 << 20  # the job's own limit less its use: the least room above it
        (job / files[1].split("/")[-1]).write_text(f"{850 << 20}\n")
        assert ram.available() == 50 << 20  # the slice above it is nearly full


def test_this_machine_answers():
    free = ram.available()
    assert free is None or free > 0


def test_automatic_workers_are_bounded_by_the_memory_free(monkeypatch):
    monkeypatch.delenv(slice_pool.ENV, raising=False)
    monkeypatch.setattr(slice_pool, "cores", lambda: 16)
    monkeypatch.setattr(ram, "available", lambda: 8 << 30)
    assert slice_pool.workers(1000, None, "cpu") == 16  # nothing said of the slices: the cores
    # a tomosynthesis slice (4.6 megapixels) at the learned codec's 240 bytes a pixel: 1.1 GB a worker,
    # plus each worker's torch and weights
    each = 4_600_000 * codecs.get_codec("lvpnet").encode_ram_per_pixel
    assert slice_pool.workers(1000, None, "cpu", slice_bytes=each) == (8 << 30) // (each + ram.WORKER_BASE_BYTES) == 5
    monkeypatch.setattr(ram, "available", lambda: 100 << 20)
    assert slice_pool.workers(1000, None, "cpu", slice_bytes=each) == 1  # never none
    assert slice_pool.workers(1000, 4, "cpu", slice_bytes=each) == 4  # asked for: asked for
    monkeypatch.setattr(ram, "available", lambda: None)
    assert slice_pool.workers(1000, None, "cpu", slice_bytes=each) == 16  # unknown: not bounded


def _image():
    yy, xx = np.mgrid[:40, :56]
    return (500 + 200 * np.sin(yy / 4.0) + 3 * xx).astype(np.int16)


@needs_weights
def test_a_slice_too_large_for_the_memory_free_goes_to_the_fallback(monkeypatch):
    img = _image()
    need = img.size * codecs.get_codec("lvpnet").encode_ram_per_pixel
    monkeypatch.setattr(ram, "available", lambda: need - 1)
    with pytest.warns(UserWarning, match=r"learned codec needs about .* of memory .* coded with the fallback"):
        data = compress(img)
    f = LvpFile(data)
    assert f.codec_counts() == {codecs.FallbackCodec.id: 1} and np.array_equal(np.asarray(f), img)
    # asked for by name: refused before any work, saying what to do
    with pytest.raises(InputError, match=r"needs about .* free some memory, or use --codec fallback"):
        compress(img, codec="lvpnet")
    monkeypatch.setattr(ram, "available", lambda: need)  # just enough
    assert LvpFile(compress(img, codec="lvpnet", safety_net=False, verify=False)).codec_counts() == {"lvpnet": 1}


@needs_weights
def test_the_command_line_says_so(tmp_path, monkeypatch, capsys):
    src = tmp_path / "scan.npy"
    np.save(src, _image())
    monkeypatch.setattr(ram, "available", lambda: 1000)
    assert main(["compress", str(src), str(tmp_path / "a.lvp")]) == 0
    err = capsys.readouterr().err
    assert "lvpnet: note: the learned codec needs about" in err and "1 MB is free" in err
    assert LvpFile(tmp_path / "a.lvp").codec_counts() == {codecs.FallbackCodec.id: 1}
    assert main(["compress", str(src), str(tmp_path / "b.lvp"), "--codec", "lvpnet"]) == 2
    assert "use --codec fallback" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "b.lvp")


def test_the_safety_nets_encode_runs_beside_only_with_room_for_both(monkeypatch):
    """Under a tight memory cgroup (350 MB) the learned encoder and the safety net's JPEG-XL, run at once,
    were killed where one after the other fits: the two run side by side only with room for both (and for
    the weights, while they are not loaded yet)."""
    from lvpnet.compressor import _room_beside

    learned = codecs.get_codec("lvpnet")
    px = 512 * 512
    monkeypatch.setattr(ram, "available", lambda: None)
    assert _room_beside(learned, px)
    monkeypatch.setattr(ram, "available", lambda: 200 << 20)
    monkeypatch.setattr(learned, "_engine", None)
    assert not _room_beside(learned, px)  # the weights still to load take more than that
    monkeypatch.setattr(learned, "_engine", object())
    assert _room_beside(learned, px)  # loaded: 130 MB for the two encodes
    monkeypatch.setattr(ram, "available", lambda: 100 << 20)
    assert not _room_beside(learned, px)
