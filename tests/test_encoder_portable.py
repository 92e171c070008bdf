"""A file does not depend on the CPU that wrote or reads it.

The golden tests run on this machine's CPU. Here the same golden set is coded again in a process
that sees another x86 CPU: the vector extensions oneDNN, MKL, ATen and numpy may use capped at
AVX2, as on a workstation without AVX-512 or VNNI (x86 before Cascade Lake, AMD before Zen 4).
Two things broke there before they were caught (session 18):

* the int8 trunk: oneDNN's int8 products without VNNI are not exact, so the decoder computed other
  integers and every golden file failed to decode (``exact_mm`` now probes exactness, and takes the
  trunk's products by its AVX2 kernel or float32 GEMMs there; this process takes another kind of
  product than the golden tests beside it);
* the encoder's refinement fits: float products summed in another order gave coefficients one
  apart, so the same slice gave other bytes (``coding.refine`` now sums integers only).

On a CPU that is not x86 the variables change nothing and the test still checks that the bytes
and values come out the same in a second process.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from golden_sets import SETS

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# what a process sees of a CPU with AVX2 and no AVX-512 (nor VNNI)
AVX2_ONLY = {
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "NPY_DISABLE_CPU_FEATURES": "AVX512F,AVX512CD,AVX512_SKX,AVX512_CLX,AVX512_CNL,AVX512_ICL,AVX512_SPR",
    "OMP_NUM_THREADS": "1",
}

_CHILD = r"""
import hashlib, json, sys
from pathlib import Path
import numpy as np, torch
torch.set_num_threads(1)
sys.path.insert(0, sys.argv[2])
from golden_sets import weights_of
from lvpnet.codecs.lvpnet_codec import LVPNetCodec
from lvpnet.model import exact_mm, int8_trunk
here = Path(sys.argv[1])
expected = json.loads((here / "expected.json").read_text())
codec = LVPNetCodec(weights_of(here.name), device="cpu")
out = {"int8": [int8_trunk.supported(), exact_mm.kind()], "encoded": {}, "decoded": {}}
for name in sorted(expected["chunks"]):
    x = np.load(here / f"{name}.npy")
    ref = here / f"{name}.ref.npy"
    kw = {"reference": np.load(ref)} if ref.exists() else {}
    out["encoded"][name] = hashlib.sha256(codec.encode(x, **kw)).hexdigest()
    try:
        y = codec.decode((here / f"{name}.chunk").read_bytes(), x.shape, x.dtype, expected["codec_version"], **kw)
        out["decoded"][name] = bool(y.dtype == x.dtype and np.array_equal(y, x))
    except ValueError as e:
        out["decoded"][name] = str(e)
print(json.dumps(out))
"""


def _current_set() -> Path:
    from lvpnet.codecs.lvpnet_codec import LVPNetCodec

    for path in SETS.values():
        if json.loads((path / "expected.json").read_text())["codec_version"] == LVPNetCodec.version:
            return path
    pytest.fail("no golden set of the current bitstream version")


def test_another_cpu_decodes_the_golden_files_and_writes_the_same_bytes():
    from lvpnet.model import exact_mm

    here = _current_set()
    # products of another kind than the golden tests here take (``exact_mm``): the AVX2 kernel, or
    # float32 GEMMs where this process runs the kernel or it is not built
    other = "avx2" if exact_mm.kind() != "avx2" and exact_mm.available("avx2") else "float32"
    env = {**os.environ, **AVX2_ONLY, "LVPNET_PRODUCTS": other}
    run = subprocess.run([sys.executable, "-c", _CHILD, str(here), str(Path(__file__).parent)], env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["int8"][1] == other
    expected = json.loads((here / "expected.json").read_text())["chunks"]
    bad_decode = {k: v for k, v in got["decoded"].items() if v is not True}
    assert not bad_decode, f"golden chunks that another CPU cannot decode (int8 trunk on, products: {got['int8']}): {bad_decode}"
    moved = sorted(k for k in expected if got["encoded"][k] != expected[k])
    assert not moved, f"the encoder wrote other bytes on another CPU for {moved}"
