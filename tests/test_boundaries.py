"""The core never imports Qt, napari or magicgui; the package installs what it promises."""

import ast
import subprocess
import sys
from pathlib import Path

import lvpnet

GUI_MODULES = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "vispy", "superqt")
CORE = Path(lvpnet.__file__).parent


def test_core_sources_import_no_gui():
    for path in CORE.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in GUI_MODULES, f"{path}: imports {name}"


def test_importing_core_and_cli_loads_no_gui():
    code = (
        "import sys, lvpnet, lvpnet.cli, lvpnet.io, lvpnet.demo, lvpnet.codecs;"
        f"bad = [m for m in {GUI_MODULES!r} if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_command_and_the_file_reader_start_without_torch():
    """``lvpnet --help``, ``lvpnet info``, a bad argument, a classical-codec file: none needs the
    network, and importing torch takes seconds; the learned codec brings it in when it is used."""
    code = (
        "import sys, lvpnet, lvpnet.cli, lvpnet.lvpfile, lvpnet.codecs as c;"
        "c.available(); c.get_codec('fallback');"
        "import numpy as np; lvpnet.compress(np.zeros((2, 4, 4), np.float32)); lvpnet.compress(np.zeros((4, 4), 'i4'));"
        "assert 'torch' not in sys.modules;"  # floats and wide integers: the fallback, known without torch
        "c.LVPNetCodec; assert 'torch' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_resources_ship_inside_the_package():
    from lvpnet.resources import SAMPLE_CT, path

    assert path(SAMPLE_CT).is_file()
    assert path("README.md").is_file()


def test_napari_manifest_is_valid():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("napari-lvpnet")
    assert manifest.name == "napari-lvpnet"
    assert any("*.lvp" in r.filename_patterns for r in manifest.contributions.readers)


def test_console_script_installed():
    exe = Path(sys.executable).parent / "lvpnet"
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"lvpnet {lvpnet.__version__}"


def test_wheel_ships_resources_and_manifest(tmp_path):
    """A non-editable install gets the sample scan and the napari manifest too."""
    import zipfile

    root = Path(__file__).resolve().parents[1]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(root)],
        check=True, capture_output=True,
    )
    (wheel,) = tmp_path.glob("napari_lvpnet-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("lvpnet/resources/sample_ct.nii.gz", "lvpnet/resources/README.md", "napari_lvpnet/napari.yaml",
                   "lvpnet/cli.py", "lvpnet/io/dicom.py", "lvpnet/codecs/fallback.py"):
        assert needed in names
    # the codec installs without the viewer: Qt, napari, magicgui and matplotlib come only with the extra
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    requires = [line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    core = [r for r in requires if "extra ==" not in r]
    gui = ("napari", "npe2", "magicgui", "qtpy", "matplotlib", "pyqt")
    assert core and not [r for r in core if r.lower().startswith(gui)], core
    assert any(r.startswith("napari") and 'extra == "napari"' in r for r in requires), requires
