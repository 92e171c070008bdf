"""The code blocks the docs give as things to run, run: a copied example must work."""

import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _block(doc: str, heading: str) -> str:
    text = (ROOT / doc).read_text()
    m = re.search(re.escape(heading) + r"\n\n```python\n(.*?)```", text, re.S)
    assert m, f"{doc}: no python block under {heading!r}"
    return m.group(1)


def test_model_md_codec_facing_api_example_runs(monkeypatch):
    """docs/MODEL.md section 4 walks a slice through the shipped weights' integer decoder; the
    walk's symbols must code the slice exactly (``values_from_symbols`` gives its values back)."""
    pytest.importorskip("torch")
    monkeypatch.chdir(ROOT)
    x = (np.add.outer(np.arange(40), np.arange(36)) * 7 % 300).astype(np.int16) - 100
    scope = {"x": x}
    exec(compile(_block("docs/MODEL.md", "## 4. Codec-facing API (what a constriction codec calls)"),
                 "MODEL.md", "exec"), scope)
    dec, ctx, v = scope["dec"], scope["ctx"], scope["v"]
    assert len(ctx) == len(dec.order)
    sym, low, mu, s, esc = (scope[k] for k in ("sym", "low", "mu", "s", "esc"))
    # the last step's values back from its symbols (escaped ones: read from the stream, here the truth)
    back = scope["values_from_symbols"](sym, low, mu, s, dec.pixel_shifts, dec.K, scope["v_sub_real"])
    assert esc.dtype == scope["torch"].bool
    assert np.array_equal(np.asarray(back), np.asarray(scope["v_sub_real"]))
    assert v.min() == 0


def test_readme_inspect_from_python_runs():
    """README's "the same arrays come from Python" line, as written (``lvpnet.analysis`` is not
    imported by ``import lvpnet``: the line says to import it)."""
    pytest.importorskip("torch")
    text = (ROOT / "README.md").read_text()
    m = re.search(r"The same arrays come from Python: `(import lvpnet\.analysis)`, then\s+`([^`]+)`", text)
    assert m, "README: the Python line of Inspect moved"
    scope = {"slice": (np.add.outer(np.arange(40), np.arange(36)) % 50).astype(np.uint8)}
    exec(m.group(1), scope)
    out = eval(m.group(2), scope)
    assert out is not None


def test_readme_python_block_runs(tmp_path, monkeypatch):
    """README's "## Python" block, as written, on the files it names (made here, small): its indexing line
    once needed a 4-D file the block never makes."""
    import shutil

    import nibabel as nib
    import pydicom

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    array = (rng.normal(500, 30, (4, 48, 40))).astype(np.int16)
    nib.save(nib.Nifti1Image(array.T.copy(), np.diag([0.8, 0.8, 2.0, 1.0])), "scan.nii.gz")
    (tmp_path / "dicom_folder").mkdir()
    shutil.copy(Path(pydicom.__file__).parent / "data" / "test_files" / "MR_small.dcm", "dicom_folder")
    scope = {"array": array, "dask": pytest.importorskip("dask")}
    import dask.array  # noqa: F401 - the block's dask.array.from_array

    exec(compile(_block("README.md", "## Python"), "README.md", "exec"), scope)
    assert np.array_equal(scope["same"], array)
    f = scope["f"]
    assert np.array_equal(f[0, 10:20, :], np.asarray(f)[0, 10:20, :])
    assert np.array_equal(np.asarray(scope["d"]), np.asarray(f))


def test_format_md_weights_file_section_matches_the_shipped_weights():
    """FORMAT.md's "The weights file" is what a reader without this code goes by: the keys it lists
    are the file's, loaded the way it says (``weights_only=True``), and the layer fields too."""
    torch = pytest.importorskip("torch")
    text = (ROOT / "docs/FORMAT.md").read_text()
    section = text[text.index("#### The weights file"):text.index("## What is accepted")]
    ck = torch.load(ROOT / "resources/lvpnet-v1.pt", map_location="cpu", weights_only=True)
    assert ck["format"] == "lvpnet-model-1" and f'`"{ck["format"]}"`' in section
    for key in ck:
        assert f"| `{key}` |" in section, key
    for key in ck["decoder"]:
        assert f"`{key}`" in section, f"decoder key {key}"
    for layer in (ck["decoder"]["up"], ck["decoder"]["predictor"]["head"], *ck["decoder"]["qcm"].values()):
        for field in layer:
            assert f"`{field}`" in section, f"layer field {field}"
    assert tuple(ck["decoder"]["latent_tables"].shape) == (ck["config"]["latent_channels"], 63)
    assert tuple(ck["decoder"]["pixel_tables"].shape) == (80, 130)
    assert ck["decoder"]["latent_tables"].sum(dim=1).eq(2 ** 16).all()


def test_format_md_source_metadata_keys_are_what_readers_write():
    """The keys FORMAT.md's `source.metadata` table names are the ones the readers write (a reader of a
    ten-year-old file finds the rescale and the frame under the names it was told)."""
    pydicom = pytest.importorskip("pydicom")
    from lvpnet import io as lio

    text = (ROOT / "docs/FORMAT.md").read_text()
    table = text[text.index("### `source.metadata`"):text.index("## Checks, in the order")]
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `(\w+)` \| (.*)$", table, re.M)}
    ct = lio.read(pydicom.data.get_testdata_file("CT_small.dcm"))
    sample = lio.read(ROOT / "resources/sample_ct.nii.gz")
    assert ct.metadata["coordinate_system"] == "LPS" and sample.metadata["coordinate_system"] == "RAS"
    assert set(rows) == {"coordinate_system", "modality", "numpy", "nifti", "dicom"}
    named = set(re.findall(r"`(\w+)`", rows["dicom"])) - {"elements", "elements_in_record", "elements_in_record_patched",
                                                             "elements_patch", "value"}
    assert named <= set(ct.metadata["dicom"]), named - set(ct.metadata["dicom"])
    assert set(re.findall(r"`(\w+)`", rows["nifti"])) <= set(sample.metadata["nifti"])
