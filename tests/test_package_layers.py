"""The packages' rules: ``lvpnet.model`` (the network) never imports ``lvpnet.coding`` (the
coding stages), so a change to the network does not touch the stages (``lvpnet/coding/__init__``);
``lvpnet.coding`` never imports ``lvpnet.codecs`` (whose package imports the engine, which imports
the stages: a cycle), so the estimate runs from ``model`` and ``coding`` alone (``scripts/gpu_train.sh``)."""

import ast
import subprocess
import sys
from pathlib import Path

import lvpnet

PKG = Path(lvpnet.__file__).resolve().parent
MODEL = PKG / "model"


def _imported(path: Path) -> list[str]:
    """Absolute names of every module an ``import`` in the file asks for (at any depth: the lazy
    imports inside functions count too)."""
    # the file's own package, as a relative import resolves it: lvpnet.model for model/x.py
    parts = ["lvpnet", *path.relative_to(PKG).with_suffix("").parts[:-1]]
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = parts[: len(parts) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            names.append(mod)
            names += [f"{mod}.{a.name}" for a in node.names]  # `from .. import coding`
    return names


def _imports_of(folder: Path, package: str) -> list[str]:
    """'file: module' for every import of ``package`` (or a module in it) by a source under ``folder``."""
    files = sorted(folder.rglob("*.py"))
    assert len(files) > 5
    return [
        f"{f.relative_to(PKG)}: {name}"
        for f in files
        for name in _imported(f)
        if name == package or name.startswith(package + ".")
    ]


def test_model_sources_never_import_coding():
    bad = _imports_of(MODEL, "lvpnet.coding")
    assert not bad, bad


def test_coding_sources_never_import_codecs():
    bad = _imports_of(PKG / "coding", "lvpnet.codecs")
    assert not bad, bad


def test_import_resolution_sees_relative_imports():
    """The check above would pass vacuously if relative imports resolved wrongly."""
    names = _imported(PKG / "coding" / "estimate.py")
    assert "lvpnet.model.lvpnet" in names and "lvpnet.coding.adapt" in names


def test_model_imports_without_coding():
    # ``import lvpnet.model`` runs lvpnet/__init__ first, which loads the codec (and so the coding
    # stages) for the public API; the parent package is stood in by an empty one of the same path,
    # so what gets loaded is lvpnet.model's own imports and theirs.
    code = (
        "import sys, types\n"
        f"pkg = types.ModuleType('lvpnet'); pkg.__path__ = [{str(PKG)!r}]; sys.modules['lvpnet'] = pkg\n"
        "import lvpnet.model, lvpnet.model.lvpnet\n"
        "import pkgutil, importlib\n"
        "for m in pkgutil.iter_modules(lvpnet.model.__path__): importlib.import_module('lvpnet.model.' + m.name)\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('lvpnet.'))\n"
        "assert 'lvpnet.model.predictor' in loaded, loaded\n"
        "bad = [m for m in loaded if m == 'lvpnet.coding' or m.startswith('lvpnet.coding.')]\n"
        "assert not bad, bad\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr


def test_the_napari_extra_brings_a_qt_binding():
    """napari names no Qt binding of its own (its [pyqt] extra does): `pip install 'napari-lvpnet[napari]'`
    and `make demo` gave a napari whose window could not start."""
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(PKG.parents[1] / "setup.cfg")
    extra = [line.split(">")[0].split("=")[0].strip().lower()
             for line in cfg["options.extras_require"]["napari"].splitlines() if line.strip()]
    assert {"pyqt5", "pyqt6", "pyside2", "pyside6"} & set(extra), extra


def test_every_folder_the_wheel_ships_is_a_listed_package():
    """setup.cfg lists its packages by name: a folder of shipped files left out (resources/retired) gave every
    install a boxed setuptools warning ("Package 'lvpnet.resources.retired' is absent from the `packages`
    configuration"), which a new user takes for a failure."""
    import configparser

    root = PKG.parents[1]
    cfg = configparser.ConfigParser()
    cfg.read(root / "setup.cfg")
    listed = {line.strip() for line in cfg["options"]["packages"].splitlines() if line.strip()}
    dirs = {"lvpnet": root / "src" / "lvpnet", "lvpnet.resources": root / "resources",
            "napari_lvpnet": root / "napari_lvpnet"}
    found = set()
    for name, folder in dirs.items():
        for sub in [folder, *folder.rglob("*")]:
            if sub.is_dir() and "__pycache__" not in sub.parts and any(f.is_file() for f in sub.iterdir()):
                found.add(".".join([name, *sub.relative_to(folder).parts]))
    assert found <= listed, sorted(found - listed)
    data = cfg["options.package_data"]
    assert "retired" not in data["lvpnet.resources"] and "*.pt" in data["lvpnet.resources.retired"]
